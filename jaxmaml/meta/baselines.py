"""Strong few-shot baselines, scored on the same episodes as the meta-learned init.

Every baseline reads sentence features the way a sentence-transformer does: the mean of the
last hidden states over non-pad tokens, L2-normalized (:func:`sentence_features`),
whatever ``meta.pooling`` the run meta-trained with.

- ``cosine_centroid``: frozen original encoder; a query goes to the class whose mean
  support feature has the highest cosine similarity.
- ``linear_probe``: frozen original encoder; multinomial logistic regression on the support
  features, ``mean_i CE_i + 1/(2 C n) |W|^2`` (``n`` support examples, bias not penalized:
  scikit-learn's ``LogisticRegression(C=C)`` objective), solved with L-BFGS (Optax, zoom
  line search) from zeros to a gradient norm of :data:`PROBE_TOL` (at most
  :data:`PROBE_ITERS` iterations); ``C`` = :data:`PROBE_C`.
- ``pretrained_adapt_cosine``: the original encoder + the learner's own inner loop (its
  adapt filter, ``num_inner_steps``, ``inner_lr``) with a head that can learn: a cosine head
  ``logits = s * cos(f(x), w_c)`` with ``s = meta.cosine_scale``, ``w_c`` initialized at the
  normalized class centroids (so zero steps = ``cosine_centroid``). The Proto-MAML linear
  head on unnormalized features saturates (its softmax is one-hot on the support set, so
  its gradient vanishes and ``pretrained_finetune`` equals ``nearest_centroid``); this one
  does not.
- ``meta_learned_centroid``: the META-LEARNED encoder under ``cosine_centroid``: what a
  user who exports the encoder and uses it as a sentence-transformer gets.
- ``meta_learned_probe``: the META-LEARNED encoder under ``linear_probe``: the exported
  encoder with a logistic-regression head (the usual frozen-encoder recipe), against the
  original encoder under the same probe.

Per-task functions are written for one episode and ``vmap``-ped over the task axis.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxmaml.meta import encoding, filters, heads, inner
from jaxmaml.tree import unflatten
from jaxmaml.meta.config import MetaConfig
from jaxmaml.meta.finetune import cosine_head_init, cosine_head_logits
from jaxmaml.meta.encoding import l2_normalize
from jaxmaml.types import Episodes, Examples

PROBE_C = 1.0        # inverse L2 strength, scikit-learn's default
PROBE_ITERS = 100    # at most this many L-BFGS iterations ...
PROBE_TOL = 1e-6     # ... stopping when the gradient norm is below this

# Methods scored on frozen sentence features: method -> (whose features, which classifier).
FROZEN_METHODS = {"cosine_centroid": ("pretrained", "centroid"),
                  "linear_probe": ("pretrained", "probe"),
                  "meta_learned_centroid": ("meta_learned", "centroid"),
                  "meta_learned_probe": ("meta_learned", "probe")}


def sentence_config(cfg: MetaConfig) -> MetaConfig:
    """``cfg`` computing the whole encoder with mean pooling (what sentence-transformers use)."""
    return cfg.replace(pooling="mean", outer_frozen_layers=0)


@functools.lru_cache(maxsize=16)
def _sentence_fn(cfg: MetaConfig):
    return jax.jit(lambda enc, i, m: l2_normalize(
        encoding.features(enc, Examples(i, m, None, None), cfg)))


def sentence_features(encoder: Any, cfg: MetaConfig, input_ids: np.ndarray,
                      attention_mask: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """L2-normalized mean-pooled features ``[N, H]`` of ``input_ids`` ``[N, L]`` (host).

    Computed in fixed-size batches (one compiled program per shape).
    """
    return encoding.map_padded_batches(_sentence_fn(sentence_config(cfg)), encoder, input_ids,
                                    attention_mask, batch_size)


# ---------------------------------------------------------------- frozen-feature classifiers
def cosine_centroid_logits(s_feats: jax.Array, s_labels: jax.Array, q_feats: jax.Array,
                           way: int) -> jax.Array:
    """Cosine similarities ``[way*query, way]`` of queries to normalized class means.

    One task: ``s_feats`` ``[way*shot, H]``, ``q_feats`` ``[way*query, H]``.
    """
    protos = heads.prototypes(s_feats, s_labels, jnp.ones(s_labels.shape, s_feats.dtype), way)
    return l2_normalize(q_feats) @ l2_normalize(protos).T


def probe_objective(params: dict, x: jax.Array, y: jax.Array, way: int, c: float) -> jax.Array:
    """scikit-learn's L2 logistic-regression objective divided by ``C n``.

    ``mean_i CE(x_i W + b, y_i) + |W|^2 / (2 C n)``; ``x`` ``[n, H]``, ``W`` ``[H, way]``.
    """
    logits = x @ params["kernel"] + params["bias"]
    nll = -jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=-1).mean()
    return nll + 0.5 * jnp.sum(params["kernel"] ** 2) / (c * x.shape[0])


def fit_probe(x: jax.Array, y: jax.Array, way: int, c: float = PROBE_C,
              iters: int = PROBE_ITERS, tol: float = PROBE_TOL) -> dict:
    """Multinomial logistic regression ``{"kernel": [H, way], "bias": [way]}`` on one task.

    L-BFGS from zeros until the gradient norm is below ``tol`` or after ``iters`` steps
    (a ``lax.while_loop``: under ``vmap`` finished tasks keep their solution).
    """
    fn = functools.partial(probe_objective, x=x, y=y, way=way, c=c)
    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(fn)
    params = {"kernel": jnp.zeros((x.shape[-1], way), x.dtype), "bias": jnp.zeros((way,), x.dtype)}

    def step(carry):
        p, state = carry
        value, grad = value_and_grad(p, state=state)
        updates, state = opt.update(grad, state, p, value=value, grad=grad, value_fn=fn)
        return optax.apply_updates(p, updates), state

    def going(carry):
        # a converged L-BFGS keeps line-searching on round-off: stop at the tolerance
        count = optax.tree_utils.tree_get(carry[1], "count")
        grad = optax.tree_utils.tree_get(carry[1], "grad")
        return (count == 0) | ((count < iters) & (optax.tree.norm(grad) >= tol))

    return jax.lax.while_loop(going, step, (params, opt.init(params)))[0]


def linear_probe_logits(s_feats: jax.Array, s_labels: jax.Array, q_feats: jax.Array,
                        way: int, c: float = PROBE_C, iters: int = PROBE_ITERS) -> jax.Array:
    """Query logits ``[way*query, way]`` of a probe fit on one task's support features."""
    return probe_logits(fit_probe(s_feats, s_labels, way, c, iters), q_feats)


