"""InfluxDB sink benchmark: on_cycle time, line-protocol points/s, points/s written.

    python bench/bench_influx.py --sims 100000 1000000 --write-sims 100000

For each fleet size N (an inventory of N SIMs, 40 partners in 16 countries, 12 APNs, 20
customers; records decoded and applied as replay does):

- first cycle: every SIM reported once before it, so every SIM's data is new and every
  SIM leaves never_seen: N usage points + N state points + the group points. This is
  the cycle after a start; ``on_cycle`` time in ms.
- steady cycles: between two 1-minute cycles 1/15 of the SIMs report (a 15-minute
  rhythm): ~N/15 usage points per cycle; ``on_cycle`` median and max in ms.
- format: the first cycle's points turned into line protocol in batches as ``run()``
  does (``batch_size`` 5000), without sending: lines/s of the writer's CPU on the loop.
- write (fleet sizes in ``--write-sims``, needs victoria-metrics): the first cycle's
  points written by ``run()`` to VictoriaMetrics' ``/api/v2/write`` on loopback (batch
  5000), once as new series (VictoriaMetrics registers ~3 series per SIM: slow) and
  once more 30 s later to the existing series: points/s from the first batch to the
  buffer empty, and the longest the event loop was held meanwhile (a ticker task
  measures its own lateness; VictoriaMetrics competes for the same 2 cores).

The buffer is set large enough (``max_buffer_points`` = 3 N) that nothing is dropped.
One process, one core for simwatch (VictoriaMetrics runs beside it).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import orjson
from benchfleet import APNS, PARTNERS, iccid, inventory

from simwatch.core.engine import Engine, EngineConfig
from simwatch.core.records import Record, RecordDecoder
from simwatch.core.timeutil import format_rfc3339
from simwatch.shell.settings import InfluxSinkSettings
from simwatch.shell.sink_contract import Cycle
from simwatch.sinks.influx.sink import InfluxSink

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from servers import VictoriaMetrics

T0 = 1_794_960_000.0  # 2026-11-18T00:00:00Z
STEADY_CYCLES = 7


def build_engine(n: int) -> tuple[Engine, RecordDecoder]:
    engine = Engine(replace(EngineConfig(), warmup_s=0.0, initial_capacity=n))
    engine.load_inventory(inventory(n, "customer-"))
    return engine, RecordDecoder()


def report(engine: Engine, decoder: RecordDecoder, sims: np.ndarray, end: float, k: int) -> None:
    """One usage record from each SIM of ``sims`` ending at ``end``."""
    end_text = format_rfc3339(end)
    start_text = format_rfc3339(end - 60)
    for i in sims.tolist():
        mcc, mnc = PARTNERS[i % len(PARTNERS)]
        line = orjson.dumps({
            "kind": "usage",
            "record_id": f"u-{k}-{i}",
            "iccid": iccid(i),
            "start": start_text,
            "end": end_text,
            "bytes_up": 1200,
            "bytes_down": 340,
            "apn": APNS[i % len(APNS)],
            "mcc": mcc,
            "mnc": mnc,
        })  # fmt: skip
        record = decoder.decode_line(line, end + 60)
        if isinstance(record, Record):
            engine.ingest_record(record)


def sink_for(url: str, n: int) -> InfluxSink:
    settings = InfluxSinkSettings.model_validate({
        "url": url,
        "batch_size": 5000,
        "max_buffer_points": 3 * n,
        "flush_interval_s": 0.2,
    })  # fmt: skip
    return InfluxSink(settings, token=None)


def timed_cycle(sink: InfluxSink, engine: Engine, now: float) -> tuple[float, int, Cycle]:
    """(on_cycle seconds, points it added, the cycle)."""
    result = engine.evaluate(now)
    cycle = Cycle(engine, result, now, live=True)
    before = sink.stats.buffered + sink.stats.dropped
    started = time.perf_counter()
    sink.on_cycle(cycle)
    elapsed = time.perf_counter() - started
    return elapsed, sink.stats.buffered + sink.stats.dropped - before, cycle


async def format_all(sink: InfluxSink) -> tuple[int, float]:
    """Format every buffered point in batches as run() does, without sending."""
    lines = 0
    started = time.perf_counter()
    while sink.stats.buffered:  # the writer's steps, minus the HTTP request
        sink._reserve()  # noqa: SLF001 - the bench drives run()'s own steps
        lines += len((await sink._build_payload()).split(b"\n"))  # noqa: SLF001 - as above
        sink._release()  # noqa: SLF001 - as above
    return lines, time.perf_counter() - started


async def write_all(sink: InfluxSink) -> tuple[int, float, float]:
    """(points, seconds, longest loop stall in s) to write every buffered point."""
    worst = 0.0

    async def ticker() -> None:
        nonlocal worst
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + 0.005
            await asyncio.sleep(0.005)
            worst = max(worst, loop.time() - due)

    points = sink.stats.buffered
    sent0 = sink.stats.sent
    tick = asyncio.create_task(ticker())
    started = time.perf_counter()
    task = asyncio.create_task(sink.run())
    while sink.stats.buffered and not sink.stats.errors:  # noqa: ASYNC110 - polls the stats
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - started
    task.cancel()
    tick.cancel()
    await asyncio.gather(task, tick, return_exceptions=True)
    if sink.stats.errors:
        raise RuntimeError(f"write failed: {sink.stats.last_error}")
    assert sink.stats.sent - sent0 == points
    return points, elapsed, worst


def bench(n: int, vm_url: str | None) -> None:
    t_build = time.perf_counter()
    engine, decoder = build_engine(n)
    everyone = np.arange(n)
    report(engine, decoder, everyone, T0, 0)
    built = time.perf_counter() - t_build

    # the first cycle after a start: all new data, all leave never_seen
    sink = sink_for("http://127.0.0.1:9", n)  # formats only, never sends
    first_s, first_points, first = timed_cycle(sink, engine, T0 + 60)
    writers: list[InfluxSink] = []
    if vm_url is not None:
        writers.append(sink_for(vm_url, n))
        writers[0].on_cycle(first)  # the same points, to be written below
        # and once more 30 s later, to series that exist by then (a fresh sink that has
        # seen a cycle before: every SIM's bytes count as new)
        writers.append(sink_for(vm_url, n))
        writers[1]._cycles = 1  # noqa: SLF001 - skip the join-a-running-engine baseline
        writers[1].on_cycle(Cycle(engine, first.result, first.now + 30, live=True))
    lines, fmt_s = asyncio.run(format_all(sink))

    # steady cycles: 1/15 of the fleet reports between two cycles
    steady: list[float] = []
    steady_points: list[int] = []
    rng = np.random.default_rng(1)
    for c in range(1, STEADY_CYCLES + 1):
        now = T0 + 60 + 60 * c
        part = rng.choice(n, size=n // 15, replace=False)
        report(engine, decoder, part, now - 30, c)
        elapsed, added, _ = timed_cycle(sink, engine, now)
        steady.append(elapsed)
        steady_points.append(added)

    print(
        f"{n:>9,} SIMs (engine built in {built:.0f} s)\n"
        f"  first cycle : on_cycle {first_s * 1000:7.1f} ms, {first_points:,} points\n"
        f"  steady cycle: on_cycle median {statistics.median(steady) * 1000:6.1f} ms,"
        f" max {max(steady) * 1000:.1f} ms, ~{int(statistics.median(steady_points)):,}"
        f" points/cycle\n"
        f"  format      : {lines:,} lines in {fmt_s:.2f} s = {lines / fmt_s:,.0f} lines/s"
    )
    for writer, what in zip(writers, ("new series", "existing series"), strict=False):
        points, seconds, stall = asyncio.run(write_all(writer))
        print(
            f"  write       : {points:,} points in {seconds:.2f} s ="
            f" {points / seconds:,.0f} points/s to VictoriaMetrics ({what}),"
            f" longest loop stall {stall * 1000:.1f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sims", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--write-sims", type=int, nargs="*", default=[100_000])
    args = parser.parse_args()
    write = set(args.write_sims) & set(args.sims)
    if write and not VictoriaMetrics.available():
        print("victoria-metrics is not installed: no write figures")
        write = set()
    with tempfile.TemporaryDirectory() as tmp:
        vm = VictoriaMetrics(Path(tmp) / "vm") if write else None
        if vm is not None:
            vm.start()
        try:
            for n in args.sims:
                bench(n, vm.url if vm is not None and n in write else None)
        finally:
            if vm is not None:
                vm.stop()


if __name__ == "__main__":
    main()
