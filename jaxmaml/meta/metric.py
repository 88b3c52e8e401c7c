"""Metric learners: no inner loop, a task is solved by comparing query and support features.

Features are the pooled BERT sentence vectors of :func:`jaxmaml.meta.encoding.features`
(``[n, H]``; the never-trained bottom and ``Examples.bottom`` are honoured). Padding rows
(weight 0) never enter a prototype, an attention or a loss.

- ProtoNet (Snell et al. 2017): logits ``-|q - c_k|^2`` to the support class means ``c_k``
  (or ``cosine_scale * cos(q, c_k)`` with ``protonet.distance='cosine'``), cross-entropy.
- Matching Networks (Vinyals et al. 2016): ``p(y|q) = sum_i a(q, s_i) onehot(y_i)``,
  ``a = softmax_i(cosine_scale * cos(f(q), g(s_i)))``, loss ``-log p(y|q)``. With
  ``cfg.matching.fce`` the support embeddings get one residual self-attention layer over the
  support set, ``g = g' + softmax(g' W_q (g' W_k)^T / sqrt(H)) g' W_v`` (permutation
  invariant, unlike the paper's BiLSTM over an arbitrary order), and the query embedding
  is the paper's attention-LSTM with ``cfg.matching.fce_steps`` read steps over ``g``.
- Relation Networks (Sung et al. 2018): a learned MLP scores each (query, prototype)
  pair, ``r = sigmoid(MLP([q, c, |q - c|, q * c]))``, trained with the paper's mean
  squared error against one-hot targets. The pair features add ``|q - c|`` and ``q * c``
  to the paper's concatenation, which makes the comparison easy for a small MLP.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxmaml.meta import encoding, heads, transductive
from jaxmaml.meta.config import MetaConfig
from jaxmaml.types import Episodes, Examples

# ------------------------------------------------------------------------ shared pieces
def _dense_init(key: jax.Array, fan_in: int, fan_out: int) -> dict[str, jax.Array]:
    """LeCun-normal kernel ``[fan_in, fan_out]``, zero bias."""
    kernel = jax.random.normal(key, (fan_in, fan_out)) / jnp.sqrt(fan_in)
    return {"kernel": kernel, "bias": jnp.zeros((fan_out,))}


def _dense(p: dict, x: jax.Array) -> jax.Array:
    return x @ p["kernel"] + p["bias"]


def episode_features(meta_params: dict, episode: Episodes, cfg: MetaConfig
                     ) -> tuple[jax.Array, jax.Array]:
    """(support ``[n_s, H]``, query ``[n_q, H]``) pooled features of the encoder."""
    encoder = meta_params["encoder"]
    return (encoding.features(encoder, episode.support, cfg),
            encoding.features(encoder, episode.query, cfg))


def _metrics(logits: jax.Array, query: Examples):
    loss, acc = heads.weighted_xent(logits, query.labels, query.weights)
    return loss, {"loss": loss, "accuracy": acc}


# ------------------------------------------------------------------------ ProtoNet
def protonet_logits(support_feats: jax.Array, support: Examples, query_feats: jax.Array,
                    cfg: MetaConfig) -> jax.Array:
    """``[n_q, way]``: ``-|q - c_k|^2`` or ``cosine_scale * cos(q, c_k)``."""
    c = heads.prototypes(support_feats, support.labels, support.weights, cfg.way)
    return prototype_logits(c, query_feats, cfg)


def prototype_logits(prototypes: jax.Array, query_feats: jax.Array, cfg: MetaConfig
                     ) -> jax.Array:
    """``[n_q, way]`` ProtoNet logits of query features against class prototypes ``[way, H]``."""
    c = prototypes
    if cfg.protonet.distance == "cosine":
        return cfg.cosine_scale * encoding.l2_normalize(query_feats) @ encoding.l2_normalize(c).T
    return -jnp.sum((query_feats[:, None, :] - c[None, :, :]) ** 2, axis=-1)


def protonet_adapt(meta_params: dict, support: Examples, cfg: MetaConfig) -> dict:
    """Task params ``{"encoder", "prototypes": [way, H]}``: the support class means."""
    encoder = meta_params["encoder"]
    s = encoding.embedding(encoder, support, cfg)
    return {"encoder": encoder,
            "prototypes": heads.prototypes(s, support.labels, support.weights, cfg.way)}


def protonet_predict(task_params: dict, examples: Examples, cfg: MetaConfig) -> jax.Array:
    """``[n, way]`` ``-|x - c_k|^2`` (or scaled cosine) to the task's prototypes."""
    q = encoding.embedding(task_params["encoder"], examples, cfg)
    return prototype_logits(task_params["prototypes"], q, cfg)


