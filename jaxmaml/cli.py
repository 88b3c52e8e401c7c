"""``jaxmaml train | eval | export | predict | data | bench``: argument parsing only.

Logic lives in importable modules (:mod:`jaxmaml.train`, :mod:`jaxmaml.evaluate`,
:mod:`jaxmaml.export`); heavy imports are deferred so ``jaxmaml --help`` is instant.
Exit codes: 0 success, 1 a run failed (e.g. diverged), 2 bad input (config, paths, flags).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from jaxmaml.config import ConfigError, ExperimentConfig, from_dict, load_config


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="jaxmaml", description="Meta-learning for BERT text "
                                "encoders (MAML family) in JAX.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def overrides(sp):
        sp.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a config key (YAML value), e.g. "
                        "--set train.steps=100; repeatable")

    t = sub.add_parser("train", help="meta-train a config (resumes an existing RUN_DIR)")
    t.add_argument("config", help="experiment YAML, e.g. configs/quickstart.yaml")
    overrides(t)
    t.add_argument("--out", help="run directory (default: train.out or runs/<config name>)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")

    e = sub.add_parser("eval", help="few-shot evaluation: meta-learned init vs baselines")
    e.add_argument("target", help="a run directory, or a config (evaluates its run directory)")
    overrides(e)
    e.add_argument("--out", help="run directory of a CONFIG target")
    e.add_argument("--checkpoint", default="best",
                   help="best (default; latest if no meta-val ran), latest, a step number, "
                   "or init (the untrained initialization)")
    e.add_argument("--data", help="evaluate on all classes of this csv/json/jsonl/parquet "
                   "file (or hub dataset) instead of the run's meta-test classes")
    e.add_argument("--text-column", help="text column of --data (default: data.text_column)")
    e.add_argument("--label-column", help="label column of --data (default: data.label_column)")
    e.add_argument("--way", type=int, help="classes per episode (default: meta.way)")
    e.add_argument("--shot", type=int, nargs="+", help="support examples per class; several "
                   "values give several settings (default: eval.settings)")
    e.add_argument("--query", type=int, help="query examples per class")
    e.add_argument("--episodes", type=int, help="episodes per setting (default: eval.episodes)")
    e.add_argument("--methods", nargs="+", help="subset of meta_learned pretrained_finetune "
                   "nearest_centroid (default: all)")
    e.add_argument("--json", action="store_true", help="print JSON (one object per setting; "
                   "a list for several)")

    x = sub.add_parser("export", help="write a Hugging Face model directory with a model card")
    x.add_argument("run_dir")
    x.add_argument("out_dir")
    x.add_argument("--checkpoint", default="best", help="best (default), latest or a step")
    x.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT_DIR")

    pr = sub.add_parser("predict", help="adapt a model to a labelled support file and "
                        "label a file of texts")
    pr.add_argument("model", help="a run directory or an export directory")
    pr.add_argument("--support", required=True, help="labelled examples of your task "
                    "(csv/tsv/json/jsonl/parquet)")
    pr.add_argument("--texts", required=True, help="the texts to label (same formats)")
    pr.add_argument("--out", required=True, help="output .csv or .jsonl: the --texts rows "
                    "plus a prediction column")
    pr.add_argument("--text-column", default="text", help="text column of both files "
                    "(default: text)")
    pr.add_argument("--label-column", default="label", help="label column of --support "
                    "(default: label)")
    pr.add_argument("--proba", action="store_true", help="add a proba_<class> column per class")
    pr.add_argument("--checkpoint", default="best", help="of a run directory: best (default), "
                    "latest or a step")
    pr.add_argument("--seq-len", type=int, help="tokens per text (default: the model's)")
    pr.add_argument("--no-progress", action="store_true", help="no progress bar")

    d = sub.add_parser("data", help="print a config's dataset statistics and class split")
    d.add_argument("config")
    overrides(d)
    d.add_argument("--json", action="store_true")

    sub.add_parser("bench", help="throughput/memory benchmarks (see jaxmaml bench --help)",
                   add_help=False)
    return p


# ---------------------------------------------------------------------------- helpers
def default_run_dir(cfg: ExperimentConfig) -> Path:
    return Path(cfg.train.out or Path("runs") / cfg.name)


def _resolve_target(target: str, overrides: list[str], out: str | None
                    ) -> tuple[ExperimentConfig, Path]:
    """(config, run_dir) of a run directory or a config file."""
    import yaml

    path = Path(target)
    if path.is_dir():
        cfg_file = path / "config.yaml"
        if not cfg_file.exists():
            raise ConfigError(f"{path} is not a run directory (no config.yaml); pass a run "
                              "directory written by `jaxmaml train` or a config file.")
        from jaxmaml.config import apply_overrides
        return from_dict(apply_overrides(yaml.safe_load(cfg_file.read_text()), overrides)), path
    cfg = load_config(path, overrides)
    return cfg, Path(out) if out else default_run_dir(cfg)


def _restore(cfg: ExperimentConfig, run_dir: Path, which: str, encoder):
    """(step, meta_params) of checkpoint ``which`` (``init``: step 0, untrained)."""
    from jaxmaml.loading import restore_meta_params

    return restore_meta_params(cfg, run_dir, which, encoder)


def format_table(result: dict, step: int) -> str:
    """A readable table of one evaluation setting."""
    head = (f"{result['way']}-way {result['shot']}-shot, {result['query']} query/class, "
            f"{result['episodes']} episodes, {result['split']} of {result['data']} "
            f"(checkpoint step {step})")
    lines = [head, f"  {'method':<22}{'accuracy':>10}{'95% CI':>10}"]
    for method, r in result["results"].items():
        lines.append(f"  {method:<22}{r['mean']:>10.4f}{'± ' + format(r['ci95'], '.4f'):>10}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- commands
def cmd_train(args) -> int:
    from jaxmaml import parallel
    from jaxmaml.train import train

    parallel.initialize_distributed()
    cfg = load_config(args.config, args.overrides)
    run_dir = Path(args.out) if args.out else default_run_dir(cfg)
    result = train(cfg, run_dir, progress=not args.no_progress)
    if parallel.is_main_process():
        best = ("" if result.best_val_accuracy is None else
                f"; best meta-val accuracy {result.best_val_accuracy:.4f} at step "
                f"{result.best_step}")
        print(f"trained {cfg.name} to step {result.final_step} in {run_dir}{best}")
    return 0


def _update_eval_file(run_dir: Path, rows: list[dict]) -> None:
    from jaxmaml.experiment import write_json
    from jaxmaml.export import EVAL_FILE

    f = run_dir / EVAL_FILE
    old = json.loads(f.read_text()) if f.exists() else []
    key = lambda r: (r["checkpoint_step"], r["data"], r["split"], r["way"], r["shot"],  # noqa: E731
                     r["query"], r["episodes"])
    new_keys = {key(r) for r in rows}
    write_json(f, [r for r in old if key(r) not in new_keys] + rows)


def cmd_eval(args) -> int:
    from jaxmaml.evaluate import METHODS, evaluate
    from jaxmaml.experiment import initial_encoder, load_data, load_text, tokenize

    cfg, run_dir = _resolve_target(args.target, args.overrides, args.out)
    methods = tuple(args.methods or METHODS)
    encoder = initial_encoder(cfg)
    step, meta_params = _restore(cfg, run_dir, args.checkpoint, encoder)
    if args.data:
        data = tokenize(cfg, load_text(cfg, args.data, args.text_column, args.label_column))
        classes, split_name, data_name = list(data.class_names), "all", args.data
    else:
        data, split = load_data(cfg)
        classes, split_name, data_name = split["test"], "meta_test", cfg.data.source
    if args.way or args.shot or args.query:
        way = args.way or cfg.meta.way
        shots = args.shot or sorted({s for _, s, _ in cfg.eval.settings})
        query = args.query or cfg.eval.settings[0][2]
        settings = [(way, s, query) for s in shots]
    else:
        settings = list(cfg.eval.settings)
    episodes = args.episodes or cfg.eval.episodes
    if episodes < 2:
        raise ConfigError(f"--episodes {episodes}: need at least 2 for a confidence interval.")
    for way, _, _ in settings:
        if way > len(classes):
            raise ConfigError(f"{way}-way episodes need {way} classes but {split_name} of "
                              f"{data_name} has {len(classes)}; lower --way.")
    try:
        results = evaluate(meta_params, cfg.meta, data, classes, settings, episodes=episodes,
                           seed=cfg.eval.seed, methods=methods, pretrained_params=encoder,
                           data_name=data_name, split=split_name,
                           max_per_class=cfg.eval.max_per_class)
    except ValueError as e:  # settings the data cannot supply, unknown methods
        raise ConfigError(f"cannot evaluate: {e}") from e
    if run_dir.is_dir() and args.checkpoint != "init":
        _update_eval_file(run_dir, [{**r, "checkpoint_step": step} for r in results])
    if args.json:
        print(json.dumps(results[0] if len(results) == 1 else results))
    else:
        print("\n\n".join(format_table(r, step) for r in results))
    return 0


def cmd_export(args) -> int:
    from jaxmaml.experiment import initial_encoder
    from jaxmaml.export import export

    cfg, run_dir = _resolve_target(args.run_dir, [], None)
    import jax
    encoder = jax.eval_shape(lambda: initial_encoder(cfg))  # only shapes are needed
    step, meta_params = _restore(cfg, run_dir, args.checkpoint, encoder)
    out = export(run_dir, args.out_dir, cfg, step, meta_params["encoder"],
                 overwrite=args.overwrite, meta_params=meta_params)
    print(f"exported step {step} of {run_dir} to {out}")
    return 0


def cmd_predict(args) -> int:
    from jaxmaml.predict import predict_files

    info = predict_files(args.model, args.support, args.texts, args.out,
                         text_column=args.text_column, label_column=args.label_column,
                         proba=args.proba, checkpoint=args.checkpoint, seq_len=args.seq_len,
                         progress=not args.no_progress)
    print(f"labelled {info['rows']} texts with {len(info['classes'])} classes "
          f"({', '.join(info['classes'])}) into {info['out']}")
    return 0


def cmd_data(args) -> int:
    import numpy as np

    from jaxmaml.experiment import cap_per_class, class_split, load_text

    cfg = load_config(args.config, args.overrides)
    ds = cap_per_class(load_text(cfg), cfg.data.max_per_class, cfg.data.split_seed)
    split = class_split(cfg, ds.class_names)
    counts = ds.class_counts()
    lengths = np.array([len(t.split()) for t in ds.texts])
    info = {"source": cfg.data.source, "examples": len(ds), "classes": len(ds.class_names),
            "words_per_text": {"mean": float(lengths.mean()), "max": int(lengths.max())},
            "split": {p: {c: counts[c] for c in split[p]} for p in ("train", "val", "test")}}
    if args.json:
        print(json.dumps(info))
        return 0
    print(f"{info['source']}: {info['examples']} examples, {info['classes']} classes, "
          f"{info['words_per_text']['mean']:.1f} words/text on average")
    for part in ("train", "val", "test"):
        names = info["split"][part]
        print(f"meta-{part} ({len(names)} classes, {sum(names.values())} examples): "
              + ", ".join(f"{c} ({n})" for c, n in names.items()))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``jaxmaml`` console script."""
    import logging

    argv = list(sys.argv[1:] if argv is None else argv)
    logging.getLogger("absl").setLevel(logging.ERROR)  # Orbax's informational warnings
    if argv and argv[0] == "bench":
        try:
            from jaxmaml import bench
        except ImportError as e:
            print(f"error: jaxmaml bench is not available ({e}).", file=sys.stderr)
            return 2
        return bench.main(argv[1:])
    args = _parser().parse_args(argv)
    from jaxmaml.checkpoint import CheckpointError
    from jaxmaml.models.hf import HFCheckpointError

    commands = {"train": cmd_train, "eval": cmd_eval, "export": cmd_export, "data": cmd_data,
                "predict": cmd_predict}
    try:
        return commands[args.command](args)
    except (ConfigError, CheckpointError, HFCheckpointError, FileExistsError,
            FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        from jaxmaml.train import TrainingDiverged
        if isinstance(e, TrainingDiverged):
            print(f"error: {e}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
