"""XLA:CPU matmul rates at BERT mini's shapes, by operand layout and precision.

    python benchmarks/kernels.py                 # one JSON object: GFLOP/s per form
    python benchmarks/kernels.py --flags         # the same under other XLA:CPU dot paths

Forms (tokens n = 1600 = 25 examples x 64, hidden 256, intermediate 1024, 4 heads):
``fwd`` ``x @ W``, ``wgrad`` ``x.T @ dy``, ``dgrad`` ``dy @ W.T`` as ``jnp.dot`` writes them
(f32 and bf16 x bf16 -> f32); the same three through ``precision.mixed_einsum``'s canonical
layout on 3-D ``[25, 64, H]`` activations (``mixed_*``, as the model runs them in bf16); the
attention einsums on token-major ``[25, 64, 4, 64]`` operands (as the model) and on
head-major ``[25, 4, 64, 64]`` ones. (benchmarks/results/speed15.md)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

FLAGS = ("", "--xla_cpu_use_onednn=true", "--xla_cpu_experimental_onednn_custom_call=true",
         "--xla_cpu_use_xnnpack=true", "--xla_cpu_prefer_vector_width=512")


def _seconds(f, *args, n: int = 20) -> float:
    import jax
    jax.block_until_ready(f(*args))
    t = time.perf_counter()
    for _ in range(n):
        r = f(*args)
    jax.block_until_ready(r)
    return (time.perf_counter() - t) / n


def rates() -> dict[str, int]:
    import jax
    import jax.numpy as jnp

    from jaxmaml.models.precision import _canonical_einsum

    k = jax.random.split(jax.random.key(0), 3)
    out = {}
    dense = 2 * 1600 * 256 * 1024
    attn = 2 * 25 * 4 * 64 * 64 * 64
    for d in (jnp.float32, jnp.bfloat16):
        name = jnp.dtype(d).name
        x, w = jax.random.normal(k[0], (1600, 256), d), jax.random.normal(k[1], (256, 1024), d)
        dy = jax.random.normal(k[2], (1600, 1024), d)
        dot = lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.float32)  # noqa: E731
        for form, f, args in (("fwd", lambda a, b: dot(a, b), (x, w)),
                              ("wgrad", lambda a, b: dot(a.T, b), (x, dy)),
                              ("dgrad", lambda a, b: dot(a, b.T), (dy, w))):
            out[f"{name}_{form}"] = round(dense / _seconds(jax.jit(f), *args) / 1e9)
        q = jax.random.normal(k[0], (25, 64, 4, 64), d)
        p = jax.random.normal(k[1], (25, 4, 64, 64), d)
        es = lambda s: jax.jit(lambda a, b: jnp.einsum(  # noqa: E731
            s, a, b, preferred_element_type=jnp.float32))
        out[f"{name}_attn_scores"] = round(attn / _seconds(es("...qhd,...khd->...hqk"), q, q) / 1e9)
        out[f"{name}_attn_pv"] = round(attn / _seconds(es("...hqk,...khd->...qhd"), p, q) / 1e9)
        out[f"{name}_attn_scores_head_major"] = round(
            attn / _seconds(es("...hqd,...hkd->...hqk"), p, p) / 1e9)
        out[f"{name}_attn_pv_head_major"] = round(
            attn / _seconds(es("...hqk,...hkd->...hqd"), p, p) / 1e9)
    x3 = jax.random.normal(k[0], (25, 64, 256), jnp.bfloat16)
    w = jax.random.normal(k[1], (256, 1024), jnp.bfloat16)
    dy3 = jax.random.normal(k[2], (25, 64, 1024), jnp.bfloat16)
    for form, spec, args in (("fwd", "...i,io->...o", (x3, w)),
                             ("wgrad", "...i,...o->io", (x3, dy3)),
                             ("dgrad", "...o,io->...i", (dy3, w))):
        f = jax.jit(lambda a, b, spec=spec: _canonical_einsum(spec, a, b))
        out[f"mixed_{form}"] = round(dense / _seconds(f, *args) / 1e9)
    return out


def main() -> int:
    if "--flags" not in sys.argv:
        print(json.dumps(rates()))
        return 0
    for flags in FLAGS:
        env = {**os.environ, "XLA_FLAGS": flags}
        r = subprocess.run([sys.executable, __file__], env=env, capture_output=True, text=True)
        print(json.dumps({"XLA_FLAGS": flags, **(json.loads(r.stdout.splitlines()[-1])
                                                  if r.returncode == 0 else
                                                  {"failed": r.stderr.strip()[-200:]})}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
