"""NATS connection pieces shared by the NATS source and the cluster node.

- ``connect``: a client that reconnects for ever, a second between attempts (the
  callers log a failure and its recovery once, ``simwatch.shell.logs``), and whose
  publish waits at most ``FLUSH_S`` for a flush. Past 2 MB unsent, nats-py's publish
  waits for the flush, by default for ever: against a server that stopped reading, an
  acknowledgement would hold ingest or the checkpoints of every source. It returns after
  ``FLUSH_S`` instead, the data still queued, and the error callback hears
  ``FlushTimeoutError``;
- ``close``: closes it within ``CLOSE_S`` seconds. nats-py's ``close`` writes what is
  still pending and waits for the socket to close; a server that stops reading holds
  it, and with it the daemon's shutdown. Past the limit the connection is left to the
  process's exit and the shutdown goes on (with a warning).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Final

import nats

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from nats.aio.client import Client

log = logging.getLogger("simwatch")

CLOSE_S: Final = 5.0
FLUSH_S: Final = 10.0


async def connect(
    servers: list[str],
    name: str,
    *,
    error_cb: Callable[[Exception], Awaitable[None]],
    disconnected_cb: Callable[[], Awaitable[None]] | None = None,
    reconnected_cb: Callable[[], Awaitable[None]] | None = None,
    flush_s: float = FLUSH_S,
) -> Client:
    """A connection to ``servers`` that reconnects for ever, one second apart, whose
    publish waits at most ``flush_s`` for a flush."""
    return await nats.connect(
        servers=servers,
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        flush_timeout=flush_s,
        error_cb=error_cb,
        disconnected_cb=disconnected_cb,
        reconnected_cb=reconnected_cb,
    )


async def close(nc: Client, what: str, limit_s: float = CLOSE_S) -> None:
    """Close ``nc`` within ``limit_s`` seconds; an error closing a broken connection
    or a close that takes longer does not stop the caller's shutdown."""
    try:
        async with asyncio.timeout(limit_s):
            await nc.close()
    except TimeoutError:
        log.warning(
            "%s: the NATS connection did not close within %.0f s; left to the process's exit",
            what,
            limit_s,
        )
    except Exception:  # closing a broken connection: nothing left to do
        log.debug("%s: closing the NATS connection failed", what, exc_info=True)
