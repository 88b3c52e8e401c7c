"""Held-out-domain evaluation: every method, every (run, evaluation dataset), one table.

    python benchmarks/transfer.py --run runs/quickstart \\
        --data wordnet-test=meta_test --data debian \\
        [--seq-len 32] [--way 5] [--shot 1 5] [--query 15] [--episodes 600] \\
        [--out benchmarks/results/transfer]

For each run directory (``--run``, repeatable; trained with ``jaxmaml train``) and each
evaluation dataset (``--data [NAME=]SPEC``, repeatable), evaluates every method of
``jaxmaml eval`` (the meta-learned init and every baseline) on the same episodes, 5-way
1-shot and 5-shot by default, 600 episodes, 15 query examples per class, mean ± 95% CI,
and writes ``OUT.md`` and ``OUT.json``.

``SPEC`` is ``meta_test`` (the run's own meta-test classes: new classes, meta-training
domain), ``meta_test:NAME`` (the meta-test classes of source NAME of a multi-source run;
a ``role: heldout`` source's classes are all meta-test classes), a built-in source name
(``wordnet``, ``wordnet_domains``, ``debian``: all of its classes) or a local
csv/json/jsonl/parquet file with ``text``/``label`` columns (``FILE:TEXT_COL:LABEL_COL`` for
other column names). Each row is marked ``in-domain`` when its data is a source the run
meta-trained on (``data.source``, or any of ``data.sources`` that is not held out), else
``held-out``. Multi-source runs (``data.sources`` with a ``role: heldout`` source) plug in
as they are: ``--data meta_test:debian`` (or ``--data debian``) is tabulated as held-out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def parse_data_spec(spec: str) -> dict:
    """``[NAME=]SPEC`` -> ``{"name", "source" (None: the run's meta-test classes),
    "source_name" (meta-test classes of one source of a multi-source run), "text_column",
    "label_column"}``."""
    name, sep, body = spec.partition("=")
    if not sep:
        name, body = "", spec
    if body == "meta_test" or body.startswith("meta_test:"):
        source_name = body.partition(":")[2] or None
        return {"name": name or source_name or "meta_test", "source": None,
                "source_name": source_name, "text_column": None, "label_column": None}
    parts = body.split(":")
    if len(parts) == 3 and not Path(body).exists():
        source, text_col, label_col = parts
    else:
        source, text_col, label_col = body, None, None
    return {"name": name or Path(source).stem, "source": source, "source_name": None,
            "text_column": text_col, "label_column": label_col}


def training_sources(cfg) -> tuple[set[str], set[str]]:
    """``(meta-trained, held-out)`` source names of a run's config.

    ``data.source`` alone, or the entries of ``data.sources`` (each entry's ``source`` and
    its name ``label``; held out when its ``role`` is ``heldout``).
    """
    trained, held = set(), set()
    entries = getattr(cfg.data, "sources", None) or ()
    for e in entries:
        names = {str(v) for v in (getattr(e, "source", None), getattr(e, "label", None)) if v}
        (held if getattr(e, "role", "train") == "heldout" else trained).update(names)
    if not entries:
        trained.add(str(cfg.data.source))
    return trained, held


def domain_role(cfg, spec: dict) -> str:
    """``in-domain`` (classes of a source the run meta-trained on) or ``held-out``."""
    trained, held = training_sources(cfg)
    if spec["source"] is None:  # the run's meta-test classes (of one source, if named)
        return "held-out" if spec.get("source_name") in held else "in-domain"
    src = spec["source"]
    same = {src, str(Path(src).resolve())} if os.path.exists(src) else {src}
    trained_abs = trained | {str(Path(t).resolve()) for t in trained if os.path.exists(t)}
    return "in-domain" if same & trained_abs and not same & held else "held-out"


def markdown(rows: list[dict], command: str) -> str:
    """One table per (way, shot): a row per (run, dataset), a column per method."""
    from jaxmaml.run.protocol import METHOD_LABELS, METHODS, best_baseline, gain_text

    methods = [m for m in METHODS if any(m in r["results"] for r in rows)]
    out = ["# Transfer: in-domain and held-out-domain few-shot accuracy", "",
           "Mean ± 95% CI over the episodes; every method sees the same episodes. "
           "`in-domain`: classes never meta-trained on, from a meta-training source; "
           "`held-out`: a source the run never saw. Last column: the meta-learned init + its "
           "inner loop minus the best baseline on the original encoder (points; ± the 95% CI "
           "of the paired per-episode difference).", "",
           f"Produced by `{command}`.", ""]
    for way, shot in sorted({(r["way"], r["shot"]) for r in rows}):
        sub = [r for r in rows if (r["way"], r["shot"]) == (way, shot)]
        out += [f"## {way}-way {shot}-shot ({sub[0]['query']} query/class, "
                f"{sub[0]['episodes']} episodes)", "",
                "| run | data | domain | classes | seq_len | "
                + " | ".join(METHOD_LABELS[m] for m in methods) + " | vs best baseline |",
                "|---" * (6 + len(methods)) + "|"]
        for r in sub:
            cells = [r["run"], r["data_name"], r["role"], str(r["classes"]), str(r["seq_len"])]
            for m in methods:
                x = r["results"].get(m)
                cells.append("-" if x is None else f"{x['mean']:.3f} ± {x['ci95']:.3f}")
            gain, best = gain_text(r), best_baseline(r["results"])
            cells.append("-" if gain is None else f"{gain} ({best[0]})")
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", action="append", required=True, help="run directory; repeatable")
    p.add_argument("--data", action="append", required=True,
                   help="[NAME=]meta_test[:SOURCE] | wordnet | wordnet_domains | debian | "
                   "FILE[:TEXT_COL:LABEL_COL]; repeatable")
    p.add_argument("--checkpoint", default="best")
    p.add_argument("--seq-len", type=int, help="tokens per evaluated example "
                   "(default: eval.seq_len, else each run's data.seq_len)")
    p.add_argument("--way", type=int, default=5)
    p.add_argument("--shot", type=int, nargs="+", default=[1, 5])
    p.add_argument("--query", type=int, default=15)
    p.add_argument("--episodes", type=int, default=600)
    p.add_argument("--methods", nargs="+", help="default: every method of jaxmaml eval")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "transfer"),
                   help="writes OUT.md and OUT.json")
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from jaxmaml.run.config import ConfigError
    from jaxmaml.run.evaluate import evaluate_run
    from jaxmaml.run.load import restore_meta_params, run_config
    from jaxmaml.run.state import initial_encoder

    specs = [parse_data_spec(s) for s in args.data]
    settings = [(args.way, s, args.query) for s in args.shot]
    rows = []
    try:
        for run in args.run:
            cfg = run_config(run)
            encoder = initial_encoder(cfg)
            restored = restore_meta_params(cfg, run, args.checkpoint, encoder)
            for spec in specs:
                t0 = time.perf_counter()
                step, results = evaluate_run(
                    cfg, run, data=spec["source"], text_column=spec["text_column"],
                    label_column=spec["label_column"], seq_len=args.seq_len,
                    source_name=spec["source_name"], settings=settings,
                    episodes=args.episodes, methods=args.methods, encoder=encoder,
                    meta_params=restored)
                for r in results:
                    rows.append({**r, "run": Path(run).name, "run_dir": str(run),
                                 "checkpoint_step": step, "data_name": spec["name"],
                                 "role": domain_role(cfg, spec)})
                print(f"{Path(run).name} on {spec['name']}: {time.perf_counter() - t0:.0f} s",
                      flush=True)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    command = "python benchmarks/transfer.py " + " ".join(
        sys.argv[1:] if argv is None else argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"command": command, "rows": rows},
                                                   indent=2) + "\n")
    text = markdown(rows, command)
    out.with_suffix(".md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
