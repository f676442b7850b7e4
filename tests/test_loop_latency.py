"""The event loop is never held long by ingest or evaluation (issue 12).

Documented behaviour (docs/performance.md, service/daemon.py): batches are decoded and
applied in chunks of ``daemon.CHUNK`` records with the loop free in between, the
heavy part of each evaluation cycle runs in a worker thread, and so do the fleet's
/metrics families (``CachedMetrics``, scraped every 20 ms here), so no callback on the
loop takes more than 10 ms. The fleet (60,000 SIMs, 5,000-line batches, a backlog of
evaluation cycles) is large enough that a whole batch or a whole cycle on the loop takes
longer than that.

The loop runs in asyncio's debug mode with ``slow_callback_duration`` at 10 ms, and each
callback's time is also taken on the loop thread's CPU clock (``time.thread_time``):
the test fails on a callback that *worked* more than 10 ms, not counting the pauses of
Python's cyclic garbage collector (tens of ms for a full collection of this test
process, whatever the loop is running: see docs/performance.md). Wall time alone is not
the criterion because five engineers share the machine's two cores: another process,
or the evaluation's worker thread holding the GIL for its switch interval, stretches
a 2 ms callback past 10 ms of wall time without the loop doing more work. The callbacks
over 10 ms of wall time are reported in the failure message.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
from typing import TYPE_CHECKING

import orjson
from aiohttp.test_utils import make_mocked_request
from test_daemon import ListSource, run_until, settings

from simwatch.core.timeutil import format_rfc3339
from simwatch.http.metrics import CachedMetrics, EngineCollector
from simwatch.service.daemon import Daemon
from simwatch.shell.health import DaemonHealth

if TYPE_CHECKING:
    from pathlib import Path

    import pytest

SIMS = 60_000
BATCH = 5_000


def line(k: int, i: int, end: str, start: str) -> bytes:
    return orjson.dumps(
        {
            "kind": "usage" if i % 5 else "session",
            "record_id": f"r-{k}-{i}",
            "iccid": f"8931{i:015d}",
            "start": start,
            "end": end,
            "ts": end,
            "session_id": f"s{i}",
            "status": "interim",
            "bytes_up": 100 + k,
            "bytes_down": 10,
            "apn": "meters.acme",
            "mcc": "262",
            "mnc": f"0{i % 3}",
        }
    )


def make_batches() -> list[list[bytes]]:
    origin = time.time() - 4 * 3600
    batches: list[list[bytes]] = [[line(9, 0, format_rfc3339(origin - 60), "")]]
    for k in range(4):  # four reports per SIM, 15 minutes apart: cycles in between
        end = origin + k * 900
        start_text, end_text = format_rfc3339(end - 900), format_rfc3339(end)
        lines = [line(k, i, end_text, start_text) for i in range(SIMS)]
        batches += [lines[j : j + BATCH] for j in range(0, SIMS, BATCH)]
    return batches


async def test_no_callback_over_10_ms_while_ingesting_and_evaluating(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches = make_batches()
    source = ListSource("bulk", batches)
    loop_thread = threading.get_ident()
    worked: list[tuple[float, str]] = []
    run = asyncio.events.Handle._run

    counted = [0]  # callbacks timed
    collecting = [0.0, 0.0]  # (start of the running collection, total) on the loop thread

    def on_gc(phase: str, _info: dict[str, int]) -> None:
        if threading.get_ident() == loop_thread:
            if phase == "start":
                collecting[0] = time.thread_time()
            else:
                collecting[1] += time.thread_time() - collecting[0]

    def timed(handle: asyncio.Handle) -> None:
        if threading.get_ident() != loop_thread or source.applied < 1:  # after one batch:
            # the first calls pay one-off lazy initialisations (numpy, msgspec)
            run(handle)
            return
        started = time.thread_time()
        gc_before = collecting[1]
        run(handle)
        # the cyclic garbage collector's pauses are the interpreter's, not this work's
        spent = time.thread_time() - started - (collecting[1] - gc_before)
        counted[0] += 1
        if spent > 0.010:
            worked.append((spent, repr(handle)[:160]))

    monkeypatch.setattr(asyncio.events.Handle, "_run", timed)
    monkeypatch.setattr(gc, "callbacks", [*gc.callbacks, on_gc])
    daemon = Daemon(settings(tmp_path), [source])
    # /metrics as `simwatch run` serves it, scraped all along: the fleet's families are
    # rendered in a worker thread after cycles (CachedMetrics), never on the loop
    cached = CachedMetrics(
        EngineCollector(daemon.engine, DaemonHealth(), daemon.source_stats, version="0"),
        lock=daemon.batch_lock,
        process=False,
    )

    def refresh(_result: object) -> None:
        cached.refresh_soon()

    daemon.on_cycle.append(refresh)
    scraped: list[int] = []

    async def scrape() -> None:
        while True:
            await asyncio.sleep(0.02)
            response = await cached.handle(make_mocked_request("GET", "/metrics"))
            scraped.append(response.status)

    loop = asyncio.get_running_loop()
    loop.set_debug(True)
    loop.slow_callback_duration = 0.010
    scraper = asyncio.create_task(scrape())
    try:
        with caplog.at_level(logging.WARNING, logger="asyncio"):
            await run_until(daemon, lambda: source.applied == len(batches), limit_s=80)
    finally:
        scraper.cancel()
        loop.set_debug(False)
    slow = [r.getMessage()[-120:] for r in caplog.records if "took" in r.getMessage()]
    report = f"{len(worked)} of {counted[0]} over 10 ms: {worked[:5]}; wall: {len(slow)} {slow[:3]}"
    # Two cores shared by five engineers (load average 4-8 while this was written): a
    # 2 ms chunk occasionally measures 10-34 ms even on the thread's CPU clock. So three
    # callbacks may pass 10 ms; whole batches decoded or applied on the loop (96 of 473
    # callbacks over 10 ms when tried) fail it, and so does any stall of 100 ms. A cycle
    # at this fleet size costs under 10 ms: it is not what this test guards (the
    # worker thread is measured by bench/bench_api.py at 1M SIMs).
    assert len(worked) <= 3, report
    assert max((w[0] for w in worked), default=0.0) < 0.100, report
    assert counted[0] > 500  # the chunks ran as separate callbacks
    assert source.stats.received == 4 * SIMS + 1
    assert daemon.health.evaluations >= 45  # the backlog's cycles ran (in the worker)
    assert len(daemon.engine.state) == SIMS
    assert cached.renders >= 2  # the fleet's families followed the cycles
    assert len(scraped) > 20
    assert set(scraped) == {200}
