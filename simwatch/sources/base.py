"""What every source shares: the batch it hands over, its statistics, its contract.

A source is a long-running coroutine (``Source.run``) in the daemon's TaskGroup. It
turns an outside feed into ``Batch``es and puts them on the daemon's bounded queue
(``await sink.put(batch)``: when ingest falls behind, the source waits — backpressure,
never an unbounded buffer). Decoding, validation, dead-lettering and applying happen
once, in the daemon's ingest task, the same for every source.

A source that checkpoints (a file offset, a REST cursor) passes ``on_applied``: the
ingest task calls it after the batch was applied, so a cursor is only ever committed
for records that were applied.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

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
    received: int = 0  # records handed to ingest
    rejected: Counter[str] = field(default_factory=Counter)  # by RejectReason value
    duplicates: int = 0
    errors: int = 0  # failures talking to the outside (connection, HTTP status, I/O)
    last_success: float | None = None  # epoch s of the last successful read/poll
    last_error: str | None = None  # the current failure, None once recovered
    connected: bool = False


Sink = asyncio.Queue[Batch]


class Source(Protocol):
    """The contract of a source; ``run`` returns only when cancelled (shutdown)."""

    stats: SourceStats

    async def run(self, sink: Sink) -> None: ...
