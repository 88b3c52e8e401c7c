"""The Hessian-vector-product inner step (meta.second_order='hvp', the default, and
'linearize', its gradient linearized in the forward pass) against autodiff's
reverse-over-reverse (meta.second_order='autodiff'), in float64.

The MAML reference tests in test_maml.py (Python-unrolled loop, finite differences) run the
default and so check ``hvp`` against independent references; here every path through the
custom VJP is compared with autodiff: cotangents of frozen leaves and of cached lower-layer
features (mixed second derivatives), learned per-leaf and per-step rates, Proto-MAML heads,
MAML++'s per-step query losses, and closures over integer tracers under ``vmap``; and
that ``hvp`` plans less memory than autodiff.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from learner_cases import _norm

from jaxmaml.data.synthetic import synthetic_episodes
from jaxmaml.meta import hvp, outer
from jaxmaml.meta.config import MetaConfig
from jaxmaml.meta.options import MamlppOptions
from jaxmaml.models.bert import BertConfig, init_params

VOCAB = 128
MODEL = BertConfig.tiny(vocab_size=VOCAB, num_hidden_layers=1, dtype="float64")
KEY = jax.random.key(0)
CFG = MetaConfig(model=MODEL, way=3, num_inner_steps=3, inner_lr=1.0)
meta_grads = jax.jit(outer.meta_grads, static_argnums=2)


def _episodes(tasks=2):
    return jax.tree.map(jnp.asarray, synthetic_episodes(
        np.random.default_rng(0), tasks, 3, 2, 2, 8, VOCAB, num_classes=10))


def _encoder():
    params = init_params(MODEL, jax.random.key(1))
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(2), len(leaves))
    return jax.tree.unflatten(tree, [(x + 0.05 * jax.random.normal(k, x.shape)).astype(
        jnp.float64) for x, k in zip(leaves, keys)])


CASES = {
    "maml_all": dict(),
    # cached frozen bottom: the bottom features' cotangent carries the mixed terms to the
    # layers below; Proto-MAML's head init depends on the encoder too
    "protomaml_top1": dict(algorithm="protomaml", adapt="top_k_layers", adapt_top_k=1),
    # frozen leaves inside adapted layers (no cache): their mixed terms come through the
    # frozen-constant cotangents
    "maml_regex": dict(adapt="regex", adapt_regex=r".*layer/0/(attention|output)/.*"),
    "metasgd_all": dict(algorithm="metasgd"),  # learned per-parameter rates (row view too)
    "mamlpp_msl": dict(algorithm="mamlpp", mamlpp=MamlppOptions(msl_steps=5)),  # + step losses
}


@pytest.mark.parametrize("case", [  # maml_regex takes protomaml_top1's code path, other consts
    pytest.param(c, marks=pytest.mark.slow) if c == "maml_regex" else c for c in sorted(CASES)])
def test_hvp_meta_gradient_equals_autodiff_float64(case):
    with jax.enable_x64(True):
        cfg = CFG.replace(**CASES[case])
        meta_params = outer.init_meta_params(_encoder(), cfg, KEY)
        meta_params = jax.tree.map(lambda x: x.astype(jnp.float64), meta_params)
        if cfg.algorithm == "metasgd":  # distinct rates, so the rate gradients are non-trivial
            keys = iter(jax.random.split(jax.random.key(5), 100))
            meta_params["inner_lrs"] = jax.tree.map(
                lambda x: x + 0.3 * jax.random.normal(next(keys), x.shape, x.dtype),
                meta_params["inner_lrs"])
        episodes, step = _episodes(), jnp.int32(1)
        hvp_, linearized, autodiff = (
            meta_grads.lower(meta_params, episodes, cfg.replace(second_order=s), step).compile()
            for s in ("hvp", "linearize", "autodiff"))
        (l1, m1), g1 = hvp_(meta_params, episodes, step)
        (l2, m2), g2 = autodiff(meta_params, episodes, step)
        (l3, m3), g3 = linearized(meta_params, episodes, step)
        np.testing.assert_allclose(l1, l2, rtol=1e-13)
        np.testing.assert_allclose(l3, l2, rtol=1e-13)
        chex.assert_trees_all_close(g1, g2, atol=1e-10, rtol=0.0)
        chex.assert_trees_all_close(g3, g2, atol=1e-10, rtol=0.0)
        # the point of the custom VJP: each step keeps its input params, not its activations
        temp = [c.memory_analysis().temp_size_in_bytes for c in (hvp_, autodiff)]
        assert temp[0] < 0.75 * temp[1], temp
        # ... and of linearizing it in the forward pass: the gradient is not recomputed
        # (only elementwise ops and the attention's batched products are: 0.91x on this
        # 1-layer model, where they weigh most; 0.77x on BERT mini)
        flops = [c.cost_analysis()["flops"] for c in (hvp_, linearized)]
        assert flops[1] < 0.95 * flops[0], flops
        assert _norm(g1["encoder"]) > 1e-2
        extra = [k for k in g1 if k != "encoder"]
        for k in extra:  # the learned rates' gradients were compared and are not all zero
            assert _norm(g1[k]) > 1e-4, k
        if case != "maml_all":
            return
        # second order matters here: first order differs
        (_, _), g_fo = meta_grads(meta_params, episodes, cfg.replace(first_order=True),
                                  step)
        assert _norm(jax.tree.map(jnp.subtract, g1, g_fo)) > 1e-3 * _norm(g1)


def test_sgd_step_on_any_model_with_integer_closures_under_vmap():
    """A generic loss closing over integer index arrays and float data, vmapped over tasks:
    the step's value and its VJP (w.r.t. params, rates and the closed-over data) equal
    autodiff's."""
    with jax.enable_x64(True):
        k = jax.random.split(jax.random.key(0), 4)
        params = {"w1": jax.random.normal(k[0], (3, 8)), "w2": jax.random.normal(k[1], (8, 1))}
        xs = jax.random.normal(k[2], (4, 10, 3))
        idx = jnp.stack([jnp.roll(jnp.arange(10), t) for t in range(4)])  # int, per task
        lrs = {"w1": jnp.full((1, 8), 0.3), "w2": jnp.asarray(0.2)}

        def adapt(p, x, i, r, use_hvp):
            def loss(p_):
                return jnp.mean((jnp.tanh(x[i] @ p_["w1"]) @ p_["w2"] - x[:, :1]) ** 2)

            for _ in range(3):
                if use_hvp:
                    p = hvp.sgd_step(loss, p, r, 0.0, linearize=use_hvp == "linearize")
                else:
                    g = jax.grad(loss)(p)
                    p = jax.tree.map(lambda a, b, c: a - c * b, p, g, r)
            return jnp.sum(jnp.sin(p["w1"])) + jnp.sum(p["w2"] ** 3)

        def total(p, x, r, use_hvp):
            return jax.vmap(adapt, (None, 0, 0, None, None))(p, x, idx, r, use_hvp).sum()

        v2, g2 = jax.value_and_grad(total, argnums=(0, 1, 2))(params, xs, lrs, False)
        for mode in ("recompute", "linearize"):
            v1, g1 = jax.value_and_grad(total, argnums=(0, 1, 2))(params, xs, lrs, mode)
            np.testing.assert_allclose(v1, v2, rtol=1e-14)
            chex.assert_trees_all_close(g1, g2, atol=1e-12, rtol=0.0)
            assert min(_norm(g) for g in g1) > 1e-2


def test_remat_with_hvp_is_rejected_with_the_fix():
    with pytest.raises(ValueError, match="second_order: autodiff to keep remat"):
        MetaConfig(model=MODEL, remat="full")
    with pytest.raises(ValueError, match="second_order: autodiff to keep remat"):
        MetaConfig(model=MODEL, remat="full", second_order="linearize")
    MetaConfig(model=MODEL, remat="full", second_order="autodiff")
    MetaConfig(model=MODEL, remat="full", first_order=True)  # first order: remat is allowed
    with pytest.raises(ValueError,
                       match="second_order=.hessian. is not one of hvp, linearize, autodiff"):
        MetaConfig(model=MODEL, second_order="hessian")

