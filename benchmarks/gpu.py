"""The GPU benchmark in one command: the targets grid and the PyTorch peer on one GPU.

    benchmarks/gpu.sh OUT_DIR            # NVIDIA GPU, < 8 minutes (grids/gpu.yaml)
    benchmarks/gpu.sh OUT_DIR --small    # toy sizes, any machine, ~1-2 min on a CPU

Needs only what a GPU machine has: jax with CUDA, torch, transformers, flax, optax, orbax;
random-init presets (no downloads, no weights). Points run grouped by model in grid order
(each group: JAX, then the PyTorch peer, so a group is a complete comparison); a point is
not started after ``--budget-s`` seconds, and rows are appended to ``gpu.partial.jsonl``
as they finish. Writes ``OUT_DIR/NAME.jsonl``, ``OUT_DIR/NAME.md`` (the table) and
``OUT_DIR/environment.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from jaxmaml.bench.grid import add_ratios, load_grid, run_point, run_point_isolated  # noqa: E402
from jaxmaml.bench.point import environment  # noqa: E402
from jaxmaml.bench.report import markdown_table, short_line, write_results  # noqa: E402


def ordered(points):
    """Grouped by model (first appearance), JAX before the PyTorch peer in each group."""
    models = list(dict.fromkeys(p.model for p in points))
    return [p for m in models for p in sorted((q for q in points if q.model == m),
                                                key=lambda q: q.backend == "torch")]


def torch_environment() -> dict:
    try:
        import torch
    except ImportError:
        return {"torch": None}
    cuda = torch.cuda.is_available()
    return {"torch": torch.__version__, "torch_cuda": cuda,
            "torch_device_name": torch.cuda.get_device_name(0) if cuda else None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="output directory")
    ap.add_argument("--small", action="store_true", help="toy grid (grids/gpu_small.yaml), "
                    "in one process: checks the script on any machine")
    ap.add_argument("--grid", help="grid file (default grids/gpu.yaml or gpu_small.yaml)")
    ap.add_argument("--keep-order", action="store_true", help="run points in grid-file "
                    "order (e.g. JAX and PyTorch interleaved, so load drift hits both)")
    ap.add_argument("--budget-s", type=float, default=420.0,
                    help="start no point after this many seconds (default 420)")
    a = ap.parse_args(argv)
    grid = a.grid or str(HERE / "grids" / ("gpu_small.yaml" if a.small else "gpu.yaml"))
    name, points = load_grid(grid)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    env = environment()
    info = {**env, **torch_environment(), "grid": grid, "small": a.small}
    (out / "environment.json").write_text(json.dumps(info, indent=1, default=str) + "\n")
    print(json.dumps(info, default=str), file=sys.stderr)
    if not a.small and env["platform"] != "gpu":
        print(f"warning: jax runs on {env['platform']}, not a GPU (is jax[cuda] installed?)",
              file=sys.stderr)
    partial = out / f"{name}.partial.jsonl"
    partial.write_text("")
    start, rows, skipped = time.monotonic(), [], []
    for p in (points if a.keep_order else ordered(points)):
        if time.monotonic() - start > a.budget_s:
            skipped.append(p)
            continue
        row = (run_point if a.small else run_point_isolated)(p, env)
        rows.append(row)
        with partial.open("a") as f:
            f.write(json.dumps(row, default=str) + "\n")
        print(short_line(row), file=sys.stderr, flush=True)
    add_ratios(rows)
    write_results(rows, out, name, plots=False)
    partial.unlink()
    table = markdown_table(rows)
    if skipped:
        table += f"\n\nNot run (time budget {a.budget_s:.0f} s): " + "; ".join(
            f"{p.backend} {p.model} {p.order} {p.dtype}" for p in skipped)
        (out / f"{name}.md").write_text(table + "\n")
    print(table)
    print(f"wrote {out / (name + '.jsonl')}, {out / (name + '.md')} in "
          f"{time.monotonic() - start:.0f} s", file=sys.stderr)
    return 1 if any(r.get("failed") and r["backend"] == "jax" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