def probe_logits(probe: dict, feats: jax.Array) -> jax.Array:
    """Logits ``[n, way]`` of a fitted probe (:func:`fit_probe`) on features ``[n, H]``."""
    return feats @ probe["kernel"] + probe["bias"]


@functools.partial(jax.jit, static_argnames=("method", "way"))
def frozen_accuracy(method: str, s_feats: jax.Array, s_labels: jax.Array, q_feats: jax.Array,
                    q_labels: jax.Array, way: int) -> jax.Array:
    """Per-task accuracy ``[T]`` of a frozen-feature ``method`` (see :data:`FROZEN_METHODS`).

    ``s_feats`` ``[T, way*shot, H]``, ``q_feats`` ``[T, way*query, H]`` (normalized).
    """
    logits_fn = {"probe": linear_probe_logits,
                 "centroid": cosine_centroid_logits}[FROZEN_METHODS[method][1]]

    def one(sf, sl, qf, ql):
        return (jnp.argmax(logits_fn(sf, sl, qf, way), -1) == ql).mean()

    return jax.vmap(one)(s_feats, s_labels, q_feats, q_labels)


# ---------------------------------------------------------------- pretrained + cosine head
# The cosine head (logits, prototype init) has one home: jaxmaml.meta.finetune.
def cosine_adapt_task(encoder: Any, episode: Episodes, cfg: MetaConfig) -> jax.Array:
    """Query accuracy of ``encoder`` adapted to one task with a cosine head.

    The learner's inner loop (adapt filter, ``num_inner_steps``, ``inner_lr``) on the
    support cross-entropy of ``meta.cosine_scale * cos(mean-pooled f(x), w_c)``, ``w_c``
    starting at the normalized support centroids. ``cfg`` is an evaluation config (see
    :func:`jaxmaml.run.protocol._eval_config`); episodes may carry cached ``bottom`` states.
    """
    cfg = cfg.replace(pooling="mean", first_order=True)  # nothing is meta-trained here
    support, query = episode
    bottom_s = encoding.bottom_features(encoder, support, cfg)
    bottom_q = encoding.bottom_features(encoder, query, cfg)
    feats0 = l2_normalize(encoding.features(encoder, support, cfg, bottom_s))
    params = {"encoder": encoder,
              "head": cosine_head_init(feats0, support.labels, support.weights, cfg.way)}
    adapted, frozen = filters.partition(params, cfg)

    def loss_fn(p):
        logits = cosine_head_logits(p["head"], encoding.features(p["encoder"], support, cfg,
                                                              bottom_s), cfg.cosine_scale)
        return heads.weighted_xent(logits, support.labels, support.weights)[0]

    adapted, _ = inner.inner_adapt(adapted, frozen, loss_fn, cfg)
    p = unflatten({**frozen, **adapted})
    logits = cosine_head_logits(p["head"], encoding.features(p["encoder"], query, cfg, bottom_q),
                                cfg.cosine_scale)
    return heads.weighted_xent(logits, query.labels, query.weights)[1]


@functools.lru_cache(maxsize=32)
def cosine_adapt_eval_fn(cfg: MetaConfig):
    """``(params, episodes) -> {"accuracy": [tasks]}``, jitted (like ``make_eval_step``)."""

    @jax.jit
    def eval_step(params, episodes):
        acc = jax.vmap(cosine_adapt_task, in_axes=(None, 0, None))(params["encoder"],
                                                                   episodes, cfg)
        return {"accuracy": acc}

    return eval_step
