"""Meta-SGD (Li et al. 2017): MAML with a meta-learned inner learning rate per parameter.

Inner step: ``p <- p - exp(log_lr) * grad_p L_support(p)`` (elementwise). The learning
rates are stored as their logarithm, so they stay positive and the outer optimizer moves
them multiplicatively; all start at ``cfg.inner_lr``. ``meta_params["inner_lrs"]`` mirrors
the adapted leaves (``{"encoder": ..., "head": ...}``); the head's learning rates have
shapes ``[H, 1]`` and ``[1]``, shared across the task-local classes, whose indices are a
random permutation per task (a per-class rate would carry no meaning, and would tie the
learner to one ``way``).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from jaxmaml.tree import flatten, unflatten
from jaxmaml.meta.config import MetaConfig
from jaxmaml.meta.maml import adapt_task, adapted_shapes, head_adapt
from jaxmaml.types import Episodes, Examples

LRS_KEY = "inner_lrs"


def _check_lr(cfg: MetaConfig) -> None:
    if cfg.inner_lr <= 0:
        raise ValueError(f"meta.inner_lr={cfg.inner_lr} must be > 0 for learned inner "
                         "learning rates (they are stored as log(lr)).")


def init_log_lrs(encoder: Any, cfg: MetaConfig, *, leading: tuple[int, ...] = (),
                 per_parameter: bool = True) -> dict:
    """Nested ``{"encoder": ..., "head": ...}`` of ``log(cfg.inner_lr)`` for adapted leaves.

    ``per_parameter``: each leaf's shape (Meta-SGD), else a scalar per leaf (MAML++);
    ``leading`` prepends axes (``(num_inner_steps,)`` for per-step rates).
    """
    _check_lr(cfg)
    value = math.log(cfg.inner_lr)
    return unflatten({
        path: jnp.full(leading + (shape if per_parameter else ()), value, jnp.float32)
        for path, (shape, _) in adapted_shapes(encoder, cfg).items()})


def learned_lrs(meta_params: dict, extras_name: str = LRS_KEY) -> dict[str, jax.Array]:
    """Flat ``{path: lr}``: ``exp`` of the log learning rates stored in
    ``meta_params[extras_name]``, in each adapted leaf's dtype (so a bfloat16 encoder keeps
    a bfloat16 scan carry)."""
    dtypes = {k: v.dtype for k, v in flatten({"encoder": meta_params["encoder"]}).items()}
    default = jnp.zeros(()).dtype  # the head's dtype (float64 under jax_enable_x64)
    return {k: jnp.exp(v).astype(dtypes.get(k, default))
            for k, v in flatten(meta_params[extras_name]).items()}


def init_extras(encoder: Any, cfg: MetaConfig, key: jax.Array) -> dict:
    del key  # the rates start at cfg.inner_lr
    return {LRS_KEY: init_log_lrs(encoder, cfg)}


def task_loss(meta_params: dict, episode: Episodes, cfg: MetaConfig):
    """Query loss after adapting with the learned per-parameter learning rates."""
    loss, acc = adapt_task(meta_params, episode, cfg, lrs=learned_lrs(meta_params)).score()
    return loss, {"loss": loss, "accuracy": acc}


def adapt(meta_params: dict, support: Examples, cfg: MetaConfig) -> dict:
    """Task params ``{"encoder", "head"}`` after the inner loop with the learned rates."""
    return head_adapt(meta_params, support, cfg, lrs=learned_lrs(meta_params))
