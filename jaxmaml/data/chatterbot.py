"""Built-in real dataset: short chat-bot dialogues labelled by conversation topic.

The ChatterBot dialog corpus (PyPI ``chatterbot-corpus`` 1.3.3, its ``data/english`` YAML
files) keeps exchanges between a user and a bot, one file per topic (``ai``, ``coding``,
``emotion``, ``greetings``, ``humor``, ``money``, ``psychology``, ``science``, ``sports``,
...). Each exchange (a list of turns: a question and its answers) is one
example, its turns joined with single spaces; the file's name is the label. Genre: dialogue
(informal, second person, questions and replies), which no other built-in source has.

What is dropped, and why:

- files of held-out genres (:data:`EXCLUDE`: ``trivia``, quiz questions, and
  ``literature``): this project checks transfer to those independently; they are left out
  of the bundle itself, and excluded again at load;
- the rules of :mod:`jaxmaml.data.bundled` at load: length bounds (:data:`MIN_CHARS` -
  :data:`MAX_CHARS`), repeats within a topic, exchanges in several topics, and topics left
  with fewer than ``min_examples`` exchanges (``botprofile``, ``computers``, ``food``,
  ``gossip``, ``health``, ``history``, ``politics`` at the default 20, and ``tech_support``,
  whose 1,050 exchanges hold 10 distinct texts).

The built-in ``chatterbot`` source is the **bundled snapshot** :data:`SNAPSHOT` (each kept
file's exchanges, gzipped JSON), written by :func:`write_snapshot`
(``python scripts/bundle_snapshot.py chatterbot``) from the package's data folder; ``load_chatterbot
(DIR)`` reads such a folder instead.

Licence: BSD 3-clause (the package's ``license.md``, Copyright (c) 2017 Gunther Cox), kept
beside the snapshot as :data:`COPYRIGHT`. Counts are in :data:`info`.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from jaxmaml.data import bundled
from jaxmaml.data.sources import TextDataset

SNAPSHOT = Path(__file__).resolve().parent / "chatterbot_corpus_1.3.3.json.gz"
COPYRIGHT = Path(__file__).resolve().parent / "chatterbot_corpus_1.3.3.copyright"
EXCLUDE = ("trivia", "literature")
MIN_EXAMPLES = 20
MIN_CHARS, MAX_CHARS = 10, 1000

info = {
    "name": "chatterbot-topics",
    "description": "chat-bot exchanges (question and replies) labelled by topic file",
    "genre": "dialogue",
    "package": "PyPI chatterbot-corpus 1.3.3 (data/english)",
    "licence": "BSD-3-Clause (Copyright (c) 2017 Gunther Cox)",
    "num_examples": 492,
    "num_classes": 11,
}


def _turn(turn) -> str:
    # a few YAML turns parse as numbers or booleans ("yes", 42): they are still text
    return str(turn) if not isinstance(turn, str) else turn


def read_corpus_dir(root: str | os.PathLike, exclude: tuple[str, ...] = EXCLUDE
                    ) -> dict[str, list[str]]:
    """``{file stem: its exchanges, each turn-joined}`` for the ``*.yml`` files of ``root``
    (e.g. ``chatterbot_corpus/data/english``), files in :data:`EXCLUDE` left out.

    Raises:
      FileNotFoundError: no ``*.yml`` files in ``root`` (says how to get them).
    """
    files = sorted(Path(root).glob("*.yml")) if Path(root).is_dir() else []
    if not files:
        raise FileNotFoundError(f"no *.yml files in {root}: `pip download --no-deps "
                                "chatterbot-corpus==1.3.3`, unzip it and pass its "
                                "chatterbot_corpus/data/english folder.")
    out = {}
    for f in files:
        if f.stem in exclude:
            continue
        payload = yaml.safe_load(f.read_text(encoding="utf-8")) or {}
        out[f.stem] = [" ".join(_turn(t) for t in conv if t is not None)
                       for conv in payload.get("conversations") or [] if conv]
    return out


def load_chatterbot(path: str | os.PathLike | None = None,
                    min_examples: int = MIN_EXAMPLES) -> TextDataset:
    """ChatterBot exchanges labelled by topic as a :class:`TextDataset`.

    Args:
      path: a folder of ChatterBot ``*.yml`` files; default: the bundled :data:`SNAPSHOT`
        (the built-in ``chatterbot`` source).
      min_examples: topics with fewer exchanges after cleaning are dropped.
    """
    rules = dict(min_examples=min_examples, min_chars=MIN_CHARS, max_chars=MAX_CHARS,
                 exclude=EXCLUDE)
    return bundled.load(SNAPSHOT, info, read_corpus_dir, path, **rules)


def write_snapshot(root: str | os.PathLike, out: str | os.PathLike = SNAPSHOT
                   ) -> dict[str, int]:
    """Write the bundle ``out`` from the ChatterBot folder ``root``; returns the exchanges
    written per topic."""
    return bundled.write(out, info, read_corpus_dir, root)
