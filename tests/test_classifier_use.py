"""FewShotClassifier at use time, on the tiny config's untrained init: labels and their
order, the use-time text length (not the meta-training one) with length buckets, one warning
per call for cut or unknown-only texts, plain directories with their sentence-transformers
layout, and a fitted classifier saved and reloaded in a fresh process."""

import dataclasses
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from jaxmaml.classifier import FewShotClassifier
from jaxmaml.run.config import dump_yaml
from jaxmaml.run.config_load import load_config
from jaxmaml.run.export import export
from jaxmaml.run.load import load_run

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny.yaml"
TEXTS = ["dog cat bird", "cat cat dog", "fish bird dog", "apple bread soup", "rice cake",
         "cheese cheese bread rice", "soup apple cake", "rain snow storm"]
LABELS = ["animals", "animals", "animals", "food", "food", "food", "food", "weather"]
NEW = ["bird dog", "bread soup", "sunny wind rain", "cat"]  # every word in the vocabulary


def _run(tmp_path, algorithm="protonet", extra=()):
    """A run directory of the tiny config holding only config.yaml (the init checkpoint)."""
    cfg = load_config(TINY, [f"meta.algorithm={algorithm}", *extra])
    run = tmp_path / f"run_{algorithm}"
    run.mkdir()
    (run / "config.yaml").write_text(dump_yaml(cfg))
    return cfg, run


@pytest.fixture(scope="module")
def protonet(tmp_path_factory):
    """(cfg, run dir, export dir) of an init ProtoNet with normalized features."""
    tmp = tmp_path_factory.mktemp("use")
    cfg, run = _run(tmp, "protonet", ["meta.protonet.distance=cosine", "meta.protonet.normalize_features=true",
                                      "meta.pooling=mean"])
    loaded = load_run(run, "init")
    out = export(run, tmp / "export", cfg, 0, loaded.meta_params["encoder"],
                 meta_params=loaded.meta_params)
    return cfg, run, out


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


# ------------------------------------------------------------------------- labels
@pytest.mark.parametrize("labels,classes", [
    ([True, 1, 0, 0], None),  # True == 1 but prints differently: refused
    ([2, 0.5, False, 7], [False, 0.5, 2, 7]),  # numbers by value, bools among them
    (["b", 3, "a", 1], [1, 3, "a", "b"]),  # numbers first, then strings
    ([1, "1", 2, 2], None),  # print the same, different classes: refused
    ([np.int64(2), 1, 1, 2], [1, 2]),  # NumPy scalars are their Python values
])
def test_classes_are_sorted_by_the_documented_rule_and_collisions_refused(
        protonet, labels, classes):
    _, run, _ = protonet
    clf = FewShotClassifier.from_run(run, "init")
    texts = TEXTS[:len(labels)]
    if classes is None:
        with pytest.raises(ValueError, match="print (the same|differently)") as e:
            _quiet(clf.fit, texts, labels)
        assert "\n" not in str(e.value)
        return
    _quiet(clf.fit, texts, labels)
    assert clf.classes_.tolist() == classes
    assert [type(c) for c in clf.classes_.tolist()] == [type(c) for c in classes]
    assert set(_quiet(clf.predict, NEW).tolist()) <= set(classes)


def test_int_labels_stay_int64_and_bool_labels_bool(protonet):
    _, run, _ = protonet
    clf = FewShotClassifier.from_run(run, "init")
    assert _quiet(clf.fit, TEXTS[:4], [3, 1, 3, 1]).classes_.dtype == np.int64
    assert _quiet(clf.fit, TEXTS[:4], [True, False, True, False]).classes_.dtype == np.bool_


