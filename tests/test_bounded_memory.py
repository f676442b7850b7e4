"""Memory that must not build up while the daemon runs for weeks (bench/bench_soak.py
measures the resident set over 38 minutes; these pin the causes it found).

A checkpoint copies the whole state (~166 MB at 1M SIMs) and frees it once written. glibc
keeps freed heap pages resident when live blocks sit above them, so without handing them
back the resident set crept up copy after copy although nothing stayed live: the
checkpointer releases the copy right after the write and then trims the heap.
"""

from __future__ import annotations

import ctypes
import itertools
import platform
import tracemalloc
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from fleet import ICCIDS, T0, Feed, new_engine

from simwatch.core.dedup import Deduplicator
from simwatch.service import checkpoint as ckpt

if TYPE_CHECKING:
    from collections.abc import Iterator

    from simwatch.core.engine import Engine

SIMS = ICCIDS[:30]


def running_engine() -> Iterator[tuple[Engine, float]]:
    """An engine fed 30 SIMs every 15 min and evaluated; yields (engine, now) per round."""
    engine = new_engine(SIMS)
    feed = Feed(engine)
    t = T0
    while True:
        for k, iccid in enumerate(SIMS):
            feed.usage(iccid, t + k, mcc="262", mnc="02")
        t += 900
        engine.evaluate(t)
        yield engine, t


async def test_a_written_snapshot_keeps_only_its_header(tmp_path: Path) -> None:
    rounds = running_engine()
    engine, now = next(rounds)
    snapshot = ckpt.capture(engine, at=now, sources={"file": {"offset": 7}})
    arrays = {k: v.copy() for k, v in snapshot.arrays.items()}
    assert len(snapshot.arrays["dedup.current"]) + len(snapshot.arrays["dedup.old"]) > 0
    assert await ckpt.Checkpointer(tmp_path).save(snapshot)
    assert snapshot.arrays == {}
    assert snapshot.written_at == now  # the daemon reads the header after the write
    assert snapshot.sources == {"file": {"offset": 7}}
    back = ckpt.read_file(tmp_path)  # what was written is whole
    assert back is not None
    assert arrays
    assert set(arrays) <= set(back.arrays)
    for name, column in arrays.items():
        np.testing.assert_array_equal(back.arrays[name], column)
    assert len(back.arrays["dedup.current"]) + len(back.arrays["dedup.old"]) == len(
        engine.ingestor.dedup
    )


async def test_a_failed_write_releases_the_copy_too(tmp_path: Path) -> None:
    engine, now = next(running_engine())
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the state folder should be")
    snapshot = ckpt.capture(engine, at=now)
    assert not await ckpt.Checkpointer(blocked).save(snapshot)
    assert snapshot.arrays == {}


async def test_every_checkpoint_hands_its_freed_copy_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over many cycles of ingest, evaluation and checkpoint, the heap is trimmed after
    each write, when the copy is no longer held: what the copy held at that moment is
    the bound (none of it)."""
    held_at_trim: list[int] = []
    snapshots: list[ckpt.Snapshot] = []

    def trim(pad: int) -> int:
        assert pad == 0
        held_at_trim.append(sum(a.nbytes for s in snapshots for a in s.arrays.values()))
        return 1

    monkeypatch.setattr(ckpt, "_malloc_trim", trim)
    checkpointer = ckpt.Checkpointer(tmp_path)
    rounds = running_engine()
    for _ in range(20):
        engine, now = next(rounds)
        snapshot = ckpt.capture(engine, at=now)
        assert snapshot.nbytes() > 0
        snapshots.append(snapshot)
        assert await checkpointer.save(snapshot)
    assert held_at_trim == [0] * 20
    assert checkpointer.stats.last_release_s >= 0.0


# ---- the allocator itself (glibc) --------------------------------------------------------


def heap_resident() -> int:
    """Resident bytes of glibc's main heap (the ``[heap]`` mapping)."""
    resident, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 5 and "-" in fields[0] and ":" in fields[3]:  # a mapping's header
            inside = fields[-1] == "[heap]"
        elif inside and fields and fields[0] == "Rss:":
            resident += int(fields[1]) * 1024
    return resident


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_freed_heap_stays_resident_until_handed_back() -> None:
    """Blocks freed between live ones stay resident (glibc returns only the heap's top);
    ``release_free_memory`` gives their pages back."""
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    size, count = 64 * 1024, 512  # 32 MiB in blocks under the mmap threshold: the heap
    freed: list[int] = []
    live: list[int] = []
    for _ in range(count):
        block = libc.malloc(size)
        assert block
        ctypes.memset(block, 1, size)  # touched: resident
        freed.append(block)
        live.append(libc.malloc(16 * 1024))  # a live neighbour: it cannot merge away
    before = heap_resident()
    for block in freed:
        libc.free(block)
    kept = heap_resident()
    ckpt.release_free_memory()
    after = heap_resident()
    for block in live:
        libc.free(block)
    assert before - kept < count * size // 4  # freed, yet still resident
    assert kept - after > count * size // 2  # handed back


# ---- the duplicate filter ----------------------------------------------------------------


def test_the_duplicate_filter_allocates_nothing_per_generation() -> None:
    """Once both generations have filled, the filter turns over generation after
    generation in the arrays it has: what it allocates beyond them at any moment is a
    batch's temporaries, not a generation's keys (the Python sets it replaced allocated
    an int object and a table slot per id, every generation, which kept the allocators'
    memory creeping: docs/performance.md, "Soak")."""
    capacity, batch = 20_000, 500
    dedup = Deduplicator(capacity)
    ids = (f"r-{i}" for i in itertools.count())

    def feed(count: int) -> None:
        for _ in range(count // batch):
            assert not dedup.seen_many([next(ids) for _ in range(batch)]).any()

    feed(capacity)  # two generations: both arrays at their full size
    held = dedup.nbytes
    assert held <= 32 * capacity
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        feed(5 * capacity)  # ten more generations
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert dedup.nbytes == held
    assert capacity // 2 <= len(dedup) <= capacity
    assert peak - start < 50 * batch * 8  # a batch's arrays; a generation's keys: 10,000
