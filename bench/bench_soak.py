"""Soak: does resident memory stay flat while the daemon's loop runs for a long time?

    python bench/bench_soak.py --sims 1000000 --minutes 38 --warmup-minutes 8

One process, one event loop, the same server side as bench_api.py (imported from it):
an engine of N SIMs filled with ``--reports`` usage records per SIM, the real API app
with /metrics, and on the loop: fresh usage records for random SIMs at
``--ingest-rate`` (decode + apply in chunks of 500), an evaluation every 5 s, and a
checkpoint every ``--checkpoint-every`` s (copy in a worker thread, write in a thread,
into a temporary folder, through ``simwatch.service.checkpoint.Checkpointer`` as the daemon's
``checkpoint`` task does: it releases the copy after the write and hands the freed
memory back to the OS). bench_api.py's load generator runs in a separate process for
the whole soak: ``--rate`` API requests/s and a /metrics scrape every ``--scrape-every`` s.

Every ``--sample-every`` s the resident set size is read from /proc/self/statm (what an
operator's ``ps`` shows; the bench itself calls malloc_trim once, after the fill, never
during the soak). After ``--warmup-minutes`` (the duplicate filter fills to its
capacity, the first checkpoints ran) a least-squares line is fitted through the peak
RSS of each ``--window`` (default: the time one duplicate-filter generation of 1M ids
takes to fill, 200 s at 5,000 records/s); the script exits 1 when its slope is above
``--max-slope`` MiB per hour; so it does when the line through the windows of the
second half of the time after warm-up alone is steeper (a bounded structure still
filling, or an allocator still settling, shows in the first half only: the second half
answers "flat or not" once warmed up). It also prints the window peaks and the mean of
their first and last thirds. Run it long enough for at least 3 windows after warm-up,
6 for the second half.
Samples taken while a checkpoint copy is held (copy and write, ~2 s every 120 s) are
left out of the line and reported apart: they show that copy (~166 MB at 1M SIMs),
which is freed right after, and a window's peak would otherwise depend on whether a
sample fell inside a write.

The threshold, 50 MiB/h by default: at the default rates (5,000 records/s, 200
requests/s) that is a leak of 3 bytes per record or 73 bytes per request, an object
kept per record or per request crosses it. Noise it must stay above: the duplicate
filter drops a generation of 1M ids every 200 s at 5,000 records/s (a sawtooth).

What grew before (docs/performance.md, "Soak"): no Python object and no live C block,
but freed heap that glibc kept resident. Each checkpoint copy (~166 MB at 1M SIMs) was
freed below live blocks, so its pages stayed resident and the next copies landed
partly elsewhere: the resident set rose by steps at checkpoints for tens of minutes.
``Checkpointer.save`` now releases the copy after the write and calls malloc_trim.
Then, at 20,000 records/s, the duplicate filter's own churn: it kept each generation
of 1M ids as a Python set of int objects, rebuilt every 50 s, and pymalloc's arenas and
glibc's heap crept under it (+108 MiB/h at 1M SIMs). Its generations are now
preallocated numpy hash tables, reused: nothing is allocated per id.

``--tracemalloc`` takes two memory points, after the warm-up and a whole number of
windows later (the same phase of the duplicate filter's sawtooth, so its generation
does not show as growth), while the load still runs: gc.collect, a tracemalloc
snapshot (tracing starts after the fill; ``--tracemalloc-frames`` frames per
allocation), gc-tracked objects by type, the engine's container sizes, glibc's
``mallinfo2``, pymalloc's figures (only with ``--tracemalloc-frames 0``: tracing hides
them) and resident bytes per mapping (``[heap]``, anonymous, files). It prints RSS
growth against traced growth (what is not in live blocks is the allocators'), the top
growth by line and by traceback, and object counts; at the end point it trims the heap
once (RSS sampling stops there) to show how much of RSS was freed memory kept by glibc.
Tracing costs several times per allocation: at 200 requests/s and 5,000 records/s the
loop saturates (lower ``--rate`` or use ``--tracemalloc-frames 0`` for the allocator
figures alone).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import os
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import bench_api
import numpy as np
import orjson

from simwatch.core import timeutil
from simwatch.service import checkpoint as ckpt

if TYPE_CHECKING:
    from simwatch.core.engine import Engine

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
    in_checkpoint: list[bool] = field(default_factory=list)  # a checkpoint copy was held
    stopped: bool = False  # no more samples (--tracemalloc trims the heap at its end point)
    checkpointing: bool = False  # set by the checkpoint task from its copy until it is freed

    def take(self, engine: Engine) -> None:
        if self.stopped:
            return
        self.at.append(time.perf_counter() - self.started)
        self.rss.append(rss_now())
        self.in_checkpoint.append(self.checkpointing)
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


@dataclass
class CheckpointTimes:
    """Seconds per checkpoint: the copy, the write, handing the freed copy back."""

    copies: list[float] = field(default_factory=list)
    writes: list[float] = field(default_factory=list)
    releases: list[float] = field(default_factory=list)


async def checkpoint_loop(
    engine: Engine, directory: Path, every: float, times: CheckpointTimes, samples: Samples
) -> None:
    """As the daemon's checkpoint task: copy in a worker thread, write in a thread, the
    copy released and the freed memory handed back by ``Checkpointer.save``. (The daemon
    holds ingest and evaluation while the copy runs; here they go on, so a copy may mix
    two chunks' states: no matter for memory, which is what this measures.) RSS samples
    taken meanwhile are marked: they hold the copy, which is freed after the write."""
    saver = ckpt.Checkpointer(directory)
    while True:
        await asyncio.sleep(every)
        samples.checkpointing = True
        try:
            began = time.perf_counter()
            snapshot = await asyncio.to_thread(ckpt.capture, engine, at=time.time())
            copy_s = time.perf_counter() - began
            if await saver.save(snapshot, copy_s):
                times.copies.append(copy_s)
                times.writes.append(saver.stats.last_write_s)
                times.releases.append(saver.stats.last_release_s)
            del snapshot
        finally:
            samples.checkpointing = False


# ---- --tracemalloc: what grows, Python objects or the heap around them -----------------

TRACE_TOP = 25  # rows printed per table


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",  # bytes from sbrk (the main heap)
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",  # bytes in mmapped chunks (large blocks: numpy arrays, big sets)
            "usmblks",
            "fsmblks",
            "uordblks",  # bytes in use
            "fordblks",  # bytes free inside the heap
            "keepcost",
        )
    ]


def glibc_heap() -> dict[str, int]:
    """glibc's own figures (``mallinfo2``): heap, mmapped, in use, free; {} when absent."""
    try:
        fn = ctypes.CDLL("libc.so.6").mallinfo2
    except (OSError, AttributeError):
        return {}
    fn.restype = _MallInfo2
    info = fn()
    return {name: int(getattr(info, name)) for name in ("arena", "hblkhd", "uordblks", "fordblks")}


def pymalloc_stats() -> tuple[dict[str, int], dict[int, tuple[int, int, int]]]:
    """``sys._debugmallocstats`` parsed: its totals (``# arenas allocated current``, ``#
    bytes in allocated blocks``...) and per size class (pools, blocks in use, free
    blocks). It writes to the C stderr, so that is redirected to a file meanwhile."""
    with tempfile.TemporaryFile() as out:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(out.fileno(), 2)
            sys._debugmallocstats()  # noqa: SLF001 - CPython's only view of its allocator
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        text = out.read().decode(errors="replace")
    totals: dict[str, int] = {}
    classes: dict[int, tuple[int, int, int]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 5 and all(p.isdigit() for p in parts):
            _, size, pools, used, free = map(int, parts)
            classes[size] = (pools, used, free)
        elif "=" in line:
            key, _, value = line.rpartition("=")
            with contextlib.suppress(ValueError):
                totals[" ".join(key.split())] = int(value.strip().replace(",", ""))
    return totals, classes


def _pymalloc_figure(totals: dict[str, int], prefix: str) -> int:
    return next((v for k, v in totals.items() if k.startswith(prefix)), 0)


def engine_sizes(engine: Engine) -> dict[str, int]:
    """Lengths of the engine's containers that could grow with records, requests, cycles."""
    state = engine.state
    incidents = engine.incidents
    return {
        "dedup ids": len(engine.ingestor.dedup),
        "incidents open": len(incidents.open),
        "incidents resolved": len(incidents.resolved),
        "rejection reasons": len(engine.rejected),
        "partner names": len(engine.ingestor.partner_names),
        "ingest kinds": len(engine.ingestor.stats.by_kind),
        "leaves": state.n_leaves,
        "SIMs": len(state),
        "capacity": state.capacity,
        "apns": len(state.apns),
        "partners": len(state.partners),
        "countries": len(state.countries),
        "causes": len(state.causes),
        "baseline rows": int(engine.baseline.overdue.shape[0]),
        "dedup bytes": engine.ingestor.dedup.nbytes,
        "format_rfc3339 minutes": timeutil._minute_text.cache_info().currsize,  # noqa: SLF001 - its bound
        "asyncio tasks": len(asyncio.all_tasks()),
        "gc objects": len(gc.get_objects()),
    }


def rss_by_mapping() -> dict[str, int]:
    """Resident bytes per kind of mapping (/proc/self/smaps): ``heap`` (glibc's main
    heap, grown with brk), ``anon`` (pymalloc arenas, mmapped blocks, thread arenas),
    ``file`` (code, libraries) and ``other`` ([stack], [vdso]...); and how much of it is
    transparent huge pages."""
    out = dict.fromkeys(("heap", "anon", "file", "other", "of which huge pages"), 0)
    kind = "other"
    for line in Path("/proc/self/smaps").read_text().splitlines():
        first = line.split(maxsplit=6)
        if len(first) >= 5 and "-" in first[0] and ":" in first[3]:  # a mapping's header
            name = first[5] if len(first) > 5 else ""
            if name == "[heap]":
                kind = "heap"
            elif not name:
                kind = "anon"
            elif name.startswith("["):
                kind = "other"
            else:
                kind = "file"
        elif first and first[0] == "Rss:":
            out[kind] += int(first[1]) * 1024
        elif first and first[0] == "AnonHugePages:":
            out["of which huge pages"] += int(first[1]) * 1024
    return out


@dataclass
class MemoryPoint:
    """Everything ``--tracemalloc`` compares between two moments."""

    label: str
    at: float  # seconds since the start of the soak
    rss: int
    traced: int  # bytes of live blocks tracemalloc traces (Python objects, numpy data)
    overhead: int  # tracemalloc's own memory (part of RSS, not of the daemon)
    snapshot: tracemalloc.Snapshot | None  # None: not tracing (--tracemalloc-frames 0)
    types: Counter[str]  # gc-tracked objects by type
    pymalloc: dict[str, int]
    size_classes: dict[int, tuple[int, int, int]]
    glibc: dict[str, int]
    sizes: dict[str, int]
    mappings: dict[str, int]  # resident bytes per kind of mapping
    trimmed: dict[str, int] = field(default_factory=dict)  # the same after malloc_trim


def memory_point(label: str, started: float, engine: Engine) -> MemoryPoint:
    gc.collect()
    snapshot = None
    if tracemalloc.is_tracing():
        snapshot = tracemalloc.take_snapshot().filter_traces(
            (
                tracemalloc.Filter(inclusive=False, filename_pattern=tracemalloc.__file__),
                tracemalloc.Filter(inclusive=False, filename_pattern="<frozen importlib.*"),
                tracemalloc.Filter(inclusive=False, filename_pattern="<unknown>"),
            )
        )
    types = Counter(type(o).__qualname__ for o in gc.get_objects())
    totals, classes = pymalloc_stats()
    return MemoryPoint(
        label=label,
        at=time.perf_counter() - started,
        rss=rss_now(),
        traced=tracemalloc.get_traced_memory()[0],
        overhead=tracemalloc.get_tracemalloc_memory(),
        snapshot=snapshot,
        types=types,
        pymalloc=totals,
        size_classes=classes,
        glibc=glibc_heap(),
        sizes=engine_sizes(engine),
        mappings=rss_by_mapping(),
    )


async def trace_loop(
    points: list[MemoryPoint], engine: Engine, samples: Samples, first_s: float, last_s: float
) -> None:
    """A memory point at ``first_s`` (after warm-up) and one at ``last_s`` seconds; then
    RSS sampling stops (the heap is trimmed once for the report)."""
    started = samples.started
    for label, when in (("after warm-up", first_s), ("end", last_s)):
        await asyncio.sleep(max(0.0, started + when - time.perf_counter()))
        points.append(memory_point(label, started, engine))
    # At the end only (never during the measured span): how much of the resident set
    # was freed heap that glibc had kept.
    samples.stopped = True
    bench_api.malloc_trim()
    points[-1].trimmed = rss_by_mapping()


def trace_times(args: argparse.Namespace, seconds: float, window: float) -> tuple[float, float]:
    """When to take the two points: after the warm-up and a whole number of duplicate
    filter generations later (the same phase of its sawtooth, so a generation's set does
    not show as growth), a little before the load ends (while everything is still live)."""
    first = args.warmup_minutes * 60
    room = seconds - 15.0 - first
    whole = int(room // window) * window if room >= window else room
    return first, first + max(whole, 1.0)


def _mib(n: float) -> str:
    return f"{n / MIB:+,.1f} MiB"


def trace_report(points: list[MemoryPoint]) -> None:
    """Print what grew between the two points: RSS against traced memory, the allocators'
    figures, the engine's containers, gc-tracked objects by type, and (when tracing) the
    top growth by line and by traceback."""
    if len(points) < 2:
        print("memory points: the soak ended before the second one")
        return
    a, b = points
    span_h = (b.at - a.at) / 3600
    rss = b.rss - a.rss
    print(
        f"\n--- memory: {a.label} (t={a.at:.0f} s) -> {b.label} (t={b.at:.0f} s), "
        f"{span_h * 60:.1f} min ---"
    )
    if a.snapshot is not None:
        traced, overhead = b.traced - a.traced, b.overhead - a.overhead
        print(
            f"RSS {_mib(rss)} ({rss / MIB / span_h:+,.1f} MiB/h); traced live blocks "
            f"{_mib(traced)} ({traced / MIB / span_h:+,.1f} MiB/h); tracemalloc's own "
            f"memory {_mib(overhead)}; RSS growth not in live blocks: "
            f"{_mib(rss - traced - overhead)}"
        )
    else:
        print(f"RSS {_mib(rss)} ({rss / MIB / span_h:+,.1f} MiB/h); not tracing")
    print(
        "resident by mapping: "
        + ", ".join(
            f"{k} {a.mappings[k] / MIB:,.1f} -> {b.mappings[k] / MIB:,.1f} MiB" for k in a.mappings
        )
        + (
            "; at the end after malloc_trim: "
            + ", ".join(f"{k} {v / MIB:,.1f} MiB" for k, v in b.trimmed.items())
            if b.trimmed
            else ""
        )
    )
    _allocator_report(a, b)
    print(
        "engine containers: "
        + ", ".join(
            f"{k} {a.sizes[k]:,}" + (f" -> {b.sizes[k]:,}" if b.sizes[k] != a.sizes[k] else "")
            for k in a.sizes
        )
    )
    types = b.types.copy()
    types.subtract(a.types)
    top = [(k, v) for k, v in types.most_common(TRACE_TOP) if v > 0]
    print(
        "gc-tracked objects, growth by type: "
        + (", ".join(f"{k} {v:+,} (now {b.types[k]:,})" for k, v in top) or "none")
    )
    if a.snapshot is not None and b.snapshot is not None:
        _traces_report(a.snapshot, b.snapshot)


def _allocator_report(a: MemoryPoint, b: MemoryPoint) -> None:
    if a.pymalloc and b.pymalloc:  # empty while tracemalloc wraps the allocator
        arenas = [_pymalloc_figure(p.pymalloc, "# arenas allocated current") for p in (a, b)]
        used = [_pymalloc_figure(p.pymalloc, "# bytes in allocated blocks") for p in (a, b)]
        free = [_pymalloc_figure(p.pymalloc, "# bytes in available blocks") for p in (a, b)]
        print(
            f"pymalloc: arenas {arenas[0]:,} -> {arenas[1]:,} (1 MiB each); bytes in "
            f"allocated blocks {_mib(used[1] - used[0])}, in free blocks "
            f"{_mib(free[1] - free[0])}"
        )
        rows = []
        for size in sorted(set(a.size_classes) | set(b.size_classes)):
            new = b.size_classes.get(size, (0, 0, 0))
            old = a.size_classes.get(size, (0, 0, 0))
            if new[0] != old[0]:
                rows.append(
                    f"{size} B: pools {new[0] - old[0]:+,} (now {new[0]:,}), blocks in use "
                    f"{new[1] - old[1]:+,}, free {new[2] - old[2]:+,}"
                )
        print("pymalloc size classes whose pools changed: " + ("; ".join(rows) or "none"))
    if a.glibc and b.glibc:
        print(
            "glibc malloc: "
            + ", ".join(
                f"{k} {a.glibc[k] / MIB:,.1f} -> {b.glibc[k] / MIB:,.1f} MiB" for k in a.glibc
            )
            + " (arena: sbrk heap, hblkhd: mmapped, uordblks: in use, fordblks: free)"
        )


def _traces_report(a: tracemalloc.Snapshot, b: tracemalloc.Snapshot) -> None:
    print(f"top {TRACE_TOP} growth by line (size, blocks):")
    for stat in b.compare_to(a, "lineno")[:TRACE_TOP]:
        frame = stat.traceback[0]
        print(
            f"  {_mib(stat.size_diff):>13} {stat.count_diff:+9,} blocks  "
            f"{frame.filename}:{frame.lineno}"
        )
    print("top 10 growth by traceback (innermost frame last):")
    for stat in b.compare_to(a, "traceback")[:10]:
        print(f"  {_mib(stat.size_diff)} {stat.count_diff:+,} blocks, now {stat.count:,}:")
        for line in stat.traceback.format(most_recent_first=False):
            print(f"      {line}")


def slope_mib_per_h(
    at: list[float], rss: list[int], from_s: float, window_s: float
) -> tuple[float, int]:
    """Least-squares slope (MiB/h) of the peak RSS of each whole ``window_s`` window after
    ``from_s``: RSS is a sawtooth (the duplicate filter drops a generation every
    capacity/2/rate seconds), and a line through raw samples over a few teeth depends on
    where the run starts and ends in the tooth; one peak per tooth does not."""
    mids, peaks = _peaks(at, rss, from_s, window_s)
    if len(peaks) < 3:  # a line needs a few points
        return float("nan"), len(peaks)
    return float(np.polyfit(mids, peaks, 1)[0] * 3600), len(peaks)


def window_peaks(at: list[float], rss: list[int], from_s: float, window_s: float) -> list[float]:
    """The peak RSS (MiB) of each whole ``window_s`` window after ``from_s``."""
    return _peaks(at, rss, from_s, window_s)[1]


def _peaks(
    at: list[float], rss: list[int], from_s: float, window_s: float
) -> tuple[list[float], list[float]]:
    t = np.asarray(at) - from_s
    y = np.asarray(rss, dtype=np.float64) / MIB
    count = int(t.max() // window_s) if len(t) and t.max() > 0 else 0
    mids, peaks = [], []
    for w in range(count):
        inside = (t >= w * window_s) & (t < (w + 1) * window_s)
        if inside.any():
            mids.append((w + 0.5) * window_s)
            peaks.append(float(y[inside].max()))
    return mids, peaks


async def soak(args: argparse.Namespace, engine: Engine) -> int:
    stats = bench_api.LiveStats()
    runner = await bench_api.start_server(engine, 0, stats, columnar=args.columnar)
    port = int(runner.addresses[0][1])
    stats.started = time.perf_counter()
    samples = Samples(started=stats.started)
    times = CheckpointTimes()
    gc.callbacks.append(stats.on_gc)
    seconds = args.minutes * 60
    evaluating, ingesting = (
        (bench_api.columnar_eval_loop, bench_api.columnar_ingest_loop)
        if args.columnar
        else (bench_api.eval_loop, bench_api.ingest_loop)
    )
    with tempfile.TemporaryDirectory(prefix="simwatch-soak-") as tmp:
        live = [
            asyncio.create_task(evaluating(engine, stats)),
            asyncio.create_task(sample_loop(samples, engine, args.sample_every)),
        ]
        if args.ingest_rate > 0:
            task = ingesting(engine, args.sims, args.ingest_rate, stats)
            live.append(asyncio.create_task(task))
        if args.checkpoint_every > 0:
            task2 = checkpoint_loop(engine, Path(tmp), args.checkpoint_every, times, samples)
            live.append(asyncio.create_task(task2))
        points: list[MemoryPoint] = []
        if args.tracemalloc:
            first, last = trace_times(args, seconds, generation_s(args))
            task3 = trace_loop(points, engine, samples, first, last)
            live.append(asyncio.create_task(task3))
        client_args = argparse.Namespace(
            sims=args.sims, rate=args.rate, seconds=seconds, scrape_every=args.scrape_every
        )
        try:
            out = await bench_api.run_load(
                port, client_args, limit_s=seconds + 180, runner=runner, stats=stats, live=live
            )
        finally:  # the memory report even when the load client failed
            if args.tracemalloc:
                trace_report(points)
    samples.take(engine)
    bench_api.report(client_args_for_report(args, seconds), orjson.loads(out), stats)
    if times.copies:
        print(
            f"checkpoints during the soak: {len(times.copies)}, copy (worker thread) median "
            f"{np.median(times.copies) * 1000:.0f} ms (max {max(times.copies) * 1000:.0f}), "
            f"write median {np.median(times.writes) * 1000:.0f} ms, freed memory handed back "
            f"(malloc_trim) median {np.median(times.releases) * 1000:.1f} ms "
            f"(max {max(times.releases) * 1000:.1f})"
        )
    return judge(args, samples)


def generation_s(args: argparse.Namespace) -> float:
    """The judge's window: ``--window``, or the time one duplicate-filter generation
    (1M ids, half the default capacity) takes to fill at the ingest rate."""
    return float(args.window or 1_000_000 / max(args.ingest_rate, 1.0))


def client_args_for_report(args: argparse.Namespace, seconds: float) -> argparse.Namespace:
    return argparse.Namespace(rate=args.rate, seconds=seconds, ingest_rate=args.ingest_rate)


def judge(args: argparse.Namespace, samples: Samples) -> int:
    warm = args.warmup_minutes * 60
    window = generation_s(args)
    # Samples taken while a checkpoint copy is held show that copy (~166 MB at 1M SIMs),
    # freed after its write: a transient, left out of the line (shown apart below).
    free = [not c for c in samples.in_checkpoint]
    at = [t for t, keep in zip(samples.at, free, strict=True) if keep]
    rss = [r for r, keep in zip(samples.rss, free, strict=True) if keep]
    slope, points = slope_mib_per_h(at, rss, warm, window)
    every, _ = slope_mib_per_h(samples.at, samples.rss, warm, window)
    # the second half of the time after warm-up on its own: a structure still filling to
    # its bound, or allocators still settling, shows in the whole line, not in this one
    end = max(at, default=warm)
    half_from = warm + (end - warm) / 2
    late, late_points = slope_mib_per_h(at, rss, half_from, window)
    peaks = window_peaks(at, rss, warm, window)
    third = len(peaks) // 3
    after = [r for t, r in zip(at, rss, strict=True) if t >= warm]
    held = [
        r
        for t, r, c in zip(samples.at, samples.rss, samples.in_checkpoint, strict=True)
        if c and t >= warm
    ]
    print(
        f"RSS: start {samples.rss[0] / MIB:,.0f} MiB, after warm-up "
        f"({args.warmup_minutes:g} min) {after[0] / MIB if after else float('nan'):,.0f} MiB, "
        f"end {samples.rss[-1] / MIB:,.0f} MiB; after warm-up min "
        f"{min(after, default=0) / MIB:,.0f} / max {max(after, default=0) / MIB:,.0f} MiB; "
        f"{len(held)} samples while a checkpoint copy was held, max "
        f"{max(held, default=0) / MIB:,.0f} MiB (left out of the line)"
    )
    print(
        f"RSS slope after warm-up: {slope:+.1f} MiB/h over the peaks of {points} "
        f"windows of {window:.0f} s ({every:+.1f} MiB/h with the samples during "
        f"checkpoints) (limit {args.max_slope:g} MiB/h); 1-minute load average "
        f"{min(samples.load)}-{max(samples.load)} during the soak"
    )
    if late_points >= 3:
        print(
            f"RSS slope over the second half after warm-up (from t={half_from:.0f} s): "
            f"{late:+.1f} MiB/h over the peaks of {late_points} windows"
        )
    else:
        print("RSS slope over the second half after warm-up: fewer than 3 windows")
    if third:
        first_mean, last_mean = (float(np.mean(peaks[:third])), float(np.mean(peaks[-third:])))
        print(
            f"window peaks after warm-up: first third mean {first_mean:,.1f} MiB, last third "
            f"{last_mean:,.1f} MiB ({last_mean - first_mean:+,.1f} MiB); all: "
            + ", ".join(f"{p:,.0f}" for p in peaks)
        )
    if args.trace:
        rows = zip(
            samples.at, samples.rss, samples.load, samples.held, samples.in_checkpoint, strict=True
        )
        for t, r, load, what, copying in rows:
            mark = "  (checkpoint copy held)" if copying else ""
            print(f"  t={t:7.1f} s  rss {r / MIB:8.1f} MiB  load {load}  {what}{mark}")
    if not slope <= args.max_slope:  # NaN fails too: too few samples to judge
        print("FAIL: resident memory grows", file=sys.stderr)
        return 1
    if late_points >= 3 and not late <= args.max_slope:
        print("FAIL: resident memory grows in the second half", file=sys.stderr)
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
    parser.add_argument(
        "--columnar",
        action="store_true",
        help="issue 12, the daemon's way: batch ingest, assess in a worker, /metrics cached",
    )
    parser.add_argument("--trace", action="store_true", help="print every RSS sample")
    parser.add_argument(
        "--tracemalloc",
        action="store_true",
        help="trace allocations; compare after warm-up with the end (slows the loop)",
    )
    parser.add_argument(
        "--tracemalloc-frames",
        type=int,
        default=4,
        help="frames kept per traced allocation; 0: memory points without tracing "
        "(then with pymalloc's figures, which tracing hides)",
    )
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
    if args.tracemalloc and args.tracemalloc_frames > 0:
        tracemalloc.start(args.tracemalloc_frames)  # after the fill: the soak's allocations
    sys.exit(asyncio.run(soak(args, engine)))


if __name__ == "__main__":
    main()
