"""The HTTP poller for connectivity-management-platform (CMP) REST APIs.

``CmpSource`` polls one platform every ``poll_interval_s`` and owns what every platform
shares: the run loop and its backoff, the requests (``get_json``: credentials, rate
limits, 429/throttle waits, 401 re-authentication), the per-SIM fan-out (``per_sim``),
the cursor (in flight and applied, persisted after apply) and the hand-over of
``Batch(objects=...)`` to the daemon's queue (``hand_over``). What to ask a platform and
how to page it is that platform's polling routine, ``poll(ctx, sink)`` in its own module
(``generic_poll``, ``emnify_poll``, ``onence_poll``, ``cisco_poll``, ``kore_poll``,
``soracom_poll``, ``hologram_poll``); ``POLLS`` picks it by ``settings.adapter``. A routine
sees the poller only as ``simwatch.sources.cmp.context.PollContext`` and maps records
through the platform's adapter (``generic``, ``emnify``, ``onence``, ``cisco``, ``kore``,
``soracom``, ``hologram``).

Cursor. The position reached (the platform's ``next`` cursor, the newest event id, or
per-SIM marks) lives in memory as the *in-flight* cursor, so the next poll goes on from
there even while earlier batches wait in the queue. It is written to
``settings.cursor_file`` (JSON, ``simwatch.shell.files.write_atomically`` in a worker
thread) only from a batch's ``on_applied``, i.e. after ingest applied the records it
covers: a restart resumes from what was applied, losing nothing and repeating nothing
applied. The same
applied cursor is ``cursor()`` (``Resumable``): the daemon's checkpoint carries it, and
``restore(cursor)`` (before ``run``) makes it win over ``cursor_file``, which is ahead of
the checkpoint after a crash. A poll that fails half-way leaves the cursor at the last
complete page; records it already handed over come again on the retry with the same
``record_id`` and are counted once.

Robustness. Every request passes a concurrency limit (``max_concurrency``, which also
bounds the per-SIM fan-out of 1NCE/Cisco) and a token bucket (``rate_limit_per_s``,
bursts of up to ``max(1, rate)``). A 429 waits ``Retry-After`` (seconds or an HTTP date;
capped at an hour) and repeats the request. A 5xx, a timeout (``timeout_s``), a
connection error, a 401/403 or a response that is not the documented JSON fails the poll:
it is counted in ``stats.errors`` and the poll is retried from the cursor after the
shell's backoff (``simwatch.shell.backoff``: from ``min(1 s, interval)`` doubling up to
``max(interval, 60 s)``, equal jitter). Another 4xx on a per-SIM endpoint skips that SIM
for this poll. A failure is logged once when it starts and once on recovery
(``simwatch.shell.logs.FailureLog``).

Auth (``simwatch.sources.cmp.auth``): every request carries the source's credentials,
``Authorization: Bearer <token>`` from the ``token`` argument, else ``settings.auth``
(bearer, HTTP Basic, or a token obtained from the platform and renewed before it
expires), else the deprecated ``settings.token`` / first line of ``settings.token_file``.
A 401 invalidates an obtained token and repeats the request once with a new one; a
second 401 (or a 401 to fixed credentials) fails the poll.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Final, TypeVar

import aiohttp
import orjson

from simwatch.core.operators import OperatorTable
from simwatch.shell.backoff import backoff_delay
from simwatch.shell.files import write_atomically
from simwatch.shell.logs import FailureLog
from simwatch.shell.source_contract import Batch, SourceStats
from simwatch.sources.cmp import (
    cisco_poll,
    emnify_poll,
    generic_poll,
    hologram_poll,
    kore_poll,
    onence_poll,
    soracom_poll,
)
from simwatch.sources.cmp.auth import Auth, AuthError, build_auth
from simwatch.sources.cmp.base import in_time_order
from simwatch.sources.cmp.cisco import is_throttle
from simwatch.sources.cmp.context import CmpError, SimSkipError, SimState

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping
    from pathlib import Path

    from simwatch.shell.settings import HttpSourceSettings
    from simwatch.shell.source_contract import Sink
    from simwatch.sources.cmp.base import Record
    from simwatch.sources.cmp.context import PollContext

__all__ = ["POLLS", "CmpError", "CmpSource", "TokenBucket", "parse_retry_after"]

log = logging.getLogger(__name__)

STATE_VERSION: Final = 1
MAX_RETRY_AFTER_S: Final = 3600.0
MAX_429_RETRIES: Final = 8
BACKOFF_CAP_MIN_S: Final = 60.0

_T = TypeVar("_T")


def parse_retry_after(value: str | None, now: float) -> float | None:
    """``Retry-After`` (delta seconds or an HTTP date) as seconds from ``now``, capped."""
    if value is None:
        return None
    text = value.strip()
    try:
        delay = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        delay = when.timestamp() - now
    if not math.isfinite(delay):
        return None
    return min(max(delay, 0.0), MAX_RETRY_AFTER_S)


MIN_WAIT_S: Final = 0.001


class TokenBucket:
    """Requests per second with bursts of ``burst``, on an injected clock and sleep."""

    def __init__(
        self,
        rate: float,
        burst: float,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self._rate = rate
        self._burst = burst
        self._tokens = burst
        self._stamp: float | None = None
        self._clock = clock
        self._sleep = sleep
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:  # waiters are served in order
            while True:
                now = self._clock()
                if self._stamp is not None:
                    elapsed = max(0.0, now - self._stamp)
                    self._tokens = min(self._burst, self._tokens + elapsed * self._rate)
                self._stamp = now
                if self._tokens >= 1.0 - 1e-9:
                    self._tokens -= 1.0
                    return
                # at least 1 ms: a clock at ~1.8e9 s cannot move by a microsecond
                await self._sleep(max((1.0 - self._tokens) / self._rate, MIN_WAIT_S))


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


class CmpSource:
    """Polls one CMP REST API (``settings.adapter``) and hands over FORMATS.md records."""

    def __init__(
        self,
        settings: HttpSourceSettings,
        *,
        token: str | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self.stats = SourceStats(name=settings.name, kind="http")
        self.skipped = 0  # upstream items with no FORMATS.md mapping (SMS events...)
        self._token = token
        if self._token is None and settings.token is not None:
            self._token = settings.token.get_secret_value()
        self._auth: Auth | None = None  # built with the session, once the token file is read
        self._clock = clock
        self._sleep = sleep
        self._sem = asyncio.Semaphore(settings.max_concurrency)
        rate = settings.rate_limit_per_s
        self._bucket = TokenBucket(rate, max(1.0, rate), clock, sleep)
        self._rng = random.Random()  # noqa: S311 - backoff jitter, not cryptography
        self._http: aiohttp.ClientSession | None = None
        self._loaded = False
        self.log = log  # the platform routines log under the poller's name
        # the in-flight cursor
        self.position: str | None = None  # generic, emnify, Cisco, KORE
        self.last_id: int | None = None  # Hologram
        self.sims: dict[str, SimState] = {}  # 1NCE, Cisco, Soracom, KORE
        self._platform_state: dict[type, object] = {}  # each routine's own (not persisted)
        self._operator_table: OperatorTable | None = None  # Soracom, Hologram
        self._commit_lock = asyncio.Lock()
        self._snap_seq = 0
        self._written_seq = 0
        self._applied_seq = 0
        self._applied: dict[str, object] | None = None  # the cursor of what was applied
        self._restored = False
        self._known = False  # the applied cursor is known (loaded, restored or none to load)
        self._failure = FailureLog(log, f"source {settings.name}", clock=clock)
        self._failed_polls = 0
        self._bad_sims: set[str] = set()

    # ------------------------------------------------------------------ lifecycle

    async def run(self, sink: Sink) -> None:
        """Poll until cancelled; failures back off and resume from the cursor."""
        await self._load()
        async with self._session() as http:
            self._http = http
            try:
                while True:
                    try:
                        await self.poll_once(sink)
                    except CmpError:
                        self._failed_polls += 1
                        delay = self.backoff_delay(self._failed_polls)
                    else:
                        self._failed_polls = 0
                        delay = self.settings.poll_interval_s
                    await self._sleep(delay)
            finally:
                self._http = None
                self.stats.connected = False

    async def poll_once(self, sink: Sink) -> None:
        """One poll: everything new since the cursor. Raises ``CmpError`` on failure."""
        await self._load()
        if self._http is None:  # called on its own (tests, one-shot tools)
            async with self._session() as http:
                self._http = http
                try:
                    await self._poll(sink)
                finally:
                    self._http = None
        else:
            await self._poll(sink)

    def backoff_delay(self, failures: int) -> float:
        """Jittered exponential backoff after ``failures`` consecutive failed polls."""
        interval = self.settings.poll_interval_s
        return backoff_delay(
            failures, min(1.0, interval), max(interval, BACKOFF_CAP_MIN_S), self._rng
        )

    def _session(self) -> aiohttp.ClientSession:
        if self._auth is None:  # credentials go on each request (``_authorize``)
            self._auth = build_auth(self.settings, token=self._token, clock=self._clock)
        return aiohttp.ClientSession(
            headers={"Accept": "application/json"},
            timeout=aiohttp.ClientTimeout(total=self.settings.timeout_s),
        )

    async def _poll(self, sink: Sink) -> None:
        try:
            await POLLS[self.settings.adapter](self, sink)
        except CmpError as exc:
            self._note_error(str(exc))
            raise
        self.stats.last_success = self._clock()
        self.stats.connected = True
        self._failure.recovered()
        self.stats.last_error = None

    def _note_error(self, message: str) -> None:
        self.stats.errors += 1
        self.stats.last_error = message
        self.stats.connected = False
        if not self._failure.failed("poll failed", detail=message, hint="retrying with backoff"):
            log.debug("source %s: still failing: %s", self.settings.name, message)

    # ------------------------------------------------------------------ cursor

    async def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        try:
            if self._token is None and self.settings.token_file is not None:
                raw = await asyncio.to_thread(self.settings.token_file.read_text, "utf-8")
                self._token = next((ln.strip() for ln in raw.splitlines() if ln.strip()), None)
            await self._load_cursor()
        finally:
            self._known = True

    async def _load_cursor(self) -> None:
        path = self.settings.cursor_file
        if path is None or self._restored:
            return
        raw = await asyncio.to_thread(_read_bytes, path)
        if raw is None:
            return
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            log.warning(
                "source %s: cursor file %s is not JSON; starting afresh", self.settings.name, path
            )
            return
        self._adopt(data, f"cursor file {path}")

    def cursor(self) -> object | None:
        """The cursor of what ingest has applied (None before anything is known)."""
        if not self._known:
            return None
        return self._applied if self._applied is not None else self._document()

    def restore(self, cursor: object) -> None:
        """Resume from a checkpoint's ``cursor()`` (before ``run``; wins over cursor_file)."""
        self._restored = True
        self._known = True
        self.position, self.last_id, self.sims = None, None, {}
        if cursor is not None:
            self._adopt(cursor, "checkpoint cursor")
        self._applied = self._document()

    def _adopt(self, data: object, where: str) -> None:
        if not isinstance(data, dict) or data.get("adapter") != self.settings.adapter:
            log.warning(
                "source %s: %s is for another adapter; starting afresh", self.settings.name, where
            )
            return
        cursor = data.get("cursor")
        self.position = cursor if isinstance(cursor, str) else None
        last_id = data.get("last_id")
        self.last_id = last_id if isinstance(last_id, int) else None
        sims = data.get("sims")
        if isinstance(sims, dict):
            self.sims = {k: SimState.from_json(v) for k, v in sims.items() if isinstance(v, dict)}
        self._applied = self._document()

    def _document(self) -> dict[str, object]:
        return {
            "version": STATE_VERSION,
            "adapter": self.settings.adapter,
            "cursor": self.position,
            "last_id": self.last_id,
            "sims": {k: v.to_json() for k, v in self.sims.items()},
        }

    def _committer(self) -> Callable[[], Awaitable[None]]:
        path = self.settings.cursor_file
        self._snap_seq += 1
        seq = self._snap_seq
        doc = self._document()

        async def commit() -> None:
            if seq > self._applied_seq:  # what was applied, for the daemon's checkpoint
                self._applied_seq = seq
                self._applied = doc
            if path is None:
                return
            data = orjson.dumps(doc)
            async with self._commit_lock:
                if seq <= self._written_seq:  # a newer cursor is already on disk
                    return
                try:
                    await asyncio.to_thread(write_atomically, path, data)
                except OSError as exc:
                    self._note_error(f"writing cursor file {path}: {exc}")
                    return
                self._written_seq = seq

        return commit

    async def hand_over(self, sink: Sink, objects: list[Record], *, commit: bool) -> None:
        """Put a batch (``commit``: with the current in-flight cursor as its ``on_applied``)."""
        on_applied = self._committer() if commit else None
        if not objects and on_applied is None:
            return
        await sink.put(Batch(source=self.settings.name, objects=objects, on_applied=on_applied))

    # ------------------------------------------------------------------ HTTP

    async def get_json(
        self, path: str, params: Mapping[str, str]
    ) -> tuple[object, Mapping[str, str]]:
        """``GET base_url + path``: the parsed JSON and the headers (``CmpError`` on failure)."""
        http = self._http
        assert http is not None
        url = self.settings.base_url.rstrip("/") + path
        throttled = 0
        renewed = False  # a 401 renews the credentials and repeats the request once
        while True:
            async with self._sem:
                await self._bucket.acquire()
                auth: dict[str, str] = {}
                generation = await self._authorize(http, auth)
                try:
                    async with http.get(url, params=params, headers=auth) as resp:
                        status = resp.status
                        headers = dict(resp.headers)
                        data = await resp.read()
                except (TimeoutError, aiohttp.ClientError) as exc:
                    what = "timed out" if isinstance(exc, TimeoutError) else f"failed: {exc!r}"
                    raise CmpError(f"GET {path} {what}") from exc
            if status == 429 or (status >= 400 and is_throttle(data)):
                throttled += 1
                delay = parse_retry_after(headers.get("Retry-After"), self._clock())
                self._note_error(f"GET {path}: HTTP {status} (rate limited)")
                if throttled > MAX_429_RETRIES:
                    raise CmpError(f"GET {path}: rate limited {throttled} times")
                await self._sleep(delay if delay is not None else self.backoff_delay(throttled))
                continue
            if status == 401:  # credentials refused (an expired token...)
                if not renewed and self._auth is not None and self._auth.invalidate(generation):
                    renewed = True
                    continue
                again = " again after re-authenticating" if renewed else ""
                raise CmpError(f"GET {path}: HTTP 401 (credentials refused{again})")
            if not 200 <= status < 300:
                message = f"GET {path}: HTTP {status}"
                if 400 <= status < 500 and status not in {401, 403}:
                    raise SimSkipError(message)  # skips the SIM; fails a platform-wide poll
                raise CmpError(message)
            try:
                return orjson.loads(data), headers
            except orjson.JSONDecodeError as exc:
                raise CmpError(f"GET {path}: invalid JSON ({exc})") from exc

    async def _authorize(self, http: aiohttp.ClientSession, headers: dict[str, str]) -> int:
        """Add the source's credentials to ``headers`` (see ``auth.py``); their generation."""
        assert self._auth is not None
        try:
            return await self._auth.apply(http, headers)
        except AuthError as exc:
            raise CmpError(f"authentication: {exc}") from None

    # ------------------------------------------------------------------ per-SIM platforms

    async def per_sim(
        self,
        sink: Sink,
        fetch: Callable[[str, SimState], Awaitable[tuple[list[Record], SimState]]],
        *,
        discover: Callable[[], Awaitable[list[str]]] | None = None,
        workers: int | None = None,
    ) -> None:
        """Each SIM (``iccids``, else what ``discover`` finds) through ``fetch``.

        An empty SIM list fails the poll (logged once by the failure log): a source that
        polls nothing must not look healthy.
        """
        configured = list(dict.fromkeys(self.settings.iccids))
        if configured:
            sims = configured
        elif discover is not None:
            sims = await discover()
        else:
            sims = []
        if not sims:
            where = "the platform's SIM list is empty" if discover else "no iccids configured"
            raise CmpError(f"no SIMs to poll: {where}")
        iccids = iter(sims)
        pending: list[Record] = []
        changed = False
        fatal: list[CmpError] = []

        async def worker() -> None:
            nonlocal pending, changed
            for iccid in iccids:  # one shared iterator: each SIM is taken by one worker
                if fatal:
                    return
                try:
                    records, state = await fetch(iccid, self.sims.get(iccid) or SimState())
                except SimSkipError as exc:
                    self.stats.errors += 1
                    if iccid not in self._bad_sims:
                        self._bad_sims.add(iccid)
                        log.warning("source %s: SIM %s skipped: %s", self.settings.name, iccid, exc)
                    continue
                except CmpError as exc:
                    fatal.append(exc)
                    return
                self._bad_sims.discard(iccid)
                self.sims[iccid] = state
                pending.extend(in_time_order(records))  # newest-first history, too
                changed = True
                if len(pending) >= self.settings.page_size:
                    out, pending, changed = pending, [], False
                    await self.hand_over(sink, out, commit=True)

        limit = workers if workers is not None else self.settings.max_concurrency
        async with asyncio.TaskGroup() as tg:
            for _ in range(min(limit, len(sims))):
                tg.create_task(worker())
        if pending or changed:
            await self.hand_over(sink, pending, commit=True)
        if fatal:
            raise fatal[0]

    # ------------------------------------------------------------------ for the routines

    def now(self) -> float:
        """The source's clock."""
        return self._clock()

    async def sleep(self, delay: float) -> None:
        """The source's sleep."""
        await self._sleep(delay)

    async def operators(self) -> OperatorTable:
        """The packaged operator table (MNC digits for Soracom, names for Hologram)."""
        if self._operator_table is None:
            self._operator_table = await asyncio.to_thread(OperatorTable.load)
        return self._operator_table

    def platform_state(self, kind: type[_T]) -> _T:
        """The routine's own state of type ``kind`` (made on first use, not persisted)."""
        state = self._platform_state.get(kind)
        if not isinstance(state, kind):
            state = kind()
            self._platform_state[kind] = state
        return state


# the polling routine of each platform (``settings.adapter``)
POLLS: Final[Mapping[str, Callable[[PollContext, Sink], Awaitable[None]]]] = {
    "generic": generic_poll.poll,
    "emnify": emnify_poll.poll,
    "1nce": onence_poll.poll,
    "cisco": cisco_poll.poll,
    "kore": kore_poll.poll,
    "soracom": soracom_poll.poll,
    "hologram": hologram_poll.poll,
}
