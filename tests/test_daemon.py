"""The daemon's shell: task group, ingest, the evaluation clock, shutdown, isolation."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from typing import TYPE_CHECKING

import orjson
from servers import until

from simwatch.core.timeutil import format_rfc3339
from simwatch.service.daemon import Daemon
from simwatch.shell.settings import EngineSettings, Settings
from simwatch.shell.sink_contract import Cycle, SinkStats
from simwatch.shell.source_contract import Batch, Sink, SourceStats

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    import pytest

ICCID = "8931440000000000011"


def usage(i: int, end: float, iccid: str = ICCID) -> bytes:
    return orjson.dumps(
        {
            "kind": "usage",
            "record_id": f"u-{iccid}-{i}",
            "iccid": iccid,
            "start": format_rfc3339(end - 60),
            "end": format_rfc3339(end),
            "bytes_up": 100,
            "bytes_down": 10,
            "apn": "meters.acme",
            "mcc": "262",
            "mnc": "02",
        }
    )


class ListSource:
    """Hands over fixed batches, then idles like a live source."""

    def __init__(self, name: str, batches: list[list[bytes]]) -> None:
        self.stats = SourceStats(name=name, kind="file")
        self.batches = batches
        self.applied = 0

    async def run(self, sink: Sink) -> None:
        for lines in self.batches:
            await sink.put(Batch(source=self.stats.name, lines=lines, on_applied=self._ack))
        await asyncio.Event().wait()

    async def _ack(self) -> None:
        self.applied += 1


class CrashingSource:
    def __init__(self) -> None:
        self.stats = SourceStats(name="crashy", kind="mqtt")
        self.runs = 0

    async def run(self, sink: Sink) -> None:  # noqa: ARG002 - the protocol's signature
        self.runs += 1
        raise RuntimeError("boom")


def settings(tmp_path: Path, interval: float = 60.0) -> Settings:
    return Settings(
        engine=EngineSettings(
            eval_interval_s=interval, dead_letter_file=tmp_path / "dl.ndjson", warmup_s=0
        )
    )


async def run_until(daemon: Daemon, predicate: Callable[[], object], limit_s: float = 10.0) -> None:
    """Run the daemon until ``predicate`` holds (polled with ``until``), then stop it.
    Fails at ``limit_s``, or at once if the daemon ends before the condition holds."""
    task = asyncio.create_task(daemon.run())

    def reached() -> object:
        result = predicate()
        if not result:
            assert not task.done(), task
        return result

    try:
        await until(reached, limit_s, "the daemon's condition", interval_s=0.02)
    finally:
        daemon.request_stop()
        await asyncio.wait_for(task, 5.0)


async def test_backlog_is_evaluated_on_event_time(tmp_path: Path) -> None:
    start = time.time() - 3 * 3600
    lines = [usage(i, start + i * 60) for i in range(120)]  # two hours, one a minute
    source = ListSource("backlog", [lines[:60], lines[60:]])
    daemon = Daemon(settings(tmp_path), [source])
    cycles: list[float] = []
    daemon.on_cycle.append(lambda r: cycles.append(r.evaluation.now))
    await run_until(daemon, lambda: source.applied == 2)
    # one cycle per minute boundary passed by the watermark: replay semantics
    assert len(cycles) >= 118
    assert all(b - a == 60.0 for a, b in itertools.pairwise(cycles))
    assert cycles[0] <= start + 120
    assert source.stats.received == 120
    assert daemon.health.ready


async def test_rejections_are_counted_and_dead_lettered(tmp_path: Path) -> None:
    now = time.time()
    lines = [usage(1, now - 120), b'{"kind":"usage"', usage(2, now - 60).replace(b"893144", b"x")]
    source = ListSource("file:a", [lines])
    daemon = Daemon(settings(tmp_path), [source])
    await run_until(daemon, lambda: source.applied == 1)
    assert source.stats.received == 3
    assert dict(source.stats.rejected) == {"invalid_json": 1, "bad_iccid": 1}
    written = [orjson.loads(x) for x in (tmp_path / "dl.ndjson").read_bytes().splitlines()]
    assert [w["reason"] for w in written] == ["invalid_json", "bad_iccid"]
    assert {w["source"] for w in written} == {"file:a"}


async def test_a_crashing_source_is_restarted_and_others_keep_running(tmp_path: Path) -> None:
    crashy = CrashingSource()
    good = ListSource("good", [[usage(1, time.time() - 30)]])
    daemon = Daemon(settings(tmp_path), [crashy, good])
    await run_until(daemon, lambda: good.applied == 1 and crashy.runs >= 2, limit_s=8)
    assert crashy.stats.errors >= 2
    assert crashy.stats.last_error == "boom"


async def test_stop_is_prompt_and_clean(tmp_path: Path) -> None:
    daemon = Daemon(settings(tmp_path), [ListSource("idle", [])])
    task = asyncio.create_task(daemon.run())
    await asyncio.sleep(0.2)
    started = time.monotonic()
    daemon.request_stop()
    await asyncio.wait_for(task, 3.0)
    assert time.monotonic() - started < 2.0


async def test_idle_daemon_becomes_ready_on_the_wall_clock(tmp_path: Path) -> None:
    daemon = Daemon(settings(tmp_path, interval=0.2), [ListSource("idle", [])])
    await run_until(daemon, lambda: daemon.health.ready, limit_s=5)
    assert daemon.health.evaluations >= 1


async def test_no_slow_callbacks_while_ingesting(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    loop = asyncio.get_running_loop()
    loop.set_debug(True)
    loop.slow_callback_duration = 0.25
    start = time.time() - 6 * 3600
    iccids = [f"89314400000000{i:05d}" for i in range(300)]
    batches = [
        [usage(k, start + k * 300 + j, iccid) for j, iccid in enumerate(iccids)] for k in range(60)
    ]
    source = ListSource("bulk", batches)
    daemon = Daemon(settings(tmp_path), [source])
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        await run_until(daemon, lambda: source.applied == 60, limit_s=60)
    loop.set_debug(False)
    slow = [r.getMessage() for r in caplog.records if "took" in r.getMessage()]
    assert slow == []
    assert source.stats.received == 18_000


async def test_evaluation_failure_is_logged_once_and_recovery_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon = Daemon(settings(tmp_path), [ListSource("idle", [])])
    real = daemon.engine.evaluate
    calls = {"n": 0}

    def flaky(now: float) -> object:
        calls["n"] += 1
        if calls["n"] <= 3:
            raise RuntimeError("disk on fire")
        return real(now)

    monkeypatch.setattr(daemon.engine, "evaluate", flaky)
    with caplog.at_level(logging.INFO, logger="simwatch"):
        for k in range(5):
            daemon._evaluate(1_795_000_000.0 + 60 * k)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("failed" in m for m in messages) == 1
    assert sum("recovered" in m for m in messages) == 1
    assert daemon.health.evaluation_failures == 3
    assert daemon.health.evaluations == 2


class RecordingSink:
    """A sink that records what the daemon hands it; can be told to fail or hang."""

    def __init__(self, name: str = "rec", *, fail_cycles: int = 0, hang_close: bool = False):
        self.stats = SinkStats(name=name, kind="mqtt")
        self.cycles: list[Cycle] = []
        self.fail_cycles = fail_cycles
        self.hang_close = hang_close
        self.running = False
        self.closed = False

    def on_cycle(self, cycle: Cycle) -> None:
        if self.fail_cycles > 0:
            self.fail_cycles -= 1
            raise RuntimeError("sink bug")
        self.cycles.append(cycle)

    async def run(self) -> None:
        self.running = True
        await asyncio.Event().wait()

    async def close(self) -> None:
        if self.hang_close:
            await asyncio.Event().wait()
        self.closed = True


async def test_sinks_get_every_cycle_backlog_then_live_and_are_closed(tmp_path: Path) -> None:
    start = time.time() - 2 * 3600
    lines = [usage(i, start + i * 60) for i in range(60)]  # an hour of backlog
    source = ListSource("backlog", [lines])
    sink = RecordingSink()
    daemon = Daemon(settings(tmp_path, interval=60.0), [source], sinks=[sink])
    await run_until(daemon, lambda: source.applied == 1 and sink.running)
    assert len(sink.cycles) >= 58
    assert [c.now for c in sink.cycles] == [r.result.evaluation.now for r in sink.cycles]
    assert not sink.cycles[0].live  # an hour-old cycle is backlog
    assert all(c.engine is daemon.engine for c in sink.cycles)
    assert sink.closed
    assert daemon.sink_stats() == [sink.stats]


async def test_a_failing_sink_is_logged_once_and_never_stops_the_others(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    start = time.time() - 2 * 3600
    source = ListSource("backlog", [[usage(i, start + i * 60) for i in range(30)]])
    bad = RecordingSink("bad", fail_cycles=5, hang_close=True)
    good = RecordingSink("good")
    daemon = Daemon(settings(tmp_path), [source], sinks=[bad, good])
    daemon.close_s = 0.3
    with caplog.at_level(logging.INFO, logger="simwatch"):
        await run_until(daemon, lambda: source.applied == 1, limit_s=15)
    assert bad.stats.errors == 5
    assert len(good.cycles) == len(bad.cycles) + 5
    messages = [r.getMessage() for r in caplog.records]
    assert sum("sink bad: failed to take a cycle" in m for m in messages) == 1
    assert sum("sink bad: takes cycles again" in m for m in messages) == 1
    assert any("sink bad: last flush timed out at shutdown" in m for m in messages)
    assert good.closed


class SlowToStopSource(ListSource):
    """Takes ``stop_s`` to stop once cancelled (a connection closing slowly)."""

    def __init__(self, stop_s: float) -> None:
        super().__init__("slow-stop", [])
        self.stop_s = stop_s

    async def run(self, sink: Sink) -> None:
        try:
            await super().run(sink)
        finally:
            await asyncio.sleep(self.stop_s)  # the line the report names


async def test_a_slow_shutdown_says_once_what_it_waits_for(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = SlowToStopSource(stop_s=0.4)
    bad = RecordingSink("bad", hang_close=True)
    daemon = Daemon(settings(tmp_path), [source], sinks=[bad])
    daemon.close_s = 0.4
    daemon.slow_stop_s = 0.2
    with caplog.at_level(logging.INFO, logger="simwatch"):
        await run_until(daemon, lambda: bad.running)
    reports = [r.getMessage() for r in caplog.records if "shutdown still going" in r.getMessage()]
    assert len(reports) == 1, reports
    (report,) = reports
    assert "at: stopping the sources, ingest and sinks" in report
    assert "source:slow-stop at " in report
    assert "test_daemon.py" in report.split("source:slow-stop at ", 1)[1].split(";")[0]
    assert any("last flush timed out" in r.getMessage() for r in caplog.records)
    # a shutdown within the limit says nothing
    caplog.clear()
    quick = Daemon(settings(tmp_path / "quick"), [ListSource("quick", [])])
    quick.slow_stop_s = 0.2
    with caplog.at_level(logging.INFO, logger="simwatch"):
        await run_until(quick, lambda: quick.health.started_at > 0)
        await asyncio.sleep(0.4)  # past slow_stop_s: the report was called off
    assert not any("shutdown still going" in r.getMessage() for r in caplog.records)


class SwallowingAckSource(ListSource):
    """Its one batch's acknowledgement blocks and, when cancelled, returns normally: what
    nats-py's publish does while it waits for a flush the server does not take."""

    def __init__(self, lines: list[bytes]) -> None:
        super().__init__("swallowing", [lines])
        self.acking = asyncio.Event()
        self.swallowed = 0

    async def _ack(self) -> None:
        self.acking.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.swallowed += 1  # and no raise: the cancellation is lost here


