"""The weight of the meta-learned update (``train.wise_alpha``): the tables of docs/transfer.md
from the rows of ``benchmarks/finetune_table.py table --wise-alpha A`` (one file per weight
and setup: ``D-A.json``, ``L-A.json``, ``D-names-A.json``, ``L-names-A.json``).

    python benchmarks/wise_alpha_report.py benchmarks/results/wise_alpha [--out FILE.md]

Every cell is the meta-learned encoder minus the original under the same classifier, paired
on the same episodes (points, 95% CI): the export under a cosine centroid and a linear probe,
and the frozen proxy of the recommended setting (centroid + names + transductive), with its
mean and worst cell over the six (setup, shot) cells.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CELLS = (("D", 1), ("D", 5), ("V", 1), ("V", 5), ("H", 1), ("H", 5))
EXPORT = (("meta_learned_centroid", "cosine_centroid"), ("meta_learned_probe", "linear_probe"))
NAMES = (("meta_learned_centroid_names_trans", "cosine_centroid_names_trans"),)


def paired(row: dict, method: str, vs: str) -> tuple[float, float]:
    """(mean, 95% CI) of ``method - vs`` over the row's episodes, in points
    (:func:`jaxmaml.run.protocol.paired_difference`)."""
    from jaxmaml.run.protocol import paired_difference

    d = paired_difference(np.asarray(row["per_episode"][method]),
                          np.asarray(row["per_episode"][vs]))
    return 100 * d["mean"], 100 * d["ci95"]


def cells(results: Path, alpha: str, kind: str, pairs) -> dict:
    rows = []
    for setup in ("D", "L"):
        rows += json.loads((results / f"{setup}-{kind}{alpha}.json").read_text())["rows"]
    by_cell = {(r["setup"], r["shot"]): r for r in rows}
    return {c: [paired(by_cell[c], m, vs) for m, vs in pairs] for c in CELLS}


def _signed(x: float) -> str:
    return f"{x:+.2f}".replace("-", "−")


def fmt(mean: float, ci: float) -> str:
    text = f"{_signed(mean)} ± {ci:.2f}"
    return f"**{text}**" if mean + ci < 0 else text  # bold: the CI entirely below 0


def report(results: Path) -> str:
    alphas = sorted({p.stem.split("-")[-1] for p in results.glob("D-names-*.json")}, key=float)
    head = "| `wise_alpha` | " + " | ".join(f"{'Debian appstream pyhowto'.split()['DVH'.index(s)]}"
                                           f" {k}-shot" for s, k in CELLS) + " |"
    rule = "|---" * (len(CELLS) + 1) + "|"
    out = ["# The weight of the meta-learned update on the validation domains", "",
           f"`python benchmarks/wise_alpha_report.py {results}`, from the rows of the json "
           "files beside this one (each holds its command). 5-way, 15 queries per class, "
           "balanced batches; bold: a 95% CI entirely below 0.", "",
           "Exported − original encoder, cosine centroid / linear probe (points, paired):", "",
           head, rule]
    for a in alphas:
        c = cells(results, a, "", EXPORT)
        out.append(f"| {a} | " + " | ".join(" / ".join(fmt(*x) for x in c[k]) for k in CELLS)
                   + " |")
    out += ["", "Meta-learned − original, centroid + names + transductive (points, paired):",
            "", head + " mean | worst |", rule + "---|---|"]
    for a in alphas:
        c = cells(results, a, "names-", NAMES)
        means = [c[k][0][0] for k in CELLS]
        out.append(f"| {a} | " + " | ".join(fmt(*c[k][0]) for k in CELLS)
                   + f" | {_signed(np.mean(means))} | {_signed(min(means))} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", type=Path)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    text = report(args.results)
    print(text, end="")
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
