"""Three ``simwatch run`` shards fed by a real ``nats-server -js``, one leader paging.

Documented behaviour (docs/scaling.md, "The cluster"; simwatch/service/cluster.py):

1. A fleet's records (400 SIMs on four partners, every 15 minutes for 8 hours, partner
   20404 silent for the last 105 minutes: its SIMs silent, not only late) are published
   across 4 partitions. Three nodes share the partitions (every partition read by
   exactly one node), the leader merges their per-leaf counts and pages the outage
   once: the group and affected count of a single node's replay of the same records.
   Any node answers ``/api/v1/sims/{iccid}`` for any SIM (the owner's view); a SIM
   of the outage names the leader's incident whichever node reads it, and the tickets
   of its ``vip`` SIMs, sent by the nodes that read them, carry the page's
   ``group_incident``: Alertmanager's inhibit rule (deploy/alertmanager) mutes every
   one, those of the nodes that are not the leader too.
2. ``kill -9`` of the leader: another node leads within two cycles (plus the lease),
   the open incident keeps its id, Alertmanager notifies nothing new, and it carries on
   what the old leader learned of each leaf's noise.
3. ``kill -9`` of a shard: its partitions move to the survivors, which rebuild its SIMs
   from its snapshots and the stream after them (each SIM known on exactly one live
   node, with its last data time; test_cluster_handoff.py checks the boundary).
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pytest
import yaml
from mosquitto import free_port
from nats_feed import Publisher, sims
from nats_server import NatsServer
from servers import Alertmanager, http_get, start_simwatch, until
from test_kill9 import am_config, webhook

from simwatch.core.engine import Engine, EngineConfig
from simwatch.core.operators import OperatorTable
from simwatch.shell.replay import replay_lines
from simwatch.sources.nats import partition_of

if TYPE_CHECKING:
    import subprocess

    from test_kill9 import Webhook

pytestmark = [
    pytest.mark.real_server,
    pytest.mark.skipif(not NatsServer.available(), reason="nats-server is not installed"),
    pytest.mark.skipif(not Alertmanager.available(), reason="alertmanager is not installed"),
]

PARTITIONS = 4
INTERVAL = 5.0
LEASE = 3.0  # 2 s let leases lapse under a loaded machine (partitions moved between live nodes)
HOURS = 8
WARMUP = 4 * 3600.0
FLEET = sims(400)
PARTNERS = [("262", "01"), ("262", "02"), ("204", "08"), ("204", "04")]
SILENT = "20404"
NODES = ("n1", "n2", "n3")
DEPLOYED_AM = Path(__file__).parent.parent / "deploy" / "alertmanager" / "alertmanager.yml"
OUTAGE = [i for k, i in enumerate(FLEET) if PARTNERS[k % 4] == ("204", "04")]
VIP = OUTAGE[:24]  # tagged vip: a ticket each, from the node that reads it


def partner(k: int) -> tuple[str, str]:
    return PARTNERS[k % 4]


def history(pub: Publisher, now: float) -> list[tuple[str, bytes]]:
    lines = []
    t = now - HOURS * 3600
    while t < now - 60:
        for k, iccid in enumerate(FLEET):
            end = t + (k % 600)
            silent = partner(k) == ("204", "04") and end > now - 6300
            if end < now - 30 and not silent:
                mcc, mnc = partner(k)
                lines.append((iccid, pub.record(iccid, end, mcc=mcc, mnc=mnc)))
        t += 900.0
    return lines


def write_inventory(tmp: Path) -> Path:
    path = tmp / "inventory.csv"
    rows = [f"{i},{'vip' if i in VIP else ''}" for i in FLEET]
    path.write_text("iccid,tags\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def inhibiting_am_config(hook: Webhook) -> str:
    """``am_config`` with deploy/alertmanager's inhibit rule: a page mutes the tickets
    of its group (``equal: [group_incident]``)."""
    config = yaml.safe_load(am_config(hook))
    deployed = yaml.safe_load(DEPLOYED_AM.read_text(encoding="utf-8"))
    config["inhibit_rules"] = deployed["inhibit_rules"]
    return str(yaml.safe_dump(config))


def write_config(tmp: Path, node: str, url: str, am: str, port: int) -> Path:
    config = tmp / f"{node}.toml"
    config.write_text(
        f"""
