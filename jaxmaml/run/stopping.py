"""How a training run stops early: Ctrl-C (a stop request checked once per step) and a
diverged meta-loss, each with a message that says how to resume."""

from __future__ import annotations

from typing import Any


class TrainingDiverged(RuntimeError):
    """The meta-loss (or the params about to be saved) became NaN or infinite."""


class StopRequest:
    """While active, the first Ctrl-C (SIGINT) only asks the loop to stop at the next step.

    A KeyboardInterrupt raised at an arbitrary point can land in a callback whose
    exceptions Python ignores (jax's garbage-collection hook, seen here: the run went on),
    or in the middle of a checkpoint save. A flag checked once per step stops cleanly. A
    second Ctrl-C restores the default behaviour and interrupts at once.
    """

    def __init__(self):
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame):
        import signal

        self.requested = True
        signal.signal(signal.SIGINT, self._previous or signal.default_int_handler)

    def __enter__(self) -> "StopRequest":
        import signal
        import threading

        # Only in the main thread (signal.signal's rule), and never where SIGINT is ignored
        # on purpose (nohup, a background job of a non-interactive shell).
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN):
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        import signal

        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


class TrainingInterrupted(RuntimeError):
    """Ctrl-C (KeyboardInterrupt) during training; checkpoints up to ``last_saved`` are intact."""

    def __init__(self, step: int, last_saved: int | None):
        self.step, self.last_saved = step, last_saved
        saved = (f"last checkpoint: step {last_saved}" if last_saved is not None
                 else "no checkpoint saved yet")
        super().__init__(f"interrupted at step {step} ({saved}); rerun the same command "
                         "to resume.")


def diverged(what: str, ckpts: Any) -> TrainingDiverged:
    """``what`` went NaN/inf: say where the run can resume from (``ckpts``: the run's
    :class:`~jaxmaml.run.checkpoint.RunCheckpoints`) and how."""
    latest = ckpts.latest_step()
    where = (f"The last good checkpoint (step {latest}) in {ckpts.directory} is intact; rerun "
             "with a lower learning rate to resume from it" if latest is not None else
             "No checkpoint was saved yet; rerun with a lower learning rate to start over")
    return TrainingDiverged(
        f"{what}; stopping. {where}, e.g. "
        "the same command with --set optim.lr=<lower> (optim.lr may change on resume), or "
        "change meta.inner_lr or optim.clip_norm in a new --out RUN_DIR.")
