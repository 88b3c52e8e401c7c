"""Debian package descriptions labelled by archive section, as a text/label CSV.

    apt-get update && apt-cache dumpavail > /tmp/dumpavail.txt
    python scripts/debian_sections.py /tmp/dumpavail.txt /tmp/debian_sections.csv

Text: the short description and the first paragraph of the long description. Label: the
``Section:`` without its archive area (``contrib/net`` -> ``net``). Packages sharing a
description (``-dev``/``-doc``/``-dbg`` siblings) are kept once; sections with fewer than
``--min-per-class`` packages are dropped. A held-out domain for ``scripts/transfer.py``
(the package data is public; each package's description is under its own licence).
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import Counter


def parse(path: str) -> list[tuple[str, str]]:
    """``[(text, section)]`` of the stanzas in an ``apt-cache dumpavail`` file."""
    rows, seen_pkg, seen_text = [], set(), set()
    for stanza in open(path, encoding="utf-8", errors="replace").read().split("\n\n"):
        fields, key = {}, None
        for line in stanza.splitlines():
            if line.startswith((" ", "\t")) and key:
                fields[key] += "\n" + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        pkg, section, desc = fields.get("Package"), fields.get("Section"), fields.get("Description")
        if not (pkg and section and desc) or pkg in seen_pkg:
            continue
        short, _, long = desc.partition("\n")
        para = long.split("\n.\n")[0].replace("\n", " ").strip()
        text = f"{short}. {para}".strip(" .") if para else short
        if text in seen_text:
            continue
        seen_pkg.add(pkg)
        seen_text.add(text)
        rows.append((text, section.split("/")[-1]))
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dumpavail")
    p.add_argument("out_csv")
    p.add_argument("--min-per-class", type=int, default=40)
    args = p.parse_args()
    rows = parse(args.dumpavail)
    counts = Counter(label for _, label in rows)
    keep = [r for r in rows if counts[r[1]] >= args.min_per_class]
    with open(args.out_csv, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(keep)
    print(f"{len(keep)} packages in {len({r[1] for r in keep})} sections -> {args.out_csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
