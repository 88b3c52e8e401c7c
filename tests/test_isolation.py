"""Tests do not depend on their order: a test that changes process-wide settings (JAX
flags, the absl log level, the SIGINT handler, the unraisable hook, how warnings print,
NumPy's error mode)
leaves them as it found them (``conftest._restore_global_state``). The second test of each
pair fails if the first one's change leaked."""

import logging
import signal
import sys
import warnings

import jax
import numpy as np

from conftest import JAX_FLAGS, global_state

BASELINE = {}


def test_a_test_may_change_process_wide_settings():
    BASELINE.update(global_state())
    jax.config.update("jax_enable_x64", not jax.config.jax_enable_x64)
    jax.config.update("jax_default_matmul_precision", "highest")
    logging.getLogger("absl").setLevel(logging.CRITICAL + 5)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.unraisablehook = lambda u: None
    np.seterr(all="raise")
    warnings.formatwarning = lambda message, *args, **kwargs: f"{message}\n"
    assert global_state() != BASELINE


def test_the_next_test_sees_them_restored():
    state = global_state()
    assert BASELINE, "runs after test_a_test_may_change_process_wide_settings"
    assert {f: state[f] for f in JAX_FLAGS} == {f: BASELINE[f] for f in JAX_FLAGS}
    assert state == BASELINE


def test_clearing_jax_caches_releases_compiled_programs_memory_maps():
    """Why ``conftest._clear_compiled_programs`` clears JAX's caches after each module:
    every compiled program holds memory mappings until the caches are cleared, and one
    process running the whole suite would pass the kernel's limit (``vm.max_map_count``),
    where XLA crashes while compiling. Skipped where /proc/self/maps does not exist."""
    import gc

    import jax.numpy as jnp
    import pytest

    from conftest import memory_maps

    if not memory_maps():
        pytest.skip("needs /proc/self/maps (Linux)")
    jax.clear_caches()
    gc.collect()
    before = memory_maps()
    for n in range(1, 41):  # 40 programs: one per input shape
        jax.jit(lambda x: jnp.sin(x) * 2.0)(jnp.ones(n)).block_until_ready()
    compiled = memory_maps()
    jax.clear_caches()
    gc.collect()
    assert compiled - before >= 40, (before, compiled)
    assert memory_maps() - before <= (compiled - before) // 2, (before, compiled, memory_maps())
