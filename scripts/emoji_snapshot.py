"""Write the bundled ``emoji`` snapshot from Unicode's emoji-test.txt.

    apt-get download unicode-data && dpkg -x unicode-data_*.deb ud   # or apt-get install
    python scripts/emoji_snapshot.py [ud/usr/share/unicode/emoji/emoji-test.txt [OUT]]
    # defaults: /usr/share/unicode/emoji/emoji-test.txt, jaxmaml/data/emoji_15.0.json.gz

Debian 12's unicode-data 15.0.0-1 (Emoji 15.0) gives the bundled snapshot (another version
needs another file name and ``info["package"]``); the copyright file beside it is the
package's ``usr/share/doc/unicode-data/copyright``. Prints the names written per subgroup;
then check ``load_emoji() == load_emoji(FILE)``.
"""

from __future__ import annotations

import json
import sys

from jaxmaml.data import emoji


def main(argv: list[str]) -> int:
    path = argv[0] if argv else emoji.EMOJI_TEST
    out = argv[1] if len(argv) > 1 else emoji.SNAPSHOT
    try:
        counts = emoji.write_snapshot(path, out)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({"out": str(out), "classes": len(counts),
                      "examples": sum(counts.values()), "per_class": counts}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