def protonet_task_loss(meta_params: dict, episode: Episodes, cfg: MetaConfig):
    """Cross-entropy of :func:`protonet_predict` after :func:`protonet_adapt`; with
    ``protonet.transductive_iters`` the prototypes are first refined by soft k-means over
    the episode's queries (what ``predict(..., transductive=True)`` does at test time)."""
    support, query = episode.support, episode.query
    s = encoding.embedding(meta_params["encoder"], support, cfg)
    q = encoding.embedding(meta_params["encoder"], query, cfg)
    c = heads.prototypes(s, support.labels, support.weights, cfg.way)
    if cfg.protonet.transductive_iters:
        c = transductive.soft_kmeans(c, s, support.labels, support.weights, q, query.weights,
                                     cfg.protonet.transductive_iters)
    return _metrics(prototype_logits(c, q, cfg), query)


# ------------------------------------------------------------------------ Matching Networks
def _lstm_cell(p: dict, x: jax.Array, h: jax.Array, c: jax.Array) -> tuple[jax.Array, jax.Array]:
    i, f, g, o = jnp.split(_dense(p, jnp.concatenate([x, h], -1)), 4, axis=-1)
    c = jax.nn.sigmoid(f + 1.0) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    return jax.nn.sigmoid(o) * jnp.tanh(c), c


def fce_support(p: dict, g: jax.Array, weights: jax.Array) -> jax.Array:
    """Support FCE ``[n_s, H]``: one residual self-attention layer over real support rows."""
    scores = (g @ p["wq"]) @ (g @ p["wk"]).T / jnp.sqrt(g.shape[-1])
    scores = jnp.where(weights[None, :] > 0, scores, -jnp.inf)
    return g + jax.nn.softmax(scores, axis=-1) @ (g @ p["wv"])


def fce_query(p: dict, f: jax.Array, g: jax.Array, weights: jax.Array, steps: int) -> jax.Array:
    """Query FCE ``[n_q, H]`` (Vinyals et al. 2016, appendix): ``steps`` attention-LSTM reads
    ``h_k, c_k = LSTM(f, [h_{k-1}, r_{k-1}], c_{k-1}); h_k += f; r_k = sum_i a(h_k, g_i) g_i``."""
    def read(h):
        scores = jnp.where(weights[None, :] > 0, h @ g.T, -jnp.inf)
        return jax.nn.softmax(scores, axis=-1) @ g

    def step(carry, _):
        h, r, c = carry
        h, c = _lstm_cell(p["lstm"], f, jnp.concatenate([h, r], -1), c)
        h = h + f
        return (h, read(h), c), None

    zeros = jnp.zeros_like(f)
    (h, _, _), _ = jax.lax.scan(step, (zeros, zeros, zeros), None, length=steps)
    return h


def matching_log_probs(support_feats: jax.Array, support: Examples, query_feats: jax.Array,
                       cfg: MetaConfig, fce_params: dict | None = None) -> jax.Array:
    """``[n_q, way]`` log of ``p(y=k|q) = sum_{i: y_i=k} softmax_i(scale * cos(q, s_i))``."""
    g = support_feats
    if fce_params is not None:
        g = fce_support(fce_params, g, support.weights)
    onehot = jax.nn.one_hot(support.labels, cfg.way) * (support.weights > 0)[:, None]
    return matching_log_probs_from(g, onehot, support.weights, query_feats, cfg, fce_params)


def matching_log_probs_from(g: jax.Array, onehot: jax.Array, weights: jax.Array,
                            query_feats: jax.Array, cfg: MetaConfig,
                            fce_params: dict | None = None) -> jax.Array:
    """``[n_q, way]`` Matching Networks log-probabilities given the (FCE) support
    embeddings ``g`` ``[n_s, H]``, their masked one-hot labels ``[n_s, way]`` and weights."""
    f = query_feats
    if fce_params is not None:
        f = fce_query(fce_params, f, g, weights, cfg.matching.fce_steps)
    sims = cfg.cosine_scale * encoding.l2_normalize(f) @ encoding.l2_normalize(g).T
    log_attn = jax.nn.log_softmax(jnp.where(weights[None, :] > 0, sims, -jnp.inf), -1)
    # log sum_i a_i [y_i = k], in log space for stability; a class without support gets -inf.
    return jax.nn.logsumexp(log_attn[:, :, None], axis=1, b=onehot[None, :, :])


def matching_init_extras(encoder: Any, cfg: MetaConfig, key: jax.Array) -> dict:
    if not cfg.matching.fce:
        return {}
    h = cfg.model.hidden_size
    kq, kk, kv, kl = jax.random.split(key, 4)
    return {"fce": {"wq": _dense_init(kq, h, h)["kernel"], "wk": _dense_init(kk, h, h)["kernel"],
                    "wv": _dense_init(kv, h, h)["kernel"] * 0.1,
                    "lstm": _dense_init(kl, 3 * h, 4 * h)}}


