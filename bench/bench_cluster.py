"""The cluster's figures (docs/scaling.md, "The cluster"): throughput and merge cost.

Run:
  ``python bench/bench_cluster.py throughput [RECORDS] [PER_MESSAGE]`` (300000, 500):
      starts ``nats-server -js`` on free loopback ports (tests/nats_server.py), publishes
      RECORDS usage records of 100k SIMs to 12 partitions in NDJSON messages of
      PER_MESSAGE, then starts three ``simwatch run`` processes, each reading 4
      partitions (``owned``), and times from their start until their
      ``simwatch_source_records_received_total`` add up to RECORDS. Baseline in the
      same run: one process reading all 12 partitions.
  ``python bench/bench_cluster.py merge``: the leader's merge per cycle (parse three
      nodes' reports from JSON, ``core.cluster.merge_cycle``: sum and localize) for
      1k to 100k leaves per node; then the same merge with the leaves' noise learned
      on the sums (``MergedNoise``), the version without it as the baseline.
  ``python bench/bench_cluster.py node [SIMS ...]`` (10000 100000): one node's cycle,
      ``shard_report`` and its JSON size on a real engine (the cycle's ``groups_heard``,
      what it heard of each group, timed alone), the leader's parse and merge of three
      such reports.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import nats
import numpy as np
import orjson
from benchfleet import inventory, usage_lines

from simwatch.core.cluster import merge_cycle
from simwatch.core.engine import Engine, EngineConfig
from simwatch.core.evaluate import groups_heard
from simwatch.core.merge import LeafCounts, MergedNoise, ShardReport, shard_report
from simwatch.core.records import Record, RecordDecoder
from simwatch.sources.nats import partition_of

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from mosquitto import free_port, stop_process
from nats_server import NatsServer
from servers import http_get, start_simwatch

if TYPE_CHECKING:
    import subprocess

PARTITIONS = 12


async def publish(url: str, records: int, per_message: int) -> float:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(name="SIMWATCH_RECORDS", subjects=["simwatch.records.*"])
    by_partition: dict[int, list[bytes]] = {p: [] for p in range(PARTITIONS)}
    for i in range(records):
        iccid = f"8931440{i % 100_000:012d}"
        minute = i // 100_000
        line = orjson.dumps(
            {
                "kind": "usage",
                "record_id": f"u-{i}",
                "iccid": iccid,
                "start": f"2026-11-20T10:{minute % 60:02d}:00Z",
                "end": f"2026-11-20T10:{minute % 60:02d}:30Z",
                "bytes_up": i % 5000,
                "bytes_down": 100,
                "apn": "meters.acme",
                "mcc": "262",
                "mnc": "02",
            }
        )
        by_partition[partition_of(iccid, PARTITIONS)].append(line)
    started = time.perf_counter()
    for p, lines in by_partition.items():
        for i in range(0, len(lines), per_message):
            await js.publish(f"simwatch.records.{p}", b"\n".join(lines[i : i + per_message]))
    elapsed = time.perf_counter() - started
    await nc.close()
    return elapsed


def received(port: int) -> int:
    status, body = http_get(f"http://127.0.0.1:{port}/metrics", timeout=2.0)
    if status != 200:
        return 0
    for line in body.decode().splitlines():
        if line.startswith("simwatch_source_records_received_total{"):
            return int(float(line.rsplit(" ", 1)[1]))
    return 0


def run_nodes(tmp: Path, url: str, owned: list[list[int]], records: int, tag: str) -> float:
    ports = []
    for k, parts in enumerate(owned):
        port = free_port()
        ports.append(port)
        config = tmp / f"{tag}{k}.toml"
        config.write_text(
            f"""