async def test_a_cancellation_a_source_swallowed_still_stops_ingest(tmp_path: Path) -> None:
    """The ingest task runs each batch's acknowledgement (a NATS ack). One that eats the
    shutdown's cancellation must not leave ingest waiting for the next batch for ever
    (nor the daemon's task group for it: a second cancellation of the daemon's task
    does not reach its tasks again)."""
    source = SwallowingAckSource([usage(1, time.time() - 30)])
    daemon = Daemon(settings(tmp_path), [source])
    daemon.slow_stop_s = 60.0  # its second cancellation (10 s in) would hide a missing check
    task = asyncio.create_task(daemon.run())
    await until(source.acking.is_set, 10, "the acknowledgement", interval_s=0.02)
    daemon.request_stop()
    done, _ = await asyncio.wait({task}, timeout=10)
    assert done, "the daemon did not stop"
    task.result()
    assert source.swallowed == 1


class StubbornSink(RecordingSink):
    """Its run loses the shutdown's cancellation in a call (as nats-py's publish can)
    and goes on waiting for its next piece of work."""

    def __init__(self) -> None:
        super().__init__("stubborn")
        self.swallowed = 0

    async def run(self) -> None:
        self.running = True
        try:
            await asyncio.sleep(3600)  # the library call
        except asyncio.CancelledError:
            self.swallowed += 1  # lost
        await asyncio.Event().wait()  # the loop's next wait


