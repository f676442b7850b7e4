"""Checkpoint cost at fleet scale: the copy on the event loop, the write, the size, the
read and the restore.

Run: ``python bench/bench_checkpoint.py [SIMS] [DIR]`` (default 1,000,000 SIMs, a temp
folder). The fleet is synthetic but full: every SIM has an index row, every column and
rhythm value set, 2,000 leaf groups, and the dedup memory holds its maximum (2M ids).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from simwatch import checkpoint as ckpt
from simwatch.engine import Engine


def build(n: int) -> Engine:
    engine = Engine()
    state = engine.state
    rng = np.random.default_rng(1)
    iccids = [f"8931440{i:012d}" for i in range(n)]
    state.index.add_many(iccids)
    state._grow(n)  # noqa: SLF001 - a bench filling the columns directly
    cols = state.cols
    for array in cols.arrays():
        array[:n] = rng.integers(0, 100, size=array[:n].shape, dtype=array.dtype)
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
    print(f"copy on the loop (capture): best {best:.0f} ms, worst {worst:.0f} ms")
    best, worst = min(writes) * 1e3, max(writes) * 1e3
    print(f"write (thread, fsync'ed):   best {best:.0f} ms, worst {worst:.0f} ms")
    print(f"file size:                  {size / 1e6:.1f} MB ({size / n:.0f} bytes per SIM)")
    print(f"read + CRC check:           {(t1 - t0) * 1e3:.0f} ms")
    print(f"restore into an engine:     {(t2 - t1) * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
