"""``meta.algorithm: finetune``: first-order MAML whose inner loop is test-time fine-tuning.

Proven against references: with zero fine-tuning steps the loss and the meta-gradient are a
cosine ProtoNet's on normalized mean-pooled features; with steps, the meta-gradient is the
query gradient at the fine-tuned parameters (first order) plus the prototype path of the
head's initialization, assembled here by hand with ``jax.vjp``.
"""

import jax
import jax.numpy as jnp
import pytest

from learner_cases import CFG, _close, _encoder, _episodes, _task
from jaxmaml.meta import encoding, heads
from jaxmaml.meta.finetune import (cosine_head_init, finetune_adapt, finetune_config,
                                   finetune_predict)
from jaxmaml.meta.options import FinetuneOptions, ProtoNetOptions
from jaxmaml.meta.registry import LEARNERS
from jaxmaml.models.bert import init_params



def _setup(dtype="float32", **opts):
    """A 2-layer tiny encoder (top layer fine-tuned), one 3-way task."""
    model = CFG.model.replace(num_hidden_layers=2, dtype=dtype)
    cfg = CFG.replace(algorithm="finetune", model=model,
                      finetune=FinetuneOptions(top_k=1, **opts))
    encoder = jax.tree.map(lambda x: x.astype(dtype), init_params(model, jax.random.key(3)))
    return cfg, {"encoder": encoder}, _task(_episodes(), 0)


def _loss(name, meta_params, episode, cfg):
    return LEARNERS[name].task_loss(meta_params, episode, cfg)[0]


def test_zero_steps_is_a_cosine_protonet_on_normalized_mean_features():
    """In float64: the two paths normalize in different orders (float32 differs by ~1e-6)."""
    with jax.enable_x64(True):
        cfg, mp, episode = _setup("float64", steps=0, scale=7.0)
        proto = CFG.replace(algorithm="protonet", model=cfg.model, cosine_scale=7.0, pooling="mean",
                            protonet=ProtoNetOptions("cosine", normalize_features=True))
        loss, grads = jax.value_and_grad(_loss, argnums=1)("finetune", mp, episode, cfg)
        ref_loss, ref_grads = jax.value_and_grad(_loss, argnums=1)("protonet", mp, episode,
                                                                    proto)
        assert jnp.isfinite(loss) and abs(float(loss - ref_loss)) < 1e-12
        _close(grads, ref_grads, atol=1e-12)
        assert any(float(jnp.abs(g).max()) > 1e-4 for g in jax.tree.leaves(grads))


@pytest.mark.parametrize("part", ["top_k", "lora"])
def test_meta_gradient_is_the_query_gradient_at_the_fine_tuned_params_plus_the_prototype_path(
        part):
    with jax.enable_x64(True):
        cfg, mp, episode = _setup("float64", steps=3, lr=1e-2, head_lr=5e-2, part=part)
        support, query = episode
        opts, encoder = cfg.finetune, mp["encoder"]
        task = finetune_adapt(encoder, support, cfg.way, opts, cfg)

        def query_loss(enc, head):
            logits = finetune_predict({"encoder": enc, "head": head}, query, opts, cfg)
            return heads.weighted_xent(logits, query.labels, query.weights)[0]

        g_enc, g_head = jax.grad(query_loss, argnums=(0, 1))(task["encoder"], task["head"])
        fcfg = finetune_config(cfg, opts, cfg.way)
        head0 = lambda enc: cosine_head_init(  # noqa: E731
            encoding.l2_normalize(encoding.features(enc, support, fcfg)), support.labels,
            support.weights, cfg.way)
        _, vjp = jax.vjp(head0, encoder)
        ref = jax.tree.map(jnp.add, g_enc, vjp(g_head)[0])
        grads = jax.grad(_loss, argnums=1)("finetune", mp, episode, cfg)["encoder"]
        _close(grads, ref, atol=1e-10)
        # fine-tuning moved the params: the gradient is not the zero-step one
        zero = jax.grad(_loss, argnums=1)("finetune", mp, episode,
                                          cfg.replace(finetune=opts.replace(steps=0)))
        assert max(float(jnp.abs(a - b).max()) for a, b in
                   zip(jax.tree.leaves(grads), jax.tree.leaves(zero["encoder"]))) > 1e-5


def test_adapt_and_predict_are_the_fine_tuning_a_user_runs():
    cfg, mp, episode = _setup(steps=2, lr=1e-2)
    support, query = episode
    learner = LEARNERS["finetune"]
    task = learner.adapt(mp, support, cfg)
    ref = finetune_adapt(mp["encoder"], support, cfg.way, cfg.finetune, cfg)
    _close(task, ref, atol=0)
    _close(learner.predict(task, query, cfg),
           finetune_predict(ref, query, cfg.finetune, cfg), atol=0)
