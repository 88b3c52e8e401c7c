"""Summaries of ``setfit_episodes.py``'s JSON lines, and ``benchmarks/results/setfit.md``.

Per setting: each method's accuracy mean and 95% CI over the episodes it finished, the
paired per-episode difference against SetFit (on the episodes both finished) and the
median fit / predict seconds.

    .venv/bin/python benchmarks/setfit_report.py benchmarks/results/setfit \\
        --md benchmarks/results/setfit.md --command "the command that made the lines"
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jaxmaml.run.protocol import mean_ci95  # noqa: E402

REFERENCE = "setfit"
OPTIONS_FILE = "finetune_options.json"  # in a setfit_episodes --out: its --finetune changes
NOTES = """Episodes: `jaxmaml eval`'s own (protocol pool and sampler, eval.seed, eval.max_per_class,
64 tokens), episode i of each setting identical for every method, re-tokenized and checked
against the protocol's rows. setfit: setfit 1.2.0 on all-MiniLM-L6-v2, num_iterations=20,
1 epoch, batch 16, logistic-regression head, max_seq_length 64, a fresh model per episode,
torch on 1 thread (2 for fortunes' 1-shot episodes 7-29 and 5-shot episodes 7-59: times
only). jaxmaml_learner: FewShotClassifier on the original encoder, default adaptation
(ProtoNet, squared euclidean on mean-pooled features = jaxmaml eval's nearest_centroid);
jaxmaml_probe: head="probe" (= jaxmaml eval's linear_probe);
jaxmaml_finetune: adapt="finetune" with the default FinetuneOptions (test-time fine-tuning,
cosine head started at the prototypes); _names: + fit(label_texts=True), the class names
(e.g. "admin") as one more example per class; _transductive: + predict(transductive=True).
setfit_names_transductive: SetFit's training as setfit, then its fine-tuned body's
embeddings read out as jaxmaml_finetune_names_transductive reads its own (class names as one
more example per class, soft k-means over the queries) instead of the logistic head.
Paired:
per-episode accuracy minus SetFit's on the same episode, mean ± 1.96 std / sqrt(n).
Pairing check (`--check-protocol`): jaxmaml eval's nearest_centroid / linear_probe means
equal ours to float32 precision on debian's first 4 episodes of each setting
(benchmarks/results/setfit_check) and on all 30 of fortunes' (the last column)."""


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def summarize(path: Path) -> dict:
    """``{"source", "way", "shot", "query", "methods": {m: {"episodes", "mean", "ci95",
    "fit_s", "predict_s", "vs_setfit": {"episodes", "mean", "ci95"},
    "protocol_twin_mean"}}}`` of one file; ``protocol_twin_mean`` (when
    ``setfit_episodes.py --check-protocol`` wrote it for the same episodes) is what
    ``jaxmaml eval`` scores for the method's twin on those episodes."""
    rows = read_rows(path)
    by = {}
    for r in rows:
        by.setdefault(r["method"], {})[r["episode"]] = r
    first = rows[0] if rows else {}
    out = {k: first.get(k) for k in ("source", "way", "shot", "query")}
    out["methods"] = {}
    ref = by.get(REFERENCE, {})
    twins = _protocol_means(Path(path), first)
    for m, eps in by.items():
        acc = np.array([eps[i]["accuracy"] for i in sorted(eps)])
        entry = {"episodes": len(acc), **mean_ci95(acc),
                 "fit_s": float(np.median([e["fit_s"] for e in eps.values()])),
                 "predict_s": float(np.median([e["predict_s"] for e in eps.values()]))}
        both = sorted(set(eps) & set(ref))
        if m != REFERENCE and both:
            diff = np.array([eps[i]["accuracy"] - ref[i]["accuracy"] for i in both])
            entry["vs_setfit"] = {"episodes": len(both), **mean_ci95(diff)}
        if m in twins and twins["episodes"] == len(acc) == max(eps) + 1:
            entry["protocol_twin_mean"] = twins[m]
        out["methods"][m] = entry
    return out


def cross(path: Path, other: Path) -> list[dict]:
    """Every method of ``path`` minus every method of ``other`` (the same setting measured
    from another encoder, e.g. ``setfit_episodes.py --model``), paired on the episodes both
    finished: ``[{"method", "vs", "episodes", "mean", "ci95"}]``."""
    def by(p):
        out = {}
        for r in read_rows(p):
            out.setdefault(r["method"], {})[r["episode"]] = r["accuracy"]
        return out

    mine, theirs = by(path), by(other)
    out = []
    for m, eps in sorted(mine.items()):
        for o, ref in sorted(theirs.items()):
            both = sorted(set(eps) & set(ref))
            if both:
                diff = np.array([eps[i] - ref[i] for i in both])
                out.append({"method": m, "vs": o, "episodes": len(both), **mean_ci95(diff)})
    return out


def _protocol_means(path: Path, first: dict) -> dict:
    """``{"episodes", method: mean}`` of ``{source}_protocol.json`` beside ``path`` for
    this setting (``--check-protocol``), else ``{}``."""
    f = path.parent / f"{first.get('source')}_protocol.json"
    if not first or not f.exists():
        return {}
    means = json.loads(f.read_text())
    return {"episodes": means["episodes"],
            **means.get(f"{first['way']}w{first['shot']}s", {})}


def _pm(mean: float, ci: float, scale: float = 100.0, sign: str = "") -> str:
    ci_text = "n/a" if np.isnan(ci) else f"{scale * ci:.1f}"
    return f"{scale * mean:{sign}.1f} ± {ci_text}"


def table(summaries: Sequence[dict]) -> str:
    """A markdown table: one row per (source, setting, method)."""
    lines = ["| source | setting | method | episodes | accuracy % (95% CI) | "
             "minus SetFit, paired (points) | fit s (median) | predict s (median) | "
             "jaxmaml eval's twin % |", "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for s in summaries:
        setting = f"{s['way']}-way {s['shot']}-shot"
        for m, e in sorted(s["methods"].items(), key=lambda kv: kv[0] != REFERENCE):
            vs = e.get("vs_setfit")
            twin = ("—" if "protocol_twin_mean" not in e
                    else f"{100 * e['protocol_twin_mean']:.2f}")
            vs_text = "—" if vs is None else (_pm(vs["mean"], vs["ci95"], sign="+")
                                              + f" (n={vs['episodes']})")
            lines.append(f"| {s['source']} | {setting} | {m} | {e['episodes']} | "
                         f"{_pm(e['mean'], e['ci95'])} | {vs_text} | {e['fit_s']:.2f} | "
                         f"{e['predict_s']:.2f} | {twin} |")
    return "\n".join(lines)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def write_markdown(summaries: Sequence[dict], path: Path, command: str,
                   finetune: dict | None = None) -> None:
    """``path``: the table with the command, the date (UTC) and the CPU; ``finetune``: the
    fine-tuning options the rows were measured with, where not the defaults."""
    import os

    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = "\n".join([
        "# SetFit vs jaxmaml on the same episodes", "",
        f"Measured {date} on {cpu_name()} ({os.cpu_count()} cores, shared with other jobs: "
        "times are upper bounds), by", "", "```", command, "```", "",
        table(summaries), "", NOTES, ""]
        + ([f"Fine-tuning options changed from the defaults (every jaxmaml_finetune* row): "
            f"{json.dumps(finetune, sort_keys=True)}.", ""] if finetune else []))
    Path(path).write_text(text)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("dir", help="the --out directory of setfit_episodes.py")
    p.add_argument("--md", default=None, help="write this markdown file")
    p.add_argument("--command", default="(see the JSON lines)")
    p.add_argument("--against", metavar="DIR", help="print each method of DIR's files "
                   "paired with each method of the same setting in this DIR (points) "
                   "instead of the summaries")
    args = p.parse_args(argv)
    if args.against:
        for f in sorted(Path(args.dir).glob("*.jsonl")):
            if (Path(args.against) / f.name).exists():
                for r in cross(f, Path(args.against) / f.name):
                    print(f"{f.stem}: {r['method']} - {args.against}:{r['vs']}: "
                          f"{_pm(r['mean'], r['ci95'], sign='+')} ({r['episodes']})")
        return 0
    summaries = [summarize(f) for f in sorted(Path(args.dir).glob("*.jsonl"))]
    print(json.dumps(summaries, indent=1))
    if args.md:
        options = Path(args.dir) / OPTIONS_FILE
        finetune = json.loads(options.read_text()) if options.exists() else None
        write_markdown(summaries, Path(args.md), args.command, finetune)
    return 0


if __name__ == "__main__":
    sys.exit(main())
