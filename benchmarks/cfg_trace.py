"""How far a run's config travels: the modules whose functions receive the
:class:`~jaxmaml.run.config.ExperimentConfig` on one real ``jaxmaml train`` and ``jaxmaml eval``.

    python benchmarks/cfg_trace.py [--out benchmarks/results/cfg_trace.json]

A Python profile hook records every call whose frame holds the config object itself (under
any name) among its arguments, and for each command prints, as JSON: the distinct
``jaxmaml`` modules such functions live in (``modules``, in order of first visit), how many
(``visited``), and how often the trail re-enters a module it had left (``re_entries``:
``train`` -> ``data`` -> ``train`` counts one); ``*_sections`` follow each section of
the config too (``cfg.meta``, the :class:`~jaxmaml.meta.config.MetaConfig`, is what the
library's core takes, so it reaches ``meta/`` by design). Runs ``configs/tiny.yaml`` for 2 meta-steps
in a temporary directory (about a minute on a CPU).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def trace_cfg(fn, cfg, *args, sections: bool = False, **kwargs) -> dict:
    """Run ``fn(cfg, *args, **kwargs)`` and follow ``cfg`` (see the module docstring);
    ``sections``: also follow each of its sections (``cfg.data``, ``cfg.meta``, ...)."""
    trail: list[str] = []
    followed = [cfg] + ([getattr(cfg, f) for f in ("model", "data", "meta", "optim", "train",
                                                   "eval", "parallel")] if sections else [])

    def hook(frame, event, arg):
        if event != "call":
            return
        module = frame.f_globals.get("__name__", "")
        if not module.startswith("jaxmaml"):
            return
        code = frame.f_code
        names = code.co_varnames[:code.co_argcount + code.co_kwonlyargcount]
        if any(frame.f_locals.get(n) is x for n in names for x in followed):
            if not trail or trail[-1] != module:
                trail.append(module)

    sys.setprofile(hook)
    try:
        fn(cfg, *args, **kwargs)
    finally:
        sys.setprofile(None)
    modules = list(dict.fromkeys(trail))
    return {"modules": modules, "visited": len(modules),
            "re_entries": len(trail) - len(modules), "trail": trail}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", help="also write the JSON here")
    args = ap.parse_args(argv)
    from jaxmaml.run.config_load import load_config
    from jaxmaml.run.evaluate import evaluate_target
    from jaxmaml.run.train import train

    cfg = load_config(ROOT / "configs" / "tiny.yaml", ["train.steps=2", "train.eval_every=0",
                                                       "train.save_every=0",
                                                       "eval.episodes=4"])
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        out = {"train": trace_cfg(train, cfg, run_dir, progress=False),
               "eval": trace_cfg(evaluate_target, cfg, run_dir, settings=[(2, 1, 2)])}
    with tempfile.TemporaryDirectory() as tmp:  # the same with the sections followed too
        run_dir = Path(tmp) / "run"
        out["train_sections"] = trace_cfg(train, cfg, run_dir, sections=True, progress=False)
        out["eval_sections"] = trace_cfg(evaluate_target, cfg, run_dir, sections=True,
                                         settings=[(2, 1, 2)])
    text = json.dumps(out, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
