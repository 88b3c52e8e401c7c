"""Utilization ceiling probe: how fast XLA:CPU runs the inner step's building block.

Times one support-set forward+backward (the inner SGD step's gradient) of a BERT preset:
  single   one task, shared weights            [n, L] tokens
  vmapped  T tasks, per-task weights (vmap)    what the meta-step's inner loop runs
  batched  T tasks folded into the batch, shared weights (a plain training step)
and reports achieved FLOP/s against the measured f32 matmul peak. The gap between
`vmapped` and `batched` is the cost of per-task weights (batched matmuls with a weight
per task); the gap between `batched` and the matmul peak is the model code itself.

    python benchmarks/ceiling.py --model mini --tasks 4 --seq-len 64
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from jaxmaml.bench.flops import count_flops  # noqa: E402
from jaxmaml.bench.point import BenchPoint, make_episodes, matmul_peak, resolve_model  # noqa: E402
from jaxmaml.meta import inner  # noqa: E402


def _time(fn, *args, reps: int = 3) -> float:
    compiled = jax.jit(fn).lower(*args).compile()
    jax.block_until_ready(compiled(*args))
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="mini")
    ap.add_argument("--tasks", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    point = BenchPoint.of(model=a.model, tasks=a.tasks, seq_len=a.seq_len)
    enc, config = resolve_model(point.model, point.dtype)
    cfg = point.meta_config(config)
    sup = jax.tree.map(jnp.asarray, make_episodes(point, config).support)
    head = {"kernel": jnp.zeros((config.hidden_size, point.meta.way)), "bias": jnp.zeros(point.meta.way)}
    params = {"encoder": enc, "head": head}

    def grad_one(p, ex):
        return jax.grad(inner.support_loss_fn(ex, cfg))(p)

    one = jax.tree.map(lambda x: x[0], sup)
    per_task = jax.tree.map(lambda x: jnp.broadcast_to(x, (a.tasks, *x.shape)), params)
    folded = jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), sup)
    peak = matmul_peak("f32")
    print(f"f32 matmul peak {peak / 1e9:.1f} GFLOP/s, load {os.getloadavg()[0]:.1f}")
    for name, fn, args in [("single", grad_one, (params, one)),
                           ("vmapped", jax.vmap(grad_one), (per_task, sup)),
                           ("batched", grad_one, (params, folded))]:
        flops = count_flops(fn, *args).total
        t = _time(fn, *args, reps=a.reps)
        print(f"{name:8s} {t * 1e3:8.1f} ms  {flops / 1e9:6.1f} GFLOP  "
              f"{flops / t / 1e9:6.1f} GFLOP/s  util {flops / t / peak:5.0%}")


if __name__ == "__main__":
    main()
