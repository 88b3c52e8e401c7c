"""Run a benchmark grid and write benchmarks/results/NAME.{jsonl,md} and NAME_*.png.

    python benchmarks/run.py                                   # default grid (< 10 min, 2 cores)
    python benchmarks/run.py --grid benchmarks/grids/targets.yaml
    python benchmarks/run.py --grid G.yaml --out DIR --json    # any `jaxmaml bench` flag

A thin wrapper over ``jaxmaml.bench.grid.main`` (the same code as ``jaxmaml bench``) that picks
the default grid and results directory; ``make bench`` runs it with no arguments.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from jaxmaml.bench.grid import main  # noqa: E402

DEFAULT_GRID = HERE / "grids" / "default.yaml"


def run(argv: list[str]) -> int:
    if "--grid" not in argv and not any(a.startswith("--model") for a in argv):
        argv = ["--grid", str(DEFAULT_GRID), *argv]
    if "--out" not in argv:
        argv = [*argv, "--out", str(HERE / "results")]
    return main(argv)


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
