"""Self-supervised meta-training tasks from unlabelled text (SMLMT, Bansal et al. 2020).

    python benchmarks/smlmt.py OUT.jsonl --wordnet-examples          # WordNet usage examples
    python benchmarks/smlmt.py OUT.jsonl --source debian              # a built-in source's texts
    python benchmarks/smlmt.py OUT.jsonl --text-file texts.txt [--min-df 20 --max-df 400]

Each class is a word: every text that contains a chosen word (a content word, not an English
stop word, longer than 3 letters, in ``min_df``-``max_df`` texts) becomes an example of it
with the word replaced by ``[MASK]``. A text with several chosen words goes to the rarest
(ties: alphabetical), so no text is in two classes; words with fewer than ``min_per_class``
texts are dropped. The output (``text``, ``label`` per JSON line) is a local file for a
``data.sources`` entry. Deterministic: the same texts give the same file.

The rows come from :func:`jaxmaml.data.smlmt.smlmt_rows` (the built-in ``docs_smlmt`` source
uses it too). Measured as an extra meta-training source of the bundled recipe: it does not help the
held-out domain (``benchmarks/results/transfer.md``, "Self-supervised tasks").
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def smlmt_rows(texts: list[str], min_df: int = 20, max_df: int = 400,
               min_per_class: int = 20) -> list[tuple[str, str]]:
    """``(masked text, word)`` rows, sorted by text; see the module docstring
    (:func:`jaxmaml.data.smlmt.smlmt_rows` with scikit-learn's English stop words)."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    from jaxmaml.data.smlmt import smlmt_rows as rows

    return rows(texts, min_df, max_df, min_per_class, stop_words=ENGLISH_STOP_WORDS)


def wordnet_examples() -> list[str]:
    """WordNet 3.0's quoted usage examples (the glosses' ``"..."`` parts, >= 15 chars)."""
    from jaxmaml.data.wordnet import POS_FILES, find_wordnet_dir

    root, out = find_wordnet_dir(), []
    for name in POS_FILES:
        for line in open(root / name, encoding="utf-8"):
            if not line.startswith("  "):
                gloss = line.partition(" | ")[2].strip()
                out += [m for m in re.findall(r'(?:^|; )"([^"]+)"', gloss) if len(m) >= 15]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--wordnet-examples", action="store_true")
    g.add_argument("--source", help="a built-in source (its texts; its labels are unused)")
    g.add_argument("--text-file", help="a UTF-8 file, one text per line")
    p.add_argument("--min-df", type=int, default=20)
    p.add_argument("--max-df", type=int, default=400)
    p.add_argument("--min-per-class", type=int, default=20)
    args = p.parse_args(argv)

    if args.wordnet_examples:
        texts = wordnet_examples()
    elif args.source:
        from jaxmaml.data.builtin import load_builtin
        texts = list(load_builtin(args.source).texts)
    else:
        texts = Path(args.text_file).read_text(encoding="utf-8").splitlines()
    rows = smlmt_rows(texts, args.min_df, args.max_df, args.min_per_class)
    if not rows:
        print(f"error: no word of {len(texts)} texts has {args.min_per_class} texts; lower "
              "--min-df/--min-per-class.", file=sys.stderr)
        return 1
    tmp = Path(args.out + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for text, word in rows:
            f.write(json.dumps({"text": text, "label": word}) + "\n")
    tmp.replace(args.out)
    print(json.dumps({"texts": len(texts), "rows": len(rows),
                      "classes": len({w for _, w in rows}), "out": args.out}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
