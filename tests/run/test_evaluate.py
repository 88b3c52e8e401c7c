"""Evaluation protocol: baselines against direct references, cached bottom, CIs, schema."""

import jax
import numpy as np
import pytest
from eval_cases import CLASSES, MODEL, eval_pool

from jaxmaml.data.episodes import EpisodeSampler
from jaxmaml.run.protocol import DEFAULT_METHODS, evaluate, mean_ci95
from jaxmaml.meta.config import MetaConfig
from jaxmaml.meta.outer import init_meta_params, make_eval_step
from jaxmaml.models.bert import encode, init_params
from jaxmaml.types import Episodes, Examples


@pytest.fixture(scope="module")
def data():
    return eval_pool()


@pytest.fixture(scope="module")
def encoder():
    return init_params(MODEL, jax.random.key(0))


def _direct(meta_params, cfg, data, way, shot, query, episodes, seed):
    """Per-episode accuracies computed the plain way: token episodes, no caching."""
    sampler = EpisodeSampler(data, CLASSES, way, shot, query, episodes, seed)
    ix = sampler.indices(0)
    ex = lambda idx, lab: Examples(data.input_ids[idx], data.attention_mask[idx],
                                   lab.astype(np.int32), np.ones(lab.shape, np.float32))
    eps = Episodes(ex(ix.support_idx, ix.support_labels), ex(ix.query_idx, ix.query_labels))
    return np.asarray(make_eval_step(cfg.replace(way=way))(meta_params, eps)["accuracy"]), ix


@pytest.mark.parametrize("adapt", [dict(adapt="top_k_layers", adapt_top_k=1),
                                   dict(adapt="head"), dict(adapt="all")])
def test_meta_learned_with_cached_bottom_equals_direct_evaluation(data, encoder, adapt):
    # Mean pooling: a random tiny BERT's [CLS] features are nearly identical across
    # examples, and argmax near-ties would flip under harmless float reassociation.
    cfg = MetaConfig(model=MODEL, way=3, num_inner_steps=2, inner_lr=0.5, head_init="proto",
                     pooling="mean", **adapt)
    meta_params = init_meta_params(encoder, cfg, jax.random.key(1))
    res = evaluate(meta_params, cfg, data, CLASSES, [(3, 2, 3)], episodes=20, seed=5,
                   methods=("meta_learned",), batch_tasks=20)[0]
    accs, _ = _direct(meta_params, cfg, data, 3, 2, 3, 20, 5)
    assert res["results"]["meta_learned"] == pytest.approx({**mean_ci95(accs), "episodes": 20},
                                                          abs=1e-6)


def test_nearest_centroid_matches_a_numpy_reference(data, encoder):
    cfg = MetaConfig(model=MODEL, way=4, pooling="mean")
    res = evaluate({"encoder": encoder}, cfg, data, CLASSES, [(4, 3, 2)], episodes=20,
                   seed=2, methods=("nearest_centroid",), pretrained_params=encoder,
                   batch_tasks=20)[0]
    sampler = EpisodeSampler(data, CLASSES, 4, 3, 2, 20, 2)
    ix = sampler.indices(0)
    h = np.asarray(encode(encoder, MODEL, data.input_ids, data.attention_mask))
    m = data.attention_mask[..., None]
    feats = (h * m).sum(1) / m.sum(1)
    accs = []
    for t in range(20):
        s, q = feats[ix.support_idx[t]], feats[ix.query_idx[t]]
        protos = np.stack([s[ix.support_labels[t] == k].mean(0) for k in range(4)])
        pred = ((q[:, None] - protos[None]) ** 2).sum(-1).argmin(-1)
        accs.append((pred == ix.query_labels[t]).mean())
    assert res["results"]["nearest_centroid"]["mean"] == pytest.approx(np.mean(accs), abs=1e-6)


def test_pretrained_finetune_is_the_same_inner_loop_from_the_pretrained_init(data, encoder):
    cfg = MetaConfig(model=MODEL, way=3, num_inner_steps=2, inner_lr=0.5, adapt="head")
    other = init_params(MODEL, jax.random.key(9))  # stands in for a meta-learned encoder
    res = evaluate({"encoder": other}, cfg, data, CLASSES, [(3, 1, 4)], episodes=20, seed=3,
                   pretrained_params=encoder, batch_tasks=20)[0]
    accs, _ = _direct({"encoder": encoder}, cfg, data, 3, 1, 4, 20, 3)
    assert res["results"]["pretrained_finetune"]["mean"] == pytest.approx(accs.mean(), abs=1e-6)
    assert set(res) >= {"way", "shot", "query", "episodes", "data", "split", "results"}
    assert set(res["results"]) == set(DEFAULT_METHODS)  # the default


