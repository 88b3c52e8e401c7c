"""bf16 mixed precision for the encoder's matmuls: bf16 operands, float32 accumulation.

With ``BertConfig.dtype == "bfloat16"`` every dense layer and both attention einsums go
through :func:`mixed_einsum`: operands are rounded to bfloat16, the product is accumulated
and returned in float32 (``preferred_element_type=float32``). Everything else stays float32:
params (the master copy, so Optax state and the inner-loop update ``p - lr * g`` are f32),
the residual stream, LayerNorm, softmax, GELU, the head and the losses.

The derivative is a ``jax.custom_vjp`` whose backward pass rounds the incoming float32
cotangent to bfloat16 too, so the two backward matmuls (``d lhs``, ``d rhs``) also run
bf16 x bf16 -> f32 (with plain autodiff they would be f32 x bf16 products, which XLA:CPU
upcasts to float32 matmuls: two thirds of the FLOPs would miss the bf16 units). This is the
rounding ``torch.autocast`` applies. Forward-over-reverse (the ``hvp`` inner step's
``jax.jvp`` of ``jax.grad``) differentiates the forward and backward rules themselves, so
the tangent matmuls are bf16 x bf16 -> f32 as well. ``jax.jvp`` of the forward alone is not
supported (custom_vjp); nothing in jaxmaml needs it.

Why float32 accumulation: XLA:CPU runs ``bf16 x bf16 -> f32`` 3-4x faster than f32 on
AVX512-BF16/AMX (and 3-5x faster than ``-> bf16``, docs/performance.md); GPUs' tensor
cores accumulate in f32 anyway.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

COMPUTE = jnp.bfloat16
ACCUMULATE = jnp.float32


def _parse(spec: str) -> tuple[str, str, str]:
    inputs, out = spec.replace(" ", "").split("->")
    a, b = inputs.split(",")
    return a, b, out


def _check(spec: str) -> None:
    """The transposed specs below need every index of each operand in the other operand or
    the output (no index summed inside one operand) and no repeated index in a term."""
    a, b, out = _parse(spec)
    terms = [t.replace("...", "") for t in (a, b, out)]
    for t in terms:
        if len(set(t)) != len(t):
            raise ValueError(f"mixed_einsum({spec!r}): repeated index in a term.")
    for mine, other in ((terms[0], terms[1]), (terms[1], terms[0])):
        lonely = set(mine) - set(other) - set(terms[2])
        if lonely:
            raise ValueError(f"mixed_einsum({spec!r}): indices {sorted(lonely)} are summed "
                             "inside one operand; sum them before the einsum.")


def _expand(term: str, ndim: int, fill: str) -> str:
    """``"...qhd"`` with ``ndim=5`` -> ``"ABqhd"`` (``fill`` supplies the ``...`` letters)."""
    if "..." not in term:
        return term
    named = len(term) - 3
    return term.replace("...", fill[:ndim - named])


def _transpose(x: jax.Array, perm: list[int]) -> jax.Array:
    """``x`` transposed and materialized: XLA would fold a bare transpose of a dot operand
    back into the dot's dimension numbers (a non-canonical bf16 dot, which XLA:CPU rejects:
    ``x.T @ dy`` for 2-D ``x``, a kernel gradient)."""
    if perm == sorted(perm):
        return x
    return jax.lax.optimization_barrier(jnp.transpose(x, perm))


def _canonical_einsum(spec: str, a: jax.Array, b: jax.Array) -> jax.Array:
    """``einsum(spec, a, b)`` as one canonical ``[B, M, K] x [B, K, N] -> [B, M, N]``
    ``dot_general`` (bf16 in, f32 out) between explicit transposes and reshapes.

    XLA:CPU runs ``bf16 x bf16 -> f32`` only in its YNNPACK dot, which takes row-major
    operands with the contraction last in ``lhs`` and first (after batch) in ``rhs``; any
    other dot goes to a fallback that rejects this type combination (``UNIMPLEMENTED:
    Unsupported element type for DotThunk``). jnp.einsum keeps the operands' axis order,
    which for backward specs such as ``...hqk,...qhd->...khd`` contracts a middle axis.
    """
    sa, sb, so = _parse(spec)
    ell = "ABCDEFGHIJ"  # '...' letters (upper case never used by callers)
    nell = max(a.ndim - (len(sa) - 3 if "..." in sa else len(sa)),
               b.ndim - (len(sb) - 3 if "..." in sb else len(sb)), 0)
    fill = ell[:nell]
    ta = _expand(sa, a.ndim, fill[nell - (a.ndim - len(sa) + 3):] if "..." in sa else "")
    tb = _expand(sb, b.ndim, fill[nell - (b.ndim - len(sb) + 3):] if "..." in sb else "")
    to = _expand(so, nell + len(so) - 3, fill) if "..." in so else so
    batch = [c for c in to if c in ta and c in tb]
    contract = [c for c in ta if c in tb and c not in to]
    m = [c for c in ta if c not in tb]
    n = [c for c in tb if c not in ta]
    size = {**dict(zip(ta, a.shape)), **dict(zip(tb, b.shape))}
    prod = lambda cs: int(np.prod([size[c] for c in cs], dtype=np.int64))  # noqa: E731
    a2 = _transpose(a.astype(COMPUTE), [ta.index(c) for c in batch + m + contract])
    b2 = _transpose(b.astype(COMPUTE), [tb.index(c) for c in batch + contract + n])
    a2 = a2.reshape(prod(batch), prod(m), prod(contract))
    b2 = b2.reshape(prod(batch), prod(contract), prod(n))
    out = jax.lax.dot_general(a2, b2, (((2,), (1,)), ((0,), (0,))),
                              preferred_element_type=ACCUMULATE)
    out = out.reshape([size[c] for c in batch + m + n])
    return jnp.transpose(out, [(batch + m + n).index(c) for c in to])


def _einsum(spec: str, a: jax.Array, b: jax.Array) -> jax.Array:
    return _canonical_einsum(spec, a, b)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _mixed(spec: str, a: jax.Array, b: jax.Array) -> jax.Array:
    return _einsum(spec, a, b)


def _mixed_fwd(spec, a, b):
    # Residuals in bf16: half the memory of the f32 operands, and what the backward reads.
    # (dtypes travel as empty arrays: residuals must be JAX values)
    return _einsum(spec, a, b), (a.astype(COMPUTE), b.astype(COMPUTE),
                                 jnp.zeros((0,), a.dtype), jnp.zeros((0,), b.dtype))


def _unbroadcast(x: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Sum leading ``...`` axes that ``x`` has beyond ``shape`` (operand without them)."""
    extra = x.ndim - len(shape)
    return x.sum(tuple(range(extra))) if extra > 0 else x


