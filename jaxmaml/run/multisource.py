"""``data.sources``: load, split and combine several sources; sample and meta-validate them.

Each source is resolved to a single-source config (:meth:`SourceSection.resolve`), loaded,
split class-disjointly and tokenized at its own ``seq_len`` exactly as a ``data.source``
run would be; :func:`~jaxmaml.data.mixture.combine` then joins them into one dataset with
``"source/class"`` class names, padded to the longest ``seq_len``.

The split a multi-source run writes (``split.json``) is the union of the sources' splits
in namespaced names (``train``/``val``/``test``, as for one source) plus ``sources``:
``{name: {"role", "weight", "seq_len", "train", "val", "test"}}`` (plain class names).
A ``heldout`` source has no train or val classes. Meta-val is **per source**: each
training source with meta-val classes is evaluated on its own episodes, and the run's
``val_accuracy`` is the unweighted mean over those sources (``val_by_source`` keeps each).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from jaxmaml.run.config import ConfigError, ExperimentConfig, SourceSection
from jaxmaml.run.config_load import tokenizer_dir
from jaxmaml.data.mixture import SEP, MixtureSampler, combine


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
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir(cfg.model)))
    return int(tok.pad_token_id or 0)


def load_sources(cfg: ExperimentConfig):
    """``(TokenizedData, split)`` of every ``data.sources`` entry, combined.

    Errors name the source: ``data.sources 'debian': ...``.
    """
    from jaxmaml.run.experiment import (cap_per_class, check_split_sizes, class_split, load_text,
                                    tokenize)

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


def evaluate_sources(meta_params: Any, cfg: ExperimentConfig, data, split: dict) -> dict:
    """Meta-val per training source, in the shape of one :func:`evaluate` result.

    Returns ``{"results": {"meta_learned": {"mean", "ci95"}}, "by_source": {name:
    {"mean", "ci95"}}, ...}`` where ``mean`` is the unweighted mean over sources and
    ``ci95`` the 95% half-width of that mean (independent sources:
    ``sqrt(sum ci_i^2) / n``).
    """
    from jaxmaml.run.protocol import evaluate

    t = cfg.train
    by_source = {}
    for name, classes in source_classes(split, "val", roles=("train",)).items():
        res = evaluate(meta_params, cfg.meta, data, classes,
                       [(cfg.meta.way, t.shot, t.query)], episodes=t.eval_episodes,
                       seed=t.seed, methods=("meta_learned",), data_name=name,
                       split="meta_val")[0]
        by_source[name] = res["results"]["meta_learned"]
    if not by_source:
        raise ConfigError("meta-val needs meta-val classes in a training source; set "
                          "num_val or meta_val on one, or train.eval_every=0.")
    means = np.array([r["mean"] for r in by_source.values()])
    cis = np.array([r["ci95"] for r in by_source.values()])
    pooled = {"mean": float(means.mean()),
              "ci95": float(math.sqrt(float((cis ** 2).sum())) / len(cis))}
    return {"way": cfg.meta.way, "shot": t.shot, "query": t.query,
            "episodes": t.eval_episodes, "data": data_name(cfg), "split": "meta_val",
            "seed": t.seed, "results": {"meta_learned": pooled}, "by_source": by_source}


def describe_sources(cfg: ExperimentConfig) -> dict:
    """``jaxmaml data`` for ``data.sources``: per source its counts and class split."""
    from jaxmaml.run.experiment import cap_per_class, class_split, load_text

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
