"""Polling 1NCE (PLATFORMS.md 2): per SIM, daily usage and events (v2, else v1).

SIMs: the configured ``iccids``, else ``GET /v1/sims`` pages. Per SIM (through the
poller's per-SIM fan-out): ``GET /v1/sims/{iccid}/usage`` from the last committed day
to today, then ``GET /v2/sims/{iccid}/events`` down to the last event id seen; a 404 to
the v2 events of a SIM whose usage answered means the platform has only v1 events, read
from then on as ``GET /v1/sims/{iccid}/events`` newest first down to the newest event
time seen. Paths go below ``/management-api`` unless ``base_url`` already ends with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from simwatch.sources.cmp import emnify, onence
from simwatch.sources.cmp.base import AdapterError, Record
from simwatch.sources.cmp.context import CmpError, SimSkipError, SimState, int_header

if TYPE_CHECKING:
    from simwatch.shell.source_contract import Sink
    from simwatch.sources.cmp.context import PollContext

__all__ = ["poll"]


@dataclass(slots=True)
class _OnceState:
    v1: bool = False  # v2 events answered 404: this platform has only v1 events


async def poll(ctx: PollContext, sink: Sink) -> None:
    """Each SIM's usage and events (see the module docstring)."""

    async def sim(iccid: str, state: SimState) -> tuple[list[Record], SimState]:
        return await _sim(ctx, iccid, state)

    async def discover() -> list[str]:
        return await _discover(ctx)

    await ctx.per_sim(sink, sim, discover=discover)


def _path(ctx: PollContext, path: str) -> str:
    """``path`` below ``/management-api`` unless ``base_url`` already ends with it."""
    base = str(ctx.settings.base_url).rstrip("/")
    return path if base.endswith(onence.BASE_PATH) else onence.BASE_PATH + path


async def _discover(ctx: PollContext) -> list[str]:
    """The account's SIMs: ``GET /v1/sims`` pages (``pageSize`` <= 100)."""
    path = _path(ctx, "/v1/sims")
    size = min(ctx.settings.page_size, onence.MAX_SIMS_PAGE)
    found: list[str] = []
    page, previous = 1, None
    while True:
        body, headers = await ctx.get_json(path, {"page": str(page), "pageSize": str(size)})
        try:
            iccids = onence.sim_iccids(body)
        except AdapterError as exc:
            raise CmpError(f"GET {path}: {exc}") from exc
        if not iccids or iccids == previous:
            break
        found.extend(iccids)
        total = int_header(headers, "X-Total-Pages")
        if page >= total if total is not None else len(iccids) < size:
            break
        previous = iccids
        page += 1
    return list(dict.fromkeys(found))


async def _sim(ctx: PollContext, iccid: str, state: SimState) -> tuple[list[Record], SimState]:
    platform = ctx.platform_state(_OnceState)
    now = ctx.now()
    today = datetime.fromtimestamp(now, tz=UTC).date()
    first = state.usage.date if state.usage is not None else (today - timedelta(days=1)).isoformat()
    path = _path(ctx, f"/v1/sims/{iccid}/usage")
    body, _ = await ctx.get_json(path, {"start_dt": first, "end_dt": today.isoformat()})
    try:
        records, mark = onence.once_usage(iccid, body, state.usage, now)
    except AdapterError as exc:
        raise CmpError(f"GET {path}: {exc}") from exc
    new = SimState(usage=mark, last_event_id=state.last_event_id, since=state.since)
    if not platform.v1:
        try:
            events, new.last_event_id = await _events_v2(ctx, iccid, state, now)
        except SimSkipError as exc:  # the SIM exists (usage answered): no v2 API
            if "HTTP 404" not in str(exc):
                raise
            ctx.log.info("source %s: no v2 events API, reading v1", ctx.settings.name)
            platform.v1 = True
    if platform.v1:
        events, new.since = await _events_v1(ctx, iccid, state, now)
    return records + events, new


async def _events_v2(
    ctx: PollContext, iccid: str, state: SimState, now: float
) -> tuple[list[Record], int | None]:
    """``GET /v2/sims/{iccid}/events`` (JSON arrays with ids) down to the last id seen.

    Their order is not documented: a newest-first page that reaches the last id seen
    (or, on the first poll, ``initial_lookback_s``) ends the read, else a short page.
    """
    path = _path(ctx, f"/v2/sims/{iccid}/events")
    size = min(ctx.settings.page_size, onence.MAX_EVENTS_PAGE)
    last, newest = state.last_event_id, state.last_event_id
    floor = now - ctx.settings.initial_lookback_s
    out: list[Record] = []
    page, previous = 1, None
    while True:
        body, _ = await ctx.get_json(path, {"page": str(page), "pageSize": str(size)})
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
            ctx.skipped += not mapped
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


async def _events_v1(
    ctx: PollContext, iccid: str, state: SimState, now: float
) -> tuple[list[Record], int | None]:
    """``GET /v1/sims/{iccid}/events`` newest first (``sort=-timestamp``) to the mark.

    v1 events have no id: the mark is the newest event time read (ms); events at the
    mark are read again and keep their content-derived ``record_id`` (counted once).
    """
    path = _path(ctx, f"/v1/sims/{iccid}/events")
    size = min(ctx.settings.page_size, onence.MAX_EVENTS_PAGE)
    mark = (
        state.since
        if state.since is not None
        else int((now - ctx.settings.initial_lookback_s) * 1000)
    )
    newest = mark
    out: list[Record] = []
    page, previous = 1, None
    while True:
        params = {"page": str(page), "pageSize": str(size), "sort": "-timestamp"}
        body, _ = await ctx.get_json(path, params)
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
            ctx.skipped += not mapped
            out.extend(mapped)
        if reached or (page >= total if total is not None else len(items) < size):
            return out, newest
        previous = items
        page += 1
