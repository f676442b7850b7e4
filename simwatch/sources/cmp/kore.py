"""The KORE Super SIM adapter (PLATFORMS.md section 4): hourly usage records per SIM.

* SIMs: ``GET /v1/Sims?PageSize=`` (Sim resource, [T3]) -> ``{sims: [{sid, iccid, …}],
  meta {next_page_url}}``; maps each SIM's ``sid`` (``HS…``) to its ICCID. Configured
  ``iccids`` narrow the fleet to those SIMs.
* Usage: ``GET /v1/UsageRecords?Group=sim&Granularity=hour&StartTime=&EndTime=
  &PageSize=`` -> ``{usage_records: [{sim_sid, period {start_time, end_time},
  data_upload, data_download, data_total}], meta {key, next_page_url, …}}``; pages
  follow ``meta.next_page_url`` until it is null. Grouped by SIM, one query covers the
  whole fleet (calls grow with records, not with SIMs). ``sim_sid`` is set because the
  records are grouped by SIM.
* An hour's totals can still grow while usage is processed, so the adapter keeps the
  last totals per (SIM, hour) (``marks``) and emits the increase as a ``usage`` record
  over the hour: ``data_upload`` -> ``bytes_up`` (sent by the device),
  ``data_download`` -> ``bytes_down``; ``record_id``
  ``kore:<sim_sid>:<start>:<upload>:<download>``, derived from the upstream totals.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from simwatch.core.timeutil import format_rfc3339, parse_rfc3339
from simwatch.sources.cmp.base import AdapterError, Record, growth, normalize_time, obj, text, whole

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["kore_next", "kore_sims", "kore_usage"]


def _items(body: object, key: str) -> list[object]:
    if not isinstance(body, dict) or not isinstance(body.get(key), list):
        raise AdapterError(f"expected {{'{key}': [...], 'meta': {{...}}}}")
    items: list[object] = body[key]
    return items


def kore_next(body: object) -> str | None:
    """``meta.next_page_url`` (None on the last page)."""
    return text(obj(obj(body).get("meta")).get("next_page_url"))


def kore_sims(body: object) -> dict[str, str]:
    """A Sims page -> SIM sid -> ICCID."""
    out: dict[str, str] = {}
    for raw in _items(body, "sims"):
        sid, iccid = text(obj(raw).get("sid")), text(obj(raw).get("iccid"))
        if sid is not None and iccid is not None:
            out[sid] = iccid
    return out


def kore_usage(
    body: object,
    sims: Mapping[str, str],
    marks: Mapping[str, tuple[int, int]],
    now: float | None = None,
) -> tuple[list[Record], dict[str, tuple[int, int]], int]:
    """A UsageRecords page -> usage records for what grew since ``marks`` (keyed
    ``<sim_sid>|<start>``), the page's new marks, and records skipped (unknown SIM...).

    The hour still running ends in the future: its record ends at ``now`` instead (the
    bytes so far were sent by then; a record from the future is refused by ingest).
    """
    out: list[Record] = []
    seen: dict[str, tuple[int, int]] = {}
    skipped = 0
    for raw in _items(body, "usage_records"):
        item = obj(raw)
        sid = text(item.get("sim_sid"))
        period = obj(item.get("period"))
        start, end = (
            normalize_time(period.get("start_time")),
            normalize_time(period.get("end_time")),
        )
        up, down = whole(item.get("data_upload")), whole(item.get("data_download"))
        iccid = sims.get(sid) if sid is not None else None
        if iccid is None or start is None or end is None or up is None or down is None:
            skipped += 1
            continue
        if now is not None and parse_rfc3339(end) > now:
            end = format_rfc3339(max(now, parse_rfc3339(start)))
        key = f"{sid}|{start}"
        d_up, d_down = growth(marks, seen, key, up, down)
        if d_up + d_down == 0:
            continue
        out.append(
            {
                "kind": "usage",
                "record_id": f"kore:{sid}:{start}:{up}:{down}",
                "iccid": iccid,
                "start": start,
                "end": end,
                "bytes_up": d_up,
                "bytes_down": d_down,
            }
        )
    return out, seen, skipped
