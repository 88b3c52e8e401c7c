"""Shared tiny cases of the learner tests (test_learners.py, test_metric_learners.py) and
the numpy soft k-means reference (test_transductive.py too).

Module-level jitted ``meta_grads`` / ``meta_loss`` (static config) so both test modules
reuse the same compiled programs.
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np

from jaxmaml.data.synthetic import synthetic_episodes
from jaxmaml.meta import outer
from jaxmaml.meta.config import MetaConfig
from jaxmaml.models.bert import BertConfig, encode, init_params

VOCAB = 256
MODEL = BertConfig.tiny(vocab_size=VOCAB, num_hidden_layers=1)  # the math tests: 1 layer
KEY = jax.random.key(0)
CFG = MetaConfig(model=MODEL, way=3, num_inner_steps=2, inner_lr=0.3)
# Jitted once per (config, shapes): the MAML references are shared across tests.
meta_grads = jax.jit(outer.meta_grads, static_argnums=2)
meta_loss = jax.jit(outer.meta_loss, static_argnums=2)


def _episodes(tasks=2, way=3, shot=2, query=2, seq_len=10, seed=0):
    return jax.tree.map(jnp.asarray, synthetic_episodes(
        np.random.default_rng(seed), tasks, way, shot, query, seq_len, VOCAB, num_classes=10))


@functools.lru_cache
def _encoder(seed=1):
    params = init_params(MODEL, jax.random.key(seed))
    # Perturb LayerNorms/biases away from their trivial init so every leaf matters.
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed + 100), len(leaves))
    return jax.tree.unflatten(tree, [x + 0.05 * jax.random.normal(k, x.shape, x.dtype)
                                     for x, k in zip(leaves, keys)])


def _task(episodes, t):
    return jax.tree.map(lambda x: x[t], episodes)


def _norm(tree):
    return float(jnp.sqrt(sum(jnp.sum(x ** 2) for x in jax.tree.leaves(tree))))


def _close(a, b, atol):
    chex.assert_trees_all_close(a, b, atol=atol, rtol=0.0)


def _cls(encoder, ex):
    """Independent reference features: the [CLS] hidden state of a full BERT forward."""
    return encode(encoder, MODEL, ex.input_ids, ex.attention_mask)[:, 0, :]


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def np_soft_kmeans(init, s, sl, sw, q, qw, iters, temperature):
    """Soft k-means of cosine prototypes (jaxmaml.meta.transductive.soft_kmeans) as plain
    loops over classes and queries (float64)."""
    s, q, p = unit(s), unit(q), unit(init)
    way = len(init)
    for _ in range(iters):
        new = []
        for c in range(way):
            num = sum(sw[i] * s[i] for i in range(len(s)) if sl[i] == c)
            den = sum(sw[i] for i in range(len(s)) if sl[i] == c)
            for j in range(len(q)):
                e = np.exp(q[j] @ p.T / temperature)
                z = e[c] / e.sum()
                num, den = num + qw[j] * z * q[j], den + qw[j] * z
            new.append(num / den)
        p = unit(np.stack(new))
    return p
