"""The outer loop: meta-loss over a batch of tasks, the jitted meta-step, evaluation.

``meta_loss = mean(vmap(task_loss))`` over the task axis; ``meta_step`` is one
``jax.jit`` program (value_and_grad + Optax update) with the state donated. Metrics stay on
device; the caller fetches them every ``log_every`` steps.
"""

from __future__ import annotations

import re
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from jaxmaml.meta.anchor import pull_to_init
from jaxmaml.meta.config import MetaConfig, OptimConfig
from jaxmaml.meta.filters import is_outer_frozen
from jaxmaml.meta.lora import init_lora, merged_meta_params
from jaxmaml.meta.registry import get_learner
from jaxmaml.tree import path_str
from jaxmaml.types import Episodes, MetaState


def init_meta_params(encoder: Any, cfg: MetaConfig, key: jax.Array) -> dict[str, Any]:
    """``{"encoder": encoder, **learner extras}`` for ``cfg.algorithm``, and the LoRA
    factors (``"lora"``, :mod:`jaxmaml.meta.lora`) with ``cfg.lora_rank``."""
    extras = get_learner(cfg.algorithm).init_extras(encoder, cfg, key)
    if cfg.lora_rank:
        extras = {**extras, "lora": init_lora(encoder, cfg, key)}
    return {"encoder": encoder, **extras}


