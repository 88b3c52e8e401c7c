"""How hard is a text source for the frozen encoder? The cosine-centroid baseline (and any
other evaluation method) on N-way K-shot episodes over a built-in source's classes.

    python benchmarks/source_baselines.py chatterbot appstream pydocs pyhowto \
        [--config configs/quickstart.yaml] [--shots 1 5] [--episodes 200] [--seq-len 64] \
        [--max-classes 100] [--out benchmarks/results/source_baselines.jsonl]

Without ``--max-classes`` a source's row is what ``jaxmaml eval CONFIG --checkpoint init
--data NAME --methods cosine_centroid --seq-len 64 ...`` reports (the same pool, episodes
and seed); ``--max-classes M`` first draws M of its classes (seeded by ``eval.seed``), for a
source with too many classes to embed on a CPU (``docs_smlmt``: 925). A source whose 5-way
5-shot accuracy is near 1 gives the meta-learner nothing to learn; near chance (1/way),
nothing it can. Appends one JSON line per (source, setting) to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jaxmaml.data.sources import TextDataset  # noqa: E402
from jaxmaml.run.config_load import load_config  # noqa: E402
from jaxmaml.run.data import cap_per_class, load_text, tokenize
from jaxmaml.run.state import initial_encoder
from jaxmaml.run.load import restore_meta_params  # noqa: E402
from jaxmaml.run.protocol import evaluate  # noqa: E402


def some_classes(ds: TextDataset, max_classes: int | None, seed: int) -> TextDataset:
    """``ds`` restricted to ``max_classes`` of its classes (seeded choice, sorted names)."""
    if max_classes is None or max_classes >= len(ds.class_names):
        return ds
    rng = np.random.default_rng(seed)
    keep = sorted(rng.choice(len(ds.class_names), max_classes, replace=False))
    new_id = {old: new for new, old in enumerate(keep)}
    rows = [i for i, y in enumerate(ds.labels) if int(y) in new_id]
    return TextDataset([ds.texts[i] for i in rows],
                       np.array([new_id[int(ds.labels[i])] for i in rows], np.int32),
                       tuple(ds.class_names[k] for k in keep),
                       {**ds.info, "max_classes": max_classes})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sources", nargs="+")
    p.add_argument("--config", default=str(ROOT / "configs" / "quickstart.yaml"))
    p.add_argument("--way", type=int, default=5)
    p.add_argument("--shots", type=int, nargs="+", default=[1, 5])
    p.add_argument("--query", type=int, default=15)
    p.add_argument("--episodes", type=int, default=200)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--max-classes", type=int, default=None)
    p.add_argument("--methods", nargs="+", default=["cosine_centroid"])
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" /
                                        "source_baselines.jsonl"))
    args = p.parse_args(argv)

    cfg = load_config(args.config, [f"data.seq_len={args.seq_len}"])
    encoder = initial_encoder(cfg)
    _, meta_params = restore_meta_params(cfg, "", "init", encoder)
    settings = [(args.way, k, args.query) for k in args.shots]
    for name in args.sources:
        ds = some_classes(load_text(cfg, name), args.max_classes, cfg.eval.seed)
        data = tokenize(cfg, cap_per_class(ds, cfg.eval.max_per_class, cfg.eval.seed))
        rows = evaluate(meta_params, cfg.meta, data, list(data.class_names), settings,
                        episodes=args.episodes, seed=cfg.eval.seed, methods=args.methods,
                        pretrained_params=encoder, data_name=name, split="all",
                        max_per_class=cfg.eval.max_per_class)
        with open(args.out, "a", encoding="utf-8") as f:
            for row in rows:
                row = {**row, "seq_len": args.seq_len, "classes": len(data.class_names),
                       "max_classes": args.max_classes}
                f.write(json.dumps(row) + "\n")
                res = "  ".join(f"{m} {v['mean']:.4f} ± {v['ci95']:.4f}"
                                for m, v in row["results"].items())
                print(f"{name} {row['way']}-way {row['shot']}-shot ({row['classes']} "
                      f"classes): {res}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
