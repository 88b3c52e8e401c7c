"""Outputs never cost the user an input: each probe runs through the CLI (or the checkpoint
API) and ends in one ``error:`` line with exit 2, every pre-existing file byte-identical
(sha256) and nothing left behind (no temp, no ``.old`` copy, no empty folders)."""

import errno
import hashlib
import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from test_faults import run_cli
from jaxmaml.run.checkpoint import CheckpointWriteError, RunCheckpoints
from jaxmaml.run.config import dump_yaml
from jaxmaml.run.config_load import load_config

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "configs" / "tiny.yaml"
QUICK = ["--set", "train.steps=2", "--set", "train.eval_every=0", "--set", "train.save_every=2"]


def file_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (and the names of its folders)."""
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest()
                                       if p.is_file() else "dir")
            for p in sorted(root.rglob("*"))}


def one_error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture
def files(tmp_path):
    """A labelled support file and a texts file (the user's inputs)."""
    sup, txt = tmp_path / "labelled.csv", tmp_path / "texts.csv"
    sup.write_text("text,label\ndog cat,animals\nrice soup,food\n")
    txt.write_text("text\nbird\nbread\n")
    return sup, txt


@pytest.fixture
def no_model(monkeypatch):
    """Fail the test if a model is loaded: the checks run before. Patched where it is
    called (``jaxmaml.predict`` binds ``load`` when first imported: patching only
    ``jaxmaml.run.load.load`` would miss it there, or, if ``jaxmaml.predict`` were first
    imported during this test, leave the patch in it for every later test)."""
    import jaxmaml.classifier as classifier
    import jaxmaml.predict as predict
    import jaxmaml.run.load as load

    def fail(*a, **k):
        pytest.fail("a model was loaded before the output path was checked")

    monkeypatch.setattr(load, "load", fail)
    monkeypatch.setattr(predict, "load", fail)
    monkeypatch.setattr(classifier.FewShotClassifier, "from_pretrained", fail)


# ------------------------------------------------------------------ predict --out
@pytest.mark.parametrize("case", ["support", "texts", "hard link", "symlink", "relative"])
def test_predict_refuses_an_out_that_is_an_input(tmp_path, capsys, files, no_model, case,
                                                 monkeypatch):
    sup, txt = files
    out = {"support": sup, "texts": txt, "hard link": tmp_path / "link.csv",
           "symlink": tmp_path / "sym.csv", "relative": Path("sub/../labelled.csv")}[case]
    if case == "hard link":
        os.link(sup, out)
    if case == "symlink":
        out.symlink_to(txt)
    if case == "relative":
        (tmp_path / "sub").mkdir()
        monkeypatch.chdir(tmp_path)
    before = file_hashes(tmp_path)
    code, err = run_cli(capsys, "predict", tmp_path / "model", "--support", sup, "--texts",
                        txt, "--out", out, "--no-progress")
    line = one_error_line(err)
    assert code == 2 and "would replace your input" in line, line
    assert ("--support" if case in ("support", "hard link", "relative") else "--texts") in line
    assert file_hashes(tmp_path) == before


def test_predict_refuses_a_folder_or_an_unwritable_out(tmp_path, capsys, files, no_model,
                                                       monkeypatch):
    sup, txt = files
    (tmp_path / "preds.csv").mkdir()  # a folder that happens to have the name
    (tmp_path / "note.txt").write_text("a file, not a folder")
    before = file_hashes(tmp_path)
    for out, expect in ((tmp_path / "preds.csv", "is a folder"),
                        (tmp_path / "note.txt" / "p.csv", "is a file, not a folder")):
        code, err = run_cli(capsys, "predict", tmp_path / "model", "--support", sup,
                            "--texts", txt, "--out", out, "--no-progress")
        assert code == 2 and expect in one_error_line(err)
    import jaxmaml.run.paths as paths

    locked = tmp_path / "locked"
    locked.mkdir()
    real = os.access
    monkeypatch.setattr(paths.os, "access", lambda p, mode: Path(p) != locked
                        and real(p, mode))  # root may write anywhere: ask as a user would
    code, err = run_cli(capsys, "predict", tmp_path / "model", "--support", sup, "--texts",
                        txt, "--out", locked / "new" / "p.csv", "--no-progress")
    assert code == 2 and f"cannot write in {locked}" in one_error_line(err)
    assert file_hashes(tmp_path) == {**before, "locked": "dir"}


# ------------------------------------------------------------------ export
@pytest.fixture
def init_run(tmp_path):
    """A run directory holding only config.yaml (exported with --checkpoint init)."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(dump_yaml(load_config(TINY)))
    return run


def test_export_overwrite_of_a_file_leaves_only_the_export(tmp_path, capsys, init_run):
    target = tmp_path / "out" / "model"
    target.parent.mkdir()
    target.write_text("an old file in the way")
    code, err = run_cli(capsys, "export", init_run, target, "--checkpoint", "init",
                        "--overwrite")
    assert code == 0, err
    assert target.is_dir() and (target / "model.safetensors").is_file()
    assert [p.name for p in target.parent.iterdir()] == ["model"]  # no .model.old-PID


def test_export_write_error_is_one_line_and_keeps_the_old_export(tmp_path, capsys, init_run,
                                                                 monkeypatch):
    import safetensors.numpy

    out = tmp_path / "exports" / "model"
    assert run_cli(capsys, "export", init_run, out, "--checkpoint", "init")[0] == 0
    before = file_hashes(tmp_path / "exports")

    def disk_full(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(safetensors.numpy, "save_file", disk_full)
    code, err = run_cli(capsys, "export", init_run, out, "--checkpoint", "init", "--overwrite")
    line = one_error_line(err)
    assert code == 2 and f"could not write the export {out}: No space left on device" in line
    assert file_hashes(tmp_path / "exports") == before  # old export intact, no temp dir


def test_export_into_an_unwritable_folder_fails_before_loading(tmp_path, capsys, init_run,
                                                               monkeypatch):
    import jaxmaml.run.export as export_mod
    import jaxmaml.run.paths as paths

    locked = tmp_path / "locked"
    locked.mkdir()
    monkeypatch.setattr(paths.os, "access", lambda p, mode: Path(p) != locked)
    monkeypatch.setattr(export_mod, "initial_encoder",
                        lambda cfg: pytest.fail("loaded the model before checking OUT_DIR"))
    code, err = run_cli(capsys, "export", init_run, locked / "model", "--checkpoint", "init")
    assert code == 2 and f"cannot write in {locked}" in one_error_line(err)
    assert list(locked.iterdir()) == []


# ------------------------------------------------------------------ train start-up checks
def test_failed_start_up_checks_leave_no_folders_they_created(tmp_path, capsys):
    (tmp_path / "keep").mkdir()
    before = file_hashes(tmp_path)
    code, err = run_cli(capsys, "train", TINY, "--out", tmp_path / "keep" / "a" / "b" / "run",
                        *QUICK, "--set", "eval.settings=[[2,1,400]]")
    assert code == 2 and "eval.settings (2, 1, 400)" in one_error_line(err)
    assert file_hashes(tmp_path) == before  # keep/ stays, a/b/run and its parents are gone


# ------------------------------------------------------------------ checkpoint writes
@pytest.fixture
def file_size_limit():
    """``set(n)``: a soft file-size limit of ``n`` bytes for this process (Python ignores
    SIGXFSZ, so a longer write fails with EFBIG), restored afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    yield lambda n: resource.setrlimit(resource.RLIMIT_FSIZE, (n, hard))
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


@pytest.mark.parametrize("async_save", [True, False])
def test_checkpoint_write_failure_names_step_path_and_os_error(tmp_path, file_size_limit,
                                                               async_save):
    """A real write failure (file-size limit): one line with the step, its path and the OS
    error; the previous step intact (byte-identical), no temporary directory left."""
    state = {"w": np.arange(50_000, dtype=np.float32)}  # 200 KB
    ckpts = RunCheckpoints(tmp_path / "checkpoints", async_save=async_save)
    ckpts.save(2, state, {"name": "x"}, {"step": 2})
    ckpts.wait()
    before = file_hashes(tmp_path / "checkpoints")
    file_size_limit(20_000)
    with pytest.raises(CheckpointWriteError) as e:
        ckpts.save(4, {"w": state["w"] + 1}, {"name": "x"}, {"step": 4})
        ckpts.wait()
    file_size_limit(resource.RLIM_INFINITY)
    ckpts.close()
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"could not write checkpoint step 4 to {tmp_path / 'checkpoints' / '4'}: "
                          "File too large (errno 27); training stopped, the last complete "
                          "checkpoint (step 2) is intact"), msg
    assert file_hashes(tmp_path / "checkpoints") == before  # step 2 only, no temp dir


