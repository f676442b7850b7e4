"""``[[sources.nats]]``: records from a NATS JetStream stream, one partition per subject.

Publishers put FORMATS.md records on ``<subject_prefix>.<p>`` with
``p = shard_of(iccid, partitions)`` (``core.merge``; ``partition_subject`` below), one
record, a JSON array or NDJSON lines per message. The stream (``stream``, subjects
``<subject_prefix>.*``) keeps them for ``max_age_s``.

Per partition this source reads one durable pull consumer ``<durable>-p<p>`` (filter
subject ``<subject_prefix>.<p>``, ack policy *all*), one reader task per partition.

Nothing lost, nothing applied twice (docs/scaling.md):

- The **cursor** (in the daemon's checkpoint, with the engine state it matches) is, per
  partition, the stream sequence of the last message applied. A restore recreates the
  partition's consumer to start right after it, whatever the consumer had acknowledged.
- A message is **acknowledged once a checkpoint on disk covers it** (``checkpointed``):
  the consumer's ack floor never passes what a checkpoint holds, so a node without its
  checkpoint file (or a node taking a partition over) still finds every message after
  the ack floor in the stream. Without checkpoints, a batch is acknowledged once applied.
  The shutdown's last checkpoint too: a ``run`` stopped by the shutdown leaves the
  connection open for its acknowledgements and the daemon closes it afterwards
  (``close``, the ``Closable`` contract).
- A redelivery (``ack_wait_s`` passed before the checkpoint) of a message this process
  already handed to ingest is skipped by its stream sequence.

Bad records are the daemon's business as for every source: decoded in ingest,
dead-lettered with the reason, counted, and acknowledged with their message.

The partitions read can change while running (``assign``): the cluster gives a node its
partitions and the stream sequence each starts after (``service.cluster``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Final

import nats
import nats.errors
import nats.js.errors
from nats.js import api

from simwatch.core.merge import shard_of
from simwatch.shell import nats as natsconn
from simwatch.shell.logs import FailureLog
from simwatch.shell.source_contract import Batch, SourceStats
from simwatch.shell.tasks import raise_if_cancelled

if TYPE_CHECKING:
    from collections.abc import Mapping

    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.js.client import JetStreamContext

    from simwatch.shell.settings.nats import NatsSourceSettings
    from simwatch.shell.source_contract import Sink

log = logging.getLogger("simwatch")

_ACK: Final = b"+ACK"


def partition_of(iccid: str, partitions: int) -> int:
    """The partition of a SIM's records: ``core.merge.shard_of`` (CRC-32 of the ICCID)."""
    return shard_of(iccid, partitions)


def partition_subject(prefix: str, iccid: str, partitions: int) -> str:
    """The subject a publisher puts a SIM's records on: ``<prefix>.<partition>``."""
    return f"{prefix}.{partition_of(iccid, partitions)}"


def parse_cursor(cursor: object) -> dict[int, int]:
    """``{"<partition>": <stream sequence>}`` as ints; malformed entries are dropped."""
    out: dict[int, int] = {}
    if isinstance(cursor, dict):
        for key, value in cursor.items():
            if isinstance(key, str) and key.isdigit() and type(value) is int and value >= 0:
                out[int(key)] = value
    return out


