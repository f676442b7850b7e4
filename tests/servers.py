"""Real servers for tests: Prometheus, Alertmanager and VictoriaMetrics on loopback.

Each runs the Debian package's binary on a free 127.0.0.1 port with its own temp
directory, is started by ``start()`` (which waits until its readiness URL answers 200)
and stopped by PID with ``stop()`` (SIGTERM, SIGKILL if stuck). A missing binary makes
``available()`` false so a test can skip with a clear reason; ``scripts/test`` installs
the packages, so in the suite they are always there.

    with Alertmanager(tmp_path / "am") as am:
        am.url  # http://127.0.0.1:<port>

From async code, call ``await asyncio.to_thread(server.stop)`` (and ``start``) so the
event loop keeps running while the server goes down or comes up.

Also here: ``until``, the suite's one polling helper (wait for a condition, bounded).
"""

from __future__ import annotations

import asyncio
import inspect
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from mosquitto import free_port, stop_process

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"
ALERTMANAGER = "/usr/bin/prometheus-alertmanager"
AMTOOL = "/usr/bin/amtool"
VICTORIA_METRICS = "/usr/bin/victoria-metrics"


def start_simwatch(config: Path, log: Path) -> subprocess.Popen[bytes]:
    """``simwatch run --config.file CONFIG`` as a process, its output appended to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "simwatch", "run", "--config.file", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def stop_simwatch(process: subprocess.Popen[bytes], log: Path, limit_s: float = 30.0) -> int:
    """SIGTERM a ``start_simwatch`` process and its exit code once it ended; fails with the
    tail of ``log`` (where a slow shutdown says what it waits for) when it has not ended
    in ``limit_s``, after killing it."""
    process.send_signal(signal.SIGTERM)
    try:
        return await asyncio.to_thread(process.wait, limit_s)
    except subprocess.TimeoutExpired:
        process.kill()
        await asyncio.to_thread(process.wait, 10)
        text = await asyncio.to_thread(log.read_text, errors="replace")
        raise AssertionError(f"simwatch did not stop in {limit_s} s\n{text[-3000:]}") from None


ATTEMPT_S = 10.0  # the longest one awaited check of ``until`` may take


async def until(
    check: Callable[[], object],
    limit_s: float = 30.0,
    what: str = "the condition",
    log: Path | None = None,
    *,
    interval_s: float = 0.05,
) -> Any:
    """Poll ``check`` until it returns something true, and return that. ``check`` may be
    a plain function or return an awaitable (``lambda: client.get(...)``), which is
    awaited. At ``limit_s`` fail with ``what`` and the tail of ``log`` (a daemon's
    output), so a failure fails and never hangs. An awaited check that does not answer
    within ``ATTEMPT_S`` (a NATS object read racing its rewrite can wait forever) is
    cancelled and counts as "not yet".

    The one polling helper of the suite (import as ``from servers import until``).
    """
    deadline = time.monotonic() + limit_s
    while True:
        result = check()
        if inspect.isawaitable(result):
            attempt = min(ATTEMPT_S, max(deadline - time.monotonic(), 0.5))
            try:
                result = await asyncio.wait_for(result, attempt)
            except TimeoutError:
                result = None
        if result:
            return result
        if time.monotonic() >= deadline:
            text = await asyncio.to_thread(log.read_text, errors="replace") if log else ""
            raise AssertionError(f"not reached in {limit_s} s: {what}\n{text[-3000:]}")
        await asyncio.sleep(interval_s)


def until_blocking(
    check: Callable[[], object],
    limit_s: float = 30.0,
    what: str = "the condition",
    *,
    detail: Callable[[], str] | None = None,
    interval_s: float = 0.25,
) -> Any:
    """``until`` for code outside the event loop (session fixtures, the stack tests):
    poll ``check`` until it returns something true and return that; at ``limit_s``
    fail with ``what`` and ``detail()`` (the last value, a daemon's log)."""
    deadline = time.monotonic() + limit_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            text = detail() if detail is not None else ""
            raise AssertionError(f"not reached in {limit_s:.0f} s: {what}\n{text[-3000:]}")
        time.sleep(interval_s)


def api_token(state_dir: Path) -> str:
    """The API token ``simwatch run`` generated in its state dir (auth on, no tokens file)."""
    return (state_dir / "api-token").read_text(encoding="utf-8").splitlines()[-1]


def binary(path: str) -> str | None:
    """The binary at ``path``, or the same name on PATH, or None."""
    if Path(path).exists():
        return path
    return shutil.which(Path(path).name)


def http_get(url: str, timeout: float = 5.0, token: str | None = None) -> tuple[int, bytes]:
    """(status, body) of a GET (with a bearer token if given); status 0 when nothing answers."""
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (OSError, TimeoutError):
        return 0, b""


class ServerProcess:
    """One server process: command line, readiness URL, log file, stop by PID."""

    name = "server"
    executable = ""
    ready_path = "/"

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port if port is not None else free_port()
        self.log_file = directory / f"{self.name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @classmethod
    def available(cls) -> bool:
        return binary(cls.executable) is not None

    def args(self) -> Sequence[str]:
        raise NotImplementedError

    def start(self, timeout: float = 30.0) -> None:
        """Start the server and wait until ``ready_path`` answers 200."""
        if self.process is not None:
            raise RuntimeError(f"{self.name} is already running")
        exe = binary(self.executable)
        if exe is None:
            raise RuntimeError(f"{self.executable} is not installed")
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [exe, *self.args()],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.process = None
                raise RuntimeError(f"{self.name} exited at start:\n{self.log()}")
            status, _ = http_get(self.url + self.ready_path, timeout=1.0)
            if status == 200:
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} not ready on {self.port} in {timeout} s:\n{self.log()}")

    def stop(self, timeout: float = 15.0) -> None:
        """Stop by PID: SIGTERM, SIGKILL if it does not exit in ``timeout``."""
        process, self.process = self.process, None
        if process is not None:
            stop_process(process, timeout)

    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Prometheus(ServerProcess):
    """Prometheus with a config file the test writes (``write_config`` before start)."""

    name = "prometheus"
    executable = PROMETHEUS
    ready_path = "/-/ready"

    def __init__(self, directory: Path, port: int | None = None) -> None:
        super().__init__(directory, port)
        self.config = directory / "prometheus.yml"

    def write_config(self, text: str) -> None:
        self.config.write_text(text, encoding="utf-8")

    def args(self) -> Sequence[str]:
        if not self.config.exists():
            self.write_config("global:\n  scrape_interval: 15s\n")
        return [
            f"--config.file={self.config}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            f"--storage.tsdb.path={self.directory / 'data'}",
            "--web.enable-lifecycle",
            "--log.level=warn",
        ]

    def reload(self) -> None:
        """Re-read the config file (``--web.enable-lifecycle``)."""
        request = urllib.request.Request(self.url + "/-/reload", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()


class Alertmanager(ServerProcess):
    """Alertmanager, single node (``--cluster.listen-address=`` empty: no gossip port)."""

    name = "alertmanager"
    executable = ALERTMANAGER
    ready_path = "/-/ready"

    def __init__(self, directory: Path, port: int | None = None, config: str | None = None) -> None:
        super().__init__(directory, port)
        self.config = directory / "alertmanager.yml"
        self.config.write_text(
            config
            or "route:\n  receiver: blackhole\n  group_wait: 0s\n  group_interval: 1s\n"
            "receivers:\n  - name: blackhole\n",
            encoding="utf-8",
        )

    def args(self) -> Sequence[str]:
        return [
            f"--config.file={self.config}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            f"--storage.path={self.directory / 'data'}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ]


class VictoriaMetrics(ServerProcess):
    """VictoriaMetrics: accepts InfluxDB line protocol at ``/api/v2/write``.

    New points become visible to queries after ``force_flush()``.
    """

    name = "victoria-metrics"
    executable = VICTORIA_METRICS
    ready_path = "/health"

    def args(self) -> Sequence[str]:
        return [
            f"-httpListenAddr=127.0.0.1:{self.port}",
            f"-storageDataPath={self.directory / 'data'}",
            "-retentionPeriod=100y",
            "-search.latencyOffset=0s",
            "-loggerLevel=WARN",
        ]

    def force_flush(self) -> None:
        status, body = http_get(self.url + "/internal/force_flush")
        if status != 200:
            raise RuntimeError(f"force_flush: HTTP {status} {body[:200]!r}")
