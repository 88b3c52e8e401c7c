"""Experiment configuration schema: the frozen section dataclasses and their YAML keys.

One typed source of truth per default: every default lives in a dataclass field below (the
``meta`` and ``optim`` sections are :class:`~jaxmaml.meta.config.MetaConfig` and
:class:`~jaxmaml.meta.config.OptimConfig` themselves, so fields added there just work).
Reading YAML, ``--set`` overrides, type coercion, model lookups on disk and validation live
in :mod:`jaxmaml.run.config_load` (:func:`~jaxmaml.run.config_load.load_config`); this module also
writes a config back out (:func:`to_dict`, :func:`dump_yaml`).

YAML layout (every key optional)::

    model:    {name: minilm, dtype: float32}       # + any BertConfig field as an override
    data:     {source: wordnet, seq_len: 32, num_train: 30, num_val: 5, num_test: 10}
    meta:     {algorithm: maml, way: 5, adapt: top_k_layers, adapt_top_k: 2}
    optim:    {name: adamw, lr: 1.0e-4}
    train:    {steps: 200, tasks: 4, shot: 1, query: 5, save_every: 50}
    eval:     {settings: [[5, 1, 15], [5, 5, 15]], episodes: 600}
    parallel: {mesh: [-1, 1], rules: replicated}
"""

from __future__ import annotations

import dataclasses
from typing import Any

import yaml

from jaxmaml.meta.config import MetaConfig, OptimConfig
from jaxmaml.models.bert import BertConfig, PRESETS
from jaxmaml.run.sources import SourceSection

MINILM_ALIAS = "minilm"


class ConfigError(ValueError):
    """An experiment config that cannot be used as written."""


@dataclasses.dataclass(frozen=True)
class ModelSection:
    """The encoder: ``name`` is a preset (tiny/mini/small/base, randomly initialized from
    ``train.seed``), ``minilm`` (the bundled all-MiniLM-L6-v2 weights) or a local Hugging
    Face BERT or MPNet directory. ``tokenizer`` (a directory, or ``minilm``) defaults to the model
    directory. ``overrides`` are
    :class:`BertConfig` fields (e.g. ``dtype: bfloat16``), written flat in the YAML section.
    """

    name: str = MINILM_ALIAS
    tokenizer: str | None = None
    overrides: tuple[tuple[str, Any], ...] = ()

    @property
    def is_pretrained(self) -> bool:
        return self.name not in PRESETS


@dataclasses.dataclass(frozen=True)
class DataSection:
    """Where the text comes from and how its classes are split (class-disjoint).

    ``source``: ``wordnet`` (gloss -> supersense), a local csv/json/jsonl/parquet file, or a
    Hugging Face hub dataset name (``hub_split`` picks its split). Splits are explicit class
    lists (``meta_train``/``meta_val``/``meta_test``) or, where a list is empty, counts of
    classes drawn with ``split_seed``. ``max_per_class`` caps examples per class (seeded).
    ``sources``: several :class:`SourceSection` s instead of ``source`` (which is then not
    used); the other keys here are their defaults.
    """

    source: str = "wordnet"
    text_column: str = "text"
    label_column: str = "label"
    hub_split: str = "train"
    meta_train: tuple[str, ...] = ()
    meta_val: tuple[str, ...] = ()
    meta_test: tuple[str, ...] = ()
    num_train: int = 30
    num_val: int = 5
    num_test: int = 10
    split_seed: int = 0
    seq_len: int = 32
    max_per_class: int | None = None
    cache_dir: str | None = None
    sources: tuple[SourceSection, ...] = ()


