"""Soft k-means refinement (Ren et al. 2018, cosine) against a numpy reference."""

import jax
import numpy as np
import pytest
from learner_cases import np_soft_kmeans as _np_soft_kmeans, unit as _unit

from jaxmaml.meta.config import MetaConfig
from jaxmaml.meta.finetune import FinetuneOptions, finetune_adapt
from jaxmaml.meta.transductive import finetune_transductive_predict, soft_kmeans
from jaxmaml.models.bert import BertConfig, encode, init_params
from jaxmaml.types import Examples

kmeans_jit = jax.jit(soft_kmeans, static_argnames=("iters", "temperature"))


def _case(seed, way=3, n=7, m=9, h=6):
    rng = np.random.default_rng(seed)
    s, q = rng.normal(size=(n, h)), rng.normal(size=(m, h))
    sl = np.arange(n) % way
    sw = rng.uniform(0.5, 2.0, n)
    qw = np.ones(m)
    init = rng.normal(size=(way, h))
    return init, s, sl, sw, q, qw


@pytest.mark.parametrize("iters", [1, 3])
def test_soft_kmeans_equals_a_numpy_reference(iters):
    init, s, sl, sw, q, qw = _case(0)
    qw[-2:] = 0.0  # padding queries
    got = kmeans_jit(*(np.float32(a) if a.dtype.kind == "f" else a
                       for a in (init, s, sl, sw, q, qw)), iters=iters, temperature=0.2)
    ref = _np_soft_kmeans(init, s, sl, sw, q, qw, iters, 0.2)
    np.testing.assert_allclose(got, ref, atol=2e-6)
    assert not np.allclose(ref, _unit(init), atol=1e-2)  # the refinement moved the prototypes


def test_padding_queries_change_nothing_and_zero_iterations_keep_the_init():
    init, s, sl, sw, q, qw = (np.float32(a) if a.dtype.kind == "f" else a for a in _case(1))
    a = kmeans_jit(init, s, sl, sw, q, qw, iters=2, temperature=0.1)
    q_pad = np.concatenate([q, 50 * np.ones((3, q.shape[1]), np.float32)])
    b = kmeans_jit(init, s, sl, sw, q_pad, np.concatenate([qw, np.zeros(3, np.float32)]),
                   iters=2, temperature=0.1)
    np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(kmeans_jit(init, s, sl, sw, q, qw, iters=0, temperature=0.1),
                               _unit(init), atol=1e-6)


def test_transductive_predict_on_the_centroid_is_soft_kmeans_of_the_features():
    model = BertConfig.tiny()
    encoder = init_params(model, jax.random.key(1))
    rng = np.random.default_rng(2)

    def examples(n, weights):
        ids = rng.integers(1, model.vocab_size, (n, 6)).astype(np.int32)
        return Examples(ids, np.ones_like(ids), (np.arange(n) % 3).astype(np.int32),
                        np.asarray(weights, np.float32))

    support, query = examples(6, np.ones(6)), examples(8, [1] * 6 + [0, 0])
    opts, cfg = FinetuneOptions(steps=0, scale=5.0), MetaConfig(model=model, way=3)
    tp = jax.jit(finetune_adapt, static_argnums=(2, 3, 4))(encoder, support, 3, opts, cfg)
    logits = jax.jit(finetune_transductive_predict, static_argnums=(3, 4, 5, 6))(
        tp, support, query, opts, cfg, 2, 0.1)

    def feats(ex):
        h = np.asarray(encode(encoder, model, ex.input_ids, ex.attention_mask), np.float64)
        return _unit(h.mean(1))

    s, q = feats(support), feats(query)
    centroids = np.stack([s[support.labels == c].mean(0) for c in range(3)])
    protos = _np_soft_kmeans(centroids, s, support.labels, np.ones(6), q, query.weights, 2, 0.1)
    np.testing.assert_allclose(np.asarray(logits) / 5.0, q @ protos.T, atol=1e-5)
