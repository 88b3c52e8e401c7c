"""data.sources: config, combining, one source per task, sampling weights, exact resume."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from tree_asserts import assert_bits_equal

from jaxmaml.run.checkpoint import RunCheckpoints
from jaxmaml.run.config import ConfigError, to_dict
from jaxmaml.run.config_load import from_dict, load_config
from jaxmaml.data.episodes import EpisodeSampler
from jaxmaml.data.mixture import MixtureSampler, combine
from jaxmaml.data.tokenize import TokenizedData
from jaxmaml.run.data import load_data
from jaxmaml.run.train import train

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "configs" / "tiny.yaml"
TOPICS = ROOT / "tests" / "data" / "tiny_topics.csv"
PAIRS = ROOT / "tests" / "data" / "tiny_pairs.csv"
# topics: 8 classes (4 train / 2 val / 2 test) at seq_len 16; pairs: 4 classes (2 train,
# 0 val, 2 test) at seq_len 12 (padded to 16); a held-out copy of pairs is never trained on.
SOURCES = (f"[{{source: {TOPICS}, name: topics, weight: 3.0}}, "
           f"{{source: {PAIRS}, name: pairs, text_column: sentence, label_column: group, "
           f"num_train: 2, num_val: 0, num_test: 2, seq_len: 12}}, "
           f"{{source: {PAIRS}, name: held, role: heldout, text_column: sentence, "
           f"label_column: group}}]")


def _cfg(*extra):
    return load_config(TINY, [f"data.sources={SOURCES}", *extra])


# ------------------------------------------------------------------------------ config
def test_config_round_trip_and_resolution():
    cfg = _cfg()
    assert from_dict(to_dict(cfg)) == cfg
    topics, pairs, held = cfg.data.sources
    assert [s.label for s in cfg.data.sources] == ["topics", "pairs", "held"]
    r = pairs.resolve(cfg.data)
    assert (r.seq_len, r.text_column, r.num_train, r.num_val, r.sources) == (
        12, "sentence", 2, 0, ())
    assert topics.resolve(cfg.data).seq_len == 16 and held.role == "heldout"
    assert load_config(TINY).data.sources == ()  # a single data.source is unchanged


@pytest.mark.parametrize("sources, match", [
    ("[{source: x.csv, wieght: 2}]", r"data.sources\[0\].wieght.*Did you mean.*weight"),
    ("[{name: a}]", r"data.sources\[0\] needs source"),
    ("[{source: a.csv}, {source: b/a.csv}]", r"several sources named \['a'\]"),
    ("[{source: a.csv, role: heldout}]", "at least one source with role: train"),
    ("[{source: a.csv, role: test}]", r"role='test'"),
    ("[{source: a.csv, weight: 0}]", "positive number"),
    ("[{source: a.csv, seq_len: 999}]", r"seq_len=999 must lie in \[2, 64\]"),
    ("[{source: a.csv, num_val: 0}]", "meta-val classes in a training source"),
    ("[{source: a.csv, meta_train: [x, y], meta_test: [z]}]", "meta-val classes in a training"),
    ("[wordnet]", r"data.sources\[0\] must be a mapping"),
])
def test_bad_sources_are_refused(sources, match):
    with pytest.raises(ConfigError, match=match):
        load_config(TINY, [f"data.sources={sources}"])


def test_relative_source_paths_resolve_against_the_config_file(tmp_path):
    (tmp_path / "conf.yaml").write_text(TINY.read_text().replace(
        "source: ../tests/data/tiny_topics.csv", "sources: [{source: mine/topics.csv}]").replace(
        "tokenizer: ../tests", f"tokenizer: {ROOT}/tests"))
    (tmp_path / "mine").mkdir()
    shutil.copy(TOPICS, tmp_path / "mine" / "topics.csv")
    cfg = load_config(tmp_path / "conf.yaml")
    assert cfg.data.sources[0].source == str(tmp_path / "mine" / "topics.csv")
    assert cfg.data.sources[0].label == "topics"


# ------------------------------------------------------------------------------ combine
def test_combine_namespaces_offsets_and_pads():
    a = TokenizedData(np.arange(6, dtype=np.int32).reshape(2, 3) + 1, np.ones((2, 3), np.int32),
                      np.array([1, 0], np.int32), ("x", "y"))
    b = TokenizedData(np.full((3, 5), 7, np.int32), np.ones((3, 5), np.int32),
                      np.array([0, 0, 1], np.int32), ("x", "z"))
    out = combine([("a", a), ("b", b)], pad_ids=[9, 0])
    assert out.class_names == ("a/x", "a/y", "b/x", "b/z")
    np.testing.assert_array_equal(out.labels, [1, 0, 2, 2, 3])
    np.testing.assert_array_equal(out.input_ids[:2], [[1, 2, 3, 9, 9], [4, 5, 6, 9, 9]])
    np.testing.assert_array_equal(out.attention_mask[:2], [[1, 1, 1, 0, 0]] * 2)
    np.testing.assert_array_equal(out.input_ids[2:], b.input_ids)
    with pytest.raises(ValueError, match="unique"):
        combine([("a", a), ("a", b)])


# ------------------------------------------------------------------------------ sampler
@pytest.fixture(scope="module")
def combined():
    cfg = _cfg()
    data, split = load_data(cfg)
    return cfg, data, split


def test_split_is_per_source_and_heldout_is_never_trained(combined):
    cfg, data, split = combined
    s = split["sources"]
    assert [len(s["topics"][p]) for p in ("train", "val", "test")] == [4, 2, 2]
    assert [len(s["pairs"][p]) for p in ("train", "val", "test")] == [2, 0, 2]
    assert s["held"]["train"] == s["held"]["val"] == [] and len(s["held"]["test"]) == 4
    assert split["train"] == ([f"topics/{c}" for c in s["topics"]["train"]]
                              + [f"pairs/{c}" for c in s["pairs"]["train"]])
    from jaxmaml.run.data import source_classes
    assert source_classes(split, "val") == {"topics": [f"topics/{c}" for c in s["topics"]["val"]]}
    assert list(source_classes(split, "test")) == ["topics", "pairs", "held"]
    assert list(source_classes(split, "test", roles=("heldout",))) == ["held"]
    assert data.input_ids.shape == (96 * 3, 16)  # pairs padded from 12 to 16 tokens
    pairs_rows = np.flatnonzero(np.char.startswith(np.array(data.class_names), "pairs/")
                                [data.labels])
    assert data.attention_mask[pairs_rows, 12:].sum() == 0


def test_each_task_comes_from_one_source(combined):
    cfg, data, split = combined
    from jaxmaml.run.data import mixture_sampler

    sampler = mixture_sampler(cfg, data, split)
    names = np.array(data.class_names)
    allowed = {k: {f"{k}/{c}" for c in split["sources"][k]["train"]} for k in ("topics", "pairs")}
    seen = set()
    for step in range(25):
        ix = sampler.indices(step)
        src = sampler.task_sources(step)
        for t in range(cfg.train.tasks):
            source = sampler.names[src[t]]
            seen.add(source)
            chosen = names[ix.classes[t]]
            assert set(chosen) <= allowed[source] and len(set(chosen)) == cfg.meta.way
            # every row of the task is an example of the class its task-local label names
            for rows, labels in ((ix.support_idx[t], ix.support_labels[t]),
                                 (ix.query_idx[t], ix.query_labels[t])):
                np.testing.assert_array_equal(data.labels[rows], ix.classes[t][labels])
            assert not set(ix.support_idx[t]) & set(ix.query_idx[t])
    assert seen == {"topics", "pairs"}  # the held-out source is never sampled
    ep = sampler.episodes(3)
    assert ep.support.input_ids.shape == (cfg.train.tasks, 2 * cfg.train.shot, 16)


def test_sampling_follows_the_weights():
    labels = np.repeat(np.arange(6), 10).astype(np.int32)
    data = TokenizedData(np.zeros((60, 4), np.int32), np.ones((60, 4), np.int32), labels,
                         ("a/0", "a/1", "b/0", "b/1", "c/0", "c/1"))
    groups = [("a", ["a/0", "a/1"]), ("b", ["b/0", "b/1"]), ("c", ["c/0", "c/1"])]
    sampler = MixtureSampler(data, groups, [6.0, 3.0, 1.0], 2, 1, 1, tasks=50, seed=3)
    src = np.concatenate([sampler.task_sources(s) for s in range(200)])  # 10,000 tasks
    freq = np.bincount(src, minlength=3) / len(src)
    p = np.array([0.6, 0.3, 0.1])
    np.testing.assert_array_less(np.abs(freq - p), 4 * np.sqrt(p * (1 - p) / len(src)))
    # source choice agrees with the classes each task drew, and is reproducible by slice
    ix = sampler.indices(7)
    np.testing.assert_array_equal(ix.classes[:, 0] // 2, sampler.task_sources(7))
    part = sampler.indices(7, slice(10, 20))
    for a, b in zip(part, ix):
        np.testing.assert_array_equal(a, b[10:20])


def test_one_source_mixture_equals_the_episode_sampler(combined):
    cfg, data, split = combined
    classes = split["train"][:4]
    ref = EpisodeSampler(data, classes, 2, 2, 3, 8, seed=5)
    mix = MixtureSampler(data, [("topics", classes)], [1.0], 2, 2, 3, 8, seed=5)
    for step in (0, 1, 9):
        for a, b in zip(mix.indices(step), ref.indices(step)):
            np.testing.assert_array_equal(a, b)


def test_sampler_state_checks_sources():
    labels = np.repeat(np.arange(4), 5).astype(np.int32)
    data = TokenizedData(np.zeros((20, 4), np.int32), np.ones((20, 4), np.int32), labels,
                         ("a/0", "a/1", "b/0", "b/1"))
    groups = [("a", ["a/0", "a/1"]), ("b", ["b/0", "b/1"])]
    s = MixtureSampler(data, groups, [1.0, 2.0], 2, 1, 1, 4, seed=0)
    s.step = 6
    state = json.loads(json.dumps(s.state_dict()))
    t = MixtureSampler(data, groups, [1.0, 2.0], 2, 1, 1, 4, seed=0)
    t.load_state_dict(state)
    assert t.step == 6
    with pytest.raises(ValueError, match="differs"):
        MixtureSampler(data, groups, [1.0, 1.0], 2, 1, 1, 4, seed=0).load_state_dict(state)


# ------------------------------------------------------------------------------ train
@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    cfg = _cfg()
    run_dir = tmp_path_factory.mktemp("multi") / "run"
    return cfg, train(cfg, run_dir, progress=False)


def test_multisource_run_writes_per_source_split_and_val(full_run):
    cfg, result = full_run
    run = result.run_dir
    assert result.compiles == 1  # every source padded to one shape: one program
    split = json.loads((run / "split.json").read_text())
    assert split["source"] == "topics+pairs+held"
    assert set(split["sources"]) == {"topics", "pairs", "held"}
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in rows if "val_accuracy" in r]
    assert [r["step"] for r in val] == [4, 8]
    for r in val:  # only topics has meta-val classes, so the mean is its accuracy
        assert r["val_by_source"] == {"topics": r["val_accuracy"]}
    with RunCheckpoints(run / "checkpoints", read_only=True) as ckpts:
        from jaxmaml.run.state import abstract_state, initial_encoder
        restored = ckpts.restore(abstract_state(cfg, initial_encoder(cfg)), "latest")
    assert restored.sampler == {"seed": 0, "step": 8, "sources": ["topics", "pairs"],
                                "weights": [3.0, 1.0]}


def test_multisource_resume_is_bit_identical(full_run, tmp_path):
    cfg, result = full_run
    run = tmp_path / "run"
    shutil.copytree(result.run_dir, run)
    shutil.rmtree(run / "checkpoints" / "8")
    resumed = train(cfg, run, progress=False)
    assert resumed.start_step == 4 and resumed.compiles == 1
    assert ((run / "metrics.jsonl").read_text()
            == (result.run_dir / "metrics.jsonl").read_text())
    assert_bits_equal(resumed.state, result.state)


def test_data_command_prints_each_source(capsys):
    from jaxmaml.cli import main

    assert main(["data", str(TINY), "--set", f"data.sources={SOURCES}", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["source"] == "topics+pairs+held"
    held = info["sources"]["held"]
    assert held["role"] == "heldout" and held["examples"] == 96
    assert {k: len(v) for k, v in held["split"].items()} == {"train": 0, "val": 0, "test": 4}
    assert {k: len(v) for k, v in info["sources"]["pairs"]["split"].items()} == {
        "train": 2, "val": 0, "test": 2}
    assert main(["data", str(TINY), "--set", "data.sources=[{source: nope.csv}]"]) == 2
    assert "error: data.sources 'nope': cannot load" in capsys.readouterr().err


def test_eval_of_a_multisource_run_is_per_source(full_run, capsys):
    """`jaxmaml eval RUN` evaluates each source's meta-test classes (and each held-out
    source) on its own: one JSON object per (source, setting), equal to evaluating that
    source alone (`source_name`), never one pool of every source's classes."""
    from jaxmaml.cli import main
    from jaxmaml.run.evaluate import evaluate_run

    cfg, result = full_run
    methods = ["meta_learned", "cosine_centroid"]
    assert main(["eval", str(result.run_dir), "--json", "--episodes", "4", "--shot", "1",
                 "--methods", *methods]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["data"], r["domain"], r["classes"]) for r in rows] == [
        ("topics", "in-domain", 2), ("pairs", "in-domain", 2), ("held", "held-out", 4)]
    for r in rows:
        _, (alone,) = evaluate_run(cfg, result.run_dir, source_name=r["data"],
                                   settings=[(2, 1, 4)], episodes=4, methods=methods)
        assert r["results"] == alone["results"] and set(r["results"]) == set(methods)
    assert main(["eval", str(result.run_dir), "--episodes", "4", "--shot", "1",
                 "--methods", *methods]) == 0
    out = capsys.readouterr().out
    assert "meta_test of held [held-out]" in out and "meta_test of topics [in-domain]" in out


