"""Polling Cisco IoT Control Center (PLATFORMS.md 3): per SIM, session and usage.

SIMs: the configured ``iccids``, else ``GET /rws/api/v1/devices?modifiedSince=`` pages
(added to the SIMs known; the next discovery asks from this one's start less
``DISCOVERY_MARGIN_S``, kept as the poller's ``position``). Per SIM:
``.../devices/{iccid}/sessionInfo`` then ``.../devices/{iccid}/ctdUsages`` (mapped by
``cisco``), one SIM at a time ("one API call at a time", PLATFORMS.md 3.2) unless
``max_concurrency`` is set explicitly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from simwatch.core.timeutil import format_rfc3339
from simwatch.sources.cmp.base import AdapterError, Record
from simwatch.sources.cmp.cisco import DISCOVER_FROM, cisco_devices, cisco_session, cisco_usage
from simwatch.sources.cmp.context import CmpError, SimState

if TYPE_CHECKING:
    from simwatch.shell.source_contract import Sink
    from simwatch.sources.cmp.context import PollContext

__all__ = ["CISCO_PAGE", "DISCOVERY_MARGIN_S", "poll"]

DISCOVERY_MARGIN_S: Final = 300.0  # Cisco modifiedSince overlap (clock skew)
CISCO_PAGE: Final = 50  # devices?pageSize maximum (PLATFORMS.md 3.2)


async def poll(ctx: PollContext, sink: Sink) -> None:
    """Each SIM's session and usage (see the module docstring)."""

    async def sim(iccid: str, state: SimState) -> tuple[list[Record], SimState]:
        return await _sim(ctx, iccid, state)

    async def discover() -> list[str]:
        return await _discover(ctx)

    # "one API call at a time" (PLATFORMS.md 3.2) unless max_concurrency is set
    explicit = "max_concurrency" in ctx.settings.model_fields_set
    await ctx.per_sim(
        sink,
        sim,
        discover=discover,
        workers=ctx.settings.max_concurrency if explicit else 1,
    )


async def _sim(ctx: PollContext, iccid: str, state: SimState) -> tuple[list[Record], SimState]:
    base = f"/rws/api/v1/devices/{iccid}"
    body, _ = await ctx.get_json(f"{base}/sessionInfo", {})
    try:
        sessions, smark = cisco_session(iccid, body, state.session)
    except AdapterError as exc:
        raise CmpError(f"GET {base}/sessionInfo: {exc}") from exc
    body, _ = await ctx.get_json(f"{base}/ctdUsages", {})
    starts = sum(1 for r in sessions if r["status"] == "started")
    try:
        usage, umark = cisco_usage(iccid, body, state.ctd, ctx.now(), new_starts=starts)
    except AdapterError as exc:
        raise CmpError(f"GET {base}/ctdUsages: {exc}") from exc
    return sessions + usage, SimState(session=smark, ctd=umark)


async def _discover(ctx: PollContext) -> list[str]:
    """SIMs from ``devices?modifiedSince=`` (paged), added to the known SIMs."""
    since = ctx.position or DISCOVER_FROM
    started = ctx.now()
    page = 1
    while True:
        params = {"modifiedSince": since, "pageSize": str(CISCO_PAGE), "pageNumber": str(page)}
        body, _ = await ctx.get_json("/rws/api/v1/devices", params)
        try:
            iccids, last = cisco_devices(body)
        except AdapterError as exc:
            raise CmpError(f"GET /rws/api/v1/devices: {exc}") from exc
        for iccid in iccids:
            ctx.sims.setdefault(iccid, SimState())
        if last or not iccids:
            break
        page += 1
    ctx.position = format_rfc3339(max(0.0, started - DISCOVERY_MARGIN_S))
    return list(ctx.sims)
