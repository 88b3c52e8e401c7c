"""Implicit MAML (meta.algorithm=imaml) against a dense linear solve, in float64.

Reference, independent of the custom VJP and of CG: the proximal inner loop as a Python
loop; ``H`` built with ``jax.hessian`` on the flattened adapted leaves; the meta-gradient
``x = (I + H/lam)^-1 dL_q/dphi`` by ``np.linalg.solve`` for the adapted leaves and
``dL_q/dc - M^T x / lam`` for every other leaf ``c`` (``M`` = d^2 L_s / d phi d c, the
implicit function theorem at the inner solution).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from jaxmaml.data.synthetic import synthetic_episodes
from jaxmaml.meta import encoding, filters, heads, outer
from jaxmaml.tree import unflatten
from jaxmaml.meta.config import MetaConfig
from jaxmaml.meta.options import ImamlOptions
from jaxmaml.models.bert import BertConfig, init_params

VOCAB = 128
MODEL = BertConfig.tiny(vocab_size=VOCAB, num_hidden_layers=1, dtype="float64")
LAM = 2.0


def _setup(**kw):
    cfg = MetaConfig(model=MODEL, algorithm="imaml", way=3, num_inner_steps=4, inner_lr=0.3,
                     imaml=ImamlOptions(LAM, cg_steps=kw.pop("cg_steps", 40)), **kw)
    episodes = jax.tree.map(jnp.asarray, synthetic_episodes(
        np.random.default_rng(0), 1, 3, 2, 2, 8, VOCAB, num_classes=10))
    params = init_params(MODEL, jax.random.key(1))
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(2), len(leaves))
    encoder = jax.tree.unflatten(tree, [(x + 0.05 * jax.random.normal(k, x.shape)).astype(
        jnp.float64) for x, k in zip(leaves, keys)])
    return cfg, episodes, {"encoder": encoder}


def _reference(cfg, episodes, meta_params):
    """The implicit meta-gradient of the single task's query loss, by dense linear algebra."""
    ep = jax.tree.map(lambda x: x[0], episodes)
    head = {"kernel": jnp.zeros((MODEL.hidden_size, cfg.way)), "bias": jnp.zeros(cfg.way)}
    theta, frozen = filters.partition({"encoder": meta_params["encoder"], "head": head}, cfg)
    flat_theta, unravel = ravel_pytree(theta)

    def loss(examples, phi_flat, frozen_):
        p = unflatten({**frozen_, **unravel(phi_flat)})
        feats = encoding.features(p["encoder"], examples, cfg)
        return heads.weighted_xent(heads.head_logits(p["head"], feats), examples.labels,
                                   examples.weights)[0]

    support = lambda phi, c: loss(ep.support, phi, c)  # noqa: E731
    support_grad = jax.jit(jax.grad(support))
    phi = flat_theta
    for _ in range(cfg.num_inner_steps):  # the proximal SGD loop
        phi = phi - cfg.inner_lr * (support_grad(phi, frozen) + LAM * (phi - flat_theta))
    H = jax.jit(jax.hessian(support))(phi, frozen)
    g_phi, g_c = jax.jit(jax.grad(lambda p, c: loss(ep.query, p, c), argnums=(0, 1)))(
        phi, frozen)
    x = np.linalg.solve(np.eye(len(phi)) + np.asarray(H) / LAM, np.asarray(g_phi))
    # M^T x = d/dc <grad_phi L_s(phi, c), x>
    mx = jax.jit(jax.grad(lambda c: jnp.vdot(jax.grad(support)(phi, c), x)))(frozen)
    grads = {**{k: g_c[k] - mx[k] / LAM for k in frozen}, **unravel(jnp.asarray(x))}
    return unflatten(grads)["encoder"], float(np.linalg.cond(
        np.eye(len(phi)) + np.asarray(H) / LAM))


@pytest.mark.parametrize("kw", [
    # one encoder leaf group adapted with the head: theta-part and M-part both non-trivial
    dict(adapt="regex", adapt_regex=r"encoder/encoder/layer/0/output/LayerNorm/.*"),
    # head only: the encoder's meta-gradient is all M-part, through the cached features
    pytest.param(dict(adapt="head"), marks=pytest.mark.slow),
])
def test_imaml_meta_gradient_equals_dense_linear_solve_float64(kw):
    with jax.enable_x64(True):
        cfg, episodes, meta_params = _setup(**kw)
        (loss, metrics), grads = jax.jit(outer.meta_grads, static_argnums=2)(
            meta_params, episodes, cfg)
        ref, cond = _reference(cfg, episodes, meta_params)
        assert cond > 1.01  # H matters: the solve is not the identity
        assert float(metrics["cg_residual"]) < 1e-8
        flat, flat_ref = ravel_pytree(grads["encoder"])[0], ravel_pytree(ref)[0]
        assert np.linalg.norm(flat_ref) > 1e-3
        np.testing.assert_allclose(flat, flat_ref, atol=1e-9 * np.abs(flat_ref).max())


def test_imaml_cg_residual_reported_and_few_steps_leave_some():
    with jax.enable_x64(True):
        cfg, episodes, meta_params = _setup(adapt="head", cg_steps=1)
        (_, metrics), _ = jax.jit(outer.meta_grads, static_argnums=2)(
            meta_params, episodes, cfg)
        assert 1e-6 < float(metrics["cg_residual"]) < 1.0


def test_imaml_config_validation():
    with pytest.raises(ValueError, match="imaml.lam"):
        MetaConfig(algorithm="imaml", imaml=ImamlOptions(lam=0.0))
    with pytest.raises(ValueError, match="cg_steps"):
        MetaConfig(algorithm="imaml", imaml=ImamlOptions(cg_steps=0))
