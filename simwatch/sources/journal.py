"""A local journal of received payloads: append-only segment files, read back in order.

The MQTT source (``simwatch/sources/mqtt.py``) appends every message it receives here
and acknowledges it to the broker only once the append is on disk; ingest is fed from
the journal, and the position ingest has applied goes into the daemon's checkpoints.
After a crash the frames after the checkpoint's position are read again: nothing that
was acknowledged is lost.

Positions. The journal is one endless byte stream cut into segment files
``<base>.seg``, where ``base`` (20 digits) is the stream position of the segment's first
byte. A position is a byte offset in that stream: it only grows, is never reused (a new
journal starts at the position it is asked to read from), and one integer is the cursor.

Frames. ``<u32 payload length><u16 topic length><u32 CRC-32><topic><payload>``, little
endian; the CRC covers the two lengths, the topic (UTF-8) and the payload.

Crash safety. ``append`` writes a batch of frames with one ``write`` and ``fdatasync``s
the segment (and the directory when it created the segment) before it returns. A crash
in the middle leaves a torn tail in the last segment: ``open`` reads the last segment
frame by frame and cuts it at the first short or CRC-failing frame. Nothing cut was ever
acknowledged (the caller acknowledges after ``append`` returned), so the broker sends it
again. A bad frame anywhere else (a disk error) cannot be resynchronised from: it is
logged and the rest of its segment skipped and counted (``JournalStats.corrupt_bytes``).
``open`` starts a new segment rather than appending to one a crash may have torn.

Bounds. ``release(position)`` deletes the segments that lie wholly before a position
that is in a checkpoint on disk. On top, ``max_bytes`` caps the total: beyond it the
oldest segments are dropped (never the one being written), and the frames in them that
had not been read yet are reported (``DropReport``) for the caller to count and log.

Threads. Every method blocks (file I/O): call them through ``asyncio.to_thread``. One
appender and one reader at a time; a lock keeps the segment list consistent between
them (the appender holds it only around its bookkeeping, not while it writes and syncs).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import struct
import threading
import zlib
from bisect import bisect_right
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal, overload

from simwatch.shell.files import fsync_dir

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

__all__ = [
    "CURSOR_VERSION",
    "HEADER",
    "MAX_PAYLOAD",
    "DropReport",
    "Frame",
    "Journal",
    "JournalStats",
    "OpenReport",
    "cursor_of",
    "encode_frame",
    "position_of",
]

log = logging.getLogger(__name__)

HEADER: Final = struct.Struct("<IHI")  # payload length, topic length, CRC-32
_LENGTHS: Final = 6  # the header's first bytes (the two lengths), covered by the CRC
MAX_PAYLOAD: Final = 268_435_455  # MQTT's largest payload; a bigger length is corrupt
SUFFIX: Final = ".seg"
_DIGITS: Final = 20
_CHUNK: Final = 1 << 20  # bytes read from a segment at a time
CURSOR_VERSION: Final = 1  # of a source's checkpointed cursor, ``cursor_of``


@dataclass(frozen=True, slots=True)
class Frame:
    """One journaled message: where it starts and where the next one starts."""

    position: int
    end: int
    topic: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class DropReport:
    """Segments the byte cap dropped in one ``append``."""

    segments: int
    bytes: int
    unread_frames: int  # frames in them that had not been read (lost to ingest)


@dataclass(frozen=True, slots=True)
class OpenReport:
    """What ``open`` found."""

    start: int  # the first position held (== end when the journal is empty)
    end: int  # the next position to be written
    read_from: int  # where reading starts
    segments: int
    cut_bytes: int  # a torn tail cut off the last segment
    released: int  # segments deleted because the checkpoint had passed them
    missing_bytes: int  # between the asked position and the first frame held (dropped)


@dataclass(slots=True)
class JournalStats:
    appended: int = 0  # frames appended since open
    cut_bytes: int = 0  # torn tails cut at open
    corrupt_bytes: int = 0  # skipped as unreadable
    released_segments: int = 0  # deleted once a checkpoint passed them
    dropped_segments: int = 0  # deleted by the byte cap
    dropped_bytes: int = 0
    dropped_unread: int = 0  # frames the cap dropped before they were read


@dataclass(slots=True)
class _Segment:
    base: int
    size: int  # bytes of whole, synced frames

    @property
    def end(self) -> int:
        return self.base + self.size


def cursor_of(position: int | None) -> dict[str, object]:
    """A journaling source's checkpoint cursor: the position ingest has applied (None: the
    source journals nothing)."""
    return {"version": CURSOR_VERSION, "position": position}


@overload
def position_of(cursor: object, *, optional: Literal[False]) -> int: ...
@overload
def position_of(cursor: object, *, optional: bool = True) -> int | None: ...
def position_of(cursor: object, *, optional: bool = True) -> int | None:
    """The journal position of a ``cursor_of`` value (``TypeError``, ``KeyError`` or
    ``ValueError`` if malformed; a None position too unless ``optional``)."""
    if not isinstance(cursor, dict):
        raise TypeError("the journal position is not an object")
    if cursor["version"] != CURSOR_VERSION:
        raise ValueError(f"unknown version {cursor['version']!r}")
    position = cursor["position"]
    if position is None and optional:
        return None
    if isinstance(position, bool) or not isinstance(position, int) or position < 0:
        raise ValueError(f"bad position {position!r}")
    return position


def encode_frame(topic: str, payload: bytes) -> bytes:
    """One frame's bytes."""
    name = topic.encode()
    if len(payload) > MAX_PAYLOAD or len(name) > 0xFFFF:
        raise ValueError(f"message too large to journal: {len(payload)} bytes on {topic!r}")
    lengths = struct.pack("<IH", len(payload), len(name))
    crc = zlib.crc32(payload, zlib.crc32(name, zlib.crc32(lengths)))
    return lengths + struct.pack("<I", crc) + name + payload


