"""Checkpoints: every part of the state round-trips, a crash mid-write leaves the previous
checkpoint usable, a corrupt or incompatible one is set aside, the daemon restores its
clock and its sources' cursors, and the inventory merges with a restored state."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pytest
from fleet import ICCIDS, T0, Feed, inventory_row, new_engine
from prometheus_client import generate_latest
from servers import until

from simwatch.core.dedup import Deduplicator, fingerprint
from simwatch.core.engine import Engine
from simwatch.core.state import ADDED_COLUMNS, NEVER, Flag, Status
from simwatch.core.timeutil import format_rfc3339
from simwatch.http.metrics import EngineCollector, make_registry
from simwatch.service import checkpoint as ckpt
from simwatch.service.daemon import Daemon
from simwatch.shell.health import DaemonHealth
from simwatch.shell.settings import CheckpointSettings, EngineSettings, Settings
from simwatch.shell.source_contract import Batch
from simwatch.sources.file import FileSource

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

VIP = ICCIDS[0]


def network(k: int) -> dict[str, object]:
    """Odd SIMs on Vodafone DE (26202), even ones on KPN NL (20408)."""
    return {"mcc": "262", "mnc": "02"} if k % 2 else {"mcc": "204", "mnc": "08"}


def vip_engine() -> Engine:
    """A fresh engine of the 40 SIMs (the first one vip) over apn, country and partner."""
    engine = new_engine(dims=("apn", "country", "partner"))
    engine.load_inventory(
        inventory_row(i, tags=frozenset({"vip"}) if i == VIP else frozenset()) for i in ICCIDS
    )
    return engine


class Fleet:
    """40 SIMs every 15 min for two days; then KPN NL goes silent (a group incident and
    the vip SIM's ticket open). Sessions, rejects, a duplicate and a rejection too."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.feed = Feed(engine)
        self.t = T0
        self.next_eval = T0 + 300

    def step(self, *, nl_silent: bool = False) -> list[tuple[str, str]]:
        changes: list[tuple[str, str]] = []
        for k, iccid in enumerate(ICCIDS):
            if nl_silent and k % 2 == 0:
                continue
            self.feed.usage(iccid, self.t + k, **network(k))
        self.feed.session(ICCIDS[3], self.t + 5, "started", **network(3))
        self.feed.session(ICCIDS[3], self.t + 65, "interim", bytes_up=10, bytes_down=5)
        self.t += 900
        while self.next_eval <= self.t:
            result = self.engine.evaluate(self.next_eval)
            changes += [(c.kind, c.incident.id) for c in result.changes]
            self.next_eval += 300
        return changes

    def run(self, steps: int, **kw: bool) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for _ in range(steps):
            out += self.step(**kw)
        return out


@pytest.fixture(scope="module")
def grown() -> Fleet:
    fleet = Fleet(vip_engine())
    fleet.run(2 * 96)
    fleet.feed.event(ICCIDS[5], fleet.t, "auth_failure", cause="bad credentials")
    fleet.feed.usage(ICCIDS[7], fleet.t, record_id="dup-1", operator="Vodafone DE")
    fleet.feed.usage(ICCIDS[7], fleet.t, record_id="dup-1")  # a duplicate delivery
    opened = fleet.run(6, nl_silent=True)
    assert ("opened", "inc-0001") in opened
    return fleet


def same_export(a: Engine, b: Engine) -> None:
    arrays_a, meta_a = a.export_state()
    arrays_b, meta_b = b.export_state()
    assert sorted(arrays_a) == sorted(arrays_b)
    for name, array in arrays_a.items():
        other = arrays_b[name]
        assert isinstance(array, np.ndarray)
        assert isinstance(other, np.ndarray)
        assert array.dtype == other.dtype, name
        if name.startswith("dedup."):  # sets: same members, any order
            assert sorted(array.tolist()) == sorted(other.tolist()), name
        else:
            assert np.array_equal(array, other, equal_nan=True), name
    # (an incident's counts may be ints before and floats after: equal values)
    assert orjson.loads(orjson.dumps(meta_a)) == orjson.loads(orjson.dumps(meta_b))


def roundtrip(engine: Engine, directory: Path, **kw: object) -> tuple[Engine, ckpt.Snapshot]:
    snapshot = ckpt.capture(engine, at=T0, **kw)  # type: ignore[arg-type]
    ckpt.write_file(directory, snapshot)
    loaded = ckpt.read_file(directory)
    assert loaded is not None
    restored = Engine(engine.config, engine.operators)
    ckpt.restore_engine(restored, loaded)
    return restored, loaded


def test_every_part_round_trips_and_both_engines_go_on_alike(grown: Fleet, tmp_path: Path) -> None:
    engine = grown.engine
    restored, snapshot = roundtrip(
        engine,
        tmp_path,
        daemon={"watermark": 1.5, "next_eval": ckpt.json_float(None)},
        sources={"spool": {"files": []}},
    )
    assert snapshot.daemon == {"watermark": 1.5, "next_eval": None}
    assert snapshot.sources == {"spool": {"files": []}}
    same_export(engine, restored)
    # the parts the evaluation needs, spelled out
    assert [i.id for i in restored.incidents.open.values()] == ["inc-0001", "inc-0002"]
    assert restored.incidents.next_id == engine.incidents.next_id == 3
    assert restored.first_record_at == engine.first_record_at
    assert restored.ingestor.partner_names == {"26202": "Vodafone DE"}
    assert restored.ingestor.stats.duplicates == 1
    assert restored.state.partners.values == engine.state.partners.values
    assert restored.state.row(VIP) == engine.state.row(VIP)
    assert restored.state.cols.flags[restored.state.row(VIP)] & Flag.VIP
    assert restored.sim_dims(1) == engine.sim_dims(1)
    # a record applied before the checkpoint is a duplicate after it
    for each in (engine, restored):
        Feed(each).usage(ICCIDS[7], grown.t, record_id="dup-1")
        assert each.ingestor.stats.duplicates == 2
    # both go on identically: same cycles, same incident changes, same state
    twin = Fleet(restored)
    twin.t, twin.next_eval, twin.feed.n = grown.t, grown.next_eval, grown.feed.n
    original = Fleet(engine)
    original.t, original.next_eval, original.feed.n = grown.t, grown.next_eval, grown.feed.n
    a = original.run(8)
    b = twin.run(8)
    assert a == b
    assert ("resolved", "inc-0001") in a  # NL came back: the same incident resolves
    same_export(engine, restored)


def test_a_crash_while_writing_leaves_the_previous_checkpoint(
    grown: Fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ckpt.write_file(tmp_path, ckpt.capture(grown.engine, at=T0))
    before = (tmp_path / ckpt.FILE_NAME).read_bytes()
    # a partial temp file of a later write, as a crash leaves it
    (tmp_path / ckpt.TMP_NAME).write_bytes(before[: len(before) // 2])
    loaded = ckpt.read_file(tmp_path)
    assert loaded is not None
    assert loaded.written_at == T0
    # a write failing half-way (disk full at fsync): the previous one stays, no temp left

    def full(_fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space"):
        ckpt.write_file(tmp_path, ckpt.capture(grown.engine, at=T0 + 60))
    assert (tmp_path / ckpt.FILE_NAME).read_bytes() == before
    assert not (tmp_path / ckpt.TMP_NAME).exists()


WRITER = """
import sys, numpy as np
from pathlib import Path
from simwatch.service import checkpoint as ckpt
directory = Path(sys.argv[1])
seq = 0
while True:
    seq += 1
    arrays = {f"a{k}": np.full(1_000_000, seq, np.int64) for k in range(4)}
    ckpt.write_file(directory, ckpt.Snapshot({"format": ckpt.FORMAT, "version": ckpt.VERSION,
                                              "written_at": float(seq)}, arrays))
    print(seq, flush=True)
"""


def test_kill_9_of_a_writer_never_leaves_a_torn_checkpoint(tmp_path: Path) -> None:
    """A process writing 32 MB checkpoints in a loop, killed at random moments: what is
    left is always one whole checkpoint (header and every array of the same write)."""
    rng = np.random.default_rng(7)
    seen: set[float] = set()
    for run in range(5):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            assert writer.stdout is not None
            for _ in range(1 + run % 2):  # at least one (two) complete checkpoints:
                writer.stdout.readline()  # different ones are left, however slow the disk
            time.sleep(float(rng.uniform(0.0, 0.3)))
        finally:
            os.kill(writer.pid, signal.SIGKILL)
            writer.communicate()
        loaded = ckpt.read_file(tmp_path)
        assert loaded is not None
        seq = loaded.written_at
        assert seq is not None
        seen.add(seq)
        assert sorted(loaded.arrays) == ["a0", "a1", "a2", "a3"]
        assert all(bool((a == seq).all()) for a in loaded.arrays.values())
    assert len(seen) > 1


def test_a_corrupt_checkpoint_is_refused_and_set_aside(grown: Fleet, tmp_path: Path) -> None:
    ckpt.write_file(tmp_path, ckpt.capture(grown.engine, at=T0))
    path = tmp_path / ckpt.FILE_NAME
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped bit in the middle of an array
    path.write_bytes(bytes(data))
    with pytest.raises(ckpt.CheckpointError, match="unreadable"):
        ckpt.read_file(tmp_path)
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ckpt.CheckpointError):
        ckpt.read_file(tmp_path)
    snapshot = ckpt.capture(grown.engine, at=T0)
    snapshot.header["version"] = ckpt.VERSION + 1
    ckpt.write_file(tmp_path, snapshot)
    with pytest.raises(ckpt.CheckpointError, match="format version"):
        ckpt.read_file(tmp_path)
    checkpointer = ckpt.Checkpointer(tmp_path, clock=lambda: T0)
    assert asyncio.run(checkpointer.load()) is None
    assert not path.exists()
    assert (tmp_path / "checkpoint.bad-20261118T000000Z.npz").exists()


def test_a_checkpoint_of_other_dims_does_not_fit(grown: Fleet, tmp_path: Path) -> None:
    ckpt.write_file(tmp_path, ckpt.capture(grown.engine, at=T0))
    loaded = ckpt.read_file(tmp_path)
    assert loaded is not None
    other = Engine(replace(grown.engine.config, dims=("apn", "partner")))
    with pytest.raises(ckpt.CheckpointError, match="dims"):
        ckpt.restore_engine(other, loaded)
    del loaded.arrays["col.month_bytes"]
    with pytest.raises(ckpt.CheckpointError, match=r"col\.month_bytes"):
        ckpt.restore_engine(Engine(grown.engine.config), loaded)


def test_dedup_keys_are_stable_across_processes() -> None:
    code = "from simwatch.core.dedup import fingerprint; print(fingerprint('u-8931-1'))"
    outs = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert outs == {str(fingerprint("u-8931-1"))}
    assert fingerprint("a") != fingerprint("a\x00")  # the length counts
    dedup = Deduplicator(10)
    for i in range(7):
        dedup.seen(f"id-{i}")
    again = Deduplicator(10)
    again.restore(*dedup.export())
    assert [sorted(a.tolist()) for a in again.export()] == [
        sorted(a.tolist()) for a in dedup.export()
    ]
    assert all(again.seen(f"id-{i}") for i in range(2, 7))  # the last capacity // 2
    smaller = Deduplicator(4)  # a smaller capacity keeps at most its own
    smaller.restore(*dedup.export())
    assert len(smaller) <= 4


# ---- the daemon -------------------------------------------------------------------------


def usage_line(iccid: str, end: float, n: int) -> bytes:
    return orjson.dumps(
        {
            "kind": "usage",
            "record_id": f"u-{iccid}-{n}",
            "iccid": iccid,
            "start": format_rfc3339(end - 60),
            "end": format_rfc3339(end),
            "bytes_up": 100 + n,
            "bytes_down": 10,
            "apn": "meters.acme",
            "mcc": "262",
            "mnc": "02",
        }
    )


def daemon_settings(tmp_path: Path, spool: Path) -> Settings:
    return Settings(
        engine=EngineSettings(
            eval_interval_s=60.0, dead_letter_file=tmp_path / "dl.ndjson", warmup_s=0
        ),
        state_dir=tmp_path / "state",
        checkpoint=CheckpointSettings(interval_s=3600),
        sources={"file": [{"name": "spool", "path": spool, "state_file": tmp_path / "offsets"}]},
    )


def file_daemon(settings: Settings, inventory: Sequence[str] = ()) -> Daemon:
    source = FileSource(settings.sources.file[0])
    rows = [inventory_row(i) for i in inventory]
    return Daemon(settings, [source], inventory=rows, checkpoints=True)


async def run_until(daemon: Daemon, predicate: Callable[[], bool], limit_s: float = 15) -> None:
    """Run the daemon until ``predicate`` holds (it must not end before), then stop it."""
    task = asyncio.create_task(daemon.run())

    def reached() -> bool:
        assert not task.done(), task
        return predicate()

    try:
        await until(reached, limit_s, "the condition", interval_s=0.02)
    finally:
        daemon.request_stop()
        await asyncio.wait_for(task, 10.0)


def received(daemon: Daemon) -> int:
    return daemon.sources[0].stats.received


async def test_the_daemon_resumes_clock_state_and_cursor(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    start = time.time() - 3 * 3600
    spool = tmp_path / "spool.ndjson"
    lines = [usage_line(ICCIDS[n % 4], start + n * 60, n) for n in range(120)]
    spool.write_bytes(b"\n".join(lines[:100]) + b"\n")
    settings = daemon_settings(tmp_path, spool)
    first = file_daemon(settings)
    offsets = tmp_path / "offsets"
    # the offsets file is written after the apply, a moment after the records are received
    await run_until(first, lambda: received(first) == 100 and offsets.exists())
    assert (settings.state_dir / ckpt.FILE_NAME).exists()  # written at shutdown
    saved = first.engine.export_state()
    clock = (first.evaluation_clock.watermark, first.evaluation_clock.next_boundary)
    # the source's own offsets file says "everything", as if applied after the checkpoint
    doc = orjson.loads(offsets.read_bytes())
    doc["files"][0]["offset"] = 10**6
    offsets.write_bytes(orjson.dumps(doc))
    with spool.open("ab") as out:
        out.write(b"\n".join(lines[100:]) + b"\n")
    second = file_daemon(settings)
    caplog.set_level(logging.INFO, logger="simwatch")
    await run_until(second, lambda: received(second) == 20)
    assert any("checkpoint restored" in r.getMessage() for r in caplog.records)
    # the checkpoint's cursor won over the offsets file: exactly the 20 new lines came
    assert received(second) == 20
    assert second.sources[0].stats.duplicates == 0
    assert second.engine.ingestor.stats.applied == 120
    month = second.engine.state.cols.month_bytes[: len(second.engine.state)]
    assert int(month.sum()) == sum(110 + n for n in range(120))
    assert second.evaluation_clock.next_boundary is not None
    assert clock[1] is not None
    assert second.evaluation_clock.next_boundary >= clock[1]
    cycles = saved[1]["cycles"]
    assert isinstance(cycles, int)
    assert cycles <= second.engine.cycles
    stats = second.checkpoint_stats()
    assert stats is not None
    assert stats.restored_from is not None


async def test_a_corrupt_checkpoint_makes_the_daemon_start_fresh(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = tmp_path / "spool.ndjson"
    spool.write_bytes(usage_line(ICCIDS[0], time.time() - 120, 1) + b"\n")
    settings = daemon_settings(tmp_path, spool)
    settings.state_dir.mkdir()
    (settings.state_dir / ckpt.FILE_NAME).write_bytes(b"PK\x03\x04 torn")
    daemon = file_daemon(settings)
    caplog.set_level(logging.INFO, logger="simwatch")
    await run_until(daemon, lambda: received(daemon) == 1)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "checkpoint unusable, starting with an empty state" in errors[0]
    assert list(settings.state_dir.glob("checkpoint.bad-*.npz"))
    assert ckpt.read_file(settings.state_dir) is not None  # a fresh one at shutdown


async def test_a_failing_write_is_logged_once_and_its_recovery_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = tmp_path / "spool.ndjson"
    spool.write_bytes(b"")
    settings = daemon_settings(tmp_path, spool)
    daemon = file_daemon(settings)
    settings.state_dir.write_text("a file where the folder should be")
    caplog.set_level(logging.INFO, logger="simwatch")
    assert daemon.checkpoints is not None
    for _ in range(3):
        assert not await daemon.checkpoint()
    settings.state_dir.unlink()
    assert await daemon.checkpoint()
    assert await daemon.checkpoint()
    messages = [r.getMessage() for r in caplog.records]
    assert sum("checkpoint: failed (" in m for m in messages) == 1
    assert sum("checkpoint: written again" in m for m in messages) == 1
    stats = daemon.checkpoints.stats
    assert (stats.failures, stats.successes) == (3, 2)
    collector = EngineCollector(
        daemon.engine,
        DaemonHealth(),
        daemon.source_stats,
        version="test",
        checkpoint_stats=daemon.checkpoint_stats,
    )
    text = generate_latest(make_registry(collector, process=False)).decode()
    assert "simwatch_checkpoint_failures_total 3.0" in text
    assert f"simwatch_checkpoint_size_bytes {float(stats.size_bytes or 0)}" in text
    assert "simwatch_checkpoint_last_success_timestamp_seconds " in text
    assert "simwatch_checkpoint_duration_seconds " in text


async def test_the_inventory_merges_with_a_restored_state(tmp_path: Path) -> None:
    spool = tmp_path / "spool.ndjson"
    now = time.time()
    spool.write_bytes(usage_line(ICCIDS[0], now - 120, 1) + b"\n")
    settings = daemon_settings(tmp_path, spool)
    first = file_daemon(settings, inventory=ICCIDS[:3])
    await run_until(first, lambda: received(first) == 1)
    # the inventory changed: SIM 0 (seen) and SIM 1 (never seen) left, SIM 5 is new
    second = file_daemon(settings, inventory=[ICCIDS[2], ICCIDS[5]])
    await run_until(second, lambda: second.health.inventory_loaded)
    state = second.engine.state
    cols = state.cols
    seen, gone, kept, new = (state.row(i) for i in (ICCIDS[0], ICCIDS[1], ICCIDS[2], ICCIDS[5]))
    assert not cols.flags[seen] & Flag.IN_INVENTORY
    assert cols.status[seen] == Status.ACTIVE  # known from its records, like any such SIM
    assert cols.customer[seen] == 0
    assert cols.status[gone] == Status.DEACTIVATED  # never seen and no longer listed
    assert cols.flags[kept] & Flag.IN_INVENTORY
    assert state.customers.values[int(cols.customer[kept])] == "acme"
    assert new >= 0
    assert cols.flags[new] & Flag.IN_INVENTORY


async def test_the_copy_runs_off_the_loop_while_writers_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the state is copied (in a worker thread), the loop answers readers, and the
    engine's writers, a batch and an evaluation cycle, wait for the copy to end."""
    settings = daemon_settings(tmp_path, tmp_path / "spool.ndjson")
    daemon = file_daemon(settings)
    copying, release = threading.Event(), threading.Event()
    real_capture = ckpt.capture

    def slow_capture(engine: Engine, **kwargs: Any) -> ckpt.Snapshot:
        copying.set()
        assert release.wait(10), "the test never released the copy"
        return real_capture(engine, **kwargs)

    monkeypatch.setattr(ckpt, "capture", slow_capture)
    writing = asyncio.create_task(daemon.checkpoint())
    assert await asyncio.to_thread(copying.wait, 10)
    # the loop is free: a reader runs, and sees the engine as it was
    assert len(daemon.engine.state) == 0
    now = time.time()
    batch = Batch("spool", lines=[usage_line(ICCIDS[0], now - 60, 1)])
    applying = asyncio.create_task(daemon.apply_batch(batch))
    daemon.evaluation_clock.next_boundary = now - 1  # a cycle is due
    clock = asyncio.create_task(daemon._clock())
    for _ in range(20):
        await asyncio.sleep(0.01)
    assert not applying.done()
    assert len(daemon.engine.state) == 0  # the batch waits for the copy
    assert daemon.health.evaluations == 0  # so does the cycle
    release.set()
    assert await writing
    await applying
    assert len(daemon.engine.state) == 1
    await until(lambda: daemon.health.evaluations, 10, "the due cycle ran", interval_s=0.01)
    clock.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await clock
    snapshot = ckpt.read_file(settings.state_dir)
    assert snapshot is not None
    assert snapshot.arrays["index.hi"].size == 0  # the copy is of the state before the batch


def test_a_checkpoint_written_before_a_column_was_added_restores() -> None:
    # A checkpoint of an older version lacks the columns added since: the state restores
    # with those columns empty and every other one as written; a column every version
    # writes is still required.
    engine = new_engine(ICCIDS[:3])
    feed = Feed(engine)
    for k, name in enumerate(ICCIDS[:3]):
        feed.usage(name, T0 + 900.0 * (k + 1), start=format_rfc3339(T0 + 900.0 * k))
        feed.event(name, T0 + 4000.0, "pdp_reject", cause="apn_unavailable")
        feed.session(name, T0 + 4100.0, "ended", end_cause="network_failure")
    arrays, meta = engine.state.export()
    assert (arrays["col.data_from"][:3] != NEVER).all()
    assert (arrays["col.fail_at"][:3] != NEVER).all()
    older = {k: v for k, v in arrays.items() if k.removeprefix("col.") not in ADDED_COLUMNS}
    fresh = new_engine([])
    fresh.state.restore(older, meta)
    n = len(fresh.state)
    assert n == 3
    assert (fresh.state.cols.data_from[:n] == NEVER).all()
    assert (fresh.state.cols.fail_at[:n] == NEVER).all()
    assert np.array_equal(fresh.state.cols.reject_at[:n], engine.state.cols.reject_at[:n])
    without = {k: v for k, v in arrays.items() if k != "col.reject_at"}
    with pytest.raises(KeyError, match="reject_at"):
        new_engine([]).state.restore(without, meta)
