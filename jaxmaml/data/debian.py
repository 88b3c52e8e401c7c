"""Built-in real dataset: Debian package synopses labelled by archive section.

Every binary package of a Debian release is one example: the text is its one-line synopsis
(the ``Description:`` line of ``apt-cache dumpavail``; the package name is *not* part of
the text) and the label is its ``Section:`` (``science``, ``games``, ``sound``, ``mail``,
``hamradio``, ...). Long descriptions are not used: the Packages lists carry only the
synopsis (the long text lives in the ``Translation-en`` files, which are not fetched).

What is dropped, and why (decided on the 2026-11-29 bookworm snapshot, documented in
docs/data.md):

- sections defined by the *form* of a package rather than its topic (:data:`FORM_SECTIONS`:
  ``libs``, ``libdevel``, ``oldlibs``, ``doc``, ``debug``, ``metapackages``, ``tasks``,
  ``introspection``, ``localization``): their synopses are templates ("... - development
  files", "debugging symbols for ...", "... documentation");
- programming-language ecosystems (:data:`LANGUAGE_SECTIONS`: ``python``, ``perl``,
  ``rust``, ``golang``, ...): their synopses name the language ("Rust crate ...",
  "Python 3 module ..."), which gives the label away and makes tasks trivial;
- synopses that occur in several sections (ambiguous), repeats of a synopsis within a
  section (``foo`` / ``foo-data`` / ``foo-common`` share one), and sections left with fewer
  than ``min_examples`` examples.

The built-in ``debian`` source is a **bundled snapshot** (:data:`SNAPSHOT`: Debian 12.15
bookworm ``main``, amd64, the rows this filter keeps, gzipped JSON), so every machine
reads the same examples, with or without APT, and every number measured on it reproduces.
It was written by :func:`write_snapshot` (``python scripts/debian_snapshot.py``) from the
release's own Packages list. Reading a machine's live APT lists instead (which change with
every ``apt-get update`` and differ between machines): :func:`from_apt_lists`, which parses
``apt-cache dumpavail`` once and caches it as JSON under ``$JAXMAML_CACHE_DIR/datasets``
(default ``~/.cache/jaxmaml/datasets``) with the lists' snapshot date (the ``Date:`` of
their ``InRelease`` file), release and counts; the cache file name hashes the lists' names,
sizes and mtimes, so ``apt-get update`` makes a new one.

Licence: each package's own; the synopses are short factual texts from the Debian archive
(https://www.debian.org/legal/), used here for research. Counts of the snapshot used here are
in :data:`info`.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable, Iterator

from jaxmaml.atomic_file import write_file_atomically, write_json_gz_atomically
from jaxmaml.data.sources import from_lists, TextDataset

APT_LISTS = Path("/var/lib/apt/lists")
SNAPSHOT = Path(__file__).resolve().parent / "debian_bookworm_12.15_main.json.gz"
FORM_SECTIONS = ("libs", "libdevel", "oldlibs", "doc", "debug", "metapackages", "tasks",
                 "introspection", "localization")
LANGUAGE_SECTIONS = ("python", "perl", "haskell", "rust", "golang", "javascript", "java",
                     "ruby", "gnu-r", "php", "ocaml", "lisp", "cli-mono", "zope")
MIN_EXAMPLES = 20
# The archive's own section titles (as packages.debian.org lists them): the class
# descriptions of this source (jaxmaml.data.label_text).
SECTION_TITLES = {
    "admin": "Administration Utilities", "comm": "Communication Programs",
    "database": "Databases", "devel": "Development", "editors": "Editors",
    "education": "Education", "electronics": "Electronics", "embedded": "Embedded software",
    "fonts": "Fonts", "games": "Games", "gnome": "GNOME", "gnustep": "GNUstep",
    "graphics": "Graphics", "hamradio": "Ham Radio", "httpd": "Web Servers",
    "interpreters": "Interpreters", "kde": "KDE", "kernel": "Kernels", "mail": "Mail",
    "math": "Mathematics", "misc": "Miscellaneous", "net": "Network", "news": "Newsgroups",
    "otherosfs": "Cross Platform", "science": "Science", "shells": "Shells",
    "sound": "Sound", "tex": "TeX", "text": "Text Processing", "utils": "Utilities",
    "vcs": "Version Control Systems", "video": "Video", "web": "Web Software",
    "x11": "X Window System software", "xfce": "Xfce",
}
_FORMAT = "jaxmaml-debian-v1"
_SNAPSHOT_FORMAT = "jaxmaml-debian-snapshot-v1"

info = {
    "name": "debian-sections",
    "description": "Debian package synopses labelled by archive section (topic sections only)",
    "snapshot": "Debian 12.15 bookworm main, amd64 (InRelease dated 2026-07-11), bundled",
    "num_packages": 63_436,
    "num_sections": 58,
    "num_examples": 19_948,
    "num_classes": 35,
    "license": "each package's own; short factual synopses from the Debian archive",
    "source": "the bundled snapshot (from_apt_lists: apt-cache dumpavail)",
}


def parse_dumpavail(lines: Iterable[str]) -> Iterator[tuple[str, str, str]]:
    """``(package, section, synopsis)`` per stanza of ``apt-cache dumpavail`` output.

    Stanzas are separated by blank lines; continuation lines (leading space) are skipped.
    A ``Section:`` such as ``contrib/games`` is reduced to ``games``; stanzas without a
    package, section or description are skipped.
    """
    fields: dict[str, str] = {}
    for line in list(lines) + [""]:
        line = line.rstrip("\n")
        if not line.strip():
            if fields.get("Package") and fields.get("Section") and fields.get("Description"):
                yield (fields["Package"], fields["Section"].rsplit("/", 1)[-1],
                       fields["Description"].strip())
            fields = {}
            continue
        if line[0] in " \t":
            continue
        key, sep, value = line.partition(":")
        if sep:
            fields[key] = value.strip()


def select(rows: Iterable[tuple[str, str, str]], min_examples: int = MIN_EXAMPLES,
           exclude: Iterable[str] = FORM_SECTIONS + LANGUAGE_SECTIONS
           ) -> tuple[list[str], list[str], dict]:
    """Filter ``(package, section, synopsis)`` rows into (texts, labels, drop counts).

    Drops excluded sections, synopses seen in more than one section, repeats within a
    section (first package kept, in input order) and then sections with fewer than
    ``min_examples`` examples.
    """
    exclude = set(exclude)
    rows = list(rows)
    sections_of: dict[str, set[str]] = defaultdict(set)
    for _, section, text in rows:
        sections_of[text.lower()].add(section)
    kept: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    drops = Counter()
    for _, section, text in rows:
        key = text.lower()
        if section in exclude:
            drops["excluded_section"] += 1
        elif len(sections_of[key]) > 1:
            drops["ambiguous_synopsis"] += 1
        elif (section, key) in seen:
            drops["repeated_synopsis"] += 1
        else:
            seen.add((section, key))
            kept.append((text, section))
    sizes = Counter(s for _, s in kept)
    small = {s for s, n in sizes.items() if n < min_examples}
    drops["small_section"] = sum(sizes[s] for s in small)
    kept = [(t, s) for t, s in kept if s not in small]
    return [t for t, _ in kept], [s for _, s in kept], dict(drops)


def _package_lists(lists_dir: Path) -> list[Path]:
    return sorted(p for p in lists_dir.glob("*_Packages*") if p.is_file())


def snapshot_info(lists_dir: Path = APT_LISTS) -> dict:
    """The APT lists' names and, per ``*InRelease``/``*Release`` file, its date and release."""
    releases = []
    for release in sorted(lists_dir.glob("*Release")):
        entry = {"file": release.name}
        for line in release.read_text(errors="replace").splitlines():
            key, sep, value = line.partition(":")
            if sep and key in ("Date", "Suite", "Codename", "Version"):
                entry.setdefault(key.lower(), value.strip())
        releases.append(entry)
    return {"lists": [p.name for p in _package_lists(lists_dir)], "releases": releases}


