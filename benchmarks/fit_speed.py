"""Seconds of ``FewShotClassifier.fit`` + ``predict`` per task, after compile, on all-MiniLM-L6-v2.

A 5-way 5-shot support set and 75 texts to classify (short synthetic sentences: 5-9 words,
at most 16 tokens, so ``--seq-len 16`` drops only padding), for a few
test-time adaptations (``adapt="finetune"`` settings, the centroid, transductive). Each
setting is compiled on one task, then timed on ``--tasks`` others of the same shape; prints
one JSON object (median and min seconds per task)::

    python benchmarks/fit_speed.py                  # default settings, seq_len 64
    python benchmarks/fit_speed.py --seq-len 128 --tasks 5
"""

from __future__ import annotations

import argparse
import json
import os
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
    "centroid (steps=0)": dict(opts=FinetuneOptions(steps=0)),
    "head, 10 steps": dict(opts=FinetuneOptions(part="head", steps=10)),
    "top_k=1, 10 steps": dict(opts=FinetuneOptions(part="top_k", top_k=1, steps=10)),
    "top_k=2, 10 steps (default)": dict(opts=FinetuneOptions()),
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
    clf = FewShotClassifier(loaded, adapt="finetune", finetune=setting["opts"],
                            seq_len=seq_len, batch_size=75)
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--tasks", type=int, default=3, help="timed tasks per setting")
    ap.add_argument("--only", nargs="*", help="substrings of the settings to run")
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
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
