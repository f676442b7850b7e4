"""Polling Soracom (PLATFORMS.md 5): per SIM, session events and air stats.

SIMs: the configured ``iccids``, else ``GET /v1/sims`` pages (``x-soracom-next-key``),
re-read at most once an hour. Per SIM: ``GET /v1/sims/{sim}/events/sessions`` after the
newest event time seen (the first poll: ``initial_lookback_s`` back; never beyond the
``SORACOM_HISTORY_S`` kept), then ``GET /v1/stats/air/sims/{sim}`` minute buckets from
the newest bucket marked (its totals may still grow), mapped by ``soracom``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from simwatch.sources.cmp.base import AdapterError, Record
from simwatch.sources.cmp.context import REDISCOVER_S, CmpError, SimState, header
from simwatch.sources.cmp.soracom import BUCKET_S, soracom_air, soracom_sessions, soracom_sims

if TYPE_CHECKING:
    from simwatch.shell.source_contract import Sink
    from simwatch.sources.cmp.context import PollContext

__all__ = ["SORACOM_HISTORY_S", "poll"]

SORACOM_HISTORY_S: Final = 32 * 86_400  # session events and minute stats: past 32 days


@dataclass(slots=True)
class _SoracomState:
    discovered_at: float | None = None  # when the SIM list was last read


async def poll(ctx: PollContext, sink: Sink) -> None:
    """Each SIM's session events and air stats (see the module docstring)."""

    async def sim(iccid: str, state: SimState) -> tuple[list[Record], SimState]:
        return await _sim(ctx, iccid, state)

    async def discover() -> list[str]:
        return await _discover(ctx)

    await ctx.per_sim(sink, sim, discover=discover)


async def _discover(ctx: PollContext) -> list[str]:
    """``GET /v1/sims`` paged by ``x-soracom-next-key``, at most once an hour."""
    platform = ctx.platform_state(_SoracomState)
    now = ctx.now()
    if platform.discovered_at is None or now - platform.discovered_at >= REDISCOVER_S:
        key: str | None = None
        while True:
            params = {"limit": str(ctx.settings.page_size)}
            if key is not None:
                params["last_evaluated_key"] = key
            body, headers = await ctx.get_json("/v1/sims", params)
            try:
                ids = soracom_sims(body)
            except AdapterError as exc:
                raise CmpError(f"GET /v1/sims: {exc}") from exc
            for sim in ids:
                ctx.sims.setdefault(sim, SimState())
            key = header(headers, "x-soracom-next-key")
            if not key or not ids:
                break
        platform.discovered_at = now
    return list(ctx.sims)


async def _sim(ctx: PollContext, sim: str, state: SimState) -> tuple[list[Record], SimState]:
    operators = await ctx.operators()
    now = ctx.now()
    now_ms = int(now * 1000)
    floor_ms = now_ms - SORACOM_HISTORY_S * 1000
    first_ms = int((now - ctx.settings.initial_lookback_s) * 1000)
    start_ms = max(floor_ms, state.since + 1 if state.since is not None else first_ms)
    path = f"/v1/sims/{sim}/events/sessions"
    records: list[Record] = []
    newest = state.since
    key: str | None = None
    while True:
        params = {
            "from": str(start_ms),
            "to": str(now_ms),
            "limit": str(ctx.settings.page_size),
        }
        if key is not None:
            params["last_evaluated_key"] = key
        body, headers = await ctx.get_json(path, params)
        try:
            page, page_newest, skipped = soracom_sessions(sim, body, operators)
        except AdapterError as exc:
            raise CmpError(f"GET {path}: {exc}") from exc
        ctx.skipped += skipped
        records += page
        if page_newest is not None and (newest is None or page_newest > newest):
            newest = page_newest
        key = header(headers, "x-soracom-next-key")
        if not key:
            break
    marks = state.marks or {}
    newest_bucket = max((int(k) for k in marks), default=None)
    air_from = int(now - ctx.settings.initial_lookback_s)
    if newest_bucket is not None:
        air_from = min(air_from, newest_bucket)
    air_from = max(air_from, int(now) - SORACOM_HISTORY_S)
    path = f"/stats/air/sims/{sim}"
    params = {"from": str(air_from), "to": str(int(now)), "period": "minutes"}
    body, _ = await ctx.get_json(f"/v1{path}", params)
    try:
        usage, seen = soracom_air(sim, body, marks)
    except AdapterError as exc:
        raise CmpError(f"GET /v1{path}: {exc}") from exc
    kept = {k: v for k, v in marks.items() if int(k) >= air_from - BUCKET_S}
    kept.update(seen)
    return records + usage, SimState(since=newest, marks=kept)
