"""The MQTT sink: incidents and SIM state changes published as JSON, for other tools.

Topics, under ``topic_prefix`` (default ``simwatch``):

``simwatch/incidents/events`` (not retained)
    One message per incident change, in the order the engine made them::

        {"event": "opened" | "updated" | "resolved", "at": "2026-11-20T10:15:00Z",
         "incident": {...}}

    ``incident`` is the FORMATS.md incident object (``Incident.to_json()``) as it was at
    that cycle; ``at`` is the time of the change (the cycle's time).
``simwatch/incidents/current`` (retained)
    A JSON array of the incidents open now (oldest id first; ``[]`` when none). It is
    re-published after every cycle with an incident change, on the first live cycle, and
    after every (re)connect, so a subscriber arriving at any time gets the current
    picture at once. Only the newest snapshot is kept: it is never dropped or queued
    twice. (Between changes the numbers in it are those of the last change.)
``simwatch/sims/<iccid>/state`` (not retained unless ``sim_changes_retain = true``)
    One message per SIM whose state changed in a cycle (``sim_changes = true``)::

        {"apn": ..., "country": ..., "partner": ...,   # the SIM's configured dims
         "iccid": "8931...", "state": "silent", "previous": "late",
         "at": "2026-11-20T10:15:00Z", "incident": "inc-0007" | null}

    States are ``simwatch.core.evaluate.STATE_NAMES``; ``incident`` is the open group
    incident whose group contains the SIM, if any. Not retained by default: retained
    per-SIM topics give a new subscriber each SIM's last-known state, but leave one
    retained message per SIM on the broker for ever (clear one by publishing an empty
    retained message to its topic). At most ``sim_changes_max_per_cycle`` per cycle:
    real transitions first, SIMs coming from ``never_seen`` last; the rest are dropped
    and counted (the first live cycle after a start can carry the whole fleet).
``simwatch/status`` (retained)
    ``online`` once connected; ``offline`` at a clean shutdown, and as the last will
    the broker publishes when the connection is lost without a goodbye.

A backlog replayed at start on event time (``cycle.live`` false, thousands of cycles in
a burst) publishes nothing: its incident events and state changes are history. The
incidents still open at its end appear in ``incidents/current`` at the first live cycle.

Delivery: QoS ``qos`` (default 1), at least once. Messages wait in a bounded buffer
(``max_buffer``; when it is full the oldest is dropped and counted in ``stats.dropped``)
and are published in order, in windows of ``WINDOW`` messages; a window is taken from the
buffer only once the broker acknowledged all of it, so a connection lost mid-window
re-publishes the window after reconnecting (a subscriber may see a duplicate). While the
broker is away the sink reconnects with capped, jittered backoff; failure and recovery
are each logged once. At shutdown ``close()`` connects once more to publish what is left
and ``offline``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiomqtt
import numpy as np
import orjson

from simwatch.core.evaluate import STATE_NAMES
from simwatch.core.rhythm import SimState
from simwatch.core.timeutil import format_rfc3339
from simwatch.shell.logs import FailureLog
from simwatch.shell.mqtt import Reconnector, load_tls, make_client
from simwatch.shell.sink_contract import SinkStats

if TYPE_CHECKING:
    import random
    import ssl
    from collections.abc import Callable

    from simwatch.core.engine import Engine, StateChanges
    from simwatch.shell.settings import MqttSinkSettings
    from simwatch.shell.sink_contract import Cycle

log = logging.getLogger(__name__)

WINDOW = 100  # messages published concurrently, then acknowledged together
PUBLISH_TIMEOUT_S = 10.0  # connect (CONNACK) and each publish (PUBACK) time limit
ONLINE = b"online"
OFFLINE = b"offline"
NEVER_SEEN = int(SimState.NEVER_SEEN)


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    retain: bool = False


class MqttSink:
    """Publishes incident events, the open incidents and SIM state changes (see module)."""

    def __init__(
        self,
        settings: MqttSinkSettings,
        *,
        password: str | None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self._password = password
        self._clock = clock
        self._reconnect = Reconnector(settings, log, "mqtt sink", rng=rng)
        self.stats = SinkStats(name="mqtt", kind="mqtt")
        prefix = settings.topic_prefix
        self.events_topic = f"{prefix}/incidents/events"
        self.current_topic = f"{prefix}/incidents/current"
        self.status_topic = f"{prefix}/status"
        self._sims_prefix = f"{prefix}/sims/"
        self._buffer: deque[Message] = deque()
        self._inflight: list[Message] = []  # the window being published now
        self._current: bytes | None = None  # the newest open-incidents snapshot
        self._current_pending = False  # the snapshot still has to be published
        self._live = False  # a live cycle has been seen
        self._wake = asyncio.Event()
        self._tls: ssl.SSLContext | None = None
        # the buffer is full: dropping (logged when it starts and when it drained)
        self._dropping = FailureLog(log, "mqtt sink", noun="dropped message")
        self._capped_logged = False

    # ---- the cycle (sync, on the loop) ----------------------------------------------------

    def on_cycle(self, cycle: Cycle) -> None:
        """Queue what changed in a live cycle; a backlog cycle publishes nothing."""
        if not cycle.live:
            return
        result = cycle.result
        for change in result.changes:
            doc = {
                "event": change.kind,
                "at": format_rfc3339(change.at),
                "incident": change.incident.to_json(),
            }
            self._push(Message(self.events_topic, orjson.dumps(doc)))
        if result.changes or not self._live:
            self._snapshot(cycle.engine)
        self._live = True
        if self.settings.sim_changes and len(result.state_changes):
            self._state_changes(cycle.engine, result.state_changes, format_rfc3339(cycle.now))
        self._count_buffered()
        self._wake.set()

    def _snapshot(self, engine: Engine) -> None:
        incidents = sorted(engine.incidents.open.values(), key=lambda i: i.id)
        self._current = orjson.dumps([i.to_json() for i in incidents])
        self._current_pending = True

    def _state_changes(self, engine: Engine, changes: StateChanges, at: str) -> None:
        rows, old, new = changes.rows, changes.old, changes.new
        cap = self.settings.sim_changes_max_per_cycle
        if len(rows) > cap:
            # real transitions first; SIMs merely coming from never_seen last
            keep = np.argsort(old == NEVER_SEEN, kind="stable")[:cap]
            self.stats.dropped += len(rows) - cap
            if not self._capped_logged:
                log.info(
                    "mqtt sink: %d SIM state changes in one cycle, more than "
                    "sim_changes_max_per_cycle=%d; the rest are dropped (counted in dropped)",
                    len(rows),
                    cap,
                )
                self._capped_logged = True
            rows, old, new = rows[keep], old[keep], new[keep]
        retain = self.settings.sim_changes_retain
        groups = [
            (incident.id, incident.dims)
            for incident in sorted(engine.incidents.open.values(), key=lambda i: i.id)
            if incident.kind == "group"
        ]
        iccid_of = engine.state.index.iccid
        for row, before, after in zip(rows.tolist(), old.tolist(), new.tolist(), strict=True):
            dims = engine.sim_dims(row)
            iccid = iccid_of(row)
            incident = next(
                (gid for gid, gdims in groups if all(dims.get(k) == v for k, v in gdims.items())),
                None,
            )
            doc: dict[str, object] = {
                **dims,
                "iccid": iccid,
                "state": STATE_NAMES[after],
                "previous": STATE_NAMES[before],
                "at": at,
                "incident": incident,
            }
            self._push(Message(f"{self._sims_prefix}{iccid}/state", orjson.dumps(doc), retain))

    def _push(self, message: Message) -> None:
        if len(self._buffer) >= self.settings.max_buffer:
            self._drop_oldest(len(self._buffer) - self.settings.max_buffer + 1)
        self._buffer.append(message)

    def _drop_oldest(self, count: int) -> None:
        for _ in range(count):
            self._buffer.popleft()
        self.stats.dropped += count
        self._dropping.failed(
            f"buffer full ({self.settings.max_buffer} messages); dropping the oldest "
            "(counted in dropped)",
            count=count,
        )

    def _count_buffered(self) -> None:
        self.stats.buffered = (
            len(self._buffer) + len(self._inflight) + (1 if self._current_pending else 0)
        )

    # ---- delivery -------------------------------------------------------------------------

    async def run(self) -> None:
        """Publish until cancelled, reconnecting with backoff while the broker is away."""

        async def session() -> None:
            async with await self._client() as client:
                await client.publish(self.status_topic, ONLINE, qos=1, retain=True)
                self._succeeded(0)
                self._reconnect.connected()
                # retained, but the broker may have lost it (no persistence)
                self._current_pending = self._current is not None
                await self._serve(client)

        def failed(exc: Exception) -> tuple[str, str]:
            self._failed(exc)
            return self._reconnect.unavailable, self.stats.last_error or ""

        def hint() -> str:
            return f"{self.stats.buffered} messages buffered; reconnecting with backoff"

        await self._reconnect.run(session, failed, hint=hint)

    async def close(self) -> None:
        """Shutdown: connect once more, publish what is left, then ``offline``."""
        try:
            async with await self._client() as client:
                await self._send(client, until_empty=True)
                await client.publish(self.status_topic, OFFLINE, qos=1, retain=True)
        except aiomqtt.MqttError as exc:
            self._failed(exc)
            log.warning(
                "mqtt sink: last flush to %s:%d failed (%s); %d messages not delivered",
                self.settings.host,
                self.settings.port,
                self.stats.last_error,
                self.stats.buffered,
            )

    async def _client(self) -> aiomqtt.Client:
        """A new client per connection: our buffer alone decides what is re-published."""
        if self._tls is None:
            self._tls = await load_tls(self.settings)
        client = make_client(
            self.settings,
            password=self._password,
            tls=self._tls,
            clean_session=True,  # a publisher keeps nothing on the broker
            will=aiomqtt.Will(self.status_topic, OFFLINE, qos=1, retain=True),
            timeout=PUBLISH_TIMEOUT_S,
            max_inflight_messages=WINDOW,
        )
        client.pending_calls_threshold = WINDOW + 2  # a full window is expected, not a leak
        return client

    async def _serve(self, client: aiomqtt.Client) -> None:
        """Publish while connected; raises ``MqttError`` when the connection is lost."""
        watcher = asyncio.create_task(_until_disconnected(client))
        sender = asyncio.create_task(self._send(client, until_empty=False))
        try:
            done, _ = await asyncio.wait((watcher, sender), return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
            sender.cancel()
            await asyncio.gather(watcher, sender, return_exceptions=True)
        for task in done:
            task.result()  # the MqttError that ended the connection
        raise aiomqtt.MqttError("publishing stopped")  # pragma: no cover - sender never returns

    async def _send(self, client: aiomqtt.Client, *, until_empty: bool) -> None:
        """Publish the snapshot and the buffer in order; wait for more unless ``until_empty``."""
        qos = self.settings.qos
        while True:
            if self._current_pending and self._current is not None:
                self._current_pending = False
                try:
                    await client.publish(self.current_topic, self._current, qos=qos, retain=True)
                except BaseException:
                    self._current_pending = True
                    raise
                self._succeeded(1)
                continue
            if not self._buffer:
                self._dropping.recovered("buffer drained")
                if until_empty:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            window = [self._buffer.popleft() for _ in range(min(WINDOW, len(self._buffer)))]
            self._inflight = window
            try:
                await _publish_all(client, window, qos)
            except BaseException:
                self._buffer.extendleft(reversed(window))  # re-published after reconnecting
                excess = len(self._buffer) - self.settings.max_buffer
                if excess > 0:
                    self._drop_oldest(excess)
                raise
            finally:
                self._inflight = []
                self._count_buffered()
            self._succeeded(len(window))

    def _succeeded(self, sent: int) -> None:
        stats = self.stats
        stats.sent += sent
        stats.up = True
        stats.last_error = None
        stats.last_success = self._clock()
        self._count_buffered()

    def _failed(self, exc: BaseException) -> None:
        stats = self.stats
        stats.up = False
        stats.errors += 1
        stats.last_error = str(exc) or type(exc).__name__
        self._count_buffered()


async def _publish_all(client: aiomqtt.Client, window: list[Message], qos: int) -> None:
    """Publish a window concurrently; one ``MqttError`` if any publish failed."""
    try:
        async with asyncio.TaskGroup() as group:
            for message in window:
                group.create_task(
                    client.publish(message.topic, message.payload, qos=qos, retain=message.retain)
                )
    except ExceptionGroup as errors:
        mqtt_errors, others = errors.split(aiomqtt.MqttError)
        if others is not None or mqtt_errors is None:
            raise
        raise aiomqtt.MqttError(f"publish failed: {mqtt_errors.exceptions[0]}") from errors


async def _until_disconnected(client: aiomqtt.Client) -> None:
    """Return never; raise ``MqttError`` as soon as the connection is lost.

    Nothing is subscribed, so the message iterator yields nothing: it only ends, with an
    error, when aiomqtt sees the disconnection (also while there is nothing to publish).
    """
    try:
        async for _message in client.messages:
            pass
    except aiomqtt.MqttError as exc:
        cause = exc.__cause__
        raise aiomqtt.MqttError(f"connection lost ({cause or exc})") from exc
    raise aiomqtt.MqttError("message iterator ended")  # pragma: no cover - it never ends
