"""Pair two runs' ``finetune_table.py table`` outputs on the same episodes.

Two runs evaluated with the same setups, shots, episodes and seed share every
original-encoder row exactly (checked here), so their ``meta_learned_*`` rows pair episode by
episode. For each setup, shot and meta-learned method this prints (and writes as Markdown
with ``--md``) run A − run B, and each run's meta-learned − original (the protocol's gain):

    python benchmarks/pair_runs.py runs/tr/qs_trans5-debian.json runs/tr/quickstart-debian.json \\
        [--md OUT.md]

(``compare_runs.py`` evaluates two runs' encoders under a cosine centroid directly; this
pairs any methods two ``table`` runs measured, fine-tuning, names and transduction
included.)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def pair_rows(rows_a: list[dict], rows_b: list[dict]) -> list[dict]:
    """``[{"setup", "shot", "method", "a_minus_b", "a_gain", "b_gain"}]`` (paired
    differences as :func:`jaxmaml.run.protocol.paired_difference` gives them)."""
    from jaxmaml.run.protocol import PAIRED_WITH, paired_difference

    out = []
    for ra, rb in zip(rows_a, rows_b, strict=True):
        where = (ra["setup"], ra["batch"], ra["shot"])
        if where != (rb["setup"], rb["batch"], rb["shot"]):
            raise SystemExit(f"the two files differ in their rows: {where} against "
                             f"{(rb['setup'], rb['batch'], rb['shot'])}")
        a, b = ({m: np.asarray(v) for m, v in r["per_episode"].items()} for r in (ra, rb))
        for m in a:
            if m not in PAIRED_WITH and not np.array_equal(a[m], b.get(m)):
                raise SystemExit(f"{m} differs between the files at {where}: not the same "
                                 "episodes (same setups, --episodes, seed and pool?)")
        for m in (m for m in a if m in PAIRED_WITH and m in b):
            orig = a[PAIRED_WITH[m]]  # the original-encoder method the protocol pairs it with
            out.append({"setup": ra["setup"], "data": ra.get("data"), "shot": ra["shot"],
                        "method": m, "a": float(a[m].mean()), "b": float(b[m].mean()),
                        "a_minus_b": paired_difference(a[m], b[m]),
                        "a_gain": paired_difference(a[m], orig),
                        "b_gain": paired_difference(b[m], orig)})
    return out


def markdown(pairs: list[dict], a: str, b: str) -> str:
    pts = lambda d: f"{100 * d['mean']:+.1f} ± {100 * d['ci95']:.1f}"  # noqa: E731
    lines = [f"A = `{a}`, B = `{b}`; points, paired 95% CIs.", "",
             "| setup | shot | method | episodes | A | B | A − B | A − original "
             "| B − original |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {p['setup']} ({p['data']}) | {p['shot']} | `{p['method']}` | "
              f"{p['a_minus_b']['episodes']} | {p['a']:.3f} | {p['b']:.3f} | "
              f"{pts(p['a_minus_b'])} | {pts(p['a_gain'])} | {pts(p['b_gain'])} |"
              for p in pairs]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a", help="finetune_table.py table OUT.json of run A")
    p.add_argument("b", help="the same of run B")
    p.add_argument("--md", help="append the table to this Markdown file")
    args = p.parse_args(argv)
    pairs = pair_rows(*(json.loads(Path(f).read_text())["rows"] for f in (args.a, args.b)))
    text = markdown(pairs, args.a, args.b)
    print(text)
    if args.md:
        with open(args.md, "a") as f:
            f.write(text + "\n\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
