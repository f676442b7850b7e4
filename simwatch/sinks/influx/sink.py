"""The InfluxDB sink: per-SIM usage and state changes, group figures and incident changes
as line-protocol points, written with the InfluxDB v2 write API (``/api/v2/write``).

The schema is ``simwatch.sinks.influx.schema`` (docs/influxdb.md explains it). Points
carry the evaluation cycle's time in seconds; the ICCID is a tag, so there is one series
per SIM and measurement.

How a cycle becomes points without stalling the event loop:

- ``on_cycle`` does vectorised numpy work only: which SIMs' data advanced since the
  previous cycle (one remembered ``month_bytes`` and ``month`` per SIM, 10 B/SIM), the
  state changes the engine reports, and the group figures (one ``np.bincount`` per
  dimension, the ``DEFAULT_TOP_N`` largest values plus ``_other``, as the
  ``simwatch_group_*`` metrics). Per-SIM points are kept as numpy *chunks* (rows, tag
  codes, field values gathered now, while the engine is consistent); the group and
  incident points (a few hundred at most) are formatted at once.
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
and 401/403/404, which an operator fixes on the server side) with capped, jittered
exponential backoff between ``retry_min_s`` and ``retry_max_s``; the batch is kept.
A batch the server refuses as malformed (400, 413, 422) is dropped and counted: sending
it again cannot succeed. The client does not retry by itself (its async write API has
no retry layer): this sink owns retries. A point written twice (a write that succeeded
but whose answer was lost) overwrites itself: same series, same time, same values.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import ssl
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

import aiohttp
import numpy as np
import orjson
from influxdb_client.client.exceptions import InfluxDBError
from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
from influxdb_client.domain.write_precision import WritePrecision

from simwatch.core.evaluate import STATE_NAMES
from simwatch.core.groups import DEFAULT_TOP_N, OTHER, UNKNOWN
from simwatch.core.timeutil import month_of
from simwatch.shell.sink_contract import Cycle, SinkStats
from simwatch.sinks.influx.schema import GROUP, INCIDENT, SIM_STATE, SIM_USAGE

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from simwatch.core.engine import Engine
    from simwatch.core.evaluate import Evaluation
    from simwatch.core.iccid_index import IccidIndex
    from simwatch.core.incidents import IncidentChange
    from simwatch.shell.settings import InfluxSinkSettings

log = logging.getLogger(__name__)

KIND: Final = "influxdb"
FORMAT_STEP: Final = 1000  # lines formatted between two yields to the loop (~3 ms)
GROUP_TOP_N: Final = DEFAULT_TOP_N  # values per dimension written per cycle; the rest: _other
REJECTED_STATUSES: Final = frozenset({400, 413, 422})  # the batch itself is bad: drop it
_N_STATES: Final = len(STATE_NAMES)
_KINDS: Final = 3  # per state: not counted, counted and reporting, counted and overdue
_CATEGORIES: Final = _N_STATES * _KINDS

_ESCAPE_TAG: Final = str.maketrans({
    ",": r"\,",
    "=": r"\=",
    " ": r"\ ",
    "\n": r"\n",
    "\r": r"\r",
    "\t": r"\t",
})  # fmt: skip
_ESCAPE_STRING: Final = str.maketrans({'"': r"\"", "\\": r"\\"})


def escape_tag(text: str) -> str:
    """A tag key or value in line protocol: commas, equals signs and spaces escaped.

    Backslashes stay as they are (InfluxDB keeps them literally); a trailing backslash
    is removed, because it would escape the separator after the value. Control
    characters become ``\\n``, ``\\r``, ``\\t`` (as the official client writes them).
    An empty result means "no such tag" (line protocol has no empty tag values).
    """
    return text.rstrip("\\").translate(_ESCAPE_TAG)


def string_field(text: str) -> str:
    """A string field value in line protocol: double-quoted, ``"`` and ``\\`` escaped."""
    return '"' + text.translate(_ESCAPE_STRING) + '"'


