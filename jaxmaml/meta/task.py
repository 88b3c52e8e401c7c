"""What every learner shares: the :class:`Learner` record, adapting one task, scoring it.

``task_loss(meta_params, episode, cfg, key) -> (loss, metrics)`` is written for ONE task
(unbatched :class:`~jaxmaml.types.Episodes`) and vmapped over the task axis in
:mod:`jaxmaml.meta.outer`.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from jaxmaml.meta import inner
from jaxmaml.meta.config import MetaConfig
from jaxmaml.types import Episodes


class Learner(NamedTuple):
    """One algorithm of the registry.

    Attributes:
      task_loss: ``(meta_params, episode, cfg, key) -> (loss, {"loss", "accuracy"})`` for
        one task; also what evaluation runs.
      init_extras: ``(encoder, cfg, key) -> dict`` of meta-learned leaves stored next to
        ``"encoder"`` in ``meta_params`` (learned inner LRs, a relation module, ...).
      meta_grad: optional ``(meta_params, episodes, cfg, key, step) -> ((loss, metrics),
        grads)`` replacing ``value_and_grad`` of the mean task loss (Reptile, MAML++).
      adapts: whether the learner runs the inner loop (False for metric learners).
    """

    task_loss: Callable[..., tuple[jax.Array, dict[str, jax.Array]]]
    init_extras: Callable[[Any, MetaConfig, jax.Array], dict[str, Any]] = lambda enc, cfg, key: {}
    meta_grad: Callable | None = None
    adapts: bool = True


def adapt_task(meta_params: dict, episode: Episodes, cfg: MetaConfig, *, lrs: Any = None,
               per_step_lrs: bool = False, step_fn_out: Callable | None = None,
               query_step_metrics: bool = False):
    """Adapt to ``episode.support`` from ``meta_params``; return (params, lower_query, outs).

    Shared by every MAML-family learner: head init (zeros / prototypes), the adapt filter,
    frozen-bottom caching, and the scanned inner loop. ``params`` is the adapted
    ``{"encoder", "head"}`` tree; ``lower_query`` the cached frozen-bottom query features.

    Args:
      lrs, per_step_lrs, step_fn_out: passed to :func:`jaxmaml.meta.inner.inner_adapt`.
      query_step_metrics: ``outs`` is ``(loss [S], accuracy [S])`` on the query set after
        every inner step (MAML++ multi-step loss); excludes ``step_fn_out``.
    """
    encoder = meta_params["encoder"]
    if not cfg.meta_learn_frozen:  # inner-frozen leaves get no meta-gradient by any path
        encoder = inner.unflatten({
            k: v if inner.is_adapted(k, cfg) else jax.lax.stop_gradient(v)
            for k, v in inner.flatten({"encoder": encoder}).items()})["encoder"]
    support, query = episode
    lower_s = inner.lower_features(encoder, support, cfg)
    lower_q = inner.lower_features(encoder, query, cfg)
    if query_step_metrics:
        if step_fn_out is not None:
            raise ValueError("pass either step_fn_out or query_step_metrics, not both.")
        step_fn_out = lambda p: score(p, query, cfg, lower_q)  # noqa: E731
    if cfg.head_init == "zeros":
        head = inner.init_head(jnp.zeros((1, cfg.model.hidden_size)), support, cfg)
    else:
        head = inner.init_head(inner.features(encoder, support, cfg, lower_s), support, cfg)
    adapted, frozen = inner.partition({"encoder": encoder, "head": head}, cfg)
    adapted, outs = inner.inner_adapt(adapted, frozen, inner.support_loss_fn(support, cfg, lower_s),
                                      cfg, lrs=lrs, per_step_lrs=per_step_lrs,
                                      step_fn_out=step_fn_out)
    params = inner.unflatten({**frozen, **adapted})
    return params, lower_q, outs


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


def head_template(cfg: MetaConfig, way: int = 1) -> dict[str, jax.Array]:
    """A zero head ``{"kernel": [H, way], "bias": [way]}``; ``way=1`` gives the shapes of
    per-parameter inner LRs that broadcast over the (task-local, permuted) classes."""
    return {"kernel": jnp.zeros((cfg.model.hidden_size, way)), "bias": jnp.zeros((way,))}


def adapted_shapes(encoder: Any, cfg: MetaConfig) -> dict[str, tuple[tuple[int, ...], Any]]:
    """``{path: (shape, dtype)}`` of the leaves the inner loop adapts (head with ``way=1``).

    Works on concrete or abstract (``ShapeDtypeStruct``) encoders.
    """
    leaves = inner.flatten({"encoder": encoder, "head": head_template(cfg)})
    return {k: (tuple(v.shape), v.dtype) for k, v in leaves.items()
            if inner.is_adapted(k, cfg)}
