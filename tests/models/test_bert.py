"""Flax BERT vs transformers.BertModel (torch, eager attention, f32)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmaml.models.bert import BertConfig, encode, init_params, pool
from jaxmaml.models.hf import to_hf_state_dict

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def _torch_bert(params, config):
    from jaxmaml.models.hf import config_to_hf
    hf_cfg = transformers.BertConfig(**config_to_hf(config), attn_implementation="eager")
    model = transformers.BertModel(hf_cfg, add_pooling_layer=config.add_pooling_layer).eval()
    state = {k: torch.tensor(v) for k, v in to_hf_state_dict(params).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and all("position_ids" in m for m in missing), (missing, unexpected)
    return model


def _padded_batch(rng, vocab, batch=4, length=12):
    ids = rng.integers(1, vocab, size=(batch, length)).astype(np.int32)
    lengths = np.array([length, length - 3, 5, 1])[:batch]
    mask = (np.arange(length)[None] < lengths[:, None]).astype(np.int32)
    ids = np.where(mask == 1, ids, 0)
    token_types = (np.arange(length)[None] >= lengths[:, None] // 2).astype(np.int32) * mask
    return ids, mask, token_types


@pytest.mark.torch
@pytest.mark.parametrize("kw", [
    {},
    dict(hidden_act="gelu_new", layer_norm_eps=1e-5, num_attention_heads=4),
    dict(num_hidden_layers=3, hidden_size=48, num_attention_heads=3, intermediate_size=96),
])
def test_matches_transformers_on_random_tiny_configs(kw):
    config = BertConfig.tiny(**kw)
    params = init_params(config, jax.random.key(1))
    # Non-trivial LayerNorm/bias values so every tensor's mapping is exercised.
    params = jax.tree.map(lambda x: x + 0.05 * jax.random.normal(jax.random.key(2), x.shape),
                          params)
    ids, mask, tt = _padded_batch(np.random.default_rng(0), config.vocab_size)
    ours = encode(params, config, ids, mask, tt)
    model = _torch_bert(params, config)
    with torch.no_grad():
        out = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                    token_type_ids=torch.tensor(tt))
    np.testing.assert_allclose(np.asarray(ours), out.last_hidden_state.numpy(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.asarray(pool(params, config, ours)),
                               out.pooler_output.numpy(), atol=1e-5, rtol=0)


def test_padding_does_not_change_real_tokens(tiny_config, tiny_params):
    ids, mask, tt = _padded_batch(np.random.default_rng(3), tiny_config.vocab_size)
    h = encode(tiny_params, tiny_config, ids, mask, tt)
    # The same row with 5 more pad tokens appended.
    ids2 = np.pad(ids, ((0, 0), (0, 5)))
    mask2 = np.pad(mask, ((0, 0), (0, 5)))
    tt2 = np.pad(tt, ((0, 0), (0, 5)))
    h2 = encode(tiny_params, tiny_config, ids2, mask2, tt2)
    np.testing.assert_allclose(np.asarray(h2[:, :12]) * mask[..., None],
                               np.asarray(h) * mask[..., None], atol=1e-6)


def test_init_is_deterministic_and_truncated_normal(tiny_config):
    a = init_params(tiny_config, jax.random.key(7))
    b = init_params(tiny_config, jax.random.key(7))
    c = init_params(tiny_config, jax.random.key(8))
    jax.tree.map(np.testing.assert_array_equal, a, b)
    w = np.asarray(a["encoder"]["layer"]["0"]["attention"]["self"]["query"]["kernel"])
    assert not np.array_equal(w, c["encoder"]["layer"]["0"]["attention"]["self"]["query"]["kernel"])
    assert abs(w.std() - 0.02) < 0.006 and np.abs(w).max() <= 2 * 0.02 + 1e-6


def test_dropout_needs_a_key_and_is_deterministic_by_key(tiny_config, tiny_params):
    ids, mask, _ = _padded_batch(np.random.default_rng(0), tiny_config.vocab_size)
    h0 = encode(tiny_params, tiny_config, ids, mask)
    h1 = encode(tiny_params, tiny_config, ids, mask, dropout_key=jax.random.key(1))
    h1b = encode(tiny_params, tiny_config, ids, mask, dropout_key=jax.random.key(1))
    assert not np.allclose(h0, h1)
    np.testing.assert_array_equal(h1, h1b)


def test_bf16_compute_keeps_f32_params_and_is_close(tiny_config, tiny_params):
    cfg16 = tiny_config.replace(dtype="bfloat16")
    ids, mask, _ = _padded_batch(np.random.default_rng(0), tiny_config.vocab_size)
    h32 = encode(tiny_params, tiny_config, ids, mask)
    h16 = encode(tiny_params, cfg16, ids, mask)
    assert h16.dtype == jnp.bfloat16
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(init_params(cfg16, jax.random.key(0))))
    assert np.abs(np.asarray(h16, np.float32) - np.asarray(h32)).max() < 0.1


def test_config_validation_messages():
    with pytest.raises(ValueError, match="multiple of num_attention_heads"):
        BertConfig.tiny(hidden_size=30, num_attention_heads=4)
    with pytest.raises(ValueError, match="hidden_act"):
        BertConfig.tiny(hidden_act="swishy")
    with pytest.raises(ValueError, match="unknown model preset"):
        BertConfig.preset("huge")
