"""What train, eval and export share: an experiment's data, split, initial encoder, state.

All functions take the resolved :class:`~jaxmaml.run.config.ExperimentConfig`, so a run
directory's saved config reproduces exactly the same data, split and initialization.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np
import optax

from jaxmaml.run.config import ConfigError, ExperimentConfig, ModelSection
from jaxmaml.run.config_load import model_dir, resolve_bert, tokenizer_dir
from jaxmaml.meta.outer import make_optimizer, new_state
from jaxmaml.models.bert import BertConfig, init_params
from jaxmaml.tree import abstract
from jaxmaml.types import MetaState

SPLIT_FILE = "split.json"


def load_text(cfg: ExperimentConfig, source: str | None = None, text_column: str | None = None,
              label_column: str | None = None):
    """The :class:`~jaxmaml.data.sources.TextDataset` of ``data.source`` (or ``source``)."""
    from jaxmaml.data.builtin import BUILTIN_SOURCES, load_builtin
    from jaxmaml.data.sources import ColumnNotFound, load_text_dataset

    d = cfg.data
    what = f"--data {source}" if source else f"data.source={d.source!r}"
    source = source or d.source
    try:
        if source in BUILTIN_SOURCES:
            return load_builtin(source)
        return load_text_dataset(source, text_column=text_column or d.text_column,
                                 label_column=label_column or d.label_column,
                                 split=d.hub_split)
    except ColumnNotFound as e:
        given = text_column if e.role == "text" else label_column
        setting = f"--{e.role}-column" if given else f"data.{e.role}_column"
        raise ConfigError(f"cannot load {what}: {e.named(setting)}") from e
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(f"cannot load {what}: {e}") from e


def class_split(cfg: ExperimentConfig, class_names) -> dict[str, list[str]]:
    """The class-disjoint ``{"train", "val", "test"}`` split the config asks for.

    Explicit lists (``data.meta_train`` etc.) win; otherwise ``data.num_*`` classes drawn
    with ``data.split_seed``.
    """
    from jaxmaml.data.splits import resolve_split

    d = cfg.data
    try:
        if d.meta_train or d.meta_test:
            return resolve_split({"train": list(d.meta_train), "val": list(d.meta_val),
                                  "test": list(d.meta_test)}, class_names)
        return resolve_split((d.num_train, d.num_val, d.num_test), class_names, d.split_seed)
    except ValueError as e:
        raise ConfigError(f"invalid class split: {e} (set data.meta_train/meta_val/meta_test "
                          "or data.num_train/num_val/num_test).") from e


def cap_per_class(dataset, max_per_class: int | None, seed: int):
    """At most ``max_per_class`` examples of each class of a ``TextDataset``
    (:func:`jaxmaml.data.splits.cap_rows`: seeded choice, original order)."""
    if max_per_class is None:
        return dataset
    from jaxmaml.data.sources import TextDataset
    from jaxmaml.data.splits import cap_rows

    keep = cap_rows(dataset.labels, len(dataset.class_names), max_per_class, seed)
    return TextDataset([dataset.texts[i] for i in keep], dataset.labels[keep],
                       dataset.class_names, {**dataset.info, "max_per_class": max_per_class})


def tokenize(cfg: ExperimentConfig, dataset):
    """Tokenize ``dataset`` with the model's tokenizer to ``data.seq_len`` (cached)."""
    from jaxmaml.data.tokenize import tokenize_dataset

    tok = tokenizer_dir(cfg.model)
    try:
        data = tokenize_dataset(dataset, tok, cfg.data.seq_len, cache_dir=cfg.data.cache_dir)
    except FileNotFoundError as e:
        raise ConfigError(f"{e} (set model.tokenizer to a tokenizer directory).") from e
    vocab = cfg.meta.model.vocab_size
    top = int(data.input_ids.max()) if data.input_ids.size else 0
    if top >= vocab:
        raise ConfigError(
            f"the tokenizer ({tok}) produces token ids up to {top}, but the model's vocabulary "
            f"has {vocab} rows (meta.model vocab_size); use the model's own tokenizer "
            f"(model.tokenizer) or a model with vocab_size >= {top + 1}.")
    return data


def unknown_token_rate(cfg: ExperimentConfig, data) -> float:
    """Fraction of the text tokens (not [CLS]/[SEP]/padding) of ``data`` that are [UNK]."""
    from jaxmaml.data.tokenize import special_token_ids

    unk, special = special_token_ids(tokenizer_dir(cfg.model))
    if unk is None:
        return 0.0
    ids = np.asarray(data.input_ids)
    text = (np.asarray(data.attention_mask) == 1) & ~np.isin(ids, [i for i in special
                                                                  if i != unk])
    return float((text & (ids == unk)).sum() / max(int(text.sum()), 1))


def describe_data(cfg: ExperimentConfig) -> dict[str, Any]:
    """``jaxmaml data``: examples, classes, words per text, the tokenizer's [UNK] rate and
    the class split with examples per class (after ``data.max_per_class``)."""
    ds = cap_per_class(load_text(cfg), cfg.data.max_per_class, cfg.data.split_seed)
    split = class_split(cfg, ds.class_names)
    counts = ds.class_counts()
    lengths = np.array([len(t.split()) for t in ds.texts])
    return {"source": cfg.data.source, "examples": len(ds), "classes": len(ds.class_names),
            "words_per_text": {"mean": float(lengths.mean()), "max": int(lengths.max())},
            "unknown_token_rate": unknown_token_rate(cfg, tokenize(cfg, ds)),
            "split": {p: {c: counts[c] for c in split[p]} for p in ("train", "val", "test")}}


