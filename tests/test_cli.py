"""The jaxmaml CLI end to end on the tiny config, and resume after SIGKILL."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxmaml.cli import main
from jaxmaml.run.protocol import DEFAULT_METHODS
from jaxmaml.run.protocol import METHODS as ALL_METHODS

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny.yaml"
SCHEMA_KEYS = {"way", "shot", "query", "episodes", "data", "split", "results"}
METHODS = set(DEFAULT_METHODS)  # the default


def _check_result(obj, way, shot, query, episodes, split, methods=METHODS):
    assert SCHEMA_KEYS <= set(obj)
    assert (obj["way"], obj["shot"], obj["query"], obj["episodes"], obj["split"]) == (
        way, shot, query, episodes, split)
    assert set(obj["results"]) == set(methods)
    for r in obj["results"].values():
        assert set(r) == {"mean", "ci95", "episodes"} and 0 <= r["mean"] <= 1
        assert r["ci95"] >= 0 and 2 <= r["episodes"] <= episodes


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", str(TINY), "--out", str(run), "--no-progress",
                 "--set", "train.steps=4", "--set", "train.eval_every=0"]) == 0
    return run


def test_eval_json_schema(run_dir, capsys):
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--json", "--way", "2", "--shot", "1",
                 "--query", "3", "--episodes", "10"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert isinstance(obj, dict)  # one setting -> one object
    _check_result(obj, 2, 1, 3, 10, "meta_test")
    assert main(["eval", str(run_dir), "--json", "--checkpoint", "latest", "--shot", "1", "2",
                 "--episodes", "10", "--methods", "nearest_centroid"]) == 0
    objs = json.loads(capsys.readouterr().out)
    assert isinstance(objs, list) and [o["shot"] for o in objs] == [1, 2]  # several -> list
    for o in objs:
        _check_result(o, 2, o["shot"], 4, 10, "meta_test", ["nearest_centroid"])
    recorded = json.loads((run_dir / "eval_results.json").read_text())
    assert {(r["shot"], r["query"], r["checkpoint_step"]) for r in recorded} == {
        (1, 3, 4), (1, 4, 4), (2, 4, 4)}


def test_eval_json_schema_of_the_new_methods(run_dir, capsys):
    """Fine-tuning, class names and transduction: every existing key kept, new ones added;
    Dirichlet query batches; fine-tuning options and episodes from the flags."""
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--json", "--way", "2", "--shot", "1", "--query", "3",
                 "--episodes", "6", "--finetune-episodes", "4", "--methods", "all",
                 "--finetune", "steps=2", "--finetune", "top_k=1",
                 "--query-mix", "dirichlet"]) == 0
    obj = json.loads(capsys.readouterr().out)
    _check_result(obj, 2, 1, 3, 6, "meta_test", ALL_METHODS)
    assert SCHEMA_KEYS | {"gains", "seed", "seq_len", "classes", "query_mix"} <= set(obj)
    assert (obj["query_mix"], obj["query_alpha"]) == ("dirichlet", 2.0)
    assert obj["finetune"]["steps"] == 2 and obj["finetune"]["top_k"] == 1
    eps = {m: r["episodes"] for m, r in obj["results"].items()}
    assert eps["finetune"] == eps["meta_learned_finetune_names_trans"] == 4
    assert eps["cosine_centroid_names_trans"] == eps["linear_probe"] == 6
    gains = obj["gains"]
    assert {"meta_learned", "meta_learned_centroid", "meta_learned_probe",
            "meta_learned_finetune", "meta_learned_finetune_names_trans",
            "meta_learned_centroid_names", "best_setting"} <= set(gains)
    assert gains["meta_learned_finetune"]["vs"] == "finetune"
    assert gains["best_setting"]["vs"] in ("linear_probe", "finetune")
    for bad in (["--finetune", "stepz=2"], ["--finetune", "steps=two"],
                ["--finetune", "part=everything"], ["--finetune-episodes", "1"],
                ["--query-alpha", "0"]):
        assert main(["eval", str(run_dir), "--methods", "finetune", *bad]) == 2, bad
    assert "use KEY=VALUE" in capsys.readouterr().err


def test_eval_per_episode_is_json_only_and_not_recorded(run_dir, tmp_path, capsys):
    run_dir = Path(shutil.copytree(run_dir, tmp_path / "run"))  # its eval_results.json is ours
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--json", "--per-episode", "--shot", "1", "--query",
                 "5", "--episodes", "11", "--methods", "linear_probe", "cosine_centroid"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert set(obj["per_episode"]) == {"linear_probe", "cosine_centroid"}
    for m, accs in obj["per_episode"].items():
        assert len(accs) == 11
        assert np.mean(accs) == pytest.approx(obj["results"][m]["mean"], abs=1e-6)
    recorded = json.loads((run_dir / "eval_results.json").read_text())
    assert [r for r in recorded if r["episodes"] == 11] and not any("per_episode" in r
                                                               for r in recorded)
    assert main(["eval", str(run_dir), "--per-episode", "--episodes", "11"]) == 2
    assert "add --json" in capsys.readouterr().err


def test_eval_on_a_file_and_readable_table(run_dir, capsys):
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--data", str(ROOT / "tests/data/tiny_topics.csv"),
                 "--text-column", "text", "--label-column", "label", "--way", "3",
                 "--shot", "1", "--episodes", "6", "--methods", "meta_learned",
                 "nearest_centroid"]) == 0
    out = capsys.readouterr().out
    assert "3-way 1-shot" in out and "all of" in out and "meta_learned" in out
    assert "pretrained_finetune" not in out


def test_export_loads_in_transformers(run_dir, tmp_path, capsys):
    # The card's table is the run's recorded evaluations: record one here, so the test does
    # not depend on another test having run first (-k selects it alone).
    assert main(["eval", str(run_dir), "--way", "2", "--shot", "1", "--query", "3",
                 "--episodes", "4", "--methods", "meta_learned"]) == 0
    out = tmp_path / "hf"
    assert main(["export", str(run_dir), str(out)]) == 0
    card = (out / "README.md").read_text()
    assert "maml" in card and "meta-test" in card and "| meta_test | 2 | 1 |" in card
    assert main(["export", str(run_dir), str(out)]) == 2  # refuses to overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert main(["export", str(run_dir), str(out), "--overwrite"]) == 0
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(str(out))
    assert tok("the dog")["input_ids"][0] == tok.cls_token_id


@pytest.mark.torch
def test_export_automodel_matches_jax(run_dir, tmp_path):
    torch = pytest.importorskip("torch")
    from transformers import AutoModel

    from jaxmaml.run.load import resolve_target
    from jaxmaml.run.load import restore_meta_params
    from jaxmaml.run.state import initial_encoder
    from jaxmaml.models.bert import encode

    out = tmp_path / "hf"
    assert main(["export", str(run_dir), str(out), "--checkpoint", "latest"]) == 0
    model = AutoModel.from_pretrained(str(out)).eval()
    cfg, _ = resolve_target(str(run_dir), [], None)
    _, meta_params = restore_meta_params(cfg, run_dir, "latest", initial_encoder(cfg))
    ids = np.array([[2, 10, 20, 30, 3, 0]], np.int32)
    mask = (ids > 0).astype(np.int32)
    with torch.no_grad():
        ref = model(input_ids=torch.tensor(ids, dtype=torch.long),
                    attention_mask=torch.tensor(mask, dtype=torch.long)).last_hidden_state
    ours = encode(meta_params["encoder"], cfg.meta.model, ids, mask)
    ours = ours[0] if isinstance(ours, tuple) else ours
    np.testing.assert_allclose(np.asarray(ours), ref.numpy(), atol=1e-5, rtol=1e-5)


def test_errors_are_clean(tmp_path, capsys):
    assert main(["train", str(tmp_path / "missing.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["train", str(TINY), "--set", "train.stpes=3"]) == 2
    assert "Did you mean 'train.steps'" in capsys.readouterr().err
    assert main(["eval", str(TINY), "--out", str(tmp_path / "norun")]) == 2
    assert "--checkpoint init" in capsys.readouterr().err


def test_data_command(capsys):
    assert main(["data", str(TINY), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["examples"] == 96 and info["classes"] == 8
    assert [len(info["split"][p]) for p in ("train", "val", "test")] == [4, 2, 2]


def _cli(args, env, **kw):
    return subprocess.Popen([sys.executable, "-m", "jaxmaml.cli", *args], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)


@pytest.mark.slow
def test_sigkill_resume_is_bit_identical(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "JAX_PLATFORMS": "cpu",
           "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax-cache"),
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    common = ["--no-progress", "--set", "train.steps=12", "--set", "train.save_every=4",
              "--set", "train.eval_every=0", "--set", "train.async_checkpointing=false"]
    ref, run = tmp_path / "ref", tmp_path / "run"
    proc = _cli(["train", str(TINY), "--out", str(ref), *common], env)
    assert proc.wait(timeout=600) == 0, proc.stdout.read().decode()

    proc = _cli(["train", str(TINY), "--out", str(run), *common], env)
    deadline = time.time() + 600
    while not (run / "checkpoints" / "4").is_dir() and proc.poll() is None:
        assert time.time() < deadline
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (run / "checkpoints" / "12").exists()

    proc = _cli(["train", str(TINY), "--out", str(run), *common], env)
    out = proc.communicate(timeout=600)[0].decode()
    assert proc.returncode == 0, out
    assert "resuming" in out
    assert (run / "metrics.jsonl").read_text() == (ref / "metrics.jsonl").read_text()

    from jaxmaml.run.checkpoint import RunCheckpoints
    from jaxmaml.run.config_load import load_config
    from jaxmaml.run.state import abstract_state, initial_encoder
    cfg = load_config(TINY)
    states = []
    for d in (ref, run):
        with RunCheckpoints(d / "checkpoints", read_only=True) as ckpts:
            states.append(ckpts.restore(abstract_state(cfg, initial_encoder(cfg)), 12).state)
    for x, y in zip(jax.tree.leaves(states[0]), jax.tree.leaves(states[1])):
        assert np.asarray(x).tobytes() == np.asarray(y).tobytes()


def test_bench_dispatches_through_argparse(monkeypatch, capsys):
    from jaxmaml.bench import grid
    seen = []
    monkeypatch.setattr(grid, "run", lambda args, name, points: seen.append(
        (args.json, name, points)) or 0)
    assert main(["bench", "--tasks", "4", "--json"]) == 0
    assert seen == [(True, "bench", [grid.BenchPoint.of(tasks=4)])]
    assert main(["bench", "--order", "first", "--remat", "some"]) == 2  # bad point: exit 2
    assert "remat='some'" in capsys.readouterr().err


def test_eval_seq_len_changes_only_the_evaluated_data(run_dir, capsys):
    from jaxmaml.run.evaluate import load_eval_data
    from jaxmaml.run.load import run_config as load_run
    from jaxmaml.run.data import load_data

    cfg = load_run(run_dir)
    data_file = str(ROOT / "tests/data/tiny_topics.csv")
    default = load_eval_data(cfg, data_file)
    short = load_eval_data(cfg, data_file, seq_len=6)
    assert default.seq_len == cfg.data.seq_len == default.data.input_ids.shape[1] == 16
    assert short.seq_len == short.data.input_ids.shape[1] == 6
    # the same examples, cut shorter: every row's first 5 tokens agree ([SEP] moves)
    np.testing.assert_array_equal(short.data.labels, default.data.labels)
    np.testing.assert_array_equal(short.data.input_ids[:, :5], default.data.input_ids[:, :5])
    assert (default.data.attention_mask.sum(1) > 6).any()
    # the run's meta-training data and config are untouched
    assert load_data(cfg)[0].input_ids.shape[1] == 16 and cfg.data.seq_len == 16
    # eval.seq_len is the config default of --seq-len; the flag wins; both reach the CLI
    via_cfg = load_eval_data(load_run(run_dir, ["eval.seq_len=8"]), data_file)
    assert via_cfg.data.input_ids.shape[1] == 8
    assert load_eval_data(load_run(run_dir, ["eval.seq_len=8"]), data_file,
                          seq_len=6).seq_len == 6
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--data", data_file, "--seq-len", "6", "--json",
                 "--way", "2", "--shot", "1", "--episodes", "4",
                 "--methods", "cosine_centroid"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["seq_len"] == 6
    assert main(["eval", str(run_dir), "--json", "--way", "2", "--shot", "1", "--episodes",
                 "4", "--methods", "cosine_centroid", "--set", "eval.seq_len=8"]) == 0
    assert json.loads(capsys.readouterr().out)["seq_len"] == 8  # meta-test classes too
    assert main(["eval", str(run_dir), "--data", data_file, "--seq-len", "1"]) == 2
    assert "seq-len" in capsys.readouterr().err


def test_wise_alpha_is_the_model_eval_and_export_load(run_dir, tmp_path, capsys):
    """``train.wise_alpha`` = 0.5: the restored encoder is theta_0 + 0.5 (theta - theta_0)
    (a numpy reference), the export holds those weights and says so, eval records its rows
    beside alpha = 1's, and a non-positive alpha is a one-line error."""
    from jaxmaml.run.state import initial_encoder
    from jaxmaml.run.load import load_export, restore_meta_params, run_config

    cfg = run_config(run_dir)
    theta_0 = initial_encoder(cfg)
    _, full = restore_meta_params(cfg, run_dir, "latest", theta_0)
    half_cfg = run_config(run_dir, ["train.wise_alpha=0.5"])
    _, half = restore_meta_params(half_cfg, run_dir, "latest")  # loads theta_0 itself
    moved = 0
    for a, b, h in zip(jax.tree.leaves(theta_0), jax.tree.leaves(full["encoder"]),
                       jax.tree.leaves(half["encoder"])):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        np.testing.assert_allclose(np.asarray(h, np.float64), a + 0.5 * (b - a),
                                   rtol=1e-6, atol=1e-7)
        moved += int(not np.array_equal(a, b))
    assert moved  # meta-training changed the encoder, so the check can fail
    for k in set(full) - {"encoder"}:  # learner extras are not interpolated
        for x, y in zip(jax.tree.leaves(full[k]), jax.tree.leaves(half[k])):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))

    out = tmp_path / "hf_half"
    assert main(["export", str(run_dir), str(out), "--checkpoint", "latest",
                 "--set", "train.wise_alpha=0.5"]) == 0
    assert "WiSE-FT" in (out / "README.md").read_text()
    exported = load_export(out).meta_params["encoder"]
    for x, y in zip(jax.tree.leaves(exported), jax.tree.leaves(half["encoder"])):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-7)

    capsys.readouterr()
    for alpha in ("1.0", "0.5"):
        assert main(["eval", str(run_dir), "--json", "--shot", "1", "--episodes", "7",
                     "--methods", "meta_learned_centroid", "--checkpoint", "latest",
                     "--set", f"train.wise_alpha={alpha}"]) == 0
    capsys.readouterr()
    recorded = json.loads((run_dir / "eval_results.json").read_text())
    rows = [r for r in recorded if r["episodes"] == 7]  # no other test evaluates 7
    assert sorted(r["wise_alpha"] for r in rows) == [0.5, 1.0]

    for bad in ("0", "-0.5", ".nan"):
        assert main(["eval", str(run_dir), "--set", f"train.wise_alpha={bad}"]) == 2
        err = capsys.readouterr().err.strip()
        assert "train.wise_alpha" in err and "\n" not in err


