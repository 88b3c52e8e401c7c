"""The data of a run: its text, class split and tokenized arrays, from one source or several.

All functions take the resolved :class:`~jaxmaml.run.config.ExperimentConfig`, so a run
directory's saved config reproduces exactly the same data and split.

``data.sources``: each source is resolved to a single-source config
(:meth:`~jaxmaml.run.config.SourceSection.resolve`), loaded, split class-disjointly and
tokenized at its own ``seq_len`` exactly as a ``data.source`` run would be;
:func:`~jaxmaml.data.mixture.combine` then joins them into one dataset with
``"source/class"`` class names, padded to the longest ``seq_len``. The split a multi-source
run writes (``split.json``) is the union of the sources' splits in namespaced names
(``train``/``val``/``test``, as for one source) plus ``sources``: ``{name: {"role",
"weight", "seq_len", "train", "val", "test"}}`` (plain class names). A ``heldout`` source
has no train or val classes.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np
from transformers import AutoTokenizer

from jaxmaml.data.builtin import BUILTIN_SOURCES, load_builtin
from jaxmaml.data.label_text import builtin_descriptions, label_texts
from jaxmaml.data.mixture import combine, MixtureSampler, SEP
from jaxmaml.data.sources import ColumnNotFound, from_lists, load_text_dataset, TextDataset
from jaxmaml.data.splits import cap_rows, resolve_split
from jaxmaml.data.tokenize import special_token_ids, tokenize_dataset
from jaxmaml.run.config import ConfigError, ExperimentConfig, SourceSection
from jaxmaml.run.config_load import tokenizer_dir

SPLIT_FILE = "split.json"


def load_text(cfg: ExperimentConfig, source: str | None = None, text_column: str | None = None,
              label_column: str | None = None):
    """The :class:`~jaxmaml.data.sources.TextDataset` of ``data.source`` (or ``source``)."""

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

    keep = cap_rows(dataset.labels, len(dataset.class_names), max_per_class, seed)
    return TextDataset([dataset.texts[i] for i in keep], dataset.labels[keep],
                       dataset.class_names, {**dataset.info, "max_per_class": max_per_class})


def tokenize(cfg: ExperimentConfig, dataset):
    """Tokenize ``dataset`` with the model's tokenizer to ``data.seq_len`` (cached)."""

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


def class_texts(cfg: ExperimentConfig, class_names: Sequence[str], seq_len: int,
                source: str | None = None) -> tuple[Any, Any]:
    """``(input_ids, attention_mask)`` ``[C, seq_len]``: a label text per class of
    ``class_names`` (:func:`jaxmaml.data.label_text.label_texts`), tokenized with the
    model's tokenizer. A name ``"label/class"`` of a multi-source run reads the
    descriptions of its ``data.sources`` entry's source; other names those of ``source``."""

    sources = {s.label: s.source for s in cfg.data.sources}
    texts = []
    for name in class_names:
        label, sep, rest = name.partition(SEP)
        src, cls = (sources[label], rest) if sep and label in sources else (source, name)
        texts.append(label_texts([cls], builtin_descriptions(str(src)))[0])
    ds = from_lists(texts, list(range(len(texts))), class_names=[str(i) for i in
                                                                 range(len(texts))])
    tok = tokenize(cfg.replace(data=dataclasses.replace(cfg.data, seq_len=seq_len)), ds)
    return tok.input_ids, tok.attention_mask


