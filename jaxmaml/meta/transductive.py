"""Transductive refinement: soft k-means of the class prototypes over the unlabelled queries.

Ren et al. 2018 ("Meta-Learning for Semi-Supervised Few-Shot Classification"), with cosine
similarities: starting from prototypes ``p_c`` (L2-normalized), each of ``iters`` iterations
assigns every query ``q_j`` (L2-normalized features, weight ``v_j``) softly to the classes,
``z_jc = softmax_c(cos(q_j, p_c) / temperature)``, and recomputes

    p_c = normalize( (sum_i w_i [y_i = c] s_i + sum_j v_j z_jc q_j)
                     / (sum_i w_i [y_i = c] + sum_j v_j z_jc) )

where the support (and label-text) rows ``s_i`` keep their hard labels ``y_i`` and weights
``w_i``. Queries of weight 0 (padding) change nothing. A query's prediction then depends
on the other queries of the batch. Pure and jittable, one task unbatched.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxmaml.meta import finetune
from jaxmaml.meta.config import MetaConfig
from jaxmaml.meta.encoding import NORM_EPS, l2_normalize
from jaxmaml.types import Examples

ITERS = 5
TEMPERATURE = 0.1


def soft_kmeans(init: jax.Array, s_feats: jax.Array, s_labels: jax.Array,
                s_weights: jax.Array, q_feats: jax.Array, q_weights: jax.Array,
                iters: int = ITERS, temperature: float = TEMPERATURE) -> jax.Array:
    """Refined L2-normalized prototypes ``[way, H]``.

    Args:
      init: starting prototypes ``[way, H]`` (e.g. class means, or a cosine head's kernel
        transposed); only their directions matter.
      s_feats, s_labels, s_weights: labelled rows ``[n, H]``, ``[n]``, ``[n]``.
      q_feats, q_weights: unlabelled rows ``[m, H]``, ``[m]``.
      iters: soft k-means iterations (0 returns the normalized ``init``).
      temperature: of the soft assignment ``softmax(cos / temperature)``.
    """
    way = init.shape[0]
    s, q = l2_normalize(s_feats), l2_normalize(q_feats)
    onehot = jax.nn.one_hot(s_labels, way, dtype=s.dtype) * s_weights[:, None]
    s_sum, s_count = onehot.T @ s, onehot.sum(0)

    def step(p, _):
        z = jax.nn.softmax(q @ p.T / temperature, axis=-1) * q_weights[:, None]
        mean = (s_sum + z.T @ q) / jnp.maximum(s_count + z.sum(0), NORM_EPS)[:, None]
        return l2_normalize(mean), None

    return jax.lax.scan(step, l2_normalize(init), None, length=iters)[0]


def finetune_transductive_predict(task_params: dict, support: Examples, examples: Examples,
                                  opts: finetune.FinetuneOptions, cfg: MetaConfig,
                                  iters: int = ITERS, temperature: float = TEMPERATURE,
                                  support_bottom: jax.Array | None = None,
                                  bottom: jax.Array | None = None) -> jax.Array:
    """Logits ``[m, way]`` of ``examples`` ``[m, seq_len]`` after refining the cosine head of
    :func:`jaxmaml.meta.finetune.finetune_adapt`'s task params over them.

    The features are the fine-tuned encoder's (``support``: the rows fine-tuning saw, label
    texts included); the head's kernel starts the refinement (with ``steps=0`` it is the
    normalized class means: plain soft k-means from the centroids). ``examples.weights``
    0 marks padding rows. ``*bottom``: optional :func:`~jaxmaml.meta.finetune.finetune_bottom`.
    """
    s = finetune.finetune_features(task_params, support, opts, cfg, support_bottom)
    q = finetune.finetune_features(task_params, examples, opts, cfg, bottom)
    protos = soft_kmeans(task_params["head"]["kernel"].T, s, support.labels, support.weights,
                         q, examples.weights, iters, temperature)
    return finetune.cosine_head_logits({"kernel": protos.T}, q, opts.scale)
