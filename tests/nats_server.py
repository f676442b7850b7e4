"""A real ``nats-server -js`` for tests: free loopback ports, a temp store, stopped by PID.

    with NatsServer(tmp_path / "nats") as server:
        server.client_url  # nats://127.0.0.1:<port>

The readiness check is the monitoring endpoint's ``/healthz`` (``ServerProcess.url`` is
the monitoring port); the client port is ``client_port``. Never the system server's 4222.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mosquitto import free_port
from servers import ServerProcess

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

NATS_SERVER = "/usr/sbin/nats-server"


class NatsServer(ServerProcess):
    """nats-server with JetStream, its store in ``directory / "store"``."""

    name = "nats-server"
    executable = NATS_SERVER
    ready_path = "/healthz?js-enabled-only=true"

    def __init__(self, directory: Path, port: int | None = None) -> None:
        super().__init__(directory, port)  # ``port``: the monitoring port
        self.client_port = free_port()

    @property
    def client_url(self) -> str:
        return f"nats://127.0.0.1:{self.client_port}"

    def args(self) -> Sequence[str]:
        return [
            "-js",
            "-a",
            "127.0.0.1",
            "-p",
            str(self.client_port),
            "-m",
            str(self.port),
            "-sd",
            str(self.directory / "store"),
            "-n",
            f"simwatch-test-{self.client_port}",
        ]
