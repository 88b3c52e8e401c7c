"""Run checkpoints: an Orbax ``CheckpointManager`` over ``RUN_DIR/checkpoints``.

Each step directory holds three items: ``state`` (the :class:`~jaxmaml.types.MetaState`
pytree, sharded arrays as-is), ``config`` (the resolved experiment config, JSON) and
``sampler`` (the episode sampler's ``state_dict``, JSON). Retention keeps the last ``keep``
steps plus the best one by meta-val accuracy (the ``val_accuracy`` metric passed to
:meth:`RunCheckpoints.save`).

Orbax writes a step into a temporary directory and renames it when complete, so a process
killed mid-save leaves no half-written step behind. A step that is present but unreadable
(e.g. a truncated file) is reported, moved aside to ``RUN_DIR/corrupt_checkpoints/`` and the
previous step is used instead (:meth:`RunCheckpoints.restore` with ``fallback=True``).
"""

from __future__ import annotations

import logging
import re
import shutil
import sys
from pathlib import Path
from typing import Any, NamedTuple

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp

log = logging.getLogger(__name__)

BEST_METRIC = "val_accuracy"


class CheckpointError(RuntimeError):
    """No usable checkpoint where one was asked for."""


class CheckpointWriteError(CheckpointError):
    """A checkpoint could not be written (disk full, file-size limit, permission)."""


TMP_MARKER = ".orbax-checkpoint-tmp"
# TensorStore reports the OS error inside its message: "...: File too large [os_error_code='27']"
_OS_ERROR = re.compile(r"([A-Za-z][A-Za-z ,'-]*?) \[os_error_code='(\d+)'\]")


def _os_reason(e: BaseException) -> str:
    """The OS error behind a failed write (``File too large (errno 27)``), else its first
    line."""
    seen, todo = set(), [e]
    while todo:
        x = todo.pop(0)
        if x is None or id(x) in seen:
            continue
        seen.add(id(x))
        if isinstance(x, OSError) and x.strerror:
            return f"{x.strerror} (errno {x.errno})"
        if m := _OS_ERROR.search(str(x)):
            return f"{m.group(1).strip()} (errno {m.group(2)})"
        todo += [x.__cause__, x.__context__]
    return _first_line(e)


def _quiet_closed_loop(previous):
    """An unraisable-exception hook that drops TensorStore's late write callbacks into the
    closed event loop of a failed Orbax save (one traceback per array), passing all else on."""

    def hook(unraisable) -> None:
        if not (isinstance(unraisable.exc_value, RuntimeError)
                and str(unraisable.exc_value) == "Event loop is closed"):
            previous(unraisable)

    return hook


class _DropOrbaxErrors(logging.Filter):
    """Orbax logs each background write failure with a traceback per thread (dozens); the
    failure is raised as one :class:`CheckpointWriteError` instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno >= logging.ERROR and "orbax" in record.pathname)


class Restored(NamedTuple):
    """What :meth:`RunCheckpoints.restore` returns."""

    step: int
    state: Any
    config: dict
    sampler: dict


def _first_line(e: BaseException, limit: int = 200) -> str:
    """``Type: first line of the message`` (TensorStore errors run to dozens of lines)."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text[:limit]}"


def _best_metric(metrics: dict) -> float:
    return float(metrics[BEST_METRIC])


