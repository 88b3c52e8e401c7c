"""What MPNet adds to the BERT encoder of :mod:`jaxmaml.models.bert` (``model_type="mpnet"``),
as ``transformers.MPNetModel`` computes it: the position ids and the relative position bias."""

from __future__ import annotations

import jax
import jax.numpy as jnp

PADDING_IDX = 1  # transformers.MPNetEmbeddings.padding_idx (fixed, not from the config)


def positions(input_ids: jax.Array) -> jax.Array:
    """``[..., L]`` transformers' ``create_position_ids_from_input_ids``: 2, 3, ... over the
    tokens that are not id 1, and 1 on those (whatever the config's ``pad_token_id``)."""
    real = (input_ids != PADDING_IDX).astype(jnp.int32)
    return jnp.cumsum(real, axis=-1) * real + PADDING_IDX


def relative_buckets(length: int, num_buckets: int = 32, max_distance: int = 128):
    """``[L, L]`` int bucket of each (query, key) offset: transformers'
    ``MPNetEncoder.relative_position_bucket`` (always 32 buckets there, whatever the
    config says; half for each direction, exact up to 8 apart, log-spaced to 128)."""
    pos = jnp.arange(length)
    n = pos[:, None] - pos[None, :]  # -(key - query)
    half = num_buckets // 2
    ret = (n < 0).astype(jnp.int32) * half
    n = jnp.abs(n)
    max_exact = half // 2
    large = max_exact + (jnp.log(jnp.maximum(n, 1).astype(jnp.float32) / max_exact)
                         / jnp.log(max_distance / max_exact) * (half - max_exact)
                         ).astype(jnp.int32)
    return ret + jnp.where(n < max_exact, n, jnp.minimum(large, half - 1))


def relative_bias(table: jax.Array, length: int) -> jax.Array:
    """``[heads, L, L]`` the bias added to every layer's attention scores, from the
    ``[buckets, heads]`` table ``encoder/relative_attention_bias/embedding``."""
    return jnp.moveaxis(table[relative_buckets(length)], -1, 0)
