"""A pull toward the pretrained weights in the outer loop (L2-SP, Li et al. 2018).

Meta-training on a few source domains moves the encoder away from what pre-training
learned; ``optim.pull_to_init = lambda`` adds the gradient of ``lambda/2 |theta - theta_0|^2``
over the meta-learned encoder leaves to the meta-gradient, ``theta_0`` being the encoder
the run started from (the pretrained weights). Written as an Optax transform placed before
clipping, so it is exactly the gradient of the penalized meta-loss; ``theta_0`` lives in the
optimizer state, so it is checkpointed with the run and a resumed run pulls toward the same
weights. Leaves that are never trained (``meta.outer_frozen_layers``) stay at ``theta_0``,
where the pull is zero.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


class PullState(NamedTuple):
    """``anchor``: the ``"encoder"`` subtree of the meta-params at init (``theta_0``)."""

    anchor: Any


def pull_to_init(strength: float, subtree: str = "encoder") -> optax.GradientTransformation:
    """Add ``strength * (theta - theta_0)`` to the gradients of ``params[subtree]``.

    ``theta_0`` is ``params[subtree]`` as passed to ``init``; other top-level entries of the
    params (learner extras such as learned inner LRs) are not pulled. ``update`` needs
    ``params``.
    """

    def init_fn(params):
        return PullState(anchor=jax.tree.map(jnp.copy, params[subtree]))

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("pull_to_init needs the params: optimizer.update(g, s, params).")
        pulled = jax.tree.map(lambda g, p, a: g + strength * (p - a).astype(g.dtype),
                              updates[subtree], params[subtree], state.anchor)
        return {**updates, subtree: pulled}, state

    return optax.GradientTransformation(init_fn, update_fn)


def pull_penalty(params: dict, anchor: Any, strength: float, subtree: str = "encoder"
                 ) -> jax.Array:
    """``strength/2 * sum |theta - theta_0|^2`` over ``params[subtree]`` (a scalar; for logging
    and as the reference the gradient is tested against)."""
    sq = jax.tree.map(lambda p, a: jnp.sum((p - a) ** 2), params[subtree], anchor)
    return 0.5 * strength * sum(jax.tree.leaves(sq))