def matching_adapt(meta_params: dict, support: Examples, cfg: MetaConfig) -> dict:
    """Task params: the encoder, the (FCE) support embeddings ``g`` ``[n_s, H]``, their
    masked one-hot labels ``[n_s, way]``, weights ``[n_s]`` (and the FCE module)."""
    encoder = meta_params["encoder"]
    g = encoding.features(encoder, support, cfg)
    out = {"encoder": encoder, "weights": support.weights,
           "onehot": jax.nn.one_hot(support.labels, cfg.way) * (support.weights > 0)[:, None]}
    if cfg.matching.fce:
        g = fce_support(meta_params["fce"], g, support.weights)
        out["fce"] = meta_params["fce"]
    return {**out, "support": g}


def matching_predict(task_params: dict, examples: Examples, cfg: MetaConfig) -> jax.Array:
    """``[n, way]`` log ``p(y=k|x)`` of the attention over the task's support set."""
    q = encoding.features(task_params["encoder"], examples, cfg)
    return matching_log_probs_from(task_params["support"], task_params["onehot"],
                                   task_params["weights"], q, cfg, task_params.get("fce"))


def matching_task_loss(meta_params: dict, episode: Episodes, cfg: MetaConfig):
    """``-log p(y|q)`` of :func:`matching_predict` after :func:`matching_adapt`."""
    log_p = matching_predict(matching_adapt(meta_params, episode.support, cfg),
                             episode.query, cfg)
    return _metrics(log_p, episode.query)


# ------------------------------------------------------------------------ Relation Networks
def relation_init_extras(encoder: Any, cfg: MetaConfig, key: jax.Array) -> dict:
    """``{"relation": {"hidden": Dense(4H -> relation_hidden), "out": Dense(-> 1)}}``."""
    k1, k2 = jax.random.split(key)
    return {"relation": {"hidden": _dense_init(k1, 4 * cfg.model.hidden_size, cfg.relation.hidden),
                         "out": _dense_init(k2, cfg.relation.hidden, 1)}}


def relation_scores(relation: dict, support_feats: jax.Array, support: Examples,
                    query_feats: jax.Array, cfg: MetaConfig) -> jax.Array:
    """Relation scores in (0, 1) for every (query, class prototype) pair: ``[n_q, way]``."""
    c = heads.prototypes(support_feats, support.labels, support.weights, cfg.way)
    return jax.nn.sigmoid(relation_logits(relation, c, query_feats))


def relation_logits(relation: dict, prototypes: jax.Array, query_feats: jax.Array
                    ) -> jax.Array:
    """Pre-sigmoid relation scores ``[n_q, way]`` of queries against prototypes ``[way, H]``."""
    c = prototypes
    q = jnp.broadcast_to(query_feats[:, None, :], (query_feats.shape[0],) + c.shape)
    c = jnp.broadcast_to(c[None], q.shape)
    pairs = jnp.concatenate([q, c, jnp.abs(q - c), q * c], axis=-1)
    hidden = jax.nn.relu(_dense(relation["hidden"], pairs))
    return _dense(relation["out"], hidden)[..., 0]


def relation_adapt(meta_params: dict, support: Examples, cfg: MetaConfig) -> dict:
    """Task params ``{"encoder", "prototypes": [way, H], "relation"}``."""
    t = protonet_adapt(meta_params, support, cfg)
    return {**t, "relation": meta_params["relation"]}


def relation_predict(task_params: dict, examples: Examples, cfg: MetaConfig) -> jax.Array:
    """``[n, way]`` pre-sigmoid relation scores (the logits; scores = sigmoid)."""
    q = encoding.features(task_params["encoder"], examples, cfg)
    return relation_logits(task_params["relation"], task_params["prototypes"], q)


def relation_task_loss(meta_params: dict, episode: Episodes, cfg: MetaConfig):
    """Mean squared error of the relation scores against one-hot targets (Sung et al.)."""
    query = episode.query
    scores = jax.nn.sigmoid(relation_predict(relation_adapt(meta_params, episode.support, cfg),
                                             query, cfg))
    sq_err = jnp.sum((scores - jax.nn.one_hot(query.labels, cfg.way)) ** 2, axis=-1)
    denom = jnp.maximum(query.weights.sum(), 1.0)
    loss = jnp.sum(sq_err * query.weights) / denom
    acc = jnp.sum((jnp.argmax(scores, -1) == query.labels) * query.weights) / denom
    return loss, {"loss": loss, "accuracy": acc}
