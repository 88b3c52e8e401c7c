"""How long ``FewShotClassifier.fit`` + ``predict`` take on one 5-way 5-shot task (75 texts
to classify), beside SetFit on the same task.

The task is episode 0 of ``jaxmaml eval``'s 5-way 5-shot setting on ``--source`` of
``--config`` (:mod:`setfit_episodes`, 64 tokens). Each adaptation runs once to compile
(reported as ``compile_s``: the first call's time minus the median of the rest), then
``--repeats`` times; the medians are reported. SetFit's time is the median ``fit_s`` /
``predict_s`` of ``setfit_episodes.py``'s 5-shot JSON lines when they exist (the same
episodes, the same machine), else one live SetFit run (``--setfit-live`` forces it).

    HF_HUB_OFFLINE=1 nice -n 10 .venv/bin/python benchmarks/fit_speed.py

Prints one JSON object per method and writes ``benchmarks/results/fit_speed.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import setfit_episodes as se  # noqa: E402
from setfit_report import cpu_name, read_rows  # noqa: E402

# table name -> setfit_episodes.JAXMAML method (on the original all-MiniLM-L6-v2)
ADAPTATIONS = {
    "default (ProtoNet on a plain encoder)": "jaxmaml_learner",
    "probe (logistic regression)": "jaxmaml_probe",
    "finetune (default FinetuneOptions)": "jaxmaml_finetune",
    "finetune + class names": "jaxmaml_finetune_names",
    "finetune + transductive": "jaxmaml_finetune_transductive",
}


def time_runs(run: Callable, episode, repeats: int) -> dict:
    """``{"compile_s", "fit_s", "predict_s", "total_s", "accuracy"}``: ``run`` once to
    compile, then ``repeats`` times (medians)."""
    pred, fit0, pred0 = run(episode, 0)
    times = np.array([run(episode, 0)[1:] for _ in range(repeats)])
    fit_s, predict_s = np.median(times, axis=0)
    return {"compile_s": float(fit0 + pred0 - np.median(times.sum(1))),
            "fit_s": float(fit_s), "predict_s": float(predict_s),
            "total_s": float(np.median(times.sum(1))),
            "accuracy": float(np.mean(pred == episode.query_labels)), "repeats": repeats}


def setfit_time(episode, seq_len: int, jsonl: Path, live: bool) -> dict:
    """SetFit's fit/predict seconds: medians from ``jsonl`` (5-shot lines of
    setfit_episodes.py), or one live run."""
    rows = [r for r in read_rows(jsonl) if r["method"] == "setfit"] if jsonl.exists() else []
    if rows and not live:
        fit = float(np.median([r["fit_s"] for r in rows]))
        predict = float(np.median([r["predict_s"] for r in rows]))
        return {"fit_s": fit, "predict_s": predict, "total_s": fit + predict,
                "accuracy": float(np.mean([r["accuracy"] for r in rows])),
                "repeats": len(rows), "from": str(jsonl.relative_to(ROOT))}
    pred, fit, predict = se.setfit_method(seq_len)(episode, 0)
    return {"fit_s": fit, "predict_s": predict, "total_s": fit + predict,
            "accuracy": float(np.mean(pred == episode.query_labels)), "repeats": 1,
            "from": "live"}


def markdown(rows: dict[str, dict], command: str) -> str:
    import datetime
    import os

    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    setfit_total = rows.get("SetFit", {}).get("total_s")
    lines = ["# Fit + predict time: one 5-way 5-shot task, 75 texts to classify", "",
             f"Measured {date} on {cpu_name()} ({os.cpu_count()} cores, shared with other "
             "jobs: times are upper bounds), by", "", "```", command, "```", "",
             "| method | fit s | predict s | fit + predict s | compile s (once) | "
             "x faster than SetFit | repeats |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in rows.items():
        speedup = ("—" if name == "SetFit" or not setfit_total
                   else f"{setfit_total / r['total_s']:.0f}")
        compile_s = f"{r['compile_s']:.1f}" if "compile_s" in r else "—"
        lines.append(f"| {name} | {r['fit_s']:.3f} | {r['predict_s']:.3f} | "
                     f"{r['total_s']:.3f} | {compile_s} | {speedup} | {r['repeats']} |")
    if "from" in rows.get("SetFit", {}):
        lines += ["", f"SetFit: {rows['SetFit']['from']} (medians over its 5-shot episodes; "
                  "each loads the model and fine-tunes it from scratch)."]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default=str(ROOT / "configs" / "quickstart.yaml"))
    p.add_argument("--source", default="debian")
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--setfit-live", action="store_true", help="run SetFit here once")
    p.add_argument("--no-setfit", action="store_true")
    p.add_argument("--md", default=str(ROOT / "benchmarks" / "results" / "fit_speed.md"))
    args = p.parse_args(argv)
    if not args.no_setfit and args.setfit_live and not se.setfit_installed():
        print(se.MISSING_SETFIT, file=sys.stderr)
        return 2
    src = se.load_source(args.config, args.source, None, args.seq_len)
    episode = se.text_episodes(src, 5, 5, 15, 1)[0]
    rows = {}
    for name, method in ADAPTATIONS.items():
        run = se.jaxmaml_method(method, args.seq_len)
        rows[name] = time_runs(run, episode, args.repeats)
        print(json.dumps({"method": name, **rows[name]}), flush=True)
    if not args.no_setfit:
        jsonl = Path(se.parse_args(["--source", args.source]).out) / f"{src.name}_5w5s.jsonl"
        rows["SetFit"] = setfit_time(episode, args.seq_len, jsonl, args.setfit_live)
        print(json.dumps({"method": "SetFit", **rows["SetFit"]}), flush=True)
    command = "python benchmarks/fit_speed.py " + " ".join(argv or sys.argv[1:])
    Path(args.md).write_text(markdown(rows, command.strip()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
