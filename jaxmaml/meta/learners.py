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

from typing import Any

from jaxmaml.meta import mamlpp, metasgd, metric, reptile
from jaxmaml.meta.config import MetaConfig
from jaxmaml.meta.task import Learner, adapt_task, maml_task_loss, score

__all__ = ["IMPLIED", "LEARNERS", "Learner", "adapt_task", "effective_config", "get_learner",
           "maml_task_loss", "score"]

LEARNERS: dict[str, Learner] = {
    "maml": Learner(maml_task_loss),
    "fomaml": Learner(maml_task_loss),
    "anil": Learner(maml_task_loss),
    "metasgd": Learner(metasgd.task_loss, init_extras=metasgd.init_extras),
    "mamlpp": Learner(mamlpp.task_loss, init_extras=mamlpp.init_extras,
                      meta_grad=mamlpp.meta_grad),
    "reptile": Learner(maml_task_loss, meta_grad=reptile.meta_grad),
    "protomaml": Learner(maml_task_loss),
    "protonet": Learner(metric.protonet_task_loss, adapts=False),
    "matchingnet": Learner(metric.matching_task_loss, init_extras=metric.matching_init_extras,
                           adapts=False),
    "relationnet": Learner(metric.relation_task_loss, init_extras=metric.relation_init_extras,
                           adapts=False),
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


def get_learner(name: str) -> Learner:
    if name not in LEARNERS:
        raise ValueError(f"meta.algorithm={name!r} is not one of {', '.join(sorted(LEARNERS))}.")
    return LEARNERS[name]


def effective_config(cfg: MetaConfig) -> MetaConfig:
    """``cfg`` with the overrides an algorithm implies (see :data:`IMPLIED`)."""
    get_learner(cfg.algorithm)
    return cfg.replace(**IMPLIED.get(cfg.algorithm, {}))
