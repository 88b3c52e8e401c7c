"""jaxmaml: meta-learning for pretrained BERT text encoders in JAX/Flax."""

from jaxmaml import learners
from jaxmaml.classifier import FewShotClassifier
from jaxmaml.run.load import load_export, load_run
from jaxmaml.meta.config import MetaConfig, OptimConfig
from jaxmaml.meta.finetune import FinetuneOptions, finetune_adapt, finetune_predict
from jaxmaml.meta.inner import inner_adapt
from jaxmaml.meta.registry import LEARNERS, get_learner
from jaxmaml.meta.outer import (init_meta_params, init_state, jit_meta_step, make_eval_step,
                                make_meta_step, make_optimizer, meta_grads, meta_loss, new_state)
from jaxmaml.models.bert import BertConfig, encode, init_params, pool
from jaxmaml.models.hf import HFCheckpointError, load_pretrained, save_pretrained
from jaxmaml.types import Episodes, Examples, MetaState

__all__ = [
    "BertConfig", "Episodes", "Examples", "FewShotClassifier", "FinetuneOptions",
    "HFCheckpointError", "LEARNERS", "finetune_adapt", "finetune_predict",
    "MetaConfig", "learners", "load_export", "load_run",
    "MetaState", "OptimConfig", "encode", "get_learner", "init_meta_params", "init_params",
    "init_state", "inner_adapt", "jit_meta_step", "load_pretrained", "make_eval_step",
    "make_meta_step", "make_optimizer", "meta_grads", "meta_loss", "new_state", "pool",
    "save_pretrained",
]