class NatsSource:
    """JetStream pull consumers, one per owned partition (see the module docstring)."""

    def __init__(self, settings: NatsSourceSettings, *, ack_on_checkpoint: bool = True) -> None:
        self.settings = settings
        self.stats = SourceStats(name=settings.name, kind="nats")
        # acknowledge when a checkpoint covers a message (True) or once applied (False)
        self.ack_on_checkpoint = ack_on_checkpoint
        self._applied: dict[int, int] = {}  # partition -> last applied stream sequence
        self._handed: dict[int, int] = {}  # partition -> last sequence handed to ingest
        self._starts: dict[int, int] = {}  # partition -> start after this sequence
        self._acks: dict[int, list[tuple[int, str]]] = {}  # applied, not yet acknowledged
        self._covered: dict[int, int] = {}  # partition -> last sequence a checkpoint holds
        owned = settings.owned or list(range(settings.partitions))
        self._wanted: set[int] = set(owned)
        self._readers: dict[int, asyncio.Task[None]] = {}
        self._changed = asyncio.Event()
        self._nc: Client | None = None
        self._failure = FailureLog(log, f"source {settings.name}")

    # ---- Resumable / Checkpointed ----------------------------------------------------------

    def cursor(self) -> object | None:
        if not self._applied:
            return None
        return {str(p): seq for p, seq in sorted(self._applied.items())}

    def restore(self, cursor: object) -> None:
        """Start each partition right after the sequence the checkpoint applied."""
        positions = parse_cursor(cursor)
        self._starts.update(positions)
        self._applied.update(positions)
        self._handed.update(positions)

    async def checkpointed(self, cursor: object) -> None:
        """Acknowledge, per partition, the last applied message the checkpoint covers."""
        for partition, seq in parse_cursor(cursor).items():
            if partition in self._wanted:
                self._covered[partition] = max(seq, self._covered.get(partition, 0))
            await self._ack_through(partition, seq)

    # ---- the partitions read ---------------------------------------------------------------

    @property
    def partitions(self) -> frozenset[int]:
        return frozenset(self._wanted)

    def applied(self, partition: int) -> int | None:
        """The stream sequence of the partition's last applied message (None: none yet)."""
        return self._applied.get(partition)

    def assign(self, partitions: Mapping[int, int | None]) -> None:
        """Read exactly these partitions. A partition new to this source starts after the
        sequence its checkpoint restored, else after the given one (None: from its
        consumer's ack floor). A partition no longer listed stops being read and
        forgets its position (another node owns it now)."""
        for partition, start in partitions.items():
            new = partition not in self._wanted and partition not in self._starts
            if new and start is not None:
                self._starts[partition] = start
                self._applied[partition] = start
                self._handed[partition] = start
        for table in (self._applied, self._handed, self._starts, self._acks, self._covered):
            for gone in [p for p in table if p not in partitions]:
                del table[gone]
        self._wanted = set(partitions)
        self._changed.set()

    # ---- run ---------------------------------------------------------------------------------

    async def run(self, sink: Sink) -> None:
        cfg = self.settings
        nc = await natsconn.connect(
            cfg.servers,
            f"simwatch {cfg.name}",
            error_cb=self._on_error,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
        )
        self._nc = nc
        self.stats.connected = True
        stopped = False
        try:
            js = nc.jetstream()
            await self._ensure_stream(js)
            self._failure.recovered("connected")
            async with asyncio.TaskGroup() as tg:
                while True:
                    self._changed.clear()
                    for partition in sorted(self._wanted - self._readers.keys()):
                        self._readers[partition] = tg.create_task(
                            self._read(js, partition, sink), name=f"{cfg.name}:p{partition}"
                        )
                    for partition in sorted(self._readers.keys() - self._wanted):
                        self._readers.pop(partition).cancel()
                    await self._changed.wait()
        except asyncio.CancelledError:
            stopped = True
            raise
        finally:
            self._readers.clear()
            self.stats.connected = False
            if not (stopped and self.ack_on_checkpoint):
                self._nc = None
                await natsconn.close(nc, f"source {cfg.name}")
            # else the shutdown's last checkpoint acknowledges on it, then ``close``

    async def close(self) -> None:
        """After the daemon's last checkpoint, whose acknowledgements went out on the
        connection a stopped ``run`` left open: close it (``Closable``)."""
        nc, self._nc = self._nc, None
        if nc is not None:
            await natsconn.close(nc, f"source {self.settings.name}")

    async def _ensure_stream(self, js: JetStreamContext) -> None:
        cfg = self.settings
        try:
            await js.stream_info(cfg.stream)
        except nats.js.errors.NotFoundError:
            if not cfg.create_stream:
                raise
            try:
                await js.add_stream(
                    name=cfg.stream,
                    subjects=[f"{cfg.subject_prefix}.*"],
                    max_age=cfg.max_age_s,
                    storage=api.StorageType.FILE,
                )
            except nats.js.errors.BadRequestError:  # created meanwhile by someone else
                await js.stream_info(cfg.stream)
                return
            log.info("source %s: created the stream %s", cfg.name, cfg.stream)

    async def _read(self, js: JetStreamContext, partition: int, sink: Sink) -> None:
        cfg = self.settings
        durable = f"{cfg.durable}-p{partition}"
        start = self._starts.pop(partition, None)
        if start is None:
            # a reader restarted (the connection failed): from what is acknowledged, so the
            # messages its lost fetches held come again now, not after ack_wait_s (those
            # ingest already has are skipped by their sequence)
            start = self._covered.get(partition) if self.ack_on_checkpoint else None
            if start is None and not self.ack_on_checkpoint:
                start = self._applied.get(partition)
        config = api.ConsumerConfig(
            ack_policy=api.AckPolicy.ALL,
            ack_wait=cfg.ack_wait_s,
            max_ack_pending=cfg.max_ack_pending,
            max_deliver=-1,
        )
        if start is not None:  # the checkpoint's position wins over the consumer's
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await js.delete_consumer(cfg.stream, durable)
            config.deliver_policy = api.DeliverPolicy.BY_START_SEQUENCE
            config.opt_start_seq = start + 1
        sub = await js.pull_subscribe(
            cfg.subject(partition), durable=durable, stream=cfg.stream, config=config
        )
        log.info(
            "source %s: reading partition %d (%s)",
            cfg.name,
            partition,
            f"after sequence {start}" if start is not None else "from its consumer",
        )
        try:
            while True:
                raise_if_cancelled()  # a publish may have swallowed a cancellation (shell.tasks)
                try:
                    messages = await sub.fetch(cfg.fetch_batch, timeout=cfg.fetch_timeout_s)
                except TimeoutError:  # nats-py's, or a plain one when the deadline ran out
                    continue
                await self._hand_over(partition, messages, sink)
        finally:
            with contextlib.suppress(Exception):  # the connection may be gone already
                await sub.unsubscribe()

    async def _hand_over(self, partition: int, messages: list[Msg], sink: Sink) -> None:
        self.stats.last_success = time.time()
        handed = self._handed.get(partition, 0)
        fresh = [m for m in messages if m.metadata.sequence.stream > handed]
        if not fresh:
            return  # redeliveries of what ingest has (acknowledged with the checkpoint)
        last = fresh[-1]
        seq, reply = last.metadata.sequence.stream, last.reply
        self._handed[partition] = seq

        async def applied() -> None:
            if partition not in self._wanted:
                return  # moved away meanwhile: its new owner acknowledges
            self._applied[partition] = max(seq, self._applied.get(partition, 0))
            if self.ack_on_checkpoint:
                self._acks.setdefault(partition, []).append((seq, reply))
            else:
                await self._ack(reply)

        await sink.put(
            Batch(source=self.settings.name, payloads=[m.data for m in fresh], on_applied=applied)
        )

    async def _ack_through(self, partition: int, seq: int) -> None:
        pending = self._acks.get(partition)
        if not pending:
            return
        covered = [entry for entry in pending if entry[0] <= seq]
        if not covered:
            return
        del pending[: len(covered)]
        await self._ack(covered[-1][1])  # ack policy all: acknowledges every one before it

    async def _ack(self, reply: str) -> None:
        nc = self._nc
        if nc is None or not reply:
            return  # reconnecting: the message is redelivered, skipped, acked later
        try:
            await nc.publish(reply, _ACK)
        except nats.errors.Error as exc:
            self.stats.errors += 1
            log.warning("source %s: acknowledging failed: %s", self.settings.name, exc)

    # ---- connection callbacks ------------------------------------------------------------------

    async def _on_error(self, exc: Exception) -> None:
        self.stats.errors += 1
        self.stats.last_error = str(exc) or type(exc).__name__
        self._failure.failed(f"NATS error: {self.stats.last_error}", hint="reconnecting")

    async def _on_disconnected(self) -> None:
        self.stats.connected = False

    async def _on_reconnected(self) -> None:
        self.stats.connected = True
        self.stats.last_error = None
        self._failure.recovered("reconnected")


__all__ = ["NatsSource", "parse_cursor", "partition_of", "partition_subject"]
