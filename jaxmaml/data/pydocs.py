"""Built-in real dataset: Python standard-library reference entries labelled by chapter.

The Python Library Reference (Debian's ``python3.11-doc``: the HTML of
https://docs.python.org/3.11/library/) documents every function, class, method, attribute,
constant and exception of the standard library, each as a signature followed by prose.
Each entry is one example: the text is the **first paragraph** of its prose ("Return the
ceiling of x, the smallest integer greater than or equal to x."); the signature and the
name are *not* part of it. The label is the reference's chapter the entry's page belongs
to (``Text Processing Services``, ``Numeric and Mathematical Modules``, ``File and
Directory Access``, ``Concurrent Execution``, ``Internet Protocols and Support``,
``Graphical User Interfaces with Tk``, ...). Genre: technical documentation (manual prose,
imperative "Return ...", "Raise ..."), which no other built-in source has.

What is dropped, and why:

- chapters that are not a topic (:data:`NOT_TOPICS`): ``Introduction``, ``Superseded
  Modules`` (a grab-bag of deprecated modules of every topic) and ``Security
  Considerations`` (links to other chapters): left out of the bundle;
- the rules of :mod:`jaxmaml.data.bundled` at load: length bounds (:data:`MIN_CHARS` -
  :data:`MAX_CHARS`: stubs such as "Alias for x." and page-long paragraphs), repeats within
  a chapter ("Return a new reference." for twenty methods), paragraphs in several chapters,
  and chapters left with fewer than ``min_examples`` entries.

A page belongs to the first chapter (in the reference's order) whose table of contents
reaches it: the chapter's own page, the module pages it lists and the pages they list
(``asyncio`` and its sub-pages belong to ``Networking and Interprocess Communication``).

The built-in ``pydocs`` source is the **bundled snapshot** :data:`SNAPSHOT` (Debian 12's
``python3.11-doc`` 3.11.2-6+deb12u9), written by :func:`write_snapshot`
(``python scripts/bundle_snapshot.py pydocs``) from the package's ``html/library`` folder;
``load_pydocs(DIR)`` reads such a folder instead.

The built-in ``pyhowto`` source is the same package's HOWTO guides (``html/howto``: the
Logging HOWTO, Regular Expression HOWTO, Sorting HOW TO, Socket Programming HOWTO, Argparse
Tutorial, ...): each paragraph of a guide's body is one example, the guide's title its label
(:func:`read_howto_dir`, bundle :data:`HOWTO_SNAPSHOT`). Genre: how-to and tutorial prose
("Now, let's ...", "You can also ..."), addressed to a reader learning a task. Dropped: the
same rules of :mod:`jaxmaml.data.bundled` at load (length bounds :data:`HOWTO_MIN_CHARS` -
:data:`MAX_CHARS` drop author lines and version stamps; a paragraph in two guides goes;
guides with fewer than ``min_examples`` paragraphs go: ``Porting Extension Modules to Python
3``, a stub).

Licence: PSF License Agreement for Python 3.11 (the documentation's licence, from Debian's
copyright file of ``python3.11-doc``), kept beside the snapshot as :data:`COPYRIGHT`.
Counts are in :data:`info`.
"""

from __future__ import annotations

import html
import os
import re
from html.parser import HTMLParser
from pathlib import Path

from jaxmaml.data import bundled
from jaxmaml.data.sources import TextDataset

SNAPSHOT = Path(__file__).resolve().parent / "pydocs_3.11.2.json.gz"
HOWTO_SNAPSHOT = Path(__file__).resolve().parent / "pyhowto_3.11.2.json.gz"
COPYRIGHT = Path(__file__).resolve().parent / "pydocs_3.11.2.copyright"
NOT_TOPICS = ("Introduction", "Superseded Modules", "Security Considerations")
MIN_EXAMPLES = 20
MIN_CHARS, MAX_CHARS = 25, 1000
HOWTO_MIN_CHARS = 40
_TOC_LINK = re.compile(r'class="toctree-l1"><a class="reference internal" '
                       r'href="([^"#]+)">(.*?)</a>', re.DOTALL)

info = {
    "name": "pydocs-chapters",
    "description": "Python Library Reference entries (first paragraph) labelled by chapter",
    "genre": "technical documentation",
    "package": "Debian 12 python3.11-doc 3.11.2-6+deb12u9 (html/library)",
    "licence": "PSF-2.0 (PSF License Agreement for Python 3.11)",
    "num_examples": 7_237,
    "num_classes": 30,
}

howto_info = {
    "name": "pyhowto-guides",
    "description": "paragraphs of the Python HOWTO guides labelled by guide",
    "genre": "how-to guides and tutorials",
    "package": info["package"].replace("html/library", "html/howto"),
    "licence": info["licence"],
    "num_examples": 1_851,
    "num_classes": 18,
}


