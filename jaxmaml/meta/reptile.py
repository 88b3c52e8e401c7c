"""Reptile (Nichol, Achiam & Schulman 2018): move the init towards task-adapted params.

Per task, ``phi_k`` = the params after ``cfg.num_inner_steps`` SGD steps on the support set
(same head init, adapt filter and frozen-bottom caching as MAML). The meta-gradient handed
to Optax is ``phi - mean_tasks(phi_k)`` (negated Reptile direction, since Optax
minimizes): with ``optim.name=sgd`` and learning rate ``epsilon`` this is exactly
``phi <- phi + epsilon * mean(phi_k - phi)``; Adam gives the paper's "Reptile with Adam".
No derivatives flow through the inner loop (it always runs first order). The task head is
re-initialized per task (task-local labels are permuted), so only the encoder is moved.

With ``cfg.reptile.all_data`` (default) the inner loop trains on the support and query
examples together: Reptile needs no held-out split, and on 1-shot support sets alone
(one example per class) the joint-training direction only pushes examples apart, not
classes; Nichol et al. likewise meta-train with more shots than they evaluate with.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxmaml.meta.config import MetaConfig
from jaxmaml.meta.maml import adapt_task
from jaxmaml.types import Episodes, Examples


def meta_grad(meta_params: dict, episodes: Episodes, cfg: MetaConfig,
              step: jax.Array | int = 0):
    """``((loss, metrics), grads)``: ``grads = meta_params - mean_t(adapted_t)``.

    ``episodes``: ``[tasks, ...]``. ``loss``/``metrics`` are the query loss and accuracy
    after adaptation (monitoring only; with ``reptile_all_data`` the query set was also
    trained on, so they are training-set numbers).
    """
    del step  # Reptile does not anneal
    cfg = cfg.replace(first_order=True)
    meta_params = jax.lax.stop_gradient(meta_params)

    def one(episode):
        if cfg.reptile.all_data:
            episode = Episodes(joint_examples(episode.support, episode.query), episode.query)
        task = adapt_task(meta_params, episode, cfg)
        loss, acc = task.score()
        return task.full_encoder(meta_params["encoder"]), loss, acc

    adapted, losses, accs = jax.vmap(one)(episodes)
    grads = {k: jax.tree.map(jnp.zeros_like, v) for k, v in meta_params.items()}
    grads["encoder"] = jax.tree.map(lambda p, a: p - a.mean(0), meta_params["encoder"], adapted)
    loss = losses.mean()
    return (loss, {"loss": loss, "accuracy": accs.mean()}), grads


def joint_examples(support: Examples, query: Examples) -> Examples:
    """Support and query rows of one task concatenated: ``[n_s + n_q, ...]``."""
    return jax.tree.map(lambda s, q: jnp.concatenate([s, q], axis=0), support, query)
