"""Soak: does resident memory stay flat while the daemon's loop runs for a long time?

    python bench/bench_soak.py --sims 1000000 --minutes 60

One process, one event loop, the same server side as bench_api.py (imported from it):
an engine of N SIMs filled with ``--reports`` usage records per SIM, the real API app
with /metrics, and on the loop: fresh usage records for random SIMs at
``--ingest-rate`` (decode + apply in chunks of 500), an evaluation every 5 s, and a
checkpoint every ``--checkpoint-every`` s (copy on the loop, write in a thread, into a
temporary folder, as the daemon's ``checkpoint`` task does). bench_api.py's load
generator runs in a separate process for the whole soak: ``--rate`` API requests/s and
a /metrics scrape every ``--scrape-every`` s.

Every ``--sample-every`` s the resident set size is read from /proc/self/statm (what an
operator's ``ps`` shows; malloc_trim runs once, after the fill, never during the soak).
After ``--warmup-minutes`` (the duplicate filter fills to its capacity, the first
checkpoint buffers are allocated) a least-squares line is fitted through the peak RSS of
each ``--window`` (default: the time one duplicate-filter generation of 1M ids takes to
fill, 200 s at 5,000 records/s); the script exits 1 when its slope is above
``--max-slope`` MiB per hour. Run it long enough for at least 3 windows after warm-up.

The threshold, 50 MiB/h by default: at the default rates (5,000 records/s, 200
requests/s) that is a leak of 3 bytes per record or 73 bytes per request, an object
kept per record or per request crosses it. Noise it must stay above: the duplicate
filter drops a generation of 1M ids every 200 s at 5,000 records/s (a sawtooth), and
the checkpoint copy is freed after each write.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import bench_api
import numpy as np
import orjson

from simwatch import checkpoint as ckpt

if TYPE_CHECKING:
    from simwatch.engine import Engine

PAGE = os.sysconf("SC_PAGE_SIZE")
MIB = 2**20


def rss_now() -> int:
    """Resident set size in bytes (second field of /proc/self/statm, in pages)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * PAGE


@dataclass
class Samples:
    started: float
    at: list[float] = field(default_factory=list)  # seconds since start
    rss: list[int] = field(default_factory=list)  # bytes
    load: list[str] = field(default_factory=list)  # /proc/loadavg, 1-minute figure
    held: list[str] = field(default_factory=list)  # what the engine holds (for --trace)

    def take(self, engine: Engine) -> None:
        self.at.append(time.perf_counter() - self.started)
        self.rss.append(rss_now())
        self.load.append(bench_api.load_average().split()[0])
        self.held.append(
            f"dedup ids {len(engine.ingestor.dedup):,}, open incidents {len(engine.incidents.open)}"
        )


async def sample_loop(samples: Samples, engine: Engine, every: float) -> None:
    k = 0
    while True:
        samples.take(engine)
        k += 1
        await asyncio.sleep(max(0.0, samples.started + k * every - time.perf_counter()))


async def checkpoint_loop(
    engine: Engine, directory: Path, every: float, copies: list[float], writes: list[float]
) -> None:
    """As the daemon's checkpoint task: copy between two ingest chunks, write in a thread
    (the ingest task here never awaits in the middle of a chunk, so the copy is whole)."""
    saver = ckpt.Checkpointer(directory)
    while True:
        await asyncio.sleep(every)
        began = time.perf_counter()
        snapshot = ckpt.capture(engine, at=time.time())
        copy_s = time.perf_counter() - began
        if await saver.save(snapshot, copy_s):
            copies.append(copy_s)
            writes.append(saver.stats.last_write_s)
        del snapshot


