"""Pytrees shared across the package: episodes in, meta-state through training."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax

Params = dict[str, Any]  # a params tree, e.g. {"encoder": BERT params, "head": {...}}
Flat = dict[str, jax.Array]  # the same as {"/"-joined path: leaf} (jaxmaml.tree.flatten)


class Examples(NamedTuple):
    """A padded set of tokenized examples (one task, or a batch of tasks with a leading axis).

    Shapes for one task: ``input_ids``/``attention_mask`` ``[n, seq_len]``, ``labels`` and
    ``weights`` ``[n]``. ``weights`` is 1.0 for real examples and 0.0 for padding rows,
    which never affect a loss or an accuracy.

    ``bottom`` optionally carries precomputed hidden states ``[n, seq_len, hidden]`` after
    the ``MetaConfig.outer_frozen_layers`` bottom layers (which are never trained), so
    neither loop recomputes them (see :func:`jaxmaml.meta.encoding.precompute_bottom`).
    ``None`` is an empty pytree: vmap, jit and ``jax.tree.map`` pass it through.
    """

    input_ids: jax.Array
    attention_mask: jax.Array
    labels: jax.Array
    weights: jax.Array
    bottom: jax.Array | None = None


class Episodes(NamedTuple):
    """N-way K-shot episodes with fixed shapes.

    ``support``: ``[tasks, way*shot, seq_len]``; ``query``: ``[tasks, way*query, seq_len]``.
    Labels are task-local class indices in ``[0, way)``. Unbatched (one task) when the
    leading axis is absent, as seen inside ``vmap``.
    """

    support: Examples
    query: Examples


class MetaState(NamedTuple):
    """Everything meta-training carries from step to step; Orbax saves it as-is.

    ``meta_params``: ``{"encoder": BERT params, **learner extras}`` (e.g. learned inner LRs).
    ``step``: int32 scalar. ``key``: the run's PRNG key, stored as raw ``uint32[2]`` key
    data so it serializes. Meta-steps are deterministic (no learner draws random numbers
    during a step; BERT dropout is not used), so nothing reads it; it stays in the state so
    every checkpoint keeps one format.
    """

    meta_params: dict[str, Any]
    opt_state: Any
    step: jax.Array
    key: jax.Array