def _cache_file(lists_dir: Path, cache_dir: str | os.PathLike | None) -> Path:
    h = hashlib.sha256(_FORMAT.encode())
    for p in _package_lists(lists_dir):
        st = p.stat()
        h.update(f"{p.name}\0{st.st_size}\0{st.st_mtime_ns}\1".encode())
    root = Path(cache_dir) if cache_dir is not None else Path(
        os.environ.get("JAXMAML_CACHE_DIR") or Path.home() / ".cache" / "jaxmaml") / "datasets"
    return root / f"debian-{h.hexdigest()[:16]}.json"


def build_cache(lists_dir: Path = APT_LISTS, cache_dir: str | os.PathLike | None = None
                ) -> Path:
    """Parse ``apt-cache dumpavail`` once into a JSON cache file; returns its path.

    The file holds ``{"format", "snapshot", "counts", "rows": [[package, section,
    synopsis], ...]}`` (every section, unfiltered: filtering happens at load time).
    """
    if not _package_lists(lists_dir) or shutil.which("apt-cache") is None:
        raise FileNotFoundError(
            f"no APT package lists in {lists_dir} (or no apt-cache): run `apt-get update` "
            "(as root) to build the debian source, or pass path= a dumpavail-format file.")
    file = _cache_file(lists_dir, cache_dir)
    if file.is_file():
        return file
    out = subprocess.run(["apt-cache", "dumpavail"], capture_output=True, text=True,
                         check=True).stdout
    rows = list(parse_dumpavail(out.splitlines()))
    counts = Counter(s for _, s, _ in rows)
    payload = {"format": _FORMAT, "snapshot": snapshot_info(lists_dir),
               "counts": {"packages": len(rows), "sections": len(counts),
                          "per_section": dict(counts.most_common())},
               "rows": [list(r) for r in rows]}
    # atomic: concurrent builds never read half a file
    write_file_atomically(file, lambda f: json.dump(payload, f), text=True)
    return file


