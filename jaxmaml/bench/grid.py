"""``jaxmaml bench``: throughput, memory, compile time and FLOP utilization of the meta-step.

One point or a grid (flags with comma lists, or a YAML grid file), second- and first-order
side by side, optionally with the PyTorch peer ((:mod:`jaxmaml.bench.torch_peer`, an optional module that needs torch) of a source
checkout). Prints one JSON object per point; ``--out DIR`` also writes ``NAME.jsonl``,
``NAME.md`` (a table) and ``NAME_*.png`` plots (:mod:`jaxmaml.bench.report`). Example::

    jaxmaml bench --model mini --way 5 --shot 5 --query 5 --seq-len 64 --tasks 4 \\
        --inner-steps 5 --order both --json

A grid file::

    name: targets
    defaults: {warmup: 1, reps: 2}     # applied to every entry
    points:                            # each entry: settings; lists expand as a product
      - {model: [mini, small], inner_steps: 5, order: [second, first]}
      - {model: mini, inner_steps: [1, 10], measure: compile}
      - {model: mini, backend: torch, torch_mode: [func_vmap, loop], order: [second, first]}
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterable

from jaxmaml.bench.point import (SETTINGS, TORCH_MODES, BenchPoint, environment, matmul_peak,
                                 run_jax_point)

DEFAULTS = BenchPoint().settings()  # every flat setting's default
JAX_ONLY = ("embedding_rows", "task_chunk", "second_order")  # the PyTorch peer has none


def expand(entry: dict[str, Any], defaults: dict[str, Any] | None = None) -> list[BenchPoint]:
    """A grid entry (settings, list values = axes) -> the product of its points."""
    entry = {**(defaults or {}), **entry}
    unknown = sorted(set(entry) - set(SETTINGS))
    if unknown:
        raise ValueError(f"unknown bench setting(s) {unknown}; known: {sorted(SETTINGS)}.")
    if entry.get("order") == "both":
        entry["order"] = ["second", "first"]
    axes = {k: v if isinstance(v, list) else [v] for k, v in entry.items()}
    points = []
    for combo in itertools.product(*axes.values()):
        setting = dict(zip(axes, combo))
        if setting.get("order") == "first":  # how second order is taken: moot here
            setting.pop("second_order", None)
        point = BenchPoint.of(**setting)
        if point not in points:
            points.append(point)
    return points


def load_grid(path: str | os.PathLike) -> tuple[str, list[BenchPoint]]:
    """``(name, points)`` from a YAML grid file (see the module docstring)."""
    import yaml
    spec = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(spec, dict) or not isinstance(spec.get("points"), list):
        raise ValueError(f"{path}: a grid file needs a 'points:' list of settings dicts.")
    points = [p for e in spec["points"] for p in expand(e, spec.get("defaults"))]
    return str(spec.get("name", Path(path).stem)), points


def run_point(point: BenchPoint, env: dict[str, Any]) -> dict[str, Any]:
    """The full JSON row of one point: settings, measurements, environment."""
    row: dict[str, Any] = {**point.settings(), **env}
    t0 = time.perf_counter()
    try:
        if point.backend == "torch":
            row.update(torch_peer().run_torch_point(point, env["cpu_count"]))
        else:
            row.update(run_jax_point(point))
            peak = matmul_peak(point.dtype)
            row["matmul_peak_flops_per_s"] = peak
            row["matmul_peak_dtype"] = point.dtype
            if "achieved_flops_per_s" in row:
                row["utilization"] = row["achieved_flops_per_s"] / peak
    except (RuntimeError, MemoryError) as e:  # OOM and XLA failures are results too
        row["failed"] = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
    row["wall_s"] = time.perf_counter() - t0
    return row


def torch_peer():
    """The PyTorch peer, :mod:`jaxmaml.bench.torch_peer` (imported on demand: it needs the
    optional ``torch==2.13.0``)."""
    from jaxmaml.bench import torch_peer as peer

    return peer


def run_point_isolated(point: BenchPoint, env: dict[str, Any]) -> dict[str, Any]:
    """:func:`run_point` in a fresh Python process: every point starts from a clean heap
    (so ``rss_peak_bytes`` is its own), and a point killed for memory becomes a failed row
    instead of ending the grid. PyTorch points get an address-space limit of 80% of the
    available memory, so they fail with an allocation error rather than summoning the
    kernel's OOM killer on a shared machine."""
    limit = None
    if point.backend == "torch":
        from jaxmaml.bench.point import available_memory_bytes
        limit = int(0.8 * (available_memory_bytes() or 0)) or None
    child = ("import json, sys; from jaxmaml.bench.grid import _child; _child(%r)" % limit)
    pkg_root = str(Path(__file__).resolve().parents[2])
    env_vars = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [pkg_root, *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.run([sys.executable, "-c", child], input=json.dumps(
        {"point": point.settings(), "env": env}), capture_output=True, text=True,
        env=env_vars)
    if proc.returncode == 0 and proc.stdout.strip():
        return json.loads(proc.stdout.strip().splitlines()[-1])
    why = (f"killed by signal {-proc.returncode} (out of memory?)" if proc.returncode < 0
           else f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}")
    return {**point.settings(), **env, "failed": why}


def _child(limit: int | None) -> None:
    """Body of :func:`run_point_isolated`'s subprocess: point on stdin, row on stdout."""
    if limit:
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    spec = json.loads(sys.stdin.read())
    row = run_point(BenchPoint.of(**spec["point"]), spec["env"])
    print(json.dumps(row, default=str))


def _key(row: dict, *drop: str) -> tuple:
    skip = {"order", "second_order", "backend", "torch_mode", "threads", "remat", "measure",
            "warmup", "reps", "max_time_s", *drop}
    return tuple((k, row.get(k, DEFAULTS[k])) for k in SETTINGS if k not in skip)


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """Annotate JAX second-order rows with second/first time and memory ratios (vs the
    first-order row of the same settings, same remat if measured, else remat none) and
    every timed JAX row with its speed-up over the fastest PyTorch mode of the same
    settings and order."""
    jax_rows = [r for r in rows if r["backend"] == "jax" and not r.get("failed")]
    first = {(_key(r), r["remat"]): r for r in jax_rows if r["order"] == "first"}
    for r in jax_rows:
        if r["order"] != "second":
            continue
        ref = first.get((_key(r), r["remat"])) or first.get((_key(r), "none"))
        if ref is None:
            continue
        r["first_order_ref_remat"] = ref["remat"]
        if r.get("peak_bytes") and ref.get("peak_bytes"):
            r["second_over_first_peak_bytes"] = r["peak_bytes"] / ref["peak_bytes"]
        if r.get("step_time_s") and ref.get("step_time_s"):
            r["second_over_first_time"] = r["step_time_s"] / ref["step_time_s"]
    torch_rows = [r for r in rows if r["backend"] == "torch" and r.get("meta_steps_per_s")]
    for r in jax_rows:
        peers = [t for t in torch_rows if t["order"] == r["order"] and
                 _key(t, *JAX_ONLY) == _key(r, *JAX_ONLY)]
        if r.get("meta_steps_per_s") and peers:
            best = max(peers, key=lambda t: t["meta_steps_per_s"])
            r["torch_best_mode"] = best["torch_mode"]
            r["speedup_vs_torch"] = r["meta_steps_per_s"] / best["meta_steps_per_s"]


def run_grid(points: Iterable[BenchPoint], emit=None, isolate: bool = False
             ) -> list[dict[str, Any]]:
    """Run every point (JAX first, then the PyTorch peer), then annotate ratios.

    ``emit(row)`` is called as each row completes (e.g. to print or save it);
    ``isolate`` runs each point in its own process (:func:`run_point_isolated`).
    """
    env = environment()
    points = sorted(points, key=lambda p: p.backend == "torch")  # stable: grid order kept
    load = os.getloadavg()[0]
    rows = []
    for p in points:
        row = (run_point_isolated if isolate else run_point)(p, env)
        row["loadavg_1min_before"] = load
        load = os.getloadavg()[0]
        row["loadavg_1min_after"] = load
        rows.append(row)
        if emit:
            emit(row)
    add_ratios(rows)
    return rows


# ---------------------------------------------------------------- command line
def _bool(s: str) -> bool:
    if s.lower() not in ("true", "false", "1", "0", "yes", "no"):
        raise argparse.ArgumentTypeError(f"{s!r} is not a boolean (true/false)")
    return s.lower() in ("true", "1", "yes")


def _list(kind):
    return lambda s: [kind(x) for x in s.split(",")]


DESCRIPTION = __doc__.split("\n\n")[0]


def build_parser() -> argparse.ArgumentParser:
    """The ``jaxmaml bench`` flags as a parser of their own (``benchmarks/run.py``)."""
    ap = argparse.ArgumentParser(prog="jaxmaml bench", description=DESCRIPTION,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(ap)
    return ap


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """Add the ``jaxmaml bench`` flags to ``ap`` (the CLI's ``bench`` subparser)."""
    ap.add_argument("--grid", help="YAML grid file (other point flags are then ignored).")
    d = DEFAULTS
    for name, kind in [("model", str), ("way", int), ("shot", int), ("query", int),
                       ("seq_len", int), ("tasks", int), ("inner_steps", int),
                       ("remat", str), ("adapt", str), ("adapt_top_k", int),
                       ("embedding_rows", _bool), ("task_chunk", int),
                       ("second_order", str), ("dtype", str), ("measure", str),
                       ("algorithm", str), ("cg_steps", int)]:
        ap.add_argument("--" + name.replace("_", "-"), type=_list(kind),
                        default=[d[name]], help=f"comma list (default {d[name]})")
    ap.add_argument("--order", default="second", choices=("second", "first", "both"))
    ap.add_argument("--warmup", type=int, default=d["warmup"])
    ap.add_argument("--reps", type=int, default=d["reps"])
    ap.add_argument("--max-time", type=float, default=d["max_time_s"],
                    help="stop timing a point after this many seconds of timed steps")
    ap.add_argument("--peer", choices=("torch",), help="also run the PyTorch peer "
                    f"({', '.join(TORCH_MODES)}) for every point")
    ap.add_argument("--json", action="store_true", help="print one JSON object per point "
                    "(default: a short line per point and a table at the end)")
    ap.add_argument("--out", help="directory for NAME.jsonl, NAME.md and NAME_*.png")
    ap.add_argument("--name", help="results file stem (default: the grid name or 'bench')")
    ap.add_argument("--no-plots", action="store_true")
    ap.add_argument("--in-process", action="store_true", help="run every point in this "
                    "process (default: one fresh process per point; see run_point_isolated)")


def points_from_args(args) -> tuple[str, list[BenchPoint]]:
    if args.grid:
        name, points = load_grid(args.grid)
    else:
        entry = {k: getattr(args, k) for k in ("model", "way", "shot", "query", "seq_len",
                                               "tasks", "inner_steps", "remat", "adapt",
                                               "adapt_top_k", "embedding_rows", "task_chunk",
                                               "second_order", "dtype", "measure",
                                               "algorithm", "cg_steps")}
        entry.update(order=args.order, warmup=args.warmup, reps=args.reps,
                     max_time_s=args.max_time)
        name, points = "bench", expand(entry)
    if args.peer:
        seen, peers = set(), []
        for p in points:
            for mode in TORCH_MODES:
                q = p.replace(backend="torch", torch_mode=mode, remat="none", measure="full",
                              algorithm="maml", cg_steps=DEFAULTS["cg_steps"],
                              **{k: DEFAULTS[k] for k in JAX_ONLY})
                if p.backend == "jax" and q not in seen:
                    seen.add(q)
                    peers.append(q)
        points = points + peers
    return args.name or name, points


def main(argv: list[str] | None = None) -> int:
    """``jaxmaml bench`` from an argument list (``benchmarks/run.py``); the exit status."""
    args = build_parser().parse_args(argv)
    try:
        name, points = points_from_args(args)
    except (ValueError, OSError) as e:
        print(f"jaxmaml bench: error: {e}", file=sys.stderr)
        return 2
    return run(args, name, points)


def run(args: argparse.Namespace, name: str, points: list[BenchPoint]) -> int:
    """Run parsed ``jaxmaml bench`` flags' ``points`` (:func:`points_from_args`); prints
    rows and writes the results files. Returns 1 if a JAX point failed, else 0."""
    from jaxmaml.bench import report as bench_report

    partial = Path(args.out) / f"{name}.partial.jsonl" if args.out else None
    if partial:
        partial.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text("")

    def emit(row):
        if partial:  # rows survive a crash of the grid
            with partial.open("a") as f:
                f.write(json.dumps(row, default=str) + "\n")
        if args.json:
            print(json.dumps(row, default=str), flush=True)
        else:
            print(bench_report.short_line(row), file=sys.stderr, flush=True)

    rows = run_grid(points, emit, isolate=not args.in_process)
    if args.json:  # ratios are known only once the grid is done: one summary line
        print(json.dumps({"summary": bench_report.ratio_summary(rows)}, default=str))
    else:
        print(bench_report.markdown_table(rows))
    if args.out:
        files = bench_report.write_results(rows, args.out, name, plots=not args.no_plots)
        partial.unlink()
        print(f"wrote {', '.join(map(str, files))}", file=sys.stderr)
    return 1 if any(r.get("failed") and r["backend"] == "jax" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
