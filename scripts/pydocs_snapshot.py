"""Write the bundled ``pydocs`` snapshot from Debian's python3.11-doc package.

    apt-get download python3.11-doc && dpkg -x python3.11-doc_*.deb pydoc
    python scripts/pydocs_snapshot.py pydoc/usr/share/doc/python3.11/html/library [OUT]
    # default OUT: jaxmaml/data/pydocs_3.11.2.json.gz

Debian 12's 3.11.2-6+deb12u9 gives the bundled snapshot (another version needs another
file name and ``info["package"]``); the copyright file beside it is the package's
``usr/share/doc/python3.11-doc/copyright``. Prints the entries written per chapter; then
check ``load_pydocs() == load_pydocs(DIR)``.
"""

from __future__ import annotations

import json
import sys

from jaxmaml.data import pydocs


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    out = argv[1] if len(argv) > 1 else pydocs.SNAPSHOT
    try:
        counts = pydocs.write_snapshot(argv[0], out)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({"out": str(out), "classes": len(counts),
                      "examples": sum(counts.values()), "per_class": counts}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
