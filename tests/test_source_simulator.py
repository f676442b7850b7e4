"""Tests for the ``simulator`` source: history first, live ticks, windows, fault planning."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import statistics
from typing import TYPE_CHECKING

import orjson
import pytest

from simwatch.core.records import Record, RecordDecoder
from simwatch.core.timeutil import parse_rfc3339
from simwatch.shell.settings import SimulatorSourceSettings
from simwatch.sim.catalogue import DAY, HOUR, all_partners
from simwatch.sources.simulator import (
    BATCH_LINES,
    HORIZON_DAYS,
    MIN_GROUP_SIMS,
    WINDOW_S,
    SimulatorSource,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from simwatch.shell.source_contract import Batch

T0 = 1_800_000_000.0
TIMEOUT = 20.0


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _settings(**kw: object) -> SimulatorSourceSettings:
    base: dict[str, object] = {
        "name": "sim:test",
        "sims": 60,
        "seed": 4,
        "history_s": DAY,
        "tick_s": 0.01,
        "fault_every_s": 6 * HOUR,
        "fault_duration_s": 2 * HOUR,
    }
    return SimulatorSourceSettings.model_validate(base | kw)


@contextlib.asynccontextmanager
async def _running(source: SimulatorSource, queue: asyncio.Queue[Batch]) -> AsyncIterator[None]:
    task = asyncio.create_task(source.run(queue))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _drain(queue: asyncio.Queue[Batch]) -> list[bytes]:
    lines: list[bytes] = []
    while not queue.empty():
        batch = queue.get_nowait()
        assert batch.source == "sim:test"
        assert len(batch.lines) <= BATCH_LINES
        lines.extend(batch.lines)
    return lines


async def _lines_until(queue: asyncio.Queue[Batch], event_time: float) -> list[bytes]:
    """Lines from the queue until one with an event time at or after ``event_time``."""
    lines: list[bytes] = []

    async def collect() -> None:
        while True:
            batch = await queue.get()
            lines.extend(batch.lines)
            if any(_event_time(orjson.loads(line)) >= event_time for line in batch.lines):
                return

    await asyncio.wait_for(collect(), TIMEOUT)
    return lines


def _event_time(obj: dict[str, object]) -> float:
    return parse_rfc3339(str(obj.get("end") or obj["ts"]))


def _decode_all(lines: list[bytes], now: float) -> list[Record]:
    decoder = RecordDecoder()
    records: list[Record] = []
    for line in lines:
        result = decoder.decode_line(line, now)
        assert isinstance(result, Record), result
        records.append(result)
    return records


async def test_history_first_then_live_ticks() -> None:
    clock = FakeClock(T0)
    source = SimulatorSource(_settings(), clock=clock)
    assert source.start == T0 - DAY
    rows = source.inventory_rows()
    assert len(rows) == 60
    active = {r.iccid for r in rows if r.status == "active"}
    queue: asyncio.Queue[Batch] = asyncio.Queue(maxsize=2)  # ingest takes it as fast as it can
    history: list[bytes] = []
    async with _running(source, queue):

        async def take_history() -> None:
            while not (source.caught_up.is_set() and queue.empty()):
                with contextlib.suppress(TimeoutError):
                    batch = await asyncio.wait_for(queue.get(), 0.05)
                    history.extend(batch.lines)

        await asyncio.wait_for(take_history(), TIMEOUT)
        records = _decode_all(history, T0)
        assert len(records) > 1000
        times = [_event_time(orjson.loads(line)) for line in history]
        assert min(times) >= T0 - DAY - HOUR  # a usage window may start before the fleet
        assert max(times) <= T0  # nothing arrives before it happened
        assert max(times) > T0 - HOUR  # ... and the history reaches "now"
        seen = {r.iccid for r in records}
        assert seen <= active
        assert len(seen) > 0.8 * len(active)
        assert source.stats.last_success == T0
        assert source.stats.kind == "simulator"

        await asyncio.sleep(0.05)  # ticks with the clock standing still: nothing new
        assert _drain(queue) == []

        clock.now = T0 + HOUR
        live = await _lines_until(queue, T0 + 30 * 60)
        live_records = _decode_all(live, clock.now)
        live_times = [_event_time(orjson.loads(line)) for line in live]
        assert min(live_times) >= T0 - 15 * 60  # late ones from before the tick
        assert max(live_times) <= T0 + HOUR
        assert {r.iccid for r in live_records} <= active
        new = {r.record_id for r in live_records} - {r.record_id for r in records}
        assert len(new) > 0.9 * len(live_records)  # the rest: duplicate deliveries


async def test_windows_keep_the_fleet_and_record_ids_unique() -> None:
    clock = FakeClock(T0)
    source = SimulatorSource(_settings(sims=30, history_s=WINDOW_S - HOUR), clock=clock)
    active = {r.iccid for r in source.inventory_rows() if r.status == "active"}
    queue: asyncio.Queue[Batch] = asyncio.Queue()
    async with _running(source, queue):
        await asyncio.wait_for(source.caught_up.wait(), TIMEOUT)
        before = await _lines_until(queue, T0 - 2 * HOUR)
        before += _drain(queue)
        clock.now = T0 + 4 * HOUR  # into the second window
        after = await _lines_until(queue, T0 + 3 * HOUR)
    first = _decode_all(before, T0)
    second = _decode_all(after, clock.now)
    assert {r.record_id[:3] for r in first} == {"w0-"}
    assert {r.record_id[:3] for r in second} >= {"w1-"}
    assert not {r.record_id for r in first} & {r.record_id for r in second}
    assert {r.iccid for r in second if r.record_id.startswith("w1-")} <= active


def test_faults_are_planned_with_the_configured_spacing() -> None:
    settings = _settings(sims=400, fault_every_s=6 * HOUR, fault_duration_s=2 * HOUR)
    source = SimulatorSource(settings, clock=FakeClock(T0))
    faults = source._faults
    starts = [f.start for f in faults]
    assert starts == sorted(starts)
    assert starts[0] >= T0  # the history is fault-free
    assert starts[-1] < source.start + HORIZON_DAYS * DAY
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert len(faults) > 10_000
    assert statistics.fmean(gaps) == pytest.approx(6 * HOUR, rel=0.03)
    assert statistics.median(gaps) == pytest.approx(6 * HOUR * 0.693, rel=0.05)  # exponential
    assert {f.end - f.start for f in faults} == {2 * HOUR}
    assert {f.kind for f in faults} == {
        "partner_outage",
        "partial_blackhole",
        "apn_outage",
        "country_outage",
        "apn_country",
    }

    # Only groups that exist in the fleet; partners only where another one can take over.
    rows = source.inventory_rows()
    assert {r.iccid for r in rows}
    country_of = {p.code: p.country for p in all_partners()}
    per_country = {c: sum(1 for v in country_of.values() if v == c) for c in country_of.values()}
    for f in faults:
        if "partner" in f.dims:
            assert per_country[country_of[f.dims["partner"]]] > 1
        if f.kind == "partial_blackhole":
            assert 0.3 <= f.fraction <= 0.7
    assert MIN_GROUP_SIMS >= 1

    again = SimulatorSource(settings, clock=FakeClock(T0))
    assert again.faults() == source.faults()  # seeded: deterministic
    other = SimulatorSource(_settings(sims=400, seed=5), clock=FakeClock(T0))
    assert other.faults(until=T0 + 30 * DAY) != source.faults(until=T0 + 30 * DAY)

    shown = source.faults(until=T0 + 2 * DAY)
    assert shown == [f.to_json() for f in faults if f.start < T0 + 2 * DAY]
    assert shown[0]["kind"] == faults[0].kind


def test_a_window_gets_the_faults_touching_it_clipped() -> None:
    settings = _settings(fault_every_s=HOUR, fault_duration_s=3 * HOUR)
    source = SimulatorSource(settings, clock=FakeClock(T0))
    w0, w1 = source.start + WINDOW_S, source.start + 2 * WINDOW_S
    clipped = source._window_faults(1)
    expected = [f for f in source._faults if f.start < w1 and f.end > w0]
    assert len(clipped) == len(expected) > 100
    for f, g in zip(clipped, expected, strict=True):
        assert (f.kind, dict(f.dims), f.fraction) == (g.kind, dict(g.dims), g.fraction)
        assert (f.start, f.end) == (max(g.start, w0), min(g.end, w1))