async def test_a_task_that_lost_its_cancellation_is_cancelled_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sink = StubbornSink()
    daemon = Daemon(settings(tmp_path), [ListSource("quiet", [])], sinks=[sink])
    daemon.slow_stop_s = 0.2
    task = asyncio.create_task(daemon.run())
    with caplog.at_level(logging.INFO, logger="simwatch"):
        await until(lambda: sink.running, 10, "the sink's run", interval_s=0.02)
        daemon.request_stop()
        done, _ = await asyncio.wait({task}, timeout=10)
    assert done, "the daemon did not stop"
    task.result()
    assert sink.swallowed == 1
    reports = [r.getMessage() for r in caplog.records if "shutdown still going" in r.getMessage()]
    assert len(reports) == 1, reports
    assert reports[0].endswith("; cancelled again: sink:stubborn")


class SlowBacklogSource:
    """Hands over an old backlog in batches with pauses, like a big file being read."""

    def __init__(self, batches: list[list[bytes]], pause_s: float) -> None:
        self.stats = SourceStats(name="slow", kind="file")
        self.batches = batches
        self.pause_s = pause_s
        self.handed = 0

    async def run(self, sink: Sink) -> None:
        for lines in self.batches:
            await sink.put(Batch(source=self.stats.name, lines=lines))
            self.handed += 1
            await asyncio.sleep(self.pause_s)
        await asyncio.Event().wait()


