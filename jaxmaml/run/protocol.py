"""The few-shot evaluation protocol and its baselines.

For each setting (way, shot, query): ``episodes`` episodes drawn from the given classes,
accuracy mean and 95% confidence interval (1.96 * std / sqrt(E)) for

- ``meta_learned``: the meta-learned init + the learner's inner loop,
- ``pretrained_finetune``: the pretrained init + the same inner loop (no meta-training),
- ``nearest_centroid``: a frozen pretrained encoder, nearest class mean of pooled features
  (squared euclidean, unnormalized; a weak baseline kept as an extra row),
- the strong baselines of :mod:`jaxmaml.meta.baselines` (``cosine_centroid``, ``linear_probe``,
  ``pretrained_adapt_cosine``), ``meta_learned_centroid`` and ``meta_learned_probe`` (the
  meta-learned encoder as a plain sentence encoder under a cosine centroid and a linear
  probe),
- test-time fine-tuning (``finetune``, a baseline: the original encoder;
  ``meta_learned_finetune``: the meta-learned one), class names as priors (``*_names``) and
  transductive refinement (``*_trans``) of the cosine centroid and of fine-tuning
  (:mod:`jaxmaml.run.finetune_eval`); fine-tuning methods run on the first
  ``finetune_episodes`` episodes (200 by default), the others on all of them.

All methods see the same episodes (a paired comparison; methods with fewer episodes are
paired on the episodes both ran). The encoder is fixed during
evaluation, so everything below the first layer the inner loop adapts is computed once per
example (not once per episode and inner step): evaluating 600 episodes of an ANIL or
top-k learner on a 6-layer encoder takes seconds on a CPU.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxmaml.data.episodes import EpisodeSampler, TokenizedData
from jaxmaml.data.splits import cap_rows
from jaxmaml.meta import baselines, encoding, filters, heads
from jaxmaml.meta.config import MetaConfig
from jaxmaml.meta.finetune import FinetuneOptions
from jaxmaml.meta.lora import merged_meta_params
from jaxmaml.meta.outer import init_meta_params, make_eval_step
from jaxmaml.run import finetune_eval
from jaxmaml.types import Episodes, Examples

# What `jaxmaml eval` runs unless told (--methods): the cheap methods.
DEFAULT_METHODS = ("meta_learned", "meta_learned_centroid", "meta_learned_probe",
                   "pretrained_finetune", "pretrained_adapt_cosine", "cosine_centroid",
                   "linear_probe", "nearest_centroid")
METHODS = DEFAULT_METHODS + finetune_eval.FT_METHODS
# The methods that use only the original (pretrained) encoder: claims of "+N points" for the
# meta-learned init are made against the best of these.
BASELINES = ("pretrained_finetune", "pretrained_adapt_cosine", "cosine_centroid",
             "linear_probe", "nearest_centroid", "finetune")
# The practitioner's baselines our best setting is measured against (best_setting gain).
PRACTICAL_BASELINES = ("linear_probe", "finetune")
# The meta-learned encoder under a classifier (or adaptation), paired with the original
# encoder under the same one.
PAIRED_WITH = {"meta_learned_centroid": "cosine_centroid", "meta_learned_probe": "linear_probe",
               **finetune_eval.PAIRED_WITH}
METHOD_LABELS = {**finetune_eval.LABELS,
    "meta_learned": "meta-learned init + inner loop",
    "meta_learned_centroid": "meta-learned encoder, cosine centroid",
    "meta_learned_probe": "meta-learned encoder, linear probe",
    "pretrained_finetune": "pretrained init + inner loop",
    "pretrained_adapt_cosine": "pretrained + inner loop, cosine head",
    "cosine_centroid": "original encoder, cosine centroid",
    "linear_probe": "original encoder, linear probe",
    "nearest_centroid": "original encoder, euclidean centroid",
}
METHOD_LABELS = {m: METHOD_LABELS[m] for m in METHODS}


def best_baseline(results: dict[str, dict[str, float]]) -> tuple[str, float] | None:
    """``(method, mean)`` of the best of :data:`BASELINES` in ``results`` (``None`` if none)."""
    scored = [(results[m]["mean"], m) for m in BASELINES if m in results]
    if not scored:
        return None
    mean, method = max(scored)
    return method, mean


def gain_over_baselines(results: dict[str, dict[str, float]],
                        method: str = "meta_learned") -> float | None:
    """Accuracy points (x100) of ``method`` over the best baseline (``None`` if either is
    missing)."""
    best = best_baseline(results)
    if best is None or method not in results:
        return None
    return 100.0 * (results[method]["mean"] - best[1])


def gain_text(row: dict, method: str = "meta_learned") -> str | None:
    """Points of ``method`` over its reference in one result row, e.g. ``"+6.0 ± 0.4"``:
    ``meta_learned`` over the best baseline (:func:`gain_over_baselines`),
    ``meta_learned_centroid`` / ``meta_learned_probe`` over the original encoder under the
    same classifier (:data:`PAIRED_WITH`; paired only).
    The ``±`` is the paired 95% CI of the row's ``gains`` (absent in rows without them);
    ``None`` when the methods are missing."""
    paired = row.get("gains", {}).get(method)
    if method == "meta_learned":
        gain = gain_over_baselines(row["results"])
    else:
        gain = None if paired is None else 100.0 * paired["mean"]
    if gain is None:
        return None
    return f"{gain:+.1f}" + ("" if paired is None else f" ± {100 * paired['ci95']:.1f}")


def paired_gains(accs: dict[str, np.ndarray]) -> dict[str, dict]:
    """Per-episode (paired) accuracy differences, mean and 95% CI.

    ``{"meta_learned": {"vs": best baseline, "mean", "ci95", "episodes"}, method: {"vs":
    the same classifier on the original encoder, ...} for each of :data:`PAIRED_WITH`,
    "best_setting": {"method": the best method outside :data:`BASELINES`, "vs": the best of
    :data:`PRACTICAL_BASELINES`, ...}}`` from ``{method: [E_m] accuracies}`` on the same
    episodes; "best" is the highest mean. Two methods with different episode counts are
    compared on the episodes both ran (the first ``min(E_a, E_b)``). ``best_setting`` picks
    its method on the same episodes it scores (an optimistic choice; choose a setting on
    validation data to claim it). Entries whose methods are missing are left out.
    A difference on the same episodes has a much smaller CI than the two accuracies' CIs
    suggest, since episode difficulty cancels.
    """
    means = {m: {"mean": float(np.mean(a))} for m, a in accs.items()}
    out = {}
    best = best_baseline(means)
    pairs = {"meta_learned": best and best[0], **PAIRED_WITH}
    for method, vs in pairs.items():
        if vs and method in accs and vs in accs:
            out[method] = {"vs": vs, **paired_difference(accs[method], accs[vs])}
    ours = [(v["mean"], m) for m, v in means.items() if m not in BASELINES]
    theirs = [(means[m]["mean"], m) for m in PRACTICAL_BASELINES if m in means]
    if ours and theirs:
        method, vs = max(ours)[1], max(theirs)[1]
        out["best_setting"] = {"method": method, "vs": vs,
                               **paired_difference(accs[method], accs[vs])}
    return out


def paired_difference(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """``{"mean", "ci95", "episodes"}`` of ``a - b`` on the episodes both have."""
    n = min(len(a), len(b))
    diff = np.asarray(a[:n], np.float64) - np.asarray(b[:n], np.float64)
    return {**mean_ci95(diff), "episodes": n}


def mean_ci95(values: np.ndarray) -> dict[str, float]:
    """``{"mean", "ci95"}`` of per-episode accuracies (normal approximation)."""
    values = np.asarray(values, np.float64)
    ci = 1.96 * values.std(ddof=1) / math.sqrt(len(values)) if len(values) > 1 else float("nan")
    return {"mean": float(values.mean()), "ci95": float(ci)}


def _eval_config(cfg: MetaConfig) -> MetaConfig:
    """``cfg`` with every inner-frozen bottom layer treated as precomputable.

    During evaluation nothing is meta-trained, so the layers below the first adapted one
    are constants per example.
    """
    if not encoding.caches_bottom(cfg):
        return cfg
    return cfg.replace(outer_frozen_layers=filters.first_adapted_layer(cfg))


@functools.lru_cache(maxsize=16)
def _features_fn(cfg: MetaConfig):
    return jax.jit(lambda enc, i, m: encoding.features(enc, Examples(i, m, None, None), cfg))


@functools.lru_cache(maxsize=32)
def _eval_fn(cfg: MetaConfig):
    """One compiled eval step per (config, way): periodic meta-val does not recompile."""
    return jax.jit(make_eval_step(cfg))


def _pooled_features(encoder: Any, cfg: MetaConfig, ids: np.ndarray, mask: np.ndarray,
                     batch_size: int = 128) -> np.ndarray:
    """Frozen-encoder pooled features ``[N, H]`` for nearest-centroid."""
    return encoding.map_padded_batches(_features_fn(cfg), encoder, ids, mask, batch_size)


@jax.jit(static_argnames="way")
def _nearest_centroid_acc(s_feats, s_labels, q_feats, q_labels, way: int):
    """Per-task accuracy ``[T]`` of the nearest class mean (squared euclidean).

    ``s_feats`` ``[T, way*shot, H]``, ``q_feats`` ``[T, way*query, H]``.
    """

    def one(sf, sl, qf, ql):
        protos = heads.prototypes(sf, sl, jnp.ones(sl.shape), way)
        d = ((qf[:, None, :] - protos[None]) ** 2).sum(-1)
        return (jnp.argmin(d, -1) == ql).mean()

    return jax.vmap(one)(s_feats, s_labels, q_feats, q_labels)


def _examples(arrays: dict[str, np.ndarray], idx: np.ndarray, labels: np.ndarray) -> Examples:
    return Examples(arrays["input_ids"][idx], arrays["attention_mask"][idx],
                    labels.astype(np.int32), np.ones(labels.shape, np.float32),
                    None if arrays.get("bottom") is None else arrays["bottom"][idx])


def evaluate(meta_params: dict, cfg: MetaConfig, data, classes: Sequence[str],
             settings: Sequence[tuple[int, int, int]], episodes: int = 600, seed: int = 0,
             methods: Sequence[str] = DEFAULT_METHODS, pretrained_params: Any = None,
             data_name: str = "", split: str = "meta_test", batch_tasks: int = 20,
             max_per_class: int | None = None, class_texts: tuple | None = None,
             finetune_opts: FinetuneOptions | None = None,
             finetune_episodes: int | None = None, query_mix: str = "balanced",
             query_alpha: float = 2.0, per_episode: bool = False) -> list[dict]:
    """Run the evaluation protocol; one result dict per setting.

    Args:
      meta_params: the meta-learned ``{"encoder": ..., **extras}`` (LoRA factors, as
        meta-val passes a training state's, are merged into the encoder first).
      cfg: the run's :class:`MetaConfig` (``way`` is replaced per setting).
      data: a ``TokenizedData`` (input_ids/attention_mask ``[N, L]``, labels ``[N]``,
        class_names).
      classes: the class names to draw episodes from (e.g. the meta-test split).
      settings: ``(way, shot, query)`` triples.
      episodes: episodes per setting (E).
      methods: a subset of :data:`METHODS` (default :data:`DEFAULT_METHODS`).
      pretrained_params: BERT params of the pretrained init (needed by the baselines).
      max_per_class: cap the examples per class in the pool (seeded), bounding the
        one-off feature computation; ``None`` uses every example.
      class_texts: ``(input_ids, attention_mask)`` ``[C, L]``: a label text per class of
        ``data.class_names`` (the ``*_names`` methods; :mod:`jaxmaml.data.label_text`).
      finetune_opts: the test-time fine-tuning of the ``*finetune*`` methods (default: the
        run's ``meta.finetune``, :class:`~jaxmaml.meta.options.FinetuneOptions`).
      finetune_episodes: episodes of the fine-tuning methods, the first of the E
        (default ``min(E, 200)``).
      query_mix, query_alpha: the query batches (``"balanced"``, or ``"dirichlet"``
        class proportions; :class:`~jaxmaml.data.episodes.EpisodeSampler`).
      per_episode: also return each method's accuracy on each episode, in episode order
        (``"per_episode": {method: [E_m]}``), so that methods of different runs or
        evaluations on the same episodes can be paired afterwards.

    Returns:
      ``[{"way", "shot", "query", "episodes", "query_mix", "data", "split", "seed",
      "results": {method: {"mean", "ci95", "episodes"}}, "gains": {method: {"vs", "mean",
      "ci95", "episodes"}}}]`` (+ ``"query_alpha"`` for Dirichlet batches and
      ``"finetune"``, the options, when a fine-tuning method ran; ``"per_episode"`` when
      asked): ``gains`` are the paired per-episode differences of :func:`paired_gains`.
    """
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise ValueError(f"unknown evaluation method(s) {sorted(unknown)}; use {METHODS}.")
    # before anything reads the encoder: evaluation precomputes every layer below the first
    # adapted one (all of them for a metric learner) from meta_params["encoder"]
    meta_params = merged_meta_params(meta_params)
    needs_pretrained = set(BASELINES) | {m for m, s in finetune_eval.SPECS.items()
                                         if s[0] == "pretrained"}
    if pretrained_params is None and set(methods) & needs_pretrained:
        raise ValueError("the baselines need pretrained_params (the pretrained BERT params).")
    opts = finetune_opts or cfg.finetune
    ft_episodes = min(episodes, finetune_episodes or finetune_eval.FINETUNE_EPISODES)
    pool = _pool(data, classes, max_per_class, seed)
    ecfg = _eval_config(cfg)
    encoders, arrays = _adapting_methods(methods, meta_params, pretrained_params, cfg, ecfg,
                                         pool, seed)
    frozen = _sentence_features(methods, meta_params, pretrained_params, cfg, pool)
    if "nearest_centroid" in methods:
        frozen["nearest_centroid"] = _pooled_features(
            pretrained_params, cfg.replace(outer_frozen_layers=0), pool.input_ids,
            pool.attention_mask)
    ft = [m for m in methods if m in finetune_eval.SPECS]
    prep = finetune_eval.prepare(ft, {"pretrained": pretrained_params,
                                      "meta_learned": meta_params["encoder"]},
                                 cfg, pool, class_texts, opts) if ft else None
    common = {"query_mix": query_mix, "data": data_name, "split": split, "seed": seed}
    extra = {"query_alpha": query_alpha} if query_mix != "balanced" else {}
    if set(ft) & set(finetune_eval.FINETUNE_METHODS):
        extra["finetune"] = dataclasses.asdict(opts)
    results = []
    for way, shot, query in settings:
        accs = _setting_accuracies(methods, encoders, arrays, frozen, prep, ecfg, pool,
                                   classes, (way, shot, query), episodes, ft_episodes, seed,
                                   batch_tasks, (query_mix, query_alpha))
        results.append({"way": way, "shot": shot, "query": query, "episodes": episodes,
                        **common, **_scores(accs, per_episode), **extra})
    return results


def _scores(accs: dict[str, np.ndarray], per_episode: bool) -> dict:
    """``{"results", "gains"}`` (+ ``"per_episode"``) of one setting's ``{method: [E_m]}``."""
    out = {"results": {m: {**mean_ci95(a), "episodes": len(a)} for m, a in accs.items()},
           "gains": paired_gains(accs)}
    if per_episode:
        out["per_episode"] = {m: [round(float(x), 6) for x in a] for m, a in accs.items()}
    return out


def _adapting_methods(methods: Sequence[str], meta_params: dict, pretrained_params: Any,
                      cfg: MetaConfig, ecfg: MetaConfig, pool, seed: int
                      ) -> tuple[dict[str, dict], dict[str, dict[str, np.ndarray]]]:
    """``(meta_params, pool arrays)`` per method that adapts to each episode: the token
    arrays, plus the frozen bottom computed once per example when ``ecfg`` has one."""
    encoders = {"meta_learned": meta_params}
    if "pretrained_finetune" in methods:
        encoders["pretrained_finetune"] = init_meta_params(pretrained_params, cfg,
                                                           jax.random.key(seed))
    if "pretrained_adapt_cosine" in methods:
        encoders["pretrained_adapt_cosine"] = {"encoder": pretrained_params}
    arrays = {}
    for name in [m for m in METHODS if m in methods and m in encoders]:
        if name == "pretrained_adapt_cosine" and "pretrained_finetune" in arrays:
            arrays[name] = arrays["pretrained_finetune"]  # same encoder, same inputs
            continue
        a = {"input_ids": pool.input_ids, "attention_mask": pool.attention_mask}
        if ecfg.outer_frozen_layers:
            a["bottom"] = encoding.precompute_bottom(encoders[name]["encoder"], ecfg,
                                                  pool.input_ids, pool.attention_mask)
        arrays[name] = a
    return {m: encoders[m] for m in arrays}, arrays


def _setting_accuracies(methods, encoders, arrays, frozen, prep, ecfg: MetaConfig, pool,
                        classes, setting: tuple[int, int, int], episodes: int,
                        ft_episodes: int, seed: int, batch_tasks: int,
                        query_mix: tuple[str, float]) -> dict[str, np.ndarray]:
    """``{method: [E_m]}`` accuracies of one ``(way, shot, query)`` setting: the same
    episodes (``batch_tasks`` at a time) for every method; the fine-tuning methods run on
    the first ``ft_episodes``, the others on all ``episodes``."""

    way, shot, query = setting
    sampler = EpisodeSampler(pool, list(classes), way, shot, query, batch_tasks, seed,
                             query_mix=query_mix[0], query_alpha=query_mix[1])
    eval_fns = {m: (baselines.cosine_adapt_eval_fn if m == "pretrained_adapt_cosine"
                    else _eval_fn)(ecfg.replace(way=way)) for m in arrays}
    ft = [m for m in methods if m in finetune_eval.SPECS]
    slow = set(finetune_eval.FINETUNE_METHODS)
    accs: dict[str, list[np.ndarray]] = {m: [] for m in methods}
    for b in range(-(-episodes // batch_tasks)):
        idx = sampler.indices(b)
        for m in arrays:
            eps = Episodes(_examples(arrays[m], idx.support_idx, idx.support_labels),
                           _examples(arrays[m], idx.query_idx, idx.query_labels))
            accs[m].append(np.asarray(eval_fns[m](encoders[m], eps)["accuracy"]))
        for m, feats in frozen.items():
            score = (_nearest_centroid_acc if m == "nearest_centroid"
                     else functools.partial(baselines.frozen_accuracy, m))
            accs[m].append(np.asarray(score(feats[idx.support_idx], idx.support_labels,
                                            feats[idx.query_idx], idx.query_labels, way=way)))
        now = [m for m in ft if m not in slow or b * batch_tasks < ft_episodes]
        if now:
            for m, acc in finetune_eval.score(prep, now, idx, way).items():
                accs[m].append(acc)
    return {m: np.concatenate(accs[m])[:ft_episodes if m in slow else episodes]
            for m in methods}


def _sentence_features(methods: Sequence[str], meta_params: dict, pretrained_params: Any,
                       cfg: MetaConfig, pool) -> dict[str, np.ndarray]:
    """``{method: [N, H]}`` normalized mean-pooled pool features of each frozen-feature
    method requested (each encoder's features computed once)."""
    encoders = {"pretrained": pretrained_params, "meta_learned": meta_params["encoder"]}
    cache: dict[str, np.ndarray] = {}
    out = {}
    for m in methods:
        if m not in baselines.FROZEN_METHODS:
            continue
        which = baselines.FROZEN_METHODS[m][0]
        if which not in cache:
            cache[which] = baselines.sentence_features(encoders[which], cfg, pool.input_ids,
                                                       pool.attention_mask)
        out[m] = cache[which]
    return out


def _pool(data, classes: Sequence[str], max_per_class: int | None, seed: int):
    """The rows of ``data`` whose class is in ``classes``, class by class, at most
    ``max_per_class`` each (:func:`jaxmaml.data.splits.cap_rows`, the data's own cap)."""

    names = list(data.class_names)
    missing = [c for c in classes if c not in names]
    if missing:
        raise ValueError(f"classes not in the data: {missing}; the data has {names}.")
    labels = np.asarray(data.labels)
    kept = cap_rows(labels, len(names), max_per_class, seed)
    rows = np.concatenate([kept[labels[kept] == names.index(c)] for c in classes])
    return TokenizedData(np.asarray(data.input_ids)[rows], np.asarray(data.attention_mask)[rows],
                         labels[rows], tuple(names))
