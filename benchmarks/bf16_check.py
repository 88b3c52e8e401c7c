"""bf16 mixed precision vs float32 on the real all-MiniLM-L6-v2 weights and WordNet episodes.

For a few meta-batches of the quickstart's meta-training episodes, the meta-gradient and
loss with ``model.dtype: bfloat16`` against ``float32`` (same weights, same episodes):
per-leaf cosine similarity and relative error ``|g16 - g32| / |g32|``, summarized (min /
median / max) and the worst leaves listed. Writes ``benchmarks/results/bf16.md`` (or
``--out``)::

    python benchmarks/bf16_check.py                       # quickstart, whole encoder per step
    python benchmarks/bf16_check.py --batches 2 --set meta.adapt_top_k=2

Defaults: ``configs/quickstart.yaml`` with ``meta.outer_frozen_layers=0`` (every layer runs
in the step, so every layer's gradient is compared) and ``meta.adapt=top_k_layers``,
``adapt_top_k=1`` (second order through a transformer layer: bf16 Hessian-vector products).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from jaxmaml.run.config_load import load_config  # noqa: E402
from jaxmaml.data.episodes import EpisodeSampler  # noqa: E402
from jaxmaml.run.state import initial_encoder
from jaxmaml.run.data import load_data
from jaxmaml.tree import flatten  # noqa: E402
from jaxmaml.meta.outer import init_meta_params, meta_grads  # noqa: E402

DEFAULT_SET = ["meta.outer_frozen_layers=0", "meta.adapt=top_k_layers", "meta.adapt_top_k=1"]
# Attention key biases add q.b_k to every score of a query row, which softmax cancels: their
# exact gradient is 0 and either precision returns only rounding noise (no direction to
# compare), so they are reported apart.
ZERO_GRADIENT = "attention/self/key/bias"


def leaf_stats(g16: dict, g32: dict) -> dict[str, tuple[float, float, float]]:
    """``{path: (cosine, relative error, |g32|)}`` over leaves with a nonzero f32 gradient."""
    out = {}
    for k, b in flatten(g32).items():
        a = np.asarray(flatten(g16)[k], np.float64).ravel()
        b = np.asarray(b, np.float64).ravel()
        nb = np.linalg.norm(b)
        if nb == 0:
            continue
        out[k] = (float(a @ b / (np.linalg.norm(a) * nb + 1e-300)),
                  float(np.linalg.norm(a - b) / nb), float(nb))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(HERE.parent / "configs" / "quickstart.yaml"))
    ap.add_argument("--set", action="append", default=[], help="extra dotted overrides")
    ap.add_argument("--batches", type=int, default=3)
    ap.add_argument("--out", default=str(HERE / "results" / "bf16.md"))
    a = ap.parse_args(argv)
    overrides = DEFAULT_SET + a.set
    cfg = load_config(a.config, overrides)
    data, split = load_data(cfg)
    encoder = initial_encoder(cfg)
    t = cfg.train
    sampler = EpisodeSampler(data, list(split["train"]), cfg.meta.way, t.shot, t.query,
                             t.tasks, t.seed)
    cfgs = {d: cfg.meta.replace(model=cfg.meta.model.replace(dtype=d))
            for d in ("float32", "bfloat16")}
    meta_params = init_meta_params(encoder, cfgs["float32"], jax.random.key(0))
    fns = {d: jax.jit(meta_grads, static_argnums=2) for d in cfgs}
    stats, losses, seconds = [], [], {d: 0.0 for d in cfgs}
    for b in range(a.batches):
        episodes = jax.tree.map(jnp.asarray, sampler.episodes(b))
        out = {}
        for d, c in cfgs.items():
            t0 = time.perf_counter()
            out[d] = jax.block_until_ready(fns[d](meta_params, episodes, c))
            seconds[d] += time.perf_counter() - t0 if b else 0.0  # batch 0 compiles
        (l16, _), g16 = out["bfloat16"]
        (l32, _), g32 = out["float32"]
        losses.append((float(l32), float(l16)))
        stats.append(leaf_stats(g16, g32))
        print(f"batch {b}: loss f32 {float(l32):.6f} bf16 {float(l16):.6f}", file=sys.stderr)
    kept = [(k, s) for st in stats for k, s in st.items() if ZERO_GRADIENT not in k]
    cos = np.array([s[0] for _, s in kept])
    rel = np.array([s[1] for _, s in kept])
    median_norm = float(np.median([s[2] for _, s in kept]))
    zero = {k: s[2] for k, s in stats[-1].items() if ZERO_GRADIENT in k}
    zero16 = {k: float(np.linalg.norm(np.asarray(flatten(g16)[k], np.float64)))
              for k in zero}
    flat = lambda g: np.concatenate([np.ravel(x) for x in jax.tree.leaves(g)])  # noqa: E731
    whole = float(flat(g16) @ flat(g32) / np.linalg.norm(flat(g16)) / np.linalg.norm(flat(g32)))
    worst = sorted(((k, v) for k, v in stats[-1].items() if ZERO_GRADIENT not in k),
                   key=lambda kv: kv[1][0])[:5]
    lines = [
        "# bf16 mixed precision vs float32: meta-gradients on all-MiniLM-L6-v2 + WordNet",
        "",
        f"`python benchmarks/bf16_check.py{' --batches ' + str(a.batches) if a.batches != 3 else ''}"
        f"{''.join(' --set ' + s for s in a.set)}` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
        f"jax {jax.__version__}, {jax.devices()[0].device_kind}).",
        f"Config: `{Path(a.config).name}` with {', '.join('`' + o + '`' for o in overrides)}; "
        f"{t.tasks} tasks per meta-batch, {cfg.meta.way}-way {t.shot}-shot {t.query}-query, "
        f"seq {cfg.data.seq_len}, S={cfg.meta.num_inner_steps} "
        f"({'first' if cfg.meta.first_order else 'second'} order via "
        f"`{cfg.meta.second_order}`), {a.batches} meta-batches of meta-training episodes.",
        "",
        "| quantity | min | median | max |", "|---|---|---|---|",
        f"| per-leaf cosine(g_bf16, g_f32) ({len(cos)} leaf-batches) | {cos.min():.5f} | "
        f"{np.median(cos):.5f} | {cos.max():.5f} |",
        f"| per-leaf relative error |g_bf16 - g_f32| / |g_f32| | {rel.min():.4f} | "
        f"{np.median(rel):.4f} | {rel.max():.4f} |",
        "",
        f"Whole meta-gradient cosine (last batch): {whole:.5f}.",
        "",
        f"Not in the table: the {len(zero)} `{ZERO_GRADIENT}` leaves, whose exact gradient "
        "is 0 (softmax cancels a bias added to every key's score); both precisions return "
        f"rounding noise there: largest norm f32 {max(zero.values(), default=0):.2e}, bf16 "
        f"{max(zero16.values(), default=0):.2e}, against a median leaf norm of "
        f"{median_norm:.2e}.",
        "",
        "| batch | loss f32 | loss bf16 | relative difference |", "|---|---|---|---|",
        *[f"| {i} | {l32:.6f} | {l16:.6f} | {abs(l16 - l32) / abs(l32):.2e} |"
          for i, (l32, l16) in enumerate(losses)],
        "",
        "Lowest-cosine leaves (last batch): " + "; ".join(
            f"`{k}` cos {v[0]:.4f}, rel {v[1]:.3f}" for k, v in worst),
        "",
        f"Meta-gradient time per batch (after compile, this shared CPU, not a benchmark): "
        f"f32 {seconds['float32'] / max(a.batches - 1, 1):.2f} s, bf16 "
        f"{seconds['bfloat16'] / max(a.batches - 1, 1):.2f} s.",
    ]
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