def _mixed_bwd(spec, res, g):
    a16, b16, a_like, b_like = res
    sa, sb, so = _parse(spec)
    g16 = g.astype(COMPUTE)
    # d a = g . b (over b's indices not in a), d b = a . g; '...' absent from the target
    # term is summed by einsum (a kernel without batch axes gets the batch-summed gradient).
    da = _canonical_einsum(f"{so},{sb}->{sa}", g16, b16)
    db = _canonical_einsum(f"{sa},{so}->{sb}", a16, g16)
    return (_unbroadcast(da, a16.shape).astype(a_like.dtype),
            _unbroadcast(db, b16.shape).astype(b_like.dtype))


_mixed.defvjp(_mixed_fwd, _mixed_bwd)


def mixed_einsum(spec: str, a: jax.Array, b: jax.Array) -> jax.Array:
    """``einsum(spec, a, b)`` with bf16 operands and a float32 result (and bf16 backward).

    Args:
      spec: a two-operand einsum spec, e.g. ``"...i,io->...o"`` (dense) or
        ``"...qhd,...khd->...hqk"`` (attention scores); every index of one operand appears
        in the other operand or in the output.
      a, b: float arrays of any float dtype (float32 params and activations).

    Returns:
      float32 array of the einsum's shape.
    """
    _check(spec)
    return _mixed(spec, a, b)


def dense(x: jax.Array, kernel: jax.Array, bias: jax.Array | None) -> jax.Array:
    """``x @ kernel + bias`` for ``x`` ``[..., in]``, ``kernel`` ``[in, out]``: bf16
    matmul, float32 accumulation and bias add -> ``[..., out]`` float32."""
    y = mixed_einsum("...i,io->...o", x, kernel)
    return y if bias is None else y + bias.astype(y.dtype)
