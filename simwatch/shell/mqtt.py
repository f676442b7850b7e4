"""MQTT connection pieces shared by the MQTT source and the MQTT sink.

- ``tls_context`` / ``load_tls``: the client TLS context from the configured files;
- ``make_client``: an ``aiomqtt.Client`` from ``MqttConnectionSettings`` (host, port,
  client id, credentials, TLS, clean session) plus what the caller adds;
- ``Reconnector``: the reconnect loop, with the one backoff policy
  (``simwatch.shell.backoff``) between attempts and the failure logged once when it
  starts and once when a connection is made again (``simwatch.shell.logs``).
"""

from __future__ import annotations

import asyncio
import random
import ssl
from typing import TYPE_CHECKING, NoReturn

import aiomqtt

from simwatch.shell.backoff import Backoff
from simwatch.shell.logs import FailureLog

if TYPE_CHECKING:
    import logging
    from collections.abc import Awaitable, Callable

    from simwatch.shell.settings import MqttConnectionSettings

RECONNECT_HINT = "reconnecting with backoff"


def tls_context(settings: MqttConnectionSettings) -> ssl.SSLContext:
    """A client TLS context from the configured files (blocking: call via to_thread)."""
    context = ssl.create_default_context(
        cafile=str(settings.ca_file) if settings.ca_file is not None else None
    )
    if settings.cert_file is not None:
        context.load_cert_chain(
            str(settings.cert_file),
            str(settings.key_file) if settings.key_file is not None else None,
        )
    return context


async def load_tls(settings: MqttConnectionSettings) -> ssl.SSLContext | None:
    """The TLS context when ``settings.tls`` (files read in a worker thread), else None.

    Unusable files raise ``aiomqtt.MqttError``: a reconnect loop retries them with
    backoff like a broker that is away, instead of crashing."""
    if not settings.tls:
        return None
    try:
        return await asyncio.to_thread(tls_context, settings)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise aiomqtt.MqttError(f"TLS setup failed: {exc}") from exc


def make_client(
    settings: MqttConnectionSettings,
    *,
    password: str | None,
    tls: ssl.SSLContext | None,
    clean_session: bool,
    will: aiomqtt.Will | None = None,
    timeout: float | None = None,
    max_queued_incoming_messages: int | None = None,
    max_inflight_messages: int | None = None,
    logger: logging.Logger | None = None,
) -> aiomqtt.Client:
    """A client for the configured broker; the password is sent only with a username."""
    return aiomqtt.Client(
        settings.host,
        settings.port,
        identifier=settings.client_id,
        clean_session=clean_session,
        username=settings.username,
        password=password if settings.username is not None else None,
        tls_context=tls,
        will=will,
        timeout=timeout,
        max_queued_incoming_messages=max_queued_incoming_messages,
        max_inflight_messages=max_inflight_messages,
        logger=logger,
    )


class Reconnector:
    """Runs a connection again and again, with backoff after each failed one.

    ``run(session, failed)``: ``session`` connects, calls ``connected()`` once the
    connection is usable and serves it until it drops (raising one of ``errors``) or
    returns (then it runs again at once: a deliberate reconnect). ``failed`` records
    the error (the caller's stats) and returns the reason and detail to log.
    """

    def __init__(
        self,
        settings: MqttConnectionSettings,
        log: logging.Logger,
        what: str,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        jitter = rng if rng is not None else random.Random()  # noqa: S311 - jitter, not crypto
        self.backoff = Backoff(settings.reconnect_min_s, settings.reconnect_max_s, jitter)
        self.failure = FailureLog(log, what)

    @property
    def unavailable(self) -> str:
        """The usual failure reason: ``<host>:<port> unavailable``."""
        return f"{self.settings.host}:{self.settings.port} unavailable"

    def connected(self) -> None:
        """A connection is up: the backoff starts again from the shortest wait."""
        self.backoff.succeeded()
        self.failure.recovered(f"connected again to {self.settings.host}:{self.settings.port}")

    async def run(
        self,
        session: Callable[[], Awaitable[None]],
        failed: Callable[[Exception], tuple[str, str]],
        *,
        errors: tuple[type[Exception], ...] = (aiomqtt.MqttError,),
        hint: Callable[[], str] = lambda: RECONNECT_HINT,
    ) -> NoReturn:
        """Until cancelled (see the class docstring); ``hint`` ends the failure line."""
        while True:
            try:
                await session()
            except errors as exc:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # A failed disconnect while shutting down replaced the cancellation.
                    raise asyncio.CancelledError from exc
                reason, detail = failed(exc)
                self.failure.failed(reason, detail=detail, hint=hint())
                await asyncio.sleep(self.backoff.failed())
