"""Write the bundled ``debian`` snapshot from this machine's APT lists.

    python scripts/debian_snapshot.py [OUT]   # default: jaxmaml/data/debian_bookworm_12.15_main.json.gz

The lists must hold exactly one Packages list (a release's ``main``, as a fresh Debian
image has before any ``apt-get update`` with ``-updates`` / ``-security``), so the snapshot
is that release and nothing else. Prints the counts written; then check
``jaxmaml.data.debian.load_debian() == from_apt_lists()`` (tests/data/test_builtin_sources.py
does when the lists are the snapshot's).
"""

from __future__ import annotations

import json
import sys

from jaxmaml.data import debian


def main(argv: list[str]) -> int:
    out = argv[0] if argv else debian.SNAPSHOT
    snapshot = debian.snapshot_info()
    if len(snapshot["lists"]) != 1:
        print(f"error: {debian.APT_LISTS} holds {len(snapshot['lists'])} Packages lists "
              f"({snapshot['lists']}); keep one release's main list only.", file=sys.stderr)
        return 2
    with open(debian.build_cache(), encoding="utf-8") as f:
        rows = json.load(f)["rows"]
    counts = debian.write_snapshot(rows, snapshot, out)
    print(json.dumps({"out": str(out), "packages": counts["packages"],
                      "sections": counts["sections"], "snapshot": snapshot}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
