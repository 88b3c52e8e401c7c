"""Built-in real dataset: fortune-cookie quotations labelled by the topic file they come from.

Debian's ``fortunes`` package (``apt-get install fortunes``; the BSD ``fortune`` data,
``/usr/share/games/fortunes``) keeps quotations, jokes, aphorisms and short verse in one
file per topic (``computers``, ``law``, ``love``, ``politics``, ``science``, ``sports``,
``food``, ...), entries separated by lines holding a single ``%``. Each entry is one example,
its file name the label, its lines joined with single spaces (attributions such as
``-- Mark Twain`` stay in the text, as a reader sees them).

Another domain than WordNet definitions and Debian synopses: longer (median 18 words, one
in ten over 68), informal, humorous text, and topics that overlap theirs only loosely. This
project uses it as a held-out domain that no recipe choice has seen (README "Held-out
domains").

What is dropped, and why:

- files that are not a topic (:data:`NOT_TOPICS`): the grab-bags ``fortunes``, ``cookie``
  and ``miscellaneous``, one person's or one author's collections (``knghtbrd``, ``zippy``,
  ``pratchett``, ``goedel``, ``humorists``), ``ascii-art`` (pictures) and ``translate-me``
  (untranslated); the ``.u8``/``.dat`` index and encoding files are never read;
- entries that repeat (within a file, or across files: ambiguous) and empty ones;
- files left with fewer than ``min_examples`` entries.

Licence: the BSD fortune collection (Debian's copyright file for ``fortunes``: BSD-style,
with some entries of unknown origin, in the public domain by long use); used here for
research. Counts of the Debian 12 package (1:1.99.1-7.3) are in :data:`info`.
"""

from __future__ import annotations

import os
import re
from collections import Counter, defaultdict
from pathlib import Path

from jaxmaml.data.sources import TextDataset, from_lists

FORTUNES_DIR = Path("/usr/share/games/fortunes")
NOT_TOPICS = ("fortunes", "cookie", "miscellaneous", "knghtbrd", "zippy", "pratchett",
              "goedel", "humorists", "ascii-art", "translate-me")
MIN_EXAMPLES = 50

info = {
    "name": "fortunes-topics",
    "description": "fortune-cookie quotations labelled by topic file",
    "package": "Debian 12 fortunes 1:1.99.1-7.3",
    "licence": "BSD-style (Debian copyright file of the fortunes package)",
}


def parse_fortune_file(text: str) -> list[str]:
    """The entries of one fortune file: blocks between ``%`` lines, whitespace collapsed."""
    entries = re.split(r"^%\s*$", text, flags=re.MULTILINE)
    return [" ".join(e.split()) for e in entries if e.strip()]


def load_fortunes(path: str | os.PathLike | None = None,
                  min_examples: int = MIN_EXAMPLES) -> TextDataset:
    """The fortune files of ``path`` (default ``/usr/share/games/fortunes``) as a
    :class:`TextDataset`: one example per entry, labelled by its file's name.

    Raises:
      FileNotFoundError: no fortune files there (says to ``apt-get install fortunes``).
    """
    root = Path(path) if path is not None else FORTUNES_DIR
    files = sorted(f for f in root.glob("*") if f.is_file() and not f.suffix
                   and f.name not in NOT_TOPICS) if root.is_dir() else []
    if not files:
        raise FileNotFoundError(f"no fortune files in {root}: run `apt-get install fortunes` "
                                "(Debian's package) or pass the directory that holds them.")
    where = defaultdict(set)
    per_file: dict[str, list[str]] = {}
    for f in files:
        entries = parse_fortune_file(f.read_text(encoding="utf-8", errors="replace"))
        per_file[f.name] = list(dict.fromkeys(entries))  # repeats within a file: once
        for e in per_file[f.name]:
            where[e].add(f.name)
    dropped = Counter()
    texts, labels = [], []
    for name, entries in per_file.items():
        for e in entries:
            if len(where[e]) > 1:
                dropped["in_several_files"] += 1
                continue
            texts.append(e)
            labels.append(name)
    sizes = Counter(labels)
    keep = [i for i, y in enumerate(labels) if sizes[y] >= min_examples]
    dropped["small_file"] = len(labels) - len(keep)
    if not keep:
        raise ValueError(f"no fortune file in {root} has {min_examples} distinct entries.")
    meta = dict(info, source={"fortunes_dir": str(root)}, min_examples=min_examples,
                dropped=dict(dropped), not_topics=list(NOT_TOPICS))
    return from_lists([texts[i] for i in keep], [labels[i] for i in keep], info=meta)
