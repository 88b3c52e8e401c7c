"""Class names as text: the label string made readable, or a source's own description.

Class names are priors for few-shot adaptation (one extra support row per class, the name
encoded like any example), so each evaluated class needs a short text. The default is the
label itself made readable (:func:`readable_label`): ``_ . - /`` become spaces
(``computer_science`` -> ``computer science``, ``men-women`` -> ``men women``) and a
WordNet supersense drops its part of speech for nouns (``noun.animal`` -> ``animal``) and
keeps it otherwise (``verb.body`` -> ``body verbs``: ``noun.body`` is a class too). A source
may carry descriptions that replace it (:func:`builtin_descriptions`): Debian's archive
sections have titles of their own (``otherosfs`` is "Cross Platform", ``httpd`` "Web
Servers"), and five WordNet lexicographer files have no readable word in their names
(``adj.all``, ``noun.Tops``, ...). Other labels (``linuxcookie``, ``x11``) stay as they are.
"""

from __future__ import annotations

import re
from typing import Mapping, Sequence

from jaxmaml.data.debian import SECTION_TITLES
from jaxmaml.data.wordnet import SUPERSENSE_TITLES

_SUPERSENSE = re.compile(r"^(noun|verb|adj|adv)\.([A-Za-z]+)$")
_POS_WORD = {"verb": "verbs", "adj": "adjectives", "adv": "adverbs"}
_DESCRIPTIONS = {"debian": SECTION_TITLES, "wordnet": SUPERSENSE_TITLES}


def readable_label(name: str) -> str:
    """``name`` as words: ``"noun.animal"`` -> ``"animal"``, ``"verb.body"`` ->
    ``"body verbs"``, ``"American_football"`` -> ``"American football"``, ``"songs-poems"``
    -> ``"songs poems"``; a name without separators is returned as it is."""
    m = _SUPERSENSE.match(name)
    if m:
        pos, word = m.groups()
        return word if pos == "noun" else f"{word} {_POS_WORD[pos]}"
    words = re.sub(r"[_.\-/]+", " ", name).split()
    return " ".join(words) if words else name


def builtin_descriptions(source: str) -> Mapping[str, str]:
    """Class descriptions a built-in source carries (``{}`` for none): ``debian`` (its
    archive section titles) and ``wordnet`` (the lexicographer files without a readable
    word)."""
    return _DESCRIPTIONS.get(source, {})


def label_texts(class_names: Sequence[str], descriptions: Mapping[str, str] | None = None
                ) -> list[str]:
    """One text per class: ``descriptions[name]`` where given, else
    :func:`readable_label` of the name."""
    descriptions = descriptions or {}
    return [descriptions.get(c) or readable_label(c) for c in class_names]
