"""FewShotClassifier, exports and `jaxmaml predict` on the tiny config: the same numbers as
`jaxmaml eval` on the same episodes for every learner, exports that reproduce the run,
references for unbalanced supports, and one-line errors without partial output."""

import json
import os
import warnings
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxmaml.classifier import FewShotClassifier
from jaxmaml.cli import main
from jaxmaml.run.config import dump_yaml
from jaxmaml.run.config_load import load_config
from jaxmaml.data.episodes import EpisodeSampler, TokenizedData
from jaxmaml.run.protocol import _pool, evaluate
from jaxmaml.run.data import load_text, tokenize
from jaxmaml.run.export import export
from jaxmaml.run.load import load_run
from jaxmaml.meta.registry import LEARNERS
from jaxmaml.meta.outer import make_eval_step
from jaxmaml.types import Episodes, Examples

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny.yaml"
# Per learner: what makes the tiny config (adapt: top_k_layers) valid and non-trivial.
SETTINGS = {"anil": ["meta.adapt=head"], "matchingnet": ["meta.matching.fce=true"],
            "protonet": ["meta.protonet.distance=cosine"], "fomaml": [], "reptile": [],
            "mamlpp": ["meta.first_order=false"], "metasgd": ["meta.first_order=false"]}
WAY, SHOT, QUERY, EPISODES = 3, 2, 3, 4  # 3-way: not the 2-way the tiny config trains


def _run_dir(tmp_path, name, extra=()):
    """A run directory (config.yaml only: the `init` checkpoint) of ``name`` on tiny."""
    cfg = load_config(TINY, [f"meta.algorithm={name}", *SETTINGS.get(name, []), *extra])
    run = tmp_path / f"run_{name}"
    run.mkdir()
    (run / "config.yaml").write_text(dump_yaml(cfg))
    return cfg, run


def _eval_episodes(cfg, seed=0):
    """(texts, pool row of each pool index, per-batch sampler indices) of all 8 classes."""
    ds = load_text(cfg)
    data = tokenize(cfg, ds)
    classes = list(data.class_names)
    # evaluate's own pool order, read through a fake dataset whose ids are row numbers.
    rows = _pool(TokenizedData(np.arange(len(data.labels))[:, None], np.ones((len(data.labels), 1)),
                               data.labels, data.class_names), classes, None, seed).input_ids[:, 0]
    pool = _pool(data, classes, None, seed)
    idx = EpisodeSampler(pool, classes, WAY, SHOT, QUERY, EPISODES, seed).indices(0)
    return ds.texts, rows, data, classes, pool, idx


def _clf_accuracies(clf, texts, rows, idx):
    accs, preds = [], []
    for t in range(EPISODES):
        sup = [texts[rows[i]] for i in idx.support_idx[t]]
        qry = [texts[rows[i]] for i in idx.query_idx[t]]
        pred = clf.fit(sup, idx.support_labels[t].tolist()).predict(qry)
        preds.append(pred)
        accs.append(np.mean(pred == idx.query_labels[t]))
    return np.array(accs), np.stack(preds)


# The default suite covers the inner loop with learned rates (metasgd: the MAML family's
# shared adapt/predict) and the three metric learners (extras of each kind); the other MAML
# variants (maml alone takes ~30 s here) run under -m slow.
FAST = ("metasgd", "protonet", "matchingnet", "relationnet")


@pytest.mark.parametrize("name", [n if n in FAST else pytest.param(n, marks=pytest.mark.slow)
                                  for n in sorted(LEARNERS)])
