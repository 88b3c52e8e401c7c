"""Fault injection: each probe a user hit runs through the CLI and must end in a one-line
``error: ...`` (exit 2), a diverged-run message (exit 1) or an interruption note (exit 130),
with nothing else on disk changed (the run directory hashed before and after)."""

import hashlib
import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from jaxmaml import parallel
from jaxmaml.run.checkpoint import RunCheckpoints
from jaxmaml.cli import main
from jaxmaml.run.runlock import RunLock

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "configs" / "tiny.yaml"
QUICK = ["--set", "train.steps=2", "--set", "train.eval_every=0", "--set", "train.save_every=2"]


def tree_hash(root: Path) -> str:
    """Names, sizes and bytes of every file under ``root`` (the lock file included)."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        h.update(str(p.relative_to(root)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def run_cli(capsys, *argv) -> tuple[int, str]:
    """(exit code, stderr) of ``jaxmaml *argv``; argparse's own exits are returned too."""
    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


def one_error_line(err: str, code: int = 2) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    if code != 130:
        assert lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """``runs/a`` and ``runs/b``: two finished tiny runs side by side."""
    import shutil

    root = tmp_path_factory.mktemp("faults") / "runs"
    assert main(["train", str(TINY), "--out", str(root / "a"), "--no-progress", *QUICK]) == 0
    shutil.copytree(root / "a", root / "b")  # a finished run too, without a second training
    return root


# ------------------------------------------------------------------ exports that would destroy
@pytest.mark.parametrize("target", ["self", "inside", "parent", "holder"])
def test_export_refuses_to_overwrite_runs(runs, tmp_path, capsys, target):
    before = tree_hash(runs)
    holder = tmp_path / "holder"  # a directory holding a run further down
    if target == "holder":
        (holder / "x").mkdir(parents=True)
        (holder / "x" / "config.yaml").write_text("name: x\n")
        (holder / "x" / "metrics.jsonl").write_text("")
    out = {"self": runs / "b", "inside": runs / "b" / "hf", "parent": runs,
           "holder": holder}[target]
    held = tree_hash(holder) if holder.exists() else None
    code, err = run_cli(capsys, "export", runs / "b", out, "--overwrite")
    assert code == 2
    assert "cannot export" in one_error_line(err)
    assert tree_hash(runs) == before
    if held:
        assert tree_hash(holder) == held


def test_export_gets_normal_permissions(runs, tmp_path, capsys):
    old = os.umask(0o022)
    try:
        assert run_cli(capsys, "export", runs / "a", tmp_path / "hf")[0] == 0
    finally:
        os.umask(old)
    out = tmp_path / "hf"
    modes = {p: stat.S_IMODE(p.stat().st_mode) for p in [out, *out.rglob("*")]}
    assert {m for p, m in modes.items() if p.is_dir()} == {0o755}, modes
    assert {m for p, m in modes.items() if p.is_file()} == {0o644}, modes


def test_export_without_checkpoint_offers_init_and_init_works(runs, tmp_path, capsys):
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.yaml").write_text((runs / "a" / "config.yaml").read_text())
    code, err = run_cli(capsys, "export", bare, tmp_path / "out")
    assert code == 2 and "--checkpoint init" in one_error_line(err)
    assert not (tmp_path / "out").exists()
    code, _ = run_cli(capsys, "export", bare, tmp_path / "out", "--checkpoint", "init")
    assert code == 0 and (tmp_path / "out" / "model.safetensors").is_file()


