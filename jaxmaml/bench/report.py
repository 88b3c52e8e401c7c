"""Benchmark rows -> JSON lines, a markdown table and PNG plots (matplotlib, Agg)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

Row = dict[str, Any]

_COLUMNS = [  # (header, key, format)
    ("backend", "backend", "{}"), ("mode", "torch_mode", "{}"), ("algo", "algorithm", "{}"),
    ("model", "model", "{}"),
    ("T", "tasks", "{}"), ("chunk", "task_chunk", "{}"), ("S", "inner_steps", "{}"),
    ("L", "seq_len", "{}"),
    ("order", "order", "{}"), ("via", "second_order", "{}"), ("remat", "remat", "{}"),
    ("adapt", "adapt", "{}"),
    ("dtype", "dtype", "{}"), ("steps/s", "meta_steps_per_s", "{:.4g}"),
    ("tasks/s", "tasks_per_s", "{:.3g}"), ("tok/s", "tokens_per_s", "{:.4g}"),
    ("compile s", "compile_s", "{:.1f}"), ("peak MiB", "peak_bytes", "{:.1f}"),
    ("RSS MiB", "rss_peak_bytes", "{:.0f}"), ("GFLOP/step", "flops_per_step", "{:.1f}"),
    ("util", "utilization", "{:.0%}"), ("2nd/1st time", "second_over_first_time", "{:.2f}"),
    ("2nd/1st mem", "second_over_first_peak_bytes", "{:.2f}"),
    ("vs torch", "speedup_vs_torch", "{:.2f}x"), ("loss0", "loss_first_step", "{:.6f}"),
]
_SCALE = {"peak_bytes": 2 ** -20, "rss_peak_bytes": 2 ** -20, "flops_per_step": 1e-9}


def _cell(row: Row, key: str, fmt: str) -> str:
    if key == "torch_mode" and row.get("backend") != "torch":
        return ""
    if key == "remat" and row.get("backend") == "torch":
        return ""
    if key == "second_order" and (row.get("order") != "second" or row.get("backend") != "jax"):
        return ""
    if key == "task_chunk" and not row.get(key):  # 0 / absent: all tasks at once
        return ""
    if key == "adapt" and row.get("adapt") == "all" and row.get("embedding_rows") is False:
        return "all (dense emb)"
    value = row.get(key)
    if value is None:
        return "FAILED" if key == "meta_steps_per_s" and row.get("failed") else ""
    if isinstance(value, (int, float)) and key in _SCALE:
        value *= _SCALE[key]
    return fmt.format(value)


def markdown_table(rows: list[Row]) -> str:
    """One line per row; failures listed under the table with their reason."""
    lines = ["| " + " | ".join(h for h, _, _ in _COLUMNS) + " |",
             "|" + "---|" * len(_COLUMNS)]
    for r in rows:
        lines.append("| " + " | ".join(_cell(r, k, f) for _, k, f in _COLUMNS) + " |")
    failed = [r for r in rows if r.get("failed")]
    for r in failed:
        lines.append(f"\nFAILED {r['backend']} {r.get('torch_mode', '')} {r['model']} "
                     f"{r['order']}: {r['failed']}")
    return "\n".join(lines)


def short_line(row: Row) -> str:
    via = _cell(row, "second_order", "{}")
    algo = row.get("algorithm", "maml")
    what = (f"{row['backend']}{'/' + row['torch_mode'] if row['backend'] == 'torch' else ''} "
            f"{algo + ' ' if algo != 'maml' else ''}"
            f"{row['model']} T={row['tasks']} S={row['inner_steps']} L={row['seq_len']} "
            f"{row['order']}{'/' + via if via else ''} "
            f"remat={row['remat']} adapt={_cell(row, 'adapt', '{}')} "
            f"{row['dtype']}" + (f" chunk={row['task_chunk']}" if row.get("task_chunk") else ""))
    if row.get("failed"):
        return f"{what}: FAILED {row['failed']}"
    first_measure = [k for _, k, _ in _COLUMNS].index("meta_steps_per_s")
    parts = [f"{k}={_cell(row, k, f)}" for _, k, f in _COLUMNS[first_measure:]
             if row.get(k) is not None]
    return f"{what}: " + " ".join(parts)


def ratio_summary(rows: list[Row]) -> list[dict[str, Any]]:
    """The cross-row numbers (second/first, vs torch) of every JAX row that has them."""
    keys = ("second_over_first_time", "second_over_first_peak_bytes", "first_order_ref_remat",
            "speedup_vs_torch", "torch_best_mode")
    out = []
    for r in rows:
        found = {k: r[k] for k in keys if k in r}
        if found:
            out.append({k: r[k] for k in ("model", "tasks", "inner_steps", "seq_len", "order",
                                          "remat", "adapt", "dtype")} | found)
    return out


def _plot_axis(rows: list[Row], axis: str, label: str, path: Path) -> bool:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[str, list[tuple[Any, float]]] = {}
    for r in rows:
        if r.get("meta_steps_per_s") is None:
            continue
        name = (f"{r['backend']}{'/' + r['torch_mode'] if r['backend'] == 'torch' else ''} "
                f"{r['order']}{' remat=' + r['remat'] if r['remat'] != 'none' else ''}")
        groups.setdefault(name, []).append((r[axis], r["meta_steps_per_s"]))
    groups = {k: sorted(v, key=lambda xy: str(xy[0]) if axis == "model" else xy[0])
              for k, v in groups.items() if len({x for x, _ in v}) > 1}
    if not groups:
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, xy in groups.items():
        ax.plot([str(x) if axis == "model" else x for x, _ in xy], [y for _, y in xy],
                marker="o", label=name)
    ax.set_xlabel(label)
    ax.set_ylabel("meta-steps / s")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _plot_bars(rows: list[Row], keys: list[tuple[str, str]], ylabel: str, path: Path,
               scale: float = 1.0, hline: float | None = None) -> bool:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if any(r.get(k) is not None for k, _ in keys)]
    if not rows:
        return False
    labels = [f"{r['model']} S={r['inner_steps']} T={r['tasks']}\n{r['order']} "
              f"remat={r['remat']}{'' if r['adapt'] == 'all' else ' ' + r['adapt']}"
              for r in rows]
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(rows)), 4))
    width = 0.8 / len(keys)
    for i, (k, name) in enumerate(keys):
        ax.bar([j + i * width for j in range(len(rows))],
               [(r.get(k) or 0) * scale for r in rows], width, label=name)
    if hline is not None:
        ax.axhline(hline, color="k", lw=0.8, ls="--")
    ax.set_xticks([j + width * (len(keys) - 1) / 2 for j in range(len(rows))])
    ax.set_xticklabels(labels, fontsize=6, rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_results(rows: list[Row], out_dir: str | Path, name: str, plots: bool = True
                  ) -> list[Path]:
    """Write ``NAME.jsonl``, ``NAME.md`` and (with ``plots``) ``NAME_*.png``; return paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / f"{name}.jsonl", out / f"{name}.md"]
    written[0].write_text("".join(json.dumps(r, default=str) + "\n" for r in rows))
    written[1].write_text(markdown_table(rows) + "\n")
    if not plots:
        return written
    jax_rows = [r for r in rows if r["backend"] == "jax"]
    timed = [r for r in rows if r.get("meta_steps_per_s")]
    for axis, label in (("inner_steps", "inner steps S"), ("tasks", "tasks per meta-batch T"),
                        ("model", "model")):
        path = out / f"{name}_throughput_vs_{axis}.png"
        if _plot_axis(timed, axis, label, path):
            written.append(path)
    ratio = [r for r in jax_rows if "second_over_first_time" in r
             or "second_over_first_peak_bytes" in r]
    path = out / f"{name}_second_over_first.png"
    if _plot_bars(ratio, [("second_over_first_time", "time"),
                          ("second_over_first_peak_bytes", "XLA peak memory")],
                  "second / first order", path, hline=1.0):
        written.append(path)
    path = out / f"{name}_memory.png"
    if _plot_bars(jax_rows, [("peak_bytes", "XLA peak"), ("rss_peak_bytes", "process RSS peak")],
                  "MiB", path, scale=2 ** -20):
        written.append(path)
    return written
