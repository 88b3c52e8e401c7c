"""benchmarks/setfit_episodes.py: its text episodes are the episodes ``jaxmaml eval``
scores (same rows, same order, across the protocol's batches of 20), a wrong row is
caught by the token check, a missing setfit is a one-line error, and the summary's paired
differences match a plain computation. No SetFit run."""

import importlib.util
import json

import jax
import numpy as np
import pytest
from bench_scripts import load_script

from jaxmaml.data.tokenize import TokenizedData
from jaxmaml.meta.config import MetaConfig
from jaxmaml.meta.outer import init_meta_params
from jaxmaml.models.bert import BertConfig, init_params
from jaxmaml.run import protocol

MODEL = BertConfig.tiny(vocab_size=256)


@pytest.fixture(scope="module")
def se():
    return load_script("setfit_episodes")


def _tiny_source(se):
    """8 classes of 9-16 rows, shuffled; row r's first token is r + 5 and its text
    ``"text r"``, so a gathered token row names its text."""
    rng = np.random.default_rng(0)
    labels = np.concatenate([np.full(9 + c, c) for c in range(8)])
    labels = labels[rng.permutation(len(labels))].astype(np.int32)
    ids = rng.integers(5, 256, (len(labels), 8)).astype(np.int32)
    ids[:, 0] = np.arange(len(labels)) + 5
    data = TokenizedData(ids, np.ones_like(ids), labels, tuple(f"c{i}" for i in range(8)))
    texts = [f"text {r}" for r in range(len(labels))]
    classes = ["c6", "c1", "c4", "c0", "c7"]  # a subset, not in data order
    return se.EpisodeSource(texts, data, classes, seed=3, max_per_class=10, name="tiny")


def test_text_episodes_are_the_episodes_evaluate_scores(se, monkeypatch):
    src = _tiny_source(se)
    seen = []  # the token rows evaluate() gathers: support then query, per batch of 20
    real = protocol._examples

    def spy(arrays, idx, labels):
        seen.append((np.asarray(arrays["input_ids"])[idx], labels))
        return real(arrays, idx, labels)

    monkeypatch.setattr(protocol, "_examples", spy)
    cfg = MetaConfig(model=MODEL, algorithm="protonet", way=3, pooling="mean")
    meta_params = init_meta_params(init_params(MODEL, jax.random.key(0)), cfg,
                                   jax.random.key(1))
    protocol.evaluate(meta_params, cfg, src.data, src.classes, [(3, 2, 3)], episodes=23,
                      seed=src.seed, methods=("meta_learned",),
                      max_per_class=src.max_per_class)
    assert len(seen) == 4  # two batches (23 episodes > 20), support and query each
    support = np.concatenate([seen[0][0], seen[2][0]])[:23]
    query = np.concatenate([seen[1][0], seen[3][0]])[:23]
    q_labels = np.concatenate([seen[1][1], seen[3][1]])[:23]

    episodes = se.text_episodes(src, 3, 2, 3, 23)
    assert len(episodes) == 23
    for i, ep in enumerate(episodes):
        np.testing.assert_array_equal(src.data.input_ids[ep.support_rows], support[i])
        np.testing.assert_array_equal(src.data.input_ids[ep.query_rows], query[i])
        assert ep.support == [f"text {t - 5}" for t in support[i][:, 0]]
        assert ep.query == [f"text {t - 5}" for t in query[i][:, 0]]
        np.testing.assert_array_equal(ep.query_labels, q_labels[i])
        np.testing.assert_array_equal(ep.support_labels, [0, 0, 1, 1, 2, 2])
    # the cap applies: at most max_per_class rows of a class ever appear
    used = np.concatenate([np.r_[e.support_rows, e.query_rows] for e in episodes])
    counts = np.bincount(src.data.labels[np.unique(used)], minlength=8)
    assert counts.max() <= src.max_per_class and counts[[2, 3, 5]].sum() == 0


