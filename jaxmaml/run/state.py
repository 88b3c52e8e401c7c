"""The state of a run: the initial encoder (pretrained or a preset's random init) and the
meta-training state built from it (concrete, or abstract as an Orbax restore target)."""

from __future__ import annotations

from typing import Any, Callable

import jax
import optax

from jaxmaml.meta.outer import make_optimizer, new_state
from jaxmaml.models.bert import BertConfig, init_params
from jaxmaml.models.hf import load_pretrained
from jaxmaml.run.config import ExperimentConfig, ModelSection
from jaxmaml.run.config_load import model_dir, resolve_bert
from jaxmaml.tree import abstract
from jaxmaml.types import MetaState


def load_encoder(model: ModelSection, key: jax.Array, config: BertConfig | None = None
                 ) -> tuple[dict, BertConfig]:
    """``(params, config)`` of a model section: a preset's random init from ``key`` (with
    ``config``, default the section's :func:`~jaxmaml.run.config_load.resolve_bert`), or the weights
    of ``minilm`` / a Hugging Face directory (``key`` unused)."""
    path = model_dir(model)
    if path is None:
        config = config or resolve_bert(model)
        return init_params(config, key), config

    return load_pretrained(path, **dict(model.overrides))



def initial_encoder(cfg: ExperimentConfig) -> dict:
    """Pretrained weights (``minilm`` or a HF directory) or a preset's random init.

    Random presets are initialized from ``fold_in(key(train.seed), 0)``, so every command
    (train, eval baselines, export) recreates the same initial encoder.
    """
    key = jax.random.fold_in(jax.random.key(cfg.train.seed), 0)
    return load_encoder(cfg.model, key, cfg.meta.model)[0]



def state_init_fn(cfg: ExperimentConfig, optimizer: optax.GradientTransformation
                  ) -> Callable[[dict], MetaState]:
    """``encoder -> MetaState`` (learner extras and the run key from ``train.seed``)."""
    return lambda encoder: new_state(encoder, cfg.meta, optimizer, jax.random.key(cfg.train.seed))



def abstract_state(cfg: ExperimentConfig, encoder: Any, shardings: Any = None) -> Any:
    """``ShapeDtypeStruct`` tree of the run's MetaState (an Orbax restore target).

    ``encoder``: concrete or abstract (``jax.eval_shape``) params. ``shardings``: a tree of
    shardings matching the state (from :func:`jaxmaml.parallel.tree_shardings`); default:
    everything on the first device. Restoring into this target places each shard on its
    device, whatever mesh the checkpoint was saved from.
    """
    shapes = jax.eval_shape(state_init_fn(cfg, make_optimizer(cfg.optim)), encoder)
    if shardings is None:
        one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        shardings = jax.tree.map(lambda _: one, shapes)
    return abstract(shapes, shardings)
