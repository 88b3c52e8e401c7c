"""FewShotClassifier(adapt="finetune"), label texts and transductive prediction on the tiny
config: the classifier equals the library functions on the same tokens, one compile serves
every task of a shape, and `jaxmaml predict`'s flags fail in one line (exit 2)."""

from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest

from jaxmaml import adaptation
from jaxmaml.classifier import FewShotClassifier
from jaxmaml.cli import main
from jaxmaml.meta import finetune
from jaxmaml.meta.baselines import sentence_features
from jaxmaml.meta.finetune import FinetuneOptions
from jaxmaml.meta.priors import with_label_rows
from jaxmaml.meta.transductive import finetune_transductive_predict
from jaxmaml.run.config import dump_yaml
from jaxmaml.run.config_load import load_config
from jaxmaml.run.load import load_run
from jaxmaml.types import Examples

TINY = Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"

OPTS = FinetuneOptions(part="top_k", top_k=1, steps=3, lr=1e-2, head_lr=0.1)
SUPPORT = (["dog cat bird", "cat cat dog", "fish bird", "car truck road", "road car",
            "truck car road"],
           ["animals", "animals", "animals", "vehicles", "vehicles", "vehicles"])
NEW = ["bird dog", "bus road", "star sun moon", "cat", "car car", "moon"]


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    run = tmp_path_factory.mktemp("adapt") / "run"
    run.mkdir()
    (run / "config.yaml").write_text(dump_yaml(load_config(TINY, ["meta.algorithm=protonet"])))
    return run, load_run(run, "init")


def _examples(clf, texts, labels, rows):
    ids, mask = clf._tokenize(texts)
    n = len(texts)
    return Examples(np.pad(ids, ((0, rows - n), (0, 0))), np.pad(mask, ((0, rows - n), (0, 0))),
                    np.array(list(labels) + [0] * (rows - n), np.int32),
                    np.array([1.0] * n + [0.0] * (rows - n), np.float32))


def test_finetune_classifier_equals_the_library_on_the_same_tokens(loaded):
    _, model = loaded
    clf = FewShotClassifier(model, adapt="finetune", finetune=OPTS)
    texts, labels = SUPPORT
    p = clf.fit(texts, labels, label_texts={"animals": "animals", "sky": "the sky"}
                ).predict_proba(NEW)
    assert list(clf.classes_) == ["animals", "sky", "vehicles"]  # sky: zero-shot
    y = [list(clf.classes_).index(c) for c in labels]
    support = with_label_rows(_examples(clf, texts, y, 8), adaptation.label_rows(
        clf._tokenize, ["animals", "the sky", None]))
    encoder, cfg = model.meta_params["encoder"], model.meta
    tp = jax.jit(finetune.finetune_adapt, static_argnums=(2, 3, 4))(encoder, support, 3, OPTS,
                                                                    cfg)
    ref = jax.nn.softmax(jax.jit(finetune.finetune_predict, static_argnums=(2, 3))(
        tp, _examples(clf, NEW, [0] * 6, 6), OPTS, cfg))
    np.testing.assert_allclose(p, ref, atol=1e-5)
    top = lambda enc: enc["encoder"]["layer"]["1"]["output"]["dense"]["kernel"]  # noqa: E731
    assert not np.allclose(top(clf.task_params_["encoder"]), top(encoder), atol=1e-4)
    # transductive: the library's refinement over all of NEW
    pt = clf.predict_proba(NEW, transductive=True)
    ref_t = jax.nn.softmax(jax.jit(finetune_transductive_predict, static_argnums=(3, 4))(
        tp, support, _examples(clf, NEW, [0] * 6, 8), OPTS, cfg))[:6]
    np.testing.assert_allclose(pt, ref_t, atol=1e-5)
    assert not np.allclose(pt, p, atol=1e-3)
    np.testing.assert_array_equal(clf.predict(NEW, transductive=True),
                                  clf.classes_[pt.argmax(1)])