def _name(base: int) -> str:
    return f"{base:0{_DIGITS}d}{SUFFIX}"


def _base_of(name: str) -> int | None:
    stem = name.removesuffix(SUFFIX)
    if stem == name or len(stem) != _DIGITS or not stem.isdigit():
        return None
    return int(stem)


class _Bad(Exception):  # noqa: N818 - internal control flow: a frame that does not check
    """A frame that is short or fails its CRC (``reason`` says which)."""


class _FrameReader:
    """Frames of one segment file from ``offset`` up to ``limit``, read in chunks."""

    def __init__(self, fd: int, offset: int, limit: int) -> None:
        self.fd = fd
        self.offset = offset
        self.limit = limit
        self._buf = b""
        self._buf_at = offset

    def _bytes(self, at: int, n: int) -> memoryview:
        if at + n > self.limit:
            raise _Bad("short frame")
        rel = at - self._buf_at
        if rel < 0 or rel + n > len(self._buf):
            self._buf = os.pread(self.fd, min(max(n, _CHUNK), self.limit - at), at)
            self._buf_at = at
            rel = 0
            if len(self._buf) < n:
                raise _Bad("short frame (file shorter than expected)")
        return memoryview(self._buf)[rel : rel + n]

    def next(self) -> tuple[str, bytes, int] | None:
        """(topic, payload, frame length) of the frame at ``offset``; None at ``limit``;
        ``_Bad`` when it is short or does not check."""
        at = self.offset
        if at >= self.limit:
            return None
        head = self._bytes(at, HEADER.size)
        size, topic_len, crc = HEADER.unpack(head)
        if size > MAX_PAYLOAD:
            raise _Bad(f"impossible length {size}")
        body = self._bytes(at + HEADER.size, topic_len + size)
        if zlib.crc32(body, zlib.crc32(head[:_LENGTHS])) != crc:
            raise _Bad("CRC mismatch")
        topic = bytes(body[:topic_len]).decode(errors="replace")
        payload = bytes(body[topic_len:])
        length = HEADER.size + topic_len + size
        self.offset = at + length
        return topic, payload, length


