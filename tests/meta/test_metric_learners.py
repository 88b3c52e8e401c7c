"""Metric learners' defining math on tiny cases: ProtoNet logits, Proto-MAML's head at
step 0 == ProtoNet, Matching Networks (with and without FCE), Relation Networks, and that
padding rows change nothing."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from learner_cases import (CFG, KEY, _close, _cls, _encoder, _episodes, _norm, _task,
                           meta_grads, np_soft_kmeans, unit)

from jaxmaml.meta import encoding, heads, metric, outer
from jaxmaml.meta.options import MatchingOptions, ProtoNetOptions, RelationOptions
from jaxmaml.meta.outer import init_meta_params
from jaxmaml.meta.registry import LEARNERS, adapt_task
from jaxmaml.models.bert import encode
from jaxmaml.types import Episodes, Examples


@jax.jit
def _features(encoder, episode):
    return _cls(encoder, episode.support), _cls(encoder, episode.query)


@functools.partial(jax.jit, static_argnums=(0, 3))
def _task_loss(name, meta_params, episode, cfg):
    """``LEARNERS[name].task_loss`` for one task, jitted (eager BERT dispatch is slow)."""
    return LEARNERS[name].task_loss(meta_params, episode, cfg)


@functools.partial(jax.jit, static_argnums=(0, 3))
def _task_grad(name, meta_params, episode, cfg):
    return jax.grad(lambda mp: LEARNERS[name].task_loss(mp, episode, cfg)[0])(meta_params)


def _pad_support(ep: Episodes) -> Episodes:
    """One extra support row of junk (label 0, weight 0) that must be ignored."""
    s = ep.support
    row = lambda x, v: jnp.concatenate([x, jnp.full((1,) + x.shape[1:], v, x.dtype)])  # noqa
    return ep._replace(support=Examples(row(s.input_ids, 9), row(s.attention_mask, 1),
                                        row(s.labels, 0), row(s.weights, 0.0)))


def test_protonet_logits_are_negative_squared_distances_to_class_means():
    encoder, ep = _encoder(), _pad_support(_task(_episodes(), 0))
    s, q = _features(encoder, ep)
    logits = metric.protonet_logits(s, ep.support, q, CFG)
    s, q, labels = np.asarray(s)[:-1], np.asarray(q), np.asarray(ep.support.labels)[:-1]
    ref = np.array([[-np.sum((qi - s[labels == k].mean(0)) ** 2) for k in range(3)] for qi in q])
    np.testing.assert_allclose(logits, ref, rtol=1e-5)
    s_j, q_j = _features(encoder, ep)
    cos = metric.protonet_logits(s_j, ep.support, q_j, CFG.replace(protonet=ProtoNetOptions("cosine"),
                                                                   cosine_scale=2.0))
    c = np.stack([s[labels == k].mean(0) for k in range(3)])
    ref_cos = 2.0 * (q @ c.T) / np.linalg.norm(q, axis=1)[:, None] / np.linalg.norm(c, axis=1)
    np.testing.assert_allclose(cos, ref_cos, rtol=1e-5)
    # The learner's loss is the cross-entropy of these logits.
    loss, _ = _task_loss("protonet", {"encoder": encoder}, ep, CFG)
    ref_loss = -np.mean(jax.nn.log_softmax(ref)[np.arange(len(q)), np.asarray(ep.query.labels)])
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)


def test_protomaml_head_at_step_zero_reproduces_protonet():
    encoder, episodes = _encoder(), _episodes()
    cfg = CFG.replace(algorithm="protomaml", num_inner_steps=0)

    @jax.jit
    def both_logits(ep):
        params = adapt_task({"encoder": encoder}, ep, cfg).params
        proto_maml = heads.head_logits(params["head"], encoding.features(encoder, ep.query, cfg))
        s, q = _cls(encoder, ep.support), _cls(encoder, ep.query)
        return proto_maml, metric.protonet_logits(s, ep.support, q, cfg)

    for t in (0, 1):
        proto_maml, protonet = both_logits(_task(episodes, t))
        # Equal up to a per-row constant |q|^2: same softmax, same predictions.
        _close(jax.nn.log_softmax(proto_maml), jax.nn.log_softmax(protonet), atol=1e-4)
        np.testing.assert_array_equal(proto_maml.argmax(-1), protonet.argmax(-1))
    (l1, m1), _ = meta_grads({"encoder": encoder}, episodes, cfg)
    (l2, m2), _ = meta_grads({"encoder": encoder}, episodes, cfg.replace(algorithm="protonet"))
    np.testing.assert_allclose(l1, l2, rtol=1e-5)
    np.testing.assert_allclose(m1["accuracy"], m2["accuracy"])


def test_protonet_meta_trained_transductively_refines_prototypes_over_the_queries():
    """``protonet.transductive_iters``: the loss is the cross-entropy of the queries against
    the class means refined by soft k-means over the queries (numpy reference, float64);
    padding queries change nothing; its meta-gradient matches finite differences."""
    encoder, ep = _encoder(), _pad_support(_task(_episodes(), 0))
    cfg = CFG.replace(algorithm="protonet", cosine_scale=2.0, pooling="mean",
                      protonet=ProtoNetOptions("cosine", transductive_iters=2))
    loss, _ = _task_loss("protonet", {"encoder": encoder}, ep, cfg)

    def mean_pooled(ex):  # (the tiny model's [CLS] vectors are nearly parallel)
        h = np.asarray(jax.jit(encode, static_argnums=1)(
            encoder, CFG.model, ex.input_ids, ex.attention_mask), np.float64)
        m = np.asarray(ex.attention_mask, np.float64)[..., None]
        return (h * m).sum(1) / m.sum(1)

    s, q = mean_pooled(ep.support), mean_pooled(ep.query)
    labels, weights = np.asarray(ep.support.labels), np.asarray(ep.support.weights)
    c = np.stack([s[:-1][labels[:-1] == k].mean(0) for k in range(3)])
    protos = np_soft_kmeans(c, s, labels, weights, q, np.ones(len(q)), 2, 0.1)
    logits = 2.0 * unit(q) @ protos.T
    ref = -np.mean(jax.nn.log_softmax(logits)[np.arange(len(q)), np.asarray(ep.query.labels)])
    np.testing.assert_allclose(loss, ref, rtol=1e-5)
    inductive_cfg = cfg.replace(protonet=ProtoNetOptions("cosine"))
    inductive, _ = _task_loss("protonet", {"encoder": encoder}, ep, inductive_cfg)
    assert abs(float(loss) - float(inductive)) > 1e-3  # the refinement changed the loss
    # A padding query (weight 0) takes no part in the refinement nor the loss.
    qx = ep.query
    row = lambda x, v: jnp.concatenate([x, jnp.full((1,) + x.shape[1:], v, x.dtype)])  # noqa
    padded = ep._replace(query=Examples(row(qx.input_ids, 7), row(qx.attention_mask, 1),
                                        row(qx.labels, 1), row(qx.weights, 0.0)))
    np.testing.assert_allclose(_task_loss("protonet", {"encoder": encoder}, padded, cfg)[0],
                               loss, rtol=1e-6)
    # A training objective only: evaluation scores the learner's inductive prediction.
    episodes = _episodes()
    evaluated = jax.jit(outer.make_eval_step(cfg))({"encoder": encoder}, episodes)
    expected = jax.vmap(lambda e: _task_loss("protonet", {"encoder": encoder}, e,
                                             inductive_cfg)[1])(episodes)
    np.testing.assert_allclose(evaluated["loss"], expected["loss"], rtol=1e-6)
    assert cfg.for_inference() == inductive_cfg and inductive_cfg.for_inference() is inductive_cfg
    with jax.enable_x64(True):
        model = CFG.model.replace(dtype="float64")
        cfg64 = cfg.replace(model=model)
        mp = {"encoder": jax.tree.map(lambda x: x.astype(jnp.float64), encoder)}
        grads = _task_grad("protonet", mp, ep, cfg64)
        leaves, tree = jax.tree.flatten(mp)
        keys = jax.random.split(jax.random.key(3), len(leaves))
        v = jax.tree.unflatten(tree, [jax.random.normal(k, x.shape, x.dtype)
                                      for x, k in zip(leaves, keys)])
        v = jax.tree.map(lambda d: d / _norm(v), v)
        eps = 1e-5
        f = lambda t: float(_task_loss("protonet", jax.tree.map(  # noqa: E731
            lambda p, d: p + t * d, mp, v), ep, cfg64)[0])
        fd = (f(eps) - f(-eps)) / (2 * eps)
        analytic = float(sum(jnp.vdot(g, d) for g, d in zip(jax.tree.leaves(grads),
                                                             jax.tree.leaves(v))))
        np.testing.assert_allclose(analytic, fd, rtol=1e-6)
        assert abs(analytic) > 1e-3

# ------------------------------------------------------------------------- Matching nets
def test_matching_predictions_are_cosine_attention_weighted_labels():
    encoder, ep = _encoder(), _pad_support(_task(_episodes(), 1))
    cfg = CFG.replace(cosine_scale=3.0)
    s, q = _features(encoder, ep)
    log_p = metric.matching_log_probs(s, ep.support, q, cfg)
    s, q = np.asarray(s)[:-1], np.asarray(q)
    cos = (q @ s.T) / np.linalg.norm(q, axis=1)[:, None] / np.linalg.norm(s, axis=1)[None]
    a = np.exp(3.0 * cos)
    a /= a.sum(1, keepdims=True)
    ref = a @ np.eye(3)[np.asarray(ep.support.labels)[:-1]]
    np.testing.assert_allclose(np.exp(log_p), ref, rtol=1e-5)
    loss, metrics = _task_loss("matchingnet", {"encoder": encoder}, ep, cfg)
    labels = np.asarray(ep.query.labels)
    np.testing.assert_allclose(loss, -np.mean(np.log(ref[np.arange(len(q)), labels])), rtol=1e-5)
    np.testing.assert_allclose(metrics["accuracy"], np.mean(ref.argmax(1) == labels))


def test_matching_fce_is_support_order_invariant_and_learns():
    encoder, ep = _encoder(), _task(_episodes(), 0)
    cfg = CFG.replace(algorithm="matchingnet", matching=MatchingOptions(fce=True))
    meta_params = init_meta_params(encoder, cfg, KEY)
    loss, _ = _task_loss("matchingnet", meta_params, ep, cfg)
    perm = np.random.default_rng(0).permutation(ep.support.labels.shape[0])
    shuffled = ep._replace(support=jax.tree.map(lambda x: x[perm], ep.support))
    np.testing.assert_allclose(_task_loss("matchingnet", meta_params, shuffled, cfg)[0],
                               loss, rtol=1e-5)
    s, q = _features(encoder, ep)
    g = metric.fce_support(meta_params["fce"], s, ep.support.weights)
    f = metric.fce_query(meta_params["fce"], q, g, ep.support.weights, cfg.matching.fce_steps)
    for new, old in [(g, s), (f, q)]:  # FCE really changes both embeddings
        assert float(jnp.linalg.norm(new - old)) > 1e-2 * float(jnp.linalg.norm(old))
    grads = _task_grad("matchingnet", meta_params, ep, cfg)
    assert all(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(grads["fce"]))


# ------------------------------------------------------------------------- Relation nets
def test_relation_scores_shapes_loss_and_gradient_flow():
    encoder, ep = _encoder(), _task(_episodes(), 0)
    cfg = CFG.replace(algorithm="relationnet", relation=RelationOptions(16))
    meta_params = init_meta_params(encoder, cfg, KEY)
    s, q = _features(encoder, ep)
    scores = metric.relation_scores(meta_params["relation"], s, ep.support, q, cfg)
    assert scores.shape == (q.shape[0], 3)
    assert bool(jnp.all((scores > 0) & (scores < 1)))
    # Each score depends on its own (query, prototype) pair only.
    one = metric.relation_scores(meta_params["relation"], s, ep.support, q[2:3], cfg)
    np.testing.assert_allclose(one[0], scores[2], rtol=1e-6)
    loss, _ = _task_loss("relationnet", meta_params, ep, cfg)
    target = np.eye(3)[np.asarray(ep.query.labels)]
    np.testing.assert_allclose(loss, np.mean(np.sum((np.asarray(scores) - target) ** 2, 1)),
                               rtol=1e-5)
    grads = _task_grad("relationnet", meta_params, ep, cfg)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
    assert all(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(grads["relation"]))
    assert _norm(grads["encoder"]) > 1e-6


@pytest.mark.parametrize("name", ["protonet", "matchingnet", "relationnet"])
def test_metric_learners_ignore_padding_rows(name):
    encoder, episodes = _encoder(), _episodes()
    cfg = CFG.replace(algorithm=name, matching=MatchingOptions(fce=name == "matchingnet"))
    meta_params = init_meta_params(encoder, cfg, KEY)
    padded = jax.vmap(_pad_support)(episodes)
    (l0, m0), g0 = meta_grads(meta_params, episodes, cfg)
    (l1, m1), g1 = meta_grads(meta_params, padded, cfg)
    np.testing.assert_allclose(l1, l0, rtol=1e-5)
    np.testing.assert_allclose(m1["accuracy"], m0["accuracy"])
    _close(g1, g0, atol=1e-5)
    assert _norm(g0) > 1e-6


def test_l2_normalize_rows_columns_and_zero_vectors():
    """The one L2-normalize of the package (metric logits, prototypes, baselines, the cosine
    head): unit vectors along ``axis`` as numpy computes them; an all-zero vector stays zero."""
    x = np.array([[3.0, 4.0, 0.0], [0.0, 0.0, 0.0], [1.0, -2.0, 2.0]], np.float32)
    rows = np.asarray(encoding.l2_normalize(jnp.asarray(x)))
    np.testing.assert_allclose(rows, [[0.6, 0.8, 0.0], [0.0, 0.0, 0.0],
                                      [1 / 3, -2 / 3, 2 / 3]], rtol=1e-6)
    cols = np.asarray(encoding.l2_normalize(jnp.asarray(x), axis=0))
    np.testing.assert_allclose(cols, x / np.linalg.norm(x, axis=0), rtol=1e-6)


def test_l2_normalize_gradient_is_finite_at_a_zero_vector_and_exact_elsewhere():
    """A zero-weight padding row pools to a zero vector; its gradient must be finite, not NaN
    (NaN times the zero weight stays NaN and poisons every fine-tuned parameter): there the
    function is x / NORM_EPS, so the gradient is the upstream vector / NORM_EPS (and 0 for
    a zero upstream). Elsewhere it is the analytic (I - u u^T) / |x| times the upstream."""
    x = jnp.array([[0.0, 0.0, 0.0], [1.0, -2.0, 2.0]], jnp.float32)
    w = jnp.array([[0.3, -1.0, 2.0], [0.5, 0.25, -1.5]], jnp.float32)
    g = np.asarray(jax.grad(lambda v: (w * encoding.l2_normalize(v)).sum())(x))
    assert np.isfinite(g).all()
    np.testing.assert_allclose(g[0], np.asarray(w[0]) / encoding.NORM_EPS, rtol=1e-6)
    g0 = jax.grad(lambda v: (0.0 * encoding.l2_normalize(v)).sum())(x)
    np.testing.assert_array_equal(np.asarray(g0), 0.0)
    v, up = np.asarray(x[1], np.float64), np.asarray(w[1], np.float64)
    u = v / np.linalg.norm(v)
    np.testing.assert_allclose(g[1], (up - u * (u @ up)) / np.linalg.norm(v), rtol=1e-5)
