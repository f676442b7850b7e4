"""The ``file`` source: follows an NDJSON file, or a folder of them, like ``tail -F``.

Files are known by their identity (device and inode), not their name: a file renamed
within the folder keeps its offset, a file renamed away (or replaced at the watched path)
is read to its end before it is let go, and a file that shrank was truncated and is read
again from the start. The source holds each followed file open, so a rotated file stays
readable and its inode cannot be reused while it is followed.

Only complete lines are handed over: a partial last line waits for its newline (a file
that was rotated away is finished, so its unterminated last line goes out as it is).
Offsets are committed to ``state_file`` only from ``Batch.on_applied``, i.e. after ingest
applied the lines, so a restart neither loses nor repeats lines. Every bit of file I/O
runs in a worker thread (``asyncio.to_thread``), serialised by one lock.

Checkpoints (``Resumable``): ``cursor()`` is the committed (applied) offsets in the state
file's shape; when the daemon restores a checkpoint it calls ``restore(cursor)`` before
``run`` and those offsets win over ``state_file``, which may be ahead of the checkpoint
after a crash (its lines were applied to a state the crash lost).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO, Final

import orjson

from simwatch.shell.files import write_atomically
from simwatch.shell.logs import FailureLog
from simwatch.shell.source_contract import Batch, SourceStats

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

    from simwatch.shell.settings import FileSourceSettings
    from simwatch.shell.source_contract import Sink

__all__ = ["BATCH_LINES", "FileSource"]

log = logging.getLogger(__name__)

BATCH_LINES: Final = 5000  # lines per Batch at most
READ_BYTES: Final = 4 << 20  # bytes read from one file at a time
HEAD_BYTES: Final = 64  # a file's first bytes, hashed: tells a reused inode from the file
_TAIL_BYTES: Final = 1 << 16  # looked back from the end for start_at="end"
_STATE_VERSION: Final = 1

FileKey = tuple[int, int]  # (st_dev, st_ino)


def _head_hash(head: bytes) -> str:
    return hashlib.blake2b(head, digest_size=8).hexdigest()


@dataclass(slots=True)
class _Followed:
    """A file being followed (touched only in the worker thread)."""

    key: FileKey
    path: Path
    handle: BinaryIO
    offset: int  # the next byte to read: always the start of a line
    head: bytes = b""
    retiring: bool = False  # renamed away or replaced: read to the end, then let go


@dataclass(frozen=True, slots=True)
class _Saved:
    """A committed offset (the state file's entry for one file)."""

    path: str
    offset: int
    head_len: int
    head_hash: str

    def to_json(self, key: FileKey) -> dict[str, object]:
        return {
            "dev": key[0],
            "inode": key[1],
            "path": self.path,
            "offset": self.offset,
            "head_len": self.head_len,
            "head_hash": self.head_hash,
        }


@dataclass(frozen=True, slots=True)
class _Segment:
    """Complete lines read from one file, up to ``end`` (the offset to commit)."""

    key: FileKey
    lines: list[bytes]
    saved: _Saved
    final: bool  # the file is let go after these lines


@dataclass(slots=True)
class _Step:
    segments: list[_Segment] = field(default_factory=list)
    finished: list[FileKey] = field(default_factory=list)  # let go, nothing left to commit
    more: bool = False  # some file may hold more data right now


def _split_lines(data: bytes, *, final: bool) -> tuple[list[bytes], int]:
    """Complete lines of ``data`` (at most BATCH_LINES, blank ones dropped), bytes used."""
    cut = data.rfind(b"\n")
    if cut < 0:
        if final or len(data) >= READ_BYTES:
            # A finished file's unterminated last line, or a line longer than a whole read
            # (handed over as it is: the decoder rejects it as too large).
            line = data.strip()
            return ([line] if line else []), len(data)
        return [], 0
    body = data[: cut + 1]
    parts = body.split(b"\n")
    parts.pop()  # the empty string after the last newline
    used = len(body)
    if len(parts) > BATCH_LINES:
        parts = parts[:BATCH_LINES]
        used = sum(len(p) for p in parts) + len(parts)
    elif final and cut + 1 < len(data):
        tail = data[cut + 1 :]
        if len(parts) < BATCH_LINES:
            parts.append(tail)
            used = len(data)
    lines = [stripped for p in parts if (stripped := p.strip())]
    return lines, used


class FileSource:
    """Follows ``settings.path`` (a file, or a folder of ``settings.pattern`` files)."""

    def __init__(
        self, settings: FileSourceSettings, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.settings = settings
        self.stats = SourceStats(name=settings.name, kind="file")
        self._clock = clock
        self._io_lock = threading.Lock()  # one worker-thread operation at a time
        self._followed: dict[FileKey, _Followed] = {}
        self._saved: dict[FileKey, _Saved] = {}  # from the state file, until matched
        self._committed: dict[FileKey, _Saved] = {}
        self._write_lock = asyncio.Lock()
        self._first_scan = True
        self._failure = FailureLog(log, f"file source {settings.name}")
        self._loaded = False  # offsets known (from the state file or a checkpoint)
        self._restored = False  # offsets came from a checkpoint: the state file is ignored

    # ---------------------------------------------------------------- the loop

    async def run(self, sink: Sink) -> None:
        try:
            await self._load_state()
            while True:
                await self._poll(sink)
                await asyncio.sleep(self.settings.poll_interval_s)
        finally:
            await asyncio.to_thread(self._close_all)

    async def _poll(self, sink: Sink) -> None:
        try:
            problems = await asyncio.to_thread(self._scan)
            for key in self._saved:  # offsets of files that are gone: forget them
                self._committed.pop(key, None)
            self._saved.clear()
            while True:
                step = await asyncio.to_thread(self._read_step)
                for key in step.finished:
                    self._committed.pop(key, None)
                for seg in step.segments:
                    await sink.put(
                        Batch(
                            source=self.settings.name,
                            lines=seg.lines,
                            on_applied=self._committer(seg),
                        )
                    )
                if not step.more:
                    break
        except OSError as exc:
            self._failed(_describe(exc))
            return
        if problems:
            self._failed("; ".join(problems))
            return
        self._recovered()

    def _failed(self, message: str) -> None:
        self.stats.errors += 1
        self.stats.last_error = message
        self.stats.connected = False
        self._failure.failed(message, hint="retrying")

    def _recovered(self) -> None:
        self._failure.recovered()
        self.stats.last_error = None
        self.stats.connected = True
        self.stats.last_success = self._clock()

    # ---------------------------------------------------------------- offsets

    def _committer(self, seg: _Segment) -> Callable[[], Awaitable[None]]:
        async def on_applied() -> None:
            if seg.final:
                self._committed.pop(seg.key, None)
            else:
                self._committed[seg.key] = seg.saved
            await self._write_state()

        return on_applied

    async def _write_state(self) -> None:
        path = self.settings.state_file
        if path is None:
            return
        async with self._write_lock:
            doc = {
                "version": _STATE_VERSION,
                "source": self.settings.name,
                "files": [saved.to_json(key) for key, saved in self._committed.items()],
            }
            data = orjson.dumps(doc, option=orjson.OPT_INDENT_2)
            try:
                await asyncio.to_thread(write_atomically, path, data)
            except OSError as exc:
                self._failed(f"cannot write the state file: {_describe(exc)}")

    def cursor(self) -> object | None:
        """The applied offsets (the state file's document); None before they are known."""
        if not self._loaded:
            return None
        return {
            "version": _STATE_VERSION,
            "files": [saved.to_json(key) for key, saved in self._committed.items()],
        }

    def restore(self, cursor: object) -> None:
        """Resume from a checkpoint's ``cursor()`` (before ``run``; wins over state_file)."""
        try:
            saved = _parse_state(cursor)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning(
                "file source %s: ignoring the checkpoint's unreadable offsets: %s",
                self.settings.name,
                exc,
            )
            return
        self._saved = dict(saved)
        self._committed = dict(saved)
        self._restored = True
        self._loaded = True

    async def _load_state(self) -> None:
        if self._restored:  # (again, after a crash of run: what was applied since)
            self._saved = dict(self._committed)
            return
        try:
            await self._read_state_file()
        finally:
            self._loaded = True

    async def _read_state_file(self) -> None:
        path = self.settings.state_file
        if path is None:
            return
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            return
        except OSError as exc:
            self._failed(f"cannot read the state file: {_describe(exc)}")
            return
        try:
            self._saved.update(_parse_state(orjson.loads(data)))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            log.warning(
                "file source %s: ignoring the unreadable state file %s: %s",
                self.settings.name,
                path,
                exc,
            )
            self._saved.clear()
        self._committed.update(self._saved)

    # ---------------------------------------------------------------- worker thread

    def _listing(self) -> dict[FileKey, Path]:
        """The files to follow now, by identity. Raises OSError (missing folder...)."""
        root = self.settings.path
        st = root.stat()
        if not root.is_dir():
            return {(st.st_dev, st.st_ino): root}
        found: dict[FileKey, Path] = {}
        for path in sorted(root.glob(self.settings.pattern)):
            try:
                fst = path.stat()
            except FileNotFoundError:
                continue  # gone between the listing and the stat
            if path.is_file():
                found[(fst.st_dev, fst.st_ino)] = path
        return found

    def _scan(self) -> list[str]:
        """Match the listing against the followed files; problems with single files."""
        with self._io_lock:
            single = not self.settings.path.is_dir()
            try:
                listing = self._listing()
            except FileNotFoundError:
                if single and self._followed:
                    listing = {}  # rotated away, the new file not there yet: keep following
                else:
                    raise
            for key, followed in self._followed.items():
                if key not in listing:
                    if not single or listing:
                        followed.retiring = True
                else:  # still there, maybe under a new name (or renamed back)
                    followed.retiring = False
                    followed.path = listing[key]
            problems: list[str] = []
            for key, path in listing.items():
                if key in self._followed:
                    continue
                try:
                    self._follow(key, path)
                except OSError as exc:
                    problems.append(_describe(exc))
            self._first_scan = False
            return problems

    def _follow(self, key: FileKey, path: Path) -> None:
        handle = path.open("rb")
        try:
            st = os.fstat(handle.fileno())
            if (st.st_dev, st.st_ino) != key:  # replaced between the listing and the open
                handle.close()
                return
            head = os.pread(handle.fileno(), HEAD_BYTES, 0)
            offset = 0
            saved = self._saved.pop(key, None)
            if saved is not None and _head_hash(head[: saved.head_len]) == saved.head_hash:
                offset = saved.offset if saved.offset <= st.st_size else 0
            elif self._first_scan and self.settings.start_at == "end":
                offset = _after_last_newline(handle, st.st_size)
        except BaseException:
            handle.close()
            raise
        log.info("file source %s: following %s from byte %d", self.settings.name, path, offset)
        self._followed[key] = _Followed(key, path, handle, offset, head)

    def _read_step(self) -> _Step:
        """Read up to BATCH_LINES lines of every followed file (rotated-away ones first)."""
        with self._io_lock:
            step = _Step()
            order = sorted(self._followed.values(), key=lambda f: not f.retiring)
            for followed in order:
                self._read_one(followed, step)
            return step

    def _read_one(self, followed: _Followed, step: _Step) -> None:
        handle = followed.handle
        size = os.fstat(handle.fileno()).st_size
        if size < followed.offset:
            log.warning(
                "file source %s: %s was truncated, reading it from the start",
                self.settings.name,
                followed.path,
            )
            followed.offset = 0
            followed.head = b""
        final = False
        lines: list[bytes] = []
        if size > followed.offset:
            handle.seek(followed.offset)
            data = handle.read(READ_BYTES)
            at_end = followed.offset + len(data) >= size
            lines, used = _split_lines(data, final=followed.retiring and at_end)
            followed.offset += used
            final = followed.retiring and followed.offset >= size
            if used and not final:
                step.more = step.more or followed.offset < size
        elif followed.retiring:
            final = True
        if len(followed.head) < HEAD_BYTES and followed.offset > len(followed.head):
            followed.head = os.pread(handle.fileno(), HEAD_BYTES, 0)
        if final:
            handle.close()
            del self._followed[followed.key]
            log.info("file source %s: done with %s", self.settings.name, followed.path)
        if lines:
            head = followed.head[: followed.offset]
            saved = _Saved(str(followed.path), followed.offset, len(head), _head_hash(head))
            step.segments.append(_Segment(followed.key, lines, saved, final))
        elif final:
            step.finished.append(followed.key)

    def _close_all(self) -> None:
        with self._io_lock:
            for followed in self._followed.values():
                followed.handle.close()
            self._followed.clear()


def _parse_state(doc: object) -> dict[FileKey, _Saved]:
    """The offsets of a state document (``KeyError``/``TypeError``/``ValueError`` if bad)."""
    if not isinstance(doc, dict):
        raise TypeError("the offsets document is not an object")
    out: dict[FileKey, _Saved] = {}
    for entry in doc["files"]:
        key = (int(entry["dev"]), int(entry["inode"]))
        out[key] = _Saved(
            str(entry["path"]),
            int(entry["offset"]),
            int(entry["head_len"]),
            str(entry["head_hash"]),
        )
    return out


def _after_last_newline(handle: BinaryIO, size: int) -> int:
    """Where the last complete line of the file ends (start_at="end")."""
    start = max(0, size - _TAIL_BYTES)
    handle.seek(start)
    cut = handle.read(size - start).rfind(b"\n")
    return start + cut + 1 if cut >= 0 else size


def _describe(exc: OSError) -> str:
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{exc.strerror or exc}"