@pytest.mark.minilm
def test_token_check_passes_the_real_rows_and_catches_a_swapped_one(se, minilm_path):
    from jaxmaml.data.tokenize import _encode, _load_tokenizer

    texts = [f"package number {i} for class {i % 4}" for i in range(40)]
    ids, mask, _ = _encode(_load_tokenizer(minilm_path), texts, 16)
    labels = np.arange(40, dtype=np.int32) % 4
    data = TokenizedData(ids, mask, labels, ("a", "b", "c", "d"))
    src = se.EpisodeSource(texts, data, ["a", "b", "c", "d"], 0, None, "t")
    ep = se.text_episodes(src, 3, 2, 2, 1)[0]
    se.check_tokens(src, ep, minilm_path)
    bad = ep._replace(query_rows=ep.query_rows[::-1])
    with pytest.raises(AssertionError, match="do not tokenize"):
        se.check_tokens(src, bad, minilm_path)


def test_missing_setfit_is_a_one_line_error(se, monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "setfit" else real(name, *a))
    assert se.main(["--source", "debian", "--episodes", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "setfit package is not installed" in err and "\n" not in err


def test_unknown_source_is_a_one_line_error(se, capsys):
    assert se.main(["--source", "nosuch", "--methods", "jaxmaml_probe"]) == 2
    err = capsys.readouterr().err.strip()
    assert "'nosuch'" in err and "\n" not in err


def test_summary_pairs_each_method_with_setfit_on_shared_episodes(tmp_path):
    report = load_script("setfit_report")
    rng = np.random.default_rng(0)
    acc = {"setfit": rng.random(6), "jaxmaml_probe": rng.random(4)}  # probe: episodes 0-3
    path = tmp_path / "x_5w1s.jsonl"
    path.write_text("".join(
        json.dumps({"source": "x", "way": 5, "shot": 1, "query": 15, "episode": i,
                    "method": m, "accuracy": a, "fit_s": 1.0 + i, "predict_s": 0.5}) + "\n"
        for m, accs in acc.items() for i, a in enumerate(accs)))
    s = report.summarize(path)
    diff = acc["jaxmaml_probe"] - acc["setfit"][:4]
    vs = s["methods"]["jaxmaml_probe"]["vs_setfit"]
    assert vs["episodes"] == 4
    assert vs["mean"] == pytest.approx(diff.mean())
    assert vs["ci95"] == pytest.approx(1.96 * diff.std(ddof=1) / 2)
    assert s["methods"]["setfit"]["mean"] == pytest.approx(acc["setfit"].mean())
    assert s["methods"]["setfit"]["fit_s"] == 3.5 and "vs_setfit" not in s["methods"]["setfit"]
    assert "| x | 5-way 1-shot | setfit | 6 |" in report.table([s])


def test_cross_pairs_each_method_with_each_of_another_encoders_on_shared_episodes(tmp_path):
    report = load_script("setfit_report")
    rng = np.random.default_rng(1)

    def write(d, acc):
        d.mkdir()
        (d / "x_5w5s.jsonl").write_text("".join(
            json.dumps({"episode": i, "method": m, "accuracy": a}) + "\n"
            for m, accs in acc.items() for i, a in enumerate(accs)))
        return d / "x_5w5s.jsonl"

    mine = {"jaxmaml_probe": rng.random(5)}
    theirs = {"jaxmaml_probe": rng.random(3), "setfit": rng.random(5)}
    rows = report.cross(write(tmp_path / "a", mine), write(tmp_path / "b", theirs))
    assert [(r["method"], r["vs"], r["episodes"]) for r in rows] == [
        ("jaxmaml_probe", "jaxmaml_probe", 3), ("jaxmaml_probe", "setfit", 5)]
    assert rows[0]["mean"] == pytest.approx((mine["jaxmaml_probe"][:3]
                                             - theirs["jaxmaml_probe"]).mean())
    assert report.main([str(tmp_path / "a"), "--against", str(tmp_path / "b")]) == 0


def test_other_finetune_options_than_an_out_dir_holds_are_refused(se, tmp_path, capsys):
    """SetFit rows may be shared; fine-tuning rows of other options may not."""
    row = {"episode": 0, "method": "setfit", "accuracy": 0.5}
    (tmp_path / "x_5w5s.jsonl").write_text(json.dumps(row) + "\n")
    se.record_options(tmp_path, {"steps": 30})  # only SetFit rows so far: recorded
    assert json.loads((tmp_path / se.OPTIONS_FILE).read_text()) == {"steps": 30}
    se.record_options(tmp_path, {"steps": 30})  # the same again: fine
    (tmp_path / se.OPTIONS_FILE).unlink()
    row = {**row, "method": "jaxmaml_finetune"}  # rows of the defaults, unrecorded
    with (tmp_path / "x_5w5s.jsonl").open("a") as f:
        f.write(json.dumps(row) + "\n")
    with pytest.raises(ValueError, match="fine-tuned with --finetune defaults, not"):
        se.record_options(tmp_path, {"steps": 30})
    assert se.main(["--data", "debian", "--methods", "jaxmaml_finetune", "--out",
                    str(tmp_path), "--finetune", "steps=30"]) == 2
    err = capsys.readouterr().err.strip()
    assert "pass another --out" in err and "\n" not in err
    assert not (tmp_path / se.OPTIONS_FILE).exists()  # a refused run writes nothing
    assert se.main(["--data", "debian", "--methods", "jaxmaml_finetune", "--out",
                    str(tmp_path), "--finetune", "stepz=30"]) == 2
    assert "KEY one of" in capsys.readouterr().err


def test_rows_of_another_encoder_than_an_out_dir_holds_are_refused(se, tmp_path, capsys):
    se.record_model(tmp_path, "/m/mpnet")  # an empty directory takes any encoder
    (tmp_path / "x_5w5s.jsonl").write_text('{"episode": 0, "method": "setfit"}\n')
    se.record_model(tmp_path, "/m/mpnet")  # the same again: fine
    with pytest.raises(ValueError, match="of the encoder /m/mpnet, not all-MiniLM-L6-v2"):
        se.record_model(tmp_path, None)
    (tmp_path / "model.json").unlink()  # rows with no record: the default encoder's
    with pytest.raises(ValueError, match="of the encoder all-MiniLM-L6-v2, not /m/mpnet"):
        se.record_model(tmp_path, "/m/mpnet")
    assert se.main(["--data", "debian", "--methods", "jaxmaml_probe", "--out", str(tmp_path),
                    "--model", "/m/mpnet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "pass another --out" in err and "\n" not in err
    assert not (tmp_path / "model.json").exists()  # a refused run writes nothing


def test_names_transductive_readout_is_the_products_centroid_names_trans(se):
    """SetFit's body read out as our recommended setting: per query, the prediction of
    ``jaxmaml eval``'s centroid + names + transductive scoring on the same features."""
    from jaxmaml.meta import priors
    from jaxmaml.run import finetune_eval

    rng = np.random.default_rng(1)
    way, shot, query = 4, 3, 6
    centres = rng.normal(size=(way, 12))
    s_labels = np.repeat(np.arange(way), shot)
    q_labels = np.repeat(np.arange(way), query)
    support = centres[s_labels] + 1.5 * rng.normal(size=(way * shot, 12))
    names = centres + 1.5 * rng.normal(size=(way, 12))
    queries = centres[q_labels] + 1.5 * rng.normal(size=(way * query, 12))
    pred = se.names_transductive_predict(support, s_labels, names, queries)
    s_f = np.concatenate([support, names])[None].astype(np.float32)
    s_l = np.concatenate([s_labels, np.arange(way)])[None]
    s_w = np.concatenate([np.ones(way * shot), np.full(way, priors.NAME_WEIGHT)])[None]
    acc = finetune_eval._centroid_acc(s_f, s_l, s_w.astype(np.float32),
                                      queries[None].astype(np.float32), q_labels[None], way=way)
    assert np.mean(pred == q_labels) == pytest.approx(float(acc["trans"][0]))
    assert float(acc["trans"][0]) != pytest.approx(float(acc["plain"][0]))  # refinement moved
