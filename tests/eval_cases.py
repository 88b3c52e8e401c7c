"""The small synthetic evaluation pool shared by test_evaluate.py and test_baselines.py."""

import jax
import numpy as np
import pytest

from jaxmaml.data.episodes import TokenizedData
from jaxmaml.data.synthetic import synthetic_examples
from jaxmaml.models.bert import BertConfig, init_params

VOCAB = 256
MODEL = BertConfig.tiny(vocab_size=VOCAB)
CLASSES = [f"c{i}" for i in range(6)]


def eval_pool() -> TokenizedData:
    """6 classes x 12 examples of 16 tokens."""
    ex = synthetic_examples(np.random.default_rng(0), np.arange(6), 12, 16, VOCAB)
    return TokenizedData(ex.input_ids, ex.attention_mask, ex.labels, tuple(CLASSES))


@pytest.fixture(scope="module")
def data():
    """The shared pool (module-scoped fixture; import it into a test module to use it)."""
    return eval_pool()


@pytest.fixture(scope="module")
def encoders():
    """Two tiny encoders: ``(pretrained, meta-learned)``."""
    return init_params(MODEL, jax.random.key(0)), init_params(MODEL, jax.random.key(9))