async def test_the_wall_clock_never_runs_ahead_of_a_backlog(tmp_path: Path) -> None:
    """Pauses in a backlog longer than the interval must not let the clock evaluate up
    to now against a fleet only partly caught up (every SIM would look silent)."""
    now = time.time()
    lines = [usage(i, now - 600 + i * 0.5, f"89314400000000{i % 10:05d}") for i in range(600)]
    batches = [lines[k : k + 60] for k in range(0, 600, 60)]
    source = SlowBacklogSource(batches, pause_s=0.4)
    daemon = Daemon(settings(tmp_path, interval=1.0), [source])
    seen: list[tuple[float, float, bool]] = []
    daemon.on_cycle.append(
        lambda r: seen.append(
            (r.evaluation.now, daemon.evaluation_clock.watermark, source.handed < 10)
        )
    )
    await run_until(daemon, lambda: source.handed == 10 and daemon.queue.empty(), limit_s=20)
    during = [(t, wm) for t, wm, backlog in seen if backlog]
    assert len(during) > 100  # the backlog's cycles ran on event time ...
    assert all(t <= wm + 1.0 for t, wm in during)  # ... never ahead of the records
    assert all(b - a == 1.0 for a, b in itertools.pairwise(t for t, _wm, _b in seen))


class QuietPollSource:
    """A polled platform whose data went quiet: old records once, then every poll hands
    over an empty batch that only commits its position (as the CMP poller does)."""

    def __init__(self, lines: list[bytes], every_s: float) -> None:
        self.stats = SourceStats(name="quiet", kind="http")
        self.lines = lines
        self.every_s = every_s
        self.polls = 0

    async def run(self, sink: Sink) -> None:
        await sink.put(Batch(source=self.stats.name, lines=self.lines))
        while True:
            await asyncio.sleep(self.every_s)
            self.polls += 1
            await sink.put(Batch(source=self.stats.name, on_applied=self._commit))

    async def _commit(self) -> None:
        return None


class LateSource(ListSource):
    """Hands over its batches ``after_s`` after it starts (a file read, a first poll)."""

    def __init__(self, batches: list[list[bytes]], after_s: float) -> None:
        super().__init__("late", batches)
        self.after_s = after_s

    async def run(self, sink: Sink) -> None:
        await asyncio.sleep(self.after_s)
        await super().run(sink)


async def test_a_backlog_a_little_older_than_two_intervals_goes_live_at_once(
    tmp_path: Path,
) -> None:
    # 10 s after a boundary b (interval 60 s), a backlog whose newest record is b - 61:
    # ingest's last cycle is b - 120, more than two intervals old, so not live; b - 60 and
    # b are the wall clock's. Its task ran before the first record (nothing to do then):
    # it must look again soon, not sleep a whole interval (the kill -9 test once waited
    # 300 s for its page so).
    target = (time.time() // 60) * 60 + 70  # 10 s after a boundary, on any date
    shift = target - time.time()
    b = target - 10

    def clock() -> float:
        return time.time() + shift

    lines = [usage(i, b - 61 - (20 - i) * 60) for i in range(21)]
    sink = RecordingSink()
    daemon = Daemon(settings(tmp_path), [LateSource([lines], 0.3)], sinks=[sink], clock=clock)
    await run_until(daemon, lambda: any(c.live for c in sink.cycles), limit_s=8)
    backlog = [c.now for c in sink.cycles if not c.live]
    assert backlog
    assert max(backlog) == b - 120
    assert next(c.now for c in sink.cycles if c.live) == b - 60


async def test_empty_polls_of_a_quiet_fleet_do_not_hold_the_wall_clock(tmp_path: Path) -> None:
    # the newest record is a minute old and stays so; polls keep coming, empty: that is
    # no backlog, and the wall clock must go on evaluating (the SIMs turn late / silent)
    now = time.time()
    source = QuietPollSource([usage(0, now - 60)], every_s=0.2)
    daemon = Daemon(settings(tmp_path, interval=1.0), [source])
    cycles: list[float] = []
    daemon.on_cycle.append(lambda r: cycles.append(r.evaluation.now))
    # cycles up to the present, not at the old record, while the empty polls go on (the
    # minute of cycles to get there took over 3 s under load: awaited, not assumed)
    await run_until(
        daemon,
        lambda: source.polls >= 15 and bool(cycles) and cycles[-1] >= now - 5.0,
        limit_s=60,
    )
