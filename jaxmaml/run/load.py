"""Load a meta-trained model: a run directory's checkpoint, or an export directory.

``load_run`` is the public form of what ``jaxmaml eval`` / ``export`` restore;
``load_export`` reads what :mod:`jaxmaml.run.export_files` writes next to the HF encoder.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from jaxmaml.meta.config import meta_config, MetaConfig
from jaxmaml.meta.lora import merged_meta_params
from jaxmaml.meta.options import FLAT_KEYS, ProtoNetOptions
from jaxmaml.meta.outer import make_optimizer
from jaxmaml.meta.registry import resolve_config
from jaxmaml.models.bert import BertConfig
from jaxmaml.models.hf import HFCheckpointError, load_pretrained
from jaxmaml.run.checkpoint import CheckpointError, RunCheckpoints
from jaxmaml.run.config import ConfigError, ExperimentConfig
from jaxmaml.run.config_load import (apply_overrides, from_dict, load_config, model_dir,
                                     tokenizer_dir)
from jaxmaml.run.st_layout import max_seq_length, sentence_layout
from jaxmaml.run.state import abstract_state, initial_encoder, state_init_fn
from jaxmaml.tree import unflatten

JAXMAML_FILE = "jaxmaml.json"
EXTRAS_FILE = "jaxmaml_extras.safetensors"
EXPORT_FORMAT = "jaxmaml-export-v1"


class Loaded(NamedTuple):
    """A meta-trained model ready to adapt.

    Attributes:
      meta_params: ``{"encoder": BERT params, **learner extras}``.
      meta: the resolved :class:`~jaxmaml.meta.config.MetaConfig`.
      tokenizer_dir: the directory the tokenizer loads from.
      seq_len: the tokens per text the model was meta-trained with.
      step: the checkpoint step (None when unknown).
      source: the run or export directory.
      max_seq_len: the most tokens per text at use time: the base sentence encoder's
        ``max_seq_length``, else the model's position limit (never below ``seq_len``).
    """

    meta_params: dict
    meta: Any
    tokenizer_dir: Path
    seq_len: int
    step: int | None
    source: Path
    max_seq_len: int | None = None


def use_time_length(bert: Any, seq_len: int, st_max_seq_length: int | None) -> int:
    """Tokens per text at use time: a sentence encoder's own ``max_seq_length`` (capped by
    the position limit), else the position limit; at least the training ``seq_len``."""
    limit = bert.max_position_embeddings
    return max(seq_len, min(st_max_seq_length or limit, limit))


def run_config(run_dir: str | Path, overrides: list[str] | tuple[str, ...] = ()
               ) -> ExperimentConfig:
    """The :class:`ExperimentConfig` saved in a run directory (``config.yaml``)."""
    path = Path(run_dir)
    cfg_file = path / "config.yaml"
    if not cfg_file.is_file():
        raise ConfigError(f"{path} is not a run directory (no config.yaml); pass a run "
                          "directory written by `jaxmaml train` or an export directory.")
    return from_dict(apply_overrides(yaml.safe_load(cfg_file.read_text()), list(overrides)))


def default_run_dir(cfg: ExperimentConfig) -> Path:
    """``train.out``, else ``runs/<config name>``."""
    return Path(cfg.train.out or Path("runs") / cfg.name)


def resolve_target(target: str | Path, overrides: list[str] | tuple[str, ...] = (),
                   out: str | None = None) -> tuple[ExperimentConfig, Path]:
    """``(config, run_dir)`` of a run directory, or of a config file (its run directory:
    ``out``, else :func:`default_run_dir`)."""

    path = Path(target)
    if path.is_dir():
        return run_config(path, overrides), path
    cfg = load_config(path, overrides)
    return cfg, Path(out) if out else default_run_dir(cfg)


def restore_meta_params(cfg: ExperimentConfig, run_dir: str | Path, which: str = "best",
                        encoder: Any = None) -> tuple[int, dict]:
    """``(step, meta_params)`` of checkpoint ``which`` of a run.

    ``which``: ``best`` (latest if no meta-val ran), ``latest``, a step number, or ``init``
    (step 0, the untrained initialization). ``encoder``: the initial encoder (or its
    shapes); default :func:`jaxmaml.run.state.initial_encoder`. The restored encoder is
    the run's model: LoRA factors merged (``meta.lora_rank``, :mod:`jaxmaml.meta.lora`),
    then ``train.wise_alpha`` applied (:func:`wise_interpolate`).
    """
    import jax


    run_dir = Path(run_dir)
    if which == "init":
        encoder = initial_encoder(cfg) if encoder is None else encoder
        return 0, merged_meta_params(
            state_init_fn(cfg, make_optimizer(cfg.optim))(encoder).meta_params)
    if encoder is None:
        encoder = jax.eval_shape(lambda: initial_encoder(cfg))  # only shapes are needed
    if not (run_dir / "checkpoints").is_dir():
        raise CheckpointError(f"no checkpoints in {run_dir}: train it first with `jaxmaml train "
                              "CONFIG --out RUN_DIR`, or pass --checkpoint init to evaluate "
                              "the untrained initialization.")
    with RunCheckpoints(run_dir / "checkpoints", read_only=True) as ckpts:
        if which == "best" and ckpts.best_step() is None:
            which = "latest"
        restored = ckpts.restore(abstract_state(cfg, encoder), which)
    meta_params = merged_meta_params(restored.state.meta_params)
    if cfg.train.wise_alpha != 1.0:
        if any(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree.leaves(encoder)):
            encoder = initial_encoder(cfg)  # the interpolation needs the real weights
        meta_params = {**meta_params, "encoder": wise_interpolate(
            encoder, meta_params["encoder"], cfg.train.wise_alpha)}
    return restored.step, meta_params


def wise_interpolate(theta_0: Any, theta: Any, alpha: float) -> Any:
    """``theta_0 + alpha (theta - theta_0)`` leaf by leaf (WiSE-FT's weight-space ensemble:
    ``alpha`` = 1 is ``theta``, 0 the pretrained ``theta_0``), in each leaf's dtype."""
    import jax

    return jax.tree.map(lambda a, b: (a + alpha * (b - a)).astype(b.dtype), theta_0, theta)


