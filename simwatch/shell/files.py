"""Durable file writes (blocking: call from a worker thread)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path


def fsync_dir(directory: Path) -> None:
    """Flush a folder's entries (a new, renamed or deleted file) to the disk."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
