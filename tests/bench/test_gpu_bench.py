"""benchmarks/gpu.sh and its grids: they parse, order points as documented, and (slow) the
small mode runs end to end on this CPU."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from jaxmaml.bench.grid import load_grid
from jaxmaml.bench.point import BenchPoint

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))


@pytest.mark.parametrize("grid", ["gpu", "gpu_small", "speed15"])
def test_grids_load_with_both_dtypes_imaml_and_the_peer(grid):
    name, points = load_grid(ROOT / "benchmarks" / "grids" / f"{grid}.yaml")
    assert name == grid
    assert {p.dtype for p in points} == {"f32", "bf16"}
    assert any(p.meta.algorithm == "imaml" for p in points)
    assert any(p.backend == "torch" for p in points)
    assert any(p.meta.second_order == "linearize" and p.order == "second" for p in points)


def test_gpu_points_run_grouped_by_model_jax_first():
    import gpu
    _, points = load_grid(ROOT / "benchmarks" / "grids" / "gpu.yaml")
    order = [(p.model, p.backend) for p in gpu.ordered(points)]
    assert order == sorted(order, key=lambda mb: (["mini", "base"].index(mb[0]),
                                                  mb[1] == "torch"))
    assert {p.model for p in points} == {"mini", "base"}


def test_imaml_has_no_torch_peer():
    with pytest.raises(ValueError, match="no PyTorch peer"):
        BenchPoint.of(algorithm="imaml", backend="torch")


def test_gpu_sh_usage_error():
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh")], capture_output=True,
                          text=True)
    assert proc.returncode == 2 and "usage: benchmarks/gpu.sh OUT_DIR" in proc.stderr


@pytest.mark.slow  # ~1-2 min: compiles the tiny grid (jax f32/bf16, imaml, torch autocast)
@pytest.mark.torch
def test_gpu_sh_small_mode_writes_jsonl_and_markdown(tmp_path):
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh"), str(tmp_path),
                           "--small"], capture_output=True, text=True,
                          env={**__import__("os").environ, "PYTHON": sys.executable})
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in (tmp_path / "gpu_small.jsonl").read_text().splitlines()]
    assert not [r for r in rows if r.get("failed")], [r["failed"] for r in rows if r.get("failed")]
    assert {(r["backend"], r["dtype"]) for r in rows} == {
        ("jax", "f32"), ("jax", "bf16"), ("torch", "f32"), ("torch", "bf16")}
    assert all(r["meta_steps_per_s"] > 0 for r in rows)
    assert "| jax |" in (tmp_path / "gpu_small.md").read_text()
    assert json.loads((tmp_path / "environment.json").read_text())["small"] is True
