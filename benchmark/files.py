"""Atomic file writes: a reader sees the old file or the whole new one, never a half-written one.

Every result PoseBench writes (run records, predictions, leaderboards, galleries, checkpoints it
converts) goes through ``atomic_write``: a temp file in the same directory, then ``os.replace``. The
temp file gets the mode ``open()`` would give a new file, so results are as readable as other files.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO


def open_mode() -> int:
    """The mode ``open()`` gives a new file, ``0o666 & ~umask`` (``mkstemp`` makes 0600)."""
    umask = os.umask(0o022)  # reading the umask means setting it; restored at once
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: Path | str, write: Callable[[IO[bytes]], object]) -> Path:
    """Call ``write(binary_file)`` on a temp file beside ``path``, then rename it over ``path``; returns ``path``.

    Parent directories are created. On any exception the temp file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, open_mode())
        with os.fdopen(fd, "wb") as stream:
            write(stream)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: Path | str, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda stream: stream.write(data))


def atomic_write_text(path: Path | str, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))
