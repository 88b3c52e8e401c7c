"""What a sentence-transformers directory says about how it is used: pooling,
normalization and ``max_seq_length`` (``modules.json``, ``1_Pooling/config.json``, a
``Normalize`` module, ``sentence_bert_config.json``).

A plain model directory (not a jaxmaml export) loads with these settings and a cosine
centroid head; a directory without them gets what sentence encoders are used with: mean
pooling and L2 normalization.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

from jaxmaml.run.config import ConfigError

ST_CONFIG_FILE = "sentence_bert_config.json"
MODULES_FILE = "modules.json"
POOLING_MODES = {"pooling_mode_cls_token": "cls", "pooling_mode_mean_tokens": "mean"}


class SentenceLayout(NamedTuple):
    """How a directory's sentence embedding is computed.

    Attributes:
      pooling: ``mean`` or ``cls``.
      normalize: whether a ``Normalize`` module L2-normalizes the embedding.
      declared: whether the directory says so (``modules.json``), else these are defaults.
    """

    pooling: str
    normalize: bool
    declared: bool


def max_seq_length(directory: Path | None) -> int | None:
    """``max_seq_length`` of ``directory``'s ``sentence_bert_config.json`` (``None`` without
    one)."""
    if directory is None or not (Path(directory) / ST_CONFIG_FILE).is_file():
        return None
    value = json.loads((Path(directory) / ST_CONFIG_FILE).read_text()).get("max_seq_length")
    return int(value) if value else None


def sentence_layout(directory: Path) -> SentenceLayout:
    """The pooling and normalization of ``directory``'s sentence-transformers modules
    (mean pooling + normalization when it has none). Raises :class:`ConfigError` for a
    pooling jaxmaml does not compute (max, weighted mean, last token)."""
    directory = Path(directory)
    if not (directory / MODULES_FILE).is_file():
        return SentenceLayout("mean", True, False)
    modules = json.loads((directory / MODULES_FILE).read_text())
    kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in modules]
    pooling = "mean"
    for m in modules:
        if m.get("type", "").endswith(".Pooling"):
            cfg = json.loads((directory / m.get("path", "") / "config.json").read_text())
            on = [k for k, v in cfg.items() if k.startswith("pooling_mode_") and v is True]
            if any(k not in POOLING_MODES for k in on) or len(on) != 1:
                raise ConfigError(f"{directory} pools with {', '.join(on) or 'nothing'}; "
                                  "jaxmaml computes mean or CLS pooling only.")
            pooling = POOLING_MODES[on[0]]
    return SentenceLayout(pooling, "Normalize" in kinds, True)
