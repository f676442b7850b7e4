"""Polling Hologram (PLATFORMS.md 6): ``GET /api/1/usage/data``, one record per session.

Newest first, paged with ``startafter`` down to the newest record id handed over before
(the poller's ``last_id``; the first poll: ``timestart`` ``initial_lookback_s`` back). The
pages of one poll are handed over oldest first, as the sessions happened: the engine
learns a SIM's rhythm from gaps between records in time order, and an older record
arriving after a newer one is a late arrival that teaches no gap. Network
names are resolved against the packaged operator table (``hologram.NetworkNames``);
records without an ICCID are skipped, with one warning per source.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from simwatch.sources.cmp.base import AdapterError, Record, in_time_order
from simwatch.sources.cmp.context import CmpError
from simwatch.sources.cmp.hologram import NetworkNames, hologram_page

if TYPE_CHECKING:
    from simwatch.shell.source_contract import Sink
    from simwatch.sources.cmp.context import PollContext

__all__ = ["HOLOGRAM_PAGE", "poll"]

HOLOGRAM_PAGE: Final = 250  # "recommended session limit ... 250 or fewer"


@dataclass(slots=True)
class _HologramState:
    network_names: NetworkNames | None = None
    warned_unattributed: bool = False


async def poll(ctx: PollContext, sink: Sink) -> None:
    """``usage/data`` newest first, paged with ``startafter`` down to the last id."""
    state = ctx.platform_state(_HologramState)
    if state.network_names is None:
        table = await ctx.operators()
        rows = table._operators.items()  # noqa: SLF001 - no public iterator yet
        state.network_names = NetworkNames((k[:3], k[3:], name) for k, name in rows)
    last = ctx.last_id
    newest = last
    startafter: int | None = None
    limit = min(ctx.settings.page_size, HOLOGRAM_PAGE)
    read: list[Record] = []  # newest first, as served
    while True:
        params = {"limit": str(limit)}
        if startafter is not None:
            params["startafter"] = str(startafter)
        if last is None:
            params["timestart"] = str(int(ctx.now() - ctx.settings.initial_lookback_s))
        body, _ = await ctx.get_json("/api/1/usage/data", params)
        try:
            records, ids, _reached, startafter, skipped = hologram_page(
                body, state.network_names, last
            )
        except AdapterError as exc:
            raise CmpError(f"GET /api/1/usage/data: {exc}") from exc
        if skipped:
            ctx.skipped += skipped
            if not state.warned_unattributed:
                state.warned_unattributed = True
                ctx.log.warning(
                    "source %s: Hologram records without an ICCID ('sim') are skipped",
                    ctx.settings.name,
                )
        if ids and (newest is None or max(ids) > newest):
            newest = max(ids)
        read += records
        if startafter is None:
            break
    read.reverse()  # ties in time keep the order of their ids
    await ctx.hand_over(sink, in_time_order(read), commit=False)  # see the docstring
    ctx.last_id = newest
    await ctx.hand_over(sink, [], commit=newest != last)
