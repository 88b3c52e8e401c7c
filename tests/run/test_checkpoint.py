"""Run checkpoints: exact round trip, retention (last K + best), corrupt-step fallback."""

import glob
import os

import jax
import jax.numpy as jnp
import optax
import pytest
from tree_asserts import assert_bits_equal

from jaxmaml.run.checkpoint import CheckpointError, RunCheckpoints
from jaxmaml.tree import abstract
from jaxmaml.types import MetaState


def _state(step: int, seed: int = 0) -> MetaState:
    opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-3))
    key = jax.random.key(seed)
    params = {"encoder": {"w": jax.random.normal(key, (4, 3))},
              "inner_lr": jnp.full((2,), 0.1)}
    opt_state = opt.init(params)
    grads = jax.tree.map(jnp.ones_like, params)
    _, opt_state = opt.update(grads, opt_state, params)  # non-trivial moments and count
    return MetaState(params, opt_state, jnp.int32(step), jax.random.key_data(key))


def _save_steps(directory, steps, keep=2, val=None):
    ckpts = RunCheckpoints(directory, keep=keep, async_save=True)
    for s in steps:
        ckpts.save(s, _state(s, seed=s), {"name": "x", "step": s}, {"seed": 0, "step": s},
                   val_accuracy=(val or {}).get(s))
    ckpts.wait()
    return ckpts


def test_round_trip_is_bit_exact_with_structure(tmp_path):
    ckpts = _save_steps(tmp_path / "checkpoints", [3])
    restored = ckpts.restore(abstract(_state(0)))
    assert restored.step == 3
    assert restored.config == {"name": "x", "step": 3}
    assert restored.sampler == {"seed": 0, "step": 3}
    assert_bits_equal(restored.state, _state(3, seed=3))  # NamedTuples of optax state included
    ckpts.close()


def test_keeps_last_k_and_best(tmp_path):
    ckpts = _save_steps(tmp_path / "checkpoints", [1, 2, 3, 4, 5], keep=2,
                        val={2: 0.9, 4: 0.5, 5: 0.6})
    assert ckpts.all_steps() == [2, 4, 5]
    assert ckpts.best_step() == 2
    assert ckpts.resolve("best") == 2 and ckpts.resolve("latest") == 5
    assert ckpts.resolve("4") == 4
    with pytest.raises(CheckpointError, match="no checkpoint at step 3.*available: 2, 4, 5"):
        ckpts.resolve(3)
    with pytest.raises(CheckpointError, match="use latest, best or a step"):
        ckpts.resolve("newest")
    ckpts.close()


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_corrupt_latest_falls_back_to_previous(tmp_path, damage, capsys):
    ckpts = _save_steps(tmp_path / "checkpoints", [2, 4], keep=3)
    files = [f for f in glob.glob(str(tmp_path / "checkpoints/4/state/**"), recursive=True)
             if os.path.isfile(f)]
    assert files
    for f in files:  # damage every file of the state item (array data and metadata)
        if damage == "truncate":
            with open(f, "r+b") as fh:
                fh.truncate(max(os.path.getsize(f) // 2, 1) - 1)
        else:
            os.remove(f)
    target = abstract(_state(0))
    with pytest.raises(CheckpointError, match="unreadable"):
        ckpts.restore(target, "latest", fallback=False)
    restored = ckpts.restore(target, "latest", fallback=True)
    assert restored.step == 2
    assert_bits_equal(restored.state, _state(2, seed=2))
    assert "corrupt or incomplete" in capsys.readouterr().out
    assert ckpts.all_steps() == [2]
    assert (tmp_path / "corrupt_checkpoints" / "4").is_dir()
    # a new step 4 can be written after the fallback
    ckpts.save(4, _state(4, seed=4), {}, {"seed": 0, "step": 4})
    ckpts.wait()
    assert ckpts.all_steps() == [2, 4]
    ckpts.close()


def test_partial_save_directory_is_ignored(tmp_path):
    ckpts = _save_steps(tmp_path / "checkpoints", [2], keep=3)
    ckpts.close()
    # what a process killed mid-save leaves: an uncommitted temporary step directory
    tmp = tmp_path / "checkpoints" / "4.orbax-checkpoint-tmp-123"
    (tmp / "state").mkdir(parents=True)
    (tmp / "state" / "junk").write_bytes(b"\0" * 10)
    ckpts = RunCheckpoints(tmp_path / "checkpoints", keep=3)
    assert ckpts.all_steps() == [2]
    assert ckpts.restore(abstract(_state(0)), fallback=True).step == 2
    ckpts.close()


def test_read_only_errors(tmp_path):
    with pytest.raises(CheckpointError, match="Train first"):
        RunCheckpoints(tmp_path / "none", read_only=True)
    (tmp_path / "empty").mkdir()
    with RunCheckpoints(tmp_path / "empty", read_only=True) as ckpts:
        with pytest.raises(CheckpointError, match="no checkpoints"):
            ckpts.resolve("latest")
