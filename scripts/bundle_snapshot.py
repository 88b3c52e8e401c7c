"""Write a bundled snapshot of a built-in source from its upstream package's files.

    python scripts/bundle_snapshot.py NAME INPUT [OUT]

NAME and how to get INPUT (each prints the texts written per class as JSON; then check
``load_NAME() == load_NAME(INPUT)``, as tests/data/test_bundled_sources.py does where the
files are there):

- ``chatterbot``: ``pip download --no-deps chatterbot-corpus==1.3.3`` and unzip the wheel;
  INPUT ``chatterbot_corpus/data/english``. The licence beside the snapshot is the sdist's
  ``license.md`` (``pip download --no-deps --no-binary :all: chatterbot-corpus==1.3.3``).
- ``appstream``: ``apt-get update -o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=true
  -o Dir::State::Lists=/tmp/lists`` (a private lists folder; ``mkdir -p /tmp/lists/partial``);
  INPUT ``/tmp/lists/deb.debian.org_debian_dists_bookworm_main_dep11_Components-amd64.yml.gz``
  (Debian 12, generated 2023-06-09; another release needs another ``info["package"]``).
- ``pydocs`` (and ``pyhowto`` with it): ``apt-get download python3.11-doc && dpkg -x
  python3.11-doc_*.deb pydoc``; INPUT ``pydoc/usr/share/doc/python3.11/html``; OUT is a
  folder (both snapshots; the copyright file is the package's).
- ``emoji``: ``apt-get download unicode-data && dpkg -x unicode-data_*.deb ud``; INPUT
  ``ud/usr/share/unicode/emoji/emoji-test.txt`` (Emoji 15.0; the copyright file is the
  package's).

Default OUT: the bundled file in ``jaxmaml/data`` (for ``pydocs``: that folder). The Debian
and fortunes snapshots have their own scripts (``debian_snapshot.py``,
``fortunes_snapshot.py``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from jaxmaml.data import appstream, chatterbot, emoji, pydocs


def _jobs(name: str, source: Path, out: str | None) -> list:
    """``[(write_snapshot, input, out)]`` of one NAME."""
    if name == "pydocs":
        folder = Path(out) if out else pydocs.SNAPSHOT.parent
        return [(pydocs.write_snapshot, source / "library", folder / pydocs.SNAPSHOT.name),
                (pydocs.write_howto_snapshot, source / "howto",
                 folder / pydocs.HOWTO_SNAPSHOT.name)]
    module = {"chatterbot": chatterbot, "appstream": appstream, "emoji": emoji}[name]
    return [(module.write_snapshot, source, out or module.SNAPSHOT)]


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in ("chatterbot", "appstream", "pydocs", "emoji"):
        print(__doc__, file=sys.stderr)
        return 2
    for write, source, out in _jobs(argv[0], Path(argv[1]), argv[2] if len(argv) > 2 else None):
        try:
            counts = write(source, out)
        except FileNotFoundError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(json.dumps({"out": str(out), "classes": len(counts),
                          "examples": sum(counts.values()), "per_class": counts}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
