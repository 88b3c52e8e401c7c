"""Hugging Face directories in and out: real MiniLM weights, round trips, bad input."""

import json

import jax
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from jaxmaml.models.bert import BertConfig, encode, init_params
from jaxmaml.models.hf import HFCheckpointError, load_pretrained, save_pretrained

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

SENTENCES = ["A meta-learned initialization adapts in a few gradient steps.",
             "Short one.",
             "WordNet glosses make a 45-way supersense classification problem, "
             "which we split into few-shot tasks."]


@pytest.fixture(scope="module")
def minilm(minilm_path):
    params, config = load_pretrained(minilm_path)
    return params, config


@pytest.mark.torch
@pytest.mark.minilm
def test_real_minilm_matches_transformers(minilm_path, minilm):
    params, config = minilm
    assert config.num_hidden_layers == 6 and config.hidden_size == 384
    assert sum(x.size for x in jax.tree.leaves(params)) == 22_713_216
    tok = transformers.AutoTokenizer.from_pretrained(minilm_path)
    batch = tok(SENTENCES, padding=True, return_tensors="np")
    assert batch["attention_mask"].min() == 0  # the batch really has padding
    ours = np.asarray(encode(params, config, batch["input_ids"], batch["attention_mask"],
                             batch["token_type_ids"]))
    model = transformers.BertModel.from_pretrained(minilm_path, attn_implementation="eager").eval()
    with torch.no_grad():
        ref = model(**{k: torch.tensor(v) for k, v in batch.items()}).last_hidden_state.numpy()
    assert np.abs(ours - ref).max() <= 1e-4


@pytest.mark.torch
def test_round_trip_through_automodel(tmp_path, tiny_config):
    params = init_params(tiny_config, jax.random.key(3))
    out = save_pretrained(params, tiny_config, tmp_path / "export")
    params2, config2 = load_pretrained(out)
    assert config2 == tiny_config
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
                 params, params2)
    model = transformers.AutoModel.from_pretrained(out, attn_implementation="eager").eval()
    assert type(model).__name__ == "BertModel"
    ids = np.array([[2, 5, 9, 3, 0, 0], [2, 7, 7, 7, 8, 3]], np.int32)
    mask = (ids > 0).astype(np.int32)
    with torch.no_grad():
        ref = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).last_hidden_state
    np.testing.assert_allclose(np.asarray(encode(params, tiny_config, ids, mask)), ref.numpy(),
                               atol=1e-5, rtol=0)


@pytest.mark.minilm
def test_minilm_load_save_load_is_bit_identical(tmp_path, minilm_path, minilm):
    params, config = minilm
    out = save_pretrained(params, config, tmp_path / "m", tokenizer_dir=minilm_path)
    params2, config2 = load_pretrained(out)
    assert config2 == config
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
                 params, params2)
    tok = transformers.AutoTokenizer.from_pretrained(out)
    assert tok("hello world")["input_ids"][0] == tok.cls_token_id


def _write_tiny(tmp_path, config=None):
    config = config or BertConfig.tiny()
    return save_pretrained(init_params(config, jax.random.key(0)), config, tmp_path / "ckpt")


def test_not_a_bert_checkpoint(tmp_path):
    d = _write_tiny(tmp_path)
    cfg = json.loads((d / "config.json").read_text())
    cfg["model_type"] = "roberta"
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(HFCheckpointError, match="model_type='roberta'"):
        load_pretrained(d)


def test_no_config_and_no_weights(tmp_path):
    with pytest.raises(HFCheckpointError, match="no config.json"):
        load_pretrained(tmp_path)
    d = _write_tiny(tmp_path)
    (d / "model.safetensors").unlink()
    with pytest.raises(HFCheckpointError, match="neither model.safetensors"):
        load_pretrained(d)


def _edit_tensors(d, edit):
    tensors = load_file(str(d / "model.safetensors"))
    edit(tensors)
    save_file(tensors, str(d / "model.safetensors"))


def test_missing_unexpected_and_misshapen_tensors_are_named(tmp_path):
    d = _write_tiny(tmp_path)
    _edit_tensors(d, lambda t: t.pop("encoder.layer.1.output.dense.weight"))
    with pytest.raises(HFCheckpointError, match=r"missing tensors: encoder\.layer\.1\.output\.dense\.weight"):
        load_pretrained(d)
    d = _write_tiny(tmp_path / "b")
    _edit_tensors(d, lambda t: t.update({"encoder.layer.9.extra.weight": np.zeros(3, np.float32)}))
    with pytest.raises(HFCheckpointError, match=r"unexpected tensors: encoder\.layer\.9\.extra\.weight"):
        load_pretrained(d)
    d = _write_tiny(tmp_path / "c")
    _edit_tensors(d, lambda t: t.update({"embeddings.word_embeddings.weight": np.zeros((5, 32), np.float32)}))
    with pytest.raises(HFCheckpointError, match=r"wrong shapes: embeddings\.word_embeddings\.weight: has \(5, 32\)"):
        load_pretrained(d)


def test_bert_prefix_heads_and_buffers_are_handled(tmp_path):
    d = _write_tiny(tmp_path)
    def edit(t):
        for k in list(t):
            t["bert." + k] = t.pop(k)
        t["cls.predictions.bias"] = np.zeros(128, np.float32)
        t["bert.embeddings.position_ids"] = np.arange(64, dtype=np.int64)[None]
    _edit_tensors(d, edit)
    params, config = load_pretrained(d)
    assert config.add_pooling_layer and "pooler" in params


def test_save_refuses_non_empty_dir_and_leaves_nothing_on_failure(tmp_path, tiny_config, tiny_params):
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="not empty"):
        save_pretrained(tiny_params, tiny_config, target)
    assert (target / "keep.txt").read_text() == "user data"
    with pytest.raises(HFCheckpointError, match="no tokenizer files"):
        save_pretrained(tiny_params, tiny_config, tmp_path / "new", tokenizer_dir=tmp_path / "out")
    assert not (tmp_path / "new").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temp dirs left behind
    save_pretrained(tiny_params, tiny_config, target, overwrite=True)
    assert not (target / "keep.txt").exists() and (target / "model.safetensors").exists()
