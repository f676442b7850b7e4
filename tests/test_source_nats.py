"""The JetStream source (``[[sources.nats]]``) against a real ``nats-server -js``.

Documented behaviour checked here (simwatch/sources/nats.py, docs/scaling.md):

- records on ``simwatch.records.<partition>`` in the three FORMATS.md shapes (one record,
  a JSON array, NDJSON lines) are all applied; a bad record goes to the dead letters with
  its reason and its message is acknowledged like any other;
- a message is acknowledged once a checkpoint covers it: each partition's consumer ack
  floor is the checkpoint's cursor, never past it;
- ``kill -9`` of a ``simwatch run`` with records applied past its last checkpoint, then a
  restart: every record applied exactly once (ingest counter, no duplicate even re-read,
  each SIM's bytes);
- bad configuration fails at start naming the field.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from typing import TYPE_CHECKING

import nats
import nats.js.errors
import orjson
import pytest
from fleet import T0
from mosquitto import free_port
from nats_feed import STREAM, Publisher, sims
from nats_server import NatsServer
from servers import http_get, start_simwatch, stop_simwatch, until

from simwatch.core.iccid_index import IccidIndex
from simwatch.service import checkpoint as ckpt
from simwatch.service.daemon import Daemon
from simwatch.shell.settings import (
    CheckpointSettings,
    ConfigError,
    EngineSettings,
    Settings,
    load_settings,
)
from simwatch.shell.settings.nats import NatsSourceSettings
from simwatch.shell.settings.sources import SourcesSettings
from simwatch.sources.nats import NatsSource, partition_of

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from simwatch.shell.source_contract import Batch

pytestmark = [
    pytest.mark.real_server,
    pytest.mark.skipif(not NatsServer.available(), reason="nats-server is not installed"),
]

PARTITIONS = 4
FLEET = sims(60)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[NatsServer]:
    with NatsServer(tmp_path / "nats") as running:
        yield running


def history(pub: Publisher, start: float, hours: int) -> list[tuple[str, bytes]]:
    """Every SIM reports every 15 minutes for ``hours`` from ``start`` (pinned time)."""
    return [
        (iccid, pub.record(iccid, start + step * 900.0 + k))
        for step in range(hours * 4)
        for k, iccid in enumerate(FLEET)
    ]


async def ack_floors(url: str) -> dict[int, int]:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        floors = {}
        for p in range(PARTITIONS):
            try:
                info = await js.consumer_info(STREAM, f"simwatch-p{p}")
            except nats.js.errors.NotFoundError:  # not created yet
                floors[p] = 0
                continue
            floors[p] = info.ack_floor.stream_seq if info.ack_floor else 0
        return floors
    finally:
        await nc.close()


async def _floors_are(url: str, expected: dict[int, int]) -> bool:
    return await ack_floors(url) == expected


def test_bad_config_names_the_field(tmp_path: Path) -> None:
    cases = {
        "[[sources.nats]]\npartitions = 4\nowned = [4]\n": "sources.nats[0].owned[0]",
        "[[sources.nats]]\nstream = 'a.b'\n": "sources.nats[0].stream",
        "[[sources.nats]]\nack_wait_s = 30\n": "sources.nats[0].ack_wait_s",
        "[[sources.nats]]\nsubject_prefix = 'simwatch.>'\n": "sources.nats[0].subject_prefix",
        "[cluster]\nenabled = true\n": "cluster.node",
    }
    for text, field in cases.items():
        path = tmp_path / "c.toml"
        path.write_text(text, encoding="utf-8")
        with pytest.raises(ConfigError, match=field.replace("[", r"\[").replace("]", r"\]")):
            load_settings(path)


def test_partition_is_crc32_of_the_iccid() -> None:
    # the documented function (docs/scaling.md): CRC-32 of the ICCID's digits; the value as
    # gzip computes it: `printf 8931440000000000011 | gzip -c | tail -c8 | od -An -tu4`
    assert partition_of("8931440000000000011", 16) == 452906813 % 16


def _daemon(tmp_path: Path, server: NatsServer) -> tuple[NatsSource, Daemon]:
    """A daemon reading the test stream, its checkpoints in ``tmp_path / "state"`` every
    5 min (none within a test; below the default ``ack_wait_s``, as settings require)."""
    settings = Settings(
        state_dir=tmp_path / "state",
        engine=EngineSettings(eval_interval_s=300.0, dead_letter_file=tmp_path / "dl.ndjson"),
        checkpoint=CheckpointSettings(interval_s=300.0),
        sources=SourcesSettings(
            nats=[
                NatsSourceSettings(
                    servers=[server.client_url], partitions=PARTITIONS, fetch_timeout_s=0.2
                )
            ]
        ),
    )
    source = NatsSource(settings.sources.nats[0])
    return source, Daemon(settings, [source], checkpoints=True)


async def test_records_flow_bad_ones_are_dead_lettered_acks_follow_checkpoints(
    tmp_path: Path, server: NatsServer
) -> None:
    source, daemon = _daemon(tmp_path, server)
    task = asyncio.create_task(daemon.run())
    try:
        async with Publisher(server.client_url, PARTITIONS) as pub:
            lines = history(pub, T0, 3)
            third = len(lines) // 3
            await pub.publish(lines[:third], shape=0)
            await pub.publish(lines[third : 2 * third], shape=1)
            await pub.publish(lines[2 * third :], shape=2)
            await pub.send(0, b'{"kind":"usage","record_id":"bad-1"}')  # no iccid
            await pub.send(1, b"not json at all")
            good, bad = pub.records, 2
            await until(lambda: source.stats.received == good + bad, 30, "every record read")
            # applied, not yet checkpointed: nothing acknowledged
            assert set((await ack_floors(server.client_url)).values()) == {0}
            assert await daemon.checkpoint()
            # every message acknowledged, by the checkpoint
            await until(
                lambda: _floors_are(server.client_url, pub.last_seq), 10, "acks of the checkpoint"
            )
        state = daemon.engine.state
        assert len(state) == len(FLEET)
        ingest = daemon.engine.export_state()[1]["ingest"]
        assert isinstance(ingest, dict)
        assert ingest["applied"] == good
        assert source.stats.duplicates == 0
        assert sum(source.stats.rejected.values()) == bad
        snapshot = ckpt.read_file(tmp_path / "state")
        assert snapshot is not None
        assert snapshot.sources["nats"] == {str(p): s for p, s in pub.last_seq.items()}
    finally:
        daemon.request_stop()
        await asyncio.wait_for(task, 10)
    dead = [orjson.loads(x) for x in (tmp_path / "dl.ndjson").read_bytes().splitlines()]
    assert sorted(d["source"] for d in dead) == ["nats", "nats"]
    assert all(d["reason"] for d in dead)
    assert {d["raw"] for d in dead} >= {"not json at all"}


def write_config(tmp_path: Path, url: str, port: int, checkpoint_s: float = 5.0) -> Path:
    config = tmp_path / f"simwatch-{checkpoint_s:g}.toml"
    config.write_text(
        f"""
