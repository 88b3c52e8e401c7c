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


def _chatterbot() -> TextDataset:
    from jaxmaml.data.chatterbot import load_chatterbot
    return load_chatterbot()


def _appstream() -> TextDataset:
    from jaxmaml.data.appstream import load_appstream
    return load_appstream()


def _pydocs() -> TextDataset:
    from jaxmaml.data.pydocs import load_pydocs
    return load_pydocs()


def _pyhowto() -> TextDataset:
    from jaxmaml.data.pydocs import load_pyhowto
    return load_pyhowto()


def _emoji() -> TextDataset:
    from jaxmaml.data.emoji import load_emoji
    return load_emoji()


def _docs_smlmt() -> TextDataset:
    from jaxmaml.data.smlmt import load_docs_smlmt
    return load_docs_smlmt()


# name -> (loader, one-line description)
BUILTIN_SOURCES = {
    "wordnet": (_wordnet, "WordNet 3.0 definitions -> 45 supersenses (117,659 examples)"),
    "wordnet_domains": (_wordnet_domains,
                        "WordNet 3.0 definitions -> 66 topic domains (4,918 examples)"),
    "debian": (_debian, "Debian 12.15 package synopses -> 35 archive sections (19,948 "
                        "examples; bundled)"),
    "fortunes": (_fortunes, "fortune-cookie quotations -> 32 topic files (11,537 examples; "
                            "bundled)"),
    "chatterbot": (_chatterbot, "chat-bot dialogue exchanges -> 11 conversation topics (492 "
                                "examples; bundled)"),
    "appstream": (_appstream, "Debian 12 AppStream app descriptions -> 10 desktop main "
                              "categories (1,500 examples; bundled)"),
    "pydocs": (_pydocs, "Python 3.11 Library Reference entries -> 30 chapters (7,237 "
                        "examples; bundled)"),
    "pyhowto": (_pyhowto, "Python 3.11 HOWTO guide paragraphs -> 18 guides (1,851 examples; "
                          "bundled)"),
    "emoji": (_emoji, "Unicode 15.0 emoji names -> 23 emoji subgroups (713 examples; "
                      "bundled)"),
    "docs_smlmt": (_docs_smlmt, "pydocs + pyhowto texts, one word masked -> 925 word classes "
                                "(51,293 examples; self-supervised)"),
}


def load_builtin(name: str) -> TextDataset:
    """The built-in dataset ``name`` (one of :data:`BUILTIN_SOURCES`)."""
    if name not in BUILTIN_SOURCES:
        raise ValueError(f"unknown built-in source {name!r}; use one of "
                         f"{sorted(BUILTIN_SOURCES)}.")
    return BUILTIN_SOURCES[name][0]()
