"""Maintenance windows through ``simwatch run`` as a real process: the config's window
and one POSTed over HTTP are listed, the POSTed one survives a restart, and a bad
``[[maintenance]]`` window stops the start naming the field."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from typing import TYPE_CHECKING

import aiohttp
import pytest
from mosquitto import free_port
from servers import api_token, http_get, until

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.real_server  # ``simwatch`` processes

WINDOW = {
    "name": "Orange works",
    "start": "2026-11-22T02:00",
    "timezone": "Europe/Paris",
    "duration_s": 7200,
    "rrule": "FREQ=WEEKLY;BYDAY=SU",
    "scope": {"partner": ["20801"]},
}


def config_of(tmp_path: Path, port: int, extra: str = "") -> Path:
    config = tmp_path / "simwatch.toml"
    config.write_text(
        f"""
state_dir = "{tmp_path}"
[engine]
dead_letter_file = "{tmp_path / "dl.ndjson"}"
[http]
port = {port}
[[sources.simulator]]
name = "sim"
sims = 100
history_s = 3600
as_of = 2026-11-04T11:00:00Z
[[maintenance]]
name = "nightly"
start = "2026-11-01T00:30"
duration_s = 3600
rrule = "FREQ=DAILY"
{extra}""",
        encoding="utf-8",
    )
    return config


async def running(config: Path, base: str) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "simwatch", "run", "--config.file", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )

    async def ready() -> bool:
        if process.returncode is not None:
            _, stderr = await process.communicate()
            raise AssertionError(stderr.decode()[-2000:])
        status, _ = await asyncio.to_thread(http_get, f"{base}/-/ready", 2)
        return status == 200

    await until(ready, 60, "ready", interval_s=0.3)
    return process


async def stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.communicate(), 15)


async def test_windows_are_served_and_kept_across_a_restart(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = config_of(tmp_path, port)
    process = await running(config, base)
    try:
        headers = {"Authorization": f"Bearer {api_token(tmp_path)}"}
        async with (
            aiohttp.ClientSession(headers=headers) as session,
            session.post(f"{base}/api/v1/maintenance", json=WINDOW) as response,
        ):
            assert response.status == 201, await response.text()
            assert (await response.json())["id"] == "mw-0001"
    finally:
        await stop(process)
    process = await running(config, base)
    try:
        status, body = await asyncio.to_thread(
            http_get, f"{base}/api/v1/maintenance", 2, api_token(tmp_path)
        )
        assert status == 200
        assert [(w["id"], w["source"]) for w in json.loads(body)["windows"]] == [
            ("cfg-1", "config"),
            ("mw-0001", "api"),
        ]
    finally:
        await stop(process)


def test_a_bad_window_stops_the_start_naming_the_field(tmp_path: Path) -> None:
    config = config_of(tmp_path, free_port(), "timezone = 'Europe/Pariss'\n")
    result = subprocess.run(
        [sys.executable, "-m", "simwatch", "run", "--config.file", str(config)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 1
    assert "maintenance[0].timezone: unknown time zone 'Europe/Pariss'" in result.stderr