def slope_mib_per_h(
    at: list[float], rss: list[int], from_s: float, window_s: float
) -> tuple[float, int]:
    """Least-squares slope (MiB/h) of the peak RSS of each whole ``window_s`` window after
    ``from_s``: RSS is a sawtooth (the duplicate filter drops a generation every
    capacity/2/rate seconds), and a line through raw samples over a few teeth depends on
    where the run starts and ends in the tooth; one peak per tooth does not."""
    t = np.asarray(at) - from_s
    y = np.asarray(rss, dtype=np.float64) / MIB
    count = int(t.max() // window_s) if len(t) and t.max() > 0 else 0
    mids, peaks = [], []
    for w in range(count):
        inside = (t >= w * window_s) & (t < (w + 1) * window_s)
        if inside.any():
            mids.append((w + 0.5) * window_s)
            peaks.append(y[inside].max())
    if len(peaks) < 3:  # a line needs a few points
        return float("nan"), len(peaks)
    return float(np.polyfit(mids, peaks, 1)[0] * 3600), len(peaks)


async def soak(args: argparse.Namespace, engine: Engine) -> int:
    runner = await bench_api.start_server(engine, 0)
    port = int(runner.addresses[0][1])
    stats = bench_api.LiveStats(started=time.perf_counter())
    samples = Samples(started=stats.started)
    copies: list[float] = []
    writes: list[float] = []
    gc.callbacks.append(stats.on_gc)
    seconds = args.minutes * 60
    with tempfile.TemporaryDirectory(prefix="simwatch-soak-") as tmp:
        live = [
            asyncio.create_task(bench_api.eval_loop(engine, stats)),
            asyncio.create_task(sample_loop(samples, engine, args.sample_every)),
        ]
        if args.ingest_rate > 0:
            task = bench_api.ingest_loop(engine, args.sims, args.ingest_rate, stats)
            live.append(asyncio.create_task(task))
        if args.checkpoint_every > 0:
            task2 = checkpoint_loop(engine, Path(tmp), args.checkpoint_every, copies, writes)
            live.append(asyncio.create_task(task2))
        client_args = argparse.Namespace(
            sims=args.sims, rate=args.rate, seconds=seconds, scrape_every=args.scrape_every
        )
        out = await bench_api.run_load(
            port, client_args, limit_s=seconds + 180, runner=runner, stats=stats, live=live
        )
    samples.take(engine)
    bench_api.report(client_args_for_report(args, seconds), orjson.loads(out), stats)
    if copies:
        print(
            f"checkpoints during the soak: {len(copies)}, copy on the loop median "
            f"{np.median(copies) * 1000:.0f} ms (max {max(copies) * 1000:.0f}), write "
            f"median {np.median(writes) * 1000:.0f} ms"
        )
    return judge(args, samples)


def client_args_for_report(args: argparse.Namespace, seconds: float) -> argparse.Namespace:
    return argparse.Namespace(rate=args.rate, seconds=seconds, ingest_rate=args.ingest_rate)


def judge(args: argparse.Namespace, samples: Samples) -> int:
    warm = args.warmup_minutes * 60
    window = args.window or 1_000_000 / max(args.ingest_rate, 1.0)  # dedup capacity/2 / rate
    slope, points = slope_mib_per_h(samples.at, samples.rss, warm, window)
    after = [r for t, r in zip(samples.at, samples.rss, strict=True) if t >= warm]
    print(
        f"RSS: start {samples.rss[0] / MIB:,.0f} MiB, after warm-up "
        f"({args.warmup_minutes:g} min) {after[0] / MIB if after else float('nan'):,.0f} MiB, "
        f"end {samples.rss[-1] / MIB:,.0f} MiB; after warm-up min "
        f"{min(after, default=0) / MIB:,.0f} / max {max(after, default=0) / MIB:,.0f} MiB"
    )
    print(
        f"RSS slope after warm-up: {slope:+.1f} MiB/h over the peaks of {points} "
        f"windows of {window:.0f} s "
        f"(limit {args.max_slope:g} MiB/h); 1-minute load average "
        f"{min(samples.load)}-{max(samples.load)} during the soak"
    )
    if args.trace:
        rows = zip(samples.at, samples.rss, samples.load, samples.held, strict=True)
        for t, r, load, held in rows:
            print(f"  t={t:7.1f} s  rss {r / MIB:8.1f} MiB  load {load}  {held}")
    if not slope <= args.max_slope:  # NaN fails too: too few samples to judge
        print("FAIL: resident memory grows", file=sys.stderr)
        return 1
    print("OK: resident memory flat")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sims", type=int, default=1_000_000)
    parser.add_argument("--minutes", type=float, default=60.0, help="length of the soak")
    parser.add_argument("--warmup-minutes", type=float, default=10.0)
    parser.add_argument("--reports", type=int, default=2, help="usage records per SIM in the fill")
    parser.add_argument("--ingest-rate", type=float, default=5_000.0, help="records per second")
    parser.add_argument("--rate", type=float, default=200.0, help="API requests per second")
    parser.add_argument("--scrape-every", type=float, default=15.0, help="seconds, 0: never")
    parser.add_argument("--checkpoint-every", type=float, default=120.0, help="seconds, 0: never")
    parser.add_argument("--sample-every", type=float, default=5.0, help="RSS sample, seconds")
    parser.add_argument(
        "--window", type=float, default=0.0, help="s; 0: one duplicate-filter generation"
    )
    parser.add_argument("--max-slope", type=float, default=50.0, help="MiB per hour")
    parser.add_argument("--trace", action="store_true", help="print every RSS sample")
    args = parser.parse_args()
    print(f"load average at start: {bench_api.load_average()}")
    began = time.perf_counter()
    engine = bench_api.build_engine(args.sims, args.reports)
    filled = rss_now()
    gc.collect()
    bench_api.malloc_trim()  # once: the fill's line buffers; never during the soak
    print(
        f"fill: {args.sims:,} SIMs, {args.sims * args.reports:,} records in "
        f"{time.perf_counter() - began:.1f} s; RSS {filled / MIB:,.0f} MiB, "
        f"{rss_now() / MIB:,.0f} MiB after gc + malloc_trim"
    )
    engine.evaluate(time.time())
    sys.exit(asyncio.run(soak(args, engine)))


if __name__ == "__main__":
    main()