def load_data(cfg: ExperimentConfig):
    """``(TokenizedData, split)`` for meta-training and meta-val/test.

    ``data.max_per_class`` caps examples per class before tokenizing. With
    ``data.sources`` the sources are combined (:func:`jaxmaml.run.multisource.load_sources`).
    """
    if cfg.data.sources:
        from jaxmaml.run.multisource import load_sources
        return load_sources(cfg)
    dataset = load_text(cfg)
    split = class_split(cfg, dataset.class_names)
    dataset = cap_per_class(dataset, cfg.data.max_per_class, cfg.data.split_seed)
    data = tokenize(cfg, dataset)
    check_split_sizes(cfg, data, split)
    return data, split


def check_split_sizes(cfg: ExperimentConfig, data, split: dict[str, list[str]]) -> None:
    """Fail early if a split cannot supply an episode (too few classes or examples)."""
    counts = np.bincount(data.labels, minlength=len(data.class_names))
    by_name = dict(zip(data.class_names, counts))
    t, way = cfg.train, cfg.meta.way
    need = {"train": (way, t.shot + t.query)}
    if t.eval_every:
        need["val"] = (way, t.shot + t.query)
    for part, (n_classes, per_class) in need.items():
        names = split[part]
        if len(names) < n_classes:
            raise ConfigError(f"the meta-{part} split has {len(names)} classes but meta.way="
                              f"{way} needs {n_classes}; give it more classes.")
        small = [f"{c} ({by_name[c]})" for c in names if by_name[c] < per_class]
        if small:
            raise ConfigError(f"meta-{part} classes with fewer than shot+query={per_class} "
                              f"examples: {', '.join(small)}; lower train.shot/query or drop "
                              "those classes from the split.")


def check_eval_settings(cfg: ExperimentConfig, data, split: dict[str, list[str]]) -> None:
    """Fail before training if ``eval.settings`` ask more of the meta-test split than it has
    (``jaxmaml eval`` would otherwise fail only after the run)."""
    counts = np.bincount(data.labels, minlength=len(data.class_names))
    by_name = dict(zip(data.class_names, counts))
    cap = cfg.eval.max_per_class
    test = split["test"]
    for way, shot, query in cfg.eval.settings:
        if way > len(test):
            raise ConfigError(f"eval.settings has {way}-way episodes but the meta-test split "
                              f"has {len(test)} classes; lower the way in eval.settings or "
                              "give the split more test classes.")
        small = [f"{c} ({by_name[c]})" for c in test
                 if min(by_name[c], cap or by_name[c]) < shot + query]
        if small:
            raise ConfigError(f"eval.settings ({way}, {shot}, {query}) needs shot+query="
                              f"{shot + query} examples per meta-test class; these have fewer: "
                              f"{', '.join(small)}. Lower shot/query in eval.settings.")


def load_encoder(model: ModelSection, key: jax.Array, config: BertConfig | None = None
                 ) -> tuple[dict, BertConfig]:
    """``(params, config)`` of a model section: a preset's random init from ``key`` (with
    ``config``, default the section's :func:`~jaxmaml.run.config_load.resolve_bert`), or the weights
    of ``minilm`` / a Hugging Face directory (``key`` unused)."""
    path = model_dir(model)
    if path is None:
        config = config or resolve_bert(model)
        return init_params(config, key), config
    from jaxmaml.models.hf import load_pretrained

    return load_pretrained(path, **dict(model.overrides))


def initial_encoder(cfg: ExperimentConfig) -> dict:
    """Pretrained weights (``minilm`` or a HF directory) or a preset's random init.

    Random presets are initialized from ``fold_in(key(train.seed), 0)``, so every command
    (train, eval baselines, export) recreates the same initial encoder.
    """
    key = jax.random.fold_in(jax.random.key(cfg.train.seed), 0)
    return load_encoder(cfg.model, key, cfg.meta.model)[0]


def state_init_fn(cfg: ExperimentConfig, optimizer: optax.GradientTransformation
                  ) -> Callable[[dict], MetaState]:
    """``encoder -> MetaState`` (learner extras and the run key from ``train.seed``)."""
    return lambda encoder: new_state(encoder, cfg.meta, optimizer, jax.random.key(cfg.train.seed))


def abstract_state(cfg: ExperimentConfig, encoder: Any, shardings: Any = None) -> Any:
    """``ShapeDtypeStruct`` tree of the run's MetaState (an Orbax restore target).

    ``encoder``: concrete or abstract (``jax.eval_shape``) params. ``shardings``: a tree of
    shardings matching the state (from :func:`jaxmaml.parallel.tree_shardings`); default:
    everything on the first device. Restoring into this target places each shard on its
    device, whatever mesh the checkpoint was saved from.
    """
    shapes = jax.eval_shape(state_init_fn(cfg, make_optimizer(cfg.optim)), encoder)
    if shardings is None:
        one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        shardings = jax.tree.map(lambda _: one, shapes)
    return abstract(shapes, shardings)


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON atomically (temp file + rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    tmp.replace(path)
