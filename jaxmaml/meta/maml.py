"""The MAML family's task: adapting one task with the inner loop, scoring it.

``task_loss(meta_params, episode, cfg) -> (loss, metrics)`` is written for ONE task
(unbatched :class:`~jaxmaml.types.Episodes`) and vmapped over the task axis in
:mod:`jaxmaml.meta.outer`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from jaxmaml.meta import encoding, filters, heads, inner
from jaxmaml.tree import flatten, unflatten
from jaxmaml.meta.config import MetaConfig
from jaxmaml.types import Episodes, Examples

WORD_EMBEDDINGS = "encoder/embeddings/word_embeddings/embedding"


class Adapted(NamedTuple):
    """One task after the inner loop (what :func:`adapt_task` returns).

    Attributes:
      params: the adapted ``{"encoder", "head"}`` tree. Under an embedding row view (see
        :func:`embedding_row_view`) its word-embedding table holds only the task's rows.
      query: the query examples to score ``params`` on (token ids remapped into the row
        view when there is one).
      bottom_q: cached frozen-bottom query features, or None.
      cfg: the config to score with (its model's ``vocab_size`` is the row view's size).
      outs: per-step outputs of the inner loop (``step_fn_out``), or None.
      rows: the vocabulary ids of the row view's rows (``vocab_size`` marks padding), or
        None without a row view.
    """

    params: dict
    query: Examples
    bottom_q: jax.Array | None
    cfg: MetaConfig
    outs: Any = None
    rows: jax.Array | None = None

    def score(self) -> tuple[jax.Array, jax.Array]:
        """(loss, accuracy) of the adapted params on the query set."""
        return loss_and_accuracy(self.params, self.query, self.cfg, self.bottom_q)

    def full_encoder(self, meta_encoder: dict) -> dict:
        """The adapted encoder with a full-vocabulary word-embedding table: the meta table
        with the task's rows replaced by their adapted values (rows the task never used
        cannot move in SGD on its loss)."""
        enc = self.params["encoder"]
        if self.rows is None:
            return enc
        table = meta_encoder["embeddings"]["word_embeddings"]["embedding"]
        small = enc["embeddings"]["word_embeddings"]["embedding"]
        return _with_table(enc, table.at[self.rows].set(small, mode="drop"))


def _with_table(encoder: dict, table: jax.Array) -> dict:
    emb = encoder["embeddings"]
    return {**encoder, "embeddings": {**emb, "word_embeddings": {
        **emb["word_embeddings"], "embedding": table}}}


def embedding_row_view(encoder: dict, support: Examples, query: Examples, cfg: MetaConfig,
                       lrs: dict | None = None):
    """Restrict an adapted word-embedding table to the rows this task's tokens use.

    SGD on the support loss only moves the rows of tokens in the support set, and the query
    loss only reads the rows of its tokens, so adapting the gathered rows
    ``table[unique(ids)]`` with ids remapped into them is the same computation as adapting
    the whole ``[vocab, H]`` table (the meta-gradient reaches the table through the gather)
    at a fraction of the memory and time: without it every inner step of every task carries
    and updates a dense copy of the table (70% of BERT-mini's parameters).

    ``lrs`` (flat ``{path: lr}`` inner learning rates, or None): per-row rates of the table
    (Meta-SGD's ``[vocab, H]``) are gathered into the view; per-leaf rates pass unchanged.

    Returns ``(encoder, support, query, cfg, lrs, rows)``; unchanged inputs and
    ``rows=None`` when the table is not adapted, the inputs carry cached bottom features,
    the task has at least ``vocab_size`` tokens (no saving) or ``cfg.embedding_rows`` is off.
    """
    vocab = cfg.model.vocab_size
    n = support.input_ids.size + query.input_ids.size
    if (not cfg.embedding_rows or not filters.is_adapted(WORD_EMBEDDINGS, cfg) or n >= vocab
            or support.bottom is not None or query.bottom is not None):
        return encoder, support, query, cfg, lrs, None
    ids = jnp.concatenate([support.input_ids.ravel(), query.input_ids.ravel()])
    rows, inv = jnp.unique(ids, size=n, fill_value=vocab, return_inverse=True)
    inv = inv.reshape(-1).astype(support.input_ids.dtype)
    table = encoder["embeddings"]["word_embeddings"]["embedding"]
    small = jnp.take(table, rows, axis=0, mode="fill", fill_value=0)
    ns = support.input_ids.size
    support = support._replace(input_ids=inv[:ns].reshape(support.input_ids.shape))
    query = query._replace(input_ids=inv[ns:].reshape(query.input_ids.shape))
    lr = None if lrs is None else lrs.get(WORD_EMBEDDINGS)
    if lr is not None and lr.ndim >= 2 and lr.shape[-2] == vocab:  # per-row rates
        lrs = {**lrs, WORD_EMBEDDINGS: jnp.take(lr, rows, axis=-2, mode="fill", fill_value=0)}
    cfg = cfg.replace(model=dataclasses.replace(cfg.model, vocab_size=n))
    return _with_table(encoder, small), support, query, cfg, lrs, rows


def adapt_task(meta_params: dict, episode: Episodes, cfg: MetaConfig, *, lrs: Any = None,
               per_step_lrs: bool = False, step_fn_out: Callable | None = None,
               query_step_metrics: bool = False, solve: Callable | None = None) -> Adapted:
    """Adapt to ``episode.support`` from ``meta_params``; score the result with ``.score()``.

    Shared by every MAML-family learner: head init (zeros / prototypes), the adapt filter,
    the embedding row view, frozen-bottom caching, and the scanned inner loop.

    Args:
      lrs: passed to :func:`jaxmaml.meta.inner.inner_adapt`, a flat ``{path: lr}``
        (full-vocabulary word-embedding rates are gathered into the row view).
      per_step_lrs: passed to :func:`jaxmaml.meta.inner.inner_adapt`.
      step_fn_out: passed to :func:`jaxmaml.meta.inner.inner_adapt`.
      query_step_metrics: ``outs`` is ``(loss [S], accuracy [S])`` on the query set after
        every inner step (MAML++ multi-step loss); excludes ``step_fn_out``.
      solve: an inner solver ``(adapted, frozen, support_loss_fn, cfg) -> adapted`` that
        replaces the scanned SGD loop (iMAML's :func:`jaxmaml.meta.imaml.implicit_adapt`);
        ``None``: :func:`jaxmaml.meta.inner.inner_adapt`.
    """
    encoder = meta_params["encoder"]
    if not cfg.meta_learn_frozen:  # inner-frozen leaves get no meta-gradient by any path
        encoder = unflatten({
            k: v if filters.is_adapted(k, cfg) else jax.lax.stop_gradient(v)
            for k, v in flatten({"encoder": encoder}).items()})["encoder"]
    encoder, support, query, cfg, lrs, rows = embedding_row_view(encoder, *episode, cfg, lrs)
    bottom_s = encoding.bottom_features(encoder, support, cfg)
    bottom_q = encoding.bottom_features(encoder, query, cfg)
    if query_step_metrics:
        if step_fn_out is not None:
            raise ValueError("pass either step_fn_out or query_step_metrics, not both.")
        step_fn_out = lambda p: loss_and_accuracy(p, query, cfg, bottom_q)  # noqa: E731
    if cfg.head_init == "zeros":
        head = heads.init_head(jnp.zeros((1, cfg.model.hidden_size)), support, cfg)
    else:
        head = heads.init_head(encoding.features(encoder, support, cfg, bottom_s), support, cfg)
    adapted, frozen = filters.partition({"encoder": encoder, "head": head}, cfg)
    if solve is not None:
        adapted = solve(adapted, frozen, inner.support_loss_fn(support, cfg, bottom_s), cfg)
        return Adapted(unflatten({**frozen, **adapted}), query, bottom_q, cfg, None, rows)
    adapted, outs = inner.inner_adapt(adapted, frozen, inner.support_loss_fn(support, cfg, bottom_s),
                                      cfg, lrs=lrs, per_step_lrs=per_step_lrs,
                                      step_fn_out=step_fn_out)
    params = unflatten({**frozen, **adapted})
    return Adapted(params, query, bottom_q, cfg, outs, rows)


def loss_and_accuracy(params: dict, examples, cfg: MetaConfig, bottom=None) -> tuple[jax.Array, jax.Array]:
    """(loss, accuracy) of adapted ``params`` on ``examples``."""
    feats = encoding.features(params["encoder"], examples, cfg, bottom)
    return heads.weighted_xent(heads.head_logits(params["head"], feats), examples.labels,
                               examples.weights)


def maml_task_loss(meta_params, episode: Episodes, cfg: MetaConfig):
    """MAML: query loss of the params adapted on the support set (second order unless
    ``cfg.first_order``)."""
    loss, acc = adapt_task(meta_params, episode, cfg).score()
    return loss, {"loss": loss, "accuracy": acc}


def head_adapt(meta_params: dict, support: Examples, cfg: MetaConfig, *, lrs: Any = None,
               per_step_lrs: bool = False, solve: Callable | None = None) -> dict:
    """Task params ``{"encoder", "head"}`` of the MAML family after the inner loop on
    ``support`` (``[n, seq_len]``, labels in ``[0, cfg.way)``): the same
    :func:`adapt_task` meta-training and evaluation run, with a full-vocabulary encoder."""
    task = adapt_task(meta_params, Episodes(support, support), cfg, lrs=lrs,
                      per_step_lrs=per_step_lrs, solve=solve)
    return {"encoder": task.full_encoder(meta_params["encoder"]), "head": task.params["head"]}


def head_predict(task_params: dict, examples: Examples, cfg: MetaConfig) -> jax.Array:
    """``[n, way]`` logits of the adapted head on the adapted encoder's pooled features."""
    feats = encoding.features(task_params["encoder"], examples, cfg)
    return heads.head_logits(task_params["head"], feats)


def head_template(cfg: MetaConfig, way: int = 1) -> dict[str, jax.Array]:
    """A zero head ``{"kernel": [H, way], "bias": [way]}``; ``way=1`` gives the shapes of
    per-parameter inner LRs that broadcast over the (task-local, permuted) classes."""
    return {"kernel": jnp.zeros((cfg.model.hidden_size, way)), "bias": jnp.zeros((way,))}


def adapted_shapes(encoder: Any, cfg: MetaConfig) -> dict[str, tuple[tuple[int, ...], Any]]:
    """``{path: (shape, dtype)}`` of the leaves the inner loop adapts (head with ``way=1``).

    Works on concrete or abstract (``ShapeDtypeStruct``) encoders.
    """
    leaves = flatten({"encoder": encoder, "head": head_template(cfg)})
    return {k: (tuple(v.shape), v.dtype) for k, v in leaves.items()
            if filters.is_adapted(k, cfg)}
