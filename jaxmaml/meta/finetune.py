"""Test-time fine-tuning: adapt an encoder and a cosine head to one task's support set.

The features are mean-pooled hidden states, L2-normalized. The head is a **cosine head**:
``logits = scale * cos(f(x), w_c)`` with a kernel ``w`` ``[H, way]`` that starts at the
L2-normalized class prototypes (weighted means of the support features), so zero steps is
the cosine-centroid classifier. Fine-tuning minimizes the weighted support cross-entropy (plus
``pair_weight`` times a SetFit-style pair loss, :func:`pair_loss`) for ``steps`` full-batch
Optax AdamW steps inside ``lax.scan``; the body (a part of the encoder,
or LoRA factors of it) and the head have their own learning rates. Deterministic: no
dropout, LoRA factors drawn from ``FinetuneOptions.seed``.

Parts (``FinetuneOptions.part``):

- ``head``: the cosine head only (the encoder stays frozen);
- ``top_k``: the top ``top_k`` encoder layers and the head;
- ``lora``: rank-``lora_rank`` factors ``W + A @ B`` (``A ~ N(0, 1/in)``, ``B = 0``) of the
  weight kernels of the top ``top_k`` layers, and the head (the kernels stay frozen);
- ``all``: every encoder layer above the run's never-trained bottom
  (``MetaConfig.outer_frozen_layers``; with none, the embeddings too) and the head.

Everything below the first fine-tuned layer is constant during fine-tuning, so it is
computed once (:func:`finetune_bottom`; callers may precompute it, e.g. for a pool of
evaluation texts). Written for one task, unbatched; ``vmap`` it over tasks.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxmaml.meta import encoding, filters, heads, lora
from jaxmaml.meta.config import MetaConfig
from jaxmaml.meta.options import FinetuneOptions  # noqa: F401 -- part of this module's API
from jaxmaml.meta.options import MatchingOptions, ProtoNetOptions
from jaxmaml.meta.encoding import l2_normalize
from jaxmaml.tree import flatten, unflatten
from jaxmaml.types import Examples

Params = dict[str, Any]
# ---------------------------------------------------------------- the cosine head
def cosine_head_logits(head: Params, feats: jax.Array, scale: float) -> jax.Array:
    """``scale * cos(feats, kernel columns)``: ``feats`` ``[n, H]``, kernel ``[H, way]``."""
    k = head["kernel"]
    return scale * l2_normalize(feats) @ l2_normalize(k, axis=0)


def cosine_head_init(feats: jax.Array, labels: jax.Array, weights: jax.Array, way: int
                     ) -> Params:
    """``{"kernel": [H, way]}``: the L2-normalized weighted class means of ``feats`` ``[n, H]``
    (rows of weight 0 ignored; a class without rows gets a zero column)."""
    return {"kernel": l2_normalize(heads.prototypes(feats, labels, weights, way)).T}


def pair_loss(feats: jax.Array, labels: jax.Array, weights: jax.Array) -> jax.Array:
    """SetFit's contrastive objective (cosine-similarity regression) over every pair of rows:
    ``(cos(f_i, f_j) - [y_i == y_j])**2``, averaged over the pairs of one class and over the
    pairs of two classes, each pair weighted ``w_i * w_j``, the two means weighted half each.
    A kind of pair that does not occur (1 shot: no pair of one class) adds 0. ``feats``
    ``[n, H]``, ``labels`` / ``weights`` ``[n]``; rows of weight 0 take no part."""
    z = l2_normalize(feats)
    cos = z @ z.T
    same = (labels[:, None] == labels[None, :]).astype(cos.dtype)
    pair_w = (weights[:, None] * weights[None, :]).astype(cos.dtype)
    pair_w = pair_w * (1 - jnp.eye(len(labels), dtype=cos.dtype))  # not a row with itself
    err = (cos - same) ** 2

    def mean(mask):
        w = pair_w * mask
        return jnp.sum(w * err) / jnp.maximum(jnp.sum(w), jnp.finfo(cos.dtype).tiny)

    return 0.5 * mean(same) + 0.5 * mean(1 - same)


# ---------------------------------------------------------------- which layers are trained
def finetune_config(cfg: MetaConfig, opts: FinetuneOptions, way: int | None = None
                    ) -> MetaConfig:
    """``cfg`` as the feature extractor of fine-tuning: mean pooling, and an adapt filter
    (:func:`jaxmaml.meta.filters.is_adapted`) that selects the part ``opts`` trains.

    Raises ``ValueError`` when ``top_k`` exceeds the layers the run leaves trainable.
    """
    adapt = opts.adapt_filter(cfg.model.num_hidden_layers, cfg.outer_frozen_layers)
    # algorithm="maml": no implied settings override the filter; nothing here is meta-trained
    return cfg.replace(algorithm="maml", pooling="mean", protonet=ProtoNetOptions(), lora_rank=0,
                       first_order=True, remat="none", outer_regex="", matching=MatchingOptions(),
                       way=way or cfg.way, **adapt)


def _trained_encoder_leaves(encoder: Params, fcfg: MetaConfig) -> dict[str, jax.Array]:
    """``{path in encoder: leaf}`` that the filter trains (never the pooler: mean pooling)."""
    return {k: v for k, v in flatten(encoder).items()
            if filters.is_adapted(f"encoder/{k}", fcfg) and not k.startswith("pooler/")}


def init_lora_factors(encoder: Params, fcfg: MetaConfig, opts: FinetuneOptions
                      ) -> dict[str, dict[str, jax.Array]]:
    """LoRA factors (:mod:`jaxmaml.meta.lora` keys) of the trained layers' 2-D kernels:
    ``{"a": [in, r] ~ N(0, 1/in), "b": [r, out] = 0}`` in the kernel's dtype, target ``i``
    (sorted paths) drawn from ``fold_in(key(opts.seed), i)``."""
    key = jax.random.key(opts.seed)
    targets = sorted((k, v.shape, v.dtype) for k, v in
                     _trained_encoder_leaves(encoder, fcfg).items()
                     if k.endswith("kernel") and len(v.shape) == 2)
    out = {}
    for i, (path, (n_in, n_out), dtype) in enumerate(targets):  # in the kernel's dtype
        a = jax.random.normal(jax.random.fold_in(key, i), (n_in, opts.lora_rank), dtype)
        out[path.replace("/", lora.SEP)] = {"a": a / jnp.sqrt(n_in).astype(dtype),
                                            "b": jnp.zeros((opts.lora_rank, n_out), dtype)}
    return out


def _body(encoder: Params, fcfg: MetaConfig, opts: FinetuneOptions):
    """(initial trainable body, ``body -> full encoder``)."""
    if opts.part == "head":
        return {}, lambda body: encoder
    if opts.part == "lora":
        return init_lora_factors(encoder, fcfg, opts), lambda body: lora.merge(encoder, body)
    trained = _trained_encoder_leaves(encoder, fcfg)
    frozen = {k: v for k, v in flatten(encoder).items() if k not in trained}
    return trained, lambda body: unflatten({**frozen, **body})


# ---------------------------------------------------------------- adapt / predict
def finetune_bottom(encoder: Params, examples: Examples, opts: FinetuneOptions,
                    cfg: MetaConfig) -> jax.Array | None:
    """Hidden states ``[n, seq_len, H]`` below the first fine-tuned layer (constant while
    fine-tuning; ``examples.bottom`` is used when present), or ``None`` when the part
    includes the embeddings. Pass it to :func:`finetune_adapt` / :func:`finetune_predict`."""
    return encoding.bottom_features(encoder, examples, finetune_config(cfg, opts))


def _optimizer(opts: FinetuneOptions) -> optax.GradientTransformation:
    return optax.multi_transform(
        {"body": optax.adamw(opts.lr, weight_decay=opts.weight_decay),
         "head": optax.adam(opts.head_lr)},
        {"body": "body", "head": "head"})


def finetune_adapt(encoder: Params, support: Examples, way: int, opts: FinetuneOptions,
                   cfg: MetaConfig, bottom: jax.Array | None = None) -> Params:
    """Fine-tune ``encoder`` and a cosine head on one task's support set.

    Args:
      encoder: BERT params (a plain nested dict).
      support: ``[n, seq_len]`` examples, labels in ``[0, way)``; rows of weight 0 (padding)
        change nothing, other weights scale a row's share of the prototypes and the loss.
      way: number of classes.
      opts: what is trained and how (static).
      cfg: the run's config (the encoder's architecture, ``outer_frozen_layers``).
      bottom: optional :func:`finetune_bottom` of ``support`` (computed here otherwise).

    Returns:
      task params ``{"encoder": the fine-tuned encoder (LoRA merged: plain BERT params),
      "head": {"kernel": [H, way]}}``, a pytree of arrays.
    """
    fcfg = finetune_config(cfg, opts, way)
    if bottom is None:
        bottom = encoding.bottom_features(encoder, support, fcfg)

    def feats_of(enc):
        return encoding.features(enc, support, fcfg, bottom)

    head = cosine_head_init(l2_normalize(feats_of(encoder)), support.labels, support.weights,
                            way)
    body, encoder_of = _body(encoder, fcfg, opts)
    params = {"body": body, "head": head}

    def loss_fn(p):
        feats = feats_of(encoder_of(p["body"]))
        logits = cosine_head_logits(p["head"], feats, opts.scale)
        loss = heads.weighted_xent(logits, support.labels, support.weights)[0]
        if opts.pair_weight:
            loss = loss + opts.pair_weight * pair_loss(feats, support.labels, support.weights)
        return loss

    tx = _optimizer(opts)

    def step(carry, _):
        p, state = carry
        updates, state = tx.update(jax.grad(loss_fn)(p), state, p)
        return (optax.apply_updates(p, updates), state), None

    if opts.steps:
        params = jax.lax.scan(step, (params, tx.init(params)), None, length=opts.steps)[0][0]
    return {"encoder": encoder_of(params["body"]), "head": params["head"]}


def finetune_features(task_params: Params, examples: Examples, opts: FinetuneOptions,
                      cfg: MetaConfig, bottom: jax.Array | None = None) -> jax.Array:
    """L2-normalized mean-pooled features ``[n, H]`` of the fine-tuned encoder.

    ``bottom``: optional :func:`finetune_bottom` of ``examples`` (of the ORIGINAL encoder:
    fine-tuning never changes the layers below it)."""
    f = encoding.features(task_params["encoder"], examples, finetune_config(cfg, opts), bottom)
    return l2_normalize(f)


def finetune_predict(task_params: Params, examples: Examples, opts: FinetuneOptions,
                     cfg: MetaConfig, bottom: jax.Array | None = None) -> jax.Array:
    """Logits ``[n, way]``: ``opts.scale * cos(f(x), w_c)`` of :func:`finetune_adapt`'s
    task params on ``examples`` ``[n, seq_len]`` (``bottom`` as in
    :func:`finetune_features`)."""
    return cosine_head_logits(task_params["head"],
                              finetune_features(task_params, examples, opts, cfg, bottom),
                              opts.scale)
