"""A burst far above what ingest can take: memory stays bounded and shedding is counted.

The daemon's MQTT source has a persistent session on a real Mosquitto. While it is
away, a burst of 1,000 payloads (100,000 records) is queued for it; when it connects
the broker delivers all of them at once, far faster than ingest applies records. The
source holds at most ``max_queued_messages`` payloads in memory and sheds the rest,
counting each; the ingest queue is bounded by construction; the API keeps answering
while ingest works; and every record is accounted for: applied or in a shed payload.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

import aiohttp
import aiomqtt
import orjson
import pytest
from mosquitto import Mosquitto, free_port
from servers import until

from simwatch.core.timeutil import format_rfc3339
from simwatch.service.daemon import QUEUE_BATCHES, Daemon
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
    from pathlib import Path

pytestmark = pytest.mark.real_server  # mosquitto (the ``broker`` fixture)

TOPIC = "burst/records"
PAYLOADS = 1000
PER_PAYLOAD = 100
BOUND = 50


def payload(k: int, now: float) -> bytes:
    lines = []
    for j in range(PER_PAYLOAD):
        n = k * PER_PAYLOAD + j
        end = now - 3600 + (n % 3000)
        lines.append(
            orjson.dumps(
                {
                    "kind": "usage",
                    "record_id": f"b-{n}",
                    "iccid": f"89490200000{n % 5000:08d}",
                    "start": format_rfc3339(end - 60),
                    "end": format_rfc3339(end),
                    "bytes_up": 100,
                    "bytes_down": 10,
                    "apn": "meters.acme",
                    "mcc": "262",
                    "mnc": "02",
                }
            )
        )
    return b"\n".join(lines)


async def test_a_burst_is_shed_and_counted_while_the_api_answers(
    broker: Mosquitto, tmp_path: Path
) -> None:
    http = HttpSettings(port=free_port(), auth="off")  # auth: test_http_security.py
    mqtt = MqttSourceSettings(
        name="mqtt:burst",
        port=broker.port,
        topics=[TOPIC],
        client_id="burst",
        max_queued_messages=BOUND,
    )
    settings = Settings(
        engine=EngineSettings(warmup_s=0, dead_letter_file=tmp_path / "dl.ndjson"),
        http=http,
        sources=SourcesSettings(mqtt=[mqtt]),
    )
    # the persistent session exists before the burst, so the broker keeps it for us
    async with aiomqtt.Client(
        "127.0.0.1", broker.port, identifier="burst", clean_session=False
    ) as session:
        await session.subscribe(TOPIC, qos=1)
    now = time.time()
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier="publisher") as pub:
        for k in range(PAYLOADS):
            await pub.publish(TOPIC, payload(k, now), qos=1)

    source = MqttSource(mqtt)
    daemon = Daemon(settings, [source])
    depth: list[int] = []
    daemon.on_cycle.append(lambda _r: depth.append(daemon.queue.qsize()))
    task = asyncio.create_task(
        daemon.run(extra_tasks=[("http", lambda: serve(daemon, http, frozenset()))])
    )
    base = f"http://127.0.0.1:{http.port}"
    answers: list[int] = []
    try:
        async with aiohttp.ClientSession() as client:

            async def absorbed() -> bool:
                assert not task.done(), task
                with contextlib.suppress(aiohttp.ClientConnectionError):  # not up yet
                    async with client.get(f"{base}/api/v1/status") as response:
                        answers.append(response.status)
                stats = source.stats
                return stats.received + stats.shed * PER_PAYLOAD >= PAYLOADS * PER_PAYLOAD

            await until(absorbed, 60, "the burst absorbed")
    finally:
        daemon.request_stop()
        await asyncio.wait_for(task, 10)
    stats = source.stats
    assert stats.shed > 0  # the burst was far above the bound
    assert stats.received + stats.shed * PER_PAYLOAD == PAYLOADS * PER_PAYLOAD
    assert stats.received > BOUND * PER_PAYLOAD  # ... and ingest took what it held
    assert dict(stats.rejected) == {}
    assert depth  # cycles ran during the burst, and saw a bounded queue
    assert max(depth) <= QUEUE_BATCHES
    assert len(answers) >= 3
    assert set(answers) == {200}  # the API answered all along