def test_paired_gain_is_the_per_episode_difference_to_the_best_baseline(data, encoder):
    cfg = MetaConfig(model=MODEL, way=3, num_inner_steps=2, inner_lr=0.5, adapt="head",
                     pooling="mean")
    other = init_params(MODEL, jax.random.key(9))  # stands in for a meta-learned encoder
    res = evaluate({"encoder": other}, cfg, data, CLASSES, [(3, 1, 4)], episodes=20, seed=3,
                   methods=("meta_learned", "pretrained_finetune"), pretrained_params=encoder,
                   batch_tasks=20)[0]
    meta, _ = _direct({"encoder": other}, cfg, data, 3, 1, 4, 20, 3)
    pre, _ = _direct({"encoder": encoder}, cfg, data, 3, 1, 4, 20, 3)
    diff = meta.astype(np.float64) - pre
    assert np.any(diff != 0)  # the two encoders disagree, so the check can fail
    gain = res["gains"]["meta_learned"]
    assert gain["vs"] == "pretrained_finetune"
    assert gain["mean"] == pytest.approx(diff.mean(), abs=1e-6)
    assert gain["ci95"] == pytest.approx(1.96 * diff.std(ddof=1) / np.sqrt(20), abs=1e-6)
    assert "meta_learned_centroid" not in res["gains"]  # its methods were not evaluated


def test_episode_count_settings_and_ci(data, encoder):
    cfg = MetaConfig(model=MODEL, way=2, num_inner_steps=1, adapt="head")
    out = evaluate({"encoder": encoder}, cfg, data, CLASSES, [(2, 1, 2), (3, 2, 2)],
                   episodes=25, seed=0, methods=("meta_learned",), batch_tasks=10)
    assert [(r["way"], r["shot"], r["episodes"]) for r in out] == [(2, 1, 25), (3, 2, 25)]
    for r in out:
        ci = r["results"]["meta_learned"]["ci95"]
        assert 0 < ci < 0.5
    vals = np.array([0.5, 0.7, 0.9, 0.6])
    assert mean_ci95(vals)["ci95"] == pytest.approx(1.96 * vals.std(ddof=1) / 2)


def test_bad_requests_are_explained(data, encoder):
    cfg = MetaConfig(model=MODEL, way=3)
    with pytest.raises(ValueError, match="unknown evaluation method"):
        evaluate({"encoder": encoder}, cfg, data, CLASSES, [(3, 1, 1)], methods=("knn",))
    with pytest.raises(ValueError, match="need pretrained_params"):
        evaluate({"encoder": encoder}, cfg, data, CLASSES, [(3, 1, 1)])
    with pytest.raises(ValueError, match="classes not in the data"):
        evaluate({"encoder": encoder}, cfg, data, ["nope"], [(3, 1, 1)],
                 methods=("meta_learned",))


def test_per_episode_accuracies_are_the_ones_the_means_and_gains_come_from(data, encoder):
    cfg = MetaConfig(model=MODEL, way=3, num_inner_steps=2, inner_lr=0.5, adapt="head",
                     pooling="mean")
    other = init_params(MODEL, jax.random.key(9))  # stands in for a meta-learned encoder
    kw = dict(episodes=20, seed=3, methods=("meta_learned", "pretrained_finetune"),
              pretrained_params=encoder, batch_tasks=20)
    res = evaluate({"encoder": other}, cfg, data, CLASSES, [(3, 1, 4)], per_episode=True,
                   **kw)[0]
    assert "per_episode" not in evaluate({"encoder": other}, cfg, data, CLASSES, [(3, 1, 4)],
                                         **kw)[0]
    meta, _ = _direct({"encoder": other}, cfg, data, 3, 1, 4, 20, 3)
    pre, _ = _direct({"encoder": encoder}, cfg, data, 3, 1, 4, 20, 3)
    assert np.any(meta != pre)
    np.testing.assert_allclose(res["per_episode"]["meta_learned"], meta, atol=1e-6)
    np.testing.assert_allclose(res["per_episode"]["pretrained_finetune"], pre, atol=1e-6)
    for m, accs in res["per_episode"].items():
        assert res["results"][m]["mean"] == pytest.approx(np.mean(accs), abs=1e-6)
