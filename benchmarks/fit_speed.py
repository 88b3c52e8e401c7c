"""Seconds of ``FewShotClassifier.fit`` + ``predict`` per task, after compile, on all-MiniLM-L6-v2.

A 5-way 5-shot support set and 75 texts to classify (short synthetic sentences: 5-9 words,
at most 16 tokens, so ``--seq-len 16`` drops only padding), for a few
test-time adaptations (``adapt="finetune"`` settings, the centroid, transductive). Each
setting is compiled on one task, then timed on ``--tasks`` others of the same shape; prints
one JSON object (median and min seconds per task)::

    python benchmarks/fit_speed.py                  # default settings, seq_len 64
    python benchmarks/fit_speed.py --seq-len 128 --tasks 5
    python benchmarks/fit_speed.py --setfit --md benchmarks/results/fit_speed.md

The default adaptation of a plain encoder (ProtoNet, nearest class mean) and the linear
probe (``head="probe"``) are timed the same way. ``--setfit`` also runs SetFit once on
the first timed task (the ``setfit`` extra; :mod:`setfit_episodes`' settings: its
few-shot defaults, torch on one thread) and prints its seconds beside ours; ``--md``
writes the table.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import jax  # noqa: E402
import numpy as np  # noqa: E402

from jaxmaml.classifier import FewShotClassifier  # noqa: E402
from jaxmaml.meta.finetune import FinetuneOptions  # noqa: E402
from jaxmaml.run.config_load import minilm_dir  # noqa: E402
from jaxmaml.run.load import load_export  # noqa: E402

TOPICS = {"sports": "the team won the match after a late goal in the final minutes",
          "weather": "heavy rain and strong wind are expected across the coast tonight",
          "cooking": "simmer the onions in butter then add garlic and fresh herbs",
          "finance": "the bank raised interest rates as inflation kept climbing",
          "music": "the band played a new song on guitar before the crowd sang along",
          "travel": "our flight landed early so we took a train to the old town",
          "health": "regular exercise and sleep lower the risk of heart disease"}
SETTINGS = {
    "default adaptation (ProtoNet)": dict(kwargs={}),
    "probe (logistic regression)": dict(kwargs={"head": "probe"}),
    "centroid (steps=0)": dict(opts=FinetuneOptions(steps=0)),
    "head, 10 steps": dict(opts=FinetuneOptions(part="head", steps=10)),
    "top_k=1, 10 steps": dict(opts=FinetuneOptions(part="top_k", top_k=1, steps=10)),
    "top_k=2, 10 steps (default)": dict(opts=FinetuneOptions(steps=10)),
    "top_k=2, 20 steps": dict(opts=FinetuneOptions(steps=20)),
    "top_k=2, 10 steps, transductive": dict(opts=FinetuneOptions(), transductive=True),
    "lora r=8 top_k=2, 10 steps": dict(opts=FinetuneOptions(part="lora", top_k=2, steps=10)),
    "all, 10 steps": dict(opts=FinetuneOptions(part="all", steps=10)),
}


def task(rng: np.random.Generator, way: int, shot: int, query: int):
    """(support texts, labels, texts to classify): noisy word samples of ``way`` topics."""
    names = rng.choice(sorted(TOPICS), way, replace=False)

    def text(topic):
        words = TOPICS[topic].split()
        return " ".join(rng.choice(words, rng.integers(5, 10)))

    support = [(text(c), c) for c in names for _ in range(shot)]
    new = [text(names[i % way]) for i in range(query)]
    return [t for t, _ in support], [c for _, c in support], new


def time_setting(loaded, setting: dict, tasks: list, seq_len: int) -> dict:
    kwargs = setting.get("kwargs", {"adapt": "finetune", "finetune": setting.get("opts")})
    clf = FewShotClassifier(loaded, seq_len=seq_len, batch_size=75, **kwargs)
    transductive = setting.get("transductive", False)
    t0 = time.perf_counter()
    clf.fit(*tasks[0][:2]).predict(tasks[0][2], transductive=transductive)
    compile_s = time.perf_counter() - t0
    times, cpu = [], []
    for texts, labels, new in tasks[1:]:
        t0, c0 = time.perf_counter(), time.process_time()
        clf.fit(texts, labels).predict(new, transductive=transductive)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    # cpu_s: CPU seconds of all threads (on a shared machine, wall time also waits for others)
    return {"first_call_s": round(compile_s, 2), "median_s": round(float(np.median(times)), 3),
            "min_s": round(min(times), 3), "median_cpu_s": round(float(np.median(cpu)), 3)}


def setfit_seconds(texts, labels, new, seq_len: int) -> dict:
    """SetFit's fit and predict seconds on one task (a fresh model, as a user runs it)."""
    sys.path.insert(0, str(HERE))
    import setfit_episodes as se
    import torch

    if not se.setfit_installed():
        raise SystemExit(se.MISSING_SETFIT)
    torch.set_num_threads(1)
    names = sorted(set(labels))
    ep = se.TextEpisode(list(texts), np.array([names.index(y) for y in labels]), list(new),
                        np.zeros(len(new), np.int64), None, None, names)
    _, fit_s, predict_s = se.setfit_method(seq_len)(ep, 0)
    return {"fit_s": round(fit_s, 2), "predict_s": round(predict_s, 2),
            "median_s": round(fit_s + predict_s, 2)}