state_dir = "{tmp / node}"
event_loop = "asyncio"
[checkpoint]
interval_s = 2.0
[engine]
inventory_file = "{tmp / "inventory.csv"}"
eval_interval_s = {INTERVAL}
warmup_s = {WARMUP}
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
fetch_batch = 64
ack_wait_s = 30.0
[cluster]
enabled = true
node = "{node}"
servers = ["{url}"]
partitions = {PARTITIONS}
lease_s = {LEASE}
min_nodes = {len(NODES)}
[sinks.alertmanager]
urls = ["{am}"]
resend_interval_s = 2.0
ends_at_after_s = 60.0
""",
        encoding="utf-8",
    )
    return config


def get(port: int, path: str) -> Any:
    status, body = http_get(f"http://127.0.0.1:{port}{path}", timeout=2.0)
    return orjson.loads(body) if status == 200 else None


def metrics(port: int) -> dict[str, float]:
    status, body = http_get(f"http://127.0.0.1:{port}/metrics", timeout=2.0)
    assert status == 200
    out = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def tickets(am: Alertmanager) -> list[dict[str, Any]]:
    """The ticket alerts Alertmanager holds now (muted ones too; resolved ones are gone)."""
    status, body = http_get(f"{am.url}/api/v2/alerts?active=true", timeout=2.0)
    assert status == 200
    alerts: list[dict[str, Any]] = orjson.loads(body)
    return [a for a in alerts if a["labels"].get("alertname") == "SimwatchSimSilent"]


def group_incidents(port: int) -> list[dict[str, Any]]:
    doc = get(port, "/api/v1/incidents?state=open")
    items = doc["incidents"] if doc else []
    return [i for i in items if i.get("kind") == "group"]


def reference(records: list[bytes], until_t: float) -> list[dict[str, Any]]:
    """One node's view of the same records: ``simwatch replay`` on event time, then the
    cycles up to ``until_t`` (when the cluster paged)."""
    engine = Engine(
        EngineConfig(eval_interval_s=INTERVAL, warmup_s=WARMUP), OperatorTable.load(None)
    )
    stats = replay_lines(engine, records, wall_now=until_t)
    assert stats.last_ts is not None
    boundary = (stats.last_ts // INTERVAL + 1) * INTERVAL
    while boundary <= until_t:
        engine.evaluate(boundary)
        boundary += INTERVAL
    return [
        {"dims": dict(i.dims), "affected": i.affected, "total": i.total}
        for i in engine.incidents.open.values()
        if i.kind == "group"
    ]


async def test_three_shards_one_leader_fail_over(tmp_path: Path) -> None:
    ports = {n: free_port() for n in NODES}
    processes: dict[str, subprocess.Popen[bytes]] = {}
    logs = {n: tmp_path / f"{n}.log" for n in NODES}
    now = time.time()
    with NatsServer(tmp_path / "nats") as server:
        async with webhook() as hook, Publisher(server.client_url, PARTITIONS) as pub:
            am = Alertmanager(tmp_path / "am", config=inhibiting_am_config(hook))
            write_inventory(tmp_path)
            await asyncio.to_thread(am.start)
            try:
                lines = history(pub, now)
                newest: dict[str, str] = {}  # per SIM, its last data as published
                for iccid, line in lines:
                    newest[iccid] = max(newest.get(iccid, ""), orjson.loads(line)["end"])
                await pub.publish(lines, shape=2)
                for n in NODES:
                    config = write_config(tmp_path, n, server.client_url, am.url, ports[n])
                    processes[n] = start_simwatch(config, logs[n])
                # 1. one page for the outage, from the leader (after each node replayed
                # the history: 5,770 cycles, 50 s on a machine loaded beyond its 2 cores)
                pages = await until(
                    lambda: hook.firing("SimwatchGroupIncident"), 120, "the page", logs["n1"]
                )
                # the first page names the partner (on failure: every page, and what
                # each node has open, to tell a wrong cause from a lagging shard)
                assert pages[0].get("partner") == SILENT, (
                    pages,
                    {n: group_incidents(ports[n]) for n in NODES},
                )
                incident = pages[0]["incident"]
                leader = next(n for n in NODES if group_incidents(ports[n]))
                others = [n for n in NODES if n != leader]
                assert all(group_incidents(ports[n]) == [] for n in others)
                opened = group_incidents(ports[leader])
                assert [i["id"] for i in opened] == [incident]
                paged_at = time.time()
                records = [line for _, line in lines]
                expected = await asyncio.to_thread(reference, records, paged_at)
                assert [e["dims"] for e in expected] == [{"partner": SILENT}]
                assert opened[0]["dims"] == expected[0]["dims"]
                # /metrics per node, labelled with its name: one leader, every partition read
                figures = {n: metrics(ports[n]) for n in NODES}
                assert [figures[n][f'simwatch_cluster_leader{{shard="{n}"}}'] for n in NODES] == [
                    1.0 if n == leader else 0.0 for n in NODES
                ]
                assert sum(
                    figures[n][f'simwatch_cluster_partitions{{shard="{n}"}}'] for n in NODES
                ) == (PARTITIONS)
                decided = f'simwatch_cluster_merges_total{{outcome="decided",shard="{leader}"}}'
                assert figures[leader][decided] >= 2  # open_after cycles on merged counts

                # any node answers for any SIM (forwarded to the node reading its partition)
                # (once its owner has read it: partitions are read in parallel, so a page
                # can come before the last of a slower partition's records)
                def answered_everywhere(iccid: str) -> bool:
                    answers = [get(ports[n], f"/api/v1/sims/{iccid}") for n in NODES]
                    return [a["last_data"] if a else None for a in answers] == [newest[iccid]] * 3

                for iccid in FLEET[::50]:
                    check = functools.partial(answered_everywhere, iccid)
                    await until(check, 20, f"{iccid} answered by every node")

                # a SIM of the outage names the leader's incident whichever node reads it
                # (its view, as its diagnosis and its ticket's group_incident label: the
                # followers hold no group incident of their own)
                outage = [i for k, i in enumerate(FLEET) if partner(k) == ("204", "04")][:12]

                def named_by_its_owner() -> bool:
                    views = [get(ports[leader], f"/api/v1/sims/{iccid}") for iccid in outage]
                    return all(v and (v.get("incident") or {}).get("id") == incident for v in views)

                await until(named_by_its_owner, 20, "the outage's SIMs name the incident")

                # their tickets, each from the node that reads it (the vip SIMs span every
                # partition: some are read by the nodes that are not the leader), carry the
                # page's group_incident, and Alertmanager mutes every one of them
                assert {partition_of(i, PARTITIONS) for i in VIP} == set(range(PARTITIONS))

                def muted() -> bool:
                    held = [t for t in tickets(am) if t["labels"].get("iccid") in VIP]
                    return sorted(t["labels"]["iccid"] for t in held) == sorted(VIP) and all(
                        t["labels"].get("group_incident") == incident
                        and t["status"]["state"] == "suppressed"
                        for t in held
                    )

                await until(muted, 30, "every vip ticket muted by the page", logs[others[0]])

                # every record read: the merged affected count is the single node's (its
                # incident follows the merged counts each cycle, one step behind)
                def same_count() -> bool:
                    current = group_incidents(ports[leader])
                    want = expected[0]["affected"]
                    return bool(current) and abs(current[0]["affected"] - want) <= 0.05 * want

                await until(same_count, 3 * INTERVAL, "the single node's affected count")
                assert [i["id"] for i in group_incidents(ports[leader])] == [incident]
                # 2. kill -9 the leader: another leads, same incident, nothing new notified
                os.kill(processes[leader].pid, signal.SIGKILL)
                processes[leader].wait(10)
                killed_at = time.monotonic()
                new_leader = await until(
                    lambda: next((n for n in others if group_incidents(ports[n])), None),
                    2 * INTERVAL + 2 * LEASE + 5,
                    "a new leader with the incident",
                    logs[others[0]],
                )
                failover_s = time.monotonic() - killed_at
                # it carries on the noise the old leader learned of each leaf on the merged
                # counts (put in the object store every checkpoint interval)
                carried = r"carrying on the noise of [1-9][0-9]* leaves the last leader learned"
                assert re.search(carried, logs[new_leader].read_text()), "noise not carried on"
                assert [i["id"] for i in group_incidents(ports[new_leader])] == [incident]
                await asyncio.sleep(INTERVAL + LEASE)  # its first cycle re-sent the page
                assert [i["id"] for i in group_incidents(ports[new_leader])] == [incident]
                assert [p["incident"] for p in hook.firing("SimwatchGroupIncident")] == [incident]
                # 3. kill -9 a shard: its SIMs come back on the last node
                shard = next(n for n in others if n != new_leader)
                os.kill(processes[shard].pid, signal.SIGKILL)
                processes[shard].wait(10)
                last = new_leader
                probe = FLEET[::7]

                def all_back() -> bool:
                    # each SIM on the last node, its last data as published
                    for iccid in probe:
                        view = get(ports[last], f"/api/v1/sims/{iccid}")
                        if not view or view.get("last_data") != newest[iccid]:
                            return False
                    return True

                await until(all_back, 30, "every SIM back on the last node", logs[last])
                # every SIM on it once, no record applied twice (not even re-read)
                final = metrics(ports[last])
                assert final["simwatch_tracked_sims"] == len(FLEET)
                assert final.get('simwatch_source_duplicates_total{source="nats"}', 0) == 0
                assert [p["incident"] for p in hook.firing("SimwatchGroupIncident")] == [incident]
            finally:
                for process in processes.values():
                    if process.poll() is None:
                        process.kill()
                        process.wait()
                await asyncio.to_thread(am.stop)
    print(f"fail-over {failover_s:.1f} s")  # the figure docs/scaling.md quotes (pytest -s)
