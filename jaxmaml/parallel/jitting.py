"""The sharded state and meta-step: state created straight into its shards, the meta-step
jitted with ``in_shardings``/``out_shardings`` and the state donated."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import optax
from jax.sharding import Mesh

from jaxmaml.meta.config import MetaConfig
from jaxmaml.meta.outer import jit_meta_step
from jaxmaml.parallel.mesh import Rule, tree_shardings
from jaxmaml.parallel.placement import episodes_sharding, replicated
from jaxmaml.types import MetaState


def create_state(init_fn: Callable[..., MetaState], mesh: Mesh,
                 rules: str | Sequence[Rule] = "replicated", *args: Any
                 ) -> tuple[MetaState, Any]:
    """``(state, state_shardings)``: ``init_fn(*args)`` run under jit straight into shards.

    ``jax.eval_shape`` gives the abstract state, the rules give its shardings, and
    ``jax.jit(init_fn, out_shardings=shardings)`` creates each shard on its device, so the
    full state is never materialized on one device. Pass large inputs (pretrained encoder
    params) as ``args`` rather than closing over them, so they are not baked into the
    program as constants.
    """
    abstract = jax.eval_shape(init_fn, *args)
    shardings = tree_shardings(abstract, mesh, rules)
    state = jax.jit(init_fn, out_shardings=shardings)(*args)
    return state, shardings


def jit_sharded_meta_step(cfg: MetaConfig, optimizer: optax.GradientTransformation,
                          mesh: Mesh, state_shardings: Any):
    """The meta-step compiled for ``mesh``: ``(state, episodes) -> (state, metrics)``.

    ``in_shardings=(state_shardings, episodes_sharding)``, ``out_shardings=(state_shardings,
    replicated)``, state donated. Tasks are vmapped and sharded over 'data', so the meta
    gradient's mean over tasks becomes an all-reduce across 'data'.
    """
    return jit_meta_step(cfg, optimizer,
                         in_shardings=(state_shardings, episodes_sharding(mesh)),
                         out_shardings=(state_shardings, replicated(mesh)))
