"""The daemon's shell: task group, ingest, the evaluation clock, shutdown, isolation."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from typing import TYPE_CHECKING

import orjson

from simwatch.config import EngineSettings, Settings
from simwatch.daemon import Daemon
from simwatch.sources.base import Batch, Sink, SourceStats
from simwatch.timeutil import format_rfc3339

if TYPE_CHECKING:
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


async def run_until(daemon: Daemon, predicate: object, limit_s: float = 10.0) -> None:
    task = asyncio.create_task(daemon.run())
    deadline = time.monotonic() + limit_s
    try:
        while not predicate():  # type: ignore[operator]
            assert time.monotonic() < deadline, "condition not reached in time"
            assert not task.done(), task
            await asyncio.sleep(0.02)
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
