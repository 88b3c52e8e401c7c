"""Two runs' encoders under a cosine centroid, paired on the same episodes, per source.

    python benchmarks/compare_runs.py NEW_RUN OLD_RUN [--checkpoint best] [--old-checkpoint best]
                                   [--episodes 600] [--set key=value ...]

Both runs must share their data sections (the same sources, class split and evaluation
pool; checked), so every episode is the same for both. For each source of NEW_RUN's
``data.sources`` (or its ``data.source``) and each ``eval.settings`` entry, prints one JSON
line: both encoders' accuracies (each run's model as ``jaxmaml eval`` loads it,
``train.wise_alpha`` included) and the per-episode difference NEW - OLD in points with its
95% CI. ``--set`` overrides NEW_RUN's config (e.g. ``--set train.wise_alpha=0.5``).

It is :func:`jaxmaml.run.evaluate.evaluate_target` (``jaxmaml eval``) with OLD_RUN's encoder in
the place of the pretrained one: ``cosine_centroid`` is then OLD under a cosine centroid,
``meta_learned_centroid`` NEW, and ``gains.meta_learned_centroid`` their paired difference.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("new_run")
    p.add_argument("old_run")
    p.add_argument("--checkpoint", default="best")
    p.add_argument("--old-checkpoint", default="best")
    p.add_argument("--episodes", type=int)
    p.add_argument("--set", dest="overrides", action="append", default=[])
    args = p.parse_args(argv)

    from jaxmaml.run.config import ConfigError, to_dict
    from jaxmaml.run.evaluate import evaluate_target
    from jaxmaml.run.state import initial_encoder
    from jaxmaml.run.load import restore_meta_params, run_config

    new_cfg, old_cfg = run_config(args.new_run, args.overrides), run_config(args.old_run)
    if to_dict(new_cfg)["data"] != to_dict(old_cfg)["data"]:
        raise ConfigError("the two runs have different data sections, so their episodes "
                          "differ; compare runs trained on the same sources and split.")
    encoder = initial_encoder(new_cfg)
    new = restore_meta_params(new_cfg, args.new_run, args.checkpoint, encoder)
    _, old = restore_meta_params(old_cfg, args.old_run, args.old_checkpoint, encoder)
    _, rows = evaluate_target(new_cfg, args.new_run, meta_params=new, encoder=old["encoder"],
                              episodes=args.episodes,
                              methods=["meta_learned_centroid", "cosine_centroid"])
    for r in rows:
        g = r["gains"]["meta_learned_centroid"]
        print(json.dumps({"data": r["data"], "domain": r.get("domain", "in-domain"),
                          "way": r["way"], "shot": r["shot"], "episodes": r["episodes"],
                          "new": r["results"]["meta_learned_centroid"]["mean"],
                          "old": r["results"]["cosine_centroid"]["mean"],
                          "new_minus_old_points": round(100 * g["mean"], 2),
                          "ci95_points": round(100 * g["ci95"], 2)}))
    return 0


if __name__ == "__main__":
    from jaxmaml.run.checkpoint import CheckpointError
    from jaxmaml.run.config import ConfigError

    try:
        sys.exit(main())
    except (ConfigError, CheckpointError) as e:  # bad input: one line, exit 2
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
