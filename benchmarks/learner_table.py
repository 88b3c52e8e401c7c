"""Issue 7: every learner on WordNet meta-test classes (5-way 1-shot and 5-shot).

For each learner, sequentially (never two trainings at once)::

    jaxmaml train configs/learners/<learner>.yaml --out <runs>/<learner> --no-progress
    jaxmaml eval <runs>/<learner> --json --shot 1 5 --query 15 --episodes 600

records the wall-clock time of the train command (meta-training time on this machine,
including JIT compilation, data loading and the periodic meta-validation/checkpoints the
config asks for) and the eval JSON, appends one JSON line per learner to
``benchmarks/results/learners_wordnet.jsonl`` and rewrites
``benchmarks/results/learners_wordnet.md`` from the whole JSONL (the latest line per learner
wins). A failed train or eval is recorded (with the tail of its stderr) and the next learner
runs.

Usage::

    .venv/bin/python benchmarks/learner_table.py                  # all learners, table order
    .venv/bin/python benchmarks/learner_table.py maml anil        # a subset
    .venv/bin/python benchmarks/learner_table.py --table-only     # re-render the markdown
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ORDER = ("protonet", "maml", "fomaml", "anil", "protomaml", "metasgd", "mamlpp", "reptile",
         "matchingnet", "relationnet")
JSONL = ROOT / "benchmarks/results/learners_wordnet.jsonl"
MD = ROOT / "benchmarks/results/learners_wordnet.md"
EVAL_ARGS = ["--json", "--shot", "1", "5", "--query", "15", "--episodes", "600"]
BASELINE_FROM = "maml"  # the baselines' row comes from this learner's eval (shared inner loop)
NOTES = """\
Notes:

- **One shared cheap recipe** for every learner (`configs/learners/<learner>.yaml`, derived
  from `configs/quickstart.yaml`): all-MiniLM-L6-v2, `seq_len` 24, 100 examples per class
  (meta-train and meta-test pools), mean pooling, `outer_frozen_layers: 4` (embeddings and the
  bottom 4 of 6 layers are never trained and computed once per example; only the top 2
  layers, plus any learner extras, are meta-learned), 100 meta-steps of 4 tasks (5-way
  5-shot, 5 queries), AdamW lr 3e-4 (10 warmup steps, cosine decay to 10% at step 100),
  meta-val every 50 steps on 100 episodes; the evaluated checkpoint is the best meta-val one.
  Nothing was tuned per learner; a larger budget may reorder the learners.
- **MAML family** (maml, fomaml, anil, protomaml, metasgd, mamlpp): 3 inner SGD steps,
  inner lr 0.1, `adapt: head` (the inner loop adapts the task head only; the outer loop
  meta-learns the top 2 layers through it). Head init `zeros`, except protomaml (`proto`,
  which it implies). A 20-step smoke run of maml with the zeros head learned (meta-train
  query loss 1.34 -> 0.85, meta-val 68.2% -> 71.6% from step 10 to 20), so `zeros` was kept.
- **maml and anil are the same computation here**: anil implies `adapt: head`, which this
  recipe already sets for every MAML-family learner, and both use the same task loss and
  seed, so they differ only by name (any difference in their rows is run-to-run noise).
- **mamlpp**: `mamlpp: {msl_steps: 30}` (multi-step loss for the first 30 meta-steps),
  `first_order_steps: 20` (derivative-order annealing), learned per-step inner LRs.
- **metasgd and mamlpp land on maml's numbers** because on this budget their learned inner
  LRs barely move: they are stored as log(lr) and updated by the same AdamW (lr <= 3e-4,
  100 steps), so they can change by ~2% at most; measured at step 100, Meta-SGD's head
  rates are 0.1002-0.1017 and MAML++'s 0.1000-0.1017 (all started at 0.1). Telling them
  apart from maml needs a larger outer LR for the rates or many more steps.
- **protomaml lands on protonet's numbers**: its Proto-MAML head (W = 2c, b = -|c|^2) gives
  ProtoNet's logits up to a per-query constant, and the 3 inner steps barely change its
  predictions (measured: in protomaml's eval the pretrained_finetune baseline, proto head +
  3 steps, equals nearest_centroid to 4 digits; the two learners' meta-training losses
  agree to ~1e-3). Likely cause, not measured: on unscaled squared distances the support
  set is already fit with a saturated softmax, so the support gradient is tiny.
- **reptile** uses `adapt: top_k_layers` with `adapt_top_k: 2` (the 2 meta-learned layers +
  head) instead of `adapt: head`: Reptile moves only what its inner loop adapts and the head
  is re-initialized per task, so with `adapt: head` its update would be exactly zero. Its
  inner loop trains on support + query (`reptile: {all_data: true}`); AdamW outer optimizer.
