"""The built-in real-text sources, by the name ``data.source`` (or a ``data.sources`` entry)
gives them: each loader returns a :class:`~jaxmaml.data.sources.TextDataset`."""

from __future__ import annotations

from jaxmaml.data.appstream import load_appstream
from jaxmaml.data.chatterbot import load_chatterbot
from jaxmaml.data.debian import load_debian
from jaxmaml.data.emoji import load_emoji
from jaxmaml.data.fortunes import load_fortunes
from jaxmaml.data.pydocs import load_pydocs, load_pyhowto
from jaxmaml.data.smlmt import load_docs_smlmt
from jaxmaml.data.sources import TextDataset
from jaxmaml.data.wordnet import load_wordnet
from jaxmaml.data.wordnet_domains import load_wordnet_domains


# name -> (loader, one-line description)
BUILTIN_SOURCES = {
    "wordnet": (load_wordnet, "WordNet 3.0 definitions -> 45 supersenses (117,659 examples)"),
    "wordnet_domains": (load_wordnet_domains,
                        "WordNet 3.0 definitions -> 66 topic domains (4,918 examples)"),
    "debian": (load_debian, "Debian 12.15 package synopses -> 35 archive sections (19,948 "
                        "examples; bundled)"),
    "fortunes": (load_fortunes, "fortune-cookie quotations -> 32 topic files (11,537 examples; "
                            "bundled)"),
    "chatterbot": (load_chatterbot, "chat-bot dialogue exchanges -> 11 conversation topics (492 "
                                "examples; bundled)"),
    "appstream": (load_appstream, "Debian 12 AppStream app descriptions -> 10 desktop main "
                              "categories (1,500 examples; bundled)"),
    "pydocs": (load_pydocs, "Python 3.11 Library Reference entries -> 30 chapters (7,237 "
                        "examples; bundled)"),
    "pyhowto": (load_pyhowto, "Python 3.11 HOWTO guide paragraphs -> 18 guides (1,851 examples; "
                          "bundled)"),
    "emoji": (load_emoji, "Unicode 15.0 emoji names -> 23 emoji subgroups (713 examples; "
                      "bundled)"),
    "docs_smlmt": (load_docs_smlmt, "pydocs + pyhowto texts, one word masked -> 925 word classes "
                                "(51,293 examples; self-supervised)"),
}


def load_builtin(name: str) -> TextDataset:
    """The built-in dataset ``name`` (one of :data:`BUILTIN_SOURCES`)."""
    if name not in BUILTIN_SOURCES:
        raise ValueError(f"unknown built-in source {name!r}; use one of "
                         f"{sorted(BUILTIN_SOURCES)}.")
    return BUILTIN_SOURCES[name][0]()
