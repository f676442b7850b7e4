"""Throughput of the MQTT source: records/s received from a local mosquitto.

Run: ``python bench/bench_mqtt.py [N] [PER_PAYLOAD]`` (defaults 200000 and 500). Starts
mosquitto on a free loopback port (tests/mosquitto.py), runs ``MqttSource`` into a queue
and a consumer that counts the records inside each payload with orjson (the daemon's
ingest decodes them anyway). The publisher is ``mosquitto_pub -l`` in its own process
(QoS 1, one payload per line: a JSON array of PER_PAYLOAD usage records).

Two figures:
- live: the source is connected and the publisher sends; time from the publisher's start
  to the last record received.
- backlog: the records were published while the source was away (persistent session);
  time from the source's start to the last record received (reconnect catch-up).
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from simwatch.shell.settings import MqttSourceSettings
from simwatch.sources.mqtt import MqttSource

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from mosquitto import Mosquitto

if TYPE_CHECKING:
    from simwatch.shell.source_contract import Batch

TOPIC = "sims/bench"
WAIT = 300.0


def make_payloads(n: int, per_payload: int) -> list[bytes]:
    records = [
        {
            "kind": "usage",
            "record_id": f"u-{i}",
            "iccid": f"8931440{i % 1_000_000:012d}",
            "start": "2026-11-20T10:00:00Z",
            "end": "2026-11-20T10:15:00Z",
            "bytes_up": i % 5000,
            "bytes_down": i % 777,
            "apn": "meters.acme",
            "mcc": "262",
            "mnc": "02",
            "rat": "LTE-M",
        }
        for i in range(n)
    ]
    return [orjson.dumps(records[i : i + per_payload]) for i in range(0, n, per_payload)]


async def mosquitto_pub(port: int, data: Path) -> None:
    binary = shutil.which("mosquitto_pub") or "/usr/bin/mosquitto_pub"
    with data.open("rb") as stdin:
        proc = await asyncio.create_subprocess_exec(
            binary,
            *("-h", "127.0.0.1", "-p", str(port), "-t", TOPIC, "-q", "1", "-l"),
            stdin=stdin,
        )
        if await asyncio.wait_for(proc.wait(), WAIT) != 0:
            raise RuntimeError("mosquitto_pub failed")


async def count_records(sink: asyncio.Queue[Batch], n: int) -> tuple[int, int]:
    """Consume until ``n`` records arrived; returns (batches, payloads)."""
    records = batches = payloads = 0
    while records < n:
        batch = await sink.get()
        batches += 1
        payloads += len(batch.payloads)
        for payload in batch.payloads:
            value = orjson.loads(payload)
            records += len(value) if isinstance(value, list) else 1
    return batches, payloads


async def wait_connected(source: MqttSource) -> None:
    async def poll() -> None:
        while not source.stats.connected:  # noqa: ASYNC110 - stats are plain fields
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), 10)


async def bench(n: int, per_payload: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-mqtt-") as tmp:
        data = Path(tmp) / "payloads.txt"
        data.write_bytes(b"\n".join(make_payloads(n, per_payload)) + b"\n")
        broker = Mosquitto(Path(tmp) / "broker")
        await asyncio.to_thread(broker.start)
        try:
            settings = MqttSourceSettings(
                name="mqtt:bench", port=broker.port, topics=[TOPIC], client_id="bench"
            )
            for mode in ("live", "backlog"):
                sink: asyncio.Queue[Batch] = asyncio.Queue(maxsize=64)
                source = MqttSource(settings)
                task = asyncio.create_task(source.run(sink))
                await wait_connected(source)
                if mode == "backlog":
                    task.cancel()  # away: the persistent session queues what is published
                    await asyncio.gather(task, return_exceptions=True)
                    await mosquitto_pub(broker.port, data)
                    start = time.perf_counter()
                    task = asyncio.create_task(source.run(sink))
                    batches, payloads = await asyncio.wait_for(count_records(sink, n), WAIT)
                else:
                    start = time.perf_counter()
                    publisher = asyncio.create_task(mosquitto_pub(broker.port, data))
                    batches, payloads = await asyncio.wait_for(count_records(sink, n), WAIT)
                    await publisher
                elapsed = time.perf_counter() - start
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                print(
                    f"{mode:8s} {n} records in {payloads} payloads of {per_payload}, "
                    f"{batches} batches: {elapsed:.2f} s, {n / elapsed:,.0f} records/s, "
                    f"{payloads / elapsed:,.0f} messages/s"
                )
        finally:
            await asyncio.to_thread(broker.stop)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    per_payload = int(sys.argv[2]) if len(sys.argv) > 2 else 500
    asyncio.run(bench(n, per_payload))


if __name__ == "__main__":
    main()
