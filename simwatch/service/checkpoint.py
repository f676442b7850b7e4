"""Checkpoints: the daemon's whole state in one atomic snapshot file, restored at start.

What is saved (``capture``): the engine (``Engine.export_state``: per-SIM columns,
ICCID index, rhythm model, leaf registry, group baselines, incident tracker with its id
counter and pending candidates, dedup memory, counters), the daemon's evaluation clock
(watermark and next boundary) and each resumable source's *applied* cursor. It is taken
synchronously on the event loop between two batches, so all parts describe the same
instant; the copy is a few tens of milliseconds per million SIMs (numpy memcpy).

The file (``write_file``, in a worker thread): ``<state_dir>/checkpoint.tmp`` is written
as an uncompressed ``.npz`` (a zip of ``.npy`` arrays; every member carries a CRC-32)
with one extra member ``header``: the JSON metadata (format name, version, time,
interned value tables, incidents, cursors...). The file is flushed and fsync'ed, then
``os.replace``d onto ``<state_dir>/checkpoint.npz`` and the directory is fsync'ed. A
crash at any point leaves either the previous checkpoint or the new one, never a mix; a
stale ``checkpoint.tmp`` is ignored and overwritten.

Reading (``read_file``) uses ``np.load(allow_pickle=False)`` and reads every member (so
each CRC is checked). A file that is unreadable, corrupt, of another format version or
that does not fit the configuration (other ``engine.dims``) is logged, renamed to
``checkpoint.bad-<UTC time>.npz`` and the daemon starts fresh instead of crash-looping.
docs/persistence.md is the operator's description.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import math
import threading
import time
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

import numpy as np
import orjson

from simwatch import __version__
from simwatch.shell.files import write_atomically
from simwatch.shell.health import CheckpointStats
from simwatch.shell.logs import FailureLog

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

    from simwatch.core.engine import Engine

__all__ = [
    "FILE_NAME",
    "FORMAT",
    "TMP_NAME",
    "VERSION",
    "CheckpointError",
    "CheckpointStats",
    "Checkpointer",
    "Snapshot",
    "capture",
    "read_file",
    "release_free_memory",
    "restore_engine",
    "set_aside",
    "write_file",
]

log = logging.getLogger("simwatch")

FORMAT: Final = "simwatch-checkpoint"
VERSION: Final = 1
FILE_NAME: Final = "checkpoint.npz"
TMP_NAME: Final = "checkpoint.tmp"
_HEADER: Final = "header"  # the npz member holding the JSON metadata (uint8 bytes)
# np.savez, typed loosely: its stubs read **arrays as its own keyword arguments.
_savez: Callable[..., None] = np.savez


class CheckpointError(Exception):
    """A checkpoint that cannot be used (unreadable, corrupt, incompatible)."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A consistent copy of the state: JSON-able ``header`` and numpy ``arrays``."""

    header: dict[str, object]
    arrays: dict[str, np.ndarray]

    @property
    def written_at(self) -> float | None:
        value = self.header.get("written_at")
        return float(value) if isinstance(value, int | float) else None

    @property
    def daemon(self) -> Mapping[str, object]:
        value = self.header.get("daemon")
        return value if isinstance(value, dict) else {}

    @property
    def sources(self) -> Mapping[str, object]:
        value = self.header.get("sources")
        return value if isinstance(value, dict) else {}

    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays.values())

    def release(self) -> None:
        """Drop the copied arrays (the header stays): once written they are
        only memory, the largest block the daemon allocates and frees (~166 MB at 1M
        SIMs)."""
        self.arrays.clear()


def json_float(value: float | None) -> float | str | None:
    """A float JSON can carry (non-finite as its name, like ``"-inf"``)."""
    if value is None or math.isfinite(value):
        return value
    return str(value)


def float_of(value: object, default: float) -> float:
    """The float ``json_float`` wrote, or ``default`` when absent or malformed."""
    if isinstance(value, bool) or value is None:
        return default
    if isinstance(value, int | float | str):
        try:
            return float(value)
        except ValueError:
            return default
    return default


def capture(
    engine: Engine,
    *,
    at: float,
    daemon: Mapping[str, object] | None = None,
    sources: Mapping[str, object] | None = None,
) -> Snapshot:
    """Copy the engine's state now (synchronous; call between two batches)."""
    arrays, meta = engine.export_state()
    header: dict[str, object] = {
        "format": FORMAT,
        "version": VERSION,
        "simwatch": __version__,
        "written_at": at,
        "engine": meta,
        "daemon": dict(daemon or {}),
        "sources": dict(sources or {}),
    }
    return Snapshot(header, arrays)


def restore_engine(engine: Engine, snapshot: Snapshot) -> None:
    """Load the snapshot into a fresh engine; ``CheckpointError`` when it does not fit."""
    meta = snapshot.header.get("engine")
    if not isinstance(meta, dict):
        raise CheckpointError("the checkpoint has no engine section")
    try:
        engine.restore_state(snapshot.arrays, meta)
    except KeyError as exc:
        raise CheckpointError(f"the checkpoint lacks the array {exc}") from exc
    except (ValueError, TypeError, OverflowError) as exc:
        raise CheckpointError(str(exc)) from exc


# ---- the file (blocking: run these in a worker thread) -------------------------------


def write_file(directory: Path, snapshot: Snapshot) -> int:
    """Write the snapshot atomically as ``directory/checkpoint.npz``; returns its size."""
    header = np.frombuffer(orjson.dumps(snapshot.header), dtype=np.uint8)
    members: dict[str, np.ndarray] = {_HEADER: header, **snapshot.arrays}
    return write_atomically(
        directory / FILE_NAME, lambda out: _savez(out, **members), tmp=directory / TMP_NAME
    )


