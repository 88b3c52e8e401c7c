"""Built-in real dataset: emoji names labelled by their Unicode subgroup.

Unicode's ``emoji-test.txt`` (Debian's ``unicode-data`` 15.0.0: Emoji 15.0, in CLDR order)
lists every emoji with its CLDR short name under a group and a subgroup (``face-smiling``,
``face-concerned``, ``person-role``, ``animal-mammal``, ``food-prepared``,
``transport-ground``, ``sky & weather``, ``clothing``, ``household``, ``geometric``, ...).
Each emoji is one example: the text is its name ("grinning face with sweat", "sauropod",
"fire engine"), the label its subgroup. Genre: short names of everyday things and
expressions (two to four words), which no other built-in source has; the subgroups are
fine-grained (nine of them are kinds of faces, people or animals).

What is dropped, and why:

- all but ``fully-qualified`` entries (the ``unqualified`` / ``minimally-qualified``
  spellings repeat a name), skin-tone variants ("... : medium skin tone"), and every name
  with a colon (a template: ``flag: Germany``, ``keycap: 7``, ``family: man, woman, boy``,
  ``kiss: woman, man``: the whole ``country-flag`` subgroup goes);
- gendered variants of a listed person ("man teacher", "woman teacher" when "teacher" is
  listed; "woman facepalming" when "person facepalming" is; "men holding hands" when
  "people holding hands" is): near-copies that would make a task a string match;
- the rules of :mod:`jaxmaml.data.bundled` at load: length bounds (:data:`MIN_CHARS` -
  :data:`MAX_CHARS`), repeats, names in several subgroups, and subgroups left with fewer
  than ``min_examples`` names (73 of the 96 left; 23 keep 20 or more).

The built-in ``emoji`` source is the **bundled snapshot** :data:`SNAPSHOT`, written by
:func:`write_snapshot` (``python scripts/bundle_snapshot.py emoji``) from the package's
``emoji-test.txt``; ``load_emoji(FILE)`` reads such a file instead.

Licence: the Unicode License (Unicode, Inc. license agreement for data files: permissive,
with the copyright and permission notice kept), Debian's copyright file of
``unicode-data`` kept beside the snapshot as :data:`COPYRIGHT`. Counts are in :data:`info`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable

from jaxmaml.data import bundled
from jaxmaml.data.sources import TextDataset

EMOJI_TEST = Path("/usr/share/unicode/emoji/emoji-test.txt")
SNAPSHOT = Path(__file__).resolve().parent / "emoji_15.0.json.gz"
COPYRIGHT = Path(__file__).resolve().parent / "emoji_15.0.copyright"
MIN_EXAMPLES = 20
MIN_CHARS, MAX_CHARS = 2, 100
_ENTRY = re.compile(r"^[0-9A-F ]+;\s*([a-z-]+)\s*#\s*\S+\s+E\d+\.\d+\s+(.+?)\s*$")
_GENDERED = re.compile(r"^(?:man|woman|men|women) (.+)$")

info = {
    "name": "emoji-subgroups",
    "description": "emoji CLDR short names labelled by Unicode emoji subgroup",
    "genre": "short names",
    "package": "Debian 12 unicode-data 15.0.0-1 (emoji-test.txt, Emoji 15.0)",
    "licence": "Unicode License (Unicode, Inc. data files licence agreement)",
    "num_examples": 713,
    "num_classes": 23,
}


def parse_emoji_test(lines: Iterable[str]) -> dict[str, list[str]]:
    """``{subgroup: names}`` of the fully-qualified entries of ``emoji-test.txt`` lines
    (every name, in file order; :func:`select_names` filters them)."""
    out: dict[str, list[str]] = {}
    subgroup = None
    for line in lines:
        if line.startswith("# subgroup:"):
            subgroup = line.split(":", 1)[1].strip()
            continue
        match = _ENTRY.match(line)
        if match and subgroup and match.group(1) == "fully-qualified":
            out.setdefault(subgroup, []).append(match.group(2))
    return out


def select_names(per_subgroup: dict[str, list[str]]) -> dict[str, list[str]]:
    """The names the module docstring keeps: no skin tones, no colon templates, no
    gendered variant of a person listed in the same subgroup; empty subgroups left out."""
    out = {}
    for subgroup, names in per_subgroup.items():
        listed = set(names)
        kept = []
        for name in names:
            if ":" in name or "skin tone" in name:
                continue
            g = _GENDERED.match(name)
            if g and {g.group(1), f"person {g.group(1)}", f"people {g.group(1)}"} & listed:
                continue
            kept.append(name)
        if kept:
            out[subgroup] = kept
    return out


def read_emoji_test(path: str | os.PathLike = EMOJI_TEST) -> dict[str, list[str]]:
    """:func:`select_names` of :func:`parse_emoji_test` of the file ``path``.

    Raises:
      FileNotFoundError: no such file (says to install ``unicode-data``).
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"no {path}: run `apt-get install unicode-data` (Debian's "
                                "package) or pass an emoji-test.txt file.")
    with open(path, encoding="utf-8") as f:
        return select_names(parse_emoji_test(f))


def load_emoji(path: str | os.PathLike | None = None,
               min_examples: int = MIN_EXAMPLES) -> TextDataset:
    """Emoji names labelled by subgroup as a :class:`TextDataset`.

    Args:
      path: an ``emoji-test.txt`` file; default: the bundled :data:`SNAPSHOT` (the
        built-in ``emoji`` source).
      min_examples: subgroups with fewer names after cleaning are dropped.
    """
    rules = dict(min_examples=min_examples, min_chars=MIN_CHARS, max_chars=MAX_CHARS)
    return bundled.load(SNAPSHOT, info, read_emoji_test, path, **rules)


def write_snapshot(path: str | os.PathLike = EMOJI_TEST, out: str | os.PathLike = SNAPSHOT
                   ) -> dict[str, int]:
    """Write the bundle ``out`` from the ``emoji-test.txt`` file ``path``; returns the
    names written per subgroup."""
    return bundled.write(out, info, read_emoji_test, path)
