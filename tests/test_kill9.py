"""``kill -9`` of a real ``simwatch run`` mid-ingest, then a restart: nothing lost.

The daemon follows one NDJSON file (``[[sources.file]]`` with a ``state_file``) and
checkpoints every second; a real Alertmanager routes to a webhook receiver run here,
which counts notifications.

1. History: 1000 SIMs (250 on each of four partners) report every 15 minutes for the last
   40 hours; partner 20404 went silent 90 minutes ago, so once the daemon caught up a
   group incident is open and Alertmanager has notified it once.
2. Live: the test keeps appending records of the other 750 SIMs (chunks of 750, fresh
   record ids) while the daemon ingests them, and ``SIGKILL``s the daemon while its own
   offsets file is ahead of its last checkpoint (lines applied after the checkpoint).
3. Restart with the same config; the appends go on, then stop. Once the file is fully
   applied the daemon gets SIGTERM and writes a last checkpoint, which is read here.

What must hold: every record applied exactly once (the ingest counter equals the number of
lines, no duplicate was even re-read, and each SIM's month bytes equal the sum of its
records); the incident kept its id; Alertmanager notified it exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any

import orjson
import pytest
import yaml
from aiohttp import web
from mosquitto import free_port
from servers import Alertmanager, api_token, http_get, start_simwatch, stop_simwatch, until

from simwatch.core.iccid_index import IccidIndex
from simwatch.core.timeutil import format_rfc3339, month_of
from simwatch.service import checkpoint as ckpt

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

pytestmark = [
    pytest.mark.real_server,  # alertmanager, simwatch processes
    pytest.mark.skipif(
        not Alertmanager.available(), reason="prometheus-alertmanager is not installed"
    ),
]

PARTNERS = [("262", "01"), ("262", "02"), ("204", "08"), ("204", "04")]
SILENT = "20404"
SIMS = [f"8931440000{i:09d}" for i in range(1000)]
HOURS = 40
STEP = 900.0


def partner_of(k: int) -> tuple[str, str]:
    return PARTNERS[k % 4]


class Spool:
    """The NDJSON file and, per SIM, what was written (for the expected month bytes)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines = 0
        self.month_bytes: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
        self.seq = 0

    def record(self, k: int, end: float) -> bytes:
        iccid = SIMS[k]
        mcc, mnc = partner_of(k)
        self.seq += 1
        up = 1000 + (self.seq * 7919) % 5000
        self.month_bytes[iccid][month_of(end)] += up + 100
        return orjson.dumps(
            {
                "kind": "usage",
                "record_id": f"r-{self.seq}",
                "iccid": iccid,
                "start": format_rfc3339(end - 60),
                "end": format_rfc3339(end),
                "bytes_up": up,
                "bytes_down": 100,
                "apn": "meters.acme",
                "mcc": mcc,
                "mnc": mnc,
            }
        )

    def append(self, lines: list[bytes]) -> None:
        with self.path.open("ab") as out:
            out.write(b"\n".join(lines) + b"\n")
        self.lines += len(lines)

    def history(self, now: float) -> None:
        lines: list[bytes] = []
        t = now - HOURS * 3600
        while t < now - 60:
            for k in range(len(SIMS)):
                end = t + (k % 600)
                silent = partner_of(k) == ("204", "04") and end > now - 5400
                if end < now - 30 and not silent:
                    lines.append(self.record(k, end))
            t += STEP
        self.append(lines)

    def live_chunk(self) -> None:
        end = time.time() - 2
        self.append([self.record(k, end) for k in range(len(SIMS)) if k % 4 != 3])

    def expected(self) -> dict[str, int]:
        """Per SIM, the bytes of its newest month (what the engine keeps)."""
        return {iccid: months[max(months)] for iccid, months in self.month_bytes.items()}