def float_field(value: float) -> str | None:
    """A float field value, or None for NaN and infinities (line protocol has neither)."""
    return repr(float(value)) if math.isfinite(value) else None


def backoff_delay(failures: int, min_s: float, max_s: float, rng: random.Random) -> float:
    """The wait after ``failures`` (>= 1) consecutive failed writes.

    The ceiling doubles from ``min_s`` up to ``max_s``; the wait is drawn from the upper
    half of it, so retries never hammer and several daemons do not retry in lock-step.
    """
    ceiling = min(max_s, min_s * 2.0 ** min(failures - 1, 63))
    return rng.uniform(ceiling / 2.0, ceiling)


# ---- per-SIM points ----------------------------------------------------------------------


def _column(engine: Engine, dim: str) -> np.ndarray:
    cols = engine.state.cols
    column: np.ndarray = cols.extra[dim] if dim in cols.extra else getattr(cols, dim)
    return column


@dataclass(frozen=True, slots=True)
class _SimTags:
    """The tags of per-SIM points besides the ICCID: ``customer`` and one per dimension.

    Keys are sorted (InfluxDB's preferred order); the ICCID goes between ``split - 1``
    and ``split``. ``values`` are the engine's interned value lists: they only ever grow,
    so a code gathered now still names the same value when the point is formatted.
    """

    keys: tuple[str, ...]  # escaped tag keys, sorted
    names: tuple[str, ...]  # the same keys unescaped (customer or a dimension name)
    values: tuple[list[str], ...]
    split: int  # keys[:split] sort before "iccid"

    @classmethod
    def of(cls, engine: Engine) -> _SimTags:
        names = tuple(sorted({"customer", *engine.state.dims} - {"iccid"}))
        state = engine.state
        values = tuple(
            state.customers.values if name == "customer" else state.dim_values(name)
            for name in names
        )
        split = sum(1 for name in names if name < "iccid")
        return cls(tuple(escape_tag(n) for n in names), names, values, split)

    def codes(self, engine: Engine, rows: np.ndarray) -> np.ndarray:
        """(len(keys), len(rows)) int32 tag-value codes of ``rows``, gathered now (one
        contiguous row per key: the gather writes sequentially)."""
        out = np.empty((len(self.names), len(rows)), np.int32)
        for j, name in enumerate(self.names):
            column = engine.state.cols.customer if name == "customer" else _column(engine, name)
            out[j] = column[rows]
        return out

    def pieces(self, codes: Sequence[int]) -> tuple[str, str]:
        """``(",k=v..." before the ICCID, ",k=v..." after it)`` for one code combination."""
        parts = []
        for key, values, code in zip(self.keys, self.values, codes, strict=True):
            value = escape_tag(values[code]) if 0 < code < len(values) else ""
            parts.append(f",{key}={value}" if value else "")
        return "".join(parts[: self.split]), "".join(parts[self.split :])


class _Chunk(Protocol):
    """Points of one cycle waiting to be formatted; ``lines(a, b)`` formats points a..b."""

    def __len__(self) -> int: ...

    def lines(self, start: int, stop: int) -> list[str]: ...