- **Metric learners** (protonet, matchingnet, relationnet) have no inner loop; protonet
  squared euclidean, matchingnet cosine (scale 10) without FCE, relationnet a 64-unit MLP.
- **Baselines**: `nearest_centroid` is the frozen pretrained encoder (all 6 layers, mean
  pooling), nearest class mean in squared euclidean distance, no training (identical in every
  learner's eval: same episodes, seed 0). `pretrained_finetune` is the pretrained encoder with
  maml's inner loop (zeros head, 3 SGD steps of lr 0.1 on the head), from maml's eval.
- **Time** is the wall clock of `jaxmaml train` on a 2-core CPU shared with other jobs, so
  it is noisy (not repeated); it includes JIT compilation, data loading and tokenization,
  the frozen-bottom precompute, 2 meta-validations and 2 checkpoints. Evaluation (600 episodes x 2 settings x 3 methods) is not included.
"""


def _run(cmd: list[str], log: Path) -> tuple[int, float, str]:
    """(exit code, wall seconds, stdout); stdout+stderr also go to ``log``."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    log.write_text(f"$ {' '.join(cmd)}\n# rc={proc.returncode} wall={wall:.1f}s\n"
                   f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
    return proc.returncode, wall, proc.stdout if proc.returncode == 0 else proc.stderr


def run_learner(name: str, runs: Path, fresh: bool) -> dict:
    """Train + evaluate one learner; returns its JSONL record."""
    cfg = ROOT / "configs/learners" / f"{name}.yaml"
    run_dir = runs / name
    if fresh and run_dir.exists():
        shutil.rmtree(run_dir)  # a leftover run dir would resume, not re-train
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    jaxmaml = str(ROOT / ".venv/bin/jaxmaml")
    rec: dict = {"learner": name, "config": str(cfg.relative_to(ROOT)), "run_dir": str(run_dir),
                 "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                 "host": platform.node(), "cpus": os.cpu_count()}
    rc, wall, out = _run([jaxmaml, "train", str(cfg), "--out", str(run_dir), "--no-progress"],
                         runs / f"{name}.train.log")
    rec["train_wall_s"] = round(wall, 1)
    if rc != 0:
        rec["error"] = f"train exit {rc}: {out.strip()[-400:]}"
        return rec
    summary = run_dir / "train_summary.json"
    if summary.exists():
        rec["train_summary"] = json.loads(summary.read_text())
    rc, wall, out = _run([jaxmaml, "eval", str(run_dir), *EVAL_ARGS], runs / f"{name}.eval.log")
    rec["eval_wall_s"] = round(wall, 1)
    if rc != 0:
        rec["error"] = f"eval exit {rc}: {out.strip()[-400:]}"
        return rec
    rec["eval"] = json.loads(out.strip().splitlines()[-1])
    return rec


def record_from_run_dir(name: str, runs: Path) -> dict:
    """The record of a learner whose train and eval already ran (e.g. an eval that outlived
    an interrupted table run): train wall time from ``<runs>/<name>.train.log``, the eval
    rows (600 episodes, 15 queries, the evaluated checkpoint) from the run's eval file."""
    from jaxmaml.run.export import EVAL_FILE

    run_dir = runs / name
    head = (runs / f"{name}.train.log").read_text().splitlines()[1]  # "# rc=0 wall=467.9s"
    wall = float(head.split("wall=")[1].rstrip("s"))
    summary = json.loads((run_dir / "train_summary.json").read_text())
    rows = [r for r in json.loads((run_dir / EVAL_FILE).read_text())
            if r["episodes"] == 600 and r["query"] == 15 and r["split"] == "meta_test"]
    if sorted(r["shot"] for r in rows) != [1, 5]:
        raise SystemExit(f"{run_dir / EVAL_FILE} lacks the 1- and 5-shot 600-episode rows")
    return {"learner": name, "config": f"configs/learners/{name}.yaml", "run_dir": str(run_dir),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "host": platform.node(), "cpus": os.cpu_count(), "train_wall_s": wall,
            "train_summary": summary, "eval": sorted(rows, key=lambda r: r["shot"]),
            "recorded_from": "run_dir"}


def _steps(rec: dict) -> str:
    s = rec.get("train_summary", {})
    step = s.get("final_step", s.get("steps"))
    return str(step) if step is not None else "?"


def _acc(rec: dict, shot: int, method: str) -> str:
    for r in rec.get("eval", []):
        if r["shot"] == shot and method in r["results"]:
            m = r["results"][method]
            return f"{100 * m['mean']:.1f} ± {100 * m['ci95']:.1f}"
    return "–"


def render(records: list[dict]) -> str:
    """The markdown table of the latest record per learner, in :data:`ORDER`."""
    latest: dict[str, dict] = {}
    for r in records:
        latest[r["learner"]] = r
    names = [n for n in ORDER if n in latest] + sorted(set(latest) - set(ORDER))
    lines = [
        "# Every learner on WordNet meta-test classes",
        "",
        "5-way accuracy (%) on the 10 meta-test supersense classes of WordNet (gloss -> "
        "supersense, class-disjoint 30/5/10 split, seed 0), mean ± 95% CI over 600 episodes "
        "(15 queries per class), checkpoint with the best meta-val accuracy. Meta-train time: "
        "wall clock of `jaxmaml train` on this machine (2 shared CPU cores; includes JIT "
        "compilation, data loading, 2 meta-validations of 100 episodes and checkpoints).",
        "",
        "| learner | 5-way 1-shot | 5-way 5-shot | meta-train time | steps |",
        "|---|---|---|---|---|",
    ]
    for n in names:
        r = latest[n]
        if "error" in r:
            lines.append(f"| {n} | failed | failed | {r.get('train_wall_s', '?')} s | – |")
            continue
        lines.append(f"| {n} | {_acc(r, 1, 'meta_learned')} | {_acc(r, 5, 'meta_learned')} | "
                     f"{r['train_wall_s']:.0f} s | {_steps(r)} |")
    base = latest.get(BASELINE_FROM) or next((latest[n] for n in names if "eval" in latest[n]),
                                             None)
    if base and "eval" in base:
        lines.append(f"| *nearest_centroid* (frozen pretrained) | "
                     f"{_acc(base, 1, 'nearest_centroid')} | {_acc(base, 5, 'nearest_centroid')}"
                     f" | 0 | 0 |")
        lines.append(f"| *pretrained_finetune* (pretrained + {base['learner']}'s inner loop) | "
                     f"{_acc(base, 1, 'pretrained_finetune')} | "
                     f"{_acc(base, 5, 'pretrained_finetune')} | 0 | 0 |")
    nc = {json.dumps([x["results"].get("nearest_centroid") for x in latest[n]["eval"]])
          for n in names if "eval" in latest[n]}
    if len(nc) > 1:
        lines += ["", "**Warning**: nearest_centroid differs between learners' evals."]
    lines += ["", NOTES.rstrip()]
    if all("eval" in latest.get(n, {}) for n in ("maml", "anil")):
        same = json.dumps(latest["maml"]["eval"]) == json.dumps(latest["anil"]["eval"])
        lines.append("- Measured: the maml and anil evaluations are " + (
            "bit-identical (same meta-val curve, same accuracies to the last digit)." if same
            else "not bit-identical (CPU run-to-run nondeterminism)."))
    errors = [f"- **{n}**: {latest[n]['error']}" for n in names if "error" in latest[n]]
    if errors:
        lines += ["", "Failures:", ""] + errors
    lines += ["", "Reproduce: `.venv/bin/python benchmarks/learner_table.py` (configs: "
              "`configs/learners/<learner>.yaml`; raw records with the full eval JSON: "
              "`benchmarks/results/learners_wordnet.jsonl`).", ""]
    return "\n".join(lines)


def _load() -> list[dict]:
    if not JSONL.exists():
        return []
    return [json.loads(ln) for ln in JSONL.read_text().splitlines() if ln.strip()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("learners", nargs="*", help=f"default: {' '.join(ORDER)}")
    p.add_argument("--runs", default="/tmp/learners", help="parent of the run directories")
    p.add_argument("--resume", action="store_true", help="keep existing run directories "
                   "(the train command resumes them) instead of deleting them first")
    p.add_argument("--table-only", action="store_true", help="only re-render the markdown")
    p.add_argument("--from-run-dir", action="store_true", help="do not run anything: record "
                   "the named learners from their finished run directories under --runs")
    args = p.parse_args(argv)
    if args.from_run_dir:
        for name in args.learners:
            with JSONL.open("a") as f:
                f.write(json.dumps(record_from_run_dir(name, Path(args.runs))) + "\n")
    if not (args.table_only or args.from_run_dir):
        bad = [n for n in args.learners if not (ROOT / "configs/learners" / f"{n}.yaml").exists()]
        if bad:
            p.error(f"no configs/learners/<name>.yaml for: {', '.join(bad)}")
        JSONL.parent.mkdir(parents=True, exist_ok=True)
        for name in args.learners or ORDER:
            print(f"[{time.strftime('%H:%M:%S')}] {name} ...", flush=True)
            rec = run_learner(name, Path(args.runs), fresh=not args.resume)
            with JSONL.open("a") as f:
                f.write(json.dumps(rec) + "\n")
            MD.write_text(render(_load()))
            status = rec.get("error") or (f"1-shot {_acc(rec, 1, 'meta_learned')}, 5-shot "
                                          f"{_acc(rec, 5, 'meta_learned')}")
            print(f"[{time.strftime('%H:%M:%S')}] {name}: train {rec['train_wall_s']} s; "
                  f"{status}", flush=True)
    MD.write_text(render(_load()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