def _dataset(rows: list[tuple[str, str, str]], snapshot: dict, min_examples: int,
             release: dict | None = None) -> TextDataset:
    """``select`` + ``from_lists``. ``release``: the counts and drops of the release the
    (already filtered) ``rows`` came from, reported instead of those of ``rows``."""
    texts, labels, drops = select(rows, min_examples)
    if not texts:
        raise ValueError(f"no Debian packages left after filtering {len(rows)} stanzas; "
                         "check the dumpavail file.")
    meta = {k: v for k, v in info.items() if not k.startswith("num_") and k != "snapshot"}
    meta.update(snapshot=snapshot, num_packages=len(rows),
                num_sections=len({s for _, s, _ in rows}), dropped=drops,
                min_examples=min_examples)
    if release is not None:
        meta.update(num_packages=release["counts"]["packages"],
                    num_sections=release["counts"]["sections"],
                    dropped={**release["dropped"], "small_section": drops["small_section"]})
    return from_lists(texts, labels, info=meta)


def load_debian(path: str | os.PathLike | None = None, min_examples: int = MIN_EXAMPLES
                ) -> TextDataset:
    """Debian package synopses -> section labels as a :class:`TextDataset`.

    Args:
      path: a file in ``apt-cache dumpavail`` format (e.g. the test fixture); default: the
        bundled snapshot :data:`SNAPSHOT` (the built-in ``debian`` source).
      min_examples: sections with fewer examples after filtering are dropped.

    Returns:
      ``TextDataset`` with sorted section names as classes; ``info`` holds the snapshot,
      the package and section counts and what was dropped.
    """
    if path is not None:
        with open(path, encoding="utf-8") as f:
            rows = list(parse_dumpavail(f))
        return _dataset(rows, {"file": os.path.abspath(path)}, min_examples)
    with gzip.open(SNAPSHOT, "rt", encoding="utf-8") as f:
        payload = json.load(f)
    if payload.get("format") != _SNAPSHOT_FORMAT:
        raise ValueError(f"{SNAPSHOT} is not a {_SNAPSHOT_FORMAT} file; reinstall jaxmaml.")
    # The bundle holds the rows select() kept (at min_examples 1): filtering them again is
    # the identity but for the section-size rule, so min_examples still applies. The
    # package and drop counts are those of the full release.
    return _dataset([tuple(r) for r in payload["rows"]], payload["snapshot"], min_examples,
                    payload)


def from_apt_lists(min_examples: int = MIN_EXAMPLES,
                   cache_dir: str | os.PathLike | None = None) -> TextDataset:
    """The same dataset built from this machine's live APT lists (``apt-get update`` first),
    through the JSON cache of :func:`build_cache`. Differs from the bundled snapshot when
    the lists hold another release or ``-updates`` / ``-security``."""
    with open(build_cache(cache_dir=cache_dir), encoding="utf-8") as f:
        payload = json.load(f)
    return _dataset([tuple(r) for r in payload["rows"]], payload["snapshot"], min_examples)


def write_snapshot(rows: list[tuple[str, str, str]], snapshot: dict, out: str | os.PathLike
                   ) -> dict:
    """Write the bundled-snapshot file ``out`` (gzipped JSON, atomically) from a release's
    ``(package, section, synopsis)`` rows: the rows :func:`select` keeps at
    ``min_examples=1`` (first package of each kept synopsis), the release's counts and its
    drop counts by every rule but the section-size one (applied at load). Returns the
    counts written."""
    rows = [tuple(r) for r in rows]
    texts, labels, _ = select(rows, 1)
    keep = set(zip(texts, labels))
    kept = []
    for package, section, text in rows:
        if (text, section) in keep:
            keep.discard((text, section))  # the first package of a kept synopsis
            kept.append([package, section, text])
    sections = Counter(s for _, s, _ in rows)
    payload = {"format": _SNAPSHOT_FORMAT, "snapshot": snapshot,
               "counts": {"packages": len(rows), "sections": len(sections),
                          "per_section": dict(sections.most_common())},
               "dropped": select(rows, 1)[2], "rows": kept}
    write_json_gz_atomically(out, payload)
    return payload["counts"]
