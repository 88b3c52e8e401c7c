"""Output-path checks run before any model loads: an output never replaces an input, and
a path that cannot be written is a one-line :class:`ConfigError`, not a failure after the
work is done.

- :func:`check_output_file`: ``--out`` of ``jaxmaml predict`` (a file).
- :func:`check_output_dir`: ``OUT_DIR`` of ``jaxmaml export`` (a directory written whole).
- :func:`created_dirs` / :func:`remove_created_dirs`: the folders a command is about to
  create, so a failed start can remove exactly those (and none that existed before).
"""

from __future__ import annotations

import os
from pathlib import Path

from jaxmaml.run.config import ConfigError


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file (resolved paths, symlinks and hard links)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist
        return False


def _existing_ancestor(path: Path) -> Path:
    """The nearest existing folder at or above ``path``'s parent."""
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    return parent


def _check_writable_parent(path: Path, flag: str) -> None:
    """``path``'s folder exists (or can be created) and this user may write in it."""
    parent = _existing_ancestor(path)
    if not parent.is_dir():
        raise ConfigError(f"{flag} {path}: {parent} is a file, not a folder; pick a path in "
                          "a folder.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {path}: cannot write in {parent} (permission denied); "
                          "pick a folder you can write to.")


def check_output_file(out: str | Path, inputs: dict[str, str | Path], flag: str = "--out"
                      ) -> Path:
    """Refuse an output file that is one of ``inputs`` (``{"--support": path, ...}``), an
    existing folder, or in a place this user cannot write. Raises :class:`ConfigError`."""
    out = Path(out)
    for name, path in inputs.items():
        if path is not None and _same_file(out, Path(path)):
            raise ConfigError(f"{flag} {out} is the {name} file {path}: writing it would "
                              f"replace your input; pick another {flag} path.")
    if out.is_dir():
        raise ConfigError(f"{flag} {out} is a folder; pass a file path such as "
                          f"{out / 'predictions.csv'}.")
    if out.exists() and not os.access(out, os.W_OK):
        raise ConfigError(f"{flag} {out} exists and is not writable; pick another path.")
    _check_writable_parent(out, flag)
    return out


def check_output_dir(out_dir: str | Path, flag: str = "OUT_DIR") -> Path:
    """Refuse an output folder (written whole, via a sibling temp folder) whose parent this
    user cannot write. Raises :class:`ConfigError`."""
    out_dir = Path(out_dir)
    _check_writable_parent(out_dir, flag)
    return out_dir


def created_dirs(path: str | Path) -> list[Path]:
    """The folders that creating ``path`` (a folder) would create, deepest first."""
    path = Path(path).absolute()
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    return missing


def remove_created_dirs(missing: list[Path], keep: frozenset[str] = frozenset()) -> None:
    """Remove each folder of ``missing`` (deepest first, from :func:`created_dirs`) that
    holds nothing but names in ``keep``; stop at the first that holds anything else."""
    for d in missing:
        if not d.is_dir():
            continue
        entries = list(d.iterdir())
        if any(p.name not in keep or p.is_dir() for p in entries):
            return
        for p in entries:
            p.unlink()
        d.rmdir()


class OutputWriteError(ConfigError):
    """Writing an output failed (disk full, file-size limit, permission): one line."""


def write_error(e: OSError, what: str, path: str | Path) -> OutputWriteError:
    """``OutputWriteError`` naming ``what`` was written, ``path`` and the OS error."""
    text = str(e).strip()
    reason = e.strerror or (text.splitlines()[0] if text else type(e).__name__)
    return OutputWriteError(f"could not write {what} {path}: {reason} "
                            f"({type(e).__name__}); nothing was replaced. Free space or "
                            "pick another path, then rerun.")
