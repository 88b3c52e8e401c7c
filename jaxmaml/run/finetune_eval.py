"""Test-time fine-tuning, class-name priors and transduction, scored on evaluation episodes.

The methods of :func:`jaxmaml.run.protocol.evaluate` that adapt more than a frozen
classifier, each from the ORIGINAL (pretrained) encoder and from the run's META-LEARNED one
(the same name with a ``meta_learned_`` prefix):

- ``finetune``: test-time fine-tuning (:func:`jaxmaml.meta.finetune.finetune_adapt`: a
  cosine head started at the normalized prototypes, a part of the encoder trained with Adam
  on the support set), the practitioner's baseline;
- ``*_names``: the class names as priors, one extra support row per class
  (:func:`jaxmaml.meta.priors.with_label_rows`), for the cosine centroid and fine-tuning;
- ``*_trans``: transductive refinement of the prototypes (the fine-tuned head) by soft
  k-means over the episode's queries (:mod:`jaxmaml.meta.transductive`);
- ``*_names_trans``: both.

Every method sees the protocol's episodes. Fast: the frozen layers below the fine-tuned
part are computed once per pool example (and per class name), not per episode and step; a
batch of tasks is fine-tuned under one ``vmap``; one compiled program per setting serves
the plain and the transductive prediction of the same adaptation.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxmaml.meta import baselines, finetune, priors, transductive
from jaxmaml.meta.config import MetaConfig
from jaxmaml.meta.finetune import FinetuneOptions
from jaxmaml.meta.encoding import map_padded_batches
from jaxmaml.types import Examples

# method -> (whose encoder, classifier, class names as priors, transductive)
SPECS = {
    "cosine_centroid_names": ("pretrained", "centroid", True, False),
    "cosine_centroid_trans": ("pretrained", "centroid", False, True),
    "cosine_centroid_names_trans": ("pretrained", "centroid", True, True),
    "meta_learned_centroid_names": ("meta_learned", "centroid", True, False),
    "meta_learned_centroid_trans": ("meta_learned", "centroid", False, True),
    "meta_learned_centroid_names_trans": ("meta_learned", "centroid", True, True),
    "finetune": ("pretrained", "finetune", False, False),
    "finetune_names": ("pretrained", "finetune", True, False),
    "finetune_trans": ("pretrained", "finetune", False, True),
    "finetune_names_trans": ("pretrained", "finetune", True, True),
    "meta_learned_finetune": ("meta_learned", "finetune", False, False),
    "meta_learned_finetune_names": ("meta_learned", "finetune", True, False),
    "meta_learned_finetune_trans": ("meta_learned", "finetune", False, True),
    "meta_learned_finetune_names_trans": ("meta_learned", "finetune", True, True),
}
FT_METHODS = tuple(SPECS)
FINETUNE_METHODS = tuple(m for m, s in SPECS.items() if s[1] == "finetune")
NAMES_METHODS = tuple(m for m, s in SPECS.items() if s[2])
# each setting from the meta-learned encoder, paired with the same setting from the original
PAIRED_WITH = {m: (m.replace("meta_learned_centroid", "cosine_centroid")
                   .replace("meta_learned_finetune", "finetune"))
               for m, s in SPECS.items() if s[0] == "meta_learned"}
_ENCODER_LABEL = {"pretrained": "original encoder", "meta_learned": "meta-learned encoder"}
_CLASSIFIER_LABEL = {"centroid": "cosine centroid", "finetune": "fine-tuned"}
LABELS = {m: ", ".join([_ENCODER_LABEL[e], _CLASSIFIER_LABEL[c]]
                       + ["class names"] * n + ["transductive"] * t)
          for m, (e, c, n, t) in SPECS.items()}
FINETUNE_EPISODES = 200  # default episodes of a fine-tuning method (frozen ones: all)


class Prepared(NamedTuple):
    """What the methods read, computed once per evaluation: per encoder (``pretrained``,
    ``meta_learned``) the BERT params, normalized sentence features of the pool ``[N, H]``
    and of the class names ``[C, H]``, and the fine-tuning bottom of the pool
    ``[N, L, H]`` and of the names ``[C, L, H]`` (``None`` where fine-tuning trains the
    embeddings); the pool and name tokens; the options."""

    encoders: dict[str, Any]
    feats: dict[str, np.ndarray]
    name_feats: dict[str, np.ndarray]
    bottoms: dict[str, np.ndarray | None]
    name_bottoms: dict[str, np.ndarray | None]
    pool: Any
    names: tuple[np.ndarray, np.ndarray] | None
    opts: FinetuneOptions
    cfg: MetaConfig


def prepare(methods: Sequence[str], encoders: dict[str, Any], cfg: MetaConfig, pool,
            names: tuple[np.ndarray, np.ndarray] | None, opts: FinetuneOptions) -> Prepared:
    """The one-off computations of ``methods`` (a subset of :data:`FT_METHODS`).

    ``encoders``: ``{"pretrained": BERT params, "meta_learned": BERT params}``; ``pool``: a
    ``TokenizedData`` ``[N, L]``; ``names``: ``(input_ids, attention_mask)`` ``[C, L]`` of a
    label text per class of ``pool.class_names`` (needed by the ``*_names`` methods).
    """
    needs_names = [m for m in methods if SPECS[m][2]]
    if needs_names and names is None:
        raise ValueError(f"{needs_names} need the class names as text (class_texts).")
    feats, name_feats, bottoms, name_bottoms = {}, {}, {}, {}
    for which in sorted({SPECS[m][0] for m in methods}):
        kinds = {SPECS[m][1] for m in methods if SPECS[m][0] == which}
        with_names = any(SPECS[m][2] for m in methods if SPECS[m][0] == which)
        enc = encoders[which]
        if "centroid" in kinds:
            feats[which] = baselines.sentence_features(enc, cfg, pool.input_ids,
                                                       pool.attention_mask)
            if with_names:
                name_feats[which] = baselines.sentence_features(enc, cfg, *names)
        if "finetune" in kinds:
            bottoms[which] = _bottom(enc, cfg, opts, pool.input_ids, pool.attention_mask)
            if with_names:
                name_bottoms[which] = _bottom(enc, cfg, opts, *names)
    return Prepared(encoders, feats, name_feats, bottoms, name_bottoms, pool, names, opts, cfg)


@functools.lru_cache(maxsize=16)
def _bottom_fn(cfg: MetaConfig, opts: FinetuneOptions):
    return jax.jit(lambda enc, i, m: finetune.finetune_bottom(
        enc, Examples(i, m, None, None), opts, cfg))


def _bottom(encoder, cfg: MetaConfig, opts: FinetuneOptions, input_ids: np.ndarray,
            attention_mask: np.ndarray) -> np.ndarray | None:
    """:func:`jaxmaml.meta.finetune.finetune_bottom` of every row ``[N, L, H]`` (``None``
    when fine-tuning trains the embeddings)."""
    probe = jax.eval_shape(_bottom_fn(cfg, opts), encoder, input_ids[:1], attention_mask[:1])
    if probe is None:
        return None
    return map_padded_batches(_bottom_fn(cfg, opts), encoder, input_ids,
                              attention_mask).astype(np.float32, copy=False)


# ---------------------------------------------------------------- scoring a batch of episodes
def score(prep: Prepared, methods: Sequence[str], index, way: int) -> dict[str, np.ndarray]:
    """``{method: [T] query accuracies}`` of ``methods`` on the episodes ``index`` (an
    :class:`~jaxmaml.data.episodes.IndexEpisodes` of ``T`` tasks over rows of the pool)."""
    out: dict[str, np.ndarray] = {}
    # task-local label j of task t names the class index.classes[t, j] of the pool's names
    way_labels = np.tile(np.arange(way, dtype=np.int32), (len(index.support_labels), 1))
    for which in sorted({SPECS[m][0] for m in methods}):
        for kind in ("centroid", "finetune"):
            for with_names in (False, True):
                group = [m for m in methods
                         if SPECS[m][:3] == (which, kind, with_names)]
                if not group:
                    continue
                if kind == "centroid":
                    accs = _centroid_scores(prep, which, with_names, index, way_labels, way)
                else:
                    need = tuple(sorted({"trans" if SPECS[m][3] else "plain" for m in group}))
                    accs = _finetune_scores(prep, which, with_names, index, way_labels, way,
                                            need)
                for m in group:
                    out[m] = np.asarray(accs["trans" if SPECS[m][3] else "plain"])
    return out


def _support_weights(labels: np.ndarray) -> np.ndarray:
    return np.ones(labels.shape, np.float32)


def _centroid_scores(prep: Prepared, which: str, with_names: bool, index, way_labels, way):
    f = prep.feats[which]
    s_f, s_l = f[index.support_idx], index.support_labels
    s_w = _support_weights(s_l)
    if with_names:
        s_f = np.concatenate([s_f, prep.name_feats[which][index.classes]], 1)
        s_l = np.concatenate([s_l, way_labels], 1)
        s_w = np.concatenate([s_w, np.full(way_labels.shape, priors.NAME_WEIGHT, np.float32)], 1)
    return _centroid_acc(s_f, s_l, s_w, f[index.query_idx], index.query_labels, way=way)


@functools.partial(jax.jit, static_argnames="way")
def _centroid_acc(s_feats, s_labels, s_weights, q_feats, q_labels, way: int) -> dict:
    """``{"plain", "trans"}`` per-task accuracies ``[T]`` of the cosine centroid (weighted
    prototypes of the support rows) and of its soft k-means refinement over the queries."""

    def one(sf, sl, sw, qf, ql):
        protos = finetune.cosine_head_init(sf, sl, sw, way)["kernel"].T
        refined = transductive.soft_kmeans(protos, sf, sl, sw, qf, jnp.ones(ql.shape, qf.dtype))
        acc = lambda p: (jnp.argmax(qf @ p.T, -1) == ql).mean()  # noqa: E731
        return {"plain": acc(protos), "trans": acc(refined)}

    return jax.vmap(one)(s_feats, s_labels, s_weights, q_feats, q_labels)


def _examples(ids, mask, labels, weights) -> Examples:
    return Examples(ids, mask, labels.astype(np.int32), weights.astype(np.float32))


def _finetune_scores(prep: Prepared, which: str, with_names: bool, index, way_labels, way,
                     need: tuple[str, ...]):
    pool = prep.pool
    s_idx, q_idx = index.support_idx, index.query_idx
    support = _examples(pool.input_ids[s_idx], pool.attention_mask[s_idx],
                        index.support_labels, _support_weights(index.support_labels))
    query = _examples(pool.input_ids[q_idx], pool.attention_mask[q_idx], index.query_labels,
                      _support_weights(index.query_labels))
    bottom = prep.bottoms[which]
    s_bottom = None if bottom is None else bottom[s_idx]
    q_bottom = None if bottom is None else bottom[q_idx]
    label_rows = l_bottom = None
    if with_names:
        ids, mask = prep.names
        label_rows = _examples(ids[index.classes], mask[index.classes], way_labels,
                               np.ones(way_labels.shape, np.float32))
        nb = prep.name_bottoms[which]
        l_bottom = None if nb is None else nb[index.classes]
    fn = _finetune_fn(prep.cfg.replace(way=way), prep.opts, way, need)
    return fn(prep.encoders[which], support, query, s_bottom, q_bottom, label_rows, l_bottom)


def with_names(support: Examples, s_bottom, label_rows: Examples | None, l_bottom):
    """``(support, its bottom)`` followed by the label-text rows (when given)."""
    if label_rows is None:
        return support, s_bottom
    support = priors.with_label_rows(support, label_rows)
    return support, None if s_bottom is None else jnp.concatenate([s_bottom, l_bottom])


def task_scores(params, support: Examples, query: Examples, opts: FinetuneOptions,
                cfg: MetaConfig, need: tuple[str, ...], s_bottom=None, q_bottom=None) -> dict:
    """``{"plain", "trans"}`` (those in ``need``): one task's query accuracy under the
    fine-tuned ``params``, inductive and after soft k-means over the queries (``support``:
    the rows fine-tuning saw, names included)."""
    acc = lambda logits: (jnp.argmax(logits, -1) == query.labels).mean()  # noqa: E731
    out = {}
    if "plain" in need:
        out["plain"] = acc(finetune.finetune_predict(params, query, opts, cfg, q_bottom))
    if "trans" in need:
        out["trans"] = acc(transductive.finetune_transductive_predict(
            params, support, query, opts, cfg, support_bottom=s_bottom, bottom=q_bottom))
    return out


@functools.lru_cache(maxsize=32)
def _finetune_fn(cfg: MetaConfig, opts: FinetuneOptions, way: int, need: tuple[str, ...]):
    """``(encoder, support, query, bottoms, label rows) -> {"plain", "trans"}`` per-task
    accuracies ``[T]`` (those in ``need``): one fine-tuning per task, scored inductively
    and/or transductively; jitted once per (config, options, way, need) and batch shape."""

    def one(encoder, support, query, s_bottom, q_bottom, label_rows, l_bottom):
        support, s_bottom = with_names(support, s_bottom, label_rows, l_bottom)
        params = finetune.finetune_adapt(encoder, support, way, opts, cfg, s_bottom)
        return task_scores(params, support, query, opts, cfg, need, s_bottom, q_bottom)

    return jax.jit(jax.vmap(one, in_axes=(None, 0, 0, 0, 0, 0, 0)))
