"""A real mosquitto broker for tests and benchmarks, on a free loopback port.

    broker = Mosquitto(tmp_path)
    broker.start()          # waits until the port accepts connections
    ...
    broker.stop()           # SIGTERM by PID (mosquitto saves its persistence db), then wait
    broker.start()          # same port, same persistence: persistent sessions survive

From async code, call ``await asyncio.to_thread(broker.stop)`` (and ``start``) so the
event loop keeps running while the broker goes down or comes up.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Self

MOSQUITTO = "/usr/sbin/mosquitto"


def available() -> bool:
    """Whether a mosquitto binary is there to run."""
    return Path(MOSQUITTO).exists() or shutil.which("mosquitto") is not None


@dataclass(frozen=True, slots=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path


def make_certs(directory: Path) -> TlsFiles:
    """A throw-away CA and a server certificate for 127.0.0.1 (needs the openssl CLI)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = directory / "ca.crt", directory / "ca.key"
    cert, key, csr = directory / "server.crt", directory / "server.key", directory / "server.csr"
    ext = directory / "server.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    openssl = shutil.which("openssl") or "openssl"
    new_key = ["-newkey", "rsa:2048", "-nodes", "-days", "2"]
    sign = ["-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-days", "2"]
    commands = [
        [
            openssl,
            "req",
            "-x509",
            *new_key,
            "-subj",
            "/CN=test-ca",
            "-keyout",
            str(ca_key),
            "-out",
            str(ca),
        ],
        [openssl, "req", *new_key, "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(csr)],
        [openssl, "x509", "-req", "-in", str(csr), *sign, "-extfile", str(ext), "-out", str(cert)],
    ]
    for command in commands:
        subprocess.run(command, check=True, capture_output=True, timeout=60)
    return TlsFiles(ca=ca, cert=cert, key=key)


def stop_process(process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """Stop a server by its PID: SIGTERM, then SIGKILL if it has not exited in ``timeout``."""
    if process.poll() is not None:
        return
    os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Mosquitto:
    """One mosquitto process, its config, persistence and log in ``directory``."""

    host = "127.0.0.1"

    def __init__(
        self, directory: Path, port: int | None = None, *, tls: TlsFiles | None = None
    ) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port if port is not None else free_port()
        self.config = directory / "mosquitto.conf"
        self.log_file = directory / "mosquitto.log"
        self.process: subprocess.Popen[bytes] | None = None
        lines = [
            f"listener {self.port} 127.0.0.1",
            *(
                [f"cafile {tls.ca}", f"certfile {tls.cert}", f"keyfile {tls.key}"]
                if tls is not None
                else []
            ),
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {directory}/",
            "persistence_file mosquitto.db",
            "autosave_interval 0",  # save on shutdown only
            "max_queued_messages 0",  # no limit on what a persistent session queues
            f"log_dest file {self.log_file}",
            "log_type error",
            "log_type warning",
            "log_type notice",
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # as root mosquitto would otherwise drop to 'mosquitto'
        self.config.write_text("\n".join(lines) + "\n")

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self, timeout: float = 10.0) -> None:
        """Start the broker and wait until its port accepts connections."""
        if self.process is not None:
            raise RuntimeError("mosquitto is already running")
        binary = MOSQUITTO if Path(MOSQUITTO).exists() else (shutil.which("mosquitto") or "")
        self.process = subprocess.Popen(
            [binary, "-c", str(self.config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                stderr = self.process.stderr.read().decode() if self.process.stderr else ""
                self.process = None
                raise RuntimeError(f"mosquitto exited at start: {stderr}{self._log()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), timeout=0.2),
            ):
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on {self.port} in {timeout} s{self._log()}")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the broker by its PID: SIGTERM (it saves persistence), SIGKILL if stuck."""
        process, self.process = self.process, None
        if process is None:
            return
        stop_process(process, timeout)
        if process.stderr is not None:
            process.stderr.close()

    def _log(self) -> str:
        try:
            return "\n" + self.log_file.read_text()
        except OSError:
            return ""

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
