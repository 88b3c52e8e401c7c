"""Learning-curve plot of a run's ``metrics.jsonl`` (PNG, matplotlib's Agg backend)."""

from __future__ import annotations

import json
from pathlib import Path


def read_metrics(path: str | Path) -> list[dict]:
    """The JSON lines of a metrics file (a torn last line, from a killed run, is skipped)."""
    rows = []
    p = Path(path)
    if not p.exists():
        return rows
    for line in p.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def plot_learning_curves(metrics_file: str | Path, out_png: str | Path, title: str = "") -> Path:
    """Meta-train loss and query accuracy per logged step, and meta-val accuracy (+-95% CI).

    Returns the PNG path.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics_file)
    train = [r for r in rows if "loss" in r]
    val = [r for r in rows if "val_accuracy" in r]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8))
    nan = float("nan")  # a diverged window is recorded as null
    ax_loss.plot([r["step"] for r in train], [nan if r["loss"] is None else r["loss"]
                                              for r in train], label="meta-train")
    ax_loss.set(xlabel="meta-step", ylabel="query loss", title="meta-loss")
    ax_acc.plot([r["step"] for r in train], [nan if r["accuracy"] is None else r["accuracy"]
                                             for r in train],
                label="meta-train query")
    if val:
        ax_acc.errorbar([r["step"] for r in val], [r["val_accuracy"] for r in val],
                        yerr=[r["val_ci95"] for r in val], marker="o", capsize=3,
                        label="meta-val (95% CI)")
    ax_acc.set(xlabel="meta-step", ylabel="accuracy", title="query accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(out_png)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
