"""What a worker thread buys the event loop: ingest and evaluation on the loop or beside it.

    python bench/bench_offload.py --sims 1000000 --seconds 10

Builds an engine as ``bench_api.py`` does, then runs one event loop per mode for
``--seconds`` with two loads on it:

- "requests": a callback due every ``1 / --rate`` s that spins ``--request-us`` of Python
  work (a stand-in for an API request's HTTP + view CPU); its latency runs from when it
  was due until it finished, so it counts every wait for the loop or for the GIL;
- ingest: ``bench_api.py``'s live feed, ``--ingest-rate`` records/s in chunks of 500,
  columnar decode + ``Engine.ingest_batch``, and one evaluation (``Engine.assess`` +
  ``finish_cycle``) every 5 s.

Modes: ``loop`` decodes and applies each chunk on the loop (as the daemon does, in
slices); ``thread`` hands each chunk's decode + apply to a worker thread
(``asyncio.to_thread``), one at a time, in order. The evaluation's ``assess`` runs in a
worker thread in both (as in the daemon). Printed per mode: the "requests"' p50 / p99 /
max latency, how many came more than 10 ms late, the CPU time of ingest per record, the
wall time of the chunks and of ``assess``. A thread only helps if the work releases the
GIL; pure-Python parts and short numpy calls do not, so the thread then competes with
the loop for the GIL (and with ``sys.getswitchinterval()`` slices) instead of running
beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from typing import TYPE_CHECKING

import numpy as np
from bench_api import CHUNK, build_engine, live_chunk, load_average

from simwatch.core.columnar import ColumnarDecoder

if TYPE_CHECKING:
    from simwatch.core.engine import Engine

EVAL_INTERVAL_S = 5.0
LATE_S = 0.010


def spin(seconds: float) -> None:
    """Hold the GIL doing Python work for ``seconds`` of this thread's CPU time (a
    request's CPU: a wall-clock spin would burn more when the machine preempts it)."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


class Feed:
    """``bench_api.py``'s live records, decoded and applied one chunk per call."""

    def __init__(self, engine: Engine, n: int) -> None:
        self.engine = engine
        self.n = n
        self.decoder = ColumnarDecoder()
        self.rng = random.Random(2)
        self.seq = 10**9
        self.cpu_s = 0.0
        self.records = 0

    def lines(self) -> tuple[list[bytes], float]:
        now = time.time()
        lines = live_chunk(self.n, self.seq, now, self.rng)
        self.seq += CHUNK
        return lines, now

    def apply(self, lines: list[bytes], now: float) -> None:
        cpu = time.thread_time()
        batch = self.decoder.decode_lines(lines, now)
        self.engine.ingest_batch(batch.records)
        self.cpu_s += time.thread_time() - cpu
        self.records += len(batch.records)


async def run_mode(mode: str, engine: Engine, args: argparse.Namespace) -> None:
    feed = Feed(engine, args.sims)
    lock = asyncio.Lock()
    latencies: list[float] = []
    chunk_wall: list[float] = []
    assess_wall: list[float] = []
    began = time.perf_counter()
    end = began + args.seconds
    request_s = args.request_us / 1e6

    async def requests() -> None:
        k = 0
        while (due := began + k / args.rate) < end:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            spin(request_s)
            latencies.append(time.perf_counter() - due)
            k += 1

    async def ingest() -> None:
        k = 0
        while (due := began + k * CHUNK / args.ingest_rate) < end:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            lines, now = feed.lines()
            async with lock:
                t = time.perf_counter()
                if mode == "thread":
                    await asyncio.to_thread(feed.apply, lines, now)
                else:
                    feed.apply(lines, now)
                chunk_wall.append(time.perf_counter() - t)
            k += 1

    async def evaluate() -> None:
        while time.perf_counter() + EVAL_INTERVAL_S < end:
            await asyncio.sleep(EVAL_INTERVAL_S)
            async with lock:
                now = time.time()
                t = time.perf_counter()
                evaluation = await asyncio.to_thread(engine.assess, now)
                assess_wall.append(time.perf_counter() - t)
                engine.finish_cycle(now, evaluation, t)

    cpu = time.process_time()
    await asyncio.gather(requests(), ingest(), evaluate())
    wall = time.perf_counter() - began
    cpu = time.process_time() - cpu
    ms = np.asarray(latencies) * 1000
    p50, p99 = np.percentile(ms, [50, 99])
    late = int((ms > LATE_S * 1000).sum())
    print(
        f"{mode:<6} requests: {len(ms)} at {len(ms) / wall:.0f}/s, p50 {p50:.2f} ms, "
        f"p99 {p99:.2f} ms, max {ms.max():.1f} ms, {late} over {LATE_S * 1000:.0f} ms | "
        f"ingest {feed.records / wall:,.0f} records/s, {feed.cpu_s / feed.records * 1e6:.1f} us "
        f"CPU/record, chunk wall median {statistics.median(chunk_wall) * 1000:.1f} ms "
        f"(max {max(chunk_wall) * 1000:.0f}) | assess wall "
        f"{', '.join(f'{a * 1000:.0f}' for a in assess_wall)} ms | process CPU "
        f"{cpu / wall:.0%} of a core | load {load_average()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sims", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=2000.0, help="stand-in requests/s")
    parser.add_argument("--request-us", type=float, default=150.0, help="CPU per request")
    parser.add_argument("--ingest-rate", type=float, default=20_000.0, help="records/s")
    parser.add_argument(
        "--modes", default="loop,thread,loop,thread", help="comma-separated: loop, thread"
    )
    args = parser.parse_args()
    engine = build_engine(args.sims, 2, columnar=True)
    engine.evaluate(time.time())
    print(
        f"{args.sims:,} SIMs; {args.rate:.0f} stand-in requests/s of {args.request_us:.0f} us, "
        f"{args.ingest_rate:,.0f} records/s in chunks of {CHUNK}, switch interval "
        f"{sys.getswitchinterval() * 1000:.0f} ms"
    )
    for mode in args.modes.split(","):
        asyncio.run(run_mode(mode, engine, args))


if __name__ == "__main__":
    main()