def test_classifier_from_run_and_export_equal_eval_on_the_same_episodes(name, tmp_path):
    cfg, run = _run_dir(tmp_path, name)
    loaded = load_run(run, "init")
    texts, rows, data, classes, pool, idx = _eval_episodes(cfg)
    # What `jaxmaml eval` computes per episode (the learner's eval step on token episodes).
    ex = lambda i, lab: Examples(pool.input_ids[i], pool.attention_mask[i],  # noqa: E731
                                 lab.astype(np.int32), np.ones(lab.shape, np.float32))
    eps = Episodes(ex(idx.support_idx, idx.support_labels), ex(idx.query_idx, idx.query_labels))
    ref = np.asarray(jax.jit(make_eval_step(cfg.meta.replace(way=WAY)))(
        loaded.meta_params, eps)["accuracy"])
    res = evaluate(loaded.meta_params, cfg.meta, data, classes, [(WAY, SHOT, QUERY)],
                   episodes=EPISODES, seed=0, methods=("meta_learned",),
                   batch_tasks=EPISODES)[0]["results"]["meta_learned"]

    clf = FewShotClassifier(loaded)
    accs, preds = _clf_accuracies(clf, texts, rows, idx)
    correct = lambda a: np.rint(np.asarray(a) * WAY * QUERY)  # noqa: E731  (f32 vs f64)
    np.testing.assert_array_equal(correct(accs), correct(ref))
    assert res["mean"] == pytest.approx(accs.mean(), abs=1e-6)
    assert 0 < accs.mean() < 1 or name in ("reptile",)  # a real, not a degenerate, check

    out = tmp_path / "export"
    export(run, out, cfg, loaded.step, loaded.meta_params["encoder"],
           meta_params=loaded.meta_params)
    info = json.loads((out / "jaxmaml.json").read_text())
    assert info["algorithm"] == name and info["seq_len"] == cfg.data.seq_len
    extras = sorted(k for k in loaded.meta_params if k != "encoder")
    assert (out / "jaxmaml_extras.safetensors").exists() == bool(extras)
    card = (out / "README.md").read_text()
    assert "FewShotClassifier.from_pretrained" in card
    assert ("SGD steps" in card) == (cfg.meta.num_inner_steps > 0)  # metric learners: none
    exported = FewShotClassifier.from_pretrained(out)
    assert exported.cfg == clf.cfg
    jax.tree.map(np.testing.assert_array_equal, exported.meta_params,
                 jax.device_get(loaded.meta_params))
    accs_x, preds_x = _clf_accuracies(exported, texts, rows, idx)
    np.testing.assert_array_equal(preds_x, preds)
    np.testing.assert_array_equal(correct(accs_x), correct(ref))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 2-step relationnet run (a meta-learned relation MLP in the checkpoint; no inner
    loop, so it compiles fast) and its export."""
    root = tmp_path_factory.mktemp("fewshot")
    run, out = root / "run", root / "export"
    assert main(["train", str(TINY), "--out", str(run), "--no-progress", "--set",
                 "meta.algorithm=relationnet", "--set", "train.steps=2", "--set",
                 "train.eval_every=0", "--set", "train.save_every=2"]) == 0
    assert main(["export", str(run), str(out)]) == 0
    return run, out


def _unbalanced():
    texts = ["dog cat bird", "cat cat dog", "fish bird dog", "car truck road",
             "road car", "truck truck car road", "car road bus", "sun moon star"]
    labels = ["animals", "animals", "animals", "vehicles", "vehicles", "vehicles",
              "vehicles", "sky"]
    return texts, labels


def test_trained_run_export_and_references(trained):
    run, out = trained
    a, b = FewShotClassifier.from_run(run), FewShotClassifier.from_pretrained(out)
    assert a.step == b.step == 2
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(a.meta_params), b.meta_params)
    texts, labels = _unbalanced()  # 3 classes (trained 2-way), shots 3/4/1, string labels
    new = ["bird dog", "bus road", "star sun moon", "cat"]
    p = a.fit(texts, labels).predict_proba(new)
    assert list(a.classes_) == ["animals", "sky", "vehicles"]
    np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-6)
    assert p.shape == (4, 3) and (p > 0).all()
    np.testing.assert_array_equal(b.fit(texts, labels).predict(new), a.predict(new))
    np.testing.assert_array_equal(a.predict(new), a.classes_[p.argmax(1)])


def test_unbalanced_protonet_predictions_match_a_numpy_reference(tmp_path):
    cfg, run = _run_dir(tmp_path, "protonet", ["meta.protonet.distance=sqeuclidean"])
    clf = FewShotClassifier.from_run(run, "init", batch_size=4)  # several batches
    texts, labels = _unbalanced()
    new = ["bird dog", "bus road", "star sun moon", "cat", "car", "moon"]
    clf.fit(texts, labels)
    s, q = clf.embed(texts), clf.embed(new)
    protos = np.stack([s[np.array(labels) == c].mean(0) for c in clf.classes_])
    ref = -((q[:, None] - protos[None]) ** 2).sum(-1)
    ref = np.exp(ref - ref.max(1, keepdims=True))
    np.testing.assert_allclose(clf.predict_proba(new), ref / ref.sum(1, keepdims=True),
                               rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(clf.predict(new), clf.classes_[ref.argmax(1)])


@pytest.mark.torch
def test_normalized_protonet_export_is_a_normalizing_sentence_transformer(tmp_path):
    """``meta.protonet.normalize_features``: ``embed`` gives unit rows, prototypes are their class
    means (numpy), and the export's sentence-transformers layout ends in ``Normalize`` (as
    all-MiniLM-L6-v2's does), so ``SentenceTransformer.encode`` equals ``embed``."""
    st = pytest.importorskip("sentence_transformers")
    cfg, run = _run_dir(tmp_path, "protonet", ["meta.protonet.normalize_features=true",
                                               "meta.pooling=mean"])
    loaded = load_run(run, "init")
    out = export(run, tmp_path / "export", cfg, 0, loaded.meta_params["encoder"],
                 meta_params=loaded.meta_params)
    texts, labels = _unbalanced()
    new = ["bird dog", "bus road", "star sun moon", "cat"]
    clf = FewShotClassifier.from_pretrained(out).fit(texts, labels)
    s, q = clf.embed(texts), clf.embed(new)
    np.testing.assert_allclose(np.linalg.norm(s, axis=1), 1.0, rtol=1e-5)
    protos = np.stack([s[np.array(labels) == c].mean(0) for c in clf.classes_])
    cos = q @ (protos / np.linalg.norm(protos, axis=1, keepdims=True)).T
    np.testing.assert_array_equal(clf.predict(new), clf.classes_[cos.argmax(1)])
    model = st.SentenceTransformer(str(out), device="cpu")
    assert type(model[-1]).__name__ == "Normalize"
    np.testing.assert_allclose(model.encode(new), q, atol=1e-5, rtol=0)


