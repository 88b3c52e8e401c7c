"""``jaxmaml train | eval | export | predict | data | bench``: argument parsing only.

Logic lives in importable modules (:mod:`jaxmaml.run.train`, :mod:`jaxmaml.run.protocol`,
:mod:`jaxmaml.run.export`); heavy imports are deferred so ``jaxmaml --help`` is instant.
Exit codes: 0 success, 1 a run failed (e.g. diverged), 2 bad input (config, paths, flags),
130 interrupted (Ctrl-C). Errors are one line (``error: ...``); ``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from jaxmaml.run.config import ConfigError, ExperimentConfig
from jaxmaml.run.config_load import load_config


def _overrides(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--set", dest="overrides", action="append", default=[],
                    metavar="KEY=VALUE", help="override a config key (YAML value), e.g. "
                    "--set train.steps=100; repeatable")


def _run_commands(sub) -> None:
    """The commands that make or describe a run directory: train, export, data."""
    t = sub.add_parser("train", help="meta-train a config (resumes an existing RUN_DIR)")
    t.add_argument("config", help="experiment YAML, e.g. configs/quickstart.yaml")
    _overrides(t)
    t.add_argument("--out", help="run directory (default: train.out or runs/<config name>)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")

    x = sub.add_parser("export", help="write a Hugging Face model directory with a model card")
    x.add_argument("run_dir")
    x.add_argument("out_dir")
    x.add_argument("--checkpoint", default="best", type=_checkpoint_arg,
                   help="best (default), latest, a step number, or init (the untrained "
                   "initialization)")
    x.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT_DIR")
    _overrides(x)

    d = sub.add_parser("data", help="print a config's dataset statistics and class split")
    d.add_argument("config")
    _overrides(d)
    d.add_argument("--json", action="store_true")


def _predict_command(sub) -> None:
    """``jaxmaml predict``: label a file of texts with a model adapted to a support file."""
    pr = sub.add_parser("predict", help="adapt a model to a labelled support file and "
                        "label a file of texts")
    pr.add_argument("model", help="a run directory, an export directory, or a fitted "
                    "classifier saved with FewShotClassifier.save_pretrained")
    pr.add_argument("--support", help="labelled examples of your task "
                    "(csv/tsv/json/jsonl/parquet); optional for a fitted classifier")
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
    pr.add_argument("--seq-len", type=int, help="most tokens per text (default: the base "
                    "sentence encoder's max_seq_length, else the model's position limit)")
    pr.add_argument("--head", choices=("learner", "probe"), default="learner",
                    help="learner (default): the learner's own adaptation; probe: a "
                    "logistic-regression probe on the encoder's sentence features")
    pr.add_argument("--adapt", choices=("learner", "finetune"), default="learner",
                    help="learner (default): the learner's own adaptation; finetune: "
                    "fine-tune the encoder's top layers with a cosine head on the support set")
    pr.add_argument("--label-texts", metavar="FILE|labels", help="class names or "
                    "descriptions as one more example per class: a csv/json file with the "
                    "--label-column and --text-column columns, or `labels` for the label "
                    "strings themselves")
    pr.add_argument("--transductive", action="store_true", help="refine the classes over "
                    "all of --texts (soft k-means; needs --adapt finetune); a text's "
                    "prediction then depends on the others")
    pr.add_argument("--no-progress", action="store_true", help="no progress bar")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="jaxmaml", description="Meta-learning for BERT text "
                                "encoders (MAML family) in JAX.")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _run_commands(sub)

    e = sub.add_parser("eval", help="few-shot evaluation: meta-learned init vs baselines")
    e.add_argument("target", help="a run directory, or a config (evaluates its run directory)")
    _overrides(e)
    e.add_argument("--out", help="run directory of a CONFIG target")
    e.add_argument("--checkpoint", default="best", type=_checkpoint_arg,
                   help="best (default; latest if no meta-val ran), latest, a step number, "
                   "or init (the untrained initialization)")
    e.add_argument("--data", help="evaluate on all classes of this csv/json/jsonl/parquet "
                   "file (or hub dataset) instead of the run's meta-test classes")
    e.add_argument("--text-column", help="text column of --data (default: data.text_column)")
    e.add_argument("--label-column", help="label column of --data (default: data.label_column)")
    e.add_argument("--seq-len", type=int, help="tokens per evaluated example (default: "
                   "eval.seq_len, else data.seq_len); changes only the evaluated data")
    e.add_argument("--way", type=int, help="classes per episode (default: meta.way)")
    e.add_argument("--shot", type=int, nargs="+", help="support examples per class; several "
                   "values give several settings (default: eval.settings)")
    e.add_argument("--query", type=int, help="query examples per class")
    e.add_argument("--episodes", type=int, help="episodes per setting (default: eval.episodes)")
    e.add_argument("--methods", nargs="+", type=_method_arg,
                   help="subset of meta_learned meta_learned_centroid meta_learned_probe "
                   "pretrained_finetune pretrained_adapt_cosine cosine_centroid linear_probe "
                   "nearest_centroid (the default), test-time fine-tuning (finetune, "
                   "meta_learned_finetune), class names as priors and transduction "
                   "(cosine_centroid_names, finetune_trans, meta_learned_finetune_names_trans, "
                   "...), or all")
    e.add_argument("--finetune-episodes", type=int, help="episodes of the fine-tuning "
                   "methods: the first of --episodes (default: 200)")
    e.add_argument("--finetune", dest="finetune", action="append", default=[],
                   metavar="KEY=VALUE", help="a test-time fine-tuning option (part, top_k, "
                   "lora_rank, steps, lr, head_lr, scale, weight_decay, pair_weight), e.g. "
                   "--finetune steps=20; repeatable")
    e.add_argument("--query-mix", choices=("balanced", "dirichlet"), default="balanced",
                   help="query batches: balanced (--query per class, the default) or "
                   "dirichlet (way x --query queries in Dirichlet class proportions)")
    e.add_argument("--query-alpha", type=float, default=2.0,
                   help="Dirichlet concentration of --query-mix dirichlet (default 2.0)")
    e.add_argument("--json", action="store_true", help="print JSON (one object per setting; "
                   "a list for several; a multi-source run without --data: a list of one "
                   "object per source and setting, its `data` the source's name)")
    e.add_argument("--per-episode", action="store_true", help="with --json: each object "
                   "also holds per_episode, every method's accuracy on each episode in "
                   "episode order, to pair methods of different runs on the same episodes")

    _predict_command(sub)

    from jaxmaml.bench.grid import DESCRIPTION, add_arguments

    b = sub.add_parser("bench", help="throughput, memory, compile time and FLOPs of the "
                       "meta-step (see jaxmaml bench --help)", description=DESCRIPTION)
    add_arguments(b)
    return p


# ---------------------------------------------------------------------------- helpers
def _checkpoint_arg(value: str) -> str:
    """``--checkpoint`` is checked while parsing, before any model is loaded."""
    if value in ("best", "latest", "init") or value.isdigit():
        return value
    raise argparse.ArgumentTypeError(f"{value!r}: use best, latest, init or a step number")


def _method_arg(value: str) -> str:
    from jaxmaml.run.protocol import METHODS

    if value in METHODS or value == "all":
        return value
    raise argparse.ArgumentTypeError(f"unknown method {value!r}; use some of "
                                     f"{' '.join(METHODS)}, or all")


def _finetune_options(pairs: list[str], base):
    """``base`` (the run's ``meta.finetune``) changed by ``--finetune KEY=VALUE`` flags
    (the same as ``--set meta.finetune.KEY=VALUE``)."""
    try:
        return base.replace_from_strings(pairs)
    except ValueError as e:
        raise ConfigError(str(e)) from e


def format_table(result: dict, step: int) -> str:
    """A readable table of one evaluation setting."""
    head = (f"{result['way']}-way {result['shot']}-shot, {result['query']} query/class, "
            f"{result['episodes']} episodes, {result['split']} of {result['data']}"
            + (f" [{result['domain']}]" if "domain" in result else "")
            + f" (checkpoint step {step})")
    lines = [head, f"  {'method':<34}{'accuracy':>10}{'95% CI':>10}{'episodes':>10}"]
    for method, r in result["results"].items():
        lines.append(f"  {method:<34}{r['mean']:>10.4f}{'± ' + format(r['ci95'], '.4f'):>10}"
                     f"{r.get('episodes', result['episodes']):>10}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- commands
def cmd_train(args) -> int:
    from jaxmaml import parallel
    from jaxmaml.run.load import default_run_dir
    from jaxmaml.run.train import train

    parallel.initialize_distributed()
    cfg = load_config(args.config, args.overrides)
    run_dir = Path(args.out) if args.out else default_run_dir(cfg)
    result = train(cfg, run_dir, progress=not args.no_progress)  # raises TrainingInterrupted
    if parallel.is_main_process():
        best = ("" if result.best_val_accuracy is None else
                f"; best meta-val accuracy {result.best_val_accuracy:.4f} at step "
                f"{result.best_step}")
        print(f"trained {cfg.name} to step {result.final_step} in {run_dir}{best}")
    return 0


def cmd_eval(args) -> int:
    from jaxmaml.run.evaluate import evaluate_target
    from jaxmaml.run.load import resolve_target

    cfg, run_dir = resolve_target(args.target, args.overrides, args.out)
    settings = None  # eval.settings
    if args.way or args.shot or args.query:
        way = args.way or cfg.meta.way
        shots = args.shot or sorted({s for _, s, _ in cfg.eval.settings})
        query = args.query or cfg.eval.settings[0][2]
        settings = [(way, s, query) for s in shots]
    for flag, n in (("--episodes", args.episodes), ("--finetune-episodes",
                                                     args.finetune_episodes)):
        if n is not None and n < 2:
            raise ConfigError(f"{flag} {n}: need at least 2 for a confidence interval.")
    if not args.query_alpha > 0:
        raise ConfigError(f"--query-alpha {args.query_alpha}: must be > 0.")
    if args.per_episode and not args.json:
        raise ConfigError("--per-episode adds to the JSON output: add --json.")
    from jaxmaml.run.protocol import METHODS

    methods = METHODS if args.methods and "all" in args.methods else args.methods
    options = {"finetune_opts": _finetune_options(args.finetune, cfg.meta.finetune),
               "finetune_episodes": args.finetune_episodes, "query_mix": args.query_mix,
               "query_alpha": args.query_alpha, "per_episode": args.per_episode}
    step, results = evaluate_target(cfg, run_dir, data=args.data, checkpoint=args.checkpoint,
                                    text_column=args.text_column,
                                    label_column=args.label_column, seq_len=args.seq_len,
                                    settings=settings, episodes=args.episodes,
                                    methods=methods, record=True, options=options)
    if args.json:
        print(json.dumps(results[0] if len(results) == 1 else results))
    else:
        print("\n\n".join(format_table(r, step) for r in results))
    return 0


def cmd_export(args) -> int:
    from jaxmaml.run.export import export_run
    from jaxmaml.run.load import resolve_target

    cfg, run_dir = resolve_target(args.run_dir, args.overrides)
    step, out = export_run(run_dir, args.out_dir, args.checkpoint, args.overwrite, cfg)
    print(f"exported step {step} of {run_dir} to {out}")
    return 0


def cmd_predict(args) -> int:
    from jaxmaml.predict import predict_files

    info = predict_files(args.model, args.support, args.texts, args.out,
                         text_column=args.text_column, label_column=args.label_column,
                         proba=args.proba, checkpoint=args.checkpoint, seq_len=args.seq_len,
                         progress=not args.no_progress, head=args.head, adapt=args.adapt,
                         label_texts=args.label_texts, transductive=args.transductive)
    print(f"labelled {info['rows']} texts with {len(info['classes'])} classes "
          f"({', '.join(info['classes'])}) into {info['out']}")
    return 0


def cmd_bench(args) -> int:
    from jaxmaml.bench import grid

    try:
        name, points = grid.points_from_args(args)
    except (ValueError, OSError) as e:
        raise ConfigError(str(e)) from e
    return grid.run(args, name, points)


def cmd_data(args) -> int:
    from jaxmaml.run.data import describe_data

    cfg = load_config(args.config, args.overrides)
    if cfg.data.sources:
        return _data_sources(cfg, args.json)
    info = describe_data(cfg)
    unk = info["unknown_token_rate"]
    if args.json:
        print(json.dumps(info))
        return 0
    print(f"{info['source']}: {info['examples']} examples, {info['classes']} classes, "
          f"{info['words_per_text']['mean']:.1f} words/text on average, {unk:.1%} of text "
          "tokens are [UNK] for the model's tokenizer")
    for part in ("train", "val", "test"):
        names = info["split"][part]
        print(f"meta-{part} ({len(names)} classes, {sum(names.values())} examples): "
              + ", ".join(f"{c} ({n})" for c, n in names.items()))
    return 0


def _data_sources(cfg: ExperimentConfig, as_json: bool) -> int:
    """``jaxmaml data`` of a multi-source config: one block per source."""
    from jaxmaml.run.data import describe_sources

    info = describe_sources(cfg)
    if as_json:
        print(json.dumps(info))
        return 0
    for name, s in info["sources"].items():
        print(f"{name} ({s['role']}, weight {s['weight']}, seq_len {s['seq_len']}): "
              f"{s['examples']} examples, {s['classes']} classes")
        for part in ("train", "val", "test"):
            names = s["split"][part]
            print(f"  meta-{part} ({len(names)} classes, {sum(names.values())} examples): "
                  + ", ".join(f"{c} ({n})" for c, n in names.items()))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``jaxmaml`` console script."""
    import logging
    import warnings

    argv = list(sys.argv[1:] if argv is None else argv)
    logging.getLogger("absl").setLevel(logging.ERROR)  # Orbax's informational warnings
    if "--debug" in argv:  # accepted anywhere on the line, not only before COMMAND
        argv = ["--debug", *(a for a in argv if a != "--debug")]
    args = _parser().parse_args(argv)
    commands = {"train": cmd_train, "eval": cmd_eval, "export": cmd_export, "data": cmd_data,
                "predict": cmd_predict, "bench": cmd_bench}
    formatwarning, warnings.formatwarning = warnings.formatwarning, _one_line_warning
    try:
        return commands[args.command](args)
    except BaseException as e:  # noqa: BLE001 -- every failure becomes one line + exit code
        if args.debug or isinstance(e, SystemExit):
            raise
        code, message = _failure(e)
        print(f"{'' if code == 130 else 'error: '}{message}", file=sys.stderr)
        return code
    finally:
        warnings.formatwarning = formatwarning


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    """A warning on the command line: one line, no source location."""
    return f"warning: {message}\n"


def _failure(e: BaseException) -> tuple[int, str]:
    """``(exit code, one-line message)`` of an exception escaping a command."""
    from jaxmaml.run.checkpoint import CheckpointError
    from jaxmaml.models.hf import HFCheckpointError
    from jaxmaml.run.train import TrainingDiverged, TrainingInterrupted

    if isinstance(e, TrainingInterrupted):
        return 130, str(e)
    if isinstance(e, KeyboardInterrupt):
        return 130, "interrupted; nothing was left half-written."
    if isinstance(e, (ConfigError, CheckpointError, HFCheckpointError, FileExistsError,
                      FileNotFoundError, PermissionError, IsADirectoryError,
                      NotADirectoryError)):
        return 2, str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if isinstance(e, TrainingDiverged):
        return 1, str(e)
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return 1, (f"{type(e).__name__}: {first[:300]} (an unexpected failure; rerun with "
               "--debug for the traceback)")


if __name__ == "__main__":
    sys.exit(main())
