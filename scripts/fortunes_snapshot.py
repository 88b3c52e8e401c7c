"""Write the bundled ``fortunes`` snapshot from an installed fortunes package.

    python scripts/fortunes_snapshot.py [DIR [OUT]]
    # defaults: /usr/share/games/fortunes, jaxmaml/data/fortunes_1.99.1-7.3.json.gz

Needs ``apt-get install fortunes`` (Debian 12: 1:1.99.1-7.3; another version needs another
file name and ``info["package"]``). Prints the entries written per topic file; then check
``load_fortunes() == load_fortunes(DIR)`` (tests/data/test_builtin_sources.py does when the
package is installed).
"""

from __future__ import annotations

import json
import sys

from jaxmaml.data import fortunes


def main(argv: list[str]) -> int:
    root = argv[0] if argv else fortunes.FORTUNES_DIR
    out = argv[1] if len(argv) > 1 else fortunes.SNAPSHOT
    try:
        counts = fortunes.write_snapshot(root, out)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({"out": str(out), "files": len(counts), "entries": sum(counts.values()),
                      "per_file": counts}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
