"""``second_order: linearize`` under other residual policies (what its forward pass keeps).

    python benchmarks/linearize_policy.py POLICY [f32|bf16]

POLICY: a name in ``jax.checkpoint_policies`` (``everything_saveable``, ``dots_saveable``,
``dots_with_no_batch_dims_saveable`` = the one ``jaxmaml.meta.hvp.KEEP`` uses). Times one
BERT mini point (5-way 5-shot 5-query, seq 64, T=4, S=5; one warm-up, 2 timed steps) and
prints one JSON line; run each policy in its own process (jit caches by function, not by
policy). Results: benchmarks/results/speed15.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout


def main() -> int:
    import jax

    from jaxmaml.bench.point import BenchPoint, run_jax_point
    from jaxmaml.meta import hvp

    policy, dtype = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else "f32")
    hvp.KEEP = getattr(jax.checkpoint_policies, policy)  # read when the step is traced
    point = BenchPoint.of(model="mini", way=5, shot=5, query=5, seq_len=64, tasks=4,
                       inner_steps=5, order="second", second_order="linearize", dtype=dtype,
                       warmup=1, reps=2)
    row = run_jax_point(point)
    print(json.dumps({"policy": policy, "dtype": dtype, **{k: row.get(k) for k in (
        "meta_steps_per_s", "peak_bytes", "flops_per_step", "compile_s", "failed")}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