state_dir = "{tmp_path / "state"}"
[checkpoint]
interval_s = {checkpoint_s}
[engine]
eval_interval_s = 300.0
dead_letter_file = "{tmp_path / "dl.ndjson"}"
[http]
port = {port}
auth = "off"
[log]
level = "info"
[[sources.nats]]
servers = ["{url}"]
partitions = {PARTITIONS}
fetch_timeout_s = 0.2
ack_wait_s = {max(30.0, 2 * checkpoint_s)}
""",
        encoding="utf-8",
    )
    return config


def checkpoint_of(state_dir: Path) -> ckpt.Snapshot | None:
    try:
        return ckpt.read_file(state_dir)
    except ckpt.CheckpointError:
        return None


def checkpointed_seqs(state_dir: Path) -> dict[int, int]:
    snapshot = checkpoint_of(state_dir)
    cursor = snapshot.sources.get("nats") if snapshot is not None else None
    return {int(k): v for k, v in cursor.items()} if isinstance(cursor, dict) else {}


def _written_at(state_dir: Path) -> float | None:
    snapshot = checkpoint_of(state_dir)
    return None if snapshot is None else snapshot.written_at


def received(port: int) -> int:
    status, body = http_get(f"http://127.0.0.1:{port}/metrics")
    if status != 200:
        return -1
    for line in body.decode().splitlines():
        if line.startswith("simwatch_source_records_received_total{"):
            return int(float(line.rsplit(" ", 1)[1]))
    return 0


async def test_a_clean_stop_acknowledges_what_its_last_checkpoint_covers(
    tmp_path: Path, server: NatsServer
) -> None:
    """No checkpoint before the stop (the interval is 5 min): the shutdown's own
    checkpoint covers every record, and its acknowledgements go out on the connection
    the stopped source left open, before it is closed."""
    source, daemon = _daemon(tmp_path, server)
    task = asyncio.create_task(daemon.run())
    try:
        async with Publisher(server.client_url, PARTITIONS) as pub:
            await pub.publish(history(pub, T0, 2), shape=1)
            await until(lambda: source.stats.received == pub.records, 30, "every record read")
            assert set((await ack_floors(server.client_url)).values()) == {0}
    finally:
        daemon.request_stop()
        await asyncio.wait_for(task, 20)
    snapshot = ckpt.read_file(tmp_path / "state")
    assert snapshot is not None
    assert snapshot.sources["nats"] == {str(p): s for p, s in pub.last_seq.items()}
    assert await ack_floors(server.client_url) == pub.last_seq


async def test_kill_9_then_restart_applies_every_record_once(
    tmp_path: Path, server: NatsServer
) -> None:
    port = free_port()
    config = write_config(tmp_path, server.client_url, port)
    # the kill must land while applied records are past the last checkpoint: the daemon
    # it kills runs with checkpoints an hour apart (the first is written after that
    # hour, the loop sleeping first), so no timer decides where the kill falls
    no_checkpoint = write_config(tmp_path, server.client_url, port, checkpoint_s=3600.0)
    log = tmp_path / "simwatch.log"
    state_dir = tmp_path / "state"
    process = start_simwatch(config, log)
    try:
        async with Publisher(server.client_url, PARTITIONS) as pub:
            await pub.publish(history(pub, T0, 6), shape=2)
            first = dict(pub.last_seq)
            await until(
                lambda: checkpointed_seqs(state_dir) == first, 30, "a checkpoint of it all", log
            )
            assert await stop_simwatch(process, log) == 0
            covered = checkpoint_of(state_dir)
            assert covered is not None
            # records applied past that checkpoint, then kill -9
            process = start_simwatch(no_checkpoint, log)
            await until(lambda: received(port) >= 0, 30, "the daemon's API", log)
            before = received(port)
            lines = history(pub, T0 + 6 * 3600, 2)
            await pub.publish(lines, shape=1)
            await until(lambda: received(port) - before >= len(lines), 20, "read", log)
            os.kill(process.pid, signal.SIGKILL)
            process.wait(10)
            assert _written_at(state_dir) == covered.written_at  # no checkpoint since
            ahead = checkpointed_seqs(state_dir) != pub.last_seq
            assert ahead, "the kill came after the checkpoint that covered everything"
            # restart: the stream replays from the checkpoint's cursor
            process = start_simwatch(config, log)
            await pub.publish(history(pub, T0 + 8 * 3600, 1), shape=0)
            await until(lambda: received(port) > 0, 30, "the restarted daemon's API", log)
            last = dict(pub.last_seq)
            await until(lambda: checkpointed_seqs(state_dir) == last, 30, "everything again", log)
            assert await stop_simwatch(process, log) == 0
            floors = await ack_floors(server.client_url)
            assert floors == last  # acknowledged by the final checkpoint
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "checkpoint restored" in log.read_text(errors="replace")
    final = checkpoint_of(state_dir)
    assert final is not None
    meta = final.header["engine"]
    assert isinstance(meta, dict)
    assert meta["ingest"]["applied"] == pub.records  # every record applied ...
    assert meta["ingest"]["duplicates"] == 0  # ... none even delivered twice to ingest
    index = IccidIndex()
    index.restore(final.arrays["index.hi"], final.arrays["index.lo"])
    month_bytes = final.arrays["col.month_bytes"].tolist()
    assert dict(zip(index.iccids(), month_bytes, strict=True)) == dict(pub.bytes)


async def test_a_server_restart_loses_nothing_and_repeats_nothing(tmp_path: Path) -> None:
    """nats-server stopped and started again (same port, same store) under a running
    source: what was published before and after arrives, each message once."""
    first = NatsServer(tmp_path / "nats")
    await asyncio.to_thread(first.start)
    settings = NatsSourceSettings(
        servers=[first.client_url], partitions=PARTITIONS, fetch_timeout_s=0.2
    )
    source = NatsSource(settings, ack_on_checkpoint=False)
    queue: asyncio.Queue[Batch] = asyncio.Queue()
    seen: list[bytes] = []

    async def supervise() -> None:  # what the daemon does: restart a failed source
        while True:
            with contextlib.suppress(Exception):
                await source.run(queue)
            await asyncio.sleep(0.2)

    async def ingest() -> None:
        while True:
            batch = await queue.get()
            seen.extend(batch.payloads)
            assert batch.on_applied is not None
            await batch.on_applied()

    server = first
    tasks = [asyncio.create_task(supervise()), asyncio.create_task(ingest())]
    try:
        async with Publisher(server.client_url, PARTITIONS) as pub:
            lines = history(pub, T0, 1)
            await pub.publish(lines[:100], shape=0)
        await until(lambda: len(seen) == 100, 20, "the first 100")
        await asyncio.to_thread(server.stop)
        second = NatsServer(tmp_path / "nats", port=first.port)
        second.client_port = first.client_port
        await asyncio.to_thread(second.start)
        server = second
        async with Publisher(server.client_url, PARTITIONS) as pub:
            await pub.publish(lines[100:], shape=0)
        await until(lambda: len(seen) >= len(lines), 30, "the rest after the restart")
        await asyncio.sleep(0.5)  # a repeat would arrive meanwhile
        assert sorted(seen) == sorted(line for _, line in lines)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.to_thread(server.stop)
