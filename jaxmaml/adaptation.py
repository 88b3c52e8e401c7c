"""What :class:`~jaxmaml.FewShotClassifier` runs for ``adapt="finetune"``, label texts and
transductive prediction: the library's pure functions (:mod:`jaxmaml.meta.finetune`,
:mod:`jaxmaml.meta.priors`, :mod:`jaxmaml.meta.transductive`) jitted once per static
setting, and the host-side checks of a user's label texts.

Shapes stay fixed so one compile serves every task of a shape: the support set is padded
with zero-weight rows to a power of two, the label-text rows are one per class (weight 0 for
a class without a text), texts are scored in fixed batches, and the transductive query set
is padded to a power of two as well.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import jax
import numpy as np

from jaxmaml.meta.finetune import (FinetuneOptions, cosine_head_logits, finetune_adapt,
                                   finetune_features, finetune_predict)
from jaxmaml.meta.transductive import ITERS, TEMPERATURE, soft_kmeans
from jaxmaml.types import Examples

ADAPTS = ("learner", "finetune")


def bucket(n: int, least: int = 8) -> int:
    """``n`` rounded up to a power of two, at least ``least``."""
    return max(least, 1 << (max(n, 1) - 1).bit_length())


# ---------------------------------------------------------------- label texts
def has_label_text(label_texts: Any, c: Any) -> bool:
    """Whether class ``c`` gets a text from ``label_texts`` (``True`` and a list name every
    class; a dict the classes among its keys)."""
    if label_texts is None or label_texts is False:
        return False
    return c in label_texts if isinstance(label_texts, dict) else True


def label_text_list(label_texts: Any, classes: Sequence[Any]) -> list[str | None]:
    """One text (or ``None``) per class, in ``classes`` order.

    ``label_texts``: ``True`` (the class labels themselves, as strings), a dict
    ``class -> text`` (classes missing from it get ``None``), or a list aligned with
    ``classes``. Raises a one-line ``ValueError`` on anything else.
    """
    if label_texts is True:
        texts = [str(c) for c in classes]
    elif isinstance(label_texts, dict):
        unknown = [k for k in label_texts if k not in set(classes)]
        if unknown:
            raise ValueError(f"label_texts names class {unknown[0]!r}, which is not among the "
                             "classes; drop it or add it to classes.")
        texts = [label_texts.get(c) for c in classes]
    elif isinstance(label_texts, (list, tuple)):
        if len(label_texts) != len(classes):
            raise ValueError(f"label_texts has {len(label_texts)} texts for {len(classes)} "
                             "classes; give one per class in classes_ order (or a dict).")
        texts = list(label_texts)
    else:
        raise ValueError(f"label_texts must be True, a dict class->text or a list aligned "
                         f"with the classes, not {type(label_texts).__name__}.")
    for c, t in zip(classes, texts):
        if t is not None and (not isinstance(t, str) or not t.strip()):
            raise ValueError(f"the label text of class {c!r} is {t!r}; give a non-empty "
                             "string (or leave the class out of label_texts).")
    return texts


# ---------------------------------------------------------------- jitted programs
@functools.lru_cache(maxsize=32)
def finetune_fit_fn(cfg, opts: FinetuneOptions, way: int) -> Callable:
    """``(encoder, support) -> task_params`` (:func:`~jaxmaml.meta.finetune.finetune_adapt`)."""
    return jax.jit(lambda enc, support: finetune_adapt(enc, support, way, opts, cfg))


@functools.lru_cache(maxsize=32)
def finetune_log_proba_fn(cfg, opts: FinetuneOptions) -> Callable:
    """``(task_params, examples) -> log-probabilities [n, way]``."""
    return jax.jit(lambda tp, ex: jax.nn.log_softmax(finetune_predict(tp, ex, opts, cfg), -1))


@functools.lru_cache(maxsize=32)
def finetune_features_fn(cfg, opts: FinetuneOptions) -> Callable:
    """``(task_params, examples) -> L2-normalized features [n, H]`` of the tuned encoder."""
    return jax.jit(lambda tp, ex: finetune_features(tp, ex, opts, cfg))


@functools.partial(jax.jit, static_argnames=("scale", "iters", "temperature"))
def refined_log_proba(kernel: jax.Array, s_feats: jax.Array, s_labels: jax.Array,
                      s_weights: jax.Array, q_feats: jax.Array, q_weights: jax.Array,
                      scale: float, iters: int = ITERS, temperature: float = TEMPERATURE
                      ) -> jax.Array:
    """Log-probabilities ``[m, way]`` of the queries ``q_feats`` ``[m, H]`` under the cosine
    head whose kernel ``[H, way]`` soft k-means refined over them (padding: weight 0)."""
    protos = soft_kmeans(kernel.T, s_feats, s_labels, s_weights, q_feats, q_weights, iters,
                         temperature)
    return jax.nn.log_softmax(cosine_head_logits({"kernel": protos.T}, q_feats, scale), -1)


def transductive_log_proba(task_params: dict, support: Examples, query_feats: np.ndarray,
                           features: Callable[[Examples], np.ndarray], opts: FinetuneOptions,
                           iters: int = ITERS, temperature: float = TEMPERATURE) -> np.ndarray:
    """Log-probabilities ``[m, way]`` of the queries (features ``[m, H]`` of the tuned
    encoder, all of the batch being labelled) after refining the head over them.

    ``support``: the padded rows fine-tuning saw (label texts included); ``features``
    maps them to the tuned encoder's features. The queries are padded to a power of two.
    """
    m = len(query_feats)
    rows = bucket(m)
    q = np.pad(query_feats, ((0, rows - m), (0, 0)))
    w = np.pad(np.ones(m, np.float32), (0, rows - m))
    logp = refined_log_proba(task_params["head"]["kernel"], features(support), support.labels,
                             support.weights, q, w, scale=opts.scale, iters=iters,
                             temperature=temperature)
    return np.asarray(logp)[:m]


def label_rows(tokenize: Callable[[list[str]], tuple[np.ndarray, np.ndarray]],
               texts: list[str | None]) -> Examples:
    """One row per class (``[way, seq_len]``): its text, labelled with the class index;
    weight 0 (and a placeholder text) for a class without one."""
    ids, mask = tokenize([t if t is not None else "-" for t in texts])
    return Examples(ids, mask, np.arange(len(texts), dtype=np.int32),
                    np.array([t is not None for t in texts], np.float32))