def load_run(run_dir: str | Path, checkpoint: str = "best") -> Loaded:
    """A run directory's meta-learned params (checkpoint ``checkpoint``) and settings."""

    cfg = run_config(run_dir)
    step, meta_params = restore_meta_params(cfg, run_dir, checkpoint)
    max_len = use_time_length(cfg.meta.model, cfg.data.seq_len,
                              max_seq_length(model_dir(cfg.model)))
    return Loaded(meta_params, cfg.meta, Path(tokenizer_dir(cfg.model)), cfg.data.seq_len, step,
                  Path(run_dir), max_len)


def load_export(export_dir: str | Path, seq_len: int | None = None) -> Loaded:
    """An export directory: the HF encoder plus ``jaxmaml.json`` and the learner extras.

    A plain Hugging Face BERT or MPNet directory without ``jaxmaml.json`` loads as a frozen encoder
    with a cosine-centroid head (ProtoNet, cosine distance) on the sentence embedding its
    sentence-transformers modules declare (pooling, ``Normalize``), else on mean-pooled,
    L2-normalized features, with a warning saying which.
    """

    path = Path(export_dir)
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is not a directory; pass a run directory or a "
                                "directory written by `jaxmaml export`.")
    info_file = path / JAXMAML_FILE
    if not info_file.is_file():
        encoder, bert = load_pretrained(path)
        layout = sentence_layout(path)
        said = ("as its sentence-transformers modules declare" if layout.declared else
                "(no sentence-transformers modules.json: what sentence encoders are used with)")
        warnings.warn(f"{path} has no {JAXMAML_FILE} (not a jaxmaml export): using its "
                      f"encoder only, with a cosine-centroid head on {layout.pooling}-pooled"
                      f"{', L2-normalized' if layout.normalize else ''} features {said}.",
                      stacklevel=3)
        meta = resolve_config(MetaConfig(model=bert, algorithm="protonet",
                                         pooling=layout.pooling, protonet=ProtoNetOptions(
                                             "cosine", normalize_features=layout.normalize)))
        max_len = use_time_length(bert, 2, max_seq_length(path))
        return Loaded({"encoder": encoder}, meta, path, seq_len or max_len, None, path,
                      seq_len or max_len)
    info = json.loads(info_file.read_text())
    if info.get("format") != EXPORT_FORMAT:
        raise HFCheckpointError(f"{info_file} has format {info.get('format')!r}; this jaxmaml "
                                f"reads {EXPORT_FORMAT!r} (export the run again).")
    bert = BertConfig(**info["model"])
    encoder, _ = load_pretrained(path, dtype=bert.dtype)
    # meta_config reads the flat keys of earlier exports into their groups
    known = {f.name for f in dataclasses.fields(MetaConfig)} - {"model"} | set(FLAT_KEYS)
    meta = resolve_config(meta_config({k: v for k, v in info["meta"].items() if k in known},
                                      model=bert))
    meta_params = {"encoder": encoder}
    if info.get("extras"):
        import jax.numpy as jnp
        from safetensors.numpy import load_file

        flat = load_file(str(path / EXTRAS_FILE))
        meta_params.update(unflatten({k: jnp.asarray(v) for k, v in flat.items()}))
    max_len = use_time_length(bert, info["seq_len"], max_seq_length(path))
    return Loaded(meta_params, meta, path, info["seq_len"], info.get("step"), path,
                  seq_len or max_len)


def load(model: str | Path, checkpoint: str = "best") -> Loaded:
    """A run directory (has ``config.yaml``) or an export directory."""
    path = Path(model)
    if (path / "config.yaml").is_file():
        return load_run(path, checkpoint)
    return load_export(path)
