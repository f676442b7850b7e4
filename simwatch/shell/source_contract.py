"""What every source shares: the batch it hands over, its statistics, its contract.

A source is a long-running coroutine (``Source.run``) in the daemon's TaskGroup. It
turns an outside feed into ``Batch``es and puts them on the daemon's bounded queue
(``await sink.put(batch)``: when ingest falls behind, the source waits — backpressure,
never an unbounded buffer). Decoding, validation, dead-lettering and applying happen
once, in the daemon's ingest task, the same for every source.

A source that checkpoints (a file offset, a REST cursor) passes ``on_applied``: the
ingest task calls it after the batch was applied, so a cursor is only ever committed
for records that were applied.

A source that can resume also implements ``Resumable``: ``cursor()`` is the position of
what ingest has applied (a JSON-able value, None while the source does not know it yet)
and goes into the daemon's checkpoint together with the engine state; ``restore(cursor)``
is called before ``run`` when the daemon restored a checkpoint, and that cursor wins over
the source's own state file (which is ahead of the checkpoint after a crash).

A source that keeps data until a checkpoint covers it (the MQTT journal) also implements
``Checkpointed``: after a checkpoint is on disk the daemon calls ``checkpointed(cursor)``
with the cursor that checkpoint holds, and the source may free what lies before it.

A source whose ``checkpointed`` needs something ``run`` opened (the NATS source
acknowledges on its connection) implements ``Closable``: a ``run`` stopped by the
shutdown may leave it open, and the daemon calls ``close()`` after the last checkpoint
and its ``checkpointed``, so what that checkpoint covers is acknowledged too.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping, Sequence


@dataclass(frozen=True, slots=True)
class Batch:
    """Records from one source, in one of three shapes (any may be empty)."""

    source: str  # the source's configured name, e.g. "mqtt:broker-a" (a metric label)
    lines: Sequence[bytes] = ()  # NDJSON lines, one record each (file source)
    payloads: Sequence[bytes] = ()  # whole payloads: an object, an array or NDJSON (MQTT)
    objects: Sequence[Mapping[str, object]] = ()  # FORMATS.md-shaped dicts (REST adapters)
    on_applied: Callable[[], Awaitable[None]] | None = None  # commit a cursor/offset


@dataclass(slots=True)
class SourceStats:
    """Per-source counters, read by the API and the /metrics collector."""

    name: str
    kind: str  # "simulator" | "file" | "mqtt" | "http"
    received: int = 0  # records decoded from the source's batches (counted by ingest)
    rejected: Counter[str] = field(default_factory=Counter)  # by RejectReason value
    duplicates: int = 0
    shed: int = 0  # messages dropped unread because the source's bounded queue was full
    errors: int = 0  # failures talking to the outside (connection, HTTP status, I/O)
    last_success: float | None = None  # epoch s of the last successful read/poll
    last_error: str | None = None  # the current failure, None once recovered
    connected: bool = False


Sink = asyncio.Queue[Batch]


class Source(Protocol):
    """The contract of a source; ``run`` returns only when cancelled (shutdown)."""

    stats: SourceStats

    async def run(self, sink: Sink) -> None: ...


@runtime_checkable
class Resumable(Protocol):
    """A source whose applied position can be checkpointed and restored."""

    def cursor(self) -> object | None:
        """What ingest has applied, JSON-able (None: unknown yet, keep the source's own)."""
        ...

    def restore(self, cursor: object) -> None:
        """Resume from ``cursor`` (called before ``run``)."""
        ...


@runtime_checkable
class Checkpointed(Protocol):
    """A source that frees what a checkpoint on disk has passed (the MQTT journal)."""

    async def checkpointed(self, cursor: object) -> None:
        """``cursor`` (an earlier ``cursor()``) is in a checkpoint on disk now."""
        ...


@runtime_checkable
class Closable(Protocol):
    """A source that keeps what ``checkpointed`` needs open past ``run`` (its connection)
    until the daemon's last checkpoint at shutdown has been acknowledged."""

    async def close(self) -> None:
        """Release what ``run`` left open for the last checkpoint (nothing: a no-op)."""
        ...