class _EntryParagraphs(HTMLParser):
    """Collects the first ``<p>`` directly inside the ``<dd>`` of every ``<dl class="py
    ...">`` (a documented object), as plain text."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.paragraphs: list[str] = []
        self._stack: list[list] = []  # [tag, is_py_dl / wants_paragraph]
        self._text: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag in ("br", "img", "hr", "input", "meta", "link", "wbr"):
            return
        parent = self._stack[-1] if self._stack else None
        if tag == "dl":
            self._stack.append([tag, (dict(attrs).get("class") or "").startswith("py ")])
        elif tag == "dd":
            self._stack.append([tag, bool(parent and parent[0] == "dl" and parent[1])])
        elif tag == "p" and parent and parent[0] == "dd" and parent[1] and self._text is None:
            parent[1] = False  # only the first paragraph of this entry
            self._text = []
            self._stack.append([tag, True])
        else:
            self._stack.append([tag, False])

    def handle_endtag(self, tag):
        while self._stack:
            top = self._stack.pop()
            if top[0] == "p" and top[1] and self._text is not None:
                self.paragraphs.append(bundled.collapse("".join(self._text)))
                self._text = None
            if top[0] == tag:
                break

    def handle_data(self, data):
        if self._text is not None:
            self._text.append(data)


def entry_paragraphs(page_html: str) -> list[str]:
    """The first paragraph of every documented object on a Sphinx page, in page order."""
    parser = _EntryParagraphs()
    parser.feed(page_html)
    parser.close()
    return [p for p in parser.paragraphs if p]


def toc_links(page_html: str) -> list[tuple[str, str]]:
    """``(href, title)`` of the top-level table-of-contents links of a page (no anchors)."""
    return [(href, bundled.collapse(html.unescape(re.sub(r"<[^>]+>", "", title))))
            for href, title in _TOC_LINK.findall(page_html)]


def read_library_dir(root: str | os.PathLike, not_topics: tuple[str, ...] = NOT_TOPICS
                     ) -> dict[str, list[str]]:
    """``{chapter title: entry paragraphs}`` for the ``library`` folder ``root`` of the
    Python HTML documentation (its ``index.html`` lists the chapters), chapters in the
    reference's order, :data:`NOT_TOPICS` left out.

    Raises:
      FileNotFoundError: no ``index.html`` in ``root`` (says how to get the folder).
    """
    root = Path(root)
    if not (root / "index.html").is_file():
        raise FileNotFoundError(f"no index.html in {root}: `apt-get download python3.11-doc`"
                                ", `dpkg -x` it and pass usr/share/doc/python3.11/html/library.")
    seen: set[str] = set()
    out: dict[str, list[str]] = {}
    for href, title in toc_links((root / "index.html").read_text(encoding="utf-8")):
        todo, texts = [href], []
        while todo:
            page = todo.pop(0)
            if page in seen or "/" in page or not (root / page).is_file():
                continue
            seen.add(page)
            text = (root / page).read_text(encoding="utf-8")
            texts += entry_paragraphs(text)
            todo += [h for h, _ in toc_links(text)]
        if title not in not_topics:
            out[title] = texts
    return out


def load_pydocs(path: str | os.PathLike | None = None,
                min_examples: int = MIN_EXAMPLES) -> TextDataset:
    """Python Library Reference entries labelled by chapter as a :class:`TextDataset`.

    Args:
      path: the ``html/library`` folder of the Python documentation; default: the bundled
        :data:`SNAPSHOT` (the built-in ``pydocs`` source).
      min_examples: chapters with fewer entries after cleaning are dropped.
    """
    rules = dict(min_examples=min_examples, min_chars=MIN_CHARS, max_chars=MAX_CHARS,
                 exclude=NOT_TOPICS)
    return bundled.load(SNAPSHOT, info, read_library_dir, path, **rules)


def write_snapshot(root: str | os.PathLike, out: str | os.PathLike = SNAPSHOT
                   ) -> dict[str, int]:
    """Write the bundle ``out`` from the documentation folder ``root``; returns the entries
    written per chapter."""
    return bundled.write(out, info, read_library_dir, root)


def body_paragraphs(page_html: str) -> list[str]:
    """Every plain ``<p>`` of a Sphinx page's main body (not the sidebar or the footer; not
    admonition titles), as text, in page order."""
    start = page_html.find('role="main"')
    end = page_html.find('class="sphinxsidebar"', max(start, 0))
    body = page_html[max(start, 0):end if end > 0 else None]
    return [p for p in (bundled.collapse(html.unescape(re.sub(r"<[^>]+>", "", m)))
                        for m in re.findall(r"<p>(.*?)</p>", body, flags=re.DOTALL)) if p]


def read_howto_dir(root: str | os.PathLike) -> dict[str, list[str]]:
    """``{guide title: its body paragraphs}`` for the ``howto`` folder ``root`` of the
    Python HTML documentation (its ``index.html`` lists the guides), in the index's order.

    Raises:
      FileNotFoundError: no ``index.html`` in ``root`` (says how to get the folder).
    """
    root = Path(root)
    if not (root / "index.html").is_file():
        raise FileNotFoundError(f"no index.html in {root}: `apt-get download python3.11-doc`"
                                ", `dpkg -x` it and pass usr/share/doc/python3.11/html/howto.")
    return {title: body_paragraphs((root / href).read_text(encoding="utf-8"))
            for href, title in toc_links((root / "index.html").read_text(encoding="utf-8"))
            if "/" not in href and (root / href).is_file()}


def load_pyhowto(path: str | os.PathLike | None = None,
                 min_examples: int = MIN_EXAMPLES) -> TextDataset:
    """Python HOWTO paragraphs labelled by guide as a :class:`TextDataset`.

    Args:
      path: the ``html/howto`` folder of the Python documentation; default: the bundled
        :data:`HOWTO_SNAPSHOT` (the built-in ``pyhowto`` source).
      min_examples: guides with fewer paragraphs after cleaning are dropped.
    """
    rules = dict(min_examples=min_examples, min_chars=HOWTO_MIN_CHARS, max_chars=MAX_CHARS)
    return bundled.load(HOWTO_SNAPSHOT, howto_info, read_howto_dir, path, **rules)


def write_howto_snapshot(root: str | os.PathLike, out: str | os.PathLike = HOWTO_SNAPSHOT
                         ) -> dict[str, int]:
    """Write the bundle ``out`` from the HOWTO folder ``root``; returns the paragraphs
    written per guide."""
    return bundled.write(out, howto_info, read_howto_dir, root)
