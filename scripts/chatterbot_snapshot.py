"""Write the bundled ``chatterbot`` snapshot from the chatterbot-corpus package's data.

    pip download --no-deps chatterbot-corpus==1.3.3 && unzip chatterbot_corpus-1.3.3-*.whl
    python scripts/chatterbot_snapshot.py chatterbot_corpus/data/english [OUT]
    # default OUT: jaxmaml/data/chatterbot_corpus_1.3.3.json.gz

The licence file beside the snapshot is the sdist's ``license.md``
(``pip download --no-deps --no-binary :all: chatterbot-corpus==1.3.3``). Prints the
exchanges written per topic; then check ``load_chatterbot() == load_chatterbot(DIR)``
(tests/data/test_bundled_sources.py does when the folder is there).
"""

from __future__ import annotations

import json
import sys

from jaxmaml.data import chatterbot


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    out = argv[1] if len(argv) > 1 else chatterbot.SNAPSHOT
    try:
        counts = chatterbot.write_snapshot(argv[0], out)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({"out": str(out), "classes": len(counts),
                      "examples": sum(counts.values()), "per_class": counts}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
