"""``simwatch run`` as a real process: ready over HTTP, SIGTERM ends it cleanly and fast."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import pytest
from mosquitto import free_port
from servers import api_token, http_get, until

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.real_server  # ``simwatch`` processes


async def test_run_serves_then_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "simwatch.toml"
    config.write_text(
        f"""
state_dir = "{tmp_path}"
[engine]
dead_letter_file = "{tmp_path / "dl.ndjson"}"
eval_interval_s = 60
[http]
port = {port}
[[sources.simulator]]
name = "sim"
sims = 200
history_s = 7200
as_of = 2026-11-04T11:00:00Z  # the same fleet whatever day the suite runs
""",
        encoding="utf-8",
    )
    check = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "simwatch", "check-config", "--config.file", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    process = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "simwatch", "run", "--config.file", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:

        async def ready() -> bool:
            if process.returncode is not None:
                _, stderr = await process.communicate()
                raise AssertionError(stderr.decode()[-2000:])
            status, _ = await asyncio.to_thread(http_get, f"{base}/-/ready", 2)
            return status == 200

        await until(ready, 60, "ready", interval_s=0.3)
        # no tokens_file: the API is closed all the same, with a token generated at start
        status, _ = await asyncio.to_thread(http_get, f"{base}/api/v1/status", 2)
        assert status == 401
        token = api_token(tmp_path)
        status, body = await asyncio.to_thread(http_get, f"{base}/api/v1/status", 2, token)
        assert status == 200
        assert json.loads(body)["sims"] == 200
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), 15)
        assert process.returncode == 0, stderr.decode()[-2000:]
        assert time.monotonic() - started < 5.0
        assert b"simwatch stopped" in stderr
    finally:
        if process.returncode is None:
            process.kill()
            await process.communicate()


def test_bad_config_fails_at_start_naming_the_field(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[http]\nport = 70000\n", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "simwatch", "run", "--config.file", str(config)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 1
    assert "http.port" in result.stderr
