"""FLOP counts for the benchmark: a trip-count-aware jaxpr counter and a hand formula.

XLA's ``compiled.cost_analysis()`` counts the body of a ``while`` loop once, whatever its
trip count, so for the meta-step (whose inner loop is a ``lax.scan``, lowered to a while
loop) it under-counts by about a factor of ``num_inner_steps``. :func:`count_flops` walks
the jaxpr instead and multiplies every ``scan`` body by its length; recomputation from
``jax.checkpoint`` is explicit in the differentiated jaxpr, so it is counted too (hardware
FLOPs, not model FLOPs). :func:`inner_step_matmul_flops` is the hand count the tests check
both counters against.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import jax

from jaxmaml.models.bert import BertConfig

# Elementwise arithmetic: one FLOP per output element (XLA's HloCostAnalysis convention).
_ELEMENTWISE = frozenset("""
add add_any sub mul div rem neg max min abs sign select_n clamp square integer_pow pow
eq ne lt le gt ge and or not nextafter floor ceil round
""".split())
# Transcendentals: counted apart, as XLA does.
_TRANSCENDENTAL = frozenset("""
exp exp2 log log1p expm1 tanh logistic erf erfc erf_inv sqrt rsqrt cbrt sin cos tan
atan2 asin acos atan sinh cosh asinh acosh atanh lgamma digamma
""".split())
_REDUCTIONS = frozenset("reduce_sum reduce_max reduce_min reduce_prod argmax argmin "
                        "cumsum cummax cumlogsumexp".split())


class FlopCount(NamedTuple):
    """FLOPs of one call: ``matmul`` (2 per multiply-add of every ``dot_general``),
    ``elementwise`` (1 per element of arithmetic ops and reductions) and
    ``transcendental`` (exp, tanh, erf, ... elements)."""

    matmul: float
    elementwise: float
    transcendental: float

    @property
    def total(self) -> float:
        """matmul + elementwise (transcendentals apart, like XLA's ``flops``)."""
        return self.matmul + self.elementwise

    def __add__(self, other):  # type: ignore[override]
        return FlopCount(*(a + b for a, b in zip(self, other)))

    def scale(self, k: float) -> "FlopCount":
        return FlopCount(*(k * a for a in self))


_ZERO = FlopCount(0.0, 0.0, 0.0)


def _size(aval) -> int:
    return math.prod(getattr(aval, "shape", ()))


def _dot_flops(eqn) -> float:
    (lhs_contract, _), _ = eqn.params["dimension_numbers"]
    lhs = eqn.invars[0].aval
    contract = math.prod(lhs.shape[d] for d in lhs_contract)
    return 2.0 * _size(eqn.outvars[0].aval) * contract


def _sub_jaxprs(value: Any):
    """Jaxprs held in an equation parameter (ClosedJaxpr, Jaxpr, or tuples of them)."""
    if isinstance(value, jax.extend.core.ClosedJaxpr):
        yield value.jaxpr
    elif isinstance(value, jax.extend.core.Jaxpr):
        yield value
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from _sub_jaxprs(v)


def _count(jaxpr) -> FlopCount:
    total = _ZERO
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "dot_general":
            total += FlopCount(_dot_flops(eqn), 0.0, 0.0)
        elif name == "scan":
            total += _count(eqn.params["jaxpr"].jaxpr).scale(eqn.params["length"])
        elif name == "cond":
            branches = [_count(b.jaxpr) for b in eqn.params["branches"]]
            total += max(branches, key=lambda c: c.total)
        elif name == "while":  # unknown trip count: one iteration, like XLA
            total += _count(eqn.params["body_jaxpr"].jaxpr) + _count(eqn.params["cond_jaxpr"].jaxpr)
        elif name in _ELEMENTWISE:
            total += FlopCount(0.0, float(sum(_size(v.aval) for v in eqn.outvars)), 0.0)
        elif name in _TRANSCENDENTAL:
            total += FlopCount(0.0, 0.0, float(sum(_size(v.aval) for v in eqn.outvars)))
        elif name in _REDUCTIONS:
            total += FlopCount(0.0, float(_size(eqn.invars[0].aval)), 0.0)
        else:  # pjit, checkpoint/remat, custom_jvp/vjp calls: recurse into held jaxprs
            for value in eqn.params.values():
                for sub in _sub_jaxprs(value):
                    total += _count(sub)
    return total


def count_flops(fn: Callable, *args, **kwargs) -> FlopCount:
    """FLOPs of ``fn(*args, **kwargs)`` from its jaxpr, ``scan`` bodies times their length.

    ``args`` may be arrays or ``jax.ShapeDtypeStruct`` trees; nothing is executed.
    """
    return _count(jax.make_jaxpr(fn)(*args, **kwargs).jaxpr)


def forward_matmul_flops(config: BertConfig, n: int, seq_len: int, way: int) -> float:
    """Matmul FLOPs of one forward pass of the BERT layers + linear head on ``n`` examples.

    Per layer and example, with ``L = seq_len``, ``H = hidden``, ``I = intermediate``::

        Q, K, V, attention-output projections   4 * 2*L*H*H
        scores q.k and probs.v                  2 * 2*L*L*H
        intermediate and output dense           2 * 2*L*H*I

    plus the head on the ``[CLS]`` feature, ``2*H*way`` per example. Embedding lookups are
    gathers (no matmul); the pooler is not used by the task head.
    """
    L, H, I = seq_len, config.hidden_size, config.intermediate_size
    per_layer = 4 * 2 * L * H * H + 2 * 2 * L * L * H + 2 * 2 * L * H * I
    return float(n * (config.num_hidden_layers * per_layer + 2 * H * way))


def inner_step_matmul_flops(config: BertConfig, n: int, seq_len: int, way: int) -> float:
    """Matmul FLOPs of one inner SGD step (forward + backward) on ``n`` support examples.

    Backward of every matmul costs two matmuls of the same size (gradient w.r.t. each
    operand: the weights and the activations, down to the embeddings since ``adapt='all'``
    adapts them), so the step is ``3 *`` :func:`forward_matmul_flops`.
    """
    return 3.0 * forward_matmul_flops(config, n, seq_len, way)
