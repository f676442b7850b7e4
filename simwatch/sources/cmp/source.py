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

Auth: ``Authorization: Bearer <token>`` from the ``token`` argument, else
``settings.token``, else the first line of ``settings.token_file``.
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

import aiohttp
import orjson

from simwatch.shell.backoff import backoff_delay
from simwatch.shell.files import write_atomically
from simwatch.shell.logs import FailureLog
from simwatch.shell.source_contract import Batch, SourceStats
from simwatch.sources.cmp.base import AdapterError, Record
from simwatch.sources.cmp.cisco import CiscoSessionMark, CiscoUsageMark, cisco_session, cisco_usage
from simwatch.sources.cmp.emnify import emnify_item, item_id, items_of
from simwatch.sources.cmp.generic import generic_page
from simwatch.sources.cmp.onence import OnceUsageMark, once_usage

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
                await self._sleep((1.0 - self._tokens) / self._rate)


@dataclass(slots=True)
class _SimState:
    usage: OnceUsageMark | None = None  # 1NCE
    last_event_id: int | None = None  # 1NCE
    session: CiscoSessionMark | None = None  # Cisco
    ctd: CiscoUsageMark | None = None  # Cisco

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {}
        if self.usage is not None:
            out["usage"] = [self.usage.date, self.usage.up, self.usage.down]
        if self.last_event_id is not None:
            out["last_event_id"] = self.last_event_id
        if self.session is not None:
            out["session"] = [self.session.started, self.session.ended]
        if self.ctd is not None:
            out["ctd"] = [self.ctd.ctd, self.ctd.at]
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
        if isinstance(ctd, list) and len(ctd) == 2:
            value, at = ctd
            if isinstance(value, int) and isinstance(at, int | float):
                state.ctd = CiscoUsageMark(value, float(at))
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
        headers = {"Accept": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        return aiohttp.ClientSession(
            headers=headers, timeout=aiohttp.ClientTimeout(total=self.settings.timeout_s)
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
        while True:
            async with self._sem:
                await self._bucket.acquire()
                try:
                    async with http.get(url, params=params) as resp:
                        status = resp.status
                        headers = dict(resp.headers)
                        data = await resp.read() if status < 300 else b""
                except (TimeoutError, aiohttp.ClientError) as exc:
                    what = "timed out" if isinstance(exc, TimeoutError) else f"failed: {exc!r}"
                    raise CmpError(f"GET {path} {what}") from exc
            if status == 429:
                throttled += 1
                delay = parse_retry_after(headers.get("Retry-After"), self._clock())
                self._note_error(f"GET {path}: HTTP 429 (rate limited)")
                if throttled > MAX_429_RETRIES:
                    raise CmpError(f"GET {path}: HTTP 429 {throttled} times")
                await self._sleep(delay if delay is not None else self.backoff_delay(throttled))
                continue
            if not 200 <= status < 300:
                message = f"GET {path}: HTTP {status}"
                if 400 <= status < 500 and status not in {401, 403}:
                    raise _SimSkipError(message)  # skips the SIM; fails a platform-wide poll
                raise CmpError(message)
            try:
                return orjson.loads(data), headers
            except orjson.JSONDecodeError as exc:
                raise CmpError(f"GET {path}: invalid JSON ({exc})") from exc

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

    # ------------------------------------------------------------------ emnify-style feeds

    async def _poll_emnify(self, sink: Sink) -> None:
        last = self._last_id
        records, newest = await self._fetch_feed(
            "/api/v1/event", "per_page", "emnify", iccid=None, last=last, sink=sink
        )
        self._last_id = newest
        await self._hand_over(sink, records, commit=newest != last)

    async def _fetch_feed(
        self,
        path: str,
        size_param: str,
        prefix: str,
        *,
        iccid: str | None,
        last: int | None,
        sink: Sink | None,
    ) -> tuple[list[Record], int | None]:
        """Pages of a newest-first, id-keyed event feed, down to the last id seen.

        Returns the records not yet handed over and the newest id. With a ``sink``, full
        pages go out as they come (without a commit: the cursor is known only at the end).
        """
        newest = last
        size = self.settings.page_size
        pending: list[Record] = []
        page = 1
        while True:
            params = {"page": str(page), size_param: str(size), "sort": "-id"}
            body, headers = await self._get_json(path, params)
            try:
                items = items_of(body)
            except AdapterError as exc:
                raise CmpError(f"GET {path}: {exc}") from exc
            reached = False
            for item in items:
                iid = item_id(item)
                if iid is not None and last is not None and iid <= last:
                    reached = True
                    continue
                if iid is not None and (newest is None or iid > newest):
                    newest = iid
                rec = emnify_item(item, prefix=prefix, iccid=iccid)
                if rec is None:
                    self.skipped += 1
                else:
                    pending.append(rec)
            total = _int_header(headers, "X-Total-Pages")
            if reached or not items or (page >= total if total is not None else len(items) < size):
                return pending, newest
            if sink is not None and len(pending) >= size:
                await self._hand_over(sink, pending, commit=False)
                pending = []
            page += 1

    # ------------------------------------------------------------------ per-SIM platforms

    async def _poll_per_sim(
        self,
        sink: Sink,
        fetch: Callable[[str, _SimState], Awaitable[tuple[list[Record], _SimState]]],
    ) -> None:
        iccids = iter(dict.fromkeys(self.settings.iccids))
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

        workers = min(self.settings.max_concurrency, len(self.settings.iccids))
        async with asyncio.TaskGroup() as tg:
            for _ in range(workers):
                tg.create_task(worker())
        if pending or changed:
            await self._hand_over(sink, pending, commit=True)
        if fatal:
            raise fatal[0]

    async def _poll_1nce(self, sink: Sink) -> None:
        await self._poll_per_sim(sink, self._once_sim)

    async def _poll_cisco(self, sink: Sink) -> None:
        await self._poll_per_sim(sink, self._cisco_sim)

    async def _once_sim(self, iccid: str, state: _SimState) -> tuple[list[Record], _SimState]:
        now = self._clock()
        today = datetime.fromtimestamp(now, tz=UTC).date()
        first = (
            state.usage.date if state.usage is not None else (today - timedelta(days=1)).isoformat()
        )
        path = f"/v1/sims/{iccid}/usage"
        body, _ = await self._get_json(path, {"start_dt": first, "end_dt": today.isoformat()})
        try:
            records, mark = once_usage(iccid, body, state.usage, now)
        except AdapterError as exc:
            raise CmpError(f"GET {path}: {exc}") from exc
        events, newest = await self._fetch_feed(
            f"/v1/sims/{iccid}/events",
            "pageSize",
            "1nce",
            iccid=iccid,
            last=state.last_event_id,
            sink=None,
        )
        return records + events, _SimState(usage=mark, last_event_id=newest)

    async def _cisco_sim(self, iccid: str, state: _SimState) -> tuple[list[Record], _SimState]:
        base = f"/rws/api/v1/devices/{iccid}"
        body, _ = await self._get_json(f"{base}/sessionInfo", {})
        try:
            sessions, smark = cisco_session(iccid, body, state.session)
        except AdapterError as exc:
            raise CmpError(f"GET {base}/sessionInfo: {exc}") from exc
        body, _ = await self._get_json(f"{base}/ctdUsages", {})
        try:
            usage, umark = cisco_usage(iccid, body, state.ctd, self._clock())
        except AdapterError as exc:
            raise CmpError(f"GET {base}/ctdUsages: {exc}") from exc
        return sessions + usage, _SimState(session=smark, ctd=umark)


# the polling routine of each platform (``settings.adapter``)
POLLS: Final[Mapping[str, Callable[[CmpSource, Sink], Awaitable[None]]]] = {
    "generic": CmpSource._poll_generic,  # noqa: SLF001 - the class's own registry
    "emnify": CmpSource._poll_emnify,  # noqa: SLF001
    "1nce": CmpSource._poll_1nce,  # noqa: SLF001
    "cisco": CmpSource._poll_cisco,  # noqa: SLF001
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