def read_file(directory: Path) -> Snapshot | None:
    """The checkpoint in ``directory`` (None when there is none); ``CheckpointError``
    when it is unreadable, corrupt or of another format or version."""
    path = directory / FILE_NAME
    try:
        # Our own handle: np.load leaks the file it opened when the zip is torn.
        with path.open("rb") as fh, np.load(fh, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}  # reads all: checks every CRC
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, EOFError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"{path} is unreadable: {exc}") from exc
    raw = arrays.pop(_HEADER, None)
    if raw is None or raw.dtype != np.uint8:
        raise CheckpointError(f"{path} has no header: not a simwatch checkpoint")
    try:
        header = orjson.loads(raw.tobytes())
    except orjson.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: unreadable header: {exc}") from exc
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a simwatch checkpoint")
    if header.get("version") != VERSION:
        raise CheckpointError(
            f"{path} has format version {header.get('version')!r}; this simwatch reads {VERSION}"
        )
    return Snapshot(header, arrays)


def set_aside(directory: Path, at: float) -> Path | None:
    """Rename an unusable checkpoint to ``checkpoint.bad-<UTC time>.npz`` (kept for a
    post-mortem; nothing deletes it). Returns the new path, None when there was none."""
    path = directory / FILE_NAME
    stamp = datetime.fromtimestamp(at, tz=UTC).strftime("%Y%m%dT%H%M%SZ")
    target = directory / f"checkpoint.bad-{stamp}.npz"
    try:
        path.replace(target)
    except FileNotFoundError:
        return None
    return target


# ---- memory ---------------------------------------------------------------------------


def _find_malloc_trim() -> Callable[[int], int] | None:
    try:
        trim: Callable[[int], int] = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to hand back
        return None
    return trim


_malloc_trim = _find_malloc_trim()


def release_free_memory() -> float:
    """Hand the free pages of the C heap back to the OS (glibc's ``malloc_trim(0)``);
    the seconds it took (0.0 without glibc).

    glibc's ``free`` returns memory only from the top of a heap: a big block freed below
    live ones (a snapshot's arrays, allocated between evaluations) stays resident,
    reused later wherever it fits. Copy after copy the resident set creeps up although
    nothing is live (docs/performance.md, "Soak"). ``malloc_trim`` gives back the free
    pages of every heap; what is in use is untouched. It locks one allocator arena at a
    time, for a few milliseconds to a few tens of milliseconds at 1M SIMs.
    """
    if _malloc_trim is None:
        return 0.0
    began = time.perf_counter()
    _malloc_trim(0)
    return time.perf_counter() - began


# ---- the daemon's side ---------------------------------------------------------------


class Checkpointer:
    """Writes snapshots to ``directory`` in a worker thread and keeps ``stats``.

    One write at a time (a thread lock: a write whose task was cancelled at shutdown
    still finishes before the final one starts). A failure is logged when it starts and
    once on recovery.
    """

    def __init__(self, directory: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.directory = directory
        self.clock = clock
        self.stats = CheckpointStats()
        self._write_lock = threading.Lock()
        self._failure = FailureLog(log, "checkpoint", clock=clock)

    def _write(self, snapshot: Snapshot) -> tuple[int, float]:
        with self._write_lock:
            started = time.perf_counter()
            try:
                size = write_file(self.directory, snapshot)
                return size, time.perf_counter() - started
            finally:
                snapshot.release()
                self.stats.last_release_s = release_free_memory()

    async def save(self, snapshot: Snapshot, copy_s: float = 0.0) -> bool:
        """Write ``snapshot``; True when it is on disk. Written or not, the snapshot's
        arrays are released afterwards (only ``header`` stays) and the freed memory is
        handed back to the OS (``release_free_memory``): without that the resident set
        grows from one checkpoint to the next."""
        stats = self.stats
        try:
            size, write_s = await asyncio.to_thread(self._write, snapshot)
        except OSError as exc:
            self.failed(f"cannot write {self.directory / FILE_NAME}: {exc.strerror or exc}")
            return False
        stats.successes += 1
        stats.last_success = self.clock()
        stats.last_copy_s = copy_s
        stats.last_write_s = write_s
        stats.last_duration_s = copy_s + write_s
        stats.size_bytes = size
        if stats.failing is not None:
            self._failure.recovered(f"written again ({self.directory / FILE_NAME})")
            stats.failing = None
        return True

    def failed(self, message: str) -> None:
        """Count a failed checkpoint; log it only when failures start."""
        self.stats.failures += 1
        self._failure.failed(
            "failed",
            detail=message,
            hint="the previous checkpoint stays (retrying)",
            level=logging.ERROR,
        )
        self.stats.failing = message

    async def load(self) -> Snapshot | None:
        """The checkpoint to restore, or None (none yet, or unusable: then set aside)."""
        try:
            return await asyncio.to_thread(read_file, self.directory)
        except CheckpointError as exc:
            await self.reject(str(exc))
            return None

    async def reject(self, why: str) -> None:
        """Set an unusable checkpoint aside and say so (the daemon then starts fresh)."""
        try:
            moved = await asyncio.to_thread(set_aside, self.directory, self.clock())
        except OSError as exc:
            log.error(  # noqa: TRY400 - the reason is the message; no traceback wanted
                "checkpoint unusable (%s) and cannot be moved aside: %s", why, exc
            )
            return
        log.error("checkpoint unusable, starting with an empty state: %s (moved to %s)", why, moved)