# ------------------------------------------------------------------------ label texts
@pytest.mark.parametrize("frozen", [0, 1])
def test_label_texts_end_each_training_support(combined, frozen, monkeypatch):
    """train.label_texts: each task's support is its examples, unchanged, then its classes'
    label texts in label order, bottoms included; the queries are unchanged. (The tiny
    tokenizer reads every class name as [UNK], so the texts are stood in for by one
    distinct token per class.)"""
    import dataclasses

    from jaxmaml import parallel
    from jaxmaml.meta.encoding import precompute_bottom
    from jaxmaml.run import train as train_module
    from jaxmaml.run.state import initial_encoder

    cfg, data, split = combined
    n_classes = len(data.class_names)
    ids = np.zeros((n_classes, 16), np.int32)
    ids[:, 0], ids[:, 1], ids[:, 2] = 2, 10 + np.arange(n_classes), 3
    mask = (ids > 0).astype(np.int32)
    calls = []
    monkeypatch.setattr(train_module, "class_texts",
                        lambda c, names, seq_len, source: calls.append((names, seq_len))
                        or (ids, mask))
    off = cfg.replace(meta=dataclasses.replace(cfg.meta, outer_frozen_layers=frozen))
    on = off.replace(train=dataclasses.replace(off.train, label_texts=True))
    mesh, encoder = parallel.make_mesh(cfg.parallel.mesh), initial_encoder(cfg)
    _, plain = train_module._episode_fn(off, data, split, mesh, encoder)
    sampler, named = train_module._episode_fn(on, data, split, mesh, encoder)
    assert calls == [(data.class_names, 16)]
    a, b = plain(3), named(3)
    n, way, tasks = cfg.meta.way * cfg.train.shot, cfg.meta.way, cfg.train.tasks
    assert b.support.input_ids.shape == (tasks, n + way, 16)
    for field in ("input_ids", "attention_mask", "labels", "bottom"):
        if frozen or field != "bottom":
            np.testing.assert_array_equal(getattr(b.support, field)[:, :n],
                                          getattr(a.support, field))
            np.testing.assert_array_equal(getattr(b.query, field), getattr(a.query, field))
    classes = sampler.indices(3).classes
    assert len(np.unique(classes)) > way  # the tasks differ in their classes
    np.testing.assert_array_equal(b.support.input_ids[:, n:], ids[classes])
    np.testing.assert_array_equal(b.support.attention_mask[:, n:], mask[classes])
    np.testing.assert_array_equal(b.support.labels[:, n:], np.tile(np.arange(way), (tasks, 1)))
    np.testing.assert_array_equal(b.support.weights, np.ones((tasks, n + way)))
    if frozen:
        np.testing.assert_allclose(b.support.bottom[:, n:],
                                   precompute_bottom(encoder, on.meta, ids, mask)[classes],
                                   rtol=1e-6, atol=1e-6)


def test_label_texts_run_trains(tmp_path):
    """A run with train.label_texts trains in one compiled program (support way*shot + way)."""
    cfg = _cfg("train.label_texts=true", "train.steps=2", "train.eval_every=2",
               "train.save_every=2")
    result = train(cfg, tmp_path / "run", progress=False)
    assert result.compiles == 1
    rows = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text()
            .splitlines()]
    assert np.isfinite([r["loss"] for r in rows if "loss" in r]).all()
