"""The bundled demo (`make demo`): meta-train -> evaluate -> export, then a before/after table.

    python benchmarks/quickstart.py [--config configs/quickstart.yaml] [--out runs/quickstart]
                                 [--episodes 600] [--set key=value ...]

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
3. ``jaxmaml export`` to ``RUN_DIR-hf`` beside the run (a Hugging Face directory with a model
   card; an export may not live inside its run directory).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def table(results: list[dict]) -> str:
    """Methods as rows, settings as columns, then the meta-learned init vs the best baseline."""
    from jaxmaml.run.protocol import METHOD_LABELS, METHODS, best_baseline, gain_text

    head = f"{'method':<40}" + "".join(f"{r['way']}-way {r['shot']}-shot".rjust(20)
                                       for r in results)
    lines = [head, "-" * len(head)]
    for key in METHODS:
        if not all(key in r["results"] for r in results):
            continue
        cells = "".join(f"{r['results'][key]['mean']:.3f} ± {r['results'][key]['ci95']:.3f}"
                        .rjust(20) for r in results)
        lines.append(f"{METHOD_LABELS[key]:<40}{cells}")
    lines.append("-" * len(head))
    for method, label in (("meta_learned", "meta-learned vs best baseline"),
                          ("meta_learned_centroid", "meta-learned encoder vs original"),
                          ("meta_learned_probe", "  the same, both under a linear probe")):
        gains = [gain_text(r, method) for r in results]  # ± the paired 95% CI
        if method == "meta_learned" or any(gains):  # the encoder lines need gains
            lines.append(f"{label:<40}" + "".join(("-" if g is None else f"{g} pts").rjust(20)
                                                  for g in gains))
    best = {best_baseline(r["results"])[0] for r in results if best_baseline(r["results"])}
    lines.append(f"(best baseline: {', '.join(METHOD_LABELS[b] for b in sorted(best))})")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(ROOT / "configs" / "quickstart.yaml"))
    p.add_argument("--out", default=str(ROOT / "runs" / "quickstart"))
    p.add_argument("--episodes", type=int, default=600)
    p.add_argument("--way", type=int, default=5)
    p.add_argument("--query", type=int, default=15)
    p.add_argument("--set", dest="overrides", action="append", default=[])
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sets = [x for o in args.overrides for x in ("--set", o)]
    out = Path(args.out)

    t0 = time.perf_counter()
    print(f"[1/3] meta-training {args.config} -> {out}", flush=True)
    from jaxmaml.cli import main as cli_main
    if cli_main(["train", args.config, "--out", str(out), *sets]):
        return 1
    t1 = time.perf_counter()
    print(f"[2/3] evaluating on meta-test classes ({args.episodes} episodes per setting)",
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
    t2 = time.perf_counter()
    export_dir = out.with_name(f"{out.name}-hf")
    print(f"[3/3] exporting to {export_dir}", flush=True)
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
    print(f"\ntimes: train {t1 - t0:.0f} s, eval {t2 - t1:.0f} s, export {t3 - t2:.0f} s; "
          f"learning curves: {out / 'learning_curves.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
