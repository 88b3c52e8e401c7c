"""Meta-training for test-time fine-tuning: first-order MAML whose inner loop IS the
fine-tuning a user runs (:func:`jaxmaml.meta.finetune.finetune_adapt`).

For one task the support set fine-tunes a copy of the encoder part and a cosine head
started at the normalized prototypes (AdamW steps in ``lax.scan``, ``meta.finetune``
options); the query loss of the fine-tuned model is the task's loss. Its meta-gradient is
first order, with Proto-MAML's prototype path kept (Triantafillou et al. 2020): the
fine-tuned leaves are ``theta + stop_gradient(theta' - theta)`` and the head is
``w_0(theta) + stop_gradient(w' - w_0)``, where ``w_0`` are the normalized prototypes of
the support features. So with ``meta.finetune.steps: 0`` the loss and its gradient are
exactly a cosine ProtoNet's on normalized mean-pooled features, and with steps the init is
moved by the query gradient at the fine-tuned parameters (FOMAML), which costs one
fine-tuning and one query pass per task, whatever the number of steps.

``adapt`` / ``predict`` (users, ``jaxmaml eval``) run the same fine-tuning.
"""

from __future__ import annotations

import jax

from jaxmaml.meta import encoding, heads
from jaxmaml.meta.config import MetaConfig
from jaxmaml.meta.finetune import (cosine_head_init, finetune_adapt, finetune_config,
                                   finetune_predict)
from jaxmaml.meta.encoding import l2_normalize
from jaxmaml.types import Episodes, Examples


def _straight_through(value, target):
    """``value`` in the forward pass moved to ``target``; the gradient is ``value``'s."""
    return jax.tree.map(lambda v, t: v + jax.lax.stop_gradient(t - v), value, target)


def task_loss(meta_params: dict, episode: Episodes, cfg: MetaConfig):
    """Query loss and accuracy of the encoder fine-tuned on ``episode.support`` (one task)."""
    support, query = episode
    opts, encoder = cfg.finetune, meta_params["encoder"]
    task = finetune_adapt(jax.lax.stop_gradient(encoder), support, cfg.way, opts, cfg)
    fcfg = finetune_config(cfg, opts, cfg.way)
    feats = l2_normalize(encoding.features(encoder, support, fcfg))
    head0 = cosine_head_init(feats, support.labels, support.weights, cfg.way)
    params = {"encoder": _straight_through(encoder, task["encoder"]),
              "head": _straight_through(head0, task["head"])}
    logits = finetune_predict(params, query, opts, cfg)
    loss, acc = heads.weighted_xent(logits, query.labels, query.weights)
    return loss, {"loss": loss, "accuracy": acc}


def adapt(meta_params: dict, support: Examples, cfg: MetaConfig) -> dict:
    """Task params ``{"encoder", "head"}``: the support set's fine-tuning."""
    return finetune_adapt(meta_params["encoder"], support, cfg.way, cfg.finetune, cfg)


def predict(task_params: dict, examples: Examples, cfg: MetaConfig) -> jax.Array:
    """``[n, way]`` cosine-head logits of the fine-tuned encoder."""
    return finetune_predict(task_params, examples, cfg.finetune, cfg)
