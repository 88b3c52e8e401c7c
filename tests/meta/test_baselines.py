"""Strong baselines against direct references (numpy, scikit-learn), on the same episodes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from eval_cases import CLASSES, MODEL
from eval_cases import data, encoders  # noqa: F401 -- shared fixtures

from jaxmaml.meta import baselines
from jaxmaml.data.episodes import EpisodeSampler
from jaxmaml.run.protocol import BASELINES, METHODS, evaluate, mean_ci95
from jaxmaml.meta.config import MetaConfig
from jaxmaml.meta.options import ProtoNetOptions
from jaxmaml.models.bert import encode


def _np_sentence_features(encoder, data):
    """Mean over non-pad tokens of the last hidden states, L2-normalized (numpy)."""
    h = np.asarray(encode(encoder, MODEL, data.input_ids, data.attention_mask), np.float64)
    m = data.attention_mask[..., None]
    f = (h * m).sum(1) / m.sum(1)
    return f / np.linalg.norm(f, axis=-1, keepdims=True)


def _np_cosine_centroid_preds(s, sl, q, way):
    protos = np.stack([s[sl == k].mean(0) for k in range(way)])
    protos /= np.linalg.norm(protos, axis=-1, keepdims=True)
    return (q @ protos.T).argmax(-1)


def _sklearn_probe_preds(s, sl, q, c=baselines.PROBE_C):
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=c, tol=1e-12, max_iter=100_000).fit(s, sl)
    return lr.predict(q)


def test_every_frozen_baseline_matches_its_reference_on_the_same_episodes(data, encoders):
    """One evaluate() call; each method against its reference on the sampler's episodes."""
    pretrained, meta_learned = encoders
    cfg = MetaConfig(model=MODEL, way=3, pooling="cls")  # baselines pool by mean anyway
    way, shot, query, episodes, seed = 3, 2, 4, 12, 4
    methods = ("meta_learned_centroid", "meta_learned_probe", "cosine_centroid", "linear_probe",
               "nearest_centroid")
    row = evaluate({"encoder": meta_learned}, cfg, data, CLASSES, [(way, shot, query)],
                   episodes=episodes, seed=seed, methods=methods, pretrained_params=pretrained,
                   batch_tasks=episodes)[0]
    res = row["results"]
    ix = EpisodeSampler(data, CLASSES, way, shot, query, episodes, seed).indices(0)
    feats = {"pretrained": _np_sentence_features(pretrained, data),
             "meta": _np_sentence_features(meta_learned, data)}
    refs = {"cosine_centroid": ("pretrained", _np_cosine_centroid_preds),
            "meta_learned_centroid": ("meta", _np_cosine_centroid_preds),
            "linear_probe": ("pretrained", lambda s, sl, q, w: _sklearn_probe_preds(s, sl, q)),
            "meta_learned_probe": ("meta", lambda s, sl, q, w: _sklearn_probe_preds(s, sl, q))}
    accs = {}
    for method, (which, predict) in refs.items():
        f = feats[which]
        accs[method] = np.array([(predict(f[ix.support_idx[t]], ix.support_labels[t],
                                          f[ix.query_idx[t]], way) == ix.query_labels[t]).mean()
                                 for t in range(episodes)])
        assert res[method] == pytest.approx({**mean_ci95(accs[method]), "episodes": episodes},
                                            abs=1e-6), method
    # each meta-learned encoder method is paired with the original under the same classifier
    for method, vs in (("meta_learned_centroid", "cosine_centroid"),
                       ("meta_learned_probe", "linear_probe")):
        gain = row["gains"][method]
        assert gain["vs"] == vs
        assert {k: gain[k] for k in ("mean", "ci95")} == pytest.approx(
            mean_ci95(accs[method] - accs[vs]), abs=1e-6), method
    # the baselines are not all the same numbers (a reference that cannot tell them apart
    # would not test anything)
    assert res["meta_learned_centroid"] != res["cosine_centroid"]
    assert res["meta_learned_probe"] != res["linear_probe"]


def test_normalized_cosine_protonet_scores_as_its_encoder_under_a_cosine_centroid(data,
                                                                                     encoders):
    """A cosine ProtoNet with ``normalize_features`` and mean pooling classifies exactly as
    its encoder under ``cosine_centroid``: ``meta_learned == meta_learned_centroid``."""
    pretrained, meta_learned = encoders
    cfg = MetaConfig(model=MODEL, algorithm="protonet", way=3, pooling="mean",
                     protonet=ProtoNetOptions("cosine", normalize_features=True))
    res = evaluate({"encoder": meta_learned}, cfg, data, CLASSES, [(3, 2, 4)], episodes=12,
                   seed=4, methods=("meta_learned", "meta_learned_centroid"),
                   pretrained_params=pretrained, batch_tasks=12)[0]["results"]
    assert res["meta_learned"]["mean"] == pytest.approx(res["meta_learned_centroid"]["mean"],
                                                        abs=1e-6)
    assert res["meta_learned"]["ci95"] == pytest.approx(res["meta_learned_centroid"]["ci95"],
                                                        abs=1e-6)


