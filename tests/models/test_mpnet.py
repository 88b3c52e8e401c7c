"""Flax MPNet (``BertConfig(model_type="mpnet")``) vs transformers.MPNetModel (torch, f32)."""

import json

import jax
import numpy as np
import pytest

from jaxmaml.models import hf
from jaxmaml.models.bert import BertConfig, encode, init_params, pool
from jaxmaml.models.mpnet import relative_buckets

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def _mpnet_config(**kw) -> BertConfig:
    base = dict(model_type="mpnet", vocab_size=130, hidden_size=32, num_hidden_layers=2,
                num_attention_heads=4, intermediate_size=64, max_position_embeddings=160,
                pad_token_id=1, layer_norm_eps=1e-5, type_vocab_size=0)
    return BertConfig(**{**base, **kw})


def _params(config, seed=1):
    params = init_params(config, jax.random.key(seed))
    # non-trivial biases, LayerNorms and position bias so every tensor's mapping counts
    return jax.tree.map(lambda x: x + 0.05 * jax.random.normal(jax.random.key(2), x.shape),
                        params)


def _torch_mpnet(params, config):
    hf_cfg = transformers.MPNetConfig(**hf.config_to_hf(config))
    model = transformers.MPNetModel(hf_cfg, add_pooling_layer=True).eval()
    state = {k: torch.tensor(v) for k, v in hf.to_hf_state_dict(params, "mpnet").items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and all("position_ids" in m for m in missing), (missing, unexpected)
    return model


def _padded(rng, vocab, pad, batch=4, length=12):
    ids = rng.integers(pad + 1, vocab, size=(batch, length)).astype(np.int32)
    lengths = np.array([length, length - 3, 5, 1])[:batch]
    mask = (np.arange(length)[None] < lengths[:, None]).astype(np.int32)
    return np.where(mask == 1, ids, pad), mask


@pytest.mark.torch
@pytest.mark.parametrize("length,pad", [
    (12, 1),
    (150, 1),  # offsets past max_distance 128
    (12, 0),  # a tokenizer padding with 0: positions still skip id 1 only, as transformers'
])
def test_matches_transformers_mpnet(length, pad):
    config = _mpnet_config(pad_token_id=pad)
    params = _params(config)
    ids, mask = _padded(np.random.default_rng(0), config.vocab_size, pad, length=length)
    ours = encode(params, config, ids, mask)
    with torch.no_grad():
        out = _torch_mpnet(params, config)(input_ids=torch.tensor(ids),
                                           attention_mask=torch.tensor(mask))
    np.testing.assert_allclose(np.asarray(ours), out.last_hidden_state.numpy(), atol=1e-5,
                               rtol=0)
    np.testing.assert_allclose(np.asarray(pool(params, config, ours)),
                               out.pooler_output.numpy(), atol=1e-5, rtol=0)


@pytest.mark.torch
def test_relative_buckets_match_transformers():
    rel = torch.arange(300)[None, :] - torch.arange(300)[:, None]  # key - query
    theirs = transformers.models.mpnet.modeling_mpnet.MPNetEncoder.relative_position_bucket(rel)
    np.testing.assert_array_equal(np.asarray(relative_buckets(300)), theirs.numpy())


def test_mpnet_params_have_no_token_types_and_a_shared_position_bias():
    params = init_params(_mpnet_config(), jax.random.key(0))
    assert "token_type_embeddings" not in params["embeddings"]
    assert params["encoder"]["relative_attention_bias"]["embedding"].shape == (32, 4)
    assert "relative_attention_bias" not in params["encoder"]["layer"]["0"]


@pytest.mark.torch
def test_save_then_load_round_trips_and_transformers_reads_it(tmp_path):
    config = _mpnet_config()
    params = _params(config)
    hf.save_pretrained(params, config, tmp_path / "m")
    saved = json.loads((tmp_path / "m" / "config.json").read_text())
    assert saved["model_type"] == "mpnet" and "type_vocab_size" not in saved
    names = set(hf.to_hf_state_dict(params, "mpnet"))
    assert "encoder.layer.0.attention.attn.q.weight" in names
    assert "encoder.layer.0.attention.LayerNorm.weight" in names
    loaded, cfg = hf.load_pretrained(tmp_path / "m")
    assert cfg == config
    jax.tree.map(np.testing.assert_array_equal, loaded, params)
    model = transformers.AutoModel.from_pretrained(tmp_path / "m").eval()
    assert type(model).__name__ == "MPNetModel"
    ids, mask = _padded(np.random.default_rng(1), config.vocab_size, 1)
    with torch.no_grad():
        out = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask))
    np.testing.assert_allclose(np.asarray(encode(params, config, ids, mask)),
                               out.last_hidden_state.numpy(), atol=1e-5, rtol=0)


def test_an_mpnet_checkpoint_missing_a_tensor_is_named(tmp_path):
    config = _mpnet_config()
    hf.save_pretrained(_params(config), config, tmp_path / "m")
    from safetensors.numpy import load_file, save_file
    f = tmp_path / "m" / "model.safetensors"
    state = load_file(str(f))
    del state["encoder.relative_attention_bias.weight"]
    save_file(state, str(f))
    with pytest.raises(hf.HFCheckpointError, match="as an MPNet: missing tensors: "
                       "encoder.relative_attention_bias.weight"):
        hf.load_pretrained(tmp_path / "m")
