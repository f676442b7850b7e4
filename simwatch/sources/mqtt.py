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
once, in the daemon's ingest task. Messages that are already waiting in the client's
queue are gathered into one ``Batch`` (up to ``MAX_BATCH_PAYLOADS``) without waiting for
more, so a burst (a backlog after a reconnect) costs one queue hand-over, not hundreds.

Delivery guarantee: aiomqtt 2.5 has no manual acknowledgement (paho acknowledges a QoS 1
message as soon as its ``on_message`` callback returns, and aiomqtt does not expose
paho's ``manual_ack``). A message is therefore acknowledged on receipt, before ingest
applied it: a crash (process killed) between receipt and apply loses what was in flight
— at most the client's queue and the daemon's queue — and, since MQTT has no cursor to
re-read from, the messages applied after the daemon's last checkpoint. A shutdown that
does not drain the daemon's queue loses the queued ones too. Acking only after a
checkpoint would stall on the broker's in-flight window (Mosquitto: 20 messages); a
local journal of received payloads is left for later (docs/persistence.md).

Backpressure: when ingest falls behind, ``sink.put`` waits; meanwhile aiomqtt keeps
reading the socket into its own (unbounded) queue. Bounding that queue would make
aiomqtt drop messages it already acknowledged, so it stays unbounded.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from typing import TYPE_CHECKING, Protocol

import aiomqtt

from simwatch.sources.base import Batch, SourceStats

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from simwatch.config import MqttConnectionSettings, MqttSourceSettings
    from simwatch.sources.base import Sink

log = logging.getLogger(__name__)


class Messages(Protocol):
    """What ``_pump`` needs of ``aiomqtt.Client.messages``: async iteration and a length."""

    def __aiter__(self) -> AsyncIterator[aiomqtt.Message]: ...

    async def __anext__(self) -> aiomqtt.Message: ...

    def __len__(self) -> int: ...


MAX_BATCH_PAYLOADS = 100  # payloads gathered into one Batch when they are already waiting
SUBACK_FAILURE = 0x80  # a SUBACK reason code at or above this refuses the subscription


def backoff_delay(attempt: int, min_s: float, max_s: float, rng: random.Random) -> float:
    """The wait before reconnect attempt ``attempt`` (0-based): capped, fully jittered.

    The ceiling doubles from ``min_s`` with each attempt up to ``max_s``; the delay is
    drawn uniformly from ``[0, ceiling]`` ("full jitter"), so a fleet of clients that lost
    the same broker does not come back in lock-step.
    """
    ceiling = min(max_s, min_s * 2.0 ** min(attempt, 63))
    return rng.uniform(0.0, ceiling)


def tls_context(settings: MqttConnectionSettings) -> ssl.SSLContext:
    """A client TLS context from the configured files (blocking: call via to_thread)."""
    context = ssl.create_default_context(
        cafile=str(settings.ca_file) if settings.ca_file is not None else None
    )
    if settings.cert_file is not None:
        context.load_cert_chain(
            str(settings.cert_file),
            str(settings.key_file) if settings.key_file is not None else None,
        )
    return context


class MqttSource:
    """Subscribes to ``settings.topics`` and puts every payload on the sink."""

    def __init__(
        self,
        settings: MqttSourceSettings,
        *,
        password: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        if password is None and settings.password is not None:
            password = settings.password.get_secret_value()
        self._password = password
        self._rng = rng if rng is not None else random.Random()  # noqa: S311 - jitter, not crypto
        self.stats = SourceStats(name=settings.name, kind="mqtt")
        self._shedding = False  # a run of shed messages is under way (logged once)

    async def run(self, sink: Sink) -> None:
        """Receive until cancelled, reconnecting with backoff on any MQTT failure."""
        settings = self.settings
        context = await asyncio.to_thread(tls_context, settings) if settings.tls else None
        client = aiomqtt.Client(
            settings.host,
            settings.port,
            identifier=settings.client_id,
            clean_session=settings.clean_session,
            username=settings.username,
            password=self._password if settings.username is not None else None,
            tls_context=context,
            max_queued_incoming_messages=settings.max_queued_messages,
            logger=self._client_logger(),
        )
        attempt = 0
        failing = False
        try:
            while True:
                try:
                    async with client:
                        await self._subscribe(client)
                        self.stats.connected = True
                        self.stats.last_error = None
                        self.stats.last_success = time.time()
                        if failing:
                            log.info(
                                "mqtt source %s: connected again to %s:%d",
                                settings.name,
                                settings.host,
                                settings.port,
                            )
                            failing = False
                        attempt = 0
                        await self._pump(client.messages, sink)
                except aiomqtt.MqttError as exc:
                    task = asyncio.current_task()
                    if task is not None and task.cancelling():
                        # A failed disconnect while shutting down replaced the cancellation.
                        raise asyncio.CancelledError from exc
                    self.stats.connected = False
                    self.stats.errors += 1
                    self.stats.last_error = str(exc) or type(exc).__name__
                    if not failing:
                        log.warning(
                            "mqtt source %s: %s:%d unavailable (%s); reconnecting with backoff",
                            settings.name,
                            settings.host,
                            settings.port,
                            self.stats.last_error,
                        )
                        failing = True
                    delay = backoff_delay(
                        attempt, settings.reconnect_min_s, settings.reconnect_max_s, self._rng
                    )
                    attempt += 1
                    await asyncio.sleep(delay)
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
        if not self._shedding:
            self._shedding = True
            log.warning(
                "mqtt source %s: ingest is behind and %d messages are waiting; shedding "
                "new messages (counted in simwatch_source_messages_shed_total)",
                self.settings.name,
                self.settings.max_queued_messages,
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

    async def _pump(self, messages: Messages, sink: Sink) -> None:
        """Hand messages on until the connection drops (``MqttError``)."""
        name = self.settings.name
        async for message in messages:
            payloads = [_payload(message)]
            # Gather what is already waiting, without waiting for more.
            while len(messages) > 0 and len(payloads) < MAX_BATCH_PAYLOADS:
                payloads.append(_payload(await anext(messages)))
            await sink.put(Batch(source=name, payloads=payloads))
            self.stats.last_success = time.time()
            if self._shedding and len(messages) == 0:
                self._shedding = False
                log.info("mqtt source %s: caught up; no longer shedding", name)


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