state_dir = "{tmp / f"{tag}{k}"}"
[checkpoint]
enabled = false
[engine]
eval_interval_s = 60.0
[http]
port = {port}
auth = "off"
[[sources.nats]]
servers = ["{url}"]
partitions = {PARTITIONS}
owned = {parts}
durable = "{tag}{k}"
fetch_batch = 64
""",
            encoding="utf-8",
        )
    started = time.perf_counter()
    processes: list[subprocess.Popen[bytes]] = [
        start_simwatch(tmp / f"{tag}{k}.toml", tmp / f"{tag}{k}.log") for k in range(len(owned))
    ]
    try:
        while sum(received(p) for p in ports) < records:
            if time.perf_counter() - started > 600:
                raise RuntimeError("not all records received in 600 s")
            time.sleep(0.1)
        return time.perf_counter() - started
    finally:
        for process in processes:
            stop_process(process)


def throughput(records: int, per_message: int) -> None:
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        with NatsServer(tmp / "nats") as server:
            took = asyncio.run(publish(server.client_url, records, per_message))
            print(f"published {records} records in {took:.1f} s ({records / took:,.0f}/s)")
            one = run_nodes(tmp, server.client_url, [list(range(PARTITIONS))], records, "one")
            print(f"1 node, 12 partitions: {one:.1f} s, {records / one:,.0f} records/s")
            three = [list(range(k, PARTITIONS, 3)) for k in range(3)]
            t3 = run_nodes(tmp, server.client_url, three, records, "three")
            print(f"3 nodes, 4 partitions each: {t3:.1f} s, {records / t3:,.0f} records/s")
            print("(both include process start, ~1-2 s; the machine has 2 cores)")


def report_json(leaves: int, node: int) -> bytes:
    partners = max(leaves // 20, 1)
    items = [
        LeafCounts(
            (f"apn{i % 20}", f"C{(i // 20) % 50}", f"{20000 + (i // 20) % partners}"),
            total=40.0,
            overdue=float((i + node) % 3),
            expected=0.5,
        )
        for i in range(leaves)
    ]
    report = ShardReport(
        0,
        1,
        1_794_960_000.0,
        warmed_up=True,
        dims=("apn", "country", "partner"),
        leaves=tuple(items),
    )
    return orjson.dumps(report.to_json())


def merge(runs: int = 5) -> None:
    for leaves in (1_000, 10_000, 100_000):
        payloads = {f"n{k}": report_json(leaves, k) for k in range(3)}
        parse_s, merge_s, noise_s = [], [], []
        noise = MergedNoise()  # the leader's learning of each leaf's noise on the sums
        for _ in range(runs if leaves < 100_000 else 2):
            t0 = time.perf_counter()
            reports = {n: ShardReport.from_json(orjson.loads(p)) for n, p in payloads.items()}
            t1 = time.perf_counter()
            result = merge_cycle(reports, sorted(payloads), 1_794_960_000.0)
            t2 = time.perf_counter()
            assert result.causes is not None
            noisy = merge_cycle(
                reports, sorted(payloads), 1_794_960_000.0, noise=noise, interval_s=60.0
            )
            t3 = time.perf_counter()
            assert noisy.causes is not None
            parse_s.append(t1 - t0)
            merge_s.append(t2 - t1)
            noise_s.append(t3 - t2)
        size = sum(len(p) for p in payloads.values())
        print(
            f"{leaves:>7} leaves x 3 nodes ({size / 1e6:.1f} MB JSON): parse "
            f"{1000 * statistics.median(parse_s):.0f} ms, merge+localize "
            f"{1000 * statistics.median(merge_s):.0f} ms; with the leaves' noise learned "
            f"on the sums (apply + learn) {1000 * statistics.median(noise_s):.0f} ms"
        )


def node_report(sims: int, runs: int = 5) -> None:
    """One cluster node's side per cycle on a real engine (bench_engine's fleet: 40
    partners, 12 APNs, 8 usage records per SIM): the cycle, ``shard_report``, its JSON
    size; then the leader's parse and merge of three such reports."""
    engine = Engine(replace(EngineConfig(), warmup_s=0.0, initial_capacity=sims))
    engine.load_inventory(inventory(sims))
    engine.groups_local = False  # a cluster node
    decoder = RecordDecoder()
    rng = np.random.default_rng(1)
    t0 = 1_794_960_000.0
    for k in range(8):
        for line in usage_lines(sims, t0 + k * 900.0, k, rng):
            rec = decoder.decode_line(line, t0 + 30 * 86400)
            if isinstance(rec, Record):
                engine.ingest_record(rec)
    now = t0 + 8 * 900.0 + 1800
    cycle_s, report_s, heard_s, payload, leaves = [], [], [], b"", 0
    for c in range(runs):
        started = time.perf_counter()
        engine.evaluate(now + c * 60)
        cycle_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        report = shard_report(engine, 0, 1)
        assert report is not None
        payload = orjson.dumps(report.to_json())
        leaves = len(report.leaves)
        report_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        groups_heard(engine.state)
        heard_s.append(time.perf_counter() - started)
    heard = len(orjson.dumps(orjson.loads(payload)["heard"]))
    parse_s, merge_s = [], []
    for _ in range(runs):
        started = time.perf_counter()
        reports = {f"n{k}": ShardReport.from_json(orjson.loads(payload)) for k in range(3)}
        parsed = time.perf_counter()
        merge_cycle(reports, sorted(reports), reports["n0"].evaluated_at)
        parse_s.append(parsed - started)
        merge_s.append(time.perf_counter() - parsed)
    print(
        f"{sims:>9,} SIMs, {leaves} leaves: cycle "
        f"{1000 * statistics.median(cycle_s):.1f} ms (of which what it heard of each group "
        f"{1000 * statistics.median(heard_s):.1f} ms), shard_report + JSON "
        f"{1000 * statistics.median(report_s):.1f} ms, {len(payload) / 1000:.1f} kB "
        f"({len(payload) / max(leaves, 1):.0f} B per leaf, {heard / 1000:.1f} kB of it what it "
        f"heard of each group); leader, 3 such "
        f"reports: parse {1000 * statistics.median(parse_s):.1f} ms, merge+localize "
        f"{1000 * statistics.median(merge_s):.1f} ms"
    )


def main(argv: list[str]) -> int:
    what = argv[0] if argv else "merge"
    if what == "throughput":
        records = int(argv[1]) if len(argv) > 1 else 300_000
        per_message = int(argv[2]) if len(argv) > 2 else 500
        throughput(records, per_message)
    elif what == "node":
        for sims in [int(a) for a in argv[1:]] or [10_000, 100_000]:
            node_report(sims)
    else:
        merge()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
