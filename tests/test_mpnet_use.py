"""An MPNet encoder end to end, on the tiny config with ``model.model_type=mpnet`` (a random
2-layer MPNet): meta-training steps, the export read by transformers and
sentence-transformers as the run computes it, and a fine-tuned classifier with class names
saved and reloaded."""

import warnings
from pathlib import Path

import numpy as np
import pytest

from jaxmaml.classifier import FewShotClassifier
from jaxmaml.meta.finetune import FinetuneOptions
from jaxmaml.run.config import dump_yaml
from jaxmaml.run.config_load import load_config
from jaxmaml.run.export import export
from jaxmaml.run.load import load_run
from jaxmaml.run.train import train

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["dog cat bird", "cat cat dog", "fish bird dog", "apple bread soup", "rice cake",
         "cheese cheese bread rice", "soup apple cake", "rain snow storm"]
LABELS = ["animals", "animals", "animals", "food", "food", "food", "food", "weather"]
NEW = ["bird dog", "bread soup", "sunny wind rain", "cat"]
MPNET = ["model.model_type=mpnet", "meta.algorithm=protonet", "meta.protonet.distance=cosine",
         "meta.protonet.normalize_features=true", "meta.pooling=mean", "train.steps=2",
         "train.eval_every=0", "train.save_every=2"]


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


@pytest.fixture(scope="module")
def mpnet_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mpnet")
    cfg = load_config(ROOT / "configs" / "tiny.yaml", MPNET)
    run = tmp / "run"
    run.mkdir()
    (run / "config.yaml").write_text(dump_yaml(cfg))
    _quiet(train, cfg, run)
    loaded = load_run(run, "latest")
    out = export(run, tmp / "export", cfg, loaded.step, loaded.meta_params["encoder"],
                 meta_params=loaded.meta_params)
    return cfg, run, loaded, out


def test_meta_training_moves_the_mpnet_encoder_and_its_position_bias(mpnet_run):
    cfg, run, loaded, _ = mpnet_run
    assert cfg.meta.model.model_type == "mpnet" and loaded.step == 2
    init = load_run(run, "init").meta_params["encoder"]
    enc = loaded.meta_params["encoder"]
    assert "token_type_embeddings" not in enc["embeddings"]
    assert not np.allclose(enc["encoder"]["layer"]["1"]["attention"]["self"]["query"]["kernel"],
                           init["encoder"]["layer"]["1"]["attention"]["self"]["query"]["kernel"])


@pytest.mark.torch
def test_the_export_is_an_mpnet_that_transformers_and_sentence_transformers_read(mpnet_run):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    st = pytest.importorskip("sentence_transformers")
    cfg, _, loaded, out = mpnet_run
    model = transformers.AutoModel.from_pretrained(out).eval()
    assert type(model).__name__ == "MPNetModel"
    assert "An MPNet encoder (`MPNetModel`)" in (out / "README.md").read_text()
    from jaxmaml.models.bert import encode
    ids = np.array([[5, 9, 12, 7, 0, 0], [3, 4, 0, 0, 0, 0]], np.int32)
    mask = (ids != 0).astype(np.int32)
    with torch.no_grad():
        theirs = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask))
    ours = encode(loaded.meta_params["encoder"], cfg.meta.model, ids, mask)
    np.testing.assert_allclose(np.asarray(ours), theirs.last_hidden_state.numpy(), atol=1e-5,
                               rtol=0)
    clf = FewShotClassifier.from_pretrained(out)
    np.testing.assert_allclose(st.SentenceTransformer(str(out), device="cpu").encode(NEW),
                               _quiet(clf.embed, NEW), atol=1e-5, rtol=0)


def test_fine_tuned_mpnet_classifier_with_names_saved_and_reloaded(mpnet_run, tmp_path):
    _, _, _, out = mpnet_run
    clf = FewShotClassifier.from_pretrained(out, adapt="finetune", batch_size=4,
                                            finetune=FinetuneOptions(top_k=1, steps=2, lr=1e-2))
    _quiet(clf.fit, TEXTS, LABELS, label_texts=True)
    p, pt = _quiet(clf.predict_proba, NEW), _quiet(clf.predict_proba, NEW, transductive=True)
    again = FewShotClassifier.from_pretrained(clf.save_pretrained(tmp_path / "fitted"))
    np.testing.assert_allclose(_quiet(again.predict_proba, NEW), p, atol=1e-6)
    np.testing.assert_allclose(_quiet(again.predict_proba, NEW, transductive=True), pt,
                               atol=1e-6)
