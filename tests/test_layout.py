"""The package's shape: ``import jaxmaml`` stays free of benchmark and heavy optional code,
and every module stays under 400 lines (one idea each)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_jaxmaml_loads_no_bench_torch_or_matplotlib():
    code = ("import jaxmaml, json, sys; print(json.dumps(sorted(m for m in sys.modules if "
            "m.split('.')[0] in ('torch', 'matplotlib') or m.startswith('jaxmaml.bench') "
            "or m.startswith('benchmarks'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True, env={"PYTHONPATH": str(ROOT),
                                                     "JAX_PLATFORMS": "cpu",
                                                     "HF_HUB_OFFLINE": "1"}).stdout
    assert json.loads(out.splitlines()[-1]) == []


def test_no_library_module_over_400_lines():
    sizes = {str(p.relative_to(ROOT)): len(p.read_text().splitlines())
             for p in (ROOT / "jaxmaml").rglob("*.py")}
    assert sizes and {p: n for p, n in sizes.items() if n > 400} == {}
