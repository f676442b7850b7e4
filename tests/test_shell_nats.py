"""``simwatch.shell.nats.close``: a NATS server that stops reading does not hold the
daemon's shutdown.

nats-py's ``Client.close`` writes what is still pending and waits for the socket to
close; against a server that accepted the connection but reads nothing more (hung, or
its host overloaded) it never returns. The server here speaks the NATS handshake as the
protocol documents it (``INFO``, then ``CONNECT`` and ``PING`` from the client,
``PONG``) and then reads nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import nats
import nats.errors

from simwatch.shell import nats as natsconn
from simwatch.shell.tasks import raise_if_cancelled

if TYPE_CHECKING:
    import pytest
    from nats.aio.client import Client

INFO = (
    b'INFO {"server_id":"deaf","version":"2.10.0","proto":1,"headers":true,'
    b'"max_payload":1048576}\r\n'
)


class DeafServer:
    """Shakes hands, then reads nothing until ``release``."""

    def __init__(self) -> None:
        self.released = asyncio.Event()
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"nats://127.0.0.1:{port}"

    async def __aexit__(self, *exc: object) -> None:
        self.released.set()
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(INFO)
        line = await reader.readline()
        while line and not line.startswith(b"PING"):
            line = await reader.readline()
        writer.write(b"PONG\r\n")
        await writer.drain()
        await self.released.wait()  # reads nothing more
        writer.close()


async def _errors(exc: Exception) -> None:  # nats-py reports errors here; none matter
    del exc


async def test_a_close_against_a_server_that_stopped_reading_ends_within_its_limit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with DeafServer() as url:
        nc = await nats.connect(url, error_cb=_errors, pending_size=256 * 1024 * 1024)
        payload, unsent = b"x" * 512 * 1024, 2 * 1024 * 1024
        for _ in range(400):  # until the socket's buffers are full and 2 MB stay unsent
            await nc.publish("records.0", payload)
            await asyncio.sleep(0.005)
            if nc.pending_data_size >= unsent:
                break
        assert nc.pending_data_size >= unsent, "the server took 200 MB"
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="simwatch"):
            async with asyncio.timeout(30):  # without the limit: hangs until this fails
                await natsconn.close(nc, "source test", limit_s=1.0)
        took = time.monotonic() - started
    assert took >= 1.0  # it did wait for the close first
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == [
        "source test: the NATS connection did not close within 1 s; left to the process's exit"
    ]


async def test_a_close_that_ends_in_time_says_nothing(caplog: pytest.LogCaptureFixture) -> None:
    async with DeafServer() as url:
        nc = await nats.connect(url, error_cb=_errors)
        with caplog.at_level(logging.DEBUG, logger="simwatch"):
            await natsconn.close(nc, "cluster", limit_s=5.0)
    assert nc.is_closed
    assert caplog.records == []


async def test_a_publish_loop_stops_although_nats_py_swallows_its_cancellation() -> None:
    """Against a server that stopped reading, nats-py's publish waits for a flush that
    never comes (its pending bytes over ``pending_size``) and, cancelled, returns as if
    published. A loop that checks ``raise_if_cancelled`` at each turn ends there; without
    it the next publish waits again, for ever."""
    published = 0
    blocked = asyncio.Event()
    gave_up = False

    async def loop(nc: Client) -> None:
        nonlocal published
        payload = b"x" * 512 * 1024
        while not gave_up:  # only for a failing test to end (see below)
            raise_if_cancelled()
            publishing = asyncio.get_running_loop().call_later(1.0, blocked.set)
            await nc.publish("records.0", payload)
            publishing.cancel()
            published += 1

    async with DeafServer() as url:
        nc = await nats.connect(url, error_cb=_errors)
        task = asyncio.create_task(loop(nc))
        await asyncio.wait_for(blocked.wait(), 60)  # a publish has waited a second
        at = published
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=10)
        gave_up = not done
        await natsconn.close(nc, "test", limit_s=1.0)  # a loop still going: publish fails
    if gave_up:
        await asyncio.wait({task}, timeout=10)
    assert done, "the loop did not stop"
    assert task.cancelled()
    assert published in (at, at + 1)  # the blocked publish returned (or raised)


async def test_a_publish_to_a_server_that_stopped_reading_returns_after_its_flush_limit() -> None:
    """nats-py's publish past 2 MB unsent waits for the flush, by default for ever; the
    connections simwatch makes wait ``flush_s`` and report ``FlushTimeoutError``."""
    heard: list[Exception] = []

    async def errors(exc: Exception) -> None:
        heard.append(exc)

    async with DeafServer() as url:
        nc = await natsconn.connect([url], "test", error_cb=errors, flush_s=0.5)
        payload = b"x" * 512 * 1024
        async with asyncio.timeout(60):  # without the limit: the first stuck publish hangs
            while not heard:
                raise_if_cancelled()  # nats-py swallows the timeout's cancellation
                await nc.publish("records.0", payload)
        await natsconn.close(nc, "test", limit_s=1.0)
    assert isinstance(heard[0], nats.errors.FlushTimeoutError)
