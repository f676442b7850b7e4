"""The 1NCE adapter (PLATFORMS.md 2): events (v2, v1 and Data Streamer), usage, SIM list.

Pure mapping, no I/O and no clock ("now" is an argument), shared by the poller and the
Data Streamer (push) receiver.

* Events. v2 events (``GET /v2/sims/{iccid}/events``, a JSON array) and the Data Streamer
  event records (v1 ``1nce-ds-event-*``, platform 2.0 ``1nce-v2-ds-*``) have the emnify
  event shape: :func:`records_from_event` maps them by ``event_type.id`` as
  ``simwatch.sources.cmp.emnify.map_event`` documents (including ``detail.
  data_service_failure_cause`` and ``detail.update_location_failure_reason``), with
  ``record_id`` ``1nce:e:<id>``. v1 ``SIM_Event`` items (``GET /v1/sims/{iccid}/events`` ->
  ``{"events": [...], "totalEvents", "totalPages"}``) have no id and a free-text
  ``event_type``: one whose text is a documented type description ("Update location",
  "Create PDP Context", "Purge location" ...) maps like that type, with ``mcc``/``mnc``
  from the item and ``event_severity`` "Info" or more; others (SIM status changes) map to
  nothing. Their ``record_id`` ``1nce:v1:<hash>`` is a hash of the item's content (ICCID,
  timestamp, text and the other fields), so a page read again gives the same ids.
* Usage. Data Streamer usage records (v1 and v2 shapes) map as emnify's
  (:func:`records_from_usage`: data only; SMS, traffic type 6, map to nothing), with
  ``record_id`` ``1nce:u:<id>``. REST daily usage, below.
* ``GET /v1/sims/{iccid}/usage?start_dt=YYYY-MM-DD&end_dt=YYYY-MM-DD`` ->
  ``{"stats": [{"date": "2021-06-30T00:00:00.000Z", "data": {"volume": MB,
  "volume_tx": MB, "volume_rx": MB}, "sms": {...}}]}`` (numbers or numeric strings; the
  ``sms`` counts are never data). A day's figures are running totals for that UTC day, so
  each poll emits the *increase* since the last committed figures as a ``usage`` record
  over ``[day start, min(day end, now)]``, with ``record_id``
  ``1nce:<iccid>:u:<date>:<up>:<down>`` (the totals it reports).
* ``GET /v1/sims`` (paged, ``pageSize`` <= 100) -> a JSON array of SIMs; :func:`sim_iccids`
  takes their ``iccid`` (19 digits, kept as given).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

import orjson

from simwatch.core.timeutil import format_rfc3339, parse_rfc3339
from simwatch.sources.cmp.base import (
    DAY_S,
    AdapterError,
    Record,
    mb_to_bytes,
    normalize_time,
    obj,
    text,
)
from simwatch.sources.cmp.emnify import map_event, map_usage

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "BASE_PATH",
    "MAX_EVENTS_PAGE",
    "MAX_SIMS_PAGE",
    "OnceUsageMark",
    "event_time",
    "events_v1",
    "once_usage",
    "records_from_event",
    "records_from_usage",
    "sim_iccids",
    "v1_record_id",
]

PREFIX: Final = "1nce"
BASE_PATH: Final = "/management-api"  # the API's server path (PLATFORMS.md 2.1)
MAX_SIMS_PAGE: Final = 100  # GET /v1/sims pageSize maximum (PLATFORMS.md 2.2)
MAX_EVENTS_PAGE: Final = 1000  # GET /v1|v2/sims/{iccid}/events pageSize maximum
# v1 SIM_Event free-text event_type -> the documented type id (PLATFORMS.md 1.3, 2.4)
_V1_TYPES: Final[Mapping[str, int]] = {
    "generic": 0,
    "update location": 1,
    "update gprs location": 2,
    "create pdp context": 3,
    "update pdp context": 4,
    "delete pdp context": 5,
    "endpoint blocked": 11,
    "purge location": 15,
    "purge gprs location": 16,
    "quota used up": 19,
}
_INFO: Final = "info"


def records_from_event(event: Mapping[str, object], iccid: str | None = None) -> list[Record]:
    """One 1NCE event (v2 / Data Streamer v1 or v2 shape, or a v1 ``SIM_Event``) -> records.

    ``iccid`` is the SIM polled, used when the event names none.
    """
    if isinstance(event.get("event_type"), str):
        return _v1_event(event, iccid)
    return map_event(event, prefix=PREFIX, iccid=iccid)


def records_from_usage(usage: Mapping[str, object], iccid: str | None = None) -> list[Record]:
    """One 1NCE Data Streamer usage record (v1 or v2 shape) -> ``[usage]``; [] for SMS."""
    return map_usage(usage, prefix=PREFIX, iccid=iccid)


def v1_record_id(event: Mapping[str, object], iccid: str | None) -> str:
    """A stable id from a v1 event's content (it has none): same content, same id."""
    content = dict(event)
    content.setdefault("iccid", iccid)
    digest = hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return f"{PREFIX}:v1:{digest[:32]}"


def _v1_event(event: Mapping[str, object], iccid: str | None) -> list[Record]:
    what = text(event.get("event_type")) or ""
    tid = _V1_TYPES.get(" ".join(what.lower().split()))
    if tid is None:
        return []
    severity = (text(event.get("event_severity")) or _INFO).lower()
    shaped: dict[str, object] = {
        "id": v1_record_id(event, iccid).removeprefix(f"{PREFIX}:"),
        "timestamp": event.get("timestamp"),
        "event_type": {"id": tid, "description": what},
        "event_severity": {"id": 0 if severity == _INFO else 1},
        "description": event.get("description") or what,
        "iccid": event.get("iccid"),
        "mcc": event.get("mcc"),
        "mnc": event.get("mnc"),
        "detail": {"pdp_context": {"mcc": event.get("mcc"), "mnc": event.get("mnc")}},
    }
    out = map_event(shaped, prefix=PREFIX, iccid=iccid)
    for rec in out:  # the id is the content hash, not an "e:" event id
        rec["record_id"] = f"{PREFIX}:{shaped['id']}"
    return out


def events_v1(body: object) -> tuple[list[Mapping[str, object]], int | None]:
    """A v1 ``EventCollection`` page -> its items and ``totalPages``."""
    if not isinstance(body, dict) or not isinstance(body.get("events"), list):
        raise AdapterError("expected {'events': [...], 'totalPages': N}")
    pages = body.get("totalPages")
    total = pages if isinstance(pages, int) and not isinstance(pages, bool) else None
    return [e for e in body["events"] if isinstance(e, dict)], total


def event_time(event: Mapping[str, object]) -> float | None:
    """An event's ``timestamp`` as epoch seconds (None if unreadable)."""
    ts = normalize_time(event.get("timestamp"))
    return parse_rfc3339(ts) if ts is not None else None


def sim_iccids(body: object) -> list[str]:
    """The ICCIDs of a ``GET /v1/sims`` page (a JSON array of SIMs)."""
    if not isinstance(body, list):
        raise AdapterError("expected a JSON array of SIMs")
    return [i for s in body if (i := text(obj(s).get("iccid"))) is not None]


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