@dataclasses.dataclass(frozen=True)
class TrainSection:
    """The meta-training loop. ``tasks`` is the meta-batch; ``shot``/``query`` are per class.

    ``eval_every`` (0 = never) runs meta-val on ``eval_episodes`` episodes; ``save_every``
    (0 = only at the end) writes a checkpoint; ``keep`` checkpoints are kept plus the best by
    meta-val accuracy. ``out`` is the run directory (default ``runs/<config file stem>``).

    ``wise_alpha`` (> 0) is the weight-space ensemble of WiSE-FT (Wortsman et al., 2022)
    with the pretrained encoder: the run's model is ``theta_0 + wise_alpha (theta - theta_0)``
    wherever it is loaded (``jaxmaml eval``, ``export``, ``predict``, ``fit``); 1.0 = the
    meta-learned encoder itself. Checkpoints (and meta-val during training) keep the
    meta-learned ``theta``, so the value can be changed after training
    (``jaxmaml eval RUN --set train.wise_alpha=0.5``) and on resume.

    ``label_texts``: each meta-training task's support ends with one row per class holding
    the class's label text (its readable name or the source's description,
    :mod:`jaxmaml.data.label_text`), labelled with its class: meta-training for the class
    names a user passes at test time (``fit(..., label_texts=...)``). Meta-val is unchanged.
    """

    steps: int = 200
    tasks: int = 4
    shot: int = 1
    query: int = 5
    seed: int = 0
    log_every: int = 10
    eval_every: int = 50
    eval_episodes: int = 100
    save_every: int = 50
    keep: int = 2
    async_checkpointing: bool = True
    out: str | None = None
    wise_alpha: float = 1.0
    label_texts: bool = False


@dataclasses.dataclass(frozen=True)
class EvalSection:
    """Final evaluation: ``settings`` are (way, shot, query) triples, ``episodes`` each.

    ``seq_len`` tokenizes the evaluated data (``None``: ``data.seq_len``); it changes only
    the evaluated data, e.g. to read longer texts of a held-out domain whole.
    """

    settings: tuple[tuple[int, int, int], ...] = ((5, 1, 15), (5, 5, 15))
    episodes: int = 600
    seed: int = 0
    max_per_class: int | None = None
    seq_len: int | None = None


@dataclasses.dataclass(frozen=True)
class ParallelSection:
    """Device mesh shape over axes ``('data', 'model')`` (-1 = all remaining devices) and a
    sharding rule preset name from :data:`jaxmaml.parallel.RULE_PRESETS`."""

    mesh: tuple[int, ...] = (-1, 1)
    rules: str = "replicated"


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """A whole experiment. ``meta.model`` is the resolved :class:`BertConfig`.

    Build it with :func:`load_config` / :func:`from_dict` (the section defaults above are
    the only defaults; the model section must be resolved to fill ``meta.model``).
    """

    model: ModelSection
    data: DataSection
    meta: MetaConfig
    optim: OptimConfig
    train: TrainSection
    eval: EvalSection
    parallel: ParallelSection
    name: str = "experiment"

    def replace(self, **changes) -> "ExperimentConfig":
        return dataclasses.replace(self, **changes)


SECTIONS: dict[str, type] = {
    "model": ModelSection, "data": DataSection, "meta": MetaConfig, "optim": OptimConfig,
    "train": TrainSection, "eval": EvalSection, "parallel": ParallelSection,
}
_HIDDEN = {"model": ("overrides",), "meta": ("model",)}  # not written as YAML keys
# Keys holding file paths, resolved against the config file's directory when they exist there.
PATH_KEYS = (("model", "name"), ("model", "tokenizer"), ("data", "source"))
_BERT_FIELDS = tuple(f.name for f in dataclasses.fields(BertConfig))


def section_keys(section: str) -> tuple[str, ...]:
    """The YAML keys a section accepts."""
    names = tuple(f.name for f in dataclasses.fields(SECTIONS[section])
                  if f.name not in _HIDDEN.get(section, ()))
    return names + _BERT_FIELDS if section == "model" else names


def all_keys() -> list[str]:
    """Every valid dotted key, e.g. ``train.steps``."""
    return [f"{s}.{k}" for s in SECTIONS for k in section_keys(s)]


# ---------------------------------------------------------------- writing
def to_dict(cfg: ExperimentConfig) -> dict[str, Any]:
    """The config as plain YAML/JSON-able data; ``from_dict(to_dict(c)) == c``."""

    def plain(x):
        if dataclasses.is_dataclass(x):
            return {f.name: plain(getattr(x, f.name)) for f in dataclasses.fields(x)}
        return [plain(v) for v in x] if isinstance(x, tuple) else x

    out: dict[str, Any] = {"name": cfg.name}
    for section in SECTIONS:
        obj = getattr(cfg, section)
        body = {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if f.name not in _HIDDEN.get(section, ())}
        if section == "model":
            body.update({k: plain(v) for k, v in obj.overrides})
        out[section] = body
    return out


def dump_yaml(cfg: ExperimentConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=None)
