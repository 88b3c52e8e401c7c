"""Built-in real dataset: application descriptions labelled by their desktop main category.

Debian ships AppStream metadata for the desktop software of each release (DEP-11
``Components-amd64.yml.gz``: one YAML document per application, add-on, font, codec, ...,
with its name, summary, HTML description and Freedesktop ``Categories``). Each component
with an English description is one example: the text is the description's **first
paragraph** (tags stripped, entities decoded: the pitch of an app store page, e.g. "OpenSSN
is a submarine simulation (subsim) which tries to emulate the behaviour of modern
submarines. ..."), the label its Freedesktop *main* category (``Game``, ``Utility``,
``AudioVideo``, ``Network``, ``Graphics``, ``System``, ``Office``, ``Development``,
``Education``, ``Science``, ``Settings``). Genre: product descriptions (marketing prose
about software), longer and more varied than Debian's one-line synopses.

What is dropped, and why:

- components without an English (``C``) description (their summary alone is a synopsis,
  the ``debian`` source's genre), without categories, or with several main categories
  (``Audio`` and ``Video`` count as ``AudioVideo``; ``Education`` + ``Science`` and other
  pairs are ambiguous): left out of the bundle;
- the rules of :mod:`jaxmaml.data.bundled` at load: length bounds (:data:`MIN_CHARS` -
  :data:`MAX_CHARS`: a one-word stub or a page-long paragraph), repeats within a category
  (one package's several launchers share a description), descriptions in several
  categories, and categories left with fewer than ``min_examples`` (``Settings`` at the
  default 20).

The built-in ``appstream`` source is the **bundled snapshot** :data:`SNAPSHOT` (Debian 12
bookworm ``main`` DEP-11 metadata, generated 2023-06-09), written by :func:`write_snapshot`
(``python scripts/bundle_snapshot.py appstream``) from the Components file APT fetches when DEP-11
targets are enabled; ``load_appstream(FILE)`` reads such a file instead.

Licence: each component's own metadata licence; AppStream metainfo files must declare a
permissive one (CC0-1.0, FSFAP, MIT, CC-BY(-SA), ...), and components generated from
``.desktop`` files carry their Debian ``main`` (DFSG-free) package's licence; see
:data:`COPYRIGHT`, kept beside the snapshot. Counts are in :data:`info`.
"""

from __future__ import annotations

import gzip
import html
import os
import re
from pathlib import Path
from typing import Iterable

import yaml

from jaxmaml.data import bundled
from jaxmaml.data.sources import TextDataset

SNAPSHOT = Path(__file__).resolve().parent / "appstream_bookworm_main.json.gz"
COPYRIGHT = Path(__file__).resolve().parent / "appstream_bookworm_main.copyright"
MAIN_CATEGORIES = ("AudioVideo", "Development", "Education", "Game", "Graphics", "Network",
                   "Office", "Science", "Settings", "System", "Utility")
_FOLD = {"Audio": "AudioVideo", "Video": "AudioVideo"}
MIN_EXAMPLES = 20
MIN_CHARS, MAX_CHARS = 40, 1000

info = {
    "name": "appstream-categories",
    "description": "application descriptions (first paragraph) labelled by Freedesktop main "
                   "category",
    "genre": "product descriptions",
    "package": "Debian 12 bookworm main DEP-11 Components-amd64 (generated 2023-06-09)",
    "licence": "each component's metadata licence (permissive: CC0-1.0, FSFAP, MIT, ...)",
    "num_examples": 1_500,
    "num_classes": 10,
}


def first_paragraph(description: str) -> str:
    """The text of the first ``<p>`` of an AppStream HTML description (tags stripped,
    entities decoded, whitespace collapsed); ``""`` when it has none."""
    match = re.search(r"<p>(.*?)</p>", description, flags=re.DOTALL)
    if not match:
        return ""
    return bundled.collapse(html.unescape(re.sub(r"<[^>]+>", "", match.group(1))))


def main_category(categories: Iterable[str]) -> str | None:
    """The one Freedesktop main category among ``categories`` (``Audio``/``Video`` count
    as ``AudioVideo``), or ``None`` when there are none or several."""
    found = {_FOLD.get(c, c) for c in categories} & set(MAIN_CATEGORIES)
    return found.pop() if len(found) == 1 else None


def select_components(components: Iterable[dict]) -> dict[str, list[str]]:
    """``{main category: first paragraphs}`` of the DEP-11 component documents that have
    an English description and exactly one main category, categories sorted, texts in
    input order."""
    out: dict[str, list[str]] = {}
    for comp in components:
        text = first_paragraph((comp.get("Description") or {}).get("C") or "")
        label = main_category(comp.get("Categories") or [])
        if text and label:
            out.setdefault(label, []).append(text)
    return dict(sorted(out.items()))


def read_components(path: str | os.PathLike) -> dict[str, list[str]]:
    """:func:`select_components` of a DEP-11 ``Components-*.yml[.gz]`` file (its header
    document skipped).

    Raises:
      FileNotFoundError: no such file (says how APT fetches it).
    """
    if not Path(path).is_file():
        raise FileNotFoundError(
            f"no DEP-11 file {path}: run `apt-get update -o Acquire::IndexTargets::deb::"
            "DEP-11::DefaultEnabled=true` and pass /var/lib/apt/lists/*_dep11_Components-"
            "amd64.yml.gz.")
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        docs = [d for d in yaml.load_all(f, Loader=loader) if d and "ID" in d]
    return select_components(docs)


def load_appstream(path: str | os.PathLike | None = None,
                   min_examples: int = MIN_EXAMPLES) -> TextDataset:
    """AppStream application descriptions labelled by main category as a
    :class:`TextDataset`.

    Args:
      path: a DEP-11 ``Components-*.yml[.gz]`` file; default: the bundled :data:`SNAPSHOT`
        (the built-in ``appstream`` source).
      min_examples: categories with fewer descriptions after cleaning are dropped.
    """
    rules = dict(min_examples=min_examples, min_chars=MIN_CHARS, max_chars=MAX_CHARS)
    return bundled.load(SNAPSHOT, info, read_components, path, **rules)


def write_snapshot(path: str | os.PathLike, out: str | os.PathLike = SNAPSHOT
                   ) -> dict[str, int]:
    """Write the bundle ``out`` from the DEP-11 file ``path``; returns the descriptions
    written per category."""
    return bundled.write(out, info, read_components, path)