@pytest.mark.torch
def test_sentence_transformers_loads_the_export_with_the_runs_pooling(trained):
    st = pytest.importorskip("sentence_transformers")
    _, out = trained
    clf = FewShotClassifier.from_pretrained(out)
    texts = ["dog cat bird", "car", "sun moon star star star road car truck bus fish"]
    model = st.SentenceTransformer(str(out), device="cpu")
    np.testing.assert_allclose(model.encode(texts), clf.embed(texts), atol=1e-5, rtol=0)


@pytest.mark.slow
@pytest.mark.torch
@pytest.mark.minilm
def test_minilm_export_is_a_sentence_transformer_with_the_runs_pooling(tmp_path, minilm_path):
    """all-MiniLM-L6-v2 (model.name minilm) through the quickstart config (mean pooling)."""
    st = pytest.importorskip("sentence_transformers")
    cfg = load_config(ROOT / "configs" / "quickstart.yaml")
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(dump_yaml(cfg))
    loaded = load_run(run, "init")
    out = export(run, tmp_path / "export", cfg, 0, loaded.meta_params["encoder"],
                 meta_params=loaded.meta_params)
    texts = ["the cat purred on the mat", "a", "stocks fell sharply as the bank raised "
             "interest rates again, in a sentence longer than the run's twenty-four tokens"]
    clf = FewShotClassifier.from_pretrained(out)
    model = st.SentenceTransformer(str(out), device="cpu")
    # the base model's own length (256), not the run's 24, in both: long texts are not cut
    assert model.max_seq_length == clf.seq_len == 256 > cfg.data.seq_len
    np.testing.assert_allclose(model.encode(texts), clf.embed(texts), atol=1e-5, rtol=0)
    # ... and at the run's length the export encodes exactly as the classifier told so
    short = FewShotClassifier.from_pretrained(out, seq_len=cfg.data.seq_len)
    with pytest.warns(UserWarning, match="1 of the texts to embed are longer than 24"):
        cut = short.embed(texts)
    assert np.abs(cut[2] - clf.embed(texts[2:])[0]).max() > 1e-3  # the check can fail
    model.max_seq_length = cfg.data.seq_len
    np.testing.assert_allclose(model.encode(texts), cut, atol=1e-5, rtol=0)


# ------------------------------------------------------------------------- bad input
def _write(path, rows):
    import pandas as pd
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _predict(tmp_path, model, support_rows, text_rows, *extra):
    sup = _write(tmp_path / "support.csv", support_rows)
    txt = _write(tmp_path / "texts.csv", text_rows)
    out = tmp_path / "pred.csv"
    rc = main(["predict", str(model), "--support", str(sup), "--texts", str(txt), "--out",
               str(out), "--no-progress", *extra])
    return rc, out


GOOD_SUPPORT = {"text": ["dog cat", "cat bird", "car road", "truck car"],
                "label": ["animals", "animals", "vehicles", "vehicles"]}
GOOD_TEXTS = {"text": ["bird", "road truck"], "id": [7, 8]}


