"""The fine-tuning sweep's table: every point, paired against a reference point.

    python benchmarks/finetune_sweep_table.py benchmarks/results/finetune_sweep.jsonl \\
        --reference part=top_k,top_k=2,steps=10,lr=5e-5

Reads the rows that ``benchmarks/finetune_table.py sweep`` prints (one JSON object per
line, with ``per_episode`` accuracies) and prints a Markdown table: per point, each
(setup, shot) cell's fine-tuning accuracy (mean ± 95% CI, episodes), its paired gain over
the reference point on the same episodes (the first ``min(E_point, E_reference)``; the
tool's episodes are seeded, so a shorter run is a prefix of a longer one), over the cosine
centroid on the same episodes, the average gain over the cells (its CI from the cells'
standard errors: the cells' episodes are independent) and the wall seconds per 100
episodes of one setup, both shots (compiles included, averaged over the setups).
A point measured more than once (e.g. at 40, then at 100 episodes) is shown at its
largest episode count.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import numpy as np

# The defaults the first sweep's rows were measured under (they record only the options
# given); rows that record every option (``options``) use those instead.
DEFAULTS = {"part": "top_k", "top_k": "2", "lora_rank": "8", "steps": "10", "lr": "5e-5",
            "head_lr": "1e-2", "scale": "10", "weight_decay": "0"}


def _norm(k: str, v: str) -> str:
    return v if k == "part" or v == "-" else f"{float(v):g}"


def key(point: dict, options: dict | None = None) -> tuple:
    """A point with every option spelled out (so ``steps=10`` and the default are one)."""
    full = {**DEFAULTS, **point, **{k: str(v) for k, v in (options or {}).items()
                                     if k in DEFAULTS}}
    if full["part"] not in ("top_k", "lora"):
        full["top_k"] = "-"
    if full["part"] != "lora":
        full["lora_rank"] = "-"
    return tuple((k, _norm(k, full[k])) for k in DEFAULTS)


def label(point: tuple) -> str:
    """The options where ``point`` (a :func:`key`) differs from the defaults."""
    diff = [f"{k}={v}" for k, v in point if v not in ("-", _norm(k, DEFAULTS[k]))]
    return ", ".join(diff) or "default"


def paired(a, b) -> tuple[float, float, int]:
    n = min(len(a), len(b))
    d = np.asarray(a[:n], np.float64) - np.asarray(b[:n], np.float64)
    return float(d.mean()), float(d.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan, n


def average(gains: list[float], ses: list[float]) -> str:
    """The mean of independent cells' gains, in points, ± its 95% CI."""
    se = math.sqrt(sum(s * s for s in ses)) / len(ses)
    return f"{100 * np.mean(gains):+.2f} ± {196 * se:.2f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("rows", nargs="+", help="JSONL files of sweep rows")
    p.add_argument("--reference", default="part=top_k,top_k=2,steps=10,lr=5e-5")
    args = p.parse_args(argv)
    rows = [json.loads(line) for f in args.rows for line in open(f) if line.strip()]
    best: dict[tuple, dict] = {}  # (point, setup, shot) -> the row with most episodes
    for r in rows:
        k = (key(r["point"], r.get("options")), r["setup"], r["shot"])
        if k not in best or r["finetune"]["episodes"] > best[k]["finetune"]["episodes"]:
            best[k] = r
    ref = key(dict(kv.split("=", 1) for kv in args.reference.split(",")))
    cells = sorted({(s, sh) for _, s, sh in best})
    points = list(dict.fromkeys(k[0] for k in best))
    head = " | ".join(f"{s} {sh}-shot" for s, sh in cells)
    out = [f"| point | {head} | mean gain vs reference | mean gain vs centroid | s / 100 episodes |",
           "|---" * (len(cells) + 4) + "|"]
    for pt in points:
        texts, gains, ses, cgains, cses, secs = [], [], [], [], [], []
        for cell in cells:
            r = best.get((pt, *cell))
            if r is None:
                texts.append("-")
                continue
            ft = r["finetune"]
            text = f"{ft['mean']:.3f} ± {ft['ci95']:.3f} ({ft['episodes']})"
            rr = best.get((ref, *cell))
            if rr is not None and pt != ref:
                g, se, n = paired(r["per_episode"]["finetune"], rr["per_episode"]["finetune"])
                text += f"<br>{100 * g:+.1f} ± {196 * se:.1f} ({n})"
                gains.append(g)
                ses.append(se)
            c, cse, _ = paired(r["per_episode"]["finetune"], r["per_episode"]["cosine_centroid"])
            cgains.append(c)
            cses.append(cse)
            secs.append(r["seconds"] / ft["episodes"] * 100)
            texts.append(text)
        full = len(gains) == len(cells)
        avg = (average(gains, ses) if full else ("reference" if pt == ref else "-"))
        cavg = average(cgains, cses) if len(cgains) == len(cells) else "-"
        name = label(pt)
        out.append(f"| {name} | " + " | ".join(texts) + f" | {avg} | {cavg} | "
                   + (f"{np.mean(secs):.0f}" if secs else "-") + " |")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
