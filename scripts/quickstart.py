"""The bundled demo (`make demo`): meta-train -> evaluate -> export, then a before/after table.

    python scripts/quickstart.py [--config configs/quickstart.yaml] [--out runs/quickstart]
                                 [--episodes 600] [--set key=value ...]

1. ``jaxmaml train`` on the config (resumes if the run directory has checkpoints);
2. ``jaxmaml eval`` 5-way 1-shot and 5-shot on the meta-test classes (600 episodes each):
   nearest-centroid on the frozen pretrained encoder, the pretrained init fine-tuned with the
   same inner loop, and the meta-learned init, with 95% confidence intervals;
3. ``jaxmaml export`` to ``RUN_DIR/hf_model`` (a Hugging Face directory with a model card).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METHODS = (("nearest_centroid", "frozen encoder, nearest centroid"),
           ("pretrained_finetune", "pretrained init + inner loop"),
           ("meta_learned", "meta-learned init + inner loop"))


def run(argv: list[str]) -> str:
    """Run ``jaxmaml ARGV`` in-process; stdout is returned (and echoed unless JSON)."""
    from jaxmaml.cli import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(argv)
    if code:
        sys.stdout.write(buf.getvalue())
        raise SystemExit(f"`jaxmaml {' '.join(argv)}` failed with exit code {code}")
    return buf.getvalue()


def table(results: list[dict]) -> str:
    head = f"{'method':<36}" + "".join(f"{r['way']}-way {r['shot']}-shot".rjust(20)
                                       for r in results)
    lines = [head, "-" * len(head)]
    for key, label in METHODS:
        cells = "".join(f"{r['results'][key]['mean']:.3f} ± {r['results'][key]['ci95']:.3f}"
                        .rjust(20) for r in results)
        lines.append(f"{label:<36}{cells}")
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
    results = json.loads(run(["eval", str(out), "--json", "--way", str(args.way), "--shot", "1", "5",
                              "--query", str(args.query), "--episodes", str(args.episodes)]))
    t2 = time.perf_counter()
    print(f"[3/3] exporting to {out / 'hf_model'}", flush=True)
    print(run(["export", str(out), str(out / "hf_model"), "--overwrite"]).strip())
    t3 = time.perf_counter()

    split = json.loads((out / "split.json").read_text())
    print(f"\nFew-shot accuracy on {len(split['test'])} unseen meta-test classes of "
          f"{results[0]['data']} (mean ± 95% CI, {args.episodes} episodes, {args.query} query/class):\n")
    print(table(results))
    print(f"\ntimes: train {t1 - t0:.0f} s, eval {t2 - t1:.0f} s, export {t3 - t2:.0f} s; "
          f"learning curves: {out / 'learning_curves.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
