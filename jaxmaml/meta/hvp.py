"""An inner SGD step whose reverse-mode derivative is a Hessian-vector product.

Second-order MAML differentiates through ``a' = a - lr * grad L(a)``. Left to autodiff, the
outer ``jax.grad`` transposes the inner gradient computation (reverse-over-reverse): every
inner step keeps its forward *and* backward activations for the outer backward pass, and
XLA:CPU evaluates the transposed derivative chains as huge elementwise fusions that read
many stacked residuals and write transposed operands (the 32% "copy" share in the
profile in docs/performance.md).

The step's vector-Jacobian product has a closed form, because the Hessian is symmetric:

    d a'/d a    ^T v = v - H (lr * v)             H = d^2 L / d a^2
    d a'/d c    ^T v = - d^2 L / (d c d a) (lr * v)   c: anything else L depends on
    d a'/d lr   ^T v = - v * grad L(a)            (summed to lr's shape)

and all three come out of ONE forward-over-reverse product ``jax.jvp(grad L, (a,), (lr * v,))``
(the gradient taken with respect to ``a`` and every float input ``c`` of ``L``: frozen
leaves, cached bottom features, learned head inits). :func:`sgd_step` is a
``jax.custom_vjp`` that keeps only ``a`` (and ``L``'s inputs, which are loop-invariant)
and recomputes the step's gradient inside that product. Same meta-gradient as autodiff
(tested in float64), at ~4/3 of its FLOPs, with one inner step's working set instead of
all S steps' residuals; on XLA:CPU it is also the faster program (docs/performance.md).
``sgd_step(..., linearize=True)`` (``meta.second_order: linearize``) computes the same VJP
from a linearization of the gradient kept from the forward pass instead of recomputing it.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp


class _Staged:
    """``loss(a, *consts)`` from the jaxpr of a closure ``loss(a)`` (consts made explicit).

    ``jax.closure_convert`` hoists only float closures; a custom_vjp must not close over
    integer tracers either (token ids under ``vmap``), so every constant becomes an
    argument here. Hashed by identity: one instance per traced step.
    """

    def __init__(self, jaxpr):
        self.jaxpr = jaxpr

    def __call__(self, a, *consts):
        return jax.core.eval_jaxpr(self.jaxpr, consts, *jax.tree.leaves(a))[0]


def _used_consts(closed) -> list[int]:
    """Indices of the constants the jaxpr reads (unused frozen leaves get no derivative)."""
    read = {id(v) for eqn in closed.jaxpr.eqns for v in eqn.invars}
    read |= {id(v) for v in closed.jaxpr.outvars}
    return [i for i, v in enumerate(closed.jaxpr.constvars) if id(v) in read]


def _is_float(x: Any) -> bool:
    return jnp.issubdtype(x.dtype, jnp.inexact)


def _sum_to(x: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Sum ``x`` over the axes along which a ``shape``-d array was broadcast to it."""
    x = x.sum(tuple(range(x.ndim - len(shape)))) if x.ndim > len(shape) else x
    axes = tuple(i for i, (n, m) in enumerate(zip(x.shape, shape)) if m == 1 and n != 1)
    return x.sum(axes, keepdims=True) if axes else x


def sgd_update(a, grads, lrs, scalar_lr):
    """``a - lr * grads`` leafwise: per-leaf ``lrs`` (broadcastable), or ``scalar_lr`` if None."""
    if lrs is None:
        return jax.tree.map(lambda p, g: p - scalar_lr * g, a, grads)
    return jax.tree.map(lambda p, g, r: p - r * g, a, grads, lrs)


def float_indices(consts: list) -> list[int]:
    """Indices of the float constants of a staged loss (the ones with a derivative)."""
    return [i for i, c in enumerate(consts) if _is_float(c)]


def float_input_grads(loss: Callable, consts: list) -> tuple[Callable, list[int]]:
    """``(grads, floats)``: ``grads(a) = (dL/da, [dL/dc_i for i in floats])`` for a staged
    ``loss(a, *consts)``, at ``consts``; ``floats`` = :func:`float_indices` of ``consts``."""
    floats = float_indices(consts)
    fc = [consts[i] for i in floats]

    def loss_of(a_, fc_):
        cs = list(consts)
        for i, c in zip(floats, fc_):
            cs[i] = c
        return loss(a_, *cs)

    def grads(a):
        return jax.grad(loss_of, argnums=(0, 1))(a, fc)

    return grads, floats