@pytest.mark.slow
def test_train_stops_at_a_failed_checkpoint_write_and_resumes(tmp_path):
    """Through the CLI in a subprocess under ``ulimit -f``: exit 2, one line, the earlier
    checkpoint byte-identical, no temporary directory; the rerun resumes and finishes."""
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1",
           "JAX_PLATFORMS": "cpu"}
    cmd = [sys.executable, "-m", "jaxmaml.cli", "train", str(TINY), "--out", str(run),
           "--no-progress", "--set", "train.eval_every=0", "--set", "train.save_every=2"]
    subprocess.run(cmd + ["--set", "train.steps=2"], env=env, check=True, capture_output=True)
    before = file_hashes(run / "checkpoints")
    limited = subprocess.run(["bash", "-c", 'ulimit -f 100; exec "$@"', "_", *cmd, "--set",
                              "train.steps=6"], env=env, capture_output=True, text=True)
    lines = [line for line in limited.stderr.splitlines() if line.strip()]
    assert limited.returncode == 2 and len(lines) == 1, limited.stderr[-3000:]
    assert lines[0].startswith(f"error: could not write checkpoint step 4 to "
                               f"{run / 'checkpoints' / '4'}: File too large (errno 27)")
    assert file_hashes(run / "checkpoints") == before
    done = subprocess.run(cmd + ["--set", "train.steps=6"], env=env, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming" in done.stdout and sorted(
        int(p.name) for p in (run / "checkpoints").iterdir() if p.name.isdigit()) == [4, 6]
