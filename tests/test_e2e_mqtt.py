"""End to end: the daemon with the MQTT source against a real Mosquitto, the HTTP API.

Two days of 15-minute reports from 60 SIMs on two German partners are published as
batched MQTT payloads; partner 26201 goes silent for the last 90 minutes and one
device on 26202 uses an APN its SIM does not allow. The daemon evaluates the backlog on
event time; the test then asks the API what a support agent would.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import aiomqtt
import orjson
import pytest
from fleet import iccid
from mosquitto import Mosquitto, free_port
from servers import until

from simwatch.core.inventory import InventoryRow
from simwatch.core.timeutil import format_rfc3339
from simwatch.service.daemon import Daemon
from simwatch.service.run import serve
from simwatch.shell.settings import (
    EngineSettings,
    HttpSettings,
    MqttSourceSettings,
    Settings,
    SourcesSettings,
)
from simwatch.sources.mqtt import MqttSource

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.real_server  # mosquitto (the ``broker`` fixture)

TOPIC = "fleet/records"
FAULTY, HEALTHY = ("262", "01"), ("262", "02")
SIMS = [iccid(k) for k in range(60)]
WRONG_APN = SIMS[45]  # on the healthy partner


def partner_of(i: int) -> tuple[str, str]:
    return FAULTY if i < 30 else HEALTHY


def records(now: float) -> Iterator[dict[str, Any]]:
    fault_start = now - 90 * 60
    start = (now // 900) * 900 - 2 * 86400
    t = start
    while t < now - 60:
        for i, sim in enumerate(SIMS):
            end = t + i * 7  # reports spread over the quarter hour
            if end >= now - 60:
                continue
            if partner_of(i) == FAULTY and end >= fault_start:
                continue
            if sim == WRONG_APN and end >= now - 3600:
                continue
            mcc, mnc = partner_of(i)
            yield {
                "kind": "usage",
                "record_id": f"u-{sim}-{int(end)}",
                "iccid": sim,
                "start": format_rfc3339(end - 900),
                "end": format_rfc3339(end),
                "bytes_up": 900,
                "bytes_down": 120,
                "apn": "meters.acme",
                "mcc": mcc,
                "mnc": mnc,
                "rat": "LTE-M",
            }
        t += 900
    for k in range(4):  # the device was reconfigured to a public APN an hour ago
        yield {
            "kind": "event",
            "record_id": f"e-{k}",
            "iccid": WRONG_APN,
            "ts": format_rfc3339(now - 3000 + k * 600),
            "type": "auth_failure",
            "apn": "internet",
            "mcc": "262",
            "mnc": "02",
            "cause": "apn_not_allowed",
        }


async def test_partner_outage_and_wrong_apn_end_to_end(broker: Mosquitto, tmp_path: Path) -> None:
    http = HttpSettings(port=free_port(), auth="off")  # auth: test_http_security.py
    mqtt = MqttSourceSettings(name="mqtt:e2e", port=broker.port, topics=[TOPIC], client_id="e2e")
    settings = Settings(
        engine=EngineSettings(warmup_s=0, dead_letter_file=tmp_path / "dl.ndjson"),
        http=http,
        sources=SourcesSettings(mqtt=[mqtt]),
    )
    inventory = [
        InventoryRow(iccid=i, customer="acme", apns=("meters.acme",), status="active") for i in SIMS
    ]
    source = MqttSource(mqtt)
    daemon = Daemon(settings, [source], inventory=inventory)
    task = asyncio.create_task(
        daemon.run(extra_tasks=[("http", lambda: serve(daemon, http, frozenset()))])
    )
    base = f"http://127.0.0.1:{http.port}"
    try:
        await until(lambda: source.stats.connected, 30, "the source connected")
        now = time.time()
        rows = sorted(records(now), key=lambda r: r.get("end") or r["ts"])  # as they happened
        async with aiomqtt.Client("127.0.0.1", broker.port, identifier="publisher") as client:
            for k in range(0, len(rows), 500):
                await client.publish(TOPIC, orjson.dumps(rows[k : k + 500]), qos=1)
        await until(lambda: source.stats.received >= len(rows), 30, "every record received")
        async with aiohttp.ClientSession() as http_client:

            async def get(path: str) -> Any:
                async with http_client.get(base + path) as response:
                    assert response.status == 200, (path, await response.text())
                    return await response.json()

            async def open_incidents() -> list[dict[str, Any]]:
                body = await get("/api/v1/incidents?state=open")
                return [i for i in body["incidents"] if i["severity"] == "page"]

            pages = await until(open_incidents, 30, "a page", interval_s=0.2)
            assert [p["dims"] for p in pages] == [{"partner": "26201"}]
            assert pages[0]["affected"] >= 25
            assert pages[0]["total"] == 30

            silent_sim = await get(f"/api/v1/sims/{SIMS[3]}")
            assert silent_sim["incident"]["id"] == pages[0]["id"]
            assert "group_incident" in [f["code"] for f in silent_sim["diagnosis"]]

            wrong = await get(f"/api/v1/sims/{WRONG_APN}")
            finding = next(f for f in wrong["diagnosis"] if f["code"] == "wrong_apn")
            assert "'internet'" in finding["hint"]
            assert "'meters.acme'" in finding["hint"]
            assert wrong["incident"] is None

            async with http_client.get(base + "/metrics") as response:
                text = await response.text()
            assert 'simwatch_incidents_open{severity="page"} 1.0' in text
            assert 'simwatch_source_records_received_total{source="mqtt:e2e"}' in text
            async with http_client.get(base + "/-/ready") as response:
                assert response.status == 200
    finally:
        daemon.request_stop()
        await asyncio.wait_for(task, 10)
