"""Pytree helpers shared by the whole package: one home for each.

- :func:`path_str`: a ``tree_flatten_with_path`` key path as ``"a/b/0"`` (dict keys, sequence
  indices, NamedTuple fields), the form adapt filters and sharding rules match against;
- :func:`flatten` / :func:`unflatten`: nested dicts <-> flat ``{"a/b": leaf}`` dicts;
- :func:`abstract`: ``jax.ShapeDtypeStruct`` copies of a tree (an Orbax restore target).
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import numpy as np


def path_str(path: Sequence[Any]) -> str:
    """``"/"``-joined key path from ``tree_flatten_with_path`` (dict keys, indices, fields)."""
    parts = []
    for k in path:
        for attr in ("key", "idx", "name"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
        else:
            parts.append(str(k))
    return "/".join(parts)


def flatten(tree: Any) -> dict[str, Any]:
    """``{"a": {"b": x}}`` -> ``{"a/b": x}`` (paths are static strings, leaf order kept)."""
    return {path_str(path): leaf
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def unflatten(flat: dict[str, Any]) -> dict:
    """The inverse of :func:`flatten` for nested dicts: ``{"a/b": x}`` -> ``{"a": {"b": x}}``."""
    out: dict = {}
    for path, leaf in flat.items():
        *parents, last = path.split("/")
        node = out
        for k in parents:
            node = node.setdefault(k, {})
        node[last] = leaf
    return out


def abstract(tree: Any, shardings: Any = None) -> Any:
    """``jax.ShapeDtypeStruct`` leaves mirroring ``tree`` (concrete arrays or
    ``jax.eval_shape`` output).

    ``shardings``: a matching tree of shardings (then restoring into the result places each
    shard on its device, on any mesh), or ``None`` to keep each leaf's own ``.sharding``
    (``None`` for abstract leaves without one).
    """
    if shardings is None:
        return jax.tree.map(lambda x: jax.ShapeDtypeStruct(
            np.shape(x), x.dtype, sharding=getattr(x, "sharding", None)), tree)
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=s),
                        tree, shardings)
