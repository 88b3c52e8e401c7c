"""The inner loop: adapt params to one task's support set with SGD steps in ``lax.scan``.

Params seen here are ``{"encoder": BERT params, "head": {"kernel", "bias"}}``. An adapt
filter splits them into the leaves the inner loop updates and the frozen rest; frozen
bottom layers are run once per task and cached, so only the adapted top of the network is
recomputed each inner step.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxmaml.meta import hvp
from jaxmaml.meta.config import MetaConfig
from jaxmaml.models.bert import embed, run_layers
from jaxmaml.tree import flatten, unflatten  # noqa: F401 -- params as flat path dicts
from jaxmaml.types import Examples

Params = dict[str, Any]
Flat = dict[str, jax.Array]

NORM_EPS = 1e-12  # l2_normalize: the floor of a norm (only an all-zero vector reaches it)


def first_adapted_layer(cfg: MetaConfig) -> int:
    """Index of the lowest encoder layer the inner loop updates (``num_layers`` = none).

    Everything below it is frozen in the inner loop, so its output is computed once per
    task (see :func:`caches_bottom`).
    """
    n = cfg.model.num_hidden_layers
    if cfg.adapt == "head":
        return n
    if cfg.adapt == "top_k_layers":
        return max(n - cfg.adapt_top_k, cfg.outer_frozen_layers)
    return 0


def is_outer_frozen(path: str, cfg: MetaConfig) -> bool:
    """Whether ``path`` (in ``meta_params``) is never trained: embeddings and the bottom
    ``cfg.outer_frozen_layers`` encoder layers."""
    if not cfg.outer_frozen_layers:
        return False
    if path.startswith("encoder/embeddings/"):
        return True
    m = re.match(r"encoder/encoder/layer/(\d+)/", path)
    return m is not None and int(m.group(1)) < cfg.outer_frozen_layers


def is_adapted(path: str, cfg: MetaConfig) -> bool:
    """Whether the inner loop updates the leaf at ``path`` (e.g. ``encoder/pooler/dense/kernel``)."""
    if path.startswith("head/"):
        return True
    if cfg.adapt == "all":
        return True
    if cfg.adapt == "regex":
        return re.fullmatch(cfg.adapt_regex, path) is not None
    m = re.match(r"encoder/encoder/layer/(\d+)/", path)
    return m is not None and int(m.group(1)) >= first_adapted_layer(cfg)


def partition(params: Params, cfg: MetaConfig) -> tuple[Flat, Flat]:
    """Split params into (adapted, frozen) flat dicts by the adapt filter."""
    flat = flatten(params)
    adapted = {k: v for k, v in flat.items() if is_adapted(k, cfg)}
    frozen = {k: v for k, v in flat.items() if k not in adapted}
    return adapted, frozen


# ---------------------------------------------------------------- features, head, loss
def _at_least_f32(x: jax.Array) -> jax.Array:
    """bf16 -> f32 for the head and loss; f64 (numerical tests) stays f64."""
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _pool(hidden: jax.Array, mask: jax.Array, cfg: MetaConfig) -> jax.Array:
    hidden = _at_least_f32(hidden)
    if cfg.pooling == "cls":
        return hidden[..., 0, :]
    m = mask.astype(hidden.dtype)[..., None]
    return (hidden * m).sum(-2) / jnp.maximum(m.sum(-2), 1.0)


def caches_bottom(cfg: MetaConfig) -> bool:
    """Whether the bottom of the encoder is frozen in the inner loop (so it can be cached).

    True for ``head`` (ANIL: the whole encoder) and ``top_k_layers``; ``all`` and ``regex``
    may adapt the embeddings, so nothing below them is constant.
    """
    return cfg.adapt in ("head", "top_k_layers")


def _bottom(encoder: Params, examples: Examples, cfg: MetaConfig) -> tuple[jax.Array, int]:
    """(hidden states after the never-trained bottom, index of the next layer to run)."""
    if examples.bottom is not None:
        return examples.bottom, cfg.outer_frozen_layers
    h = embed(encoder, cfg.model, examples.input_ids)
    if not cfg.outer_frozen_layers:
        return h, 0
    h = run_layers(encoder, cfg.model, h, examples.attention_mask, 0, cfg.outer_frozen_layers)
    return jax.lax.stop_gradient(h), cfg.outer_frozen_layers


def bottom_features(encoder: Params, examples: Examples, cfg: MetaConfig) -> jax.Array | None:
    """Hidden states after the layers the inner loop never updates: ``[n, L, H]``.

    ``None`` when the filter may adapt the embeddings (see :func:`caches_bottom`).
    """
    if not caches_bottom(cfg):
        return None
    h, start = _bottom(encoder, examples, cfg)
    return run_layers(encoder, cfg.model, h, examples.attention_mask, start,
                      first_adapted_layer(cfg))


def features(encoder: Params, examples: Examples, cfg: MetaConfig,
             bottom: jax.Array | None = None) -> jax.Array:
    """Pooled sentence features ``[n, H]`` (float32).

    With ``bottom`` (from :func:`bottom_features`) only the layers from
    :func:`first_adapted_layer` up are run.
    """
    if bottom is None:
        h, start = _bottom(encoder, examples, cfg)
    else:
        h, start = bottom, first_adapted_layer(cfg)
    h = run_layers(encoder, cfg.model, h, examples.attention_mask, start,
                   cfg.model.num_hidden_layers)
    return _pool(h, examples.attention_mask, cfg)


def l2_normalize(x: jax.Array, axis: int = -1) -> jax.Array:
    """``x / max(|x|, NORM_EPS)`` along ``axis``: unit vectors (a zero vector stays zero).

    The norm is ``sqrt(max(sum x^2, NORM_EPS^2))`` so the gradient at a zero vector is
    finite (``jnp.linalg.norm``'s is NaN there, and NaN times a zero weight is still NaN:
    zero-weight padding rows of a fine-tuned support set pool to zero vectors)."""
    sq = jnp.sum(x * x, axis=axis, keepdims=True)
    return x / jnp.sqrt(jnp.maximum(sq, NORM_EPS * NORM_EPS))


def embedding(encoder: Params, examples: Examples, cfg: MetaConfig) -> jax.Array:
    """``[n, H]`` the run's sentence embedding, for every learner: :func:`features`,
    L2-normalized with ``cfg.normalize_features`` (ProtoNet's normalized prototypes).

    What ProtoNet's prototypes average, ``FewShotClassifier.embed`` returns and the
    export's sentence-transformers modules compute.
    """
    f = features(encoder, examples, cfg)
    return l2_normalize(f) if cfg.normalize_features else f


@functools.lru_cache(maxsize=16)
def _bottom_fn(cfg: MetaConfig):
    """One compiled bottom-layers program per config (reused across calls)."""

    @jax.jit
    def bottom(encoder, ids, mask):
        h = embed(encoder, cfg.model, ids)
        return run_layers(encoder, cfg.model, h, mask, 0,
                          cfg.outer_frozen_layers).astype(jnp.float32)

    return bottom


def precompute_bottom(encoder: Params, cfg: MetaConfig, input_ids: np.ndarray,
                      attention_mask: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """Hidden states after the ``cfg.outer_frozen_layers`` never-trained bottom layers.

    Args:
      input_ids: ``[N, seq_len]`` for a whole dataset (host array).
      attention_mask: ``[N, seq_len]``, the same rows (host array).
    Returns:
      float32 ``[N, seq_len, hidden]`` to store in ``Examples.bottom``; computed once per
      dataset in fixed-size batches (one compiled program).
    """
    if not cfg.outer_frozen_layers:
        raise ValueError("precompute_bottom needs meta.outer_frozen_layers > 0.")
    return map_padded_batches(_bottom_fn(cfg), encoder, input_ids, attention_mask,
                              batch_size).astype(np.float32, copy=False)


def map_padded_batches(fn, encoder: Params, input_ids: np.ndarray, attention_mask: np.ndarray,
                       batch_size: int = 128) -> np.ndarray:
    """``fn(encoder, ids, mask)`` over ``[N, seq_len]`` host arrays in batches of exactly
    ``batch_size`` rows (the last one zero-padded, its padding dropped), so a jitted ``fn``
    compiles once; the per-row outputs concatenated on the host."""
    out = []
    for start in range(0, len(input_ids), batch_size):
        ids = input_ids[start:start + batch_size]
        mask = attention_mask[start:start + batch_size]
        pad = batch_size - len(ids)
        h = fn(encoder, np.pad(ids, ((0, pad), (0, 0))), np.pad(mask, ((0, pad), (0, 0))))
        out.append(np.asarray(h)[:len(ids)])
    return np.concatenate(out)


def prototypes(feats: jax.Array, labels: jax.Array, weights: jax.Array, way: int) -> jax.Array:
    """Class means of ``feats`` ``[n, H]`` -> ``[way, H]``; padding rows (weight 0) ignored."""
    onehot = jax.nn.one_hot(labels, way) * weights[:, None]
    return (onehot.T @ feats) / jnp.maximum(onehot.sum(0), 1.0)[:, None]


def init_head(support_feats: jax.Array, support: Examples, cfg: MetaConfig) -> Params:
    """Task head ``{"kernel": [H, way], "bias": [way]}``: zeros, or Proto-MAML init."""
    hidden = support_feats.shape[-1]
    if cfg.head_init == "zeros":
        return {"kernel": jnp.zeros((hidden, cfg.way)), "bias": jnp.zeros((cfg.way,))}
    c = prototypes(support_feats, support.labels, support.weights, cfg.way)
    # logits = 2 c.x - |c|^2 = -|x - c|^2 + |x|^2: the ProtoNet classifier as a linear head.
    return {"kernel": 2.0 * c.T, "bias": -jnp.sum(c * c, axis=-1)}


def weighted_xent(logits: jax.Array, labels: jax.Array, weights: jax.Array
                  ) -> tuple[jax.Array, jax.Array]:
    """(mean cross-entropy, accuracy) over rows with weight > 0. ``logits`` ``[n, way]``."""
    logp = jax.nn.log_softmax(_at_least_f32(logits))
    nll = -jnp.take_along_axis(logp, labels[:, None], axis=-1)[:, 0]
    denom = jnp.maximum(weights.sum(), 1.0)
    acc = (jnp.argmax(logits, -1) == labels).astype(logp.dtype)
    return (nll * weights).sum() / denom, (acc * weights).sum() / denom


def head_logits(head: Params, feats: jax.Array) -> jax.Array:
    return feats @ head["kernel"] + head["bias"]


# ---------------------------------------------------------------- the inner loop
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
      adapted: flat dict of the leaves the inner loop updates (see :func:`partition`).
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