def test_predict_cli_writes_rows_plus_predictions(trained, tmp_path, capsys):
    run, out_dir = trained
    rc, out = _predict(tmp_path, out_dir, GOOD_SUPPORT, GOOD_TEXTS, "--proba")
    assert rc == 0, capsys.readouterr().err
    import pandas as pd
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # normal permissions, not mkstemp's
    df = pd.read_csv(out)
    assert list(df.columns) == ["text", "id", "prediction", "proba_animals", "proba_vehicles"]
    np.testing.assert_allclose(df[["proba_animals", "proba_vehicles"]].sum(1), 1.0, rtol=1e-6)
    clf = FewShotClassifier.from_pretrained(out_dir).fit(GOOD_SUPPORT["text"],
                                                         GOOD_SUPPORT["label"])
    assert list(df["prediction"]) == list(clf.predict(GOOD_TEXTS["text"]))
    jl = tmp_path / "pred.jsonl"
    assert main(["predict", str(run), "--support", str(tmp_path / "support.csv"),
                 "--texts", str(tmp_path / "texts.csv"), "--out", str(jl)]) == 0
    rows = [json.loads(line) for line in jl.read_text().splitlines()]
    assert [r["prediction"] for r in rows] == list(df["prediction"]) and rows[0]["id"] == 7


@pytest.mark.parametrize("case,support,texts,message", [
    ("missing label column", {"text": ["a dog", "a car"], "y": ["x", "z"]}, GOOD_TEXTS,
     "has no column 'label'"),
    ("missing text column", GOOD_SUPPORT, {"body": ["dog"]}, "has no column 'text'"),
    ("empty support text", {"text": ["dog", " ", "car"], "label": ["a", "a", "b"]},
     GOOD_TEXTS, "row 1 has an empty text"),
    ("empty texts", GOOD_SUPPORT, {"text": ["dog", ""]}, "row 1 has an empty text"),
    ("no texts", GOOD_SUPPORT, {"text": []}, "has no rows"),
    ("unlabelled support row", {"text": ["dog", "cat", "car"], "label": ["a", None, "b"]},
     GOOD_TEXTS, "row 1 has no label"),
    ("single class", {"text": ["dog", "cat"], "label": ["a", "a"]}, GOOD_TEXTS,
     "single class"),
])
def test_predict_bad_input_one_line_error_and_no_output(trained, tmp_path, capsys, case,
                                                        support, texts, message):
    _, out_dir = trained
    capsys.readouterr()
    rc, out = _predict(tmp_path, out_dir, support, texts)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("error: ") and message in err and "\n" not in err, case
    assert not out.exists() and not list(tmp_path.glob(".pred.csv*"))


def test_probe_head_is_logistic_regression_on_the_sentence_features(trained, tmp_path):
    """``head="probe"``: scikit-learn's ``LogisticRegression(C=1)`` on the encoder's
    normalized mean-pooled features (``jaxmaml eval``'s ``meta_learned_probe``), unbalanced
    shots, several batches; ``jaxmaml predict --head probe`` writes the same labels."""
    from sklearn.linear_model import LogisticRegression

    from jaxmaml.meta.baselines import sentence_features

    _, out_dir = trained
    clf = FewShotClassifier.from_pretrained(out_dir, head="probe", batch_size=4)
    texts, labels = _unbalanced()
    new = ["bird dog", "bus road", "star sun moon", "cat", "car", "moon"]
    p = clf.fit(texts, labels).predict_proba(new)

    def feats(t):
        return sentence_features(clf.meta_params["encoder"], clf.cfg, *clf._tokenize(t))

    ref = LogisticRegression(C=1.0, tol=1e-12, max_iter=100_000).fit(feats(texts), labels)
    assert list(ref.classes_) == list(clf.classes_)
    np.testing.assert_allclose(p, ref.predict_proba(feats(new)), atol=1e-4)
    np.testing.assert_array_equal(clf.predict(new), clf.classes_[p.argmax(1)])
    learner = FewShotClassifier.from_pretrained(out_dir).fit(texts, labels).predict_proba(new)
    assert np.abs(learner - p).max() > 1e-2  # the heads differ, so the check can fail
    assert "head=probe" in repr(clf)

    rc, out = _predict(tmp_path, out_dir, GOOD_SUPPORT, GOOD_TEXTS, "--head", "probe")
    assert rc == 0
    import pandas as pd
    clf.fit(GOOD_SUPPORT["text"], GOOD_SUPPORT["label"])
    assert list(pd.read_csv(out)["prediction"]) == list(clf.predict(GOOD_TEXTS["text"]))
    with pytest.raises(ValueError, match="head='knn': use one of learner, probe"):
        FewShotClassifier.from_pretrained(out_dir, head="knn")


