"""One home for writing a file atomically: a temp file beside it, then a rename.

Readers (concurrent runs, a crash half-way) see the old file or the whole new one, never
part of one, and a failed write leaves nothing behind.
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable


def write_file_atomically(out: str | os.PathLike, write: Callable[[Any], None],
                          text: bool = False) -> Path:
    """Call ``write(f)`` on a temp file in ``out``'s folder (created if missing), then
    rename it to ``out``. ``f`` is binary, or text (UTF-8, newlines as written) with
    ``text=True``. The file gets the permissions ``open()`` would give (``0o666`` less the
    umask), not ``mkstemp``'s ``0o600``. On any error the temp file is removed."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        opts = {"mode": "w", "encoding": "utf-8", "newline": ""} if text else {"mode": "wb"}
        with os.fdopen(fd, **opts) as f:
            write(f)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


def write_json_gz_atomically(out: str | os.PathLike, payload: Any) -> Path:
    """``payload`` as compact UTF-8 JSON, gzipped without a time stamp (the same payload
    gives the same bytes: bundled snapshots diff cleanly), written atomically."""
    data = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()

    def write(raw):
        with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
            f.write(data)

    return write_file_atomically(out, write)


def write_json_atomically(out: str | os.PathLike, obj: Any) -> Path:
    """``obj`` as indented JSON (a trailing newline), written atomically."""
    text = json.dumps(obj, indent=2) + "\n"
    return write_file_atomically(out, lambda f: f.write(text), text=True)
