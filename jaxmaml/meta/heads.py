"""Task heads and the loss: class prototypes, the linear head (zeros or Proto-MAML's
prototype init) and the weighted cross-entropy every learner is scored with."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxmaml.meta.config import MetaConfig
from jaxmaml.meta.encoding import at_least_f32
from jaxmaml.types import Examples, Params


def prototypes(feats: jax.Array, labels: jax.Array, weights: jax.Array, way: int) -> jax.Array:
    """Class means of ``feats`` ``[n, H]`` -> ``[way, H]``; padding rows (weight 0) ignored."""
    onehot = jax.nn.one_hot(labels, way) * weights[:, None]
    return (onehot.T @ feats) / jnp.maximum(onehot.sum(0), 1.0)[:, None]


def init_head(support_feats: jax.Array, support: Examples, cfg: MetaConfig) -> Params:
    """Task head ``{"kernel": [H, way], "bias": [way]}``: zeros, or Proto-MAML init."""
    hidden = support_feats.shape[-1]
    if cfg.head_init == "zeros":
        return {"kernel": jnp.zeros((hidden, cfg.way)), "bias": jnp.zeros((cfg.way,))}
    c = prototypes(support_feats, support.labels, support.weights, cfg.way)
    # logits = 2 c.x - |c|^2 = -|x - c|^2 + |x|^2: the ProtoNet classifier as a linear head.
    return {"kernel": 2.0 * c.T, "bias": -jnp.sum(c * c, axis=-1)}


def weighted_xent(logits: jax.Array, labels: jax.Array, weights: jax.Array
                  ) -> tuple[jax.Array, jax.Array]:
    """(mean cross-entropy, accuracy) over rows with weight > 0. ``logits`` ``[n, way]``."""
    logp = jax.nn.log_softmax(at_least_f32(logits))
    nll = -jnp.take_along_axis(logp, labels[:, None], axis=-1)[:, 0]
    denom = jnp.maximum(weights.sum(), 1.0)
    acc = (jnp.argmax(logits, -1) == labels).astype(logp.dtype)
    return (nll * weights).sum() / denom, (acc * weights).sum() / denom


def head_logits(head: Params, feats: jax.Array) -> jax.Array:
    return feats @ head["kernel"] + head["bias"]