def unknown_token_rate(cfg: ExperimentConfig, data) -> float:
    """Fraction of the text tokens (not [CLS]/[SEP]/padding) of ``data`` that are [UNK]."""

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
    ``data.sources`` the sources are combined (:func:`load_sources`).
    """
    if cfg.data.sources:
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


# ---------------------------------------------------------------- several sources (data.sources)
def data_name(cfg: ExperimentConfig) -> str:
    """What results call the data: ``data.source``, or the source names joined by ``+``."""
    return "+".join(s.label for s in cfg.data.sources) if cfg.data.sources else cfg.data.source


def source_config(cfg: ExperimentConfig, source: SourceSection) -> ExperimentConfig:
    """``cfg`` as a single-source run of ``source``."""
    return cfg.replace(data=source.resolve(cfg.data))


def _heldout_split(source: SourceSection, class_names) -> dict[str, list[str]]:
    test = list(source.meta_test) or list(class_names)
    unknown = [c for c in test if c not in class_names]
    if unknown:
        raise ConfigError(f"meta_test names unknown classes {unknown}; known: "
                          f"{list(class_names)}.")
    return {"train": [], "val": [], "test": test}


def _pad_id(cfg: ExperimentConfig) -> int:

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir(cfg.model)))
    return int(tok.pad_token_id or 0)


def load_sources(cfg: ExperimentConfig):
    """``(TokenizedData, split)`` of every ``data.sources`` entry, combined.

    Errors name the source: ``data.sources 'debian': ...``.
    """

    parts, split = [], {"train": [], "val": [], "test": [], "sources": {}}
    for src in cfg.data.sources:
        scfg, name = source_config(cfg, src), src.label
        try:
            dataset = load_text(scfg)
            if src.role == "heldout":
                own = _heldout_split(src, dataset.class_names)
            else:
                own = class_split(scfg, dataset.class_names)
            dataset = cap_per_class(dataset, scfg.data.max_per_class, scfg.data.split_seed)
            data = tokenize(scfg, dataset)
            if src.role == "train":  # a source without meta-val classes is not validated
                check_split_sizes(scfg if own["val"] else scfg.replace(
                    train=dataclasses.replace(scfg.train, eval_every=0)), data, own)
        except ConfigError as e:
            raise ConfigError(f"data.sources {name!r}: {e}") from e
        parts.append((name, data))
        for part in ("train", "val", "test"):
            split[part] += [f"{name}{SEP}{c}" for c in own[part]]
        split["sources"][name] = {"role": src.role, "weight": src.weight,
                                  "seq_len": scfg.data.seq_len, **own}
    lengths = {d.input_ids.shape[1] for _, d in parts}
    pad = _pad_id(cfg) if len(lengths) > 1 else 0
    return combine(parts, [pad] * len(parts)), split


def mixture_sampler(cfg: ExperimentConfig, data, split: dict) -> MixtureSampler:
    """The meta-training sampler over the ``train``-role sources' meta-train classes."""
    t = cfg.train
    train = [s for s in cfg.data.sources if s.role == "train"]
    groups = [(s.label, [f"{s.label}{SEP}{c}" for c in split["sources"][s.label]["train"]])
              for s in train]
    return MixtureSampler(data, groups, [s.weight for s in train], cfg.meta.way, t.shot,
                          t.query, t.tasks, t.seed)


def source_classes(split: dict, part: str, roles=("train", "heldout")) -> dict[str, list[str]]:
    """``{source name: its namespaced classes of split part}`` (``part``: train/val/test),
    for sources of the given roles that have any; e.g. per-source meta-test evaluation:
    ``for name, classes in source_classes(split, "test").items(): evaluate(..., classes)``."""
    return {name: [f"{name}{SEP}{c}" for c in s[part]] for name, s in split["sources"].items()
            if s["role"] in roles and s[part]}


def describe_sources(cfg: ExperimentConfig) -> dict:
    """``jaxmaml data`` for ``data.sources``: per source its counts and class split."""

    out = {"source": data_name(cfg), "sources": {}}
    for src in cfg.data.sources:
        scfg = source_config(cfg, src)
        try:
            ds = load_text(scfg)
            split = (_heldout_split(src, ds.class_names) if src.role == "heldout"
                     else class_split(scfg, ds.class_names))
        except ConfigError as e:
            raise ConfigError(f"data.sources {src.label!r}: {e}") from e
        counts = cap_per_class(ds, scfg.data.max_per_class, scfg.data.split_seed).class_counts()
        out["sources"][src.label] = {
            "role": src.role, "weight": src.weight, "seq_len": scfg.data.seq_len,
            "examples": sum(counts.values()), "classes": len(ds.class_names),
            "split": {p: {c: counts[c] for c in split[p]} for p in ("train", "val", "test")}}
    return out