def test_class_with_no_support_example(trained):
    _, out_dir = trained
    clf = FewShotClassifier.from_pretrained(out_dir)
    with pytest.raises(ValueError, match="call fit"):
        clf.predict(["dog"])
    with pytest.raises(ValueError, match="class 'sky' has no support example"):
        clf.fit(["dog", "car"], ["animals", "vehicles"], classes=["animals", "sky", "vehicles"])
    with pytest.raises(ValueError, match="2 support texts but 1 labels"):
        clf.fit(["dog", "car"], ["animals"])


def test_plain_hf_directory_is_encoder_only_cosine_centroid(trained, tmp_path, capsys):
    _, out_dir = trained
    plain = tmp_path / "plain"
    plain.mkdir()
    for f in out_dir.iterdir():
        if f.is_file() and f.name in ("config.json", "model.safetensors", "vocab.txt",
                                      "tokenizer.json", "tokenizer_config.json"):
            (plain / f.name).write_bytes(f.read_bytes())
    with pytest.warns(UserWarning, match="no jaxmaml.json .*cosine-centroid head on "
                      "mean-pooled, L2-normalized"):
        clf = FewShotClassifier.from_pretrained(plain, seq_len=16)
    assert (clf.algorithm, clf.cfg.pooling, clf.cfg.protonet.distance, clf.cfg.protonet.normalize_features) == (
        "protonet", "mean", "cosine", True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc, out = _predict(tmp_path, plain, GOOD_SUPPORT, GOOD_TEXTS)
    assert rc == 0 and out.exists()


def test_non_bert_directory_is_a_one_line_error(tmp_path, capsys):
    gpt = tmp_path / "gpt"
    gpt.mkdir()
    (gpt / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    rc, out = _predict(tmp_path, gpt, GOOD_SUPPORT, GOOD_TEXTS)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "model_type='gpt2'" in err and "\n" not in err
    assert not out.exists()
    rc, out = _predict(tmp_path, tmp_path / "nowhere", GOOD_SUPPORT, GOOD_TEXTS)
    assert rc == 2 and not out.exists()


# ------------------------------------------------------------------------- learner API
def test_implied_settings_are_resolved_once_and_conflicts_are_errors():
    from jaxmaml import learners
    from jaxmaml.run.config import ConfigError
    from jaxmaml.meta.config import MetaConfig

    with pytest.raises(ConfigError, match="'anil' implies meta.adapt='head' but the config "
                       "sets meta.adapt='top_k_layers': remove meta.adapt"):
        load_config(TINY, ["meta.algorithm=anil"])  # tiny.yaml sets adapt: top_k_layers
    with pytest.raises(ValueError, match="implies meta.first_order=True"):
        learners.fomaml(first_order=False)
    cfg = MetaConfig(algorithm="protonet", num_inner_steps=4)  # unused by protonet: no error
    assert (cfg.num_inner_steps, cfg.adapt) == (0, "head")
    assert MetaConfig(algorithm="reptile").first_order
    assert load_config(TINY, ["meta.algorithm=anil", "meta.adapt=head"]).meta.adapt == "head"
    assert learners.protomaml(inner_lr=0.1).cfg.head_init == "proto"


def test_learners_doctest():
    import doctest

    from jaxmaml import learners
    assert doctest.testmod(learners).failed == 0


def test_one_compile_per_padded_shape(trained):
    from jaxmaml.classifier import _adapt_fn, _predict_fn

    _, out_dir = trained
    _adapt_fn.cache_clear()  # fresh jitted functions: other tests compiled other shapes
    _predict_fn.cache_clear()
    clf = FewShotClassifier.from_pretrained(out_dir, batch_size=16)
    texts, labels = _unbalanced()  # 8 support rows: bucket 8
    clf.fit(texts[:5] + texts[7:], labels[:5] + labels[7:])  # 6 rows: bucket 8 too
    clf.predict(["dog"])
    clf.fit(texts, labels).predict(["dog cat"] * 40)  # 3 batches of 16, the last one padded
    adapt, predict = _adapt_fn(clf.cfg, 3), _predict_fn(clf.cfg.replace(way=3))
    assert adapt._cache_size() == 1 and predict._cache_size() == 1


def test_export_keeps_a_base_sentence_encoders_max_seq_length(tmp_path):
    """sentence-transformers' max_seq_length: the longer of the run's seq_len and the base
    model's own; the run's where the base has no sentence-transformers config."""
    from jaxmaml.run.export_files import base_max_seq_length

    assert base_max_seq_length(None) is None and base_max_seq_length(tmp_path) is None
    (tmp_path / "sentence_bert_config.json").write_text('{"max_seq_length": 256}')
    assert base_max_seq_length(tmp_path) == 256
