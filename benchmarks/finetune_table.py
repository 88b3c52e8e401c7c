"""Test-time fine-tuning, class names and transduction on held-out domains: sweep and table.

    # choose the fine-tuning defaults on the original encoder (validation domains only)
    python benchmarks/finetune_table.py sweep --setup A=configs/quickstart.yaml:debian \\
        --setup B=configs/transfer_b.yaml:wordnet_domains --episodes 100 \\
        --grid part=top_k,lora top_k=1,2 steps=5,10,20 lr=5e-5,2e-4 scale=10 \\
        --out benchmarks/results/finetune_sweep.json
    # or explicit points (coordinate descent), one process for all of them
    python benchmarks/finetune_table.py sweep --setup ... --point steps=20,lr=2e-4 \\
        --point part=lora,lr=1e-3 --out ...
    # the final table: every method, balanced / Dirichlet / small query batches
    python benchmarks/finetune_table.py table --setup A=runs/R9A:debian \\
        --setup B=runs/R9B:wordnet_domains --episodes 600 --finetune-episodes 200 \\
        [--finetune steps=10 ...] [--methods M ...] --out benchmarks/results/finetune

``--setup NAME=TARGET:SOURCE``: a run directory (or, for ``sweep``, a config: the original
encoder needs no run) and the source whose meta-test classes are evaluated (a held-out
source: all its classes), or ``TARGET:data=FILE_OR_BUILTIN`` for a dataset outside the run
(e.g. ``runs/R9A:data=fortunes`` with ``--seq-len 64``). Prints JSON; ``table`` writes
``OUT.md`` (the table, the command, the date) and ``OUT.json``.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Query batches the transductive settings are checked on: (name, query_mix, query per class)
BATCHES = (("balanced", "balanced", 15), ("dirichlet", "dirichlet", 15),
           ("small dirichlet", "dirichlet", 2))
TRANS_METHODS = ("cosine_centroid", "cosine_centroid_trans", "cosine_centroid_names",
                 "cosine_centroid_names_trans", "meta_learned_centroid",
                 "meta_learned_centroid_trans", "finetune", "finetune_trans",
                 "finetune_names", "finetune_names_trans", "meta_learned_finetune",
                 "meta_learned_finetune_trans", "meta_learned_finetune_names",
                 "meta_learned_finetune_names_trans")


def parse_setup(spec: str) -> dict:
    name, _, rest = spec.partition("=")
    target, _, where = rest.rpartition(":")
    if not (name and target and where):
        raise SystemExit(f"--setup {spec!r}: use NAME=TARGET:SOURCE or NAME=TARGET:data=X")
    data = where[5:] if where.startswith("data=") else None
    return {"name": name, "target": target, "source": None if data else where, "data": data}


def grid_options(grid: list[str]) -> list[dict]:
    """``["part=top_k,lora", "steps=5,10"]`` -> every combination as a dict of strings."""
    keys, values = [], []
    for g in grid:
        k, _, v = g.partition("=")
        keys.append(k)
        values.append(v.split(","))
    return [dict(zip(keys, combo)) for combo in itertools.product(*values)]


def _opts(changes: dict):
    from jaxmaml.meta.finetune import FinetuneOptions

    return FinetuneOptions().replace_from_strings([f"{k}={v}" for k, v in changes.items()])


def _load(setup: dict, checkpoint: str, max_per_class: int | None = None,
          wise_alpha: float | None = None):
    import dataclasses

    from jaxmaml.run.state import initial_encoder
    from jaxmaml.run.load import resolve_target, restore_meta_params

    cfg, run_dir = resolve_target(setup["target"])
    if max_per_class:  # a smaller evaluation pool: less one-off feature computation
        cfg = cfg.replace(eval=dataclasses.replace(cfg.eval, max_per_class=max_per_class))
    if wise_alpha is not None:  # as `jaxmaml eval RUN --set train.wise_alpha=A`
        cfg = cfg.replace(train=dataclasses.replace(cfg.train, wise_alpha=wise_alpha))
    encoder = initial_encoder(cfg)
    if checkpoint == "original":  # the original encoder in the meta-learned slot too
        return cfg, run_dir, encoder, (0, {"encoder": encoder})
    return cfg, run_dir, encoder, restore_meta_params(cfg, run_dir, checkpoint, encoder)


def _evaluate(setup, loaded, settings, episodes, methods, options, seq_len):
    from jaxmaml.run.evaluate import evaluate_run

    cfg, run_dir, encoder, restored = loaded
    return evaluate_run(cfg, run_dir, data=setup["data"], source_name=setup["source"],
                        seq_len=seq_len, settings=settings, episodes=episodes,
                        methods=methods, encoder=encoder, meta_params=restored,
                        options=options)[1]


def sweep(args) -> list[dict]:
    """``finetune`` (original encoder) for every grid point, with the cosine centroid, or
    the original encoder's ``--methods`` (e.g. ``finetune_names_trans``: the options under
    the recommended setting), each method's accuracy under its own key; each row also holds
    the per-episode accuracies (``per_episode``) for paired comparisons. ``seconds``: the
    wall time of the whole point (every shot of it, compiles included)."""
    rows = []
    settings = [(args.way, s, args.query) for s in args.shot]
    methods = tuple(args.methods or ("finetune", "cosine_centroid"))
    for setup in map(parse_setup, args.setup):
        loaded = _load(setup, "original", args.max_per_class)
        for point in ([dict(kv.split("=", 1) for kv in p.split(",")) for p in args.point]
                      or grid_options(args.grid)):
            t0 = time.perf_counter()
            res = _evaluate(setup, loaded, settings, args.episodes,
                            methods,
                            {"finetune_opts": _opts(point), "finetune_episodes": args.episodes,
                             "per_episode": True}, args.seq_len)
            for r in res:
                row = {"setup": setup["name"], "point": point, "shot": r["shot"],
                       **{m: r["results"][m] for m in methods},
                       "seconds": round(time.perf_counter() - t0, 1),
                       "options": r.get("finetune"), "per_episode": r["per_episode"]}
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


def table(args) -> list[dict]:
    """Every method on balanced batches; the transductive settings also on Dirichlet and
    small Dirichlet batches (same seed: the same classes and supports). Each row keeps the
    per-episode accuracies (``per_episode``), so runs on the same episodes can be paired."""
    from jaxmaml.run.protocol import METHODS

    rows = []
    opts = {"finetune_opts": _opts(dict(a.split("=", 1) for a in args.finetune)),
            "finetune_episodes": args.finetune_episodes}
    for setup in map(parse_setup, args.setup):
        loaded = _load(setup, args.checkpoint, args.max_per_class, args.wise_alpha)
        for batch, mix, query in BATCHES:
            if batch not in args.batches:
                continue
            methods = METHODS if batch == "balanced" else TRANS_METHODS
            if args.methods:  # a subset (e.g. the frozen ones: no fine-tuning to wait for)
                methods = [m for m in methods if m in args.methods]
            query = args.query if batch != "small dirichlet" else query  # small: its own
            t0 = time.perf_counter()
            res = _evaluate(setup, loaded, [(args.way, s, query) for s in args.shot],
                            args.episodes, methods,
                            {**opts, "query_mix": mix, "per_episode": True}, args.seq_len)
            for r in res:
                rows.append({**r, "setup": setup["name"], "batch": batch,
                             "seconds": round(time.perf_counter() - t0, 1),
                             "transductive_gains": transductive_gains(r["per_episode"])})
                print(json.dumps(rows[-1]), flush=True)
    return rows


def transductive_gains(accs: dict) -> dict:
    """``{trans_method: {"vs": its inductive method, "mean", "ci95", "episodes"}}``: what
    labelling the batch together adds, paired per episode (the protocol pairs a method
    with the original encoder instead)."""
    from jaxmaml.run.protocol import paired_difference

    return {m: {"vs": m.removesuffix("_trans"), **paired_difference(
        np.asarray(a), np.asarray(accs[m.removesuffix("_trans")]))}
        for m, a in accs.items() if m.endswith("_trans") and m.removesuffix("_trans") in accs}


def markdown(rows: list[dict], command: str) -> str:
    """A table per (setup, batch): a row per method, a column per shot, and the gains."""
    from jaxmaml.run.protocol import METHOD_LABELS

    out = ["# Test-time fine-tuning, class names and transduction", "",
           f"Measured {datetime.date.today().isoformat()} with `{command}`. Mean ± 95% CI over "
           "the episodes (the count after each cell); gains are paired per episode.", ""]
    for (setup, batch), group in itertools.groupby(rows, lambda r: (r["setup"], r["batch"])):
        group = list(group)
        shots = [r["shot"] for r in group]
        out += [f"## {setup}: {group[0]['data']} ({batch} query batches, "
                f"{group[0]['way']}-way, {group[0]['way'] * group[0]['query']} queries)", "",
                "| method | " + " | ".join(f"{s}-shot" for s in shots) + " | paired gain (vs) |",
                "|---" * (2 + len(shots)) + "|"]
        for m in group[0]["results"]:
            cells = [f"{r['results'][m]['mean']:.3f} ± {r['results'][m]['ci95']:.3f} "
                     f"({r['results'][m]['episodes']})" for r in group]
            gains = [r["gains"].get(m) for r in group]
            g = " / ".join("-" if x is None else f"{100 * x['mean']:+.1f} ± "
                           f"{100 * x['ci95']:.1f}" for x in gains)
            vs = next((x["vs"] for x in gains if x), "")
            out.append(f"| {METHOD_LABELS[m]} (`{m}`) | " + " | ".join(cells)
                       + f" | {g} {f'({vs})' if vs else ''} |")
        trans = [r.get("transductive_gains", {}) for r in group]
        for m in trans[0]:
            g = " / ".join(f"{100 * t[m]['mean']:+.1f} ± {100 * t[m]['ci95']:.1f}"
                           for t in trans if m in t)
            out.append(f"| transductive − inductive (`{m}` − `{trans[0][m]['vs']}`) | "
                       + " | ".join("" for _ in group) + f" | {g} |")
        best = [r["gains"].get("best_setting") for r in group]
        if all(best):
            out.append("| best setting vs best of linear probe / fine-tuning | "
                       + " | ".join(f"`{b['method']}` vs `{b['vs']}`: {100 * b['mean']:+.1f} "
                                    f"± {100 * b['ci95']:.1f}" for b in best) + " | |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None, command: str | None = None) -> int:
    """``command``: what the results record as their command (default: this script's own;
    a wrapper that patches the scoring passes its full command line)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=("sweep", "table"))
    p.add_argument("--setup", action="append", required=True)
    p.add_argument("--grid", nargs="+", default=["steps=10"])
    p.add_argument("--point", action="append", default=[],
                   help="sweep: one point KEY=V,KEY=V (repeatable; replaces --grid)")
    p.add_argument("--finetune", nargs="*", default=[], help="KEY=VALUE fine-tuning options")
    p.add_argument("--checkpoint", default="best")
    p.add_argument("--wise-alpha", type=float, help="table: the run's model at this "
                   "train.wise_alpha (default: the run's)")
    p.add_argument("--methods", nargs="+", help="table: only these methods (default: all); "
                   "sweep: the original encoder's methods scored at each point (default: "
                   "finetune cosine_centroid)")
    p.add_argument("--seq-len", type=int)
    p.add_argument("--way", type=int, default=5)
    p.add_argument("--shot", type=int, nargs="+", default=[1, 5])
    p.add_argument("--query", type=int, default=15, help="queries per class (table: of the "
                   "balanced and Dirichlet batches; small Dirichlet batches have 2)")
    p.add_argument("--episodes", type=int, default=600)
    p.add_argument("--finetune-episodes", type=int, default=200)
    p.add_argument("--batches", nargs="+", default=[b[0] for b in BATCHES],
                   choices=[b[0] for b in BATCHES], help="query batches (table; default all)")
    p.add_argument("--max-per-class", type=int, help="evaluation pool per class "
                   "(default: the run's eval.max_per_class)")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    if args.methods:
        from jaxmaml.run.protocol import METHODS

        if unknown := sorted(set(args.methods) - set(METHODS)):
            p.error(f"--methods: unknown {', '.join(unknown)} (jaxmaml eval --help lists them)")
        if args.mode == "sweep" and (meta := [m for m in args.methods
                                              if m.startswith("meta_learned")]):
            p.error(f"--methods {' '.join(meta)}: a sweep scores the original encoder only")
    if args.wise_alpha is not None and not args.wise_alpha > 0:
        p.error(f"--wise-alpha {args.wise_alpha}: must be > 0 (1.0: the meta-learned update)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    rows = sweep(args) if args.mode == "sweep" else table(args)
    command = command or "python benchmarks/finetune_table.py " + " ".join(
        sys.argv[1:] if argv is None else argv)
    out = Path(args.out)
    out = out.with_suffix("") if out.suffix in (".json", ".md") else out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_name(out.name + ".json").write_text(
        json.dumps({"command": command, "rows": rows}, indent=1) + "\n")
    if args.mode == "table":
        out.with_name(out.name + ".md").write_text(markdown(rows, command) + "\n")
    return 0


def wrapped_main(script: str, argv: list[str] | None, rest: list[str]) -> int:
    """:func:`main` run by a wrapper script that patched the scoring (``centering.py``,
    ``laplacian.py``, ...): ``rest`` are this script's arguments (after the wrapper's
    ``--``), and the results record the wrapper's own command line, ``argv`` included."""
    import shlex

    rest = rest[1:] if rest[:1] == ["--"] else rest
    argv = sys.argv[1:] if argv is None else argv
    return main(rest, shlex.join(["python", f"benchmarks/{script}", *argv]))


if __name__ == "__main__":
    sys.exit(main())