def stage(loss_fn: Callable[[Any], jax.Array], a: Any) -> tuple[_Staged, list]:
    """``(loss, consts)`` with ``loss(a, *consts) == loss_fn(a)``: every value ``loss_fn``
    closes over (and reads) made an explicit argument, as a custom VJP needs."""
    closed = jax.make_jaxpr(loss_fn)(a)
    used = _used_consts(closed)  # constants the loss never reads are dropped
    jaxpr = closed.jaxpr.replace(constvars=[closed.jaxpr.constvars[i] for i in used])
    return _Staged(jaxpr), [closed.consts[i] for i in used]


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _step(loss, scalar_lr, a, lrs, consts):
    return sgd_update(a, jax.grad(loss)(a, *consts), lrs, scalar_lr)


def _step_fwd(loss, scalar_lr, a, lrs, consts):
    return _step(loss, scalar_lr, a, lrs, consts), (a, lrs, consts)


def _lr_times(ct, lrs, scalar_lr):
    return (jax.tree.map(lambda v: scalar_lr * v, ct) if lrs is None
            else jax.tree.map(lambda v, r: r * v, ct, lrs))


def _cotangents(ct, lrs, g, h_a, h_c, floats, n_consts):
    """The step's VJP from ``g = grad L`` and ``(h_a, h_c) = d(grad L)/da (lr * ct)``."""
    ct_a = jax.tree.map(lambda v, h: v - h, ct, h_a)
    ct_lrs = None if lrs is None else jax.tree.map(
        lambda v, g_, r: _sum_to(-v * g_, jnp.shape(r)).astype(jnp.result_type(r)), ct, g, lrs)
    ct_consts = [None] * n_consts
    for i, h in zip(floats, h_c):
        ct_consts[i] = -h
    return ct_a, ct_lrs, ct_consts


def _step_bwd(loss, scalar_lr, res, ct):
    a, lrs, consts = res
    grads, floats = float_input_grads(loss, consts)  # grad L w.r.t. a and every float input
    (g, _), (h_a, h_c) = jax.jvp(grads, (a,), (_lr_times(ct, lrs, scalar_lr),))
    return _cotangents(ct, lrs, g, h_a, h_c, floats, len(consts))


_step.defvjp(_step_fwd, _step_bwd)


# The same step, its gradient linearized in the forward pass: the backward pass applies the
# stored linearization instead of recomputing the gradient (``second_order: linearize``).
# The linearization keeps the outputs of the unbatched matmuls (the dense layers' forward
# and backward products) and recomputes the rest (elementwise ops, the attention's batched
# products) from them; keeping everything measured 2x slower in bf16 and 4.8x the memory
# (docs/performance.md).
_step_linearized = jax.custom_vjp(_step.fun, nondiff_argnums=(0, 1))
KEEP = jax.checkpoint_policies.dots_with_no_batch_dims_saveable


def _linearized_fwd(loss, scalar_lr, a, lrs, consts):
    grads, _ = float_input_grads(loss, consts)
    (g, _), lin = jax.linearize(jax.checkpoint(grads, policy=KEEP), a)
    return sgd_update(a, g, lrs, scalar_lr), (lin, None if lrs is None else g, lrs, consts)


def _linearized_bwd(loss, scalar_lr, res, ct):
    lin, g, lrs, consts = res
    h_a, h_c = lin(_lr_times(ct, lrs, scalar_lr))
    return _cotangents(ct, lrs, g, h_a, h_c, float_indices(consts), len(consts))


_step_linearized.defvjp(_linearized_fwd, _linearized_bwd)


def sgd_step(loss_fn: Callable[[Any], jax.Array], a: Any, lrs: Any, scalar_lr: float,
             linearize: bool = False) -> Any:
    """``a - lr * grad loss_fn(a)`` with the Hessian-vector-product VJP described above.

    Args:
      loss_fn: scalar loss of ``a`` (a pytree); may close over traced values (frozen params,
        support data, cached features); their meta-gradients flow through the step.
      lrs: per-leaf learning rates (pytree like ``a``, leaves broadcastable), differentiable
        (Meta-SGD, MAML++); ``None`` uses the constant ``scalar_lr``.
      linearize: linearize the step's gradient in the forward pass and keep the
        linearization (the residuals :data:`KEEP` saves: dense matmul outputs) for the
        backward pass, instead of keeping only ``a`` and recomputing the gradient there:
        no second forward and backward of the support loss per step (0.77x the FLOPs on
        BERT mini), but memory that grows with the number of inner steps.
    """
    loss, consts = stage(loss_fn, a)
    return (_step_linearized if linearize else _step)(loss, scalar_lr, a, lrs, consts)
