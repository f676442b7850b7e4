"""The InfluxDB sink: per-SIM usage and state changes, group figures and incident changes
as line-protocol points, written with the InfluxDB v2 write API (``/api/v2/write``).

The schema is ``simwatch.sinks.influx.schema`` (docs/influxdb.md explains it). Points
carry the evaluation cycle's time in seconds; the ICCID is a tag, so there is one series
per SIM and measurement.

How a cycle becomes points without stalling the event loop:

- ``on_cycle`` does vectorised numpy work only: which SIMs' data advanced since the
  previous cycle (one remembered ``month_bytes`` and ``month`` per SIM, 10 B/SIM), the
  state changes the engine reports, and the group figures (``simwatch.core.groups``, the
  ``DEFAULT_TOP_N`` largest values per dimension plus ``_other``: the same figures as
  the ``simwatch_group_*`` metrics and the API's groups view). Per-SIM points are kept
  as numpy *chunks* (rows, tag codes, field values gathered now, while the engine is
  consistent; ``simwatch.sinks.influx.points``); the group and incident points (a few
  hundred at most) are formatted at once.
- ``run`` turns the oldest ``batch_size`` points into line protocol (at most
  ``FORMAT_STEP`` lines between two yields to the loop) and writes them. A batch is
  written when ``batch_size`` points wait or ``flush_interval_s`` after the oldest
  waiting point arrived.

The buffer is bounded: the points waiting plus the batch being written never exceed
``max_buffer_points``. When a cycle brings more than fits, the **oldest** waiting points
are dropped (counted in ``stats.dropped``, logged once): after an outage the recent
history is what dashboards and on-call need, and a replayed backlog keeps its newest
end. The batch being written is never dropped for room, so a write that succeeds
always counts as sent.

Writes are retried while the server is away (connection errors, timeouts, 5xx, 429,
and 401/403/404, which an operator fixes on the server side) with the shell's backoff
(``simwatch.shell.backoff``: capped exponential with equal jitter between ``retry_min_s``
and ``retry_max_s``); the batch is kept. A failure is logged when it starts (and when
its reason changes), its recovery once (``simwatch.shell.logs.FailureLog``).
A batch the server refuses as malformed (400, 413, 422) is dropped and counted: sending
it again cannot succeed. The client does not retry by itself (its async write API has
no retry layer): this sink owns retries. A point written twice (a write that succeeded
but whose answer was lost) overwrites itself: same series, same time, same values.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections import deque
from typing import TYPE_CHECKING, Final

import aiohttp
import numpy as np
from influxdb_client.client.exceptions import InfluxDBError
from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
from influxdb_client.domain.write_precision import WritePrecision

from simwatch.core.groups import DEFAULT_TOP_N
from simwatch.shell.backoff import Backoff
from simwatch.shell.logs import FailureLog
from simwatch.shell.sink_contract import Cycle, SinkStats
from simwatch.sinks.influx.points import (
    Chunk,
    Lines,
    SimRows,
    SimTags,
    StateChunk,
    UsageChunk,
    UsageTracker,
    escape_tag,
    float_field,
    group_lines,
    incident_lines,
    string_field,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from simwatch.core.engine import Engine
    from simwatch.shell.settings import InfluxSinkSettings

log = logging.getLogger(__name__)

KIND: Final = "influxdb"
FORMAT_STEP: Final = 1000  # lines formatted between two yields to the loop (~3 ms)
GROUP_TOP_N: Final = DEFAULT_TOP_N  # values per dimension written per cycle; the rest: _other
REJECTED_STATUSES: Final = frozenset({400, 413, 422})  # the batch itself is bad: drop it

__all__ = [
    "FORMAT_STEP",
    "GROUP_TOP_N",
    "KIND",
    "REJECTED_STATUSES",
    "InfluxSink",
    "UsageTracker",
    "escape_tag",
    "float_field",
    "group_lines",
    "incident_lines",
    "string_field",
]


# ---- the sink ------------------------------------------------------------------------------


class _Entry:
    """A chunk in the buffer and the range of its points still waiting."""

    __slots__ = ("chunk", "start", "stop")

    def __init__(self, chunk: Chunk, start: int, stop: int) -> None:
        self.chunk = chunk
        self.start = start
        self.stop = stop


class InfluxSink:
    """Writes the schema of ``simwatch.sinks.influx.schema`` to InfluxDB v2 (module docstring)."""

    def __init__(
        self,
        settings: InfluxSinkSettings,
        *,
        token: str | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.token = token
        self.clock = clock
        self.stats = SinkStats(name=KIND, kind=KIND)
        self.max_points = settings.max_buffer_points
        self.batch_size = min(settings.batch_size, settings.max_buffer_points)
        self.usage = UsageTracker()
        self._queue: deque[_Entry] = deque()
        self._queued = 0  # points waiting in _queue
        self._pending: list[_Entry] = []  # the batch being written (never dropped for room)
        self._pending_points = 0
        self._payload: bytes | None = None  # the pending batch in line protocol, once built
        self._first_queued_at = 0.0  # monotonic time the oldest waiting point arrived
        self._wake = asyncio.Event()
        self._cycles = 0
        self._writes = FailureLog(log, f"influxdb sink: writes to {settings.url}")
        self._rejecting = False  # a refused batch was logged and no write succeeded since
        self._dropping = False  # a drop was logged and the buffer has not drained since
        self._backoff = Backoff(settings.retry_min_s, settings.retry_max_s)

    # ---- on the loop, after every cycle ---------------------------------------------------

    def on_cycle(self, cycle: Cycle) -> None:
        engine = cycle.engine
        result = cycle.result
        evaluation = result.evaluation
        t = int(cycle.now)
        self._cycles += 1
        if self.settings.sim_points:
            self._sim_points(engine, cycle, t)
        lines = group_lines(engine, evaluation, t, GROUP_TOP_N)
        lines += incident_lines(result.changes, t)
        self._add(Lines(lines))

    def _sim_points(self, engine: Engine, cycle: Cycle, t: int) -> None:
        n = cycle.result.evaluation.n
        if self._cycles == 1 and engine.cycles > 1:
            # joined a running engine: its month figures so far are not "since the
            # previous point" (there was none); usage points start with the next cycle
            self.usage.baseline(engine, n)
            rows = np.zeros(0, np.int64)
            delta = used = rows
        else:
            rows, delta, used = self.usage.advance(engine, n)
        tags = SimTags.of(engine)
        index = engine.state.index
        codes = None
        if len(rows):
            last = np.asarray(engine.state.rhythm.last_data[rows], np.float64)
            codes = tags.codes(engine, rows)
            self._add(UsageChunk(SimRows(t, index, tags, rows, codes), delta, used, last))
        changes = cycle.result.state_changes
        if len(changes):
            same = codes is not None and np.array_equal(changes.rows, rows)
            rows = changes.rows.astype(np.int64)
            if not same or codes is None:  # after a start both are ~every SIM: gather once
                codes = tags.codes(engine, rows)
            sims = SimRows(t, index, tags, rows, codes)
            self._add(StateChunk(sims, changes.old, changes.new))

    def _add(self, chunk: Chunk) -> None:
        """Queue a cycle's points, dropping the oldest waiting ones beyond the bound."""
        k = len(chunk)
        if not k:
            return
        room = self.max_points - self._pending_points
        start = 0
        if k > room:  # the chunk alone does not fit: keep its newest part
            start = k - room
            self._drop(start)
        excess = self._queued + (k - start) - room
        while excess > 0 and self._queue:
            entry = self._queue[0]
            take = min(excess, entry.stop - entry.start)
            entry.start += take
            self._queued -= take
            excess -= take
            self._drop(take)
            if entry.start == entry.stop:
                self._queue.popleft()
        if start < k:
            if not self._queued:
                self._first_queued_at = time.monotonic()
                self._wake.set()  # the writer starts its flush_interval_s clock
            self._queue.append(_Entry(chunk, start, k))
            self._queued += k - start
            if self._queued >= self.batch_size:
                self._wake.set()
        self._update_buffered()

    def _drop(self, points: int) -> None:
        self.stats.dropped += points
        if not self._dropping:
            self._dropping = True
            log.warning(
                "influxdb sink: buffer full (%d points, the server is slow or away):"
                " dropping the oldest points",
                self.max_points,
            )

    def _update_buffered(self) -> None:
        self.stats.buffered = self._queued + self._pending_points

    # ---- delivery -------------------------------------------------------------------------

    async def _client(self) -> InfluxDBClientAsync:
        # the TLS context reads the system's CA files: off the loop (the client would
        # build it on the loop otherwise; it is unused for http:// URLs)
        context = await asyncio.to_thread(ssl.create_default_context)
        return InfluxDBClientAsync(
            url=str(self.settings.url),
            token=self.token or "",  # empty: no Authorization header
            org=self.settings.org,
            timeout=max(1, round(self.settings.timeout_s * 1000)),
            ssl_context=context,
        )

    async def run(self) -> None:
        """Write batches until cancelled; retry failed ones with capped jittered backoff."""
        client = await self._client()
        try:
            while True:
                if not self._pending:
                    await self._wait_for_batch()
                    self._reserve()
                error = await self._write_pending(client)
                if error is None:
                    self._backoff.succeeded()
                    continue
                delay = self._backoff.failed()
                await asyncio.sleep(max(delay, _retry_after(error, self.settings.retry_max_s)))
        finally:
            await _close_client(client)

    async def close(self) -> None:
        """Last best-effort flush (one attempt per batch); what is left counts as dropped."""
        if not self._pending and not self._queued:
            return
        client = None
        try:
            client = await self._client()
            while self._pending or self._queued:
                if not self._pending:
                    self._reserve()
                if await self._write_pending(client) is not None:
                    break
        finally:
            lost = self._pending_points + self._queued
            if lost:
                self.stats.dropped += lost
                log.warning("influxdb sink: %d points not written at shutdown", lost)
            self._queue.clear()
            self._pending, self._pending_points, self._queued = [], 0, 0
            self._payload = None
            self._update_buffered()
            if client is not None:
                await _close_client(client)

    async def _wait_for_batch(self) -> None:
        """Until ``batch_size`` points wait, or the oldest has waited ``flush_interval_s``."""
        interval = self.settings.flush_interval_s
        while True:
            if self._queued >= self.batch_size:
                return
            timeout: float | None = None
            if self._queued:
                timeout = self._first_queued_at + interval - time.monotonic()
                if timeout <= 0:
                    return
            self._wake.clear()
            try:
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            except TimeoutError:
                pass

    def _reserve(self) -> None:
        """Move the oldest ``batch_size`` waiting points into the pending batch."""
        taken = 0
        while self._queue and taken < self.batch_size:
            entry = self._queue[0]
            take = min(self.batch_size - taken, entry.stop - entry.start)
            self._pending.append(_Entry(entry.chunk, entry.start, entry.start + take))
            entry.start += take
            taken += take
            if entry.start == entry.stop:
                self._queue.popleft()
        self._queued -= taken
        self._pending_points += taken
        self._payload = None
        if self._queued:
            self._first_queued_at = time.monotonic()
        self._update_buffered()

    async def _build_payload(self) -> bytes:
        """The pending batch in line protocol, formatted ``FORMAT_STEP`` lines at a time."""
        if self._payload is None:
            lines: list[str] = []
            for entry in self._pending:
                for start in range(entry.start, entry.stop, FORMAT_STEP):
                    if lines:
                        await asyncio.sleep(0)  # let the loop breathe between steps
                    lines += entry.chunk.lines(start, min(entry.stop, start + FORMAT_STEP))
            self._payload = "\n".join(lines).encode()
        return self._payload

    async def _write_pending(self, client: InfluxDBClientAsync) -> Exception | None:
        """Write the pending batch once; None on success (or a batch refused for good)."""
        payload = await self._build_payload()
        settings = self.settings
        try:
            await client.write_api().write(
                bucket=settings.bucket,
                org=settings.org,
                record=payload,
                write_precision=WritePrecision.S,  # type: ignore[arg-type]  # a str constant
            )
        except InfluxDBError as exc:
            status = getattr(exc, "status", None)
            message = f"HTTP {status}: {exc.message}" if status else str(exc)
            if status in REJECTED_STATUSES:
                self._rejected(message)
                return None
            self._failed(f"HTTP {status}" if status else type(exc).__name__, message)
            return exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self._failed(type(exc).__name__, f"{type(exc).__name__}: {exc}")
            return exc
        self._delivered()
        return None

    def _release(self) -> int:
        points = self._pending_points
        self._pending, self._pending_points, self._payload = [], 0, None
        self._update_buffered()
        return points

    def _delivered(self) -> None:
        stats = self.stats
        stats.sent += self._release()
        stats.last_success = self.clock()
        stats.up = True
        stats.last_error = None
        self._writes.recovered()
        if self._rejecting:
            self._rejecting = False
            log.info("influxdb sink: %s accepts batches again", self.settings.url)
        if self._dropping and not self._queued:
            self._dropping = False
            log.info("influxdb sink: buffer drained (%d points dropped so far)", stats.dropped)

    def _failed(self, reason: str, message: str) -> None:
        """A write failed for ``reason`` (``HTTP 503``, the exception's type), logged when
        the failure starts or its reason changes; ``message`` is the whole error, kept in
        ``stats.last_error`` and in that log line."""
        stats = self.stats
        stats.errors += 1
        stats.up = False
        stats.last_error = message[:500]
        self._writes.failed(
            reason,
            hint=f"{stats.last_error} (keeping the points, retrying with backoff)",
        )

    def _rejected(self, message: str) -> None:
        points = self._release()
        stats = self.stats
        stats.errors += 1
        stats.dropped += points
        stats.last_error = message[:500]
        stats.up = True  # the server answers; this batch was bad
        if not self._rejecting:
            self._rejecting = True
            log.warning(
                "influxdb sink: %s refused a batch of %d points (%s); dropped, and so will"
                " be further refused batches (counted in dropped)",
                self.settings.url,
                points,
                stats.last_error,
            )


def _retry_after(error: Exception, cap: float) -> float:
    """The server's Retry-After (seconds, capped), or 0 when it sent none."""
    value = getattr(error, "retry_after", None)
    try:
        return min(cap, max(0.0, float(value))) if value is not None else 0.0
    except (TypeError, ValueError):
        return 0.0


async def _close_client(client: InfluxDBClientAsync) -> None:
    await client.close()  # type: ignore[no-untyped-call]  # the client's method is untyped