def test_linear_probe_matches_sklearn_logistic_regression():
    """Well-conditioned case: L2-normalized features of separated classes, C = 1 and 10."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    way, shot, h, n_q = 4, 3, 24, 40
    centers = rng.normal(size=(way, h))
    for c in (1.0, 10.0):
        y = np.repeat(np.arange(way), shot)
        x = centers[y] + 1.5 * rng.normal(size=(len(y), h))
        xq = centers[rng.integers(0, way, n_q)] + 1.5 * rng.normal(size=(n_q, h))
        x, xq = (a / np.linalg.norm(a, axis=-1, keepdims=True) for a in (x, xq))
        p = jax.jit(baselines.fit_probe, static_argnums=(2, 3, 4))(
            jnp.asarray(x, jnp.float32), jnp.asarray(y), way, c, baselines.PROBE_ITERS)
        proba = np.asarray(jax.nn.softmax(jnp.asarray(xq, jnp.float32) @ p["kernel"]
                                          + p["bias"]))
        sk = LogisticRegression(C=c, tol=1e-12, max_iter=100_000).fit(x, y)
        np.testing.assert_allclose(proba, sk.predict_proba(xq), atol=1e-5)
        np.testing.assert_array_equal(proba.argmax(-1), sk.predict(xq))
        np.testing.assert_allclose(np.asarray(p["kernel"]).T, sk.coef_, atol=1e-4)


def _reference_cosine_adapt(feats, ix, way, steps, lr, scale):
    """Plain Python loop of SGD on the cosine head over fixed features (float64)."""

    def loss(w, f, y):
        wn = w / jnp.linalg.norm(w, axis=0)
        logits = scale * f @ wn
        return -jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], 1).mean()

    accs = []
    with jax.enable_x64():
        for t in range(len(ix.support_idx)):
            s, sl = feats[ix.support_idx[t]], ix.support_labels[t]
            q, ql = feats[ix.query_idx[t]], ix.query_labels[t]
            protos = np.stack([s[sl == k].mean(0) for k in range(way)])
            w = jnp.asarray((protos / np.linalg.norm(protos, axis=-1, keepdims=True)).T)
            for _ in range(steps):
                w = w - lr * jax.grad(loss)(w, jnp.asarray(s), jnp.asarray(sl))
            wn = np.asarray(w / jnp.linalg.norm(w, axis=0))
            accs.append(((q @ wn).argmax(-1) == ql).mean())
    return np.array(accs)


def test_pretrained_adapt_cosine_is_the_inner_loop_on_a_cosine_head(data, encoders):
    pretrained, meta_learned = encoders
    way, shot, query, episodes, seed = 3, 2, 4, 10, 1
    # lr large enough for the head to move away from the centroids, small enough that
    # float32 and the float64 reference stay far from argmax ties
    cfg = MetaConfig(model=MODEL, way=way, num_inner_steps=3, inner_lr=0.3, adapt="head",
                     head_init="proto", cosine_scale=10.0)
    res = evaluate({"encoder": meta_learned}, cfg, data, CLASSES, [(way, shot, query)],
                   episodes=episodes, seed=seed, pretrained_params=pretrained,
                   methods=("pretrained_adapt_cosine", "cosine_centroid"),
                   batch_tasks=episodes)[0]["results"]
    ix = EpisodeSampler(data, CLASSES, way, shot, query, episodes, seed).indices(0)
    feats = _np_sentence_features(pretrained, data)
    ref = _reference_cosine_adapt(feats, ix, way, 3, 0.3, 10.0)
    assert res["pretrained_adapt_cosine"] == pytest.approx({**mean_ci95(ref), "episodes": 10},
                                                           abs=1e-6)
    zero = _reference_cosine_adapt(feats, ix, way, 0, 0.3, 10.0)
    assert res["cosine_centroid"] == pytest.approx({**mean_ci95(zero), "episodes": 10}, abs=1e-6)
    assert not np.array_equal(ref, zero)  # the head learned something: not saturated


def test_pretrained_adapt_cosine_adapts_encoder_layers_with_the_learner_filter(data, encoders):
    """top_k_layers: the cached-bottom evaluation equals adapting the uncached encoder."""
    pretrained, _ = encoders
    way, shot, query = 3, 1, 3
    cfg = MetaConfig(model=MODEL, way=way, num_inner_steps=2, inner_lr=2.0,
                     adapt="top_k_layers", adapt_top_k=1)
    res = evaluate({"encoder": pretrained}, cfg, data, CLASSES, [(way, shot, query)],
                   episodes=8, seed=2, pretrained_params=pretrained,
                   methods=("pretrained_adapt_cosine",), batch_tasks=8)[0]["results"]
    ix = EpisodeSampler(data, CLASSES, way, shot, query, 8, 2).indices(0)
    from jaxmaml.run.protocol import _examples
    from jaxmaml.types import Episodes

    arrays = {"input_ids": data.input_ids, "attention_mask": data.attention_mask}
    eps = Episodes(_examples(arrays, ix.support_idx, ix.support_labels),
                   _examples(arrays, ix.query_idx, ix.query_labels))
    direct = baselines.cosine_adapt_eval_fn(cfg)({"encoder": pretrained}, eps)
    assert res["pretrained_adapt_cosine"] == pytest.approx(
        {**mean_ci95(np.asarray(direct["accuracy"])), "episodes": len(direct["accuracy"])},
        abs=1e-6)
    # adapting the top layer changes the result relative to the head alone
    head_only = baselines.cosine_adapt_eval_fn(cfg.replace(adapt="head"))(
        {"encoder": pretrained}, eps)
    assert not np.allclose(np.asarray(direct["accuracy"]), np.asarray(head_only["accuracy"]))


def test_methods_lists():
    assert set(BASELINES) < set(METHODS)
    assert "meta_learned" in METHODS
    assert not {"meta_learned_centroid", "meta_learned_probe"} & set(BASELINES)
