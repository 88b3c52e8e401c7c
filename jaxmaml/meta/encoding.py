"""Sentence features of the encoder as the learners see them: pooled (``meta.pooling``),
with the layers the inner loop never updates run once and cached (``Examples.bottom``,
:func:`bottom_features`), optionally L2-normalized (:func:`embedding`)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxmaml.meta.config import MetaConfig
from jaxmaml.meta.filters import first_adapted_layer
from jaxmaml.models.bert import embed, run_layers
from jaxmaml.types import Examples, Params

NORM_EPS = 1e-12  # l2_normalize: the floor of a norm (only an all-zero vector reaches it)


def at_least_f32(x: jax.Array) -> jax.Array:
    """bf16 -> f32 for the head and loss; f64 (numerical tests) stays f64."""
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _pool(hidden: jax.Array, mask: jax.Array, cfg: MetaConfig) -> jax.Array:
    hidden = at_least_f32(hidden)
    if cfg.pooling == "cls":
        return hidden[..., 0, :]
    m = mask.astype(hidden.dtype)[..., None]
    return (hidden * m).sum(-2) / jnp.maximum(m.sum(-2), 1.0)


def caches_bottom(cfg: MetaConfig) -> bool:
    """Whether the bottom of the encoder is frozen in the inner loop (so it can be cached).

    True for ``head`` (ANIL: the whole encoder) and ``top_k_layers``; ``all`` and ``regex``
    may adapt the embeddings, so nothing below them is constant.
    """
    return cfg.adapt in ("head", "top_k_layers")


def _bottom(encoder: Params, examples: Examples, cfg: MetaConfig) -> tuple[jax.Array, int]:
    """(hidden states after the never-trained bottom, index of the next layer to run)."""
    if examples.bottom is not None:
        return examples.bottom, cfg.outer_frozen_layers
    h = embed(encoder, cfg.model, examples.input_ids)
    if not cfg.outer_frozen_layers:
        return h, 0
    h = run_layers(encoder, cfg.model, h, examples.attention_mask, 0, cfg.outer_frozen_layers)
    return jax.lax.stop_gradient(h), cfg.outer_frozen_layers


def bottom_features(encoder: Params, examples: Examples, cfg: MetaConfig) -> jax.Array | None:
    """Hidden states after the layers the inner loop never updates: ``[n, L, H]``.

    ``None`` when the filter may adapt the embeddings (see :func:`caches_bottom`).
    """
    if not caches_bottom(cfg):
        return None
    h, start = _bottom(encoder, examples, cfg)
    return run_layers(encoder, cfg.model, h, examples.attention_mask, start,
                      first_adapted_layer(cfg))


def features(encoder: Params, examples: Examples, cfg: MetaConfig,
             bottom: jax.Array | None = None) -> jax.Array:
    """Pooled sentence features ``[n, H]`` (float32).

    With ``bottom`` (from :func:`bottom_features`) only the layers from
    :func:`first_adapted_layer` up are run.
    """
    if bottom is None:
        h, start = _bottom(encoder, examples, cfg)
    else:
        h, start = bottom, first_adapted_layer(cfg)
    h = run_layers(encoder, cfg.model, h, examples.attention_mask, start,
                   cfg.model.num_hidden_layers)
    return _pool(h, examples.attention_mask, cfg)


def l2_normalize(x: jax.Array, axis: int = -1) -> jax.Array:
    """``x / max(|x|, NORM_EPS)`` along ``axis``: unit vectors (a zero vector stays zero).

    The norm is ``sqrt(max(sum x^2, NORM_EPS^2))`` so the gradient at a zero vector is
    finite (``jnp.linalg.norm``'s is NaN there, and NaN times a zero weight is still NaN:
    zero-weight padding rows of a fine-tuned support set pool to zero vectors)."""
    sq = jnp.sum(x * x, axis=axis, keepdims=True)
    return x / jnp.sqrt(jnp.maximum(sq, NORM_EPS * NORM_EPS))


def embedding(encoder: Params, examples: Examples, cfg: MetaConfig) -> jax.Array:
    """``[n, H]`` the run's sentence embedding, for every learner: :func:`features`,
    L2-normalized with ``cfg.protonet.normalize_features`` (ProtoNet's normalized prototypes).

    What ProtoNet's prototypes average, ``FewShotClassifier.embed`` returns and the
    export's sentence-transformers modules compute.
    """
    f = features(encoder, examples, cfg)
    return l2_normalize(f) if cfg.protonet.normalize_features else f


@functools.lru_cache(maxsize=16)
def _bottom_fn(cfg: MetaConfig):
    """One compiled bottom-layers program per config (reused across calls)."""

    @jax.jit
    def bottom(encoder, ids, mask):
        h = embed(encoder, cfg.model, ids)
        return run_layers(encoder, cfg.model, h, mask, 0,
                          cfg.outer_frozen_layers).astype(jnp.float32)

    return bottom


def precompute_bottom(encoder: Params, cfg: MetaConfig, input_ids: np.ndarray,
                      attention_mask: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """Hidden states after the ``cfg.outer_frozen_layers`` never-trained bottom layers.

    Args:
      input_ids: ``[N, seq_len]`` for a whole dataset (host array).
      attention_mask: ``[N, seq_len]``, the same rows (host array).
    Returns:
      float32 ``[N, seq_len, hidden]`` to store in ``Examples.bottom``; computed once per
      dataset in fixed-size batches (one compiled program).
    """
    if not cfg.outer_frozen_layers:
        raise ValueError("precompute_bottom needs meta.outer_frozen_layers > 0.")
    return map_padded_batches(_bottom_fn(cfg), encoder, input_ids, attention_mask,
                              batch_size).astype(np.float32, copy=False)


def map_padded_batches(fn, encoder: Params, input_ids: np.ndarray, attention_mask: np.ndarray,
                       batch_size: int = 128) -> np.ndarray:
    """``fn(encoder, ids, mask)`` over ``[N, seq_len]`` host arrays in batches of exactly
    ``batch_size`` rows (the last one zero-padded, its padding dropped), so a jitted ``fn``
    compiles once; the per-row outputs concatenated on the host."""
    out = []
    for start in range(0, len(input_ids), batch_size):
        ids = input_ids[start:start + batch_size]
        mask = attention_mask[start:start + batch_size]
        pad = batch_size - len(ids)
        h = fn(encoder, np.pad(ids, ((0, pad), (0, 0))), np.pad(mask, ((0, pad), (0, 0))))
        out.append(np.asarray(h)[:len(ids)])
    return np.concatenate(out)