# ------------------------------------------------------------------------- text length
def test_use_time_length_is_the_position_limit_not_the_training_length(protonet):
    """The tiny preset has no sentence-transformers config: the limit is its position
    limit (64), not data.seq_len (16). Padding is masked, so a text's features do not
    depend on its batch's length bucket; a text longer than 16 tokens is no longer cut."""
    cfg, run, out = protonet
    a, b = FewShotClassifier.from_run(run, "init"), FewShotClassifier.from_pretrained(out)
    assert a.seq_len == b.seq_len == cfg.meta.model.max_position_embeddings == 64
    assert cfg.data.seq_len == 16
    long_text = " ".join(["dog cat bird fish"] * 10)  # 40 words: 42 tokens
    alone = a.embed(["dog"])
    together = a.embed(["dog", long_text])  # bucket 64 instead of 16
    np.testing.assert_allclose(together[0], alone[0], atol=1e-6, rtol=0)
    cut = FewShotClassifier.from_run(run, "init", seq_len=16)
    with pytest.warns(UserWarning, match="1 of the texts to embed are longer than 16 tokens"):
        short = cut.embed(["dog", long_text])
    assert np.abs(short[1] - together[1]).max() > 1e-3  # the check can fail


def test_one_warning_per_call_for_cut_and_unknown_only_texts(protonet):
    _, run, _ = protonet
    clf = FewShotClassifier.from_run(run, "init", seq_len=16, batch_size=2)
    _quiet(clf.fit, TEXTS, LABELS)
    texts = ["dog " * 30, "🙂🙂", "cat", "dog " * 30, "🙂", "bird"]  # 3 batches of 2
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        clf.predict_proba(texts)
    messages = [str(w.message) for w in seen]
    assert len(messages) == 2, messages
    assert messages[0].startswith("2 of the texts to classify are longer than 16 tokens")
    assert messages[1].startswith("2 of the texts to classify are only unknown tokens")
    assert all(w.filename == __file__ for w in seen)  # the user's line, not the library's
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf.predict_proba(["dog cat", "rice"])  # nothing to say: no warning


def test_one_compile_per_length_bucket(protonet):
    from jaxmaml.classifier import _embed_fn

    _, run, _ = protonet
    clf = FewShotClassifier.from_run(run, "init", batch_size=4)
    _embed_fn.cache_clear()
    fn = _embed_fn(clf.cfg)
    clf.embed(["dog"] * 3)
    clf.embed(["dog cat bird"] * 5)  # two batches, bucket 16
    assert fn._cache_size() == 1
    clf.embed(["dog " * 20])  # 22 tokens: bucket 32
    clf.embed(["dog " * 25, "cat"])
    assert fn._cache_size() == 2


@pytest.mark.torch
def test_sentence_transformers_encode_equals_embed_on_long_texts(protonet):
    """The export's max_seq_length is the classifier's use-time length, so texts longer
    than the meta-training length encode the same in both (up to the limit)."""
    st = pytest.importorskip("sentence_transformers")
    _, _, out = protonet
    clf = FewShotClassifier.from_pretrained(out)
    model = st.SentenceTransformer(str(out), device="cpu")
    assert model.max_seq_length == clf.seq_len == 64
    texts = ["dog", " ".join(["cat bird"] * 15), " ".join(["dog fish"] * 40)]  # 3, 32, 64+
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = clf.embed(texts)
    np.testing.assert_allclose(model.encode(texts), ours, atol=1e-5, rtol=0)


# ------------------------------------------------------------------------- plain dirs
def _plain_copy(export_dir: Path, dest: Path, st_files: bool) -> Path:
    dest.mkdir()
    names = {"config.json", "model.safetensors", "vocab.txt", "tokenizer.json",
             "tokenizer_config.json"}
    for f in export_dir.iterdir():
        if f.is_file() and f.name in names:
            (dest / f.name).write_bytes(f.read_bytes())
    if st_files:
        modules = [{"idx": 0, "name": "0", "path": "",
                    "type": "sentence_transformers.models.Transformer"},
                   {"idx": 1, "name": "1", "path": "1_Pooling",
                    "type": "sentence_transformers.models.Pooling"}]
        (dest / "modules.json").write_text(json.dumps(modules))
        (dest / "1_Pooling").mkdir()
        (dest / "1_Pooling" / "config.json").write_text(json.dumps(
            {"word_embedding_dimension": 32, "pooling_mode_cls_token": True,
             "pooling_mode_mean_tokens": False}))
        (dest / "sentence_bert_config.json").write_text('{"max_seq_length": 32}')
    return dest


