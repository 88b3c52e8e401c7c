"""Outer-loop options for transfer: the pull toward the pretrained weights
(``optim.pull_to_init``, L2-SP) and the outer filter (``meta.outer_regex``)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from learner_cases import CFG, _encoder, _episodes

from jaxmaml.meta.anchor import pull_penalty, pull_to_init
from jaxmaml.meta.config import MetaConfig, OptimConfig
from jaxmaml.meta.options import ProtoNetOptions
from jaxmaml.meta.outer import init_meta_params, init_state, make_meta_step, make_optimizer


@jax.jit
def _moved(tree, seed):
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return jax.tree.unflatten(treedef, [x + 0.1 * jax.random.normal(k, x.shape, x.dtype)
                                        for x, k in zip(leaves, keys)])


def _np(tree):
    return jax.tree.map(np.asarray, tree)


def test_pull_gradient_is_lambda_times_theta_minus_theta0():
    lam = 0.3
    theta0 = {"encoder": _encoder(), "lrs": {"a": jnp.ones(3)}}
    theta = _moved(theta0, seed=5)
    grads = _moved(jax.tree.map(jnp.zeros_like, theta0), seed=6)
    pull = pull_to_init(lam)
    state = pull.init(theta0)
    out = jax.jit(pull.update)(grads, state, theta)[0]
    # reference 1: the gradient of the penalty, by autodiff
    ref = jax.jit(jax.grad(lambda e: pull_penalty({"encoder": e}, theta0["encoder"], lam)))(
        theta["encoder"])
    out, grads, ref, theta, theta0 = _np((out, grads, ref, theta, theta0))
    jax.tree.map(lambda o, g, r: np.testing.assert_allclose(o, g + r, rtol=1e-6, atol=1e-7),
                 out["encoder"], grads["encoder"], ref)
    # reference 2: numpy, leaf by leaf
    jax.tree.map(lambda o, g, p, p0: np.testing.assert_allclose(
        o, g + lam * (p - p0), rtol=1e-6, atol=1e-7),
        out["encoder"], grads["encoder"], theta["encoder"], theta0["encoder"])
    np.testing.assert_array_equal(out["lrs"]["a"], grads["lrs"]["a"])  # extras: not pulled
    with pytest.raises(ValueError, match="needs the params"):
        pull.update(grads, state)


def test_make_optimizer_pulls_before_clipping_and_anchors_at_init():
    lam = 0.5
    theta0 = {"encoder": _encoder()}
    theta = _moved(theta0, seed=7)
    grads = _moved(jax.tree.map(jnp.zeros_like, theta0), seed=8)
    opt = make_optimizer(OptimConfig(name="sgd", lr=1.0, clip_norm=1.0, pull_to_init=lam))
    state = opt.init(theta0)
    updates = _np(jax.jit(opt.update)(grads, state, theta)[0])
    grads, theta, theta0 = _np((grads, theta, theta0))
    penalized = jax.tree.map(lambda g, p, a: g + lam * (p - a), grads, theta, theta0)
    norm = np.sqrt(sum(np.sum(x.astype(np.float64) ** 2) for x in jax.tree.leaves(penalized)))
    expected = jax.tree.map(lambda g: -g * min(1.0, 1.0 / norm), penalized)
    jax.tree.map(lambda u, e: np.testing.assert_allclose(u, e, rtol=1e-5, atol=1e-7),
                 updates, expected)
    with pytest.raises(ValueError, match="pull_to_init"):
        OptimConfig(pull_to_init=-1.0)


REGEX = r"encoder/encoder/layer/0/.*(LayerNorm/.*|bias)"


def test_outer_regex_leaves_non_matching_leaves_bit_identical():
    cfg = CFG.replace(outer_regex=REGEX, algorithm="protonet",
                      protonet=ProtoNetOptions("cosine"))
    meta_params = init_meta_params(_encoder(), cfg, jax.random.key(0))
    optimizer = make_optimizer(OptimConfig(name="adamw", lr=1e-2, weight_decay=0.1))
    state = init_state(meta_params, optimizer, jax.random.key(1))
    before = jax.tree.map(np.asarray, state.meta_params)
    new, _ = jax.jit(make_meta_step(cfg, optimizer))(state, _episodes())
    flat_before = dict(jax.tree_util.tree_flatten_with_path(before)[0])
    moved = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(new.meta_params)[0]:
        name = "/".join(str(k.key) for k in path)
        same = np.asarray(leaf).tobytes() == flat_before[path].tobytes()
        if re_match(name):
            moved.append(not same)
        else:
            assert same, name
    assert moved and all(moved)  # every matching leaf was meta-learned
    with pytest.raises(ValueError, match="outer_regex"):
        MetaConfig(outer_regex="(")


def re_match(name):
    import re
    return re.fullmatch(REGEX, name) is not None