class RunCheckpoints:
    """Save and restore a run's checkpoints.

    Args:
      directory: ``RUN_DIR/checkpoints`` (created if missing unless ``read_only``).
      keep: how many of the most recent steps to keep (the best by ``val_accuracy`` is kept
        in addition).
      async_save: write in a background thread (device-to-host copies still happen before
        :meth:`save` returns, so the caller may donate the state right after).
      read_only: open for evaluation/export; never writes or deletes.
    """

    def __init__(self, directory: str | Path, keep: int = 2, async_save: bool = True,
                 read_only: bool = False):
        self.directory = Path(directory).absolute()
        if read_only and not self.directory.is_dir():
            raise CheckpointError(f"{self.directory} does not exist: no checkpoints to read. "
                                  "Train first with `jaxmaml train CONFIG --out RUN_DIR`.")
        policy = pp.AnyPreservationPolicy([
            pp.LatestN(n=keep),
            pp.BestN(get_metric_fn=_best_metric, n=1, keep_checkpoints_without_metrics=False),
        ])
        options = ocp.CheckpointManagerOptions(
            preservation_policy=policy, best_fn=_best_metric, best_mode="max",
            enable_async_checkpointing=async_save, read_only=read_only,
            cleanup_tmp_directories=not read_only, create=not read_only)
        self._manager = ocp.CheckpointManager(self.directory, options=options,
                                              item_names=("state", "config", "sampler"))
        self._writing: int | None = None  # the step of the save in flight
        self._failed = False
        self._filter = None
        self._hook = None
        if not read_only:
            self._filter = _DropOrbaxErrors()
            logging.getLogger("absl").addFilter(self._filter)
            self._hook = sys.unraisablehook
            sys.unraisablehook = _quiet_closed_loop(self._hook)

    # ------------------------------------------------------------------ queries
    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def _scored(self) -> list[tuple[float, int]]:
        return [(m[BEST_METRIC], s) for s in self.all_steps()
                if (m := self._manager.metrics(s)) and BEST_METRIC in m]

    def best_step(self) -> int | None:
        """The step with the highest ``val_accuracy`` (``None`` if no step has one)."""
        scored = self._scored()
        return max(scored)[1] if scored else None

    def best_value(self) -> float | None:
        """The highest saved ``val_accuracy`` (``None`` if no step has one)."""
        scored = self._scored()
        return max(scored)[0] if scored else None

    def resolve(self, which: str | int) -> int:
        """``latest``, ``best`` or a step number -> an existing step."""
        steps = self.all_steps()
        if not steps:
            raise CheckpointError(f"no checkpoints in {self.directory}.")
        if which == "latest":
            return steps[-1]
        if which == "best":
            best = self.best_step()
            if best is None:
                raise CheckpointError(f"no checkpoint in {self.directory} has a meta-val "
                                      "accuracy (set train.eval_every); use --checkpoint latest.")
            return best
        try:
            step = int(which)
        except (TypeError, ValueError):
            raise CheckpointError(f"--checkpoint {which!r}: use latest, best or a step "
                                  f"number ({', '.join(map(str, steps))}).") from None
        if step not in steps:
            raise CheckpointError(f"no checkpoint at step {step} in {self.directory}; "
                                  f"available: {', '.join(map(str, steps))}.")
        return step

    # ------------------------------------------------------------------ save / restore
    def save(self, step: int, state: Any, config: dict, sampler: dict,
             val_accuracy: float | None = None) -> None:
        """Write step ``step`` (``val_accuracy`` ranks it for best-checkpoint retention)."""
        metrics = None if val_accuracy is None else {BEST_METRIC: float(val_accuracy)}
        self.wait()  # the previous save's failure is reported as its own step
        self._writing = step
        try:
            self._manager.save(step, args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), config=ocp.args.JsonSave(config),
                sampler=ocp.args.JsonSave(sampler)), metrics=metrics, force=True)
        except Exception as e:  # noqa: BLE001 -- a synchronous part of the write failed
            raise self._write_failed(e) from e

    def check(self) -> None:
        """Raise :class:`CheckpointWriteError` if a background save has failed (cheap: call
        it every few steps, so a failed write stops training at once)."""
        if self._failed or self._writing is None or self._save_in_flight():
            return
        self.wait()  # the save has ended: returns at once, or raises its error

    def _save_in_flight(self) -> bool:
        """Whether Orbax's background save thread is still running (never blocks)."""
        ref = getattr(self._manager, "_finalize_thread", None)
        if ref is None:  # another Orbax version: no cheap way to tell, wait at the next save
            return True
        return bool(ref.map(lambda t: t is not None and t.is_alive()))

    def _write_failed(self, e: BaseException) -> CheckpointWriteError:
        """One line naming the step, its path and the OS error; the step's temporary
        directory removed (earlier steps are untouched)."""
        self._failed = True
        step = self._writing
        self._remove_tmp_dirs()
        done = [s for s in self.all_steps() if s != step]
        kept = (f"the last complete checkpoint (step {done[-1]}) is intact and `jaxmaml "
                "train` resumes from it" if done else "no earlier checkpoint exists")
        return CheckpointWriteError(
            f"could not write checkpoint step {step} to {self.directory / str(step)}: "
            f"{_os_reason(e)}; training stopped, {kept}. Free disk space (or raise the "
            "file-size limit, or fix the permissions) and rerun.")

    def _remove_tmp_dirs(self) -> None:
        """Orbax's temporary step directories (``<step>.orbax-checkpoint-tmp*``)."""
        if jax.process_index() != 0 or not self.directory.is_dir():
            return
        for p in self.directory.iterdir():
            if TMP_MARKER in p.name:
                shutil.rmtree(p, ignore_errors=True)

    def _restore_step(self, step: int, abstract_state: Any) -> Restored:
        out = self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), config=ocp.args.JsonRestore(),
            sampler=ocp.args.JsonRestore()))
        return Restored(step, out["state"], dict(out["config"]), dict(out["sampler"]))

    def read_config(self, step: int) -> dict:
        """The experiment config (as saved) of ``step``."""
        out = self._manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
        return dict(out["config"])

    def restore(self, abstract_state: Any, which: str | int = "latest",
                fallback: bool = False) -> Restored:
        """Restore a step into the structure/shardings of ``abstract_state``.

        ``abstract_state``: a pytree of ``jax.ShapeDtypeStruct`` with ``sharding`` set (the
        shapes of a fresh state). With ``fallback=True`` (resuming a run), an unreadable
        latest step is moved to ``RUN_DIR/corrupt_checkpoints/<step>`` with a warning and the
        previous step is tried, and so on.
        """
        step = self.resolve(which)
        while True:
            try:
                return self._restore_step(step, abstract_state)
            except Exception as e:  # noqa: BLE001 -- any read failure means corrupt
                where = self.directory / str(step)
                if not fallback:
                    raise CheckpointError(
                        f"checkpoint {where} is unreadable ({_first_line(e)}). "
                        "Pick another step with --checkpoint (available: "
                        f"{', '.join(map(str, self.all_steps()))}).") from e
                earlier = [s for s in self.all_steps() if s < step]
                aside = self.directory.parent / "corrupt_checkpoints" / str(step)
                msg = (f"checkpoint {where} is corrupt or incomplete "
                       f"({_first_line(e)}); moved it to {aside}")
                self._quarantine(step, aside)
                if not earlier:
                    raise CheckpointError(msg + "; no earlier checkpoint to fall back to. "
                                          "Delete the run directory to start over.") from e
                log.warning("%s; falling back to step %d.", msg, earlier[-1])
                print(f"warning: {msg}; falling back to step {earlier[-1]}.", flush=True)
                step = earlier[-1]

    def _quarantine(self, step: int, aside: Path) -> None:
        if jax.process_index() == 0:
            aside.parent.mkdir(parents=True, exist_ok=True)
            if aside.exists():
                shutil.rmtree(aside)
            shutil.move(str(self.directory / str(step)), str(aside))
        self._manager.reload()

    def wait(self) -> None:
        """Block until background saves are committed (raises
        :class:`CheckpointWriteError` if one failed)."""
        if self._failed:
            return self._close_after_failure()
        try:
            self._manager.wait_until_finished()
        except Exception as e:  # noqa: BLE001 -- any error of a background write
            raise self._write_failed(e) from e
        self._writing = None

    def _close_after_failure(self) -> None:
        """Join the background threads of a failed save; their errors were reported."""
        try:
            self._manager.wait_until_finished()
        except Exception:  # noqa: BLE001 -- already raised as CheckpointWriteError
            pass
        self._remove_tmp_dirs()

    def close(self) -> None:
        try:
            if self._failed:
                self._close_after_failure()
            self._manager.close()
        except Exception as e:  # noqa: BLE001
            if not self._failed:
                raise self._write_failed(e) from e
        finally:
            if self._filter is not None:
                logging.getLogger("absl").removeFilter(self._filter)
                self._filter = None
            if self._hook is not None and not self._failed:  # late callbacks of a failed
                sys.unraisablehook = self._hook  # save may come after close: keep it then
                self._hook = None

    def __enter__(self) -> "RunCheckpoints":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

