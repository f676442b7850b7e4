"""Durable file writes (blocking: call from a worker thread)."""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path


def fsync_dir(directory: Path) -> None:
    """Flush a folder's entries (a new, renamed or deleted file) to the disk."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(
    path: Path,
    data: bytes | Callable[[BinaryIO], None],
    *,
    tmp: Path | None = None,
    mode: int = 0o666,
) -> int:
    """Replace ``path`` with ``data`` (bytes, or a callback writing to the open file) so
    that a crash at any point leaves the old file or the new one, never a mix.

    Written to ``tmp`` (default ``.<name>.tmp`` beside it), flushed and fsync'ed, then
    ``os.replace``d onto ``path``, then the folder is fsync'ed (the rename itself is
    durable). The folder is created if missing; the temporary file is removed when
    anything fails; ``mode``: the new file's permissions (less the umask; 0o600 for a
    secret: never readable by others, not even for a moment). Returns the size written."""
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    if tmp is None:
        tmp = path.with_name(f".{path.name}.tmp")
    # a temporary file left by a crash keeps its old mode: made anew, it gets ``mode``
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), "wb") as out:
            if isinstance(data, bytes):
                out.write(data)
            else:
                data(out)
            out.flush()
            os.fsync(out.fileno())
            size = out.tell()
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(directory)
    return size
