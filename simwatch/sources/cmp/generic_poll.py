"""Polling the generic CMP API: ``GET /records?since=&limit=`` pages (see ``generic``).

Each page is handed over as it comes; the server's ``next`` cursor becomes the poller's
``position`` and is committed with the page. The poll ends at a page that does not move
the cursor or is shorter than ``limit``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from simwatch.sources.cmp.base import AdapterError
from simwatch.sources.cmp.context import CmpError
from simwatch.sources.cmp.generic import generic_page

if TYPE_CHECKING:
    from simwatch.shell.source_contract import Sink
    from simwatch.sources.cmp.context import PollContext

__all__ = ["poll"]


async def poll(ctx: PollContext, sink: Sink) -> None:
    """Every page after the cursor, handed over page by page."""
    limit = ctx.settings.page_size
    while True:
        since = ctx.position
        params = {"limit": str(limit)}
        if since is not None:
            params["since"] = since
        body, _ = await ctx.get_json("/records", params)
        try:
            records, nxt, dropped = generic_page(body)
        except AdapterError as exc:
            raise CmpError(f"GET /records: {exc}") from exc
        ctx.skipped += dropped
        moved = nxt is not None and nxt != since
        if moved:
            ctx.position = nxt
        await ctx.hand_over(sink, records, commit=moved)
        if not moved or len(records) + dropped < limit:
            return