def test_plain_directory_uses_its_sentence_layout_and_a_cosine_centroid(protonet, tmp_path):
    _, _, out = protonet
    bare = _plain_copy(out, tmp_path / "bare", st_files=False)
    with pytest.warns(UserWarning, match="cosine-centroid head on mean-pooled, L2-normalized "
                      "features .no sentence-transformers modules.json"):
        clf = FewShotClassifier.from_pretrained(bare)
    assert (clf.cfg.algorithm, clf.cfg.protonet.distance, clf.cfg.pooling,
            clf.cfg.protonet.normalize_features) == ("protonet", "cosine", "mean", True)
    assert clf.seq_len == 64  # the position limit
    _quiet(clf.fit, TEXTS, LABELS)
    s, q = _quiet(clf.embed, TEXTS), _quiet(clf.embed, NEW)
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, rtol=1e-5)
    protos = np.stack([s[np.array(LABELS) == c].mean(0) for c in clf.classes_])
    cos = q @ (protos / np.linalg.norm(protos, axis=1, keepdims=True)).T
    np.testing.assert_array_equal(_quiet(clf.predict, NEW), clf.classes_[cos.argmax(1)])

    declared = _plain_copy(out, tmp_path / "st", st_files=True)
    with pytest.warns(UserWarning, match="cls-pooled features as its sentence-transformers"):
        clf = FewShotClassifier.from_pretrained(declared)
    assert (clf.cfg.pooling, clf.cfg.protonet.normalize_features, clf.cfg.protonet.distance, clf.seq_len) == (
        "cls", False, "cosine", 32)


def test_plain_directory_with_an_unsupported_pooling_is_a_one_line_error(protonet, tmp_path):
    _, _, out = protonet
    d = _plain_copy(out, tmp_path / "maxpool", st_files=True)
    (d / "1_Pooling" / "config.json").write_text(json.dumps(
        {"pooling_mode_max_tokens": True, "pooling_mode_mean_tokens": False}))
    with pytest.raises(Exception, match="pools with pooling_mode_max_tokens; jaxmaml "
                       "computes mean or CLS pooling only"):
        FewShotClassifier.from_pretrained(d)


# ------------------------------------------------------------------------- save / reload
RELOAD = """
import json, sys, warnings
import numpy as np
warnings.simplefilter("ignore")
from jaxmaml.classifier import FewShotClassifier
clf = FewShotClassifier.from_pretrained(sys.argv[1])
texts = json.loads(sys.argv[2])
np.save(sys.argv[3], clf.predict_proba(texts))
print(json.dumps({"pred": clf.predict(texts).tolist(), "classes": clf.classes_.tolist(),
                  "seq_len": clf.seq_len, "batch_size": clf.batch_size, "head": clf.head}))
"""


@pytest.mark.parametrize("algorithm,head,labels", [
    ("protonet", "learner", LABELS),
    pytest.param("fomaml", "learner", [3, 3, 3, 1, 1, 1, 1, 2],  # adapted top layer + head
                 marks=pytest.mark.slow),
    pytest.param("relationnet", "probe", [True, True, True, False, False, False, False, False],
                 marks=pytest.mark.slow),  # probe weights, bool labels
])
def test_fitted_classifier_saved_and_reloaded_in_a_fresh_process(tmp_path, algorithm, head,
                                                                 labels):
    _, run = _run(tmp_path, algorithm)
    clf = FewShotClassifier.from_run(run, "init", head=head, batch_size=4)
    _quiet(clf.fit, TEXTS, labels)
    p = _quiet(clf.predict_proba, NEW)
    out = clf.save_pretrained(tmp_path / "fitted")
    info = json.loads((out / "jaxmaml_classifier.json").read_text())
    assert info["settings"] == {"seq_len": clf.seq_len, "batch_size": 4, "head": head,
                                "adapt": "learner", "label_weight": 1.0,
                                "finetune": dataclasses.asdict(clf.finetune)}
    assert (out / "encoder" / "jaxmaml.json").is_file()  # self-contained: an export inside
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    res = subprocess.run([sys.executable, "-c", RELOAD, str(out), json.dumps(NEW),
                          str(tmp_path / "p.npy")], capture_output=True, text=True, env=env,
                         cwd=tmp_path, check=True)
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["classes"] == clf.classes_.tolist() and got["pred"] == clf.predict(NEW).tolist()
    assert (got["seq_len"], got["batch_size"], got["head"]) == (clf.seq_len, 4, head)
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), p, atol=1e-6, rtol=0)


