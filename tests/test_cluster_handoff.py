"""A partition taken over from its snapshot: two ``simwatch run`` nodes, a real nats-server.

Documented behaviour (docs/scaling.md "Taking a partition over"; service/handoff.py):
every node puts, per partition it reads, a snapshot of that partition's SIMs and the
stream sequence it covers into the object store ``<bucket>-partitions``; after
``kill -9`` of a node, the survivor merges the snapshot of each partition it takes over
and its consumer starts right after the snapshot's sequence: only the tail is replayed
(the records published after the snapshot), nothing is applied twice, and every SIM's
bytes are exact.
"""

from __future__ import annotations

import asyncio
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
from test_source_nats import checkpoint_of, checkpointed_seqs, received

from simwatch.core.iccid_index import IccidIndex
from simwatch.service.handoff import PartitionSnapshot, object_name

if TYPE_CHECKING:
    import subprocess
    from pathlib import Path

pytestmark = [
    pytest.mark.real_server,
    pytest.mark.skipif(not NatsServer.available(), reason="nats-server is not installed"),
]

PARTITIONS = 4
FLEET = sims(80)
NODES = ("n1", "n2")


def history(pub: Publisher, start: float, hours: int) -> list[tuple[str, bytes]]:
    """Every SIM reports every 15 minutes for ``hours`` from ``start`` (pinned time)."""
    return [
        (iccid, pub.record(iccid, start + step * 900.0 + k))
        for step in range(hours * 4)
        for k, iccid in enumerate(FLEET)
    ]


def write_config(tmp: Path, node: str, url: str, port: int) -> Path:
    config = tmp / f"{node}.toml"
    config.write_text(
        f"""
state_dir = "{tmp / node}"
[checkpoint]
interval_s = 1.0
[engine]
eval_interval_s = 300.0
dead_letter_file = "{tmp / node / "dl.ndjson"}"
[http]
port = {port}
auth = "off"
[log]
level = "info"
[[sources.nats]]
servers = ["{url}"]
partitions = {PARTITIONS}
fetch_timeout_s = 0.2
ack_wait_s = 30.0
[cluster]
enabled = true
node = "{node}"
servers = ["{url}"]
partitions = {PARTITIONS}
lease_s = 3.0
min_nodes = {len(NODES)}
""",
        encoding="utf-8",
    )
    return config


async def snapshots(url: str) -> tuple[dict[int, PartitionSnapshot], dict[int, str]]:
    """The snapshot of each partition in the object store (those there are), and the
    cluster's assignment (partition -> node)."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        try:
            entry = await (await js.key_value("simwatch-state")).get("assignment")
            doc = orjson.loads(entry.value or b"{}")
            owners = {int(p): str(n) for p, n in doc.get("partitions", {}).items()}
        except (nats.js.errors.BucketNotFoundError, nats.js.errors.KeyNotFoundError):
            owners = {}
        try:
            store = await js.object_store("simwatch-partitions")
        except nats.js.errors.BucketNotFoundError:
            return {}, owners
        out = {}
        for p in range(PARTITIONS):
            try:
                found = await store.get(object_name(p))
            except nats.js.errors.ObjectNotFoundError:
                continue
            out[p] = PartitionSnapshot.decode(found.data or b"")
        return out, owners
    finally:
        await nc.close()


def takeovers(port: int) -> int:
    status, body = http_get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    for line in body.decode().splitlines():
        if line.startswith("simwatch_cluster_takeovers_total{"):
            return int(float(line.rsplit(" ", 1)[1]))
    raise AssertionError("no simwatch_cluster_takeovers_total")


async def start_sequences(url: str) -> dict[int, int]:
    """Per partition, the stream sequence its consumer was (re)created to start at."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        out = {}
        for p in range(PARTITIONS):
            info = await js.consumer_info(STREAM, f"simwatch-p{p}")
            out[p] = info.config.opt_start_seq or 0
        return out
    finally:
        await nc.close()


async def test_kill_9_survivor_takes_over_from_the_snapshot_and_replays_the_tail(
    tmp_path: Path,
) -> None:
    ports = {n: free_port() for n in NODES}
    logs = {n: tmp_path / f"{n}.log" for n in NODES}
    processes: dict[str, subprocess.Popen[bytes]] = {}
    with NatsServer(tmp_path / "nats") as server:
        url = server.client_url
        async with Publisher(url, PARTITIONS) as pub:
            try:
                await pub.publish(history(pub, T0, 3), shape=2)
                first = dict(pub.last_seq)
                for n in NODES:
                    processes[n] = start_simwatch(write_config(tmp_path, n, url, ports[n]), logs[n])

                # both nodes read their partitions to the end and put snapshots of them
                # (each by the node the assignment gives it to)
                async def covered() -> dict[int, PartitionSnapshot] | None:
                    found, owners = await snapshots(url)
                    done = {p: s.sequence for p, s in found.items()} == first
                    by = {p: s.meta["node"] for p, s in found.items()}
                    mine = done and by == owners and set(by.values()) == set(NODES)
                    return found if mine else None

                found = await until(
                    covered, 60, "a snapshot of every partition", logs["n1"], interval_s=0.5
                )
                taken = sorted(p for p, s in found.items() if s.meta["node"] == "n2")
                assert taken
                assert sum(s.sims for s in found.values()) == len(FLEET)
                read_by_n1 = await asyncio.to_thread(received, ports["n1"])
                took_before = takeovers(ports["n1"])

                # kill -9 n2; the tail (records after its snapshots) comes after
                os.kill(processes["n2"].pid, signal.SIGKILL)
                processes["n2"].wait(10)
                tail = history(pub, T0 + 3 * 3600, 1)
                await pub.publish(tail, shape=1)
                last = dict(pub.last_seq)
                await until(
                    lambda: checkpointed_seqs(tmp_path / "n1") == last,
                    60,
                    "n1 reads every partition to the end",
                    logs["n1"],
                )
                # the taken partitions' consumers start after their snapshot (right after
                # it; later if a reader restarted since, from what a checkpoint covers)
                starts = await start_sequences(url)
                assert all(starts[p] >= first[p] + 1 > 1 for p in taken)
                assert takeovers(ports["n1"]) - took_before == len(taken)
                assert await stop_simwatch(processes["n1"], logs["n1"]) == 0
            finally:
                for process in processes.values():
                    if process.poll() is None:
                        process.kill()
                        process.wait()
    text = logs["n1"].read_text(errors="replace")
    for p in taken:
        assert f"partition {p} taken over from n2's snapshot" in text
        assert f"reading partition {p} (after sequence {first[p]})" in text
    final = checkpoint_of(tmp_path / "n1")
    assert final is not None
    ingest = final.header["engine"]["ingest"]  # type: ignore[index]
    # only the tail replayed: after the kill n1 applied exactly the records published
    # after the snapshots, none of the taken partitions' history again, none twice
    assert ingest["applied"] == read_by_n1 + len(tail)
    assert ingest["duplicates"] == 0
    index = IccidIndex()
    index.restore(final.arrays["index.hi"], final.arrays["index.lo"])
    month_bytes = final.arrays["col.month_bytes"].tolist()
    assert dict(zip(index.iccids(), month_bytes, strict=True)) == dict(pub.bytes)
