"""The webhook source: bodies pushed to ``POST /api/v1/ingest/{name}``, journaled first.

The HTTP app hands each authenticated body to ``WebhookSource.receive`` (the
``simwatch.shell.push.PushReceiver`` contract). The body is decoded for the source's
``format`` (``simwatch.sources.webhook.formats``): FORMATS.md records are kept as they
came; a platform's payloads (emnify / 1NCE Data Streamer, KORE Event Streams, Cisco
Push API) are mapped to FORMATS.md records first. What is to be kept is appended to the
source's journal (``simwatch.sources.journal``: segment files, CRC'd frames, one
``write`` + ``fdatasync`` per group of requests) and only then answered with 200.

**Nothing acknowledged is lost on a crash.** A 200 means the records are on disk. A task
feeds ingest from the journal in order; the position ingest has applied is the source's
``cursor()`` and goes into the daemon's checkpoints; at start the frames after the
checkpoint's position are replayed. A request cut by a crash before its 200 was not
acknowledged: the platform sends it again (platforms deliver at least once), and a
record both journaled and re-sent is counted once (stable ``record_id``s, the engine's
dedup). Segments are deleted once a checkpoint on disk has passed them
(``checkpointed``); without checkpoints (``checkpoint.enabled = false``), once applied.

**Bounded.** The journal holds at most ``journal_max_bytes``: a push that would not fit
is refused with 503 and ``Retry-After`` (the platform retries; the journal frees space
at the next checkpoint), never accepted and then dropped. A journal write that fails is
a 503 too. Concurrent requests share one append (group commit), so bulk pushes cost one
``fdatasync`` per group, not per record.

**Bad input.** A body that cannot be decoded is answered 400 naming the reason, counted
(``stats.rejected``) and kept in the dead letters. Platform events of a type simwatch
does not use are counted (``rejected["unknown_kind"]``) and sampled to the dead letters
(the first three of each type, then every power of ten). A FORMATS.md record inside an
accepted body that does not validate is rejected by ingest like any other.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import logging
import multiprocessing
import time
import urllib.parse
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Final

from simwatch.core.records import Rejection, RejectReason
from simwatch.shell.logs import FailureLog
from simwatch.shell.push import PushReply
from simwatch.shell.source_contract import Batch, SourceStats
from simwatch.sources.journal import HEADER, Journal, cursor_of, position_of
from simwatch.sources.webhook.errors import BodyError, SignatureError
from simwatch.sources.webhook.formats import decode_body

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence
    from pathlib import Path

    from simwatch.shell.push import RejectionWriter
    from simwatch.shell.settings.sources import WebhookSourceSettings
    from simwatch.shell.source_contract import Sink
    from simwatch.sources.webhook.formats import Decoded

log = logging.getLogger(__name__)

JOURNAL_FOLDER: Final = "webhook-journal"  # under the daemon's state_dir
MAX_BATCH_PAYLOADS: Final = 100  # journal frames handed to ingest in one Batch at most
READ_BYTES: Final = 4 << 20  # journal bytes read into one Batch at most (one frame at least)
RAW_KEPT: Final = 65536  # characters of a refused body kept in its dead letter
SAMPLES_FIRST: Final = 3  # unknown event types: the first ones of each type dead-lettered
POOL_MIN_BYTES: Final = 64 << 10  # smaller bodies are mapped on the loop (no IPC)


class JournalFullError(Exception):
    """The journal cannot take the push now: answer 503 with Retry-After."""


def journal_dir(settings: WebhookSourceSettings, state_dir: Path) -> Path:
    """Where the source's journal lives."""
    if settings.journal_dir is not None:
        return settings.journal_dir
    return state_dir / JOURNAL_FOLDER / urllib.parse.quote(settings.name, safe="")


def _sampled(count: int) -> bool:
    """Whether the ``count``-th event of an unknown type goes to the dead letters."""
    if count <= SAMPLES_FIRST:
        return True
    while count % 10 == 0:
        count //= 10
    return count == 1


def _raw(body: bytes) -> str:
    text = body[: RAW_KEPT * 4].decode("utf-8", "replace")
    return text if len(text) <= RAW_KEPT else text[:RAW_KEPT] + "..."


