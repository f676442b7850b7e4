"""The 1NCE adapter: daily usage totals per SIM (its events are in the emnify shape).

per SIM (``settings.iccids``):

* ``GET /v1/sims/{iccid}/usage?start_dt=YYYY-MM-DD&end_dt=YYYY-MM-DD`` ->
  ``{"stats": [{"date": "2026-11-20", "data": {"volume": MB, "volume_tx": MB,
  "volume_rx": MB}}]}`` (numbers or numeric strings). A day's figures are running
  totals for that UTC day, so each poll emits the *increase* since the last committed
  figures as a ``usage`` record over ``[day start, min(day end, now)]``, with
  ``record_id`` ``1nce:<iccid>:u:<date>:<up>:<down>`` (the totals it reports).
* ``GET /v1/sims/{iccid}/events?page=N&pageSize=M&sort=-id`` -> a JSON array of
  events in the emnify event shape above (1NCE documents the same ``X-Total-Pages``
  / ``X-Current-Page`` headers); ``record_id`` is ``1nce:e:<id>``. The ICCID comes
  from the item (``sim.iccid`` or ``iccid``), else the SIM polled.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from simwatch.core.timeutil import format_rfc3339
from simwatch.sources.cmp.base import DAY_S, AdapterError, Record, mb_to_bytes, obj, text

__all__ = ["OnceUsageMark", "once_usage"]


@dataclass(frozen=True, slots=True)
class OnceUsageMark:
    """The last committed daily totals of a 1NCE SIM."""

    date: str  # YYYY-MM-DD (UTC)
    up: int
    down: int


def _day_start(date: str) -> float | None:
    try:
        return datetime.strptime(date, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def once_usage(
    iccid: str, body: object, prev: OnceUsageMark | None, now: float
) -> tuple[list[Record], OnceUsageMark | None]:
    """1NCE daily usage -> usage records for the increase since ``prev``, and the new mark."""
    stats = body.get("stats") if isinstance(body, dict) else body
    if not isinstance(stats, list):
        raise AdapterError("expected {'stats': [...]}")
    days: dict[str, tuple[int, int]] = {}
    for entry in stats:
        e = obj(entry)
        date = text(e.get("date"))
        if date is None or _day_start(date[:10]) is None:
            continue
        data = obj(e.get("data"))
        up = mb_to_bytes(data.get("volume_tx"))
        down = mb_to_bytes(data.get("volume_rx"))
        if up is None and down is None:
            total = mb_to_bytes(data.get("volume"))
            if total is None:
                continue
            up, down = 0, total  # only a total: direction unknown, counted as received
        days[date[:10]] = (up or 0, down or 0)
    out: list[Record] = []
    mark = prev
    for date in sorted(days):
        if prev is not None and date < prev.date:
            continue
        up, down = days[date]
        base_up, base_down = (
            (prev.up, prev.down) if prev is not None and date == prev.date else (0, 0)
        )
        d_up, d_down = max(0, up - base_up), max(0, down - base_down)
        mark = OnceUsageMark(date, max(up, base_up), max(down, base_down))
        if d_up + d_down == 0:
            continue
        start = _day_start(date)
        assert start is not None  # checked above
        end = max(start, min(start + DAY_S, now))
        out.append(
            {
                "kind": "usage",
                "record_id": f"1nce:{iccid}:u:{date}:{up}:{down}",
                "iccid": iccid,
                "start": format_rfc3339(start),
                "end": format_rfc3339(end),
                "bytes_up": d_up,
                "bytes_down": d_down,
            }
        )
    return out, mark
