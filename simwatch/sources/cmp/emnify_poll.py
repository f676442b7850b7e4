"""Polling emnify: ``GET /api/v1/event`` for the mapped event types (PLATFORMS.md 1.2).

The window runs from the cursor (``position``: the previous poll's end, less
``emnify.OVERLAP_S`` for events recorded late; the first poll: ``initial_lookback_s``
back, at most the ``emnify.HISTORY_S`` kept) to now, in ``sort=id`` pages of each query
of ``emnify.event_queries``, paced to the path's own limit; the cursor moves to now once
every page is handed over. Ids handed over in the overlap are not handed over again.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from simwatch.core.timeutil import TimeParseError, format_rfc3339, parse_rfc3339
from simwatch.sources.cmp import emnify
from simwatch.sources.cmp.base import AdapterError, Record
from simwatch.sources.cmp.context import CmpError, int_header

if TYPE_CHECKING:
    from simwatch.shell.source_contract import Sink
    from simwatch.sources.cmp.context import PollContext

__all__ = ["poll"]


@dataclass(slots=True)
class _EmnifyState:
    seen: frozenset[int] = frozenset()  # ids handed over in the previous overlap
    last: float | None = None  # when /api/v1/event was last asked


async def poll(ctx: PollContext, sink: Sink) -> None:
    """``GET /api/v1/event`` for the mapped types over a time window (PLATFORMS.md 1.2)."""
    state = ctx.platform_state(_EmnifyState)
    now = ctx.now()
    start = now - ctx.settings.initial_lookback_s
    if ctx.position is not None:
        with contextlib.suppress(TimeParseError):
            start = parse_rfc3339(ctx.position) - emnify.OVERLAP_S
    start = max(start, now - emnify.HISTORY_S)
    fresh = format_rfc3339(now - emnify.OVERLAP_S)
    seen: set[int] = set()
    for query in emnify.event_queries(start, now):
        seen |= await _query(ctx, state, sink, query, fresh)
    state.seen = frozenset(seen)
    ctx.position = format_rfc3339(now)
    await ctx.hand_over(sink, [], commit=True)


async def _pace(ctx: PollContext, state: _EmnifyState) -> None:
    """The path's own limit (10 req/s, PLATFORMS.md 1.2): one request per 0.1 s at most."""
    gap = 1.0 / min(emnify.EVENT_RATE_PER_S, ctx.settings.rate_limit_per_s)
    if state.last is not None:
        wait = state.last + gap - ctx.now()
        if wait > emnify.MIN_WAIT_S:
            await ctx.sleep(wait)
    state.last = ctx.now()


async def _query(
    ctx: PollContext, state: _EmnifyState, sink: Sink, query: str, fresh: str
) -> set[int]:
    """Every page of one query, handed over page by page; the ids newer than ``fresh``."""
    path, size = "/api/v1/event", ctx.settings.page_size
    seen: set[int] = set()
    page, previous = 1, None
    while True:
        await _pace(ctx, state)
        params = {"page": str(page), "per_page": str(size), "sort": "id", "q": query}
        body, headers = await ctx.get_json(path, params)
        try:
            items = emnify.items_of(body)
        except AdapterError as exc:
            raise CmpError(f"GET {path}: {exc}") from exc
        ids = [emnify.item_id(item) for item in items]
        current = int_header(headers, "X-Current-Page")
        # a page past the last is answered with the last page again: stop there
        if not items or ids == previous or (current is not None and current < page):
            return seen
        records: list[Record] = []
        for item, iid in zip(items, ids, strict=True):
            if iid is not None and iid in state.seen:
                continue
            out = emnify.records_from_event(item)
            if not out:
                ctx.skipped += 1
            elif iid is not None and str(out[0]["ts"]) >= fresh:
                seen.add(iid)
            records.extend(out)
        await ctx.hand_over(sink, records, commit=False)
        total = int_header(headers, "X-Total-Pages")
        per_page = int_header(headers, "X-Count-Per-Page") or size  # the server caps it
        if page >= total if total is not None else len(items) < per_page:
            return seen
        previous = ids
        page += 1