def test_one_compile_serves_every_task_of_a_shape(loaded, monkeypatch):
    _, model = loaded
    traces = {"adapt": 0, "predict": 0}

    def counting(name, fn):
        def wrapped(*args, **kwargs):
            traces[name] += 1
            return fn(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(adaptation, "finetune_adapt", counting("adapt", finetune.finetune_adapt))
    monkeypatch.setattr(adaptation, "finetune_predict",
                        counting("predict", finetune.finetune_predict))
    adaptation.finetune_fit_fn.cache_clear()
    adaptation.finetune_log_proba_fn.cache_clear()
    opts = OPTS.replace(seed=123)  # options no other test compiled
    clf = FewShotClassifier(model, adapt="finetune", finetune=opts, batch_size=8)
    texts, labels = SUPPORT
    for k, n_new in ((6, 6), (5, 3), (7, 11)):  # support 5..7 rows: one bucket of 8
        clf.fit(texts[:k] if k <= 6 else texts + ["cat dog"],
                labels[:k] if k <= 6 else labels + ["animals"], label_texts=True)
        clf.predict((NEW * 2)[:n_new])
    assert traces == {"adapt": 1, "predict": 1}


def test_label_texts_forms_and_errors(loaded):
    _, model = loaded
    clf = FewShotClassifier(model, adapt="finetune", finetune=OPTS.replace(steps=0))
    texts, labels = SUPPORT
    a = clf.fit(texts, labels, label_texts=True).predict_proba(NEW)
    b = clf.fit(texts, labels, label_texts=["animals", "vehicles"]).predict_proba(NEW)
    c = clf.fit(texts, labels, label_texts={"animals": "animals", "vehicles": "vehicles"}
                ).predict_proba(NEW)
    np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(a, c, atol=1e-6)
    # only names: a zero-shot classifier whose prototypes are the names
    zs = clf.fit(["x y"], ["animals"], classes=["animals", "sky"],
                 label_texts={"sky": "sun moon star"}).predict_proba(NEW)

    def feats(texts):
        ids, mask = clf._tokenize(texts)
        return sentence_features(model.meta_params["encoder"], model.meta, ids, mask, 8)

    protos = feats(["x y", "sun moon star"])
    np.testing.assert_allclose(zs, jax.nn.softmax(OPTS.scale * feats(NEW) @ protos.T),
                               atol=1e-5)
    for bad, msg in ((["one"], "1 texts for 2 classes"), ({"zzz": "t"}, "not among"),
                     ({"animals": " "}, "non-empty"), (3, "must be True")):
        with pytest.raises(ValueError, match=msg) as e:
            clf.fit(texts, labels, classes=["animals", "vehicles"], label_texts=bad)
        assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="has no support example"):
        clf.fit(texts, labels, classes=["animals", "vehicles", "sky"])
    with pytest.raises(ValueError, match="adapt='finetune'"):
        FewShotClassifier(model).fit(texts, labels).predict(NEW, transductive=True)
    with pytest.raises(ValueError, match="adapt="):
        FewShotClassifier(model, adapt="x")
    # the learner's own adaptation takes label texts as weighted support rows too
    learner = FewShotClassifier(model).fit(texts, labels, label_texts=True)
    assert learner.predict_proba(NEW).shape == (6, 2)


def _cli(tmp_path, run, *extra):
    pd.DataFrame({"text": SUPPORT[0], "label": SUPPORT[1]}).to_csv(tmp_path / "s.csv",
                                                                   index=False)
    pd.DataFrame({"text": NEW}).to_csv(tmp_path / "t.csv", index=False)
    out = tmp_path / "p.csv"
    rc = main(["predict", str(run), "--support", str(tmp_path / "s.csv"), "--texts",
               str(tmp_path / "t.csv"), "--out", str(out), "--no-progress",
               "--checkpoint", "init", *extra])
    return rc, out


def test_predict_cli_adapt_label_texts_transductive(loaded, tmp_path, capsys):
    run, model = loaded
    names = tmp_path / "names.csv"
    pd.DataFrame({"label": ["animals", "vehicles", "sky"],
                  "text": ["animals", "vehicles", "sun moon star"]}).to_csv(names, index=False)
    rc, out = _cli(tmp_path, run, "--adapt", "finetune", "--label-texts", str(names),
                   "--transductive")
    assert rc == 0, capsys.readouterr().err
    clf = FewShotClassifier(model, adapt="finetune").fit(
        *SUPPORT, label_texts={"animals": "animals", "vehicles": "vehicles",
                               "sky": "sun moon star"})
    assert list(pd.read_csv(out)["prediction"]) == list(clf.predict(NEW, transductive=True))
    rc, out = _cli(tmp_path, run, "--adapt", "finetune", "--label-texts", "labels")
    assert rc == 0
    capsys.readouterr()
    for extra, msg in ((["--transductive"], "add --adapt finetune"),
                       (["--label-texts", str(tmp_path / "none.csv")], "does not exist"),
                       (["--label-texts", str(tmp_path / "t.csv")], "no column 'label'")):
        (tmp_path / "p.csv").unlink(missing_ok=True)
        rc, out = _cli(tmp_path, run, *extra)
        err = capsys.readouterr().err.strip()
        assert rc == 2 and msg in err and "\n" not in err, (extra, err)
        assert not out.exists()
