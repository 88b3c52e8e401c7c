"""Write the bundled ``pydocs`` and ``pyhowto`` snapshots from Debian's python3.11-doc.

    apt-get download python3.11-doc && dpkg -x python3.11-doc_*.deb pydoc
    python scripts/pydocs_snapshot.py pydoc/usr/share/doc/python3.11/html [OUT_DIR]
    # writes OUT_DIR/pydocs_3.11.2.json.gz (from html/library) and
    # OUT_DIR/pyhowto_3.11.2.json.gz (from html/howto); default OUT_DIR: jaxmaml/data

Debian 12's 3.11.2-6+deb12u9 gives the bundled snapshots (another version needs other file
names and ``info["package"]``); the copyright file beside them is the package's
``usr/share/doc/python3.11-doc/copyright``. Prints the texts written per class; then check
``load_pydocs() == load_pydocs(HTML/library)`` and ``load_pyhowto() ==
load_pyhowto(HTML/howto)``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from jaxmaml.data import pydocs


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    root = Path(argv[0])
    out_dir = Path(argv[1]) if len(argv) > 1 else pydocs.SNAPSHOT.parent
    jobs = [(pydocs.write_snapshot, root / "library", out_dir / pydocs.SNAPSHOT.name),
            (pydocs.write_howto_snapshot, root / "howto", out_dir / pydocs.HOWTO_SNAPSHOT.name)]
    for write, folder, out in jobs:
        try:
            counts = write(folder, out)
        except FileNotFoundError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(json.dumps({"out": str(out), "classes": len(counts),
                          "examples": sum(counts.values()), "per_class": counts}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