def test_corrupt_checkpoint_is_one_line_in_eval_and_export(runs, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(runs / "a", run)
    for f in (run / "checkpoints" / "2" / "state").rglob("*"):
        if f.is_file() and f.stat().st_size > 100:
            f.write_bytes(b"\0" * 17)
    before = tree_hash(run)
    for argv in (["eval", run, "--episodes", "4", "--checkpoint", "latest"],
                 ["export", run, tmp_path / "hf", "--checkpoint", "latest"]):
        code, err = run_cli(capsys, *argv)
        assert code == 2 and "is unreadable" in one_error_line(err), err
    assert tree_hash(run) == before and not (tmp_path / "hf").exists()


# ------------------------------------------------------------------ concurrent runs
def test_second_train_on_a_locked_run_dir_names_the_holder(runs, capsys):
    before = tree_hash(runs / "a")
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from jaxmaml.run.runlock import RunLock
        with RunLock({str(runs / "a")!r}):
            print("locked", flush=True)
            time.sleep(120)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = tree_hash(runs / "a")
        code, err = run_cli(capsys, "train", TINY, "--out", runs / "a", "--no-progress", *QUICK)
        line = one_error_line(err)
        assert code == 2 and "in use by another" in line and f"pid {holder.pid}" in line
        assert tree_hash(runs / "a") == before
    finally:
        holder.kill()
        holder.wait()
    # The holder died without unlocking: the lock is free again (no stale-lock cleanup needed).
    with RunLock(runs / "a"):
        pass


# ------------------------------------------------------------------ bad data files
@pytest.mark.parametrize("case,content,expect", [
    ("nosuffix", None, "is not a local file, and no dataset of that name was found in the "
                       "local hub cache"),
    ("empty.csv", b"", "is empty"),
    ("header.csv", b"text,label\n", "header but no rows"),
    ("latin1.csv", "text,label\ncaf\u00e9 au lait,food\n".encode("latin-1"), "not UTF-8"),
    ("cols.csv", b"body,topic\nhello there,a\n", "data.text_column"),
])
def test_bad_data_files_are_one_line_errors(tmp_path, capsys, case, content, expect):
    source = tmp_path / case
    if content is not None:
        source.write_bytes(content)
    before = tree_hash(tmp_path)
    code, err = run_cli(capsys, "data", TINY, "--set", f"data.source={source}")
    assert code == 2 and expect in one_error_line(err), err
    code, err = run_cli(capsys, "train", TINY, "--out", tmp_path / "run", "--set",
                        f"data.source={source}", *QUICK)
    assert code == 2 and expect in one_error_line(err), err
    assert tree_hash(tmp_path) == before  # no run directory was left behind


def test_unreachable_hub_fails_at_once_without_offline_mode(tmp_path, capsys, monkeypatch):
    from jaxmaml.data import sources

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(sources, "hub_reachable", lambda timeout=3.0: False)
    code, err = run_cli(capsys, "data", TINY, "--set", "data.source=mydata")
    line = one_error_line(err)
    assert code == 2 and "hub cannot be reached" in line and ".parquet" in line


def test_invalid_flags_fail_before_loading_anything(runs, capsys, monkeypatch):
    import jaxmaml.run.evaluate as evaluate

    monkeypatch.setattr(evaluate, "initial_encoder",
                        lambda cfg: pytest.fail("loaded the model before checking flags"))
    for argv, expect in ((["--methods", "centroid"], "unknown method 'centroid'"),
                         (["--checkpoint", "newest"], "'newest': use best, latest, init")):
        code, err = run_cli(capsys, "eval", runs / "a", *argv)
        assert code == 2 and expect in err


# ------------------------------------------------------------------ checks before training
def test_impossible_eval_settings_fail_before_training(tmp_path, capsys):
    code, err = run_cli(capsys, "train", TINY, "--out", tmp_path / "run", *QUICK,
                        "--set", "eval.settings=[[2,1,400]]")
    assert code == 2 and "eval.settings (2, 1, 400)" in one_error_line(err)
    assert not (tmp_path / "run").exists()


def test_tokenizer_larger_than_the_model_vocabulary(tmp_path, capsys):
    code, err = run_cli(capsys, "data", TINY, "--set", "model.vocab_size=20")
    assert code == 2 and "vocab_size >=" in one_error_line(err)


def test_unknown_token_rate_is_reported_and_warned(tmp_path, capsys):
    odd = tmp_path / "odd.csv"  # words the tiny word-level vocabulary does not have
    rows = [f"zork{i} quux{i} blorp,{c}" for c in "abcdefgh" for i in range(25)]
    odd.write_text("text,label\n" + "\n".join(rows) + "\n")
    capsys.readouterr()
    assert main(["data", str(TINY), "--json", "--set", f"data.source={odd}"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["unknown_token_rate"] == pytest.approx(1.0)
    assert main(["data", str(TINY), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["unknown_token_rate"] < 0.05
    code, err = run_cli(capsys, "train", TINY, "--out", tmp_path / "run", "--no-progress",
                        "--set", f"data.source={odd}", *QUICK)
    assert code == 0 and "100% of the text tokens" in err and "are [UNK]" in err


# ------------------------------------------------------------------ interruption, divergence
def test_ctrl_c_is_one_line_and_the_rerun_resumes(tmp_path, capsys, monkeypatch):
    """A real SIGINT while step 3 is prepared: the step finishes, the loop stops."""
    import signal

    real, calls = parallel.put_episodes, []

    def interrupt_at_third_step(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return real(*a, **k)

    monkeypatch.setattr(parallel, "put_episodes", interrupt_at_third_step)
    # What an interactive terminal gives (a background job of a script inherits SIG_IGN).
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    run = tmp_path / "run"
    argv = ["train", TINY, "--out", run, "--no-progress", "--set", "train.steps=4",
            "--set", "train.eval_every=0", "--set", "train.save_every=2"]
    code, err = run_cli(capsys, *argv)
    assert code == 130
    assert one_error_line(err, 130) == ("interrupted at step 3 (last checkpoint: step 2); "
                                        "rerun the same command to resume.")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    signal.signal(signal.SIGINT, before)
    monkeypatch.setattr(parallel, "put_episodes", real)
    capsys.readouterr()
    assert main([str(a) for a in argv]) == 0
    assert "resuming" in capsys.readouterr().out
    with RunCheckpoints(run / "checkpoints", read_only=True) as ckpts:
        assert ckpts.latest_step() == 4


NAN = ["--set", "optim.name=sgd", "--set", "optim.warmup_steps=2", "--set", "optim.clip_norm=0",
       "--set", "train.log_every=1", "--set", "train.eval_every=0", "--set", "train.steps=6",
       "--set", "train.save_every=100"]  # lr ramps from 0 to optim.lr: 1e30 blows up at step 2


def _strict_json(line: str):
    return json.loads(line, parse_constant=lambda c: pytest.fail(f"bare {c} in metrics"))


def test_nan_advice_works_with_resume_and_metrics_stay_json(tmp_path, capsys):
    run = tmp_path / "run"
    code, err = run_cli(capsys, "train", TINY, "--out", run, "--no-progress", *NAN,
                        "--set", "optim.lr=1e30")
    line = one_error_line(err, 1)
    assert code == 1 and "No checkpoint was saved yet" in line and "--set optim.lr=" in line
    rows = [_strict_json(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["loss"] is None
    # The advice, followed: the same command with a lower optim.lr is accepted.
    code, err = run_cli(capsys, "train", TINY, "--out", run, "--no-progress", *NAN,
                        "--set", "optim.lr=1e-3")
    assert code == 0, err
    rows = [_strict_json(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6] and all(r["loss"] for r in rows)
    # Other changes are still refused, naming what may change.
    code, err = run_cli(capsys, "train", TINY, "--out", run, "--no-progress", *NAN,
                        "--set", "optim.lr=1e-3", "--set", "meta.inner_lr=0.5")
    assert code == 2 and "meta.inner_lr: 0.1 -> 0.5" in one_error_line(err)
    assert "(only optim.final_lr_fraction, optim.lr, optim.weight_decay may change)" in err


def test_best_checkpoint_is_saved_when_meta_val_improves(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(TINY), "--out", str(run), "--no-progress", "--set",
                 "train.steps=9", "--set", "train.eval_every=1", "--set", "train.save_every=9",
                 "--set", "train.keep=1"]) == 0
    vals = [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
            if "val_accuracy" in r]
    best = max(vals, key=lambda r: (r["val_accuracy"], -r["step"]))
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["best_val_accuracy"] == best["val_accuracy"]
    with RunCheckpoints(run / "checkpoints", read_only=True) as ckpts:
        assert ckpts.best_value() == best["val_accuracy"]  # was the last save step's only
        assert best["step"] in ckpts.all_steps() or vals[-1] == best


def test_write_file_atomically_keeps_the_old_file_on_failure_and_leaves_no_temp(tmp_path):
    from jaxmaml.atomic_file import write_file_atomically
    out = tmp_path / "new_dir" / "table.csv"
    write_file_atomically(out, lambda f: f.write("a,b\r\n1,2\n"), text=True)
    assert out.read_bytes() == b"a,b\r\n1,2\n"  # newlines as written
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # what open() gives, not 0o600

    def fails_half_way(f):
        f.write(b"half a file")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_file_atomically(out, fails_half_way)
    assert out.read_bytes() == b"a,b\r\n1,2\n"
    assert [p.name for p in out.parent.iterdir()] == ["table.csv"]