def markdown(out: dict, command: str) -> str:
    """The settings' medians as a table, with SetFit's seconds beside when measured."""
    import datetime

    sf = out.get("setfit", {}).get("median_s")
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"# fit + predict seconds: one 5-way 5-shot task, 75 texts, seq_len "
             f"{out['seq_len']}", "",
             f"Measured {date}, {out['device']}, {out['cpu_count']} CPU cores, 1-min load "
             f"average {out['load_average_1min']:.1f} at the start (above ~1: other jobs ran, "
             "the seconds are upper bounds), by",
             "", "```", command, "```", "",
             "| adaptation | median s per task | first call s (compile) | CPU s | "
             "SetFit s / this |", "|---|---:|---:|---:|---:|"]
    for name, r in out["settings"].items():
        ratio = "—" if not sf else f"{sf / r['median_s']:.1f}"
        lines.append(f"| {name} | {r['median_s']:.2f} | {r['first_call_s']:.1f} | "
                     f"{r['median_cpu_s']:.2f} | {ratio} |")
    if sf:
        s = out["setfit"]
        lines.append(f"| SetFit (setfit 1.2.0, 20 iterations, 1 epoch, batch 16) | {sf:.2f} "
                     f"(fit {s['fit_s']:.1f} + predict {s['predict_s']:.1f}) | — | — | 1 |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--tasks", type=int, default=3, help="timed tasks per setting")
    ap.add_argument("--only", nargs="*", help="substrings of the settings to run")
    ap.add_argument("--setfit", action="store_true", help="also time SetFit on one task")
    ap.add_argument("--md", help="write the table to this markdown file")
    args = ap.parse_args()
    loaded = load_export(minilm_dir(), args.seq_len)
    rng = np.random.default_rng(0)
    tasks = [task(rng, 5, 5, 75) for _ in range(args.tasks + 1)]
    out = {"model": "all-MiniLM-L6-v2", "way": 5, "shot": 5, "texts": 75,
           "seq_len": args.seq_len, "device": str(jax.devices()[0]),
           "cpu_count": os.cpu_count(), "load_average_1min": os.getloadavg()[0],
           "settings": {}}
    for name, setting in SETTINGS.items():
        if args.only and not any(s in name for s in args.only):
            continue
        out["settings"][name] = time_setting(loaded, setting, tasks, args.seq_len)
        print(name, out["settings"][name], file=sys.stderr, flush=True)
    if args.setfit:
        out["setfit"] = setfit_seconds(*tasks[1], args.seq_len)
        print("setfit", out["setfit"], file=sys.stderr, flush=True)
    print(json.dumps(out, indent=1))
    if args.md:
        Path(args.md).write_text(markdown(out, "python benchmarks/fit_speed.py "
                                          + shlex.join(sys.argv[1:])))


if __name__ == "__main__":
    main()