class Webhook:
    def __init__(self) -> None:
        self.port = free_port()
        self.notifications: list[dict[str, Any]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.notifications.append(await request.json())
        return web.Response(text="ok")

    def firing(self, alertname: str) -> list[dict[str, str]]:
        return [
            alert["labels"]
            for message in self.notifications
            for alert in message["alerts"]
            if alert["status"] == "firing" and alert["labels"].get("alertname") == alertname
        ]


@contextlib.asynccontextmanager
async def webhook() -> AsyncIterator[Webhook]:
    hook = Webhook()
    app = web.Application()
    app.router.add_post("/hook", hook.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", hook.port).start()
    try:
        yield hook
    finally:
        await runner.cleanup()


def am_config(hook: Webhook) -> str:
    """One route to the webhook: a group per incident, notified at once, repeated hourly."""
    config = {
        "route": {
            "receiver": "hook",
            "group_by": ["alertname", "incident"],
            "group_wait": "0s",
            "group_interval": "1s",
            "repeat_interval": "1h",
        },
        "receivers": [
            {"name": "hook", "webhook_configs": [{"url": f"http://127.0.0.1:{hook.port}/hook"}]}
        ],
    }
    return str(yaml.safe_dump(config))


def write_config(tmp_path: Path, spool: Path, am_url: str, port: int) -> Path:
    config = tmp_path / "simwatch.toml"
    config.write_text(
        f"""
state_dir = "{tmp_path / "state"}"
[checkpoint]
interval_s = 1.0
[engine]
eval_interval_s = 300.0
warmup_s = 43200.0
dead_letter_file = "{tmp_path / "dl.ndjson"}"
[http]
port = {port}
[log]
level = "info"
[[sources.file]]
name = "spool"
path = "{spool}"
poll_interval_s = 0.2
state_file = "{tmp_path / "offsets.json"}"
[sinks.alertmanager]
urls = ["{am_url}"]
""",
        encoding="utf-8",
    )
    return config


def applied_offset(tmp_path: Path) -> int:
    """The offset in the file source's own offsets file (written after each batch)."""
    try:
        doc = orjson.loads((tmp_path / "offsets.json").read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return 0
    return max((int(f["offset"]) for f in doc["files"]), default=0)


def checkpoint_offset(state_dir: Path) -> int:
    try:
        snapshot = ckpt.read_file(state_dir)
    except ckpt.CheckpointError:
        return 0
    if snapshot is None:
        return 0
    cursor = snapshot.sources.get("spool")
    files = cursor.get("files", []) if isinstance(cursor, dict) else []
    return max((int(f["offset"]) for f in files), default=0)


def open_incidents(port: int, state_dir: Path) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/incidents?state=open"
    status, body = http_get(url, token=api_token(state_dir))
    if status != 200:
        return []
    doc = orjson.loads(body)
    items: list[dict[str, Any]] = doc["incidents"]
    return [i for i in items if i.get("kind") == "group"]


class Appender(threading.Thread):
    """Appends a live chunk every 0.1 s until stopped (the feed keeps coming)."""

    def __init__(self, spool: Spool) -> None:
        super().__init__(daemon=True)
        self.spool = spool
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.1):
            self.spool.live_chunk()


async def test_kill_9_mid_ingest_loses_nothing_and_pages_once(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.ndjson")
    spool.history(time.time())
    port = free_port()
    log = tmp_path / "simwatch.log"
    async with webhook() as hook:
        am = Alertmanager(tmp_path / "am", config=am_config(hook))
        await asyncio.to_thread(am.start)
        config = write_config(tmp_path, spool.path, am.url, port)
        state_dir = tmp_path / "state"
        process = start_simwatch(config, log)
        appender = Appender(spool)
        try:
            # 1. caught up: the incident is open and Alertmanager notified it (the whole
            # test took 13-15 s beside a two-job benchmark; the wait is long because
            # catching up on 40 hours of 1000 SIMs once took over 90 s under heavier load)
            pages = await until(
                lambda: hook.firing("SimwatchGroupIncident"), 240, "the first page", log
            )
            incident = pages[0]["incident"]
            assert pages[0]["partner"] == SILENT
            # 2. records keep coming; kill -9 while lines are applied past the checkpoint
            appender.start()
            mark = spool.path.stat().st_size
            await until(
                lambda: (
                    checkpoint_offset(state_dir) > mark
                    and applied_offset(tmp_path) > checkpoint_offset(state_dir)
                ),
                30,
                "a checkpoint of live lines, and lines applied after it",
            )
            os.kill(process.pid, signal.SIGKILL)
            process.wait(10)
            ahead = applied_offset(tmp_path) - checkpoint_offset(state_dir)
            # 3. restart; the feed goes on a little, then stops
            process = start_simwatch(config, log)
            await until(lambda: open_incidents(port, state_dir), 60, "the API after the restart")
            assert [i["id"] for i in open_incidents(port, state_dir)] == [incident]
            await asyncio.sleep(1.0)
            appender.stop.set()
            await asyncio.to_thread(appender.join)
            size = spool.path.stat().st_size
            await until(lambda: applied_offset(tmp_path) == size, 60, "the whole file applied")
            await asyncio.sleep(2.0)  # a second page would come within group_interval (1 s)
            assert await stop_simwatch(process, log) == 0
        finally:
            appender.stop.set()
            if process.poll() is None:
                process.kill()
                process.wait()
            await asyncio.to_thread(am.stop)
        text = log.read_text(errors="replace")
        assert "checkpoint restored" in text, text[-3000:]
        assert ahead > 0, "the kill came before any line past the checkpoint was applied"
        # exactly one notification of the incident, before and after the kill
        assert [p["incident"] for p in hook.firing("SimwatchGroupIncident")] == [incident]
    final = ckpt.read_file(state_dir)
    assert final is not None
    engine_meta = final.header["engine"]
    assert isinstance(engine_meta, dict)
    ingest = engine_meta["ingest"]
    assert ingest["applied"] == spool.lines  # every line applied ...
    assert ingest["duplicates"] == 0  # ... and none even delivered twice
    incidents = engine_meta["incidents"]
    assert [state["id"] for _key, state in incidents["open"] if state["kind"] == "group"] == [
        incident
    ]
    index = IccidIndex()
    index.restore(final.arrays["index.hi"], final.arrays["index.lo"])
    month_bytes = final.arrays["col.month_bytes"].tolist()
    assert dict(zip(index.iccids(), month_bytes, strict=True)) == spool.expected()
