"""One registry of learners; each is a per-task loss with the same signature.

``task_loss(meta_params, episode, cfg, key) -> (loss, metrics)`` is written for ONE task
(unbatched :class:`~jaxmaml.types.Episodes`) and vmapped over the task axis in
:mod:`jaxmaml.meta.outer`. ``meta_params`` is ``{"encoder": BERT params, **extras}`` where
``init_extras`` creates the learner's own meta-learned leaves (e.g. learned inner LRs).
A learner whose meta-gradient is not the gradient of a loss (Reptile) supplies
``meta_grad`` instead.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax

from jaxmaml.meta import inner
from jaxmaml.meta.config import MetaConfig
from jaxmaml.types import Episodes


class Learner(NamedTuple):
    task_loss: Callable[..., tuple[jax.Array, dict[str, jax.Array]]]
    init_extras: Callable[[Any, MetaConfig, jax.Array], dict[str, Any]] = lambda enc, cfg, key: {}
    # Optional (meta_params, episodes, cfg, key, step) -> ((loss, metrics), grads);
    # replaces value_and_grad of the mean task loss (Reptile, order annealing).
    meta_grad: Callable | None = None
    # Whether the learner runs the inner loop (baselines use this to pick a protocol).
    adapts: bool = True


def adapt_task(meta_params: dict, episode: Episodes, cfg: MetaConfig, *, lrs: Any = None,
               per_step_lrs: bool = False, step_fn_out: Callable | None = None):
    """Adapt to ``episode.support`` from ``meta_params``; return (params, lower_query, outs).

    Shared by every MAML-family learner: head init (zeros / prototypes), the adapt filter,
    frozen-bottom caching, and the scanned inner loop. ``params`` is the adapted
    ``{"encoder", "head"}`` tree; ``lower_query`` the cached frozen-bottom query features.
    """
    encoder = meta_params["encoder"]
    support, query = episode
    lower_s = inner.lower_features(encoder, support, cfg)
    if cfg.head_init == "zeros":
        head = inner.init_head(jax.numpy.zeros((1, cfg.model.hidden_size)), support, cfg)
    else:
        head = inner.init_head(inner.features(encoder, support, cfg, lower_s), support, cfg)
    adapted, frozen = inner.partition({"encoder": encoder, "head": head}, cfg)
    if not cfg.meta_learn_frozen:
        frozen = jax.lax.stop_gradient(frozen)
    adapted, outs = inner.inner_adapt(adapted, frozen, inner.support_loss_fn(support, cfg, lower_s),
                                      cfg, lrs=lrs, per_step_lrs=per_step_lrs,
                                      step_fn_out=step_fn_out)
    params = inner.unflatten({**frozen, **adapted})
    return params, inner.lower_features(encoder, query, cfg), outs


def score(params: dict, examples, cfg: MetaConfig, lower=None) -> tuple[jax.Array, jax.Array]:
    """(loss, accuracy) of adapted ``params`` on ``examples``."""
    feats = inner.features(params["encoder"], examples, cfg, lower)
    return inner.weighted_xent(inner.head_logits(params["head"], feats), examples.labels,
                               examples.weights)


def maml_task_loss(meta_params, episode: Episodes, cfg: MetaConfig, key=None):
    """MAML: query loss of the params adapted on the support set (second order unless
    ``cfg.first_order``)."""
    del key
    params, lower_q, _ = adapt_task(meta_params, episode, cfg)
    loss, acc = score(params, episode.query, cfg, lower_q)
    return loss, {"loss": loss, "accuracy": acc}


# fomaml and anil are MAML with implied settings (see ``effective_config``).
LEARNERS: dict[str, Learner] = {
    "maml": Learner(maml_task_loss),
    "fomaml": Learner(maml_task_loss),
    "anil": Learner(maml_task_loss),
}

# Settings an algorithm name implies, applied by ``effective_config``.
IMPLIED: dict[str, dict[str, Any]] = {
    "fomaml": dict(first_order=True),
    "anil": dict(adapt="head"),
}


def get_learner(name: str) -> Learner:
    if name not in LEARNERS:
        raise ValueError(f"meta.algorithm={name!r} is not one of {', '.join(sorted(LEARNERS))}.")
    return LEARNERS[name]


def effective_config(cfg: MetaConfig) -> MetaConfig:
    """``cfg`` with the overrides an algorithm implies (fomaml: first order; anil: head)."""
    get_learner(cfg.algorithm)
    return cfg.replace(**IMPLIED.get(cfg.algorithm, {}))
