"""Checkpoint cost at fleet scale: the copy, how long it holds up the event loop, the
write, the size, the read and the restore.

The daemon copies the state in a worker thread while it holds the batch lock (ingest and
evaluation wait; the loop serves the API). "Loop held" is the longest gap a 1 ms
heartbeat task on the loop sees while that copy runs: the GIL the copy's Python parts
hold (the numpy copies release it).

Run: ``python bench/bench_checkpoint.py [SIMS] [DIR]`` (default 1,000,000 SIMs, a temp
folder). The fleet is synthetic but full: every SIM has an index row, every column and
rhythm value set, 2,000 leaf groups, and the dedup memory holds its maximum (2M ids).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from simwatch.core.engine import Engine
from simwatch.service import checkpoint as ckpt


def build(n: int) -> Engine:
    engine = Engine()
    state = engine.state
    rng = np.random.default_rng(1)
    iccids = [f"8931440{i:012d}" for i in range(n)]
    state.index.add_many(iccids)
    state._grow(n)  # noqa: SLF001 - a bench filling the columns directly
    cols = state.cols
    for array in cols.arrays():
        shape = array[:n].shape
        if np.issubdtype(array.dtype, np.floating):  # e.g. float32 columns
            array[:n] = rng.random(shape) * 100
        else:
            array[:n] = rng.integers(0, 100, size=shape, dtype=array.dtype)
    # codes into tables the bench does not fill: none set (no expectation, no schedule)
    for name in ("expect_interval", "expect_hours", "expect_from"):
        getattr(cols, name)[:n] = 0
    for k in range(50):
        state.apns.code(f"apn-{k}")
        state.partners.code(f"{26200 + k}")
    for row in range(0, n, max(1, n // 2000)):
        state.refresh_leaf(row)
    rhythm = state.rhythm
    cols_r = rhythm.export(n)
    cols_r["last"][:] = 1.7e9 + rng.random(n) * 1e5
    cols_r["mu"][:] = rng.random(n).astype(np.float32) * 8
    cols_r["n"][:] = 50
    rhythm.restore(cols_r)
    dedup = engine.ingestor.dedup
    for i in range(engine.config.dedup_capacity - 1):
        dedup.seen(f"r-{i}")
    engine.evaluate(1.7e9 + 1e5)
    return engine


async def copy_off_the_loop(engine: Engine) -> tuple[float, float]:
    """(copy seconds, longest loop gap seconds) of one ``capture`` in a worker thread."""
    gaps: list[float] = []

    async def heartbeat() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    beating = asyncio.create_task(heartbeat())
    await asyncio.sleep(0.01)
    gaps.clear()
    t0 = time.perf_counter()
    await asyncio.to_thread(ckpt.capture, engine, at=time.time())
    copy_s = time.perf_counter() - t0
    beating.cancel()
    return copy_s, max(gaps, default=0.0)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    started = time.perf_counter()
    engine = build(n)
    print(f"built {n:,} SIMs in {time.perf_counter() - started:.1f} s")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(tmp)
        copies, writes = [], []
        size = 0
        for _ in range(3):
            t0 = time.perf_counter()
            snapshot = ckpt.capture(engine, at=time.time())
            t1 = time.perf_counter()
            size = ckpt.write_file(directory, snapshot)
            t2 = time.perf_counter()
            copies.append(t1 - t0)
            writes.append(t2 - t1)
        t0 = time.perf_counter()
        loaded = ckpt.read_file(directory)
        t1 = time.perf_counter()
        assert loaded is not None
        fresh = Engine(engine.config, engine.operators)
        ckpt.restore_engine(fresh, loaded)
        t2 = time.perf_counter()
        assert len(fresh.state) == n
    best, worst = min(copies) * 1e3, max(copies) * 1e3
    print(f"copy (capture, alone):      best {best:.0f} ms, worst {worst:.0f} ms")
    held = [asyncio.run(copy_off_the_loop(engine)) for _ in range(3)]
    print(
        "copy in a thread, as the daemon does: "
        + ", ".join(f"{c * 1e3:.0f} ms (loop held at most {g * 1e3:.0f} ms)" for c, g in held)
    )
    best, worst = min(writes) * 1e3, max(writes) * 1e3
    print(f"write (thread, fsync'ed):   best {best:.0f} ms, worst {worst:.0f} ms")
    print(f"file size:                  {size / 1e6:.1f} MB ({size / n:.0f} bytes per SIM)")
    print(f"read + CRC check:           {(t1 - t0) * 1e3:.0f} ms")
    print(f"restore into an engine:     {(t2 - t1) * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
