"""One entry of ``data.sources`` (multi-source meta-training): :class:`SourceSection`.

Kept apart from :mod:`jaxmaml.run.config` (which validates it and nests it in the ``data``
section) so the section stays small; see :mod:`jaxmaml.run.data` for how it is used.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

SOURCE_ROLES = ("train", "heldout")


@dataclasses.dataclass(frozen=True)
class SourceSection:
    """One entry of ``data.sources`` (multi-source meta-training, Meta-Dataset style).

    ``source``: a built-in name (``wordnet``, ``wordnet_domains``, ``debian``), a local
    file or a hub name; ``name`` (default: the source's file stem / last path part) prefixes
    its class names as ``name/class`` and must be unique. ``role: train`` sources are
    sampled for meta-training with probability proportional to ``weight`` (each task from
    one source); ``role: heldout`` sources are never meta-trained on (all their classes are
    meta-test classes unless ``meta_test`` lists some). Fields left ``null`` take the
    ``data`` section's value (columns, ``hub_split``, ``num_*`` counts, ``split_seed``,
    ``seq_len``, ``max_per_class``); class lists are per source only.
    """

    source: str
    name: str | None = None
    role: str = "train"
    weight: float = 1.0
    text_column: str | None = None
    label_column: str | None = None
    hub_split: str | None = None
    meta_train: tuple[str, ...] = ()
    meta_val: tuple[str, ...] = ()
    meta_test: tuple[str, ...] = ()
    num_train: int | None = None
    num_val: int | None = None
    num_test: int | None = None
    split_seed: int | None = None
    seq_len: int | None = None
    max_per_class: int | None = None

    @property
    def label(self) -> str:
        """The source's name: ``name``, else the file stem or last part of ``source``."""
        if self.name:
            return self.name
        return Path(self.source.rstrip("/")).stem if self.source else self.source

    def resolve(self, data: "DataSection") -> "DataSection":
        """This source as a single-source :class:`DataSection` (nulls filled from ``data``)."""
        own = {k: getattr(self, k) for k in (
            "text_column", "label_column", "hub_split", "num_train", "num_val", "num_test",
            "split_seed", "seq_len", "max_per_class") if getattr(self, k) is not None}
        return dataclasses.replace(data, source=self.source, sources=(),
                                   meta_train=self.meta_train, meta_val=self.meta_val,
                                   meta_test=self.meta_test, **own)
