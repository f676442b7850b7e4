"""Polling KORE Super SIM (PLATFORMS.md 4): hourly usage records grouped by SIM.

SIMs: ``GET /v1/Sims`` pages (``next_page_url``), re-read at most once an hour, narrowed
to the configured ``iccids``. Usage: one paged ``GET /v1/UsageRecords?Group=sim&
Granularity=hour`` query for the whole fleet, from ``LOOKBACK_S`` before the current
hour (hours still growing are read again), or on the first poll from
``initial_lookback_s`` back if that is earlier (or the hour the cursor, ``position``,
reached, if earlier; never more than
``KORE_HOUR_WINDOW_S`` back) to the end of the current hour. Each SIM's totals per hour
(``kore`` emits their increase) are kept as its ``marks``.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Final
from urllib.parse import parse_qsl, urlsplit

from simwatch.core.timeutil import format_rfc3339
from simwatch.sources.cmp.base import AdapterError, Record, in_time_order
from simwatch.sources.cmp.context import HOUR_S, LOOKBACK_S, REDISCOVER_S, CmpError, SimState
from simwatch.sources.cmp.kore import kore_next, kore_sims, kore_usage

if TYPE_CHECKING:
    from simwatch.shell.source_contract import Sink
    from simwatch.sources.cmp.context import PollContext

__all__ = ["KORE_HOUR_WINDOW_S", "KORE_MAX_PAGE", "poll"]

KORE_MAX_PAGE: Final = 249  # UsageRecords / Sims PageSize maximum (PLATFORMS.md 4.2)
KORE_HOUR_WINDOW_S: Final = 31 * 86_400  # hour granularity: windows up to 31 days


@dataclass(slots=True)
class _KoreState:
    sids: dict[str, str] | None = None  # SIM sid -> ICCID, as last listed
    discovered_at: float | None = None  # when the SIM list was last read


async def poll(ctx: PollContext, sink: Sink) -> None:
    """Hourly UsageRecords grouped by SIM: one paged query for the whole fleet."""
    sids = await _discover(ctx)
    now = ctx.now()
    hour = math.floor(now / HOUR_S) * HOUR_S
    start = hour - LOOKBACK_S
    if ctx.position is None:  # the first poll
        earliest = now - ctx.settings.initial_lookback_s
        start = min(start, math.floor(earliest / HOUR_S) * HOUR_S)
    else:
        with contextlib.suppress(ValueError):
            start = min(start, int(datetime.fromisoformat(ctx.position).timestamp()))
    start = max(start, hour - KORE_HOUR_WINDOW_S)
    by_sid = {f"{sid}|{k}": v for sid, iccid in sids.items() for k, v in _marks(ctx, iccid)}
    params: dict[str, str] = {
        "Group": "sim",
        "Granularity": "hour",
        "StartTime": format_rfc3339(start),
        "EndTime": format_rfc3339(hour + HOUR_S),
        "PageSize": str(min(ctx.settings.page_size, KORE_MAX_PAGE)),
    }
    path = "/v1/UsageRecords"
    seen: dict[str, tuple[int, int]] = {}
    read: list[Record] = []
    while True:
        body, _ = await ctx.get_json(path, params)
        try:
            records, marks, skipped = kore_usage(body, sids, by_sid, now)
        except AdapterError as exc:
            raise CmpError(f"GET {path}: {exc}") from exc
        ctx.skipped += skipped
        seen.update(marks)
        read += records
        nxt = kore_next(body)
        if nxt is None:
            break
        path, params = _relative(ctx, nxt)
    # in time order, whatever order the pages come in (the documented example is newest
    # first): the engine learns rhythms from gaps in time order
    await ctx.hand_over(sink, in_time_order(read), commit=False)
    first = format_rfc3339(start)
    for sid, iccid in sids.items():
        kept = {k: v for k, v in _marks(ctx, iccid) if k >= first}
        kept.update({k.split("|", 1)[1]: v for k, v in seen.items() if k.startswith(sid + "|")})
        ctx.sims[iccid] = SimState(marks=kept)
    ctx.position = format_rfc3339(hour)
    await ctx.hand_over(sink, [], commit=True)


def _marks(ctx: PollContext, iccid: str) -> list[tuple[str, tuple[int, int]]]:
    state = ctx.sims.get(iccid)
    return list((state.marks or {}).items()) if state is not None else []


async def _discover(ctx: PollContext) -> dict[str, str]:
    """SIM sid -> ICCID from ``GET /v1/Sims`` (paged), refreshed once an hour."""
    platform = ctx.platform_state(_KoreState)
    now = ctx.now()
    known = platform.sids
    stale = platform.discovered_at is None or now - platform.discovered_at >= REDISCOVER_S
    if known is None or stale:
        known = {}
        size = min(ctx.settings.page_size, KORE_MAX_PAGE)
        path, params = "/v1/Sims", {"PageSize": str(size)}
        while True:
            body, _ = await ctx.get_json(path, params)
            try:
                known.update(kore_sims(body))
            except AdapterError as exc:
                raise CmpError(f"GET {path}: {exc}") from exc
            nxt = kore_next(body)
            if nxt is None:
                break
            path, params = _relative(ctx, nxt)
        platform.sids = known
        platform.discovered_at = now
    wanted = set(ctx.settings.iccids)
    sids = {sid: i for sid, i in known.items() if not wanted or i in wanted}
    if not sids:
        where = "none of the configured iccids is listed" if wanted else "the list is empty"
        raise CmpError(f"no SIMs to poll: GET /v1/Sims: {where}")
    return sids


def _relative(ctx: PollContext, url: str) -> tuple[str, dict[str, str]]:
    """A ``next_page_url`` as a path below ``base_url`` and its query."""
    parts = urlsplit(url)
    prefix = urlsplit(str(ctx.settings.base_url)).path.rstrip("/")
    path = parts.path
    if prefix and path.startswith(prefix + "/"):
        path = path[len(prefix) :]
    return path, dict(parse_qsl(parts.query, keep_blank_values=True))
