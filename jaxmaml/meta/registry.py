"""One registry of learners, selected by ``meta.algorithm``; each is a per-task loss with
the same signature.

``task_loss(meta_params, episode, cfg) -> (loss, metrics)`` is written for ONE task
(unbatched :class:`~jaxmaml.types.Episodes`) and vmapped over the task axis in
:mod:`jaxmaml.meta.outer`. ``meta_params`` is ``{"encoder": BERT params, **extras}`` where
``init_extras`` creates the learner's own meta-learned leaves (e.g. learned inner LRs).
A learner whose meta-gradient is not the gradient of a loss (Reptile) or that depends on
the meta-step (MAML++ annealing) supplies ``meta_grad`` instead.

Learners (module in brackets):

- ``maml``: second-order MAML, Finn et al. 2017 (task)
- ``fomaml``: first-order MAML (task)
- ``anil``: MAML adapting the head only, Raghu et al. 2020 (task)
- ``metasgd``: learned per-parameter inner learning rates, Li et al. 2017 (metasgd)
- ``mamlpp``: MAML++ (LSLR, multi-step loss, order annealing), Antoniou et al. 2019 (mamlpp)
- ``reptile``: Reptile, Nichol et al. 2018 (reptile)
- ``imaml``: implicit MAML (proximal inner loop, CG meta-gradient), Rajeswaran et al. 2019
  (imaml)
- ``protomaml``: MAML from a prototype-initialized head, Triantafillou et al. 2020 (task)
- ``finetune``: first-order MAML whose inner loop is test-time fine-tuning (AdamW on a
  part of the encoder and a cosine head started at the prototypes), with the prototype
  gradient kept (finetune_learner)
- ``protonet``: Prototypical Networks, Snell et al. 2017 (metric)
- ``matchingnet``: Matching Networks, Vinyals et al. 2016 (metric)
- ``relationnet``: Relation Networks, Sung et al. 2018 (metric)
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple

import jax

from jaxmaml.meta import finetune_learner, imaml, mamlpp, metasgd, metric, reptile
from jaxmaml.meta.config import check_implied, IMPLIED, MetaConfig
from jaxmaml.meta.maml import (adapt_task, head_adapt, head_predict, loss_and_accuracy,
                               maml_task_loss)
from jaxmaml.types import Examples

__all__ = ["Algorithm", "IMPLIED", "LEARNERS", "adapt_task", "get_learner",
           "loss_and_accuracy", "maml_task_loss", "resolve_config"]


class Algorithm(NamedTuple):
    """One algorithm of the registry: its functions, unbound (each takes the
    :class:`MetaConfig`); :func:`jaxmaml.learners.from_config` binds them to a config as a
    :class:`~jaxmaml.learners.Learner`.

    Attributes:
      task_loss: ``(meta_params, episode, cfg) -> (loss, {"loss", "accuracy"})`` for
        one task; also what evaluation runs.
      init_extras: ``(encoder, cfg, key) -> dict`` of meta-learned leaves stored next to
        ``"encoder"`` in ``meta_params`` (learned inner LRs, a relation module, ...).
      meta_grad: optional ``(meta_params, episodes, cfg, step) -> ((loss, metrics),
        grads)`` replacing ``value_and_grad`` of the mean task loss (Reptile, MAML++).
      adapt: ``(meta_params, support, cfg) -> task_params`` for one task: what a user's
        support set turns into (adapted encoder + head, prototypes, the support set).
      predict: ``(task_params, examples, cfg) -> logits [n, way]``.
    """

    task_loss: Callable[..., tuple[jax.Array, dict[str, jax.Array]]]
    init_extras: Callable[[Any, MetaConfig, jax.Array], dict[str, Any]] = lambda enc, cfg, key: {}
    meta_grad: Callable | None = None
    adapt: Callable[[dict, Examples, MetaConfig], dict] | None = None
    predict: Callable[[dict, Examples, MetaConfig], jax.Array] | None = None


_HEAD = dict(adapt=head_adapt, predict=head_predict)
LEARNERS: dict[str, Algorithm] = {
    "maml": Algorithm(maml_task_loss, **_HEAD),
    "fomaml": Algorithm(maml_task_loss, **_HEAD),
    "anil": Algorithm(maml_task_loss, **_HEAD),
    "metasgd": Algorithm(metasgd.task_loss, init_extras=metasgd.init_extras,
                       adapt=metasgd.adapt, predict=head_predict),
    "mamlpp": Algorithm(mamlpp.task_loss, init_extras=mamlpp.init_extras,
                      meta_grad=mamlpp.meta_grad, adapt=mamlpp.adapt, predict=head_predict),
    "reptile": Algorithm(maml_task_loss, meta_grad=reptile.meta_grad, **_HEAD),
    "protomaml": Algorithm(maml_task_loss, **_HEAD),
    "imaml": Algorithm(imaml.task_loss, meta_grad=imaml.meta_grad, adapt=imaml.adapt,
                     predict=head_predict),
    "finetune": Algorithm(finetune_learner.task_loss, adapt=finetune_learner.adapt,
                        predict=finetune_learner.predict),
    "protonet": Algorithm(metric.protonet_task_loss, adapt=metric.protonet_adapt,
                        predict=metric.protonet_predict),
    "matchingnet": Algorithm(metric.matching_task_loss, init_extras=metric.matching_init_extras,
                           adapt=metric.matching_adapt,
                           predict=metric.matching_predict),
    "relationnet": Algorithm(metric.relation_task_loss, init_extras=metric.relation_init_extras,
                           adapt=metric.relation_adapt,
                           predict=metric.relation_predict),
}

def resolve_config(cfg: MetaConfig, explicit: Mapping[str, Any] | None = None) -> MetaConfig:
    """``cfg`` checked against the settings its algorithm implies (already applied when the
    :class:`MetaConfig` was built, see :data:`IMPLIED`).

    Args:
      explicit: the meta settings the user gave (field -> value); one that contradicts a
        defining implied setting (e.g. ``anil`` with ``adapt: top_k_layers``) raises a
        ``ValueError`` that says how to fix it.
    """
    get_learner(cfg.algorithm)
    check_implied(cfg.algorithm, explicit or {})
    return cfg


def get_learner(name: str) -> Algorithm:
    if name not in LEARNERS:
        raise ValueError(f"meta.algorithm={name!r} is not one of {', '.join(sorted(LEARNERS))}.")
    return LEARNERS[name]
