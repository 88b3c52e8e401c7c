"""MAML++ (Antoniou et al. 2019, "How to train your MAML").

What is implemented (BERT has LayerNorm, so the paper's per-step batch-norm fixes do not
apply; outer cosine annealing is the outer optimizer's schedule, ``optim.decay_steps``):

- LSLR: a learned inner learning rate per adapted leaf ("layer") and per inner step,
  ``meta_params["lslr"]`` leaves of shape ``[num_inner_steps]``, stored as ``log(lr)``
  (positive), all starting at ``cfg.inner_lr``.
- MSL (multi-step loss): the objective is ``sum_i w_i(t) L_query(theta_i)`` over the params
  after every inner step ``i = 1..S``, with the paper's annealing (its reference code,
  ``get_per_step_loss_importance_vector``): at meta-step ``t`` the non-final weights are
  ``max(1/S - t/(S*T), 0.03/S)`` and the final one ``min(1/S + t(S-1)/(S*T),
  1 - 0.03(S-1)/S)`` with ``T = cfg.mamlpp.msl_steps``; from ``t >= T`` on only the last step
  counts. ``mamlpp.msl_steps=0`` disables MSL.
- DA (derivative-order annealing): first order while ``t < cfg.mamlpp.first_order_steps``, second
  order after. Both gradients live in ONE compiled program, chosen by ``lax.cond`` on the
  traced meta-step counter, so the switch never recompiles.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxmaml.meta.config import MetaConfig
from jaxmaml.meta.maml import adapt_task, head_adapt
from jaxmaml.meta.metasgd import init_log_lrs, learned_lrs
from jaxmaml.types import Episodes, Examples

LRS_KEY = "lslr"
MIN_NON_FINAL = 0.03  # the paper's floor for non-final step weights, times 1/S


def init_extras(encoder: Any, cfg: MetaConfig, key: jax.Array) -> dict:
    """``{"lslr": {"encoder": ..., "head": ...}}``: ``log(inner_lr)`` of shape ``[S]`` per leaf."""
    del key  # the rates start at cfg.inner_lr
    return {LRS_KEY: init_log_lrs(encoder, cfg, leading=(cfg.num_inner_steps,),
                                  per_parameter=False)}


def msl_weights(step: jax.Array | int, num_inner_steps: int, msl_steps: int) -> jax.Array:
    """Per-inner-step query-loss weights ``[S]`` at meta-step ``step`` (traced is fine).

    Sums to 1. Uniform at step 0, annealed linearly towards the last step, one-hot on the
    last step from ``msl_steps`` on (and always when ``msl_steps == 0``).
    """
    s = num_inner_steps
    last = jax.nn.one_hot(s - 1, s)
    if msl_steps == 0:
        return last
    t = jnp.asarray(step, jnp.float32)
    decay = 1.0 / s / msl_steps
    floor = MIN_NON_FINAL / s
    non_final = jnp.maximum(1.0 / s - t * decay, floor)
    final = jnp.minimum(1.0 / s + t * (s - 1) * decay, 1.0 - (s - 1) * floor)
    w = jnp.where(jnp.arange(s) == s - 1, final, non_final)
    return jnp.where(t < msl_steps, w, last)


def _task_loss(meta_params: dict, episode: Episodes, cfg: MetaConfig,
               weights: jax.Array | None = None):
    """(objective, metrics of the last inner step) for one task.

    ``weights`` ``[S]``: the MSL objective ``sum_i w_i L_query(theta_i)`` (query scored
    after every step); ``None``: the query loss after the last step only.
    """
    if cfg.num_inner_steps == 0:
        loss, acc = adapt_task(meta_params, episode, cfg).score()
        return loss, {"loss": loss, "accuracy": acc}
    lrs = learned_lrs(meta_params, LRS_KEY)
    if weights is None:
        loss, acc = adapt_task(meta_params, episode, cfg, lrs=lrs, per_step_lrs=True).score()
        return loss, {"loss": loss, "accuracy": acc}
    losses, accs = adapt_task(meta_params, episode, cfg, lrs=lrs, per_step_lrs=True,
                              query_step_metrics=True).outs
    return jnp.dot(weights, losses), {"loss": losses[-1], "accuracy": accs[-1]}


def adapt(meta_params: dict, support: Examples, cfg: MetaConfig) -> dict:
    """Task params ``{"encoder", "head"}`` after the inner loop with the learned per-step
    rates (what :func:`task_loss` scores)."""
    if cfg.num_inner_steps == 0:
        return head_adapt(meta_params, support, cfg)
    return head_adapt(meta_params, support, cfg, lrs=learned_lrs(meta_params, LRS_KEY),
                      per_step_lrs=True)


def task_loss(meta_params: dict, episode: Episodes, cfg: MetaConfig):
    """Query loss after the last inner step with the learned per-step rates (no MSL: the
    evaluation objective)."""
    return _task_loss(meta_params, episode, cfg)


def meta_grad(meta_params: dict, episodes: Episodes, cfg: MetaConfig,
              step: jax.Array | int = 0):
    """``((loss, metrics), grads)`` of the MSL objective at meta-step ``step``.

    ``loss`` is the weighted multi-step objective; ``metrics["loss"]``/``["accuracy"]``
    are the last inner step's query loss and accuracy, ``metrics["second_order"]`` is 1.0
    once derivative-order annealing has switched to second order.
    """
    use_msl = cfg.mamlpp.msl_steps > 0 and cfg.num_inner_steps > 1
    weights = msl_weights(step, cfg.num_inner_steps, cfg.mamlpp.msl_steps) if use_msl else None

    def grads_of(c: MetaConfig):
        def objective(mp):
            losses, metrics = jax.vmap(lambda ep: _task_loss(mp, ep, c, weights))(episodes)
            return losses.mean(), jax.tree.map(jnp.mean, metrics)

        (loss, metrics), grads = jax.value_and_grad(objective, has_aux=True)(meta_params)
        metrics = {**metrics, "second_order": jnp.asarray(0.0 if c.first_order else 1.0)}
        return (loss, metrics), grads

    if cfg.first_order or not cfg.mamlpp.first_order_steps:
        return grads_of(cfg)
    return jax.lax.cond(jnp.asarray(step) < cfg.mamlpp.first_order_steps,
                        lambda: grads_of(cfg.replace(first_order=True)),
                        lambda: grads_of(cfg))

