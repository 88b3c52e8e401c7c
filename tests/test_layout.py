"""The package's shape: ``import jaxmaml`` stays free of benchmark and heavy optional code,
imports point one way (cli -> run/ -> library -> tree) without circles, and modules and
functions stay small (one idea each)."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "jaxmaml"
# The library: it never imports the run layer (jaxmaml.run), the classifier, the CLI or
# the benchmark harness.
LIBRARY = ("jaxmaml.models", "jaxmaml.meta", "jaxmaml.data", "jaxmaml.parallel",
           "jaxmaml.tree", "jaxmaml.types", "jaxmaml.atomic_file")


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


def _imports(path: Path, modules: frozenset[str] = frozenset()) -> set[str]:
    """Every module named by an import anywhere in ``path`` (inside functions too):
    ``from pkg import sub`` names the submodule ``pkg.sub`` (not ``pkg``) when it is one."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            subs = {f"{node.module}.{a.name}" for a in node.names}
            names |= (subs & modules) or {node.module}
            if subs - modules:
                names.add(node.module)
    return names


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    known = frozenset(mods)
    return {m: {t for t in _imports(p, known) if t in mods and t not in (m, "jaxmaml")}
            for m, p in mods.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_import_jaxmaml_loads_no_bench_torch_or_matplotlib():
    code = ("import jaxmaml, json, sys; print(json.dumps(sorted(m for m in sys.modules if "
            "m.split('.')[0] in ('torch', 'matplotlib') or m.startswith('jaxmaml.bench') "
            "or m.startswith('benchmarks'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True, env={"PYTHONPATH": str(ROOT),
                                                     "JAX_PLATFORMS": "cpu",
                                                     "HF_HUB_OFFLINE": "1"}).stdout
    assert json.loads(out.splitlines()[-1]) == []


def test_no_import_cycles_among_modules():
    assert _cycles(_graph()) == []


def test_cycle_check_finds_a_cycle():
    """The check above can fail: a two-module circle and a three-module one are found."""
    graph = {"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"e"}, "e": {"c"}, "f": {"a"}}
    assert _cycles(graph) == [["a", "b"], ["c", "d", "e"]]


def test_library_never_imports_the_run_layer_or_anything_above_it():
    upward = {m: sorted(t for t in targets if not t.startswith(LIBRARY))
              for m, targets in _graph().items() if m.startswith(LIBRARY)}
    assert {m: t for m, t in upward.items() if t} == {}


def test_package_imports_no_benchmarks_or_scripts_and_edits_no_sys_path():
    offenders = {}
    for name, path in _modules().items():
        text = path.read_text()
        bad = sorted(t for t in _imports(path) if t.split(".")[0] in ("benchmarks", "scripts"))
        if bad or "sys.path.insert" in text or "sys.path.append" in text:
            offenders[name] = bad or ["sys.path edit"]
    assert offenders == {}


def test_no_library_module_over_400_lines():
    sizes = {str(p.relative_to(ROOT)): len(p.read_text().splitlines())
             for p in PACKAGE.rglob("*.py")}
    assert sizes and {p: n for p, n in sizes.items() if n > 400} == {}


def test_no_function_over_80_lines():
    long = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > 80:
                    long[f"{path.relative_to(ROOT)}::{node.name}"] = n
    assert long == {}


@pytest.mark.slow  # a profile hook on every Python call of a train and an eval (~1-2 min)
def test_a_run_config_visits_at_most_10_modules_on_train_and_eval(tmp_path):
    """``benchmarks/cfg_trace.py``: the functions that receive the ExperimentConfig on a real
    2-step ``train`` and an ``eval`` of it live in at most 10 modules, all in ``run/``."""
    from bench_scripts import load_script

    cfg_trace = load_script("cfg_trace")
    out = tmp_path / "trace.json"
    assert cfg_trace.main(["--out", str(out)]) == 0
    trace = json.loads(out.read_text())
    for command in ("train", "eval"):
        modules = trace[command]["modules"]
        assert 2 <= len(modules) <= 10, modules  # at least the command's own module and more
        assert all(m.startswith("jaxmaml.run.") for m in modules), modules