def meta_loss(meta_params: dict, episodes: Episodes, cfg: MetaConfig
              ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Mean task loss over the task axis of ``episodes`` (``[tasks, ...]``).

    Returns ``(loss, metrics)`` with per-task metrics averaged. LoRA factors are merged
    into the encoder first (their gradient reaches only the factors).
    """
    meta_params = merged_meta_params(meta_params, training=True)
    task_loss = get_learner(cfg.algorithm).task_loss
    losses, metrics = jax.vmap(task_loss, in_axes=(None, 0, None))(meta_params, episodes, cfg)
    return losses.mean(), jax.tree.map(jnp.mean, metrics)


def meta_grads(meta_params: dict, episodes: Episodes, cfg: MetaConfig,
               step: jax.Array | int = 0):
    """``((loss, metrics), grads)`` of the meta-objective w.r.t. ``meta_params``.

    ``step`` (the meta-step counter, traced) lets learners anneal within one program. With
    ``cfg.task_chunk = k`` (``0 < k < tasks``) the tasks are processed ``k`` at a time in a
    ``lax.scan`` that accumulates the chunks' gradients (see :func:`chunk_tasks`): the same
    mean over tasks for the same FLOPs, with the working set of ``k`` tasks instead of all.
    """
    tasks = episodes.support.labels.shape[0]
    if not 0 < cfg.task_chunk < tasks:
        return _meta_grads(meta_params, episodes, cfg, step)
    chunks = chunk_tasks(episodes, cfg.task_chunk)
    n = tasks // cfg.task_chunk
    first = jax.tree.map(lambda x: x[0], chunks)
    zeros = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), jax.eval_shape(
        lambda: _meta_grads(meta_params, first, cfg, step)))

    def accumulate(total, chunk):
        out = _meta_grads(meta_params, chunk, cfg, step)
        return jax.tree.map(jnp.add, total, out), None

    total, _ = jax.lax.scan(accumulate, zeros, chunks)
    return jax.tree.map(lambda x: x / n, total)


def chunk_tasks(episodes: Episodes, k: int) -> Episodes:
    """``[tasks, ...]`` -> ``[tasks // k, k, ...]``; chunk ``j`` holds tasks ``j, j + n,
    j + 2n, ...`` (``n = tasks // k``), so when the task axis is sharded in contiguous
    blocks over a mesh axis that divides ``k``, every chunk spreads over all devices."""
    tasks = episodes.support.labels.shape[0]
    if k < 1 or tasks % k:
        raise ValueError(f"meta.task_chunk={k} must divide the {tasks} tasks of a meta-batch "
                         "(train.tasks).")
    return jax.tree.map(lambda x: x.reshape(k, tasks // k, *x.shape[1:]).swapaxes(0, 1),
                        episodes)


def _meta_grads(meta_params, episodes, cfg, step):
    learner = get_learner(cfg.algorithm)
    if learner.meta_grad is not None:
        return learner.meta_grad(meta_params, episodes, cfg, step)
    return jax.value_and_grad(meta_loss, has_aux=True)(meta_params, episodes, cfg)


def not_meta_learned(path: str, cfg: MetaConfig) -> bool:
    """Whether the outer loop leaves the ``meta_params`` leaf at ``path`` at its initial
    value: the never-trained bottom (``outer_frozen_layers``), an encoder leaf that
    ``cfg.outer_regex`` does not match, or any encoder leaf with ``cfg.lora_rank`` (the
    factors learn instead)."""
    if is_outer_frozen(path, cfg) or (cfg.lora_rank and path.startswith("encoder/")):
        return True
    return (bool(cfg.outer_regex) and path.startswith("encoder/")
            and re.fullmatch(cfg.outer_regex, path) is None)


def lr_schedule(ocfg: OptimConfig) -> optax.Schedule:
    """Linear warmup to ``lr`` then (optional) cosine decay."""
    if ocfg.decay_steps:
        return optax.warmup_cosine_decay_schedule(
            0.0 if ocfg.warmup_steps else ocfg.lr, ocfg.lr, ocfg.warmup_steps,
            ocfg.decay_steps, end_value=ocfg.lr * ocfg.final_lr_fraction)
    if ocfg.warmup_steps:
        return optax.linear_schedule(0.0, ocfg.lr, ocfg.warmup_steps)
    return optax.constant_schedule(ocfg.lr)


def make_optimizer(ocfg: OptimConfig) -> optax.GradientTransformation:
    """Optax chain from config: the pull toward init (``pull_to_init``, optional), global-norm
    clipping, then adamw / adam / sgd on a schedule."""
    schedule = lr_schedule(ocfg)
    if ocfg.name == "adamw":
        opt = optax.adamw(schedule, b1=ocfg.b1, b2=ocfg.b2, weight_decay=ocfg.weight_decay)
    elif ocfg.name == "adam":
        opt = optax.adam(schedule, b1=ocfg.b1, b2=ocfg.b2)
    else:
        opt = optax.sgd(schedule, momentum=ocfg.momentum or None)
    parts = [optax.clip_by_global_norm(ocfg.clip_norm)] if ocfg.clip_norm > 0 else []
    if ocfg.pull_to_init:  # first: the gradient of the penalized meta-loss, then clipping
        parts = [pull_to_init(ocfg.pull_to_init), *parts]
    return optax.chain(*parts, opt)


def init_state(meta_params: dict, optimizer: optax.GradientTransformation, key: jax.Array
               ) -> MetaState:
    """A fresh :class:`MetaState` at step 0 (``key`` is a typed PRNG key)."""
    return MetaState(meta_params=meta_params, opt_state=optimizer.init(meta_params),
                     step=jnp.zeros((), jnp.int32), key=jax.random.key_data(key))


def new_state(encoder: Any, cfg: MetaConfig, optimizer: optax.GradientTransformation,
              key: jax.Array) -> MetaState:
    """A fresh :class:`MetaState` for ``encoder``: :func:`init_meta_params` with
    ``fold_in(key, 1)`` (the learner's extras), then :func:`init_state` with
    ``fold_in(key, 2)`` (the run key). The one set-up every caller uses."""
    meta_params = init_meta_params(encoder, cfg, jax.random.fold_in(key, 1))
    return init_state(meta_params, optimizer, jax.random.fold_in(key, 2))


def make_meta_step(cfg: MetaConfig, optimizer: optax.GradientTransformation
                   ) -> Callable[[MetaState, Episodes], tuple[MetaState, dict]]:
    """The un-jitted meta-step ``(state, episodes) -> (state, metrics)``.

    Deterministic: no learner draws random numbers during a step (``state.key`` is carried
    unchanged; see :class:`~jaxmaml.types.MetaState`).
    """

    def meta_step(state: MetaState, episodes: Episodes) -> tuple[MetaState, dict]:
        (loss, metrics), grads = meta_grads(state.meta_params, episodes, cfg, state.step)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.meta_params)
        if cfg.outer_frozen_layers or cfg.outer_regex or cfg.lora_rank:  # never trained:
            updates = jax.tree_util.tree_map_with_path(
                lambda path, u: jnp.zeros_like(u) if not_meta_learned(path_str(path), cfg) else u,
                updates)  # not even weight decay may move them
        meta_params = optax.apply_updates(state.meta_params, updates)
        metrics = {**metrics, "loss": loss, "grad_norm": optax.global_norm(grads)}
        return MetaState(meta_params, opt_state, state.step + 1, state.key), metrics

    return meta_step


def jit_meta_step(cfg: MetaConfig, optimizer: optax.GradientTransformation, **jit_kwargs):
    """``jax.jit(make_meta_step(...), donate_argnums=0, **jit_kwargs)``.

    Pass ``in_shardings``/``out_shardings`` for a sharded program (see
    :mod:`jaxmaml.parallel`).
    """
    return jax.jit(make_meta_step(cfg, optimizer), donate_argnums=0, **jit_kwargs)


def make_eval_step(cfg: MetaConfig) -> Callable[[dict, Episodes], dict]:
    """``(meta_params, episodes) -> {"loss": [tasks], "accuracy": [tasks]}``.

    Adapts to each task's support set and scores its query set; nothing is updated.
    Per-task values (not means) so the caller can compute confidence intervals. Objectives
    that only shape meta-training are off (:meth:`MetaConfig.for_inference`), so this scores
    what a user's support set gives (the learner's ``adapt`` + ``predict``).
    """
    task_loss = get_learner(cfg.algorithm).task_loss
    cfg = cfg.for_inference()

    def eval_step(meta_params, episodes):
        meta_params = merged_meta_params(meta_params)
        _, metrics = jax.vmap(task_loss, in_axes=(None, 0, None))(meta_params, episodes, cfg)
        return metrics

    return eval_step
