"""Evaluate a run directory: restore a checkpoint, load the evaluation data, run the protocol.

What ``jaxmaml eval`` does, as a library call (scripts such as ``benchmarks/quickstart.py``
and ``benchmarks/transfer.py`` use it instead of parsing the CLI's output). The evaluated data
is tokenized to ``seq_len`` tokens: ``--seq-len``, else ``eval.seq_len``, else the run's
``data.seq_len``; only the evaluated data changes (training data and the model do not).
The class names the ``*_names`` methods use as priors are the label texts of
:mod:`jaxmaml.data.label_text` (a built-in source's descriptions, else the label made
readable), tokenized the same way.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np

from jaxmaml.atomic_file import write_json_atomically
from jaxmaml.data.mixture import SEP
from jaxmaml.run.config import ConfigError, ExperimentConfig
from jaxmaml.run.data import (cap_per_class, class_texts, data_name, load_data, load_text,
                              source_classes, tokenize)
from jaxmaml.run.export import EVAL_FILE
from jaxmaml.run.finetune_eval import NAMES_METHODS
from jaxmaml.run.load import restore_meta_params
from jaxmaml.run.protocol import DEFAULT_METHODS, evaluate
from jaxmaml.run.state import initial_encoder


class EvalData(NamedTuple):
    """Tokenized evaluation data: ``data`` (a ``TokenizedData``), the ``classes`` to draw
    episodes from, the ``split`` name (``meta_test`` or ``all``), the ``name`` of the source
    and the ``seq_len`` it was tokenized to."""

    data: Any
    classes: list[str]
    split: str
    name: str
    seq_len: int


def eval_seq_len(cfg: ExperimentConfig, seq_len: int | None = None) -> int:
    """Tokens per evaluated example: ``seq_len``, else ``eval.seq_len``, else ``data.seq_len``."""
    n = next(x for x in (seq_len, cfg.eval.seq_len, cfg.data.seq_len) if x is not None)
    limit = cfg.meta.model.max_position_embeddings
    if not 2 <= n <= limit:
        raise ConfigError(f"--seq-len / eval.seq_len={n} must be in [2, {limit}] (the "
                          "model's max_position_embeddings; 2 leaves room for [CLS] and [SEP]).")
    return n


def load_eval_data(cfg: ExperimentConfig, data: str | None = None,
                   text_column: str | None = None, label_column: str | None = None,
                   seq_len: int | None = None, source_name: str | None = None) -> EvalData:
    """The run's meta-test classes, or every class of ``data`` (a file, hub name or a
    built-in source such as ``wordnet``), tokenized to :func:`eval_seq_len` tokens.

    ``eval.max_per_class`` caps a ``data`` file's classes before tokenizing (seeded by
    ``eval.seed``), so a large file is not tokenized whole. ``source_name`` keeps only the
    meta-test classes of that source of a multi-source run (classes named ``NAME/class``).
    """

    n = eval_seq_len(cfg, seq_len)
    tok_cfg = cfg.replace(data=dataclasses.replace(cfg.data, seq_len=n))
    if data:
        ds = cap_per_class(load_text(cfg, data, text_column, label_column),
                           cfg.eval.max_per_class, cfg.eval.seed)
        tokenized = tokenize(tok_cfg, ds)
        return EvalData(tokenized, list(tokenized.class_names), "all", data, n)
    tokenized, split = load_data(tok_cfg)
    classes, name = list(split["test"]), cfg.data.source
    if source_name:
        classes = [c for c in classes if c.startswith(f"{source_name}/")]
        if not classes:
            raise ConfigError(f"no meta-test classes of a source named {source_name!r} in "
                              f"this run (its meta-test classes: {list(split['test'])[:5]}...).")
        name = source_name
    return EvalData(tokenized, classes, "meta_test", name, n)


def record_results(run_dir: str | Path, rows: list[dict]) -> None:
    """Merge ``rows`` (each with ``checkpoint_step``) into the run's ``eval_results.json``.

    A row replaces an earlier one of the same checkpoint, ``wise_alpha``, data, split,
    setting, seq_len and query mix.
    """
    import json


    f = Path(run_dir) / EVAL_FILE
    old = json.loads(f.read_text()) if f.exists() else []
    key = lambda r: (r["checkpoint_step"], r.get("wise_alpha", 1.0), r["data"],  # noqa: E731
                     r["split"], r["way"], r["shot"], r["query"], r["episodes"], r.get("seq_len"),
                     r.get("query_mix", "balanced"), r.get("query_alpha"))
    new_keys = {key(r) for r in rows}
    write_json_atomically(f, [r for r in old if key(r) not in new_keys] + rows)


def evaluate_run(cfg: ExperimentConfig, run_dir: str | Path, *, checkpoint: str = "best",
                 data: str | None = None, text_column: str | None = None,
                 label_column: str | None = None, seq_len: int | None = None,
                 source_name: str | None = None,
                 settings: Sequence[tuple[int, int, int]] | None = None,
                 episodes: int | None = None, methods: Sequence[str] | None = None,
                 encoder: Any = None, meta_params: tuple[int, dict] | None = None,
                 record: bool = False, options: dict | None = None
                 ) -> tuple[int, list[dict]]:
    """``(checkpoint step, results)`` of :func:`jaxmaml.run.protocol.evaluate` on a run.

    Defaults come from the config (``eval.settings``, ``eval.episodes``, the default
    methods). ``options``: more keyword arguments of the protocol (``finetune_opts``,
    ``finetune_episodes``, ``query_mix``, ``query_alpha``, ``per_episode``).
    ``encoder`` (the pretrained params) and ``meta_params`` (``(step, meta_params)``) may be
    passed to reuse them across datasets. Each result row also records ``seq_len`` and the
    number of ``classes`` episodes are drawn from. ``record``: also merge the rows into the
    run's ``eval_results.json`` (:func:`record_results`; not for ``checkpoint="init"``, nor
    when ``run_dir`` does not exist).
    """

    ev = load_eval_data(cfg, data, text_column, label_column, seq_len, source_name)
    encoder = initial_encoder(cfg) if encoder is None else encoder
    step, params = meta_params or restore_meta_params(cfg, run_dir, checkpoint, encoder)
    source = data if data else (source_name or cfg.data.source)
    results = _evaluate_classes(
        cfg, params, encoder, ev.data, ev.classes, settings, episodes, methods,
        data_name=ev.name, split=ev.split, seq_len=ev.seq_len,
        too_few=f"{ev.split} of {ev.name} has {len(ev.classes)}", failed="cannot evaluate",
        source=source, options=options)
    _record(run_dir, checkpoint, step, results, record)
    return step, results


def _evaluate_classes(cfg: ExperimentConfig, params: Any, encoder: Any, data, classes,
                      settings, episodes, methods, *, data_name: str, split: str,
                      seq_len: int, too_few: str, failed: str, source: str | None = None,
                      options: dict | None = None) -> list[dict]:
    """:func:`jaxmaml.run.protocol.evaluate` on ``classes`` of ``data`` with the run's eval
    defaults, its rows marked with ``seq_len`` and the number of ``classes``; a way larger
    than the classes (``too_few`` says what there is) or an impossible setting is a
    :class:`ConfigError`. The ``*_names`` methods get :func:`class_texts` (``source``: whose
    class descriptions)."""

    settings = list(settings or cfg.eval.settings)
    for way, _, _ in settings:
        if way > len(classes):
            raise ConfigError(f"{way}-way episodes need {way} classes but {too_few}; "
                              "lower the way.")
    methods = tuple(methods or DEFAULT_METHODS)
    options = dict(options or {})
    if set(methods) & set(NAMES_METHODS):
        options["class_texts"] = class_texts(cfg, data.class_names, seq_len, source)
    try:
        results = evaluate(params, cfg.meta, data, classes, settings,
                           episodes=episodes or cfg.eval.episodes, seed=cfg.eval.seed,
                           methods=methods, pretrained_params=encoder,
                           data_name=data_name, split=split,
                           max_per_class=cfg.eval.max_per_class, **options)
    except ValueError as e:
        raise ConfigError(f"{failed}: {e}") from e
    return [{**r, "seq_len": seq_len, "classes": len(classes),
             "wise_alpha": cfg.train.wise_alpha} for r in results]


def _record(run_dir, checkpoint: str, step: int, rows: list[dict], record: bool) -> None:
    """With ``record``, merge ``rows`` into the run's ``eval_results.json`` (not for the
    ``init`` checkpoint, nor when ``run_dir`` does not exist); per-episode accuracies are
    not kept there."""
    if record and Path(run_dir).is_dir() and checkpoint != "init":
        record_results(run_dir, [{**{k: v for k, v in r.items() if k != "per_episode"},
                                  "checkpoint_step": step} for r in rows])


def evaluate_sources(cfg: ExperimentConfig, run_dir: str | Path, *, checkpoint: str = "best",
                     seq_len: int | None = None,
                     settings: Sequence[tuple[int, int, int]] | None = None,
                     episodes: int | None = None, methods: Sequence[str] | None = None,
                     encoder: Any = None, meta_params: tuple[int, dict] | None = None,
                     record: bool = False, options: dict | None = None
                     ) -> tuple[int, list[dict]]:
    """A multi-source run (``data.sources``) evaluated **per source**: each training
    source's meta-test classes and each held-out source's classes, never pooled.

    The run's data is loaded and tokenized once; every source is then evaluated as
    :func:`evaluate_run` would evaluate it (same seed, settings and methods). Returns
    ``(checkpoint step, rows)``: the rows of the first source (one per setting), then the
    next source's, in ``data.sources`` order; each row's ``data`` is the source's name and
    ``domain`` is ``in-domain`` (a meta-training source) or ``held-out``. A source without
    meta-test classes is skipped. ``record`` and ``options``: as in :func:`evaluate_run`.
    """

    if not cfg.data.sources:
        raise ConfigError("evaluate_sources needs a multi-source run (data.sources).")
    n = eval_seq_len(cfg, seq_len)
    tokenized, split = load_data(cfg.replace(data=dataclasses.replace(cfg.data, seq_len=n)))
    encoder = initial_encoder(cfg) if encoder is None else encoder
    step, params = meta_params or restore_meta_params(cfg, run_dir, checkpoint, encoder)
    rows = []
    for src in cfg.data.sources:
        classes = [c for c in split["test"] if c.startswith(f"{src.label}{SEP}")]
        if not classes:
            continue
        domain = "held-out" if src.role == "heldout" else "in-domain"
        rows += [{**r, "domain": domain} for r in _evaluate_classes(
            cfg, params, encoder, tokenized, classes, settings, episodes, methods,
            data_name=src.label, split="meta_test", seq_len=n,
            too_few=f"source {src.label!r} has {len(classes)} meta-test classes",
            failed=f"cannot evaluate source {src.label!r}", options=options)]
    _record(run_dir, checkpoint, step, rows, record)
    return step, rows


def evaluate_target(cfg: ExperimentConfig, run_dir: str | Path, *, data: str | None = None,
                    **kwargs) -> tuple[int, list[dict]]:
    """``jaxmaml eval``'s dispatch: a multi-source run without ``data`` (or a
    ``source_name``) is evaluated per source (:func:`evaluate_sources`, held-out sources
    included, never pooled), anything else by :func:`evaluate_run`. ``kwargs`` go to the
    chosen function (``text_column`` and ``label_column`` only make sense with ``data``)."""
    if cfg.data.sources and data is None and kwargs.get("source_name") is None:
        for key in ("text_column", "label_column", "source_name"):
            kwargs.pop(key, None)
        return evaluate_sources(cfg, run_dir, **kwargs)
    return evaluate_run(cfg, run_dir, data=data, **kwargs)


def meta_val_by_source(meta_params: Any, cfg: ExperimentConfig, data, split: dict) -> dict:
    """Meta-val per training source, in the shape of one :func:`evaluate` result.

    Returns ``{"results": {"meta_learned": {"mean", "ci95"}}, "by_source": {name:
    {"mean", "ci95"}}, ...}`` where ``mean`` is the unweighted mean over sources and
    ``ci95`` the 95% half-width of that mean (independent sources:
    ``sqrt(sum ci_i^2) / n``).
    """

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
