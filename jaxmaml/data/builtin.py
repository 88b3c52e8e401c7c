"""The built-in real-text sources, by the name ``data.source`` (or a ``data.sources`` entry)
gives them: each loader returns a :class:`~jaxmaml.data.sources.TextDataset`."""

from __future__ import annotations

from jaxmaml.data.debian import load_debian
from jaxmaml.data.fortunes import load_fortunes
from jaxmaml.data.sources import TextDataset
from jaxmaml.data.wordnet import load_wordnet
from jaxmaml.data.wordnet_domains import load_wordnet_domains


def _wordnet() -> TextDataset:
    return load_wordnet()


def _wordnet_domains() -> TextDataset:
    return load_wordnet_domains()


def _debian() -> TextDataset:
    return load_debian()


def _fortunes() -> TextDataset:
    return load_fortunes()


# name -> (loader, one-line description)
BUILTIN_SOURCES = {
    "wordnet": (_wordnet, "WordNet 3.0 definitions -> 45 supersenses (117,659 examples)"),
    "wordnet_domains": (_wordnet_domains,
                        "WordNet 3.0 definitions -> 66 topic domains (4,918 examples)"),
    "debian": (_debian, "Debian 12.15 package synopses -> 35 archive sections (19,948 "
                        "examples; bundled)"),
    "fortunes": (_fortunes, "fortune-cookie quotations -> 32 topic files (11,537 examples; "
                            "bundled)"),
}


def load_builtin(name: str) -> TextDataset:
    """The built-in dataset ``name`` (one of :data:`BUILTIN_SOURCES`)."""
    if name not in BUILTIN_SOURCES:
        raise ValueError(f"unknown built-in source {name!r}; use one of "
                         f"{sorted(BUILTIN_SOURCES)}.")
    return BUILTIN_SOURCES[name][0]()