def test_save_pretrained_needs_a_fit_and_never_replaces_silently(protonet, tmp_path):
    _, run, _ = protonet
    clf = FewShotClassifier.from_run(run, "init")
    with pytest.raises(ValueError, match="not fitted"):
        clf.save_pretrained(tmp_path / "x")
    _quiet(clf.fit, TEXTS, LABELS)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="exists and is not empty"):
        clf.save_pretrained(tmp_path / "taken")
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"
    with pytest.raises(ValueError, match="head='probe' differs from the saved fit"):
        FewShotClassifier.from_pretrained(clf.save_pretrained(tmp_path / "ok"), head="probe")


def test_predict_cli_labels_texts_with_a_saved_fitted_classifier(protonet, tmp_path, capsys):
    import pandas as pd

    from jaxmaml.cli import main

    _, run, out = protonet
    clf = _quiet(FewShotClassifier.from_run(run, "init").fit, TEXTS, LABELS)
    saved = clf.save_pretrained(tmp_path / "fitted")
    texts = tmp_path / "texts.csv"
    pd.DataFrame({"text": NEW, "id": range(len(NEW))}).to_csv(texts, index=False)
    rc = _quiet(main, ["predict", str(saved), "--texts", str(texts), "--out",
                       str(tmp_path / "p.csv"), "--proba", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    df = pd.read_csv(tmp_path / "p.csv")
    assert list(df["prediction"]) == _quiet(clf.predict, NEW).tolist()
    np.testing.assert_allclose(df[[f"proba_{c}" for c in clf.classes_]].to_numpy(),
                               _quiet(clf.predict_proba, NEW), atol=1e-6)
    capsys.readouterr()
    rc = main(["predict", str(out), "--texts", str(texts), "--out", str(tmp_path / "q.csv")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "is not a fitted classifier" in err and "--support" in err
    assert "\n" not in err and not (tmp_path / "q.csv").exists()


def test_fine_tuned_classifier_with_names_saved_and_reloaded_predicts_the_same(tmp_path):
    """adapt='finetune' + label texts, saved and reloaded: the same inductive and
    transductive probabilities (the support rows are saved for the transductive step)."""
    from jaxmaml.meta.finetune import FinetuneOptions

    _, run = _run(tmp_path)
    clf = FewShotClassifier.from_run(run, "init", adapt="finetune", batch_size=4,
                                     finetune=FinetuneOptions(top_k=1, steps=2, lr=1e-2))
    _quiet(clf.fit, TEXTS, LABELS, label_texts=True)
    p, pt = _quiet(clf.predict_proba, NEW), _quiet(clf.predict_proba, NEW, transductive=True)
    assert not np.allclose(p, pt)  # the transductive step changes something here
    out = clf.save_pretrained(tmp_path / "fitted")
    again = FewShotClassifier.from_pretrained(out)
    assert again.adapt == "finetune" and again.finetune == clf.finetune
    np.testing.assert_allclose(_quiet(again.predict_proba, NEW), p, atol=1e-6)
    np.testing.assert_allclose(_quiet(again.predict_proba, NEW, transductive=True), pt,
                               atol=1e-6)
