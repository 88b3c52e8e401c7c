"""Write the bundled ``appstream`` snapshot from Debian's DEP-11 metadata.

    apt-get update -o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=true \
        -o Dir::State::Lists=/tmp/lists        # a private lists folder (mkdir -p /tmp/lists/partial)
    python scripts/appstream_snapshot.py \
        /tmp/lists/deb.debian.org_debian_dists_bookworm_main_dep11_Components-amd64.yml.gz [OUT]
    # default OUT: jaxmaml/data/appstream_bookworm_main.json.gz

Debian 12 bookworm's Components file (generated 2023-06-09) gives the bundled snapshot;
another release needs another file name and ``info["package"]``. Prints the descriptions
written per category; then check ``load_appstream() == load_appstream(FILE)``.
"""

from __future__ import annotations

import json
import sys

from jaxmaml.data import appstream


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    out = argv[1] if len(argv) > 1 else appstream.SNAPSHOT
    try:
        counts = appstream.write_snapshot(argv[0], out)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({"out": str(out), "classes": len(counts),
                      "examples": sum(counts.values()), "per_class": counts}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
