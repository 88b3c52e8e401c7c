"""The bundled demo (`make demo`): meta-train -> evaluate -> export, then a before/after table.

    python benchmarks/quickstart.py [--config configs/quickstart.yaml] [--out runs/quickstart]
                                 [--episodes 600] [--finetune-episodes 40] [--set key=value ...]

1. ``jaxmaml train`` on the config (resumes if the run directory has checkpoints);
2. evaluation 5-way 1-shot and 5-shot on the meta-test classes (a multi-source config: on
   each training source's meta-test classes and on each held-out source, one table per
   source; 600 episodes each, the same episodes for every method, 95% confidence
   intervals): the meta-learned init + its inner loop, the meta-learned encoder as a plain
   sentence encoder (cosine centroid and linear probe), and the baselines on the original
   encoder: cosine centroid, linear probe, the pretrained init + the same inner loop
   (linear Proto-MAML head, and a cosine head), and the weak squared-euclidean centroid.
   "+N points" is against the best baseline; the encoder lines compare the meta-learned
   and the original encoder under the same classifier;
3. on a held-out source, the recommended setting (test-time fine-tuning + class names +
   transductive) from the meta-learned and from the original init, against the linear
   probe, the cosine centroid and plain fine-tuning, on the same ``--finetune-episodes``
   episodes, paired;
4. ``jaxmaml export`` to ``RUN_DIR-hf`` beside the run (a Hugging Face directory with a model
   card; an export may not live inside its run directory).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def table(results: list[dict], methods=None, gain_lines=None) -> str:
    """Methods as rows, settings as columns, then paired gains: by default the meta-learned
    init vs the best baseline and the meta-learned vs the original encoder; with
    ``gain_lines``, those gains, then the best setting vs the best of the linear probe and
    fine-tuning the original encoder (picked on these episodes: optimistic)."""
    from jaxmaml.run.protocol import METHOD_LABELS, METHODS, best_baseline, gain_text

    keys = [k for k in methods or METHODS if all(k in r["results"] for r in results)]
    width = max([40] + [len(METHOD_LABELS[k]) + 1 for k in keys])
    head = f"{'method':<{width}}" + "".join(f"{r['way']}-way {r['shot']}-shot".rjust(20)
                                            for r in results)
    lines = [head, "-" * len(head)]
    for key in keys:
        cells = "".join(f"{r['results'][key]['mean']:.3f} ± {r['results'][key]['ci95']:.3f}"
                        .rjust(20) for r in results)
        lines.append(f"{METHOD_LABELS[key]:<{width}}{cells}")
    lines.append("-" * len(head))
    for method, label in gain_lines or (
            ("meta_learned", "meta-learned vs best baseline"),
            ("meta_learned_centroid", "meta-learned encoder vs original"),
            ("meta_learned_probe", "  the same, both under a linear probe")):
        gains = [gain_text(r, method) for r in results]  # ± the paired 95% CI
        if method == "meta_learned" or any(gains):  # the encoder lines need gains
            lines.append(f"{label:<{width}}" + "".join(("-" if g is None else f"{g} pts")
                                                       .rjust(20) for g in gains))
    if gain_lines is None:
        best = {best_baseline(r["results"])[0] for r in results if best_baseline(r["results"])}
        lines.append(f"(best baseline: {', '.join(METHOD_LABELS[b] for b in sorted(best))})")
    else:
        settings = [r["gains"].get("best_setting") for r in results]
        lines.append(f"{'best setting vs probe / fine-tuning':<{width}}" + "".join(
            ("-" if b is None else f"{100 * b['mean']:+.1f} ± {100 * b['ci95']:.1f} pts")
            .rjust(20) for b in settings))
        names = sorted({b["method"] for b in settings if b})
        lines.append(f"(best setting: {', '.join(names)})")
    return "\n".join(lines)


# Step 4: the recommended setting (test-time fine-tuning + class names + transductive) on
# the held-out source, from the meta-learned and from the original init, against the
# practitioner's baselines on the same episodes.
FINETUNE_METHODS = ("linear_probe", "cosine_centroid", "finetune", "meta_learned_finetune",
                    "finetune_names_trans", "meta_learned_finetune_names_trans")
FINETUNE_GAINS = (("meta_learned_finetune", "meta-learned vs original, fine-tuned"),
                  ("meta_learned_finetune_names_trans", "  the same, + names + transductive"))


def finetune_table(out: Path, heldout: str, settings, episodes: int) -> str:
    from jaxmaml.run.evaluate import evaluate_run
    from jaxmaml.run.load import run_config

    _, rows = evaluate_run(run_config(out), out, source_name=heldout, settings=settings,
                           episodes=episodes, methods=FINETUNE_METHODS,
                           options={"finetune_episodes": episodes})
    return table(rows, FINETUNE_METHODS, FINETUNE_GAINS)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(ROOT / "configs" / "quickstart.yaml"))
    p.add_argument("--out", default=str(ROOT / "runs" / "quickstart"))
    p.add_argument("--episodes", type=int, default=600)
    p.add_argument("--way", type=int, default=5)
    p.add_argument("--query", type=int, default=15)
    p.add_argument("--finetune-episodes", type=int, default=40,
                   help="episodes of the fine-tuning table on the held-out source (0: skip)")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sets = [x for o in args.overrides for x in ("--set", o)]
    out = Path(args.out)

    t0 = time.perf_counter()
    print(f"[1/4] meta-training {args.config} -> {out}", flush=True)
    from jaxmaml.cli import main as cli_main
    if cli_main(["train", args.config, "--out", str(out), *sets]):
        return 1
    t1 = time.perf_counter()
    print(f"[2/4] evaluating on meta-test classes ({args.episodes} episodes per setting)",
          flush=True)
    from jaxmaml.run.config import ConfigError
    from jaxmaml.run.evaluate import evaluate_target
    from jaxmaml.run.load import run_config
    settings = [(args.way, 1, args.query), (args.way, 5, args.query)]
    try:  # a multi-source run: each source on its own, the held-out ones included
        _, results = evaluate_target(run_config(out), out, settings=settings,
                                     episodes=args.episodes, record=True)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    heldout = next((r["data"] for r in results if r.get("domain") == "held-out"), None)
    finetune = None
    if heldout and args.finetune_episodes:
        print(f"[3/4] test-time fine-tuning on {heldout} ({args.finetune_episodes} episodes "
              "per setting)", flush=True)
        finetune = finetune_table(out, heldout, settings, args.finetune_episodes)
    t2 = time.perf_counter()
    export_dir = out.with_name(f"{out.name}-hf")
    print(f"[4/4] exporting to {export_dir}", flush=True)
    if cli_main(["export", str(out), str(export_dir), "--overwrite"]):
        return 1
    t3 = time.perf_counter()

    for data in dict.fromkeys(r["data"] for r in results):  # one table per source, in order
        rows = [r for r in results if r["data"] == data]
        what = (f"{rows[0]['classes']} classes of {data}, a source held out from meta-training"
                if rows[0].get("domain") == "held-out" else
                f"{rows[0]['classes']} unseen meta-test classes of {data}")
        print(f"\nFew-shot accuracy on {what} (mean ± 95% CI, {args.episodes} episodes, "
              f"{args.query} query/class):\n")
        print(table(rows))
    if finetune:
        print(f"\nThe recommended setting on {heldout} (held out): test-time fine-tuning with "
              f"the class names, labelling the queries together (transductive); the same "
              f"{args.finetune_episodes} episodes for every method, paired gains:\n")
        print(finetune)
    print(f"\ntimes: train {t1 - t0:.0f} s, eval {t2 - t1:.0f} s, export {t3 - t2:.0f} s; "
          f"learning curves: {out / 'learning_curves.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
