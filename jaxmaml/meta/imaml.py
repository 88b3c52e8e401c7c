"""Implicit MAML (Rajeswaran, Finn, Kakade & Levine 2019): the meta-gradient of the
proximally regularized inner solution, by conjugate gradient, without backprop through the
inner loop.

Per task the inner loop approximately solves

    phi* = argmin_phi  L_s(phi, c) + lam/2 |phi - theta|^2

(``theta``: the adapted leaves' initial values, ``c``: everything else ``L_s`` reads: frozen
leaves, cached bottom features; ``lam`` = ``meta.imaml.lam``) with
``meta.num_inner_steps`` SGD steps of size ``meta.inner_lr`` from ``theta``. At the
optimum ``grad L_s(phi*) + lam (phi* - theta) = 0``, so by the implicit function theorem,
with ``H = d^2 L_s / d phi^2`` and ``M = d^2 L_s / (d phi d c)`` at ``phi*``:

    d phi*/d theta = (I + H/lam)^-1          d phi*/d c = -(H + lam I)^-1 M

The outer VJP of ``v = dL_q/d phi*`` is therefore ``x = (I + H/lam)^-1 v`` for ``theta``
(``meta.imaml.cg_steps`` conjugate-gradient steps on ``(1 + meta.imaml.cg_damping) x + H x / lam = v``,
each one Hessian-vector product of a ``jax.linearize``d gradient) and ``-M^T x / lam`` for
``c`` (one more product). Nothing of the inner loop is stored: memory is that of one support
gradient and its linearization, whatever ``num_inner_steps``.

:func:`implicit_adapt` is a ``jax.custom_vjp`` with :func:`jaxmaml.meta.inner.inner_adapt`'s
shape, so the rest of the MAML family's machinery (head init, embedding row view, cached
frozen bottom, query scoring) is shared. The relative CG residual ``|v - A x| / |v|``
comes back as the cotangent of a zero ``probe`` input: :func:`meta_grad` reports its task
mean as ``metrics["cg_residual"]``.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from jaxmaml.meta import hvp
from jaxmaml.meta.config import MetaConfig
from jaxmaml.types import Flat, Params
from jaxmaml.tree import unflatten
from jaxmaml.meta.maml import adapt_task, head_adapt
from jaxmaml.types import Examples


class _Hyper(NamedTuple):  # hashable: a static argument of the custom VJP
    lam: float
    lr: float
    steps: int
    cg_steps: int
    damping: float


def _vdot(a: Any, b: Any) -> jax.Array:
    return sum(jnp.vdot(x, y).real for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _axpy(alpha, x, y):
    return jax.tree.map(lambda x_, y_: (alpha * x_ + y_).astype(y_.dtype), x, y)


def conjugate_gradient(matvec: Callable[[Any], Any], b: Any, steps: int) -> Any:
    """``steps`` iterations of CG for ``matvec(x) = b`` from ``x = 0`` (``matvec``
    symmetric positive definite; a pytree ``b``). A fixed count: one compiled loop."""
    zero = jax.tree.map(jnp.zeros_like, b)
    rs = _vdot(b, b)

    def body(_, carry):
        x, r, p, rs = carry
        ap = matvec(p)
        pap = _vdot(p, ap)
        alpha = jnp.where(pap > 0, rs / jnp.where(pap > 0, pap, 1.0), 0.0)
        x, r = _axpy(alpha, p, x), _axpy(-alpha, ap, r)
        rs_new = _vdot(r, r)
        beta = jnp.where(rs > 0, rs_new / jnp.where(rs > 0, rs, 1.0), 0.0)
        return x, r, _axpy(beta, p, r), rs_new

    return jax.lax.fori_loop(0, steps, body, (zero, b, b, rs))[0]


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _implicit(loss, hyper: _Hyper, theta, consts, probe):
    del probe

    def step(phi, _):
        g = jax.grad(loss)(phi, *consts)
        return jax.tree.map(lambda p, g_, t: p - hyper.lr * (g_ + hyper.lam * (p - t)),
                            phi, g, theta), None

    return jax.lax.scan(step, theta, None, length=hyper.steps)[0]


def _implicit_fwd(loss, hyper, theta, consts, probe):
    phi = _implicit(loss, hyper, theta, consts, probe)
    return phi, (phi, consts, probe)


def _implicit_bwd(loss, hyper, res, v):
    phi, consts, probe = res
    grads, floats = hvp.float_input_grads(loss, consts)
    _, lin = jax.linearize(grads, phi)  # one gradient's residuals, reused

    def a_times(x):  # (1 + damping) x + H x / lam
        hx = lin(x)[0]
        return jax.tree.map(lambda x_, h: (1.0 + hyper.damping) * x_ + h / hyper.lam, x, hx)

    x = conjugate_gradient(a_times, v, hyper.cg_steps)
    hx, mx = lin(x)
    ax = jax.tree.map(lambda x_, h: (1.0 + hyper.damping) * x_ + h / hyper.lam, x, hx)
    r = jax.tree.map(jnp.subtract, v, ax)
    b2 = _vdot(v, v)
    residual = jnp.sqrt(_vdot(r, r) / jnp.where(b2 > 0, b2, 1.0))
    ct_consts = [None] * len(consts)
    for i, m in zip(floats, mx):
        ct_consts[i] = (-m / hyper.lam).astype(consts[i].dtype)
    return x, ct_consts, residual.astype(probe.dtype)


_implicit.defvjp(_implicit_fwd, _implicit_bwd)


def implicit_adapt(adapted: Flat, frozen: Flat, loss_fn: Callable[[Params], jax.Array],
                   cfg: MetaConfig, probe: jax.Array | None = None) -> Flat:
    """The proximal inner loop with the implicit meta-gradient (see the module docstring).

    Args:
      adapted: flat dict of the leaves the inner loop updates (``theta``).
      frozen: the other leaves (their meta-gradient includes the ``-M^T x / lam`` term).
      loss_fn: the support loss of the full params tree.
      cfg: ``num_inner_steps``, ``inner_lr``, ``imaml_lambda``, ``cg_steps``,
        ``cg_damping``.
      probe: a float scalar whose cotangent is the relative CG residual (its value is
        unused); None: a constant zero (residual not reported).

    Returns:
      the adapted leaves ``phi`` (same structure as ``adapted``).
    """
    if cfg.num_inner_steps == 0:
        return adapted

    def loss_of_adapted(a_: Flat) -> jax.Array:
        return loss_fn(unflatten({**frozen, **a_}))

    loss, consts = hvp.stage(loss_of_adapted, adapted)
    hyper = _Hyper(float(cfg.imaml.lam), float(cfg.inner_lr), int(cfg.num_inner_steps),
                   int(cfg.imaml.cg_steps), float(cfg.imaml.cg_damping))
    probe = jnp.zeros((), jnp.float32) if probe is None else probe
    return _implicit(loss, hyper, adapted, consts, probe)


# ---------------------------------------------------------------- the learner
def _task_loss(meta_params, episode, cfg: MetaConfig, probe):
    solve = functools.partial(implicit_adapt, probe=probe)
    loss, acc = adapt_task(meta_params, episode, cfg, solve=solve).score()
    return loss, {"loss": loss, "accuracy": acc}


def adapt(meta_params: dict, support: Examples, cfg: MetaConfig) -> dict:
    """Task params ``{"encoder", "head"}`` after the proximal inner loop on ``support``."""
    return head_adapt(meta_params, support, cfg, solve=implicit_adapt)


def task_loss(meta_params: dict, episode, cfg: MetaConfig):
    """Query loss of the proximal inner solution (evaluation; no residual)."""
    return _task_loss(meta_params, episode, cfg, None)


def meta_grad(meta_params: dict, episodes, cfg: MetaConfig, step: jax.Array | int = 0):
    """``((loss, metrics), grads)`` of the mean query loss with the implicit meta-gradient;
    ``metrics["cg_residual"]``: the task mean of ``|v - A x| / |v|`` (``[tasks, ...]``
    episodes)."""
    del step  # no annealing
    tasks = episodes.support.labels.shape[0]

    def mean_loss(mp, probe):
        losses, metrics = jax.vmap(lambda ep: _task_loss(mp, ep, cfg, probe))(episodes)
        return losses.mean(), jax.tree.map(jnp.mean, metrics)

    (loss, metrics), (grads, residual_sum) = jax.value_and_grad(
        mean_loss, argnums=(0, 1), has_aux=True)(meta_params, jnp.zeros((), jnp.float32))
    return (loss, {**metrics, "cg_residual": residual_sum / tasks}), grads