class Journal:
    """Segment files in ``directory``; see the module docstring."""

    def __init__(self, directory: Path, *, segment_bytes: int, max_bytes: int) -> None:
        if segment_bytes < 1 or max_bytes < segment_bytes:
            raise ValueError("need 1 <= segment_bytes <= max_bytes")
        self.directory = directory
        self.segment_bytes = segment_bytes
        self.max_bytes = max_bytes
        self.stats = JournalStats()
        self._lock = threading.Lock()  # the segment list, positions, the reader's handle
        self._append_lock = threading.Lock()  # one append at a time
        self._segments: list[_Segment] = []
        self._end = 0  # the next position to write (everything before it is synced)
        self._read = 0  # the next position to read
        self._active: _Segment | None = None  # the segment appends go to
        self._fd: int | None = None  # its file, open for appending
        self._reader: tuple[int, int] | None = None  # (base, fd) of the segment being read

    # ---- state (plain ints: safe to read from the event loop) ---------------------------

    @property
    def end(self) -> int:
        """The next position to be written: every frame before it is on disk."""
        return self._end

    @property
    def read_position(self) -> int:
        return self._read

    @property
    def start(self) -> int:
        segments = self._segments
        return segments[0].base if segments else self._end

    def size(self) -> int:
        """Bytes held in all segments."""
        with self._lock:
            return sum(s.size for s in self._segments)

    def segment_count(self) -> int:
        with self._lock:
            return len(self._segments)

    # ---- open / close -------------------------------------------------------------------

    def open(self, read_from: int | None = None, release_to: int | None = None) -> OpenReport:
        """Find the segments, cut a torn tail, delete what ``release_to`` has passed, and
        start reading at ``read_from`` (None: at the first frame held)."""
        with self._append_lock, self._lock:
            self._close_files()
            self.directory.mkdir(parents=True, exist_ok=True)
            segments = self._scan_directory()
            cut = 0
            floor = 0  # positions never go back, even if the last segment is cut to nothing
            if segments:
                floor = segments[-1].base
                cut = self._cut_torn_tail(segments)
            self._segments = segments
            self._active = None
            self._end = max(segments[-1].end if segments else 0, floor, read_from or 0)
            released = self._release(release_to) if release_to is not None else 0
            start = self.start
            wanted = start if read_from is None else read_from
            missing = max(0, start - wanted) if segments else 0
            self._read = max(wanted, start) if segments else self._end
            return OpenReport(
                start=start,
                end=self._end,
                read_from=self._read,
                segments=len(self._segments),
                cut_bytes=cut,
                released=released,
                missing_bytes=missing,
            )

    def _scan_directory(self) -> list[_Segment]:
        found: list[_Segment] = []
        for path in self.directory.iterdir():
            base = _base_of(path.name)
            if base is not None and path.is_file():
                found.append(_Segment(base, path.stat().st_size))
        found.sort(key=lambda s: s.base)
        for seg, nxt in itertools.pairwise(found):
            if seg.end > nxt.base:  # a write that failed after its segment was given up
                log.warning(
                    "journal %s: segment %s runs into the next one; %d bytes ignored",
                    self.directory,
                    _name(seg.base),
                    seg.end - nxt.base,
                )
                seg.size = nxt.base - seg.base
        return found

    def _cut_torn_tail(self, segments: list[_Segment]) -> int:
        """Check the last segment frame by frame; cut it at the first bad frame."""
        last = segments[-1]
        path = self.directory / _name(last.base)
        with path.open("r+b") as handle:
            reader = _FrameReader(handle.fileno(), 0, last.size)
            reason = ""
            try:
                while reader.next() is not None:
                    pass
            except _Bad as bad:
                reason = str(bad)
            valid = reader.offset
            cut = last.size - valid
            if cut:
                log.warning(
                    "journal %s: cut a torn tail of %d bytes off %s (%s): written by a "
                    "crash before it was acknowledged, the broker sends it again",
                    self.directory,
                    cut,
                    path.name,
                    reason,
                )
                handle.truncate(valid)
                handle.flush()
                os.fsync(handle.fileno())
                self.stats.cut_bytes += cut
                last.size = valid
        if last.size == 0:
            path.unlink()
            segments.pop()
        return cut

    def close(self) -> None:
        with self._append_lock, self._lock:
            self._close_files()

    def _close_files(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._active = None
        if self._reader is not None:
            os.close(self._reader[1])
            self._reader = None

    # ---- append -------------------------------------------------------------------------

    def append(self, messages: Sequence[tuple[str, bytes]]) -> DropReport | None:
        """Write the messages as frames and sync them; the cap's drops, if any.

        On ``OSError`` nothing of the batch counts as written (the segment is cut back
        and given up; the next append starts a new one)."""
        blob = b"".join(encode_frame(topic, payload) for topic, payload in messages)
        if not blob:
            return None
        with self._append_lock:
            with self._lock:
                if self._active is None or self._active.size >= self.segment_bytes:
                    self._roll()
                segment, fd = self._active, self._fd
            assert segment is not None
            assert fd is not None
            try:
                view = memoryview(blob)
                while view:
                    view = view[os.write(fd, view) :]
                os.fdatasync(fd)
            except OSError:
                self._give_up(segment, fd)
                raise
            with self._lock:
                segment.size += len(blob)
                self._end += len(blob)
                self.stats.appended += len(messages)
                return self._enforce_cap()

    def _roll(self) -> None:
        """Close the active segment (its frames are synced) and start one at ``end``."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        base = self._end
        path = self.directory / _name(base)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
        fd = os.open(path, flags, 0o644)
        try:
            fsync_dir(self.directory)
        except OSError:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        self._fd = fd
        self._active = _Segment(base, 0)
        self._segments.append(self._active)

    def _give_up(self, segment: _Segment, fd: int) -> None:
        """After a failed write: cut the segment back to its synced frames, stop using it."""
        # what stays beyond ``size`` if this fails is never read (open clamps or cuts it)
        with contextlib.suppress(OSError):
            os.ftruncate(fd, segment.size)
        with self._lock:
            if self._fd == fd:
                os.close(fd)
                self._fd = None
                self._active = None
            if segment.size == 0 and segment in self._segments:
                self._segments.remove(segment)
                (self.directory / _name(segment.base)).unlink(missing_ok=True)

    def _enforce_cap(self) -> DropReport | None:
        total = sum(s.size for s in self._segments)
        segments = bytes_ = unread = 0
        while total > self.max_bytes and len(self._segments) > 1:
            oldest = self._segments[0]
            if oldest is self._active:
                break
            if self._read < oldest.end:
                unread += self._count_frames(oldest, max(self._read, oldest.base))
            self._delete_first()
            total -= oldest.size
            segments += 1
            bytes_ += oldest.size
        if not segments:
            return None
        self._read = max(self._read, self.start)
        self.stats.dropped_segments += segments
        self.stats.dropped_bytes += bytes_
        self.stats.dropped_unread += unread
        return DropReport(segments, bytes_, unread)

    def _count_frames(self, segment: _Segment, position: int) -> int:
        path = self.directory / _name(segment.base)
        try:
            with path.open("rb") as handle:
                reader = _FrameReader(handle.fileno(), position - segment.base, segment.size)
                count = 0
                while reader.next() is not None:
                    count += 1
                return count
        except (OSError, _Bad):
            return 0  # unreadable anyway: nothing more to count

    # ---- read ---------------------------------------------------------------------------

    def read(self, max_frames: int, max_bytes: int) -> list[Frame]:
        """The next frames (at least one if any is there, at most ``max_frames`` and
        about ``max_bytes``); empty when the reader has caught up with ``end``."""
        frames: list[Frame] = []
        used = 0
        with self._lock:
            while len(frames) < max_frames and used < max_bytes and self._read < self._end:
                segment = self._segment_at(self._read)
                if segment is None:  # no segment holds the rest: nothing more to read
                    self._read = self._end
                    break
                self._read = max(self._read, segment.base)  # past a dropped gap
                fd = self._reader_fd(segment)
                reader = _FrameReader(fd, self._read - segment.base, segment.size)
                try:
                    while len(frames) < max_frames and used < max_bytes:
                        at = segment.base + reader.offset
                        item = reader.next()
                        if item is None:
                            break
                        topic, payload, length = item
                        frames.append(Frame(at, at + length, topic, payload))
                        used += length
                        self._read = at + length
                except _Bad as bad:
                    self._skip_rest(segment, str(bad))
        return frames

    def _segment_at(self, position: int) -> _Segment | None:
        """The segment holding ``position``, else the first one after it."""
        segments = self._segments
        i = bisect_right([s.base for s in segments], position) - 1
        if i >= 0 and position < segments[i].end:
            return segments[i]
        return segments[i + 1] if i + 1 < len(segments) else None

    def _reader_fd(self, segment: _Segment) -> int:
        if self._reader is not None and self._reader[0] == segment.base:
            return self._reader[1]
        if self._reader is not None:
            os.close(self._reader[1])
            self._reader = None
        fd = os.open(self.directory / _name(segment.base), os.O_RDONLY | os.O_CLOEXEC)
        self._reader = (segment.base, fd)
        return fd

    def _skip_rest(self, segment: _Segment, reason: str) -> None:
        skipped = segment.end - self._read
        log.warning(
            "journal %s: unreadable frame at position %d in %s (%s); skipping the rest of "
            "the segment (%d bytes)",
            self.directory,
            self._read,
            _name(segment.base),
            reason,
            skipped,
        )
        self.stats.corrupt_bytes += skipped
        self._read = segment.end

    # ---- release ------------------------------------------------------------------------

    def release(self, position: int) -> int:
        """Delete the segments wholly before ``position`` (it is in a checkpoint on disk);
        never the one being written. Returns how many were deleted."""
        with self._lock:
            return self._release(position)

    def _release(self, position: int) -> int:
        count = 0
        while self._segments and self._segments[0].end <= position:
            if self._segments[0] is self._active:
                break
            self._delete_first()
            count += 1
        self.stats.released_segments += count
        if count:
            self._read = max(self._read, self.start)
        return count

    def _delete_first(self) -> None:
        segment = self._segments.pop(0)
        if self._reader is not None and self._reader[0] == segment.base:
            os.close(self._reader[1])
            self._reader = None
        (self.directory / _name(segment.base)).unlink(missing_ok=True)
