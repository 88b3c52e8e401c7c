"""Meta-training loop: one compile, resume bit-exactness, NaN stop keeps the last good checkpoint."""

import json
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest
from tree_asserts import assert_bits_equal

from jaxmaml.run.checkpoint import RunCheckpoints
from jaxmaml.run.config import ConfigError
from jaxmaml.run.config_load import load_config
from jaxmaml.run.state import abstract_state, initial_encoder
from jaxmaml.run.train import TrainingDiverged, train

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "configs" / "tiny.yaml"


def _lines(run_dir: Path) -> list[str]:
    return (run_dir / "metrics.jsonl").read_text().splitlines()


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    cfg = load_config(TINY)
    run_dir = tmp_path_factory.mktemp("full") / "run"
    return cfg, train(cfg, run_dir, progress=False)


def test_run_dir_contents_and_single_compile(full_run):
    cfg, result = full_run
    run = result.run_dir
    assert result.compiles == 1  # one XLA program for the whole run
    assert result.start_step == 0 and result.final_step == cfg.train.steps
    for name in ("config.yaml", "split.json", "metrics.jsonl", "timing.jsonl",
                 "learning_curves.png", "train_summary.json"):
        assert (run / name).is_file(), name
    split = json.loads((run / "split.json").read_text())
    assert not set(split["train"]) & set(split["val"]) | set(split["test"]) & set(split["train"])
    rows = [json.loads(line) for line in _lines(run)]
    train_rows = [r for r in rows if "loss" in r]
    assert [r["step"] for r in train_rows] == [2, 4, 6, 8]  # log_every=2
    assert [r["step"] for r in rows if "val_accuracy" in r] == [4, 8]  # eval_every=4
    assert all(np.isfinite(r["loss"]) and 0 <= r["accuracy"] <= 1 for r in train_rows)
    with RunCheckpoints(run / "checkpoints", read_only=True) as ckpts:
        assert ckpts.all_steps() == [4, 8]
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["best_step"] in (4, 8) and summary["final_step"] == 8
    assert int(result.state.step) == 8


def test_resume_is_bit_identical(full_run, tmp_path):
    """A run that lost everything after its step-4 checkpoint (incl. a torn metrics line)
    resumes to the same metrics lines and bit-identical final state."""
    cfg, result = full_run
    run = tmp_path / "run"
    shutil.copytree(result.run_dir, run)
    shutil.rmtree(run / "checkpoints" / "8")
    lines = _lines(result.run_dir)
    with open(run / "metrics.jsonl", "w") as f:  # stale lines past step 4 + a torn line
        f.write("\n".join(lines[:5]) + "\n" + '{"step": 6, "lo')
    resumed = train(cfg, run, progress=False)
    assert resumed.start_step == 4 and resumed.compiles == 1
    assert _lines(run) == lines
    assert_bits_equal(resumed.state, result.state)


def test_resume_with_a_different_config_is_refused(full_run):
    cfg, result = full_run
    with pytest.raises(ConfigError, match="different config.*meta.inner_lr"):
        train(cfg.replace(meta=cfg.meta.replace(inner_lr=0.5)), result.run_dir, progress=False)


def test_nan_stops_and_keeps_last_good_checkpoint(tmp_path):
    # lr ramps from 0 (step 1 leaves params unchanged) to 1e30 (params blow up).
    cfg = load_config(TINY, ["optim.name=sgd", "optim.lr=1e30", "optim.warmup_steps=2",
                             "optim.clip_norm=0", "train.save_every=1", "train.log_every=1",
                             "train.eval_every=0", "train.steps=6"])
    run = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match="last good checkpoint"):
        train(cfg, run, progress=False)
    with RunCheckpoints(run / "checkpoints", read_only=True) as ckpts:
        steps = ckpts.all_steps()
        assert steps and steps[-1] < 6
        state = ckpts.restore(abstract_state(cfg, initial_encoder(cfg)), "latest").state
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state.meta_params))
    rows = [json.loads(line) for line in _lines(run)]
    assert rows[-1]["loss"] is None  # a non-finite loss is recorded as JSON null
