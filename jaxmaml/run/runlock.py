"""An exclusive lock on a run directory, so two ``jaxmaml train`` never write one run.

The lock is an ``fcntl.flock`` on ``RUN_DIR/.lock``, whose text is the holder's pid and
host. The kernel drops the lock when its process dies (killed, crashed, powered off), so a
stale lock file from a dead run never blocks the next one: the next ``train`` takes it over.
"""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

from jaxmaml.run.config import ConfigError

LOCK_FILE = ".lock"


class RunDirLocked(ConfigError):
    """Another live process holds the run directory's lock."""


class RunLock:
    """Hold ``run_dir``'s lock for the duration of a ``with`` block.

    Raises :class:`RunDirLocked` (a one-line, actionable message naming the holder's pid)
    when another process holds it. Creates ``run_dir`` if needed.
    """

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunDirLocked(
                f"{self.path.parent} is in use by another `jaxmaml train` ({holder}); wait "
                "for it to finish (or stop it), or pass a new --out RUN_DIR.") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
