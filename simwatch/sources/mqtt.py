"""The MQTT source: subscribes to a broker and hands each message payload to ingest.

One long-lived ``aiomqtt.Client`` is reused across reconnects (aiomqtt's documented
reconnect pattern), so messages it has already received but we have not yet handed on
survive a dropped connection. (aiomqtt 2.5 quirk: on a reused client, ``__aenter__``
after an unexpected disconnect does not wait for the CONNACK; SUBACK is awaited, so
``stats.connected`` still only turns true once the subscription is confirmed.)

With ``clean_session = false`` (the default) the broker keeps the subscription and queues
QoS 1/2 messages while we are away, and delivers them when we reconnect with the same
``client_id``.

Payloads are passed on as they are (an object, an array or NDJSON): decoding happens
once, in the daemon's ingest task. Messages that are already waiting are gathered into
one ``Batch`` (up to ``MAX_BATCH_PAYLOADS``) without waiting for more, so a burst (a
backlog after a reconnect) costs one queue hand-over, not hundreds.

Two modes, by whether the source has a journal directory (``journal_dir``): with
``journal = true`` (the default) the ``journal_dir`` option, else
``<state_dir>/mqtt-journal/<name>`` when given the daemon's ``state_dir``. The journal's
position lives in the checkpoints, so ``simwatch run`` turns it off when checkpoints are
off (``build_sources``).

**With the journal: nothing acknowledged is lost on a crash.** paho's manual
acknowledgement is switched on (aiomqtt 2.5 does not expose it: ``Client._client`` is the
paho client; ``manual_ack_set(True)`` is a flag paho reads at every incoming PUBLISH, so
it is set before the first connect, before the broker can resend a persistent session's
messages). The receive loop gathers what is waiting, appends it to the journal
(``simwatch.sources.journal``; write + ``fdatasync`` in a worker thread) and only then
acknowledges each QoS 1 message (``paho.ack(mid, 1)``). A second task feeds ingest from
the journal, in journal order, with batches whose ``on_applied`` advances the applied
position; ``cursor()`` is that position and goes into the daemon's checkpoints, and
``restore(cursor)`` (before ``run``) makes the feed start there. So at start the frames
after the checkpoint are replayed to ingest first; the subscription is made at once, and
what it receives is appended after them. After a ``kill -9``: a message acknowledged is
in the journal, and replayed if the checkpoint does not cover it; a message received but
not yet journaled was not acknowledged, so the broker sends it again; a message
journaled but not yet acknowledged comes twice (from the journal and again from the
broker), and the second copy is dropped by the engine's dedup (same ``record_id``,
counted in ``duplicates``). A clean stop (the task cancelled) while a batch is being
written lets the write end and acknowledges it before disconnecting: ingest may already
have read it, and the broker would otherwise send it again. Journal segments are deleted
once a checkpoint on disk has passed them (``checkpointed``, called by the daemon after
it wrote one, and ``restore``).

The broker's in-flight window (Mosquitto ``max_inflight_messages``, default 20) bounds
what waits unacknowledged, so the receive loop never waits for ingest: a backlog goes to
disk at ``fdatasync`` speed while ingest reads it at its own. The journal is capped
(``journal_max_bytes``): beyond it its oldest segments are dropped, and the messages in
them ingest had not read yet are counted as shed (``stats.shed``) and logged once.

Acknowledgements only go out on the connection that delivered the message: message ids
are per connection, and after a reconnect the broker may give an id to another message.
Messages left in aiomqtt's queue by a closed connection are journaled but not
acknowledged (the broker sends them again: duplicates, dropped by dedup); an
acknowledgement queued in paho when a connection drops is discarded by paho at the next
connect. QoS 2 is refused with the journal in the settings: paho answers PUBREC on
receipt and keeps the message in memory until PUBREL, so a crash there loses it anyway,
and a PUBREL paho no longer knows is never completed in manual mode (the broker's
in-flight slot would stay taken).

Shedding with the journal: aiomqtt's queue is still bounded by ``max_queued_messages``
(it only fills when the broker's in-flight window is larger and the disk is slow). A
message shed there is not acknowledged, so the broker keeps it (persistent session) and
sends it again on the next connection; it also holds an in-flight slot until then. So
when a run of shedding ends the source reconnects at once: the shed messages come again,
and are counted in ``stats.shed`` when shed (a count of sheddings, no longer of losses;
with ``clean_session = true`` or QoS 0 they are lost as before).

**Without the journal (no directory, or ``journal = false``): at most once on a crash.**
paho acknowledges a QoS 1 message as soon as its ``on_message`` callback returns,
before ingest applied it: a crash (process killed) between receipt and apply loses what
was in flight — aiomqtt's queue and the daemon's queue — and, since MQTT has no cursor
to re-read from, the messages applied after the daemon's last checkpoint. A shutdown
that does not drain the daemon's queue loses the queued ones too. Backpressure: when
ingest falls behind, ``sink.put`` waits; meanwhile aiomqtt keeps reading the socket into
its own queue, bounded by ``max_queued_messages``: beyond it, new messages are dropped
(already acknowledged: lost) and counted in ``stats.shed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import urllib.parse
from typing import TYPE_CHECKING, Final, Protocol

import aiomqtt

from simwatch.shell.logs import FailureLog
from simwatch.shell.mqtt import Reconnector, load_tls, make_client
from simwatch.shell.source_contract import Batch, SourceStats
from simwatch.sources.journal import Journal, cursor_of, position_of

if TYPE_CHECKING:
    import random
    from collections.abc import AsyncIterator, Awaitable, Callable
    from pathlib import Path

    import paho.mqtt.client as paho_mqtt

    from simwatch.shell.settings import MqttSourceSettings
    from simwatch.shell.source_contract import Sink
    from simwatch.sources.journal import DropReport

log = logging.getLogger(__name__)


class Messages(Protocol):
    """What ``_pump`` needs of ``aiomqtt.Client.messages``: async iteration and a length."""

    def __aiter__(self) -> AsyncIterator[aiomqtt.Message]: ...

    async def __anext__(self) -> aiomqtt.Message: ...

    def __len__(self) -> int: ...


MAX_BATCH_PAYLOADS: Final = 100  # payloads gathered into one Batch when already waiting
JOURNAL_BATCH: Final = 1000  # messages appended (one write + fdatasync) at most at once
READ_BYTES: Final = 4 << 20  # journal bytes read into one Batch at most (one frame at least)
SUBACK_FAILURE: Final = 0x80  # a SUBACK reason code at or above this refuses the subscription
JOURNAL_FOLDER: Final = "mqtt-journal"  # under the daemon's state_dir


def journal_dir(settings: MqttSourceSettings, state_dir: Path | None) -> Path | None:
    """Where the source's journal lives; None: no journal (at most once on a crash)."""
    if not settings.journal:
        return None
    if settings.journal_dir is not None:
        return settings.journal_dir
    if state_dir is None:
        return None
    return state_dir / JOURNAL_FOLDER / urllib.parse.quote(settings.name, safe="")


