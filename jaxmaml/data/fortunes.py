"""Built-in real dataset: fortune-cookie quotations labelled by the topic file they come from.

Debian's ``fortunes`` package (the BSD ``fortune`` data, ``/usr/share/games/fortunes``)
keeps quotations, jokes, aphorisms and short verse in one file per topic (``computers``,
``law``, ``love``, ``politics``, ``science``, ``sports``, ``food``, ...), entries separated by lines holding a single ``%``. Each entry is one example,
its file name the label, its lines joined with single spaces (attributions such as
``-- Mark Twain`` stay in the text, as a reader sees them).

Another domain than WordNet definitions and Debian synopses: longer (median 18 words, one
in ten over 68), informal, humorous text, and topics that overlap theirs only loosely. This
project uses it as a held-out domain that no recipe choice has seen (docs/transfer.md,
"A domain no choice has seen").

What is dropped, and why:

- files that are not a topic (:data:`NOT_TOPICS`): the grab-bags ``fortunes``, ``cookie``
  and ``miscellaneous``, one person's or one author's collections (``knghtbrd``, ``zippy``,
  ``pratchett``, ``goedel``, ``humorists``), ``ascii-art`` (pictures) and ``translate-me``
  (untranslated); the ``.u8``/``.dat`` index and encoding files are never read;
- entries that repeat (within a file, or across files: ambiguous) and empty ones;
- files left with fewer than ``min_examples`` entries.

The built-in ``fortunes`` source is a **bundled snapshot** (:data:`SNAPSHOT`: the topic
files of Debian 12's ``fortunes`` 1:1.99.1-7.3, each file's distinct entries, gzipped JSON),
so every machine evaluates on the same texts without ``apt-get install fortunes``. It was
written by :func:`write_snapshot` (``python scripts/fortunes_snapshot.py``); the rules above
(cross-file repeats, ``min_examples``) apply when it is loaded, as for a directory.
``load_fortunes(DIR)`` reads fortune files of a directory instead (e.g. the installed
package's).

Licence: the BSD fortune collection (Debian's copyright file for ``fortunes``: BSD-style,
with some entries of unknown origin, in the public domain by long use), kept beside the
snapshot as :data:`COPYRIGHT`; used here for research. Counts are in :data:`info`.
"""

from __future__ import annotations

import gzip
import json
import os
import re
from collections import Counter, defaultdict
from pathlib import Path

from jaxmaml.atomic_file import write_json_gz_atomically
from jaxmaml.data.sources import from_lists, TextDataset

FORTUNES_DIR = Path("/usr/share/games/fortunes")
SNAPSHOT = Path(__file__).resolve().parent / "fortunes_1.99.1-7.3.json.gz"
COPYRIGHT = Path(__file__).resolve().parent / "fortunes_1.99.1-7.3.copyright"
_SNAPSHOT_FORMAT = "jaxmaml-fortunes-snapshot-v1"
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


def read_topic_files(root: str | os.PathLike) -> dict[str, list[str]]:
    """``{file name: its distinct entries, in file order}`` for the topic files of ``root``
    (not :data:`NOT_TOPICS`, no ``.dat``/``.u8``).

    Raises:
      FileNotFoundError: no fortune files there (says to ``apt-get install fortunes``).
    """
    root = Path(root)
    files = sorted(f for f in root.glob("*") if f.is_file() and not f.suffix
                   and f.name not in NOT_TOPICS) if root.is_dir() else []
    if not files:
        raise FileNotFoundError(f"no fortune files in {root}: run `apt-get install fortunes` "
                                "(Debian's package) or pass the directory that holds them.")
    return {f.name: list(dict.fromkeys(  # repeats within a file: once
        parse_fortune_file(f.read_text(encoding="utf-8", errors="replace")))) for f in files}


def load_fortunes(path: str | os.PathLike | None = None,
                  min_examples: int = MIN_EXAMPLES) -> TextDataset:
    """Fortune entries labelled by topic file as a :class:`TextDataset`.

    Args:
      path: a directory of fortune files (e.g. ``/usr/share/games/fortunes``); default: the
        bundled snapshot :data:`SNAPSHOT` (the built-in ``fortunes`` source).
      min_examples: files with fewer distinct entries (after the cross-file rule) are dropped.

    Raises:
      FileNotFoundError: ``path`` holds no fortune files (says to ``apt-get install fortunes``).
    """
    if path is None:
        with gzip.open(SNAPSHOT, "rt", encoding="utf-8") as f:
            payload = json.load(f)
        if payload.get("format") != _SNAPSHOT_FORMAT:
            raise ValueError(f"{SNAPSHOT} is not a {_SNAPSHOT_FORMAT} file; reinstall jaxmaml.")
        per_file, source = payload["files"], {"snapshot": SNAPSHOT.name,
                                              "package": payload["package"]}
    else:
        per_file, source = read_topic_files(path), {"fortunes_dir": str(path)}
    return _dataset(per_file, source, min_examples)


def _dataset(per_file: dict[str, list[str]], source: dict, min_examples: int) -> TextDataset:
    """The rules of the module docstring over ``{file: distinct entries}``."""
    where = defaultdict(set)
    for name, entries in per_file.items():
        for e in entries:
            where[e].add(name)
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
        raise ValueError(f"no fortune file has {min_examples} distinct entries ({source}).")
    meta = dict(info, source=source, min_examples=min_examples,
                dropped=dict(dropped), not_topics=list(NOT_TOPICS))
    return from_lists([texts[i] for i in keep], [labels[i] for i in keep], info=meta)


def write_snapshot(root: str | os.PathLike, out: str | os.PathLike,
                   package: str = info["package"]) -> dict[str, int]:
    """Write the bundled-snapshot file ``out`` (gzipped JSON, atomically, reproducible
    bytes) from the topic files of ``root``: each file's distinct entries. Returns the
    entries written per file."""
    per_file = read_topic_files(root)
    payload = {"format": _SNAPSHOT_FORMAT, "package": package, "files": per_file}
    write_json_gz_atomically(out, payload)
    return {name: len(entries) for name, entries in per_file.items()}
