"""Where one meta-step's time goes: a ``jax.profiler`` trace summed by XLA op kind.

Runs one meta-step of a bench point (after a warm-up step that compiles), traces the
second, and prints the op kinds (fusion names without their numeric suffix: ``ynn_fusion``
= matmuls, ``copy_bitcast_fusion`` = layout copies/transposes, ...) with their summed time::

    python benchmarks/profile_step.py --model mini --order second --task-chunk 1
    python benchmarks/profile_step.py --model mini --order second --second-order autodiff
    python benchmarks/profile_step.py --model mini --order first --task-chunk 1 --top 10
    python benchmarks/profile_step.py --model mini --order second --dtype bf16

Prints JSON lines ``{"op": ..., "seconds": ..., "share": ..., "calls": ...}``; the trace
itself stays in ``--trace-dir`` for TensorBoard / Perfetto.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout


def op_times(trace_file: str) -> tuple[collections.Counter, collections.Counter]:
    """(summed microseconds, call counts) per op kind of a ``*.trace.json.gz``."""
    events = json.load(gzip.open(trace_file))["traceEvents"]
    total, calls = collections.Counter(), collections.Counter()
    for e in events:
        name = e.get("name", "")
        if e.get("ph") != "X" or name.startswith(("ThunkExecutor", "$", "SlinkyThreadPool")):
            continue  # executor / Python frames enclose the ops; count the ops only
        kind = re.sub(r"\.\d+$", "", name)
        total[kind] += e.get("dur", 0)
        calls[kind] += 1
    return total, calls


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="mini")
    ap.add_argument("--order", default="second", choices=("second", "first"))
    ap.add_argument("--tasks", type=int, default=4)
    ap.add_argument("--inner-steps", type=int, default=5)
    ap.add_argument("--task-chunk", type=int, default=0)
    ap.add_argument("--second-order", default="hvp", choices=("hvp", "linearize", "autodiff"))
    ap.add_argument("--dtype", default="f32", choices=("f32", "bf16"))
    ap.add_argument("--remat", default="none")
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--trace-dir", default="/tmp/jaxmaml_profile")
    args = ap.parse_args(argv)

    import jax
    import jax.numpy as jnp
    import optax

    from jaxmaml.bench.point import BenchPoint, make_episodes, resolve_model
    from jaxmaml.meta.outer import jit_meta_step, new_state

    point = BenchPoint.of(model=args.model, order=args.order, task_chunk=args.task_chunk,
                       remat=args.remat, tasks=args.tasks, inner_steps=args.inner_steps,
                       second_order=args.second_order, dtype=args.dtype)
    params, config = resolve_model(point.model, point.dtype)
    cfg = point.meta_config(config)
    episodes = jax.tree.map(jnp.asarray, make_episodes(point, config))
    optimizer = optax.adam(1e-4)
    state = new_state(params, cfg, optimizer, jax.random.key(0))
    step = jit_meta_step(cfg, optimizer)
    state, metrics = step(state, episodes)  # compile + warm up
    jax.block_until_ready(metrics)
    jax.profiler.start_trace(args.trace_dir)
    state, metrics = step(state, episodes)
    jax.block_until_ready(metrics)
    jax.profiler.stop_trace()
    trace = sorted(glob.glob(f"{args.trace_dir}/**/*.trace.json.gz", recursive=True))[-1]
    total, calls = op_times(trace)
    grand = sum(total.values()) or 1
    for kind, us in total.most_common(args.top):
        print(json.dumps({"op": kind, "seconds": round(us / 1e6, 3),
                          "share": round(us / grand, 3), "calls": calls[kind]}))
    print(json.dumps({"op": "ALL", "seconds": round(grand / 1e6, 3), "trace": trace}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
