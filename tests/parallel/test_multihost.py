"""A real two-process run (2 x 4 CPU devices, gloo collectives, localhost coordinator)
matches one process owning all 8 devices.

The workers are ``benchmarks/multihost_demo.py``; each samples only its own half of the task
axis and ``parallel.put_episodes`` assembles the global batch. The reference runs in this
process (8 forced devices, same mesh shape and rules). On mesh (4, 2) the 'data' axis spans
both processes and 'model' stays within each, so the tensor-parallel all-reduces are local
and the meta-gradient all-reduce crosses processes.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import chex
import jax
import numpy as np
import pytest
from bench_scripts import load_script

from jaxmaml import parallel

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "multihost_demo.py"
TIMEOUT_S = 400


def load_demo():
    return load_script("multihost_demo")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def launch(out: Path, mesh, rules: str, num_processes: int = 2) -> list[str]:
    """Start the workers, wait (bounded), return their logs; kill all on any failure."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("XLA_FLAGS", "JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES",
                        "JAX_PROCESS_ID", "JAXMAML_DISTRIBUTED")}
    env.update(JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
    coordinator = f"localhost:{free_port()}"
    procs = [subprocess.Popen(
        [sys.executable, str(SCRIPT), "--process-id", str(i), "--num-processes",
         str(num_processes), "--coordinator", coordinator,
         "--local-devices", str(8 // num_processes), "--mesh", *map(str, mesh),
         "--rules", rules, "--out", str(out)],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for i in range(num_processes)]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=TIMEOUT_S)[0])
    except subprocess.TimeoutExpired:
        pytest.fail(f"multi-process run exceeded {TIMEOUT_S}s")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for i, (p, log) in enumerate(zip(procs, logs)):
        assert p.returncode == 0, f"process {i} failed:\n{log[-4000:]}"
    return logs


@pytest.mark.slow  # ~50 s CPU: three compiles of a second-order meta-step
@pytest.mark.parametrize("mesh,rules", [((4, 2), "tensor")])
def test_two_processes_match_one_process(tmp_path, mesh, rules):
    logs = launch(tmp_path, mesh, rules)
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["process_count"] == 2 and result["device_count"] == 8
    # Each process fed only its own half of the tasks.
    assert "tasks slice(0, 4, None)" in logs[0] and "tasks slice(4, 8, None)" in logs[1]

    demo = load_demo()
    losses, state = demo.train(parallel.make_mesh(mesh), rules, False, demo.STEPS)
    np.testing.assert_allclose(result["losses"], losses, rtol=1e-5, atol=1e-5)
    params = np.load(tmp_path / "params.npz")
    flat = {"/".join(str(getattr(k, "key", k)) for k in path): np.asarray(x) for path, x in
            jax.tree_util.tree_flatten_with_path(jax.device_get(state.meta_params))[0]}
    assert sorted(params.files) == sorted(flat)
    chex.assert_trees_all_close({k: params[k] for k in flat}, flat, atol=1e-5, rtol=1e-5)
    # Training moved the params: the comparison is not vacuous.
    query = "encoder/encoder/layer/0/attention/self/query/kernel"
    init = demo.setup()[2]().meta_params["encoder"]["encoder"]["layer"]["0"]
    assert not np.allclose(init["attention"]["self"]["query"]["kernel"], flat[query], atol=1e-4)
