"""bf16 mixed precision (model.dtype=bfloat16): bf16 matmul operands, float32 accumulation,
float32 master params, Optax state, LayerNorm/softmax, losses and the inner-loop update.

References: ``mixed_einsum`` against float32 einsums of bf16-rounded operands (what the
definition says, independent of the custom VJP), the float32 model, and the jaxpr of the
real meta-step (every large matmul, forward, backward and Hessian-vector product, is
bf16 x bf16 -> f32).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmaml.bench.flops import _sub_jaxprs
from jaxmaml.data.synthetic import synthetic_episodes
from jaxmaml.meta import outer
from jaxmaml.meta.config import MetaConfig, OptimConfig
from jaxmaml.models import precision
from jaxmaml.models.bert import BertConfig, encode, init_params

VOCAB = 128
F32 = BertConfig.tiny(vocab_size=VOCAB)
BF16 = F32.replace(dtype="bfloat16")
bf = lambda x: x.astype(jnp.bfloat16).astype(jnp.float32)  # noqa: E731  round to bf16


def _rand(key, *shape):
    return jax.random.normal(jax.random.key(key), shape, jnp.float32)


@pytest.mark.parametrize("spec,sa,sb", [
    ("...i,io->...o", (3, 5, 8), (8, 4)),                      # dense, batch-summed kernel grad
    ("ni,io->no", (5, 8), (8, 4)),                             # 2-D: kernel grad is x.T @ g
    ("...qhd,...khd->...hqk", (2, 6, 3, 4), (2, 6, 3, 4)),      # attention scores
    ("...hqk,...khd->...qhd", (2, 3, 6, 6), (2, 6, 3, 4)),      # probs . values
])
def test_mixed_einsum_is_a_float32_einsum_of_bf16_rounded_operands(spec, sa, sb):
    a, b = _rand(0, *sa), _rand(1, *sb)
    out = precision.mixed_einsum(spec, a, b)
    assert out.dtype == jnp.float32
    ref = jnp.einsum(spec, bf(a), bf(b), precision="highest")
    # the only difference left is the f32 summation order
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    # backward: the cotangent is rounded to bf16 too (autocast's rounding), then f32 sums
    g = _rand(2, *out.shape)

    @jax.jit  # compiled, operands as arguments: XLA sees (and may rewrite) the backward dots
    def vjp(a_, b_, g_):
        return jax.vjp(lambda x, y: precision.mixed_einsum(spec, x, y), a_, b_)[1](g_)

    da, db = vjp(a, b, g)
    _, ref_vjp = jax.vjp(lambda a_, b_: jnp.einsum(spec, a_, b_, precision="highest"),
                         bf(a), bf(b))
    rda, rdb = ref_vjp(bf(g))
    np.testing.assert_allclose(da, rda, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(db, rdb, rtol=1e-5, atol=1e-5)
    assert da.dtype == db.dtype == jnp.float32


def test_mixed_einsum_rejects_specs_it_cannot_transpose():
    with pytest.raises(ValueError, match="summed inside one operand"):
        precision.mixed_einsum("ij,jk->k", _rand(0, 2, 3), _rand(1, 3, 4))


def test_bf16_forward_is_close_to_float32():
    params = init_params(F32, jax.random.key(0))
    ids = jax.random.randint(jax.random.key(1), (4, 16), 1, VOCAB)
    mask = jnp.ones_like(ids).at[:, 12:].set(0)
    h32 = encode(params, F32, ids, mask)
    h16 = encode(params, BF16, ids, mask)
    assert h16.dtype == jnp.bfloat16
    # Tolerance: bf16 keeps 8 significant bits (relative rounding 2^-9 per operand); the
    # LayerNorm'd hidden states are O(1), and two layers of rounded matmul inputs plus the
    # final rounding to bf16 stay within a few 2^-8: relative Frobenius error < 2^-6.
    err = jnp.linalg.norm(h16.astype(jnp.float32) - h32) / jnp.linalg.norm(h32)
    assert err < 2 ** -6, float(err)
    assert err > 0  # it really ran in bf16


def _setup(model, tasks=2):
    model = model.replace(num_hidden_layers=1)  # compile time: one layer shows every matmul
    cfg = MetaConfig(model=model, way=3, num_inner_steps=2, inner_lr=0.5)
    episodes = jax.tree.map(jnp.asarray, synthetic_episodes(
        np.random.default_rng(0), tasks, 3, 2, 2, 12, VOCAB, num_classes=10))
    encoder = init_params(model.replace(dtype="float32"), jax.random.key(1))
    return cfg, episodes, outer.init_meta_params(encoder, cfg, jax.random.key(2))


def _cosine(a, b):
    a, b = (jnp.concatenate([x.ravel() for x in jax.tree.leaves(t)]) for t in (a, b))
    return float(a @ b / jnp.linalg.norm(a) / jnp.linalg.norm(b))


def test_bf16_meta_step_keeps_float32_params_and_optimizer_state():
    cfg16, episodes, meta_params = _setup(BF16)
    cfg16 = cfg16.replace(first_order=True)  # compile time; second order: the tests below
    cfg32 = cfg16.replace(model=cfg16.model.replace(dtype="float32"))
    optimizer = outer.make_optimizer(OptimConfig(name="adamw", lr=1e-3))
    state = outer.init_state(meta_params, optimizer, jax.random.key(4))
    loss32, _ = jax.jit(outer.meta_loss, static_argnums=2)(meta_params, episodes, cfg32)
    state, metrics = jax.jit(outer.make_meta_step(cfg16, optimizer))(state, episodes)
    # query loss after 2 inner steps, bf16 vs f32 matmuls
    np.testing.assert_allclose(metrics["loss"], loss32, rtol=1e-2)
    for leaf in jax.tree.leaves((state.meta_params, state.opt_state)):
        if jnp.issubdtype(leaf.dtype, jnp.floating):
            assert leaf.dtype == jnp.float32, leaf.dtype


@pytest.mark.slow  # ~30-90 s: two second-order meta-gradient compiles
def test_bf16_meta_gradient_tracks_float32():
    cfg16, episodes, meta_params = _setup(BF16)
    cfg32 = cfg16.replace(model=cfg16.model.replace(dtype="float32"))
    grads = [jax.jit(outer.meta_grads, static_argnums=2)(meta_params, episodes, c)[1]
             for c in (cfg16, cfg32)]
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(grads[0]))
    assert _cosine(*grads) > 0.99


def _dots(jaxpr):
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            yield eqn
        for value in eqn.params.values():
            for sub in _sub_jaxprs(value):
                yield from _dots(sub)


# Second order via 'autodiff' transposes the custom VJP's backward matmuls with JAX's own
# rules (f32 cotangent x bf16 operand): only 'hvp' (the default), 'linearize' and first
# order are all bf16.
@pytest.mark.parametrize("how", [dict(), dict(second_order="linearize"), dict(first_order=True)])
def test_every_encoder_matmul_of_the_bf16_meta_step_is_bf16_with_f32_output(how):
    cfg, episodes, meta_params = _setup(BF16)
    cfg = cfg.replace(**how)
    jaxpr = jax.make_jaxpr(lambda p, e: outer.meta_grads(p, e, cfg))(
        meta_params, episodes).jaxpr
    flops = {"bf16": 0.0, "other": 0.0}
    for eqn in _dots(jaxpr):
        ins = {v.aval.dtype for v in eqn.invars}
        kind = ("bf16" if ins == {jnp.dtype(jnp.bfloat16)}
                and eqn.outvars[0].aval.dtype == jnp.float32 else "other")
        flops[kind] += np.prod(eqn.outvars[0].aval.shape) * np.prod(
            [eqn.invars[0].aval.shape[d] for d in eqn.params["dimension_numbers"][0][0]])
    # what stays float32: the task head, prototypes and their derivatives (tiny)
    assert flops["other"] < 0.02 * flops["bf16"], flops