class JournalWriteError(Exception):
    """The journal could not take a batch: the messages stay unacknowledged."""


class _Reconnect(Exception):  # noqa: N818 - control flow, not an error
    """Leave the connection and make a new one at once (no backoff, not a failure)."""


class MqttSource:
    """Subscribes to ``settings.topics`` and puts every payload on the sink.

    ``state_dir``: the daemon's state folder, where the journal lives unless
    ``settings.journal_dir`` says otherwise; without either the source has no journal.
    """

    def __init__(
        self,
        settings: MqttSourceSettings,
        *,
        password: str | None = None,
        rng: random.Random | None = None,
        state_dir: Path | None = None,
    ) -> None:
        self.settings = settings
        if password is None and settings.password is not None:
            password = settings.password.get_secret_value()
        self._password = password
        what = f"mqtt source {settings.name}"
        self._reconnect = Reconnector(settings, log, what, rng=rng)
        self.stats = SourceStats(name=settings.name, kind="mqtt")
        # a run of shed messages is under way (logged when it starts and when it ends)
        self._shedding = FailureLog(log, what, noun="shed message")
        self.journal_dir = journal_dir(settings, state_dir)
        self.journal: Journal | None = None  # while run holds it open
        self._applied: int | None = None  # journal position ingest has applied
        self._handed: int | None = None  # journal position handed to ingest (this process)
        self._checkpointed: int | None = None  # journal position in a checkpoint on disk
        self._skip_journal = False  # the checkpoint was taken with the journal off
        self._stale = 0  # messages in aiomqtt's queue from a closed connection
        self._wake = asyncio.Event()  # the journal grew (set by the receive loop)
        # the journal is over its cap (logged when it goes over and when back under)
        self._dropping = FailureLog(log, what, noun="dropped message")

    # ---- checkpoints (Resumable) ----------------------------------------------------------

    def cursor(self) -> object | None:
        """The journal position ingest has applied (``{"version", "position"}``); the
        position is None without a journal. None while not known yet."""
        if self.journal_dir is None:
            return cursor_of(None)
        if self._applied is None:
            return None
        return cursor_of(self._applied)

    def restore(self, cursor: object) -> None:
        """Resume from a checkpoint's ``cursor()`` (before ``run``)."""
        if self.journal_dir is None:
            return
        try:
            position = position_of(cursor)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning(
                "mqtt source %s: ignoring the checkpoint's unreadable journal position: %s",
                self.settings.name,
                exc,
            )
            return
        if position is None:  # the journal was off then: what it holds is older
            self._skip_journal = True
            return
        self._applied = self._checkpointed = position

    async def checkpointed(self, cursor: object) -> None:
        """``cursor`` (an earlier ``cursor()``) is in a checkpoint on disk now: delete the
        journal segments it has passed."""
        try:
            position = position_of(cursor)
        except (KeyError, TypeError, ValueError):
            return
        if position is None or self.journal_dir is None:
            return
        if self._checkpointed is None or position > self._checkpointed:
            self._checkpointed = position
        journal = self.journal
        if journal is None:
            return
        await asyncio.to_thread(journal.release, position)
        if self._dropping.failing and await asyncio.to_thread(journal.size) <= journal.max_bytes:
            self._dropping.recovered("the journal is back under its cap")

    # ---- run ------------------------------------------------------------------------------

    async def run(self, sink: Sink) -> None:
        """Receive until cancelled, reconnecting with backoff on any MQTT failure."""
        client = await self._client()
        if self.journal_dir is None:
            await self._serve(client, lambda: self._pump(client.messages, sink))
            return
        # the paho client: aiomqtt 2.5 exposes no manual acknowledgement (its issue #345)
        paho = client._client  # noqa: SLF001 - the documented workaround, see the docstring
        paho.manual_ack_set(on=True)
        journal = await self._open_journal(self.journal_dir)
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._feed(journal, sink), name=f"{self.settings.name}:feed")
                tg.create_task(
                    self._serve(client, lambda: self._journal_pump(client, journal)),
                    name=f"{self.settings.name}:receive",
                )
        finally:
            await asyncio.to_thread(journal.close)

    async def _client(self) -> aiomqtt.Client:
        settings = self.settings
        return make_client(
            settings,
            password=self._password,
            tls=await load_tls(settings),
            clean_session=settings.clean_session,
            max_queued_incoming_messages=settings.max_queued_messages,
            logger=self._client_logger(),
        )

    async def _serve(self, client: aiomqtt.Client, pump: Callable[[], Awaitable[None]]) -> None:
        """Connect, subscribe and ``pump`` until cancelled; reconnect with backoff."""

        async def session() -> None:
            # What is still queued came over a closed connection: never acknowledged on
            # the next one (message ids are per connection).
            self._stale = len(client.messages)
            try:
                async with client:
                    await self._subscribe(client)
                    self.stats.connected = True
                    self.stats.last_error = None
                    self.stats.last_success = time.time()
                    self._reconnect.connected()
                    await pump()
            except _Reconnect:
                return  # and connect again at once

        def failed(exc: Exception) -> tuple[str, str]:
            self.stats.connected = False
            self.stats.errors += 1
            self.stats.last_error = str(exc) or type(exc).__name__
            if isinstance(exc, JournalWriteError):
                return "messages left unacknowledged", self.stats.last_error
            return self._reconnect.unavailable, self.stats.last_error

        try:
            await self._reconnect.run(
                session, failed, errors=(aiomqtt.MqttError, JournalWriteError)
            )
        finally:
            self.stats.connected = False

    def _client_logger(self) -> logging.Logger:
        """aiomqtt's logger for this source: counts the messages it sheds (its bounded
        queue full) instead of logging each; logs the start of a shedding run once."""
        # not getLogger: an unregistered logger per client, no process-wide registry entry
        client_log = logging.Logger(f"{__name__}.{self.settings.name}")  # noqa: LOG001
        client_log.parent = log  # propagate to simwatch's handlers like any other logger
        client_log.addFilter(_ShedCounter(self))
        return client_log

    def _shed(self) -> None:
        self.stats.shed += 1
        behind = "the journal" if self.journal_dir else "ingest"
        self._shedding.failed(
            f"{behind} is behind and {self.settings.max_queued_messages} messages are "
            "waiting; shedding new messages (counted in simwatch_source_messages_shed_total)",
            hint="unacknowledged, the broker sends them again after a reconnect"
            if self.journal_dir
            else "",
        )

    async def _subscribe(self, client: aiomqtt.Client) -> None:
        qos = self.settings.qos
        wanted: list[tuple[str, int]] = [(topic, qos) for topic in self.settings.topics]
        granted = await client.subscribe(wanted)
        refused = [
            topic
            for topic, code in zip(self.settings.topics, granted, strict=False)
            if _refused(code)
        ]
        if refused:
            raise aiomqtt.MqttError(f"subscription refused for {', '.join(refused)}")

    # ---- without a journal ----------------------------------------------------------------

    async def _pump(self, messages: Messages, sink: Sink) -> None:
        """Hand messages on until the connection drops (``MqttError``)."""
        name = self.settings.name
        async for message in messages:
            payloads = [_payload(message)]
            try:  # gather what is already waiting, without waiting for more
                while len(messages) > 0 and len(payloads) < MAX_BATCH_PAYLOADS:
                    payloads.append(_payload(await anext(messages)))
            except aiomqtt.MqttError:
                await sink.put(Batch(source=name, payloads=payloads))  # received: not lost
                raise
            await sink.put(Batch(source=name, payloads=payloads))
            self.stats.last_success = time.time()
            if self._shedding.failing and len(messages) == 0:
                self._shedding.recovered("caught up; no longer shedding")

    # ---- with a journal -------------------------------------------------------------------

    async def _open_journal(self, directory: Path) -> Journal:
        settings = self.settings
        journal = Journal(
            directory,
            segment_bytes=settings.journal_segment_bytes,
            max_bytes=settings.journal_max_bytes,
        )
        # run again in this process: batches handed before may still wait in the queue
        read_from = self._handed if self._handed is not None else self._checkpointed
        report = await asyncio.to_thread(journal.open, read_from, self._checkpointed)
        start = report.read_from
        if self._skip_journal and self._handed is None:
            await asyncio.to_thread(journal.release, report.end)  # nothing is being written
            start = journal.read_position
            if report.end > report.read_from:
                log.warning(
                    "mqtt source %s: the checkpoint was written with the journal off; the "
                    "%d bytes journaled before are older than it and were deleted",
                    settings.name,
                    report.end - report.read_from,
                )
        self.journal = journal
        if report.missing_bytes:
            log.warning(
                "mqtt source %s: the journal %s starts %d bytes after the checkpoint's "
                "position: those were dropped (journal_max_bytes) before they were applied",
                settings.name,
                directory,
                report.missing_bytes,
            )
        if self._applied is None:
            self._applied = start
        if self._handed is None:
            self._handed = start
        log.info(
            "mqtt source %s: journal %s: %d segments, positions %d..%d; replaying %d bytes",
            settings.name,
            directory,
            journal.segment_count(),
            journal.start,
            report.end,
            report.end - start,
        )
        return journal

    async def _journal_pump(self, client: aiomqtt.Client, journal: Journal) -> None:
        """Journal, then acknowledge, what arrives until the connection drops."""
        messages = client.messages
        paho = client._client  # noqa: SLF001 - manual acknowledgement (see run)
        stale, self._stale = self._stale, 0
        async for message in messages:
            batch = [message]
            try:  # gather what is already waiting, without waiting for more
                while len(messages) > 0 and len(batch) < JOURNAL_BATCH:
                    batch.append(await anext(messages))
            except aiomqtt.MqttError:
                await self._append(journal, batch)  # received: kept, but not acknowledged
                raise
            write = asyncio.ensure_future(self._append(journal, batch))
            try:
                await asyncio.shield(write)
            except asyncio.CancelledError:
                # Stopped while the batch is written in its thread (ingest may already have
                # read it): let the write end and acknowledge what it synced, so a clean
                # stop leaves the broker nothing to send again.
                with contextlib.suppress(JournalWriteError):
                    await write
                    _acknowledge(paho, batch, stale)
                raise
            stale = _acknowledge(paho, batch, stale)
            self.stats.last_success = time.time()
            if self._shedding.failing and len(messages) == 0:
                self._shedding.recovered(
                    "caught up; reconnecting so the broker sends the shed messages again"
                )
                raise _Reconnect

    async def _append(self, journal: Journal, batch: list[aiomqtt.Message]) -> None:
        records = [(m.topic.value, _payload(m)) for m in batch]
        try:
            drop = await asyncio.to_thread(journal.append, records)
        except OSError as exc:
            raise JournalWriteError(
                f"cannot write the journal {journal.directory}: {exc.strerror or exc}"
            ) from exc
        self._wake.set()
        if drop is not None:
            self._dropped(drop, journal)

    def _dropped(self, drop: DropReport, journal: Journal) -> None:
        self.stats.shed += drop.unread_frames
        self._dropping.failed(
            f"the journal is over journal_max_bytes ({journal.max_bytes})",
            detail=f"dropped its oldest {drop.segments} segments ({drop.bytes} bytes), "
            f"{drop.unread_frames} messages in them not yet read by ingest, counted in "
            "simwatch_source_messages_shed_total",
            hint="until a checkpoint catches up, a crash loses what was dropped",
            count=drop.unread_frames,
        )

    async def _feed(self, journal: Journal, sink: Sink) -> None:
        """Hand the journal's frames to ingest in order, as they are written."""
        name = self.settings.name
        while True:
            frames = await asyncio.to_thread(journal.read, MAX_BATCH_PAYLOADS, READ_BYTES)
            if not frames:
                self._wake.clear()
                if journal.read_position >= journal.end:
                    await self._wake.wait()
                continue
            end = frames[-1].end
            await sink.put(
                Batch(
                    source=name,
                    payloads=[f.payload for f in frames],
                    on_applied=self._applier(end),
                )
            )
            self._handed = end

    def _applier(self, end: int) -> Callable[[], Awaitable[None]]:
        async def on_applied() -> None:
            if self._applied is None or end > self._applied:
                self._applied = end

        return on_applied


class _ShedCounter(logging.Filter):
    """Turns aiomqtt's per-message "queue is full" warning into a count."""

    def __init__(self, source: MqttSource) -> None:
        super().__init__()
        self.source = source

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == "Message queue is full. Discarding message.":
            self.source._shed()  # noqa: SLF001 - the filter is the source's own helper
            return False
        return True


def _acknowledge(paho: paho_mqtt.Client, batch: list[aiomqtt.Message], stale: int) -> int:
    """Acknowledge the batch's QoS 1 messages but the first ``stale`` (they came over a
    closed connection: the broker sends them again); the stale ones left."""
    for sent in batch:
        if stale > 0:
            stale -= 1
        elif sent.qos > 0:
            paho.ack(sent.mid, sent.qos)
    return stale


def _refused(code: object) -> bool:
    """Whether a SUBACK code (an int, or a paho ReasonCode with ``.value``) refuses."""
    value = getattr(code, "value", code)
    return isinstance(value, int) and value >= SUBACK_FAILURE


def _payload(message: aiomqtt.Message) -> bytes:
    payload: object = message.payload
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, bytearray | memoryview):
        return bytes(payload)
    return str(payload).encode()
