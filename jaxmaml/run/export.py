"""Export a run's meta-learned encoder as a Hugging Face BERT or MPNet directory + model card.

The directory (config.json, model.safetensors, tokenizer files, README.md) loads offline
with ``transformers.AutoModel`` / ``AutoTokenizer``; the learner's settings and extras and
the sentence-transformers files (:mod:`jaxmaml.run.export_files`) make it load completely with
``jaxmaml.FewShotClassifier.from_pretrained``. It is written atomically.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml

from jaxmaml.models.hf import save_pretrained
from jaxmaml.run.config import ExperimentConfig, to_dict
from jaxmaml.run.config_load import model_dir, tokenizer_dir
from jaxmaml.run.export_files import base_max_seq_length, jaxmaml_files, usage_section
from jaxmaml.run.load import restore_meta_params, run_config
from jaxmaml.run.paths import check_output_dir, write_error
from jaxmaml.run.protocol import best_baseline, gain_text, METHOD_LABELS, METHODS
from jaxmaml.run.state import initial_encoder

EVAL_FILE = "eval_results.json"


def _fmt(r: dict | None) -> str:
    if not r:
        return "-"
    return f"{r['mean']:.4f} ± {r['ci95']:.4f}"


def eval_table(results: list[dict]) -> str:
    """A markdown table of evaluation results: one row per setting, one column per method
    (in :data:`jaxmaml.run.protocol.METHODS` order), and the meta-learned init's points over the
    best baseline on the original encoder."""

    methods = [m for m in METHODS if any(m in r["results"] for r in results)]
    lines = ["| data | split | way | shot | query | episodes | "
             + " | ".join(METHOD_LABELS[m] for m in methods)
             + " | meta-learned vs best baseline |",
             "|---" * (7 + len(methods)) + "|"]
    for r in results:
        cells = [str(r.get("data", "")), str(r.get("split", "")), str(r["way"]), str(r["shot"]),
                 str(r["query"]), str(r["episodes"])]
        cells += [_fmt(r["results"].get(m)) for m in methods]
        gain, best = gain_text(r), best_baseline(r["results"])
        cells.append("-" if gain is None else f"{gain} points vs {METHOD_LABELS[best[0]]}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def model_card(cfg: ExperimentConfig, step: int, split: dict | None, results: list[dict],
               summary: dict | None) -> str:
    """README.md text: how the encoder was meta-trained and how it evaluated."""
    m, t = cfg.meta, cfg.train
    kind, article, arch = {"bert": ("BERT", "A", "BertModel"),
                           "mpnet": ("MPNet", "An", "MPNetModel")}[m.model.model_type]
    order = "first-order" if m.first_order else "second-order"
    adapt = {"all": "all parameters", "head": "the task head only (ANIL)",
             "top_k_layers": f"the top {m.adapt_top_k} encoder layers + the task head",
             "regex": f"parameters matching `{m.adapt_regex}` + the task head"}[m.adapt]
    lines = [
        "---", "library_name: transformers", "pipeline_tag: feature-extraction",
        f"tags: [{m.model.model_type}, meta-learning, few-shot, jaxmaml]", "---", "",
        f"# {cfg.name}: meta-learned {kind} encoder ({m.algorithm})", "",
        f"{article} {kind} encoder (`{arch}`) meta-learned for few-shot text classification with "
        "jaxmaml (JAX/Flax), exported with everything its learner needs to adapt to a new "
        "task.", "",
        usage_section(m, cfg.data.seq_len),
        "## Meta-training", "",
        f"- algorithm: `{m.algorithm}` ({order}), inner loop: {m.num_inner_steps} steps, "
        f"inner lr {m.inner_lr}, adapting {adapt}",
        f"- initialization: `{cfg.model.name}`",
        f"- meta-steps: {step} of {t.steps} (this checkpoint: step {step}), {t.tasks} tasks "
        f"per meta-batch, {m.way}-way {t.shot}-shot with {t.query} query examples per class",
        f"- outer optimizer: {cfg.optim.name}, lr {cfg.optim.lr}",
        f"- data: `{cfg.data.source}` (text column `{cfg.data.text_column}`, label column "
        f"`{cfg.data.label_column}`), sequence length {cfg.data.seq_len}",
    ]
    if m.lora_rank:
        lines.append(f"- meta-learned: rank-{m.lora_rank} updates `A @ B` of the trained "
                     "layers' weight matrices (LoRA, `meta.lora_rank`), merged into these "
                     f"plain {kind} weights")
    if t.wise_alpha != 1.0:
        lines.append(f"- weights: the pretrained encoder + {t.wise_alpha} x what meta-training "
                     "changed (a WiSE-FT weight-space ensemble, `train.wise_alpha`)")
    if summary and summary.get("best_val_accuracy") is not None:
        lines.append(f"- best meta-val accuracy: {summary['best_val_accuracy']:.4f} at step "
                     f"{summary['best_step']}")
    if split:
        lines += ["", "### Class-disjoint split", ""]
        for part in ("train", "val", "test"):
            names = split.get(part, [])
            lines.append(f"- meta-{part} ({len(names)}): " + ", ".join(f"`{n}`" for n in names))
    lines += ["", "## Evaluation", ""]
    if results:
        lines += ["Accuracy mean ± 95% confidence interval over the episodes, drawn from "
                  "classes never seen in meta-training. All methods see the same episodes.",
                  "", eval_table(results)]
    else:
        lines.append("No evaluation results were recorded for this run; run "
                     "`jaxmaml eval RUN_DIR` before exporting to include them.")
    lines += ["", "## Config", "", "```yaml",
              yaml.safe_dump(to_dict(cfg), sort_keys=False).rstrip(), "```", ""]
    return "\n".join(lines)


RUN_MARKERS = ("checkpoints", "metrics.jsonl", ".lock")


def _holds_run(d: Path) -> bool:
    return (d / "config.yaml").is_file() and any((d / m).exists() for m in RUN_MARKERS)


def check_export_target(run_dir: str | Path, out_dir: str | Path) -> None:
    """Refuse an ``out_dir`` whose replacement would destroy a run.

    ``out_dir`` may not be ``run_dir``, lie inside it, contain it, or contain any other run
    directory (``--overwrite`` replaces ``out_dir`` whole). Raises ``FileExistsError``.
    """
    run, out = Path(run_dir).resolve(), Path(out_dir).resolve()
    if out == run or run in out.parents:
        raise FileExistsError(f"cannot export into the run directory {run_dir}: pick an "
                              "OUT_DIR outside it, e.g. a sibling such as "
                              f"{Path(run_dir).name}-hf.")
    if out in run.parents:
        raise FileExistsError(f"cannot export to {out_dir}: it contains the run {run_dir}, "
                              "and writing it would replace the run; pick a new directory.")
    if out.is_dir():
        for d, dirs, _ in os.walk(out):
            if _holds_run(Path(d)):
                raise FileExistsError(f"cannot export to {out_dir}: it holds the run "
                                      f"directory {d}, which writing it would destroy; pick "
                                      "a new directory.")
            dirs[:] = [x for x in dirs if not x.startswith(".")]


def load_eval_results(run_dir: Path, step: int | None = None,
                      wise_alpha: float | None = None) -> list[dict]:
    """The run's recorded evaluation results (for checkpoint ``step`` and the model of
    ``train.wise_alpha`` = ``wise_alpha``, if given)."""
    f = Path(run_dir) / EVAL_FILE
    if not f.exists():
        return []
    rows = json.loads(f.read_text())
    return [r for r in rows if (step is None or r.get("checkpoint_step") == step)
            and (wise_alpha is None or r.get("wise_alpha", 1.0) == wise_alpha)]


def export(run_dir: str | Path, out_dir: str | Path, cfg: ExperimentConfig, step: int,
           encoder: Any, overwrite: bool = False, meta_params: dict | None = None) -> Path:
    """Write ``encoder`` (the meta-learned BERT params of ``step``) as a HF directory, plus
    the learner's settings and extras of ``meta_params`` (see :mod:`jaxmaml.run.export_files`)."""

    check_export_target(run_dir, out_dir)
    run_dir = Path(run_dir)
    split_file, summary_file = run_dir / "split.json", run_dir / "train_summary.json"
    split = json.loads(split_file.read_text()) if split_file.exists() else None
    summary = json.loads(summary_file.read_text()) if summary_file.exists() else None
    card = model_card(cfg, step, split, load_eval_results(run_dir, step, cfg.train.wise_alpha),
                      summary)
    check_output_dir(out_dir)
    files = {"README.md": card, **jaxmaml_files(
        cfg.meta, meta_params or {"encoder": encoder}, cfg.data.seq_len, step,
        base_max_seq_length(model_dir(cfg.model)))}
    try:
        return save_pretrained(encoder, cfg.meta.model, out_dir, tokenizer_dir(cfg.model),
                               overwrite=overwrite, extra_files=files)
    except (FileExistsError, FileNotFoundError):
        raise
    except OSError as e:  # disk full, file-size limit, permission: nothing was replaced
        raise write_error(e, "the export", out_dir) from e


def export_run(run_dir: str | Path, out_dir: str | Path, checkpoint: str = "best",
               overwrite: bool = False, cfg: ExperimentConfig | None = None) -> tuple[int, Path]:
    """``jaxmaml export``: restore checkpoint ``checkpoint`` (``best``, ``latest``, a step or
    ``init``) of a run and :func:`export` it. Returns ``(step, out_dir)``."""
    import jax


    cfg = cfg or run_config(run_dir)
    check_export_target(run_dir, out_dir)  # before the (slow) model load
    check_output_dir(out_dir)
    # A checkpoint restore needs only shapes; ``init`` needs the real initial weights.
    encoder = (initial_encoder(cfg) if checkpoint == "init"
               else jax.eval_shape(lambda: initial_encoder(cfg)))
    step, meta_params = restore_meta_params(cfg, run_dir, checkpoint, encoder)
    out = export(run_dir, out_dir, cfg, step, meta_params["encoder"], overwrite=overwrite,
                 meta_params=meta_params)
    return step, out