def test_compare_runs_script_pairs_the_same_episodes(run_dir, capsys):
    """benchmarks/compare_runs.py: a run against itself differs by exactly 0 on every episode."""
    from bench_scripts import load_script

    compare = load_script("compare_runs")
    capsys.readouterr()
    assert compare.main([str(run_dir), str(run_dir), "--checkpoint", "latest",
                         "--old-checkpoint", "latest", "--episodes", "6"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {r["shot"] for r in rows} == {1, 2} and all(r["episodes"] == 6 for r in rows)
    for r in rows:
        assert r["new"] == r["old"] and r["new_minus_old_points"] == 0 == r["ci95_points"]


def test_old_flat_meta_keys_load_with_one_warning_line():
    """``--set meta.cg_steps=3`` (a key of earlier versions) still works; the command line says
    so in one ``warning:`` line naming the grouped keys, and nothing else on stderr."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "default::FutureWarning"}
    done = subprocess.run([sys.executable, "-m", "jaxmaml.cli", "data", str(TINY), "--set",
                           "meta.cg_steps=3", "--set", "meta.fce=true"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        "warning: deprecated flat meta keys (still read; write them in their options group): "
        "meta.fce -> meta.matching.fce, meta.cg_steps -> meta.imaml.cg_steps."]
    assert "meta-train" in done.stdout
