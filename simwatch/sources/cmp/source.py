"""HTTP polling source for connectivity-management-platform (CMP) REST APIs.

``CmpSource`` polls one platform every ``poll_interval_s``: it fetches what is new since
its cursor, follows pagination to the end, maps each upstream record to a FORMATS.md
dict through the platform's adapter (one module per platform: ``generic``, ``emnify``,
``onence``, ``cisco`` in ``simwatch.sources.cmp``; ``POLLS`` picks the routine by
``settings.adapter``) and puts ``Batch(objects=...)`` on the daemon's queue.

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
import contextlib
import logging
import math
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Final
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import orjson

from simwatch.core.operators import OperatorTable
from simwatch.core.timeutil import TimeParseError, format_rfc3339, parse_rfc3339
from simwatch.shell.backoff import backoff_delay
from simwatch.shell.files import write_atomically
from simwatch.shell.logs import FailureLog
from simwatch.shell.source_contract import Batch, SourceStats
from simwatch.sources.cmp import emnify, onence
from simwatch.sources.cmp.auth import Auth, AuthError, build_auth
from simwatch.sources.cmp.base import AdapterError, Record
from simwatch.sources.cmp.cisco import (
    DISCOVER_FROM,
    CiscoSessionMark,
    CiscoUsageMark,
    cisco_devices,
    cisco_session,
    cisco_usage,
    is_throttle,
)
from simwatch.sources.cmp.generic import generic_page
from simwatch.sources.cmp.hologram import NetworkNames, hologram_page
from simwatch.sources.cmp.kore import kore_next, kore_sims, kore_usage
from simwatch.sources.cmp.onence import OnceUsageMark
from simwatch.sources.cmp.soracom import BUCKET_S, soracom_air, soracom_sessions, soracom_sims

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping
    from pathlib import Path

    from simwatch.shell.settings import HttpSourceSettings
    from simwatch.shell.source_contract import Sink

__all__ = ["POLLS", "CmpError", "CmpSource", "TokenBucket", "parse_retry_after"]

log = logging.getLogger(__name__)

STATE_VERSION: Final = 1
MAX_RETRY_AFTER_S: Final = 3600.0
MAX_429_RETRIES: Final = 8
BACKOFF_CAP_MIN_S: Final = 60.0
_JSON_ERRORS: Final = (orjson.JSONDecodeError, AdapterError)
HOUR_S: Final = 3600
LOOKBACK_S: Final = 3 * HOUR_S  # first poll, and KORE's re-read of hours still growing
REDISCOVER_S: Final = HOUR_S  # Soracom/KORE SIM lists are re-read at most this often
DISCOVERY_MARGIN_S: Final = 300.0  # Cisco modifiedSince overlap (clock skew)
CISCO_PAGE: Final = 50  # devices?pageSize maximum (PLATFORMS.md 3.2)
SORACOM_HISTORY_S: Final = 32 * 86_400  # session events and minute stats: past 32 days
KORE_MAX_PAGE: Final = 249  # UsageRecords / Sims PageSize maximum (PLATFORMS.md 4.2)
KORE_HOUR_WINDOW_S: Final = 31 * 86_400  # hour granularity: windows up to 31 days
HOLOGRAM_PAGE: Final = 250  # "recommended session limit ... 250 or fewer"


class CmpError(Exception):
    """A failed poll: the message is what ``stats.last_error`` shows."""


class _SimSkipError(CmpError):
    """A per-SIM request refused with a 4xx (unknown ICCID...): skip the SIM this poll."""


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


@dataclass(slots=True)
class _SimState:
    usage: OnceUsageMark | None = None  # 1NCE
    last_event_id: int | None = None  # 1NCE
    session: CiscoSessionMark | None = None  # Cisco
    ctd: CiscoUsageMark | None = None  # Cisco
    since: int | None = None  # Soracom: newest session event time (ms)
    marks: dict[str, tuple[int, int]] | None = None  # Soracom/KORE: totals per window

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {}
        if self.usage is not None:
            out["usage"] = [self.usage.date, self.usage.up, self.usage.down]
        if self.last_event_id is not None:
            out["last_event_id"] = self.last_event_id
        if self.session is not None:
            out["session"] = [self.session.started, self.session.ended]
        if self.ctd is not None:
            out["ctd"] = [self.ctd.ctd, self.ctd.at, self.ctd.sessions]
        if self.since is not None:
            out["since"] = self.since
        if self.marks:
            out["marks"] = {k: list(v) for k, v in self.marks.items()}
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> _SimState:
        state = cls()
        usage = data.get("usage")
        if isinstance(usage, list) and len(usage) == 3:
            date, up, down = usage
            if isinstance(date, str) and isinstance(up, int) and isinstance(down, int):
                state.usage = OnceUsageMark(date, up, down)
        last = data.get("last_event_id")
        if isinstance(last, int):
            state.last_event_id = last
        session = data.get("session")
        if isinstance(session, list) and len(session) == 2:
            started, ended = session
            if isinstance(started, str | None) and isinstance(ended, str | None):
                state.session = CiscoSessionMark(started, ended)
        ctd = data.get("ctd")
        if isinstance(ctd, list) and len(ctd) in {2, 3}:
            value, at, sessions = [*ctd, None][:3]
            if isinstance(value, int) and isinstance(at, int | float):
                count = sessions if isinstance(sessions, int) else None
                state.ctd = CiscoUsageMark(value, float(at), count)
        since = data.get("since")
        if isinstance(since, int):
            state.since = since
        marks = data.get("marks")
        if isinstance(marks, dict):
            state.marks = {
                k: (v[0], v[1])
                for k, v in marks.items()
                if isinstance(v, list) and len(v) == 2 and all(isinstance(x, int) for x in v)
            }
        return state


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
        # the in-flight cursor
        self._cursor: str | None = None  # generic
        self._last_id: int | None = None  # emnify
        self._sims: dict[str, _SimState] = {}  # 1NCE, Cisco
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
        self._cursor, self._last_id, self._sims = None, None, {}
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
        self._cursor = cursor if isinstance(cursor, str) else None
        last_id = data.get("last_id")
        self._last_id = last_id if isinstance(last_id, int) else None
        sims = data.get("sims")
        if isinstance(sims, dict):
            self._sims = {k: _SimState.from_json(v) for k, v in sims.items() if isinstance(v, dict)}
        self._applied = self._document()

    def _document(self) -> dict[str, object]:
        return {
            "version": STATE_VERSION,
            "adapter": self.settings.adapter,
            "cursor": self._cursor,
            "last_id": self._last_id,
            "sims": {k: v.to_json() for k, v in self._sims.items()},
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

    async def _hand_over(self, sink: Sink, objects: list[Record], *, commit: bool) -> None:
        """Put a batch (``commit``: with the current in-flight cursor as its ``on_applied``)."""
        on_applied = self._committer() if commit else None
        if not objects and on_applied is None:
            return
        await sink.put(Batch(source=self.settings.name, objects=objects, on_applied=on_applied))

    # ------------------------------------------------------------------ HTTP

    async def _get_json(
        self, path: str, params: Mapping[str, str]
    ) -> tuple[object, Mapping[str, str]]:
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
                    raise _SimSkipError(message)  # skips the SIM; fails a platform-wide poll
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

    # ------------------------------------------------------------------ generic

    async def _poll_generic(self, sink: Sink) -> None:
        limit = self.settings.page_size
        while True:
            since = self._cursor
            params = {"limit": str(limit)}
            if since is not None:
                params["since"] = since
            body, _ = await self._get_json("/records", params)
            try:
                records, nxt, dropped = generic_page(body)
            except AdapterError as exc:
                raise CmpError(f"GET /records: {exc}") from exc
            self.skipped += dropped
            moved = nxt is not None and nxt != since
            if moved:
                self._cursor = nxt
            await self._hand_over(sink, records, commit=moved)
            if not moved or len(records) + dropped < limit:
                return

    # ------------------------------------------------------------------ emnify

    _emnify_seen: frozenset[int] = frozenset()  # ids handed over in the previous overlap
    _emnify_last: float | None = None  # when /api/v1/event was last asked

    async def _poll_emnify(self, sink: Sink) -> None:
        """``GET /api/v1/event`` for the mapped types over a time window (PLATFORMS.md 1.2).

        The window runs from the cursor (the previous poll's end, less ``OVERLAP_S`` for
        events recorded late; the first poll: ``initial_lookback_s`` back, at most the 30
        days kept) to now, in ``sort=id`` pages; the cursor moves to now once every page
        is handed over. Ids handed over in the overlap are not handed over again.
        """
        now = self._clock()
        start = now - self.settings.initial_lookback_s
        if self._cursor is not None:
            with contextlib.suppress(TimeParseError):
                start = parse_rfc3339(self._cursor) - emnify.OVERLAP_S
        start = max(start, now - emnify.HISTORY_S)
        fresh = format_rfc3339(now - emnify.OVERLAP_S)
        seen: set[int] = set()
        for query in emnify.event_queries(start, now):
            seen |= await self._emnify_query(sink, query, fresh)
        self._emnify_seen = frozenset(seen)
        self._cursor = format_rfc3339(now)
        await self._hand_over(sink, [], commit=True)

    async def _emnify_pace(self) -> None:
        """The path's own limit (10 req/s, PLATFORMS.md 1.2): one request per 0.1 s at most."""
        gap = 1.0 / min(emnify.EVENT_RATE_PER_S, self.settings.rate_limit_per_s)
        if self._emnify_last is not None:
            wait = self._emnify_last + gap - self._clock()
            if wait > emnify.MIN_WAIT_S:
                await self._sleep(wait)
        self._emnify_last = self._clock()

    async def _emnify_query(self, sink: Sink, query: str, fresh: str) -> set[int]:
        """Every page of one query, handed over page by page; the ids newer than ``fresh``."""
        path, size = "/api/v1/event", self.settings.page_size
        seen: set[int] = set()
        page, previous = 1, None
        while True:
            await self._emnify_pace()
            params = {"page": str(page), "per_page": str(size), "sort": "id", "q": query}
            body, headers = await self._get_json(path, params)
            try:
                items = emnify.items_of(body)
            except AdapterError as exc:
                raise CmpError(f"GET {path}: {exc}") from exc
            ids = [emnify.item_id(item) for item in items]
            current = _int_header(headers, "X-Current-Page")
            # a page past the last is answered with the last page again: stop there
            if not items or ids == previous or (current is not None and current < page):
                return seen
            records: list[Record] = []
            for item, iid in zip(items, ids, strict=True):
                if iid is not None and iid in self._emnify_seen:
                    continue
                out = emnify.records_from_event(item)
                if not out:
                    self.skipped += 1
                elif iid is not None and str(out[0]["ts"]) >= fresh:
                    seen.add(iid)
                records.extend(out)
            await self._hand_over(sink, records, commit=False)
            total = _int_header(headers, "X-Total-Pages")
            per_page = _int_header(headers, "X-Count-Per-Page") or size  # the server caps it
            if page >= total if total is not None else len(items) < per_page:
                return seen
            previous = ids
            page += 1

    # ------------------------------------------------------------------ per-SIM platforms

    async def _poll_per_sim(
        self,
        sink: Sink,
        fetch: Callable[[str, _SimState], Awaitable[tuple[list[Record], _SimState]]],
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
                    records, state = await fetch(iccid, self._sims.get(iccid) or _SimState())
                except _SimSkipError as exc:
                    self.stats.errors += 1
                    if iccid not in self._bad_sims:
                        self._bad_sims.add(iccid)
                        log.warning("source %s: SIM %s skipped: %s", self.settings.name, iccid, exc)
                    continue
                except CmpError as exc:
                    fatal.append(exc)
                    return
                self._bad_sims.discard(iccid)
                self._sims[iccid] = state
                pending.extend(records)
                changed = True
                if len(pending) >= self.settings.page_size:
                    out, pending, changed = pending, [], False
                    await self._hand_over(sink, out, commit=True)

        limit = workers if workers is not None else self.settings.max_concurrency
        async with asyncio.TaskGroup() as tg:
            for _ in range(min(limit, len(sims))):
                tg.create_task(worker())
        if pending or changed:
            await self._hand_over(sink, pending, commit=True)
        if fatal:
            raise fatal[0]

    async def _poll_cisco(self, sink: Sink) -> None:
        # "one API call at a time" (PLATFORMS.md 3.2) unless max_concurrency is set
        explicit = "max_concurrency" in self.settings.model_fields_set
        await self._poll_per_sim(
            sink,
            self._cisco_sim,
            discover=self._cisco_discover,
            workers=self.settings.max_concurrency if explicit else 1,
        )

    async def _poll_1nce(self, sink: Sink) -> None:
        await self._poll_per_sim(sink, self._once_sim, discover=self._once_discover)

    _once_v1 = False  # v2 events answered 404: this platform has only v1 events

    def _once_path(self, path: str) -> str:
        """``path`` below ``/management-api`` unless ``base_url`` already ends with it."""
        base = str(self.settings.base_url).rstrip("/")
        return path if base.endswith(onence.BASE_PATH) else onence.BASE_PATH + path

    async def _once_discover(self) -> list[str]:
        """The account's SIMs: ``GET /v1/sims`` pages (``pageSize`` <= 100)."""
        path = self._once_path("/v1/sims")
        size = min(self.settings.page_size, onence.MAX_SIMS_PAGE)
        found: list[str] = []
        page, previous = 1, None
        while True:
            body, headers = await self._get_json(path, {"page": str(page), "pageSize": str(size)})
            try:
                iccids = onence.sim_iccids(body)
            except AdapterError as exc:
                raise CmpError(f"GET {path}: {exc}") from exc
            if not iccids or iccids == previous:
                break
            found.extend(iccids)
            total = _int_header(headers, "X-Total-Pages")
            if page >= total if total is not None else len(iccids) < size:
                break
            previous = iccids
            page += 1
        return list(dict.fromkeys(found))

    async def _once_sim(self, iccid: str, state: _SimState) -> tuple[list[Record], _SimState]:
        now = self._clock()
        today = datetime.fromtimestamp(now, tz=UTC).date()
        first = (
            state.usage.date if state.usage is not None else (today - timedelta(days=1)).isoformat()
        )
        path = self._once_path(f"/v1/sims/{iccid}/usage")
        body, _ = await self._get_json(path, {"start_dt": first, "end_dt": today.isoformat()})
        try:
            records, mark = onence.once_usage(iccid, body, state.usage, now)
        except AdapterError as exc:
            raise CmpError(f"GET {path}: {exc}") from exc
        new = _SimState(usage=mark, last_event_id=state.last_event_id, since=state.since)
        if not self._once_v1:
            try:
                events, new.last_event_id = await self._once_events_v2(iccid, state, now)
            except _SimSkipError as exc:  # the SIM exists (usage answered): no v2 API
                if "HTTP 404" not in str(exc):
                    raise
                log.info("source %s: no v2 events API, reading v1", self.settings.name)
                self._once_v1 = True
        if self._once_v1:
            events, new.since = await self._once_events_v1(iccid, state, now)
        return records + events, new

    async def _once_events_v2(
        self, iccid: str, state: _SimState, now: float
    ) -> tuple[list[Record], int | None]:
        """``GET /v2/sims/{iccid}/events`` (JSON arrays with ids) down to the last id seen.

        Their order is not documented: a newest-first page that reaches the last id seen
        (or, on the first poll, ``initial_lookback_s``) ends the read, else a short page.
        """
        path = self._once_path(f"/v2/sims/{iccid}/events")
        size = min(self.settings.page_size, onence.MAX_EVENTS_PAGE)
        last, newest = state.last_event_id, state.last_event_id
        floor = now - self.settings.initial_lookback_s
        out: list[Record] = []
        page, previous = 1, None
        while True:
            body, _ = await self._get_json(path, {"page": str(page), "pageSize": str(size)})
            try:
                items = emnify.items_of(body)
            except AdapterError as exc:
                raise CmpError(f"GET {path}: {exc}") from exc
            ids = [emnify.item_id(item) for item in items]
            if not items or ids == previous:
                return out, newest
            for item, iid in zip(items, ids, strict=True):
                when = onence.event_time(item)
                if (last is not None and iid is not None and iid <= last) or (
                    last is None and when is not None and when < floor
                ):
                    continue
                newest = iid if iid is not None and (newest is None or iid > newest) else newest
                mapped = onence.records_from_event(item, iccid)
                self.skipped += not mapped
                out.extend(mapped)
            known = [i for i in ids if i is not None]
            oldest = onence.event_time(items[-1])
            reached = (last is not None and bool(known) and known[-1] <= last) or (
                last is None and oldest is not None and oldest < floor
            )
            if len(items) < size or (reached and known == sorted(known, reverse=True)):
                return out, newest
            previous = ids
            page += 1

    async def _once_events_v1(
        self, iccid: str, state: _SimState, now: float
    ) -> tuple[list[Record], int | None]:
        """``GET /v1/sims/{iccid}/events`` newest first (``sort=-timestamp``) to the mark.

        v1 events have no id: the mark is the newest event time read (ms); events at the
        mark are read again and keep their content-derived ``record_id`` (counted once).
        """
        path = self._once_path(f"/v1/sims/{iccid}/events")
        size = min(self.settings.page_size, onence.MAX_EVENTS_PAGE)
        mark = (
            state.since
            if state.since is not None
            else int((now - self.settings.initial_lookback_s) * 1000)
        )
        newest = mark
        out: list[Record] = []
        page, previous = 1, None
        while True:
            params = {"page": str(page), "pageSize": str(size), "sort": "-timestamp"}
            body, _ = await self._get_json(path, params)
            try:
                items, total = onence.events_v1(body)
            except AdapterError as exc:
                raise CmpError(f"GET {path}: {exc}") from exc
            if not items or items == previous:
                return out, newest
            reached = False
            for item in items:
                when = onence.event_time(item)
                ms = round(when * 1000) if when is not None else None
                if ms is not None and ms < mark:
                    reached = True
                    continue
                newest = max(newest, ms) if ms is not None else newest
                mapped = onence.records_from_event(item, iccid)
                self.skipped += not mapped
                out.extend(mapped)
            if reached or (page >= total if total is not None else len(items) < size):
                return out, newest
            previous = items
            page += 1

    async def _cisco_sim(self, iccid: str, state: _SimState) -> tuple[list[Record], _SimState]:
        base = f"/rws/api/v1/devices/{iccid}"
        body, _ = await self._get_json(f"{base}/sessionInfo", {})
        try:
            sessions, smark = cisco_session(iccid, body, state.session)
        except AdapterError as exc:
            raise CmpError(f"GET {base}/sessionInfo: {exc}") from exc
        body, _ = await self._get_json(f"{base}/ctdUsages", {})
        starts = sum(1 for r in sessions if r["status"] == "started")
        try:
            usage, umark = cisco_usage(iccid, body, state.ctd, self._clock(), new_starts=starts)
        except AdapterError as exc:
            raise CmpError(f"GET {base}/ctdUsages: {exc}") from exc
        return sessions + usage, _SimState(session=smark, ctd=umark)

    async def _cisco_discover(self) -> list[str]:
        """SIMs from ``devices?modifiedSince=`` (paged), added to the known SIMs."""
        since = self._cursor or DISCOVER_FROM
        started = self._clock()
        page = 1
        while True:
            params = {"modifiedSince": since, "pageSize": str(CISCO_PAGE), "pageNumber": str(page)}
            body, _ = await self._get_json("/rws/api/v1/devices", params)
            try:
                iccids, last = cisco_devices(body)
            except AdapterError as exc:
                raise CmpError(f"GET /rws/api/v1/devices: {exc}") from exc
            for iccid in iccids:
                self._sims.setdefault(iccid, _SimState())
            if last or not iccids:
                break
            page += 1
        self._cursor = format_rfc3339(max(0.0, started - DISCOVERY_MARGIN_S))
        return list(self._sims)

    # ------------------------------------------------------------------ Soracom

    _operator_table: OperatorTable | None = None
    _network_names: NetworkNames | None = None
    _discovered_at: float | None = None
    _kore_sids: dict[str, str] | None = None
    _warned_unattributed = False

    async def _operators(self) -> OperatorTable:
        """The packaged operator table (MNC digits for Soracom, names for Hologram)."""
        if self._operator_table is None:
            self._operator_table = await asyncio.to_thread(OperatorTable.load)
        return self._operator_table

    async def _poll_soracom(self, sink: Sink) -> None:
        await self._poll_per_sim(sink, self._soracom_sim, discover=self._soracom_discover)

    async def _soracom_discover(self) -> list[str]:
        """``GET /v1/sims`` paged by ``x-soracom-next-key``, at most once an hour."""
        now = self._clock()
        if self._discovered_at is None or now - self._discovered_at >= REDISCOVER_S:
            key: str | None = None
            while True:
                params = {"limit": str(self.settings.page_size)}
                if key is not None:
                    params["last_evaluated_key"] = key
                body, headers = await self._get_json("/v1/sims", params)
                try:
                    ids = soracom_sims(body)
                except AdapterError as exc:
                    raise CmpError(f"GET /v1/sims: {exc}") from exc
                for sim in ids:
                    self._sims.setdefault(sim, _SimState())
                key = _header(headers, "x-soracom-next-key")
                if not key or not ids:
                    break
            self._discovered_at = now
        return list(self._sims)

    async def _soracom_sim(self, sim: str, state: _SimState) -> tuple[list[Record], _SimState]:
        operators = await self._operators()
        now = self._clock()
        now_ms = int(now * 1000)
        floor_ms = now_ms - SORACOM_HISTORY_S * 1000
        first_ms = now_ms - LOOKBACK_S * 1000
        start_ms = max(floor_ms, state.since + 1 if state.since is not None else first_ms)
        path = f"/v1/sims/{sim}/events/sessions"
        records: list[Record] = []
        newest = state.since
        key: str | None = None
        while True:
            params = {
                "from": str(start_ms),
                "to": str(now_ms),
                "limit": str(self.settings.page_size),
            }
            if key is not None:
                params["last_evaluated_key"] = key
            body, headers = await self._get_json(path, params)
            try:
                page, page_newest, skipped = soracom_sessions(sim, body, operators)
            except AdapterError as exc:
                raise CmpError(f"GET {path}: {exc}") from exc
            self.skipped += skipped
            records += page
            if page_newest is not None and (newest is None or page_newest > newest):
                newest = page_newest
            key = _header(headers, "x-soracom-next-key")
            if not key:
                break
        marks = state.marks or {}
        newest_bucket = max((int(k) for k in marks), default=None)
        air_from = int(now) - LOOKBACK_S
        if newest_bucket is not None:
            air_from = min(air_from, newest_bucket)
        air_from = max(air_from, int(now) - SORACOM_HISTORY_S)
        path = f"/stats/air/sims/{sim}"
        params = {"from": str(air_from), "to": str(int(now)), "period": "minutes"}
        body, _ = await self._get_json(f"/v1{path}", params)
        try:
            usage, seen = soracom_air(sim, body, marks)
        except AdapterError as exc:
            raise CmpError(f"GET /v1{path}: {exc}") from exc
        kept = {k: v for k, v in marks.items() if int(k) >= air_from - BUCKET_S}
        kept.update(seen)
        return records + usage, _SimState(since=newest, marks=kept)

    # ------------------------------------------------------------------ KORE Super SIM

    async def _poll_kore(self, sink: Sink) -> None:
        """Hourly UsageRecords grouped by SIM: one paged query for the whole fleet."""
        sids = await self._kore_discover()
        now = self._clock()
        hour = math.floor(now / HOUR_S) * HOUR_S
        start = hour - LOOKBACK_S
        if self._cursor is not None:
            with contextlib.suppress(ValueError):
                start = min(start, int(datetime.fromisoformat(self._cursor).timestamp()))
        start = max(start, hour - KORE_HOUR_WINDOW_S)
        by_sid = {f"{sid}|{k}": v for sid, iccid in sids.items() for k, v in self._marks(iccid)}
        params: dict[str, str] = {
            "Group": "sim",
            "Granularity": "hour",
            "StartTime": format_rfc3339(start),
            "EndTime": format_rfc3339(hour + HOUR_S),
            "PageSize": str(min(self.settings.page_size, KORE_MAX_PAGE)),
        }
        path = "/v1/UsageRecords"
        seen: dict[str, tuple[int, int]] = {}
        while True:
            body, _ = await self._get_json(path, params)
            try:
                records, marks, skipped = kore_usage(body, sids, by_sid)
            except AdapterError as exc:
                raise CmpError(f"GET {path}: {exc}") from exc
            self.skipped += skipped
            seen.update(marks)
            await self._hand_over(sink, records, commit=False)
            nxt = kore_next(body)
            if nxt is None:
                break
            path, params = self._relative(nxt)
        first = format_rfc3339(start)
        for sid, iccid in sids.items():
            kept = {k: v for k, v in self._marks(iccid) if k >= first}
            kept.update({k.split("|", 1)[1]: v for k, v in seen.items() if k.startswith(sid + "|")})
            self._sims[iccid] = _SimState(marks=kept)
        self._cursor = format_rfc3339(hour)
        await self._hand_over(sink, [], commit=True)

    def _marks(self, iccid: str) -> list[tuple[str, tuple[int, int]]]:
        state = self._sims.get(iccid)
        return list((state.marks or {}).items()) if state is not None else []

    async def _kore_discover(self) -> dict[str, str]:
        """SIM sid -> ICCID from ``GET /v1/Sims`` (paged), refreshed once an hour."""
        now = self._clock()
        known = self._kore_sids
        stale = self._discovered_at is None or now - self._discovered_at >= REDISCOVER_S
        if known is None or stale:
            known = {}
            size = min(self.settings.page_size, KORE_MAX_PAGE)
            path, params = "/v1/Sims", {"PageSize": str(size)}
            while True:
                body, _ = await self._get_json(path, params)
                try:
                    known.update(kore_sims(body))
                except AdapterError as exc:
                    raise CmpError(f"GET {path}: {exc}") from exc
                nxt = kore_next(body)
                if nxt is None:
                    break
                path, params = self._relative(nxt)
            self._kore_sids = known
            self._discovered_at = now
        wanted = set(self.settings.iccids)
        sids = {sid: i for sid, i in known.items() if not wanted or i in wanted}
        if not sids:
            where = "none of the configured iccids is listed" if wanted else "the list is empty"
            raise CmpError(f"no SIMs to poll: GET /v1/Sims: {where}")
        return sids

    def _relative(self, url: str) -> tuple[str, dict[str, str]]:
        """A ``next_page_url`` as a path below ``base_url`` and its query."""
        parts = urlsplit(url)
        prefix = urlsplit(str(self.settings.base_url)).path.rstrip("/")
        path = parts.path
        if prefix and path.startswith(prefix + "/"):
            path = path[len(prefix) :]
        return path, dict(parse_qsl(parts.query, keep_blank_values=True))

    # ------------------------------------------------------------------ Hologram

    async def _poll_hologram(self, sink: Sink) -> None:
        """``usage/data`` newest first, paged with ``startafter`` down to the last id."""
        if self._network_names is None:
            table = await self._operators()
            rows = table._operators.items()  # noqa: SLF001 - no public iterator yet
            self._network_names = NetworkNames((k[:3], k[3:], name) for k, name in rows)
        last = self._last_id
        newest = last
        startafter: int | None = None
        limit = min(self.settings.page_size, HOLOGRAM_PAGE)
        while True:
            params = {"limit": str(limit)}
            if startafter is not None:
                params["startafter"] = str(startafter)
            if last is None:
                params["timestart"] = str(int(self._clock()) - LOOKBACK_S)
            body, _ = await self._get_json("/api/1/usage/data", params)
            try:
                records, ids, _reached, startafter, skipped = hologram_page(
                    body, self._network_names, last
                )
            except AdapterError as exc:
                raise CmpError(f"GET /api/1/usage/data: {exc}") from exc
            if skipped:
                self.skipped += skipped
                if not self._warned_unattributed:
                    self._warned_unattributed = True
                    log.warning(
                        "source %s: Hologram records without an ICCID ('sim') are skipped",
                        self.settings.name,
                    )
            if ids and (newest is None or max(ids) > newest):
                newest = max(ids)
            await self._hand_over(sink, records, commit=False)
            if startafter is None:
                break
        self._last_id = newest
        await self._hand_over(sink, [], commit=newest != last)


# the polling routine of each platform (``settings.adapter``)
POLLS: Final[Mapping[str, Callable[[CmpSource, Sink], Awaitable[None]]]] = {
    "generic": CmpSource._poll_generic,  # noqa: SLF001 - the class's own registry
    "emnify": CmpSource._poll_emnify,  # noqa: SLF001
    "1nce": CmpSource._poll_1nce,  # noqa: SLF001
    "cisco": CmpSource._poll_cisco,  # noqa: SLF001
    "kore": CmpSource._poll_kore,  # noqa: SLF001
    "soracom": CmpSource._poll_soracom,  # noqa: SLF001
    "hologram": CmpSource._poll_hologram,  # noqa: SLF001
}


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        lower = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lower), None)
    if value is None:
        return None
    with contextlib.suppress(ValueError):
        return int(value.strip())
    return None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """A response header by case-insensitive name (empty counts as absent)."""
    lower = name.lower()
    value = next((v for k, v in headers.items() if k.lower() == lower), None)
    return value.strip() or None if value is not None else None
