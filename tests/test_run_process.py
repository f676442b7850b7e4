"""``simwatch run`` as a real process: ready over HTTP, SIGTERM ends it cleanly and fast."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def get(url: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_run_serves_then_stops_on_sigterm(tmp_path: Path) -> None:
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
""",
        encoding="utf-8",
    )
    check = subprocess.run(
        [sys.executable, "-m", "simwatch", "check-config", "--config.file", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    process = subprocess.Popen(
        [sys.executable, "-m", "simwatch", "run", "--config.file", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.communicate()[1].decode()[-2000:]
            try:
                status, _ = get(f"http://127.0.0.1:{port}/-/ready")
            except OSError:
                status = 0
            if status == 200:
                break
            assert time.monotonic() < deadline, "not ready within 60 s"
            time.sleep(0.3)
        # no tokens_file: the API is closed all the same, with a token generated at start
        status, _ = get(f"http://127.0.0.1:{port}/api/v1/status")
        assert status == 401
        lines = (tmp_path / "api-token").read_text(encoding="utf-8").splitlines()
        token = lines[-1]
        status, body = get(f"http://127.0.0.1:{port}/api/v1/status", token)
        assert status == 200
        assert json.loads(body)["sims"] == 200
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=15)
        assert process.returncode == 0, stderr.decode()[-2000:]
        assert time.monotonic() - started < 5.0
        assert b"simwatch stopped" in stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


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
