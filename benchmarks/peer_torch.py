"""The PyTorch peer alone: the same meta-step as jaxmaml in torch (modes func_vmap, loop).

    python benchmarks/peer_torch.py --model mini --seq-len 64 --tasks 4 --inner-steps 5 \
        --order both [--modes func_vmap,loop] [--threads N] [--json]

The implementation is ``jaxmaml/bench/torch_peer.py`` (a reference implementation kept out of
the package; ``jaxmaml bench --peer torch`` loads it from this checkout); this script times
only the peer, without the JAX points. Needs ``torch==2.13.0`` and ``transformers``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from jaxmaml.bench.grid import expand, run_grid  # noqa: E402
from jaxmaml.bench.report import markdown_table  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name, default in [("model", "mini"), ("way", 5), ("shot", 5), ("query", 5),
                          ("seq-len", 64), ("tasks", 4), ("inner-steps", 5), ("warmup", 1),
                          ("reps", 3), ("threads", 0)]:
        ap.add_argument("--" + name, type=type(default), default=default)
    ap.add_argument("--order", default="both", choices=("second", "first", "both"))
    ap.add_argument("--modes", default="func_vmap,loop")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    points = expand({"model": a.model, "way": a.way, "shot": a.shot, "query": a.query,
                     "seq_len": a.seq_len, "tasks": a.tasks, "inner_steps": a.inner_steps,
                     "warmup": a.warmup, "reps": a.reps, "threads": a.threads,
                     "order": a.order, "backend": "torch", "torch_mode": a.modes.split(",")})
    rows = run_grid(points, (lambda r: print(json.dumps(r, default=str), flush=True))
                    if a.json else None)
    if not a.json:
        print(markdown_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
