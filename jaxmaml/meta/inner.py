"""The inner loop: adapt params to one task's support set with SGD steps in ``lax.scan``.

Params seen here are ``{"encoder": BERT params, "head": {"kernel", "bias"}}``. An adapt
filter (:mod:`jaxmaml.meta.filters`) splits them into the leaves the inner loop updates
and the frozen rest; frozen bottom layers are run once per task and cached
(:mod:`jaxmaml.meta.encoding`), so only the adapted top of the network is recomputed each
inner step; the support loss is :mod:`jaxmaml.meta.heads`' cross-entropy.
"""

from __future__ import annotations

from typing import Any, Callable

import jax

from jaxmaml.meta import hvp
from jaxmaml.meta.config import MetaConfig
from jaxmaml.meta.encoding import features
from jaxmaml.meta.heads import head_logits, weighted_xent
from jaxmaml.tree import unflatten
from jaxmaml.types import Examples, Flat, Params

_REMAT = {
    "none": None,
    "full": lambda f: jax.checkpoint(f),
    "dots_saveable": lambda f: jax.checkpoint(f, policy=jax.checkpoint_policies.dots_saveable),
}


def inner_adapt(adapted: Flat, frozen: Flat, loss_fn: Callable[[Params], jax.Array],
                cfg: MetaConfig, *, lrs: Any = None, per_step_lrs: bool = False,
                step_fn_out: Callable[[Params], Any] | None = None) -> tuple[Flat, Any]:
    """Run ``cfg.num_inner_steps`` steps of ``p <- p - lr * grad_p loss_fn(p)`` in ``lax.scan``.

    Works for any model: ``loss_fn`` takes the full (unflattened) params tree, e.g. the
    support loss of a BERT + head, or an MLP's regression loss.

    Args:
      adapted: flat dict of the leaves the inner loop updates (see :func:`jaxmaml.meta.filters.partition`).
      frozen: the other leaves (constants here, still differentiable from outside).
      loss_fn: the support loss of the full params tree.
      cfg: static config: ``num_inner_steps``, ``inner_lr``, ``first_order`` (stop
        gradients through the inner gradients: FOMAML), ``second_order`` (``hvp``: each
        step's VJP is a Hessian-vector product, :mod:`jaxmaml.meta.hvp`; ``autodiff``:
        ``linearize``: the same VJP from a linearization kept from the forward pass;
        ``autodiff``: reverse-over-reverse through the scan) and ``remat`` (``autodiff``
        only).
      lrs: per-leaf learning rates (a flat dict like ``adapted``, leaves broadcastable to
        each param) for Meta-SGD / MAML++; ``None`` uses the scalar ``cfg.inner_lr``.
      per_step_lrs: ``lrs`` leaves carry a leading ``[num_inner_steps]`` axis.
      step_fn_out: optional ``f(params)`` evaluated after every step and stacked (e.g. the
        query loss per step for MAML++'s multi-step loss).

    Returns:
      (adapted leaves after the last step, stacked ``step_fn_out`` outputs or ``None``).
    """

    def loss_of_adapted(a_: Flat) -> jax.Array:
        return loss_fn(unflatten({**frozen, **a_}))

    def step(a: Flat, lr: Any) -> tuple[Flat, Any]:
        if cfg.first_order or cfg.second_order == "autodiff":
            grads = jax.grad(loss_of_adapted)(a)
            if cfg.first_order:
                grads = jax.lax.stop_gradient(grads)
            a = hvp.sgd_update(a, grads, lr, cfg.inner_lr)
        else:  # the step's VJP is a Hessian-vector product (see jaxmaml.meta.hvp)
            a = hvp.sgd_step(loss_of_adapted, a, lr, cfg.inner_lr,
                             linearize=cfg.second_order == "linearize")
        out = None if step_fn_out is None else step_fn_out(unflatten({**frozen, **a}))
        return a, out

    if cfg.num_inner_steps == 0:
        return adapted, None
    if _REMAT[cfg.remat] is not None:
        step = _REMAT[cfg.remat](step)
    if per_step_lrs:
        return jax.lax.scan(step, adapted, lrs, length=cfg.num_inner_steps)
    return jax.lax.scan(lambda a, _: step(a, lrs), adapted, None, length=cfg.num_inner_steps)


def support_loss_fn(support: Examples, cfg: MetaConfig, bottom: jax.Array | None = None
                    ) -> Callable[[Params], jax.Array]:
    """Cross-entropy of ``{"encoder", "head"}`` params on a support set (cached bottom)."""

    def loss_fn(p: Params) -> jax.Array:
        feats = features(p["encoder"], support, cfg, bottom)
        return weighted_xent(head_logits(p["head"], feats), support.labels, support.weights)[0]

    return loss_fn
