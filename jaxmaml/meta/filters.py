"""Adapt filters: which leaves of ``{"encoder", "head"}`` the inner loop updates, and which
the outer loop never trains (``meta.adapt``, ``meta.adapt_top_k``, ``meta.adapt_regex``,
``meta.outer_frozen_layers``). Leaves are named by their ``/``-joined paths
(:func:`jaxmaml.tree.flatten`)."""

from __future__ import annotations

import re

from jaxmaml.meta.config import MetaConfig
from jaxmaml.tree import flatten
from jaxmaml.types import Flat, Params


def first_adapted_layer(cfg: MetaConfig) -> int:
    """Index of the lowest encoder layer the inner loop updates (``num_layers`` = none).

    Everything below it is frozen in the inner loop, so its output is computed once per
    task (see :func:`caches_bottom`).
    """
    n = cfg.model.num_hidden_layers
    if cfg.adapt == "head":
        return n
    if cfg.adapt == "top_k_layers":
        return max(n - cfg.adapt_top_k, cfg.outer_frozen_layers)
    return 0


def is_outer_frozen(path: str, cfg: MetaConfig) -> bool:
    """Whether ``path`` (in ``meta_params``) is never trained: embeddings and the bottom
    ``cfg.outer_frozen_layers`` encoder layers."""
    if not cfg.outer_frozen_layers:
        return False
    if path.startswith("encoder/embeddings/"):
        return True
    m = re.match(r"encoder/encoder/layer/(\d+)/", path)
    return m is not None and int(m.group(1)) < cfg.outer_frozen_layers


def is_adapted(path: str, cfg: MetaConfig) -> bool:
    """Whether the inner loop updates the leaf at ``path`` (e.g. ``encoder/pooler/dense/kernel``)."""
    if path.startswith("head/"):
        return True
    if cfg.adapt == "all":
        return True
    if cfg.adapt == "regex":
        return re.fullmatch(cfg.adapt_regex, path) is not None
    m = re.match(r"encoder/encoder/layer/(\d+)/", path)
    return m is not None and int(m.group(1)) >= first_adapted_layer(cfg)


def partition(params: Params, cfg: MetaConfig) -> tuple[Flat, Flat]:
    """Split params into (adapted, frozen) flat dicts by the adapt filter."""
    flat = flatten(params)
    adapted = {k: v for k, v in flat.items() if is_adapted(k, cfg)}
    frozen = {k: v for k, v in flat.items() if k not in adapted}
    return adapted, frozen
