"""One registry of learners, selected by ``meta.algorithm``; each is a per-task loss with
the same signature.

``task_loss(meta_params, episode, cfg, key) -> (loss, metrics)`` is written for ONE task
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
- ``protomaml``: MAML from a prototype-initialized head, Triantafillou et al. 2020 (task)
- ``protonet``: Prototypical Networks, Snell et al. 2017 (metric)
- ``matchingnet``: Matching Networks, Vinyals et al. 2016 (metric)
- ``relationnet``: Relation Networks, Sung et al. 2018 (metric)
"""

from __future__ import annotations

from typing import Any, Iterable

from jaxmaml.meta import mamlpp, metasgd, metric, reptile
from jaxmaml.meta.config import MetaConfig
from jaxmaml.meta.task import (Learner, adapt_task, head_adapt, head_predict, maml_task_loss,
                               score)

__all__ = ["IMPLIED", "LEARNERS", "Learner", "adapt_task", "effective_config", "get_learner",
           "maml_task_loss", "resolve_config", "score"]

_HEAD = dict(adapt=head_adapt, predict=head_predict)
LEARNERS: dict[str, Learner] = {
    "maml": Learner(maml_task_loss, **_HEAD),
    "fomaml": Learner(maml_task_loss, **_HEAD),
    "anil": Learner(maml_task_loss, **_HEAD),
    "metasgd": Learner(metasgd.task_loss, init_extras=metasgd.init_extras,
                       adapt=metasgd.adapt, predict=head_predict),
    "mamlpp": Learner(mamlpp.task_loss, init_extras=mamlpp.init_extras,
                      meta_grad=mamlpp.meta_grad, adapt=mamlpp.adapt, predict=head_predict),
    "reptile": Learner(maml_task_loss, meta_grad=reptile.meta_grad, **_HEAD),
    "protomaml": Learner(maml_task_loss, **_HEAD),
    "protonet": Learner(metric.protonet_task_loss, adapts=False, adapt=metric.protonet_adapt,
                        predict=metric.protonet_predict),
    "matchingnet": Learner(metric.matching_task_loss, init_extras=metric.matching_init_extras,
                           adapts=False, adapt=metric.matching_adapt,
                           predict=metric.matching_predict),
    "relationnet": Learner(metric.relation_task_loss, init_extras=metric.relation_init_extras,
                           adapts=False, adapt=metric.relation_adapt,
                           predict=metric.relation_predict),
}

# Settings an algorithm name implies, applied by ``effective_config``. Metric learners have
# no inner loop; ``adapt="head"`` marks the whole encoder as inner-frozen so evaluation
# computes every example's features once (see jaxmaml.evaluate).
_METRIC = dict(adapt="head", num_inner_steps=0)
IMPLIED: dict[str, dict[str, Any]] = {
    "fomaml": dict(first_order=True),
    "anil": dict(adapt="head"),
    "reptile": dict(first_order=True),
    "protomaml": dict(head_init="proto"),
    "protonet": _METRIC,
    "matchingnet": _METRIC,
    "relationnet": _METRIC,
}


# The implied settings that define an algorithm: an explicit different value is a conflict
# (the metric learners' implied settings only mark their missing inner loop: no conflict).
_DEFINING_HINT = {
    ("anil", "adapt"): "ANIL adapts the head only; for more layers use meta.algorithm: maml "
                       "with meta.adapt: top_k_layers",
    ("fomaml", "first_order"): "for second-order MAML use meta.algorithm: maml",
    ("reptile", "first_order"): "Reptile never differentiates through the inner loop",
    ("protomaml", "head_init"): "for a zero head init use meta.algorithm: maml",
}


def resolve_config(cfg: MetaConfig, explicit: Iterable[str] = ()) -> MetaConfig:
    """``cfg`` with the settings its algorithm implies (see :data:`IMPLIED`), resolved once
    when a config is built.

    Args:
      explicit: the meta fields the user set; one that contradicts a defining implied
        setting (e.g. ``anil`` with ``adapt: top_k_layers``) raises a ``ValueError`` that
        says how to fix it.
    """
    get_learner(cfg.algorithm)
    explicit = set(explicit)
    for field, value in IMPLIED.get(cfg.algorithm, {}).items():
        hint = _DEFINING_HINT.get((cfg.algorithm, field))
        if hint and field in explicit and getattr(cfg, field) != value:
            raise ValueError(
                f"meta.algorithm={cfg.algorithm!r} implies meta.{field}={value!r} but the config "
                f"sets meta.{field}={getattr(cfg, field)!r}: remove meta.{field} ({hint}).")
    return effective_config(cfg)


def get_learner(name: str) -> Learner:
    if name not in LEARNERS:
        raise ValueError(f"meta.algorithm={name!r} is not one of {', '.join(sorted(LEARNERS))}.")
    return LEARNERS[name]


def effective_config(cfg: MetaConfig) -> MetaConfig:
    """``cfg`` with the overrides an algorithm implies (see :data:`IMPLIED`)."""
    get_learner(cfg.algorithm)
    return cfg.replace(**IMPLIED.get(cfg.algorithm, {}))
