"""Taking a partition over (docs/scaling.md): snapshot size per SIM and takeover time.

Run: ``python bench/bench_handoff.py [SIMS] [PARTITIONS] [ROUNDS]`` (100,000 SIMs, 16
partitions, 8 rounds of one usage record per SIM, 15 minutes apart: every SIM has
learned a rhythm, a partner, an APN, a customer, a month volume).

Measured, on the old owner: ``PartitionRows.update`` (each row's partition and ICCID,
once, outside the lock), ``service.handoff.take`` of every partition (the rows of each
partition's SIMs, ``core.handoff.export_rows``: what holds the batch lock), then
``encode`` (deflate .npz; bytes per SIM, and the uncompressed size for comparison).
On a real ``nats-server -js`` (tests/nats_server.py, free loopback port): ``put`` of
every partition's object into the object store, then per partition the takeover of a
node that has its own SIMs of the other partitions: ``get`` + ``decode`` + ``merge``
(``core.handoff.merge_rows``), checked against the old owner's month bytes.
"""

from __future__ import annotations

import asyncio
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nats
import numpy as np

from simwatch.core.engine import Engine
from simwatch.service.handoff import PartitionRows, PartitionSnapshot, merge, object_name, take
from simwatch.shell.replay import replay_lines

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from benchfleet import inventory, usage_lines
from nats_server import NatsServer

T0 = 1_794_960_000.0  # 2026-11-18T00:00:00Z


def build(n: int, rounds: int) -> Engine:
    engine = Engine()
    engine.state.load_inventory(inventory(n))
    rng = np.random.default_rng(1)
    for k in range(rounds):
        end = T0 + k * 900.0
        replay_lines(engine, usage_lines(n, end, k, rng), wall_now=end + 900)
    return engine


def ms(seconds: float) -> str:
    return f"{1000 * seconds:.0f} ms"


async def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    partitions = int(sys.argv[2]) if len(sys.argv) > 2 else 16
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    began = time.perf_counter()
    old = build(n, rounds)
    print(f"fleet: {n:,} SIMs, {rounds} records each, built in {time.perf_counter() - began:.1f} s")
    rows = PartitionRows(partitions)
    positions = dict.fromkeys(range(partitions), 1000)
    t0 = time.perf_counter()
    rows.update(old.state)
    first_s = time.perf_counter() - t0  # the partition of every row, once, not locked
    t0 = time.perf_counter()
    snapshots = take(old.state, rows, positions)
    take_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    blobs = [s.encode(node="old", at=T0) for s in snapshots]
    encode_s = time.perf_counter() - t0
    raw = 0
    for s in snapshots:
        out = io.BytesIO()
        np.savez(out, allow_pickle=False, **s.arrays)
        raw += len(out.getvalue())
    size = sum(len(b) for b in blobs)
    print(
        f"take (export_rows) of {partitions} partitions: {ms(take_s)} "
        f"({ms(take_s / partitions)} each), under the batch lock; before it, unlocked, "
        f"the first mapping of rows to partitions: {ms(first_s)}"
    )
    print(
        f"encode: {ms(encode_s)}; snapshot {size / n:.1f} bytes/SIM deflated "
        f"({raw / n:.1f} uncompressed), {size / partitions / 1e6:.2f} MB per partition"
    )
    with tempfile.TemporaryDirectory() as tmp, NatsServer(Path(tmp) / "nats") as server:
        nc = await nats.connect(server.client_url)
        js = nc.jetstream()
        store = await js.create_object_store("bench-partitions")
        t0 = time.perf_counter()
        for p, blob in enumerate(blobs):
            await store.put(object_name(p), blob)
        put_s = time.perf_counter() - t0
        print(f"put of {partitions} objects: {ms(put_s)} ({ms(put_s / partitions)} each)")
        # the survivor: a node with the SIMs of every other partition (its own)
        survivor = Engine()
        for snapshot in snapshots[1:]:
            merge(survivor.state, snapshot, partitions)
        t0 = time.perf_counter()
        found = await store.get(object_name(0))
        t1 = time.perf_counter()
        snapshot = PartitionSnapshot.decode(found.data or b"")
        t2 = time.perf_counter()
        taken = merge(survivor.state, snapshot, partitions)
        t3 = time.perf_counter()
        print(
            f"takeover of partition 0 ({taken:,} SIMs) by a node holding the other "
            f"{partitions - 1}: {ms(t3 - t0)} = get {ms(t1 - t0)} + decode {ms(t2 - t1)} "
            f"+ merge {ms(t3 - t2)}"
        )
        times: list[float] = []
        for p in range(1, partitions):
            t0 = time.perf_counter()
            found = await store.get(object_name(p))
            merge(Engine().state, PartitionSnapshot.decode(found.data or b""), partitions)
            times.append(time.perf_counter() - t0)
        print(
            f"takeover into an empty node, median of {len(times)} partitions: "
            f"{ms(statistics.median(times))}"
        )
        await nc.close()
    state, src = survivor.state, old.state
    check, _ = rows.rows(src, 0)
    back = np.array([state.row(i) for i in src.index.iccids(check)], np.int64)
    assert taken == check.size
    assert (back >= 0).all()
    assert (state.cols.month_bytes[back] == src.cols.month_bytes[check]).all()
    assert len(state) == len(src)
    print("check: the survivor holds every SIM, partition 0's month bytes equal the old owner's")


if __name__ == "__main__":
    asyncio.run(main())