def _error(status: int, message: str) -> dict[str, object]:
    return {"error": {"status": status, "message": message}}


class WebhookSource:
    """A ``PushReceiver`` and a ``Source``: see the module docstring.

    ``password``: the Basic password (resolved from ``password``/``password_file``).
    ``checkpoints``: whether the daemon writes checkpoints (else the journal is freed as
    soon as ingest applied it). ``rejections``: counts and dead-letters refused input
    (``simwatch run`` wires the daemon's dead-letter file).
    """

    def __init__(
        self,
        settings: WebhookSourceSettings,
        *,
        state_dir: Path,
        password: str | None = None,
        signature_secret: str | None = None,
        checkpoints: bool = True,
        rejections: RejectionWriter | None = None,
    ) -> None:
        self.settings = settings
        self.stats = SourceStats(name=settings.name, kind="webhook")
        self.journal_dir = journal_dir(settings, state_dir)
        self.journal: Journal | None = None  # while run holds it open
        self.checkpoints = checkpoints
        self.rejections = rejections
        self.unknown_types: Counter[str] = Counter()  # platform event types not used
        user = settings.username
        self._basic = None if user is None or password is None else (user, password)
        self._secret = signature_secret  # Cisco Push API: signature2 is checked with it
        self._applied: int | None = None  # journal position ingest has applied
        self._handed: int | None = None  # journal position handed to ingest (this process)
        self._checkpointed: int | None = None  # journal position in a checkpoint on disk
        self._waiting: list[tuple[list[bytes], asyncio.Future[None]]] = []
        self._commit_wake = asyncio.Event()  # requests wait to be journaled
        self._feed_wake = asyncio.Event()  # the journal grew
        self._full = FailureLog(log, f"webhook source {settings.name}", noun="refused push")
        self._pool: ProcessPoolExecutor | None = None  # decode workers, started when needed

    # ---- PushReceiver -----------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def max_body_bytes(self) -> int:
        return self.settings.max_body_bytes

    @property
    def basic_required(self) -> bool:
        return self._basic is not None

    def basic_matches(self, credentials: str) -> bool:
        """Constant-time check of a Basic ``credentials`` value (base64 ``user:password``)."""
        if self._basic is None:
            return False
        try:
            decoded = base64.b64decode(credentials.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError):
            return False
        user, sep, password = decoded.partition(b":")
        user_ok = hmac.compare_digest(user, self._basic[0].encode())
        password_ok = hmac.compare_digest(password, self._basic[1].encode())
        return bool(sep) and user_ok and password_ok

    def too_large(self, size: int | None) -> PushReply:
        self.stats.rejected[str(RejectReason.TOO_LARGE)] += 1
        got = "" if size is None else f" (got {size} bytes)"
        limit = self.settings.max_body_bytes
        return PushReply(413, _error(413, f"body larger than max_body_bytes {limit}{got}"))

    async def receive(self, body: bytes, content_type: str) -> PushReply:
        """Decode the body, journal what it holds, then answer 200 (see the docstring)."""
        if self.journal is None:
            return self._unavailable("the source is not running (starting or restarting)")
        fmt = self.settings.format
        try:
            decoded = await self._decode(body, content_type)
        except BodyError as exc:
            message = f"{fmt} body: {exc.detail}"
            self.stats.rejected[str(exc.reason)] += 1
            await self._reject([Rejection(exc.reason, message, _raw(body))])
            return PushReply(400, _error(400, message))
        except SignatureError as exc:
            self.stats.errors += 1
            self.stats.last_error = str(exc)
            return PushReply(401, _error(401, str(exc)))
        if decoded.payloads:
            try:
                await self._commit(decoded.payloads)
            except JournalFullError as exc:
                return self._unavailable(str(exc))
        if decoded.unknown:
            await self._unknown(decoded.unknown)
        self.stats.last_success = time.time()
        return PushReply(200, {"accepted": decoded.records, "ignored": len(decoded.unknown)})

    async def _decode(self, body: bytes, content_type: str) -> Decoded:
        """Map the body: in a worker process when it is a bulk body of a platform format
        (``decode_workers``), so mapping and ingest use two cores; else on the loop."""
        fmt = self.settings.format
        workers = self.settings.decode_workers
        secret = self._secret
        if fmt == "records" or workers == 0 or len(body) < POOL_MIN_BYTES:
            return decode_body(fmt, body, content_type, secret)
        loop = asyncio.get_running_loop()
        try:
            pool = self._workers()
            return await loop.run_in_executor(pool, decode_body, fmt, body, content_type, secret)
        except BrokenProcessPool:
            log.warning("webhook source %s: a decode worker died; restarting", self.name)
            self._stop_pool()
            return decode_body(fmt, body, content_type, secret)

    def _workers(self) -> ProcessPoolExecutor:
        if self._pool is None:
            context = multiprocessing.get_context("spawn")  # no fork of a threaded process
            workers = self.settings.decode_workers
            self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)
            for _ in range(workers):  # start them now, not at the first bulk body
                self._pool.submit(decode_body, "records", b"{}", "")
        return self._pool

    def _stop_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def _unavailable(self, why: str) -> PushReply:
        retry = self.settings.retry_after_s
        return PushReply(503, _error(503, f"{why}; retry after {retry} s"), retry)

    async def _reject(self, rejections: Sequence[Rejection]) -> None:
        if self.rejections is not None and rejections:
            await self.rejections(rejections, self.settings.name)

    async def _unknown(self, unknown: Sequence[tuple[str, str]]) -> None:
        """Count events of types simwatch does not use; sample them to the dead letters."""
        kept: list[Rejection] = []
        for label, raw in unknown:
            self.unknown_types[label] += 1
            self.stats.rejected[str(RejectReason.UNKNOWN_KIND)] += 1
            count = self.unknown_types[label]
            if _sampled(count):
                detail = f"{self.settings.format} {label}: not used by simwatch ({count} so far)"
                kept.append(Rejection(RejectReason.UNKNOWN_KIND, detail, raw))
        await self._reject(kept)

    # ---- the journal ------------------------------------------------------------------------

    async def _commit(self, payloads: list[bytes]) -> None:
        """Wait until ``payloads`` are journaled (``JournalFullError`` if they cannot be)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((payloads, future))
        self._commit_wake.set()
        await future

    async def _writer(self, journal: Journal) -> None:
        """Append what requests wait with, in groups: one write + fdatasync per group."""
        topic = self.settings.format
        overhead = HEADER.size + len(topic.encode())
        cap = self.settings.journal_max_bytes
        while True:
            await self._commit_wake.wait()
            self._commit_wake.clear()
            while self._waiting:
                waiting, self._waiting = self._waiting, []
                room = cap - (journal.end - journal.start)
                frames: list[tuple[str, bytes]] = []
                taken: list[asyncio.Future[None]] = []
                for payloads, future in waiting:
                    size = sum(len(p) + overhead for p in payloads)
                    if size > room:
                        self._refuse_full(future, journal)
                        continue
                    room -= size
                    frames.extend((topic, p) for p in payloads)
                    taken.append(future)
                if frames:
                    await self._append(journal, frames, taken)

    def _refuse_full(self, future: asyncio.Future[None], journal: Journal) -> None:
        self._full.failed(
            f"the journal {journal.directory} holds journal_max_bytes "
            f"({self.settings.journal_max_bytes}) not yet covered by a checkpoint",
            hint=f"pushes are refused with 503, Retry-After {self.settings.retry_after_s} s",
        )
        if not future.done():
            future.set_exception(JournalFullError("the journal is full"))

    async def _append(
        self, journal: Journal, frames: list[tuple[str, bytes]], taken: list[asyncio.Future[None]]
    ) -> None:
        try:
            drop = await asyncio.to_thread(journal.append, frames)
        except (OSError, ValueError) as exc:
            self.stats.errors += 1
            self.stats.last_error = f"cannot write the journal: {exc}"
            log.warning("webhook source %s: %s", self.settings.name, self.stats.last_error)
            for future in taken:
                if not future.done():
                    future.set_exception(JournalFullError("the journal cannot be written"))
            return
        if drop is not None:  # not expected: pushes are refused before the cap is reached
            self.stats.shed += drop.unread_frames
        self.stats.last_error = None
        if self._full.failing:
            self._full.recovered("the journal takes pushes again")
        for future in taken:
            if not future.done():
                future.set_result(None)
        self._feed_wake.set()

    # ---- checkpoints (Resumable, Checkpointed) ------------------------------------------------

    def cursor(self) -> object | None:
        """The journal position ingest has applied; None while not known yet."""
        if self._applied is None:
            return None
        return cursor_of(self._applied)

    def restore(self, cursor: object) -> None:
        """Resume from a checkpoint's ``cursor()`` (before ``run``)."""
        try:
            position = position_of(cursor, optional=False)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning(
                "webhook source %s: ignoring the checkpoint's unreadable journal position: %s",
                self.settings.name,
                exc,
            )
            return
        self._applied = self._checkpointed = position

    async def checkpointed(self, cursor: object) -> None:
        """``cursor`` is in a checkpoint on disk now: delete the segments it has passed."""
        try:
            position = position_of(cursor, optional=False)
        except (KeyError, TypeError, ValueError):
            return
        if self._checkpointed is None or position > self._checkpointed:
            self._checkpointed = position
        journal = self.journal
        if journal is not None:
            await asyncio.to_thread(journal.release, position)

    # ---- run --------------------------------------------------------------------------------

    async def run(self, sink: Sink) -> None:
        """Open the journal, replay what the checkpoint has not applied, then feed ingest
        and journal pushes until cancelled."""
        journal = await self._open_journal()
        if self.settings.format != "records" and self.settings.decode_workers:
            self._workers()
        self.journal = journal
        self.stats.connected = True
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._feed(journal, sink), name=f"{self.settings.name}:feed")
                tg.create_task(self._writer(journal), name=f"{self.settings.name}:journal")
        finally:
            self.journal = None
            self.stats.connected = False
            self._stop_pool()
            waiting, self._waiting = self._waiting, []
            for _, future in waiting:
                if not future.done():
                    future.set_exception(JournalFullError("the source stopped"))
            await asyncio.to_thread(journal.close)

    async def _open_journal(self) -> Journal:
        settings = self.settings
        journal = Journal(
            self.journal_dir,
            segment_bytes=settings.journal_segment_bytes,
            max_bytes=settings.journal_max_bytes,
        )
        # run again in this process: batches handed before may still wait in the queue
        read_from = self._handed if self._handed is not None else self._checkpointed
        report = await asyncio.to_thread(journal.open, read_from, self._checkpointed)
        if report.missing_bytes:
            log.warning(
                "webhook source %s: the journal %s starts %d bytes after the checkpoint's "
                "position: those were lost before they were applied",
                settings.name,
                self.journal_dir,
                report.missing_bytes,
            )
        start = report.read_from
        if self._applied is None:
            self._applied = start
        if self._handed is None:
            self._handed = start
        log.info(
            "webhook source %s: journal %s: %d segments, positions %d..%d; replaying %d bytes",
            settings.name,
            self.journal_dir,
            report.segments,
            report.start,
            report.end,
            report.end - start,
        )
        return journal

    async def _feed(self, journal: Journal, sink: Sink) -> None:
        """Hand the journal's frames to ingest in order, as they are written."""
        name = self.settings.name
        while True:
            frames = await asyncio.to_thread(journal.read, MAX_BATCH_PAYLOADS, READ_BYTES)
            if not frames:
                self._feed_wake.clear()
                if journal.read_position >= journal.end:
                    await self._feed_wake.wait()
                continue
            end = frames[-1].end
            payloads = [f.payload for f in frames]
            await sink.put(Batch(source=name, payloads=payloads, on_applied=self._applier(end)))
            self._handed = end

    def _applier(self, end: int) -> Callable[[], Awaitable[None]]:
        async def on_applied() -> None:
            if self._applied is None or end > self._applied:
                self._applied = end
            journal = self.journal
            if not self.checkpoints and journal is not None:
                await asyncio.to_thread(journal.release, end)

        return on_applied