class _Lines:
    """Points already in line protocol (group and incident points)."""

    __slots__ = ("items",)

    def __init__(self, items: list[str]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def lines(self, start: int, stop: int) -> list[str]:
        return self.items[start:stop]


@dataclass(frozen=True, slots=True)
class _SimRows:
    """What every per-SIM point of one cycle and measurement shares, gathered at the cycle."""

    time: int
    index: IccidIndex  # row -> ICCID (rows are never reused)
    tags: _SimTags
    rows: np.ndarray  # int64 rows of the SIMs
    codes: np.ndarray  # (len(tags.keys), len(rows)) int32 tag-value codes


class _SimChunk:
    """Per-SIM points of one cycle: rows and tag codes, formatted lazily in batches."""

    __slots__ = ("measurement", "sims")

    def __init__(self, measurement: str, sims: _SimRows) -> None:
        self.measurement = escape_tag(measurement)
        self.sims = sims

    def __len__(self) -> int:
        return len(self.sims.rows)

    def fields(self, start: int, stop: int) -> list[str]:
        raise NotImplementedError

    def lines(self, start: int, stop: int) -> list[str]:
        sims = self.sims
        iccids = sims.index.iccids(sims.rows[start:stop])
        combos, inverse = np.unique(sims.codes[:, start:stop].T, axis=0, return_inverse=True)
        pieces = [sims.tags.pieces(c) for c in combos.tolist()]
        head, t = self.measurement, sims.time
        out = []
        for iccid, k, fields in zip(
            iccids, inverse.reshape(-1).tolist(), self.fields(start, stop), strict=True
        ):
            before, after = pieces[k]
            out.append(f"{head}{before},iccid={iccid}{after} {fields} {t}")
        return out


class _UsageChunk(_SimChunk):
    __slots__ = ("delta", "last_data", "month_bytes")

    def __init__(
        self,
        sims: _SimRows,
        delta: np.ndarray,
        month_bytes: np.ndarray,
        last_data: np.ndarray,
    ) -> None:
        super().__init__(SIM_USAGE.name, sims)
        self.delta = delta
        self.month_bytes = month_bytes
        self.last_data = last_data

    def fields(self, start: int, stop: int) -> list[str]:
        out = []
        for delta, used, last in zip(
            self.delta[start:stop].tolist(),
            self.month_bytes[start:stop].tolist(),
            self.last_data[start:stop].tolist(),
            strict=True,
        ):
            text = f"bytes={delta}i,month_bytes={used}i"
            out.append(text if math.isnan(last) else f"{text},last_data={last!r}")
        return out


_STATE_FIELDS: Final = tuple(
    tuple(
        f"state={string_field(STATE_NAMES[new])},previous={string_field(STATE_NAMES[old])},"
        f"code={new}i"
        for new in range(_N_STATES)
    )
    for old in range(_N_STATES)
)


class _StateChunk(_SimChunk):
    __slots__ = ("new", "old")

    def __init__(
        self,
        sims: _SimRows,
        old: np.ndarray,
        new: np.ndarray,
    ) -> None:
        super().__init__(SIM_STATE.name, sims)
        self.old = old
        self.new = new

    def fields(self, start: int, stop: int) -> list[str]:
        table = _STATE_FIELDS
        return [
            table[o][n]
            for o, n in zip(
                self.old[start:stop].tolist(), self.new[start:stop].tolist(), strict=True
            )
        ]


class UsageTracker:
    """Which SIMs' data advanced since the previous cycle, and by how many bytes.

    Remembers each SIM's ``month_bytes`` and ``month`` as of the previous cycle (10 B
    per SIM). A SIM whose month moved on reports the new month's bytes (bytes of the old
    month that arrived after the previous point are not seen again).
    """

    def __init__(self) -> None:
        self.month_bytes = np.zeros(0, np.int64)
        self.month = np.full(0, -1, np.int16)

    def _ensure(self, n: int) -> None:
        if len(self.month_bytes) < n:
            capacity = max(n, 2 * len(self.month_bytes), 1024)
            grown = np.zeros(capacity, np.int64)
            grown[: len(self.month_bytes)] = self.month_bytes
            month = np.full(capacity, -1, np.int16)
            month[: len(self.month)] = self.month
            self.month_bytes, self.month = grown, month

    def advance(self, engine: Engine, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(rows, bytes since the previous point, month_bytes)`` of SIMs that advanced."""
        self._ensure(n)
        cols = engine.state.cols
        used, month = cols.month_bytes[:n], cols.month[:n]
        prev_used, prev_month = self.month_bytes[:n], self.month[:n]
        rows = np.flatnonzero((used != prev_used) | (month != prev_month))
        now_used = used[rows]
        if 4 * len(rows) > n:  # most SIMs (the first cycle): contiguous passes beat gathers
            delta = np.where(month == prev_month, used - prev_used, used)[rows]
            prev_used[:] = used
            prev_month[:] = month
        else:
            same = month[rows] == prev_month[rows]
            delta = np.where(same, now_used - prev_used[rows], now_used)
            prev_used[rows] = now_used
            prev_month[rows] = month[rows]
        return rows, delta, now_used

    def baseline(self, engine: Engine, n: int) -> None:
        """Take the engine's current figures as seen (no points for what came before)."""
        self._ensure(n)
        self.month_bytes[:n] = engine.state.cols.month_bytes[:n]
        self.month[:n] = engine.state.cols.month[:n]


# ---- group and incident points -------------------------------------------------------


def group_lines(engine: Engine, evaluation: Evaluation, t: int, top_n: int) -> list[str]:
    """``simwatch_group`` points of one cycle: per dimension, the ``top_n`` values with
    the most SIMs and ``_other`` (the rest summed), as the ``simwatch_group_*`` metrics."""
    state = engine.state
    n = evaluation.n
    cat = evaluation.states[:n] * np.int8(_KINDS)  # int8: at most 14
    cat += evaluation.counted[:n]
    cat += evaluation.overdue[:n]
    cols = state.cols
    used = np.where(cols.month[:n] == month_of(evaluation.now), cols.month_bytes[:n], 0)
    used = used.astype(np.float64)
    head = escape_tag(GROUP.name)
    out: list[str] = []
    for dim in state.dims:
        codes = _column(engine, dim)[:n]
        values = state.dim_values(dim)
        n_codes = max(len(values), int(codes.max(initial=0)) + 1)
        key = np.multiply(codes, _CATEGORIES, dtype=np.int64)
        key += cat
        per_code = np.zeros((n_codes, _CATEGORIES + 1), np.float64)
        per_code[:, :_CATEGORIES] = np.bincount(key, minlength=n_codes * _CATEGORIES).reshape(
            n_codes, _CATEGORIES
        )
        used_by_key = np.bincount(key, weights=used, minlength=n_codes * _CATEGORIES)
        per_code[:, _CATEGORIES] = used_by_key.reshape(n_codes, _CATEGORIES).sum(axis=1)
        sizes = per_code[:, :_CATEGORIES].sum(axis=1)
        present = np.flatnonzero(sizes)
        order = present[np.argsort(-sizes[present], kind="stable")]
        kept = order[:top_n]
        labels = [values[int(c)] if int(c) < len(values) and c else UNKNOWN for c in kept]
        rows = per_code[kept]
        if len(order) > len(kept):
            labels.append(OTHER)
            rows = np.vstack([rows, per_code[order[top_n:]].sum(axis=0)])
        by_kind = rows[:, :_CATEGORIES].reshape(len(labels), _N_STATES, _KINDS)
        per_state = by_kind.sum(axis=2).astype(np.int64).tolist()
        counted = by_kind[:, :, 1:].sum(axis=(1, 2)).astype(np.int64).tolist()
        overdue = by_kind[:, :, 2].sum(axis=1).astype(np.int64).tolist()
        month_bytes = rows[:, _CATEGORIES].astype(np.int64).tolist()
        dim_tag = escape_tag(dim) or "_"
        for i, label in enumerate(labels):
            fields = [f"{name}={per_state[i][s]}i" for s, name in enumerate(STATE_NAMES)]
            fields.append(f"counted={counted[i]}i")
            fields.append(f"overdue={overdue[i]}i")
            if counted[i]:
                fields.append(f"silent_ratio={overdue[i] / counted[i]!r}")
            fields.append(f"month_bytes={month_bytes[i]}i")
            value = escape_tag(label) or UNKNOWN
            out.append(f"{head},dim={dim_tag},value={value} {','.join(fields)} {t}")
    return out


def incident_lines(changes: Sequence[IncidentChange], t: int) -> list[str]:
    """``simwatch_incident`` points: one per incident change of the cycle."""
    head = escape_tag(INCIDENT.name)
    out = []
    for change in changes:
        incident = change.incident
        tags = (
            f"event={escape_tag(change.kind)},id={escape_tag(incident.id)},"
            f"kind={escape_tag(incident.kind)},severity={escape_tag(incident.severity)}"
        )
        fields = [f"affected={round(incident.affected)}i", f"total={round(incident.total)}i"]
        for name, number in (
            ("ratio", incident.ratio),
            ("baseline_ratio", incident.baseline_ratio),
            ("score", incident.score),
        ):
            text = float_field(number)
            if text is not None:
                fields.append(f"{name}={text}")
        dims = orjson.dumps(incident.dims, option=orjson.OPT_SORT_KEYS).decode()
        fields.append(f"dims={string_field(dims)}")
        if incident.iccid is not None:
            fields.append(f"iccid={string_field(incident.iccid)}")
        out.append(f"{head},{tags} {','.join(fields)} {t}")
    return out


# ---- the sink ------------------------------------------------------------------------------


class _Entry:
    """A chunk in the buffer and the range of its points still waiting."""

    __slots__ = ("chunk", "start", "stop")

    def __init__(self, chunk: _Chunk, start: int, stop: int) -> None:
        self.chunk = chunk
        self.start = start
        self.stop = stop


class InfluxSink:
    """Writes the schema of ``influx_schema`` to InfluxDB v2 (see the module docstring)."""

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
        self._failing = False  # a write failure was logged and has not recovered yet
        self._rejecting = False  # a refused batch was logged and no write succeeded since
        self._dropping = False  # a drop was logged and the buffer has not drained since
        self._rng = random.Random()  # noqa: S311 - backoff jitter, not cryptography

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
        self._add(_Lines(lines))

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
        tags = _SimTags.of(engine)
        index = engine.state.index
        codes = None
        if len(rows):
            last = np.asarray(engine.state.rhythm.last_data[rows], np.float64)
            codes = tags.codes(engine, rows)
            self._add(_UsageChunk(_SimRows(t, index, tags, rows, codes), delta, used, last))
        changes = cycle.result.state_changes
        if len(changes):
            same = codes is not None and np.array_equal(changes.rows, rows)
            rows = changes.rows.astype(np.int64)
            if not same or codes is None:  # after a start both are ~every SIM: gather once
                codes = tags.codes(engine, rows)
            sims = _SimRows(t, index, tags, rows, codes)
            self._add(_StateChunk(sims, changes.old, changes.new))

    def _add(self, chunk: _Chunk) -> None:
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
            failures = 0
            while True:
                if not self._pending:
                    await self._wait_for_batch()
                    self._reserve()
                error = await self._write_pending(client)
                if error is None:
                    failures = 0
                    continue
                failures += 1
                delay = backoff_delay(
                    failures, self.settings.retry_min_s, self.settings.retry_max_s, self._rng
                )
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
            self._failed(message)
            return exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self._failed(f"{type(exc).__name__}: {exc}")
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
        if self._failing:
            self._failing = False
            log.info("influxdb sink: writes to %s succeed again", self.settings.url)
        if self._rejecting:
            self._rejecting = False
            log.info("influxdb sink: %s accepts batches again", self.settings.url)
        if self._dropping and not self._queued:
            self._dropping = False
            log.info("influxdb sink: buffer drained (%d points dropped so far)", stats.dropped)

    def _failed(self, message: str) -> None:
        stats = self.stats
        stats.errors += 1
        stats.up = False
        stats.last_error = message[:500]
        if not self._failing:
            self._failing = True
            log.warning(
                "influxdb sink: write to %s failed (%s); keeping the points and retrying"
                " with backoff",
                self.settings.url,
                stats.last_error,
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
