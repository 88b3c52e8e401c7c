"""Labelled-text bundles: one snapshot format and one set of cleaning rules for the built-in
sources that ship as a gzipped JSON file of ``{class: [texts]}`` (``chatterbot``,
``appstream``, ``pydocs``, ``pyhowto``, ``emoji``).

A bundle is written once from the upstream package by a ``scripts/bundle_snapshot.py NAME``
(:func:`write_bundle`: reproducible bytes, atomic), with the upstream licence file beside
it, and read by the source's loader (:func:`load_bundle`), which applies the cleaning rules
at load time, so a rule change needs no new bundle:

- whitespace collapsed (runs of spaces, tabs and newlines become one space);
- texts shorter than ``min_chars`` or longer than ``max_chars`` dropped (length bounds);
- a text repeated within a class kept once; a text in several classes dropped (ambiguous);
  both compare case-insensitively;
- classes named in ``exclude`` dropped (the held-out genres a source must not feed
  meta-training: trivia, literature, ...);
- classes left with fewer than ``min_examples`` texts dropped.

``info["dropped"]`` counts what each rule removed.
"""

from __future__ import annotations

import gzip
import json
import os
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Callable, Iterable

from jaxmaml.atomic_file import write_json_gz_atomically
from jaxmaml.data.sources import TextDataset, from_lists

FORMAT = "jaxmaml-labelled-bundle-v1"


def collapse(text: str) -> str:
    """``text`` with every whitespace run as one space, stripped."""
    return " ".join(text.split())


def clean(per_class: dict[str, list[str]], *, min_examples: int, min_chars: int,
          max_chars: int, exclude: Iterable[str] = ()
          ) -> tuple[list[str], list[str], dict[str, int]]:
    """The rules of the module docstring over ``{class: texts}``: (texts, labels, drops),
    classes and texts in input order."""
    exclude = set(exclude)
    drops = dict.fromkeys(("excluded_class", "length", "repeated", "in_several_classes",
                           "small_class"), 0)
    drops["excluded_class"] = sum(len(v) for k, v in per_class.items() if k in exclude)
    rows, seen = [], set()
    for label, texts in per_class.items():
        if label in exclude:
            continue
        for text in map(collapse, texts):
            if not min_chars <= len(text) <= max_chars:
                drops["length"] += 1
            elif (label, text.lower()) in seen:
                drops["repeated"] += 1
            else:
                seen.add((label, text.lower()))
                rows.append((text, label))
    classes_of = defaultdict(set)
    for text, label in rows:
        classes_of[text.lower()].add(label)
    drops["in_several_classes"] = sum(len(classes_of[t.lower()]) > 1 for t, _ in rows)
    rows = [(t, y) for t, y in rows if len(classes_of[t.lower()]) == 1]
    sizes = Counter(y for _, y in rows)
    drops["small_class"] = sum(n for n in sizes.values() if n < min_examples)
    rows = [(t, y) for t, y in rows if sizes[y] >= min_examples]
    return [t for t, _ in rows], [y for _, y in rows], drops


def write_bundle(out: str | os.PathLike, per_class: dict[str, list[str]], *, name: str,
                 package: str, licence: str) -> dict[str, int]:
    """Write the bundle ``out`` (gzipped JSON, atomically, the same bytes for the same
    input) holding ``per_class`` as given; returns the texts written per class."""
    payload = {"format": FORMAT, "name": name, "package": package, "licence": licence,
               "classes": per_class}
    write_json_gz_atomically(out, payload)
    return {label: len(texts) for label, texts in per_class.items()}


def read_bundle(path: str | os.PathLike) -> dict:
    """The payload of the bundle ``path``: ``{"format", "name", "package", "licence",
    "classes": {class: [texts]}}``.

    Raises:
      ValueError: ``path`` is not a bundle (says to reinstall jaxmaml or rerun the script).
    """
    with gzip.open(path, "rt", encoding="utf-8") as f:
        payload = json.load(f)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} file; reinstall jaxmaml or rerun its "
                         "scripts/bundle_snapshot.py NAME.")
    return payload


def to_dataset(per_class: dict[str, list[str]], info: dict, *, min_examples: int,
               min_chars: int, max_chars: int, exclude: Iterable[str] = ()) -> TextDataset:
    """``{class: texts}`` after :func:`clean`, as a :class:`TextDataset` whose ``info`` is
    ``info`` plus the rules and the drop counts.

    Raises:
      ValueError: no class survives the rules (says to lower ``min_examples``).
    """
    exclude = tuple(exclude)
    texts, labels, drops = clean(per_class, min_examples=min_examples, min_chars=min_chars,
                                 max_chars=max_chars, exclude=exclude)
    if not texts:
        raise ValueError(f"no class of {info.get('name', 'the source')} keeps {min_examples} "
                         f"texts of {min_chars}-{max_chars} characters; lower min_examples.")
    meta = dict(info, min_examples=min_examples, length_bounds=[min_chars, max_chars],
                excluded=list(exclude), dropped=drops)
    return from_lists(texts, labels, info=meta)


def load_bundle(path: str | os.PathLike, info: dict, **rules) -> TextDataset:
    """The bundle ``path`` through :func:`to_dataset` (``rules``: its keyword arguments);
    ``info`` gains the bundle's file name and package."""
    payload = read_bundle(path)
    meta = dict(info, snapshot=Path(path).name, package=payload["package"])
    return to_dataset(payload["classes"], meta, **rules)


def load(snapshot: str | os.PathLike, info: dict, read: Callable[[Any], dict[str, list[str]]],
         path: str | os.PathLike | None = None, **rules) -> TextDataset:
    """A built-in source: its bundle ``snapshot`` (``path`` None), or ``read(path)`` (the
    upstream files it was made from), through :func:`to_dataset` with ``rules``; ``info``
    is the source's description (its ``num_*`` counts, which describe the bundle, dropped)."""
    meta = {k: v for k, v in info.items() if not k.startswith("num_")}
    if path is None:
        return load_bundle(snapshot, meta, **rules)
    return to_dataset(read(path), dict(meta, source=str(path)), **rules)


def write(out: str | os.PathLike, info: dict, read: Callable[[Any], dict[str, list[str]]],
          root: str | os.PathLike) -> dict[str, int]:
    """:func:`write_bundle` of ``read(root)`` with the source's ``info`` (name, package,
    licence)."""
    return write_bundle(out, read(root), name=info["name"], package=info["package"],
                        licence=info["licence"])
