"""Pure mappings from connectivity-management-platform (CMP) shapes to FORMATS.md records.

The poller (``simwatch.sources.cmp.source``) does the HTTP; this module only turns parsed JSON
into FORMATS.md dicts (``kind``, ``record_id``, ``iccid`` ...). Nothing here does I/O or
reads a clock: "now" is an argument. Every ``record_id`` is derived from the upstream
record alone (its id, or the upstream values it reports), so a re-delivery after a
retry or a restart produces the same id and the engine counts it once.

Units: the platforms report volumes in megabytes; ``1 MB = 1_000_000 bytes`` (decimal,
as billed), rounded to the nearest byte. "tx" is what the device transmitted
(``bytes_up``), "rx" what it received (``bytes_down``). Times are normalised to RFC 3339
UTC (``2026-11-20T10:15:00Z``); ``+0000`` offsets and a space instead of ``T`` (as the
emnify and Cisco APIs write them) are accepted, as are epoch seconds/milliseconds.

Shapes accepted
---------------

generic -- the CMP serves FORMATS.md records itself::

    GET {base}/records?since=<cursor>&limit=<n>
    -> {"records": [<FORMATS.md record>, ...], "next": "<cursor>" | null}

  ``next`` is the opaque cursor to pass as ``since`` for the records after this page;
  ``null`` means the server has no cursor to give (the poller keeps its own). A page
  shorter than ``limit`` is the last one. Records pass through unchanged.

emnify -- ``GET /api/v1/event?page=N&per_page=M&sort=-id`` -> a JSON array, newest first.
  Pagination: response headers ``X-Current-Page`` and ``X-Total-Pages`` (also
  ``X-Count-Per-Page``, ``X-Total-Count``); without them a short page is the last.
  The poller stops at the first id it has already seen. Items:

  * events ``{"id": 7, "timestamp": "2026-11-20T10:00:00.000+0000",
    "event_type": {"id": 1, "description": "Update location"}, "description": "...",
    "sim": {"iccid": "..."}, "detail": {"pdp_context": {"apn", "mcc", "mnc",
    "rat_type", "tx_teid", "pdp_context_id"}, "volume": {"rx": MB, "tx": MB},
    "network"/"operator": {"mcc", "mnc"} or {"country": {"mcc"}, "mnc": ...}}}``.
    ``event_type.description`` (case-insensitive) maps as in ``EVENT_TYPE_MAP``:
    location updates -> ``event/location_update``; purges -> ``event/purge``;
    "Create PDP Context", "PDP Context Established", "Data Session Established" ->
    ``session/started``; "PDP Context Updated"/"Data Session Updated" ->
    ``session/interim``; "Delete PDP Context", "PDP Context Deleted", "Data Session
    Deleted" -> ``session/ended`` (``detail.volume`` gives the session totals);
    "Authentication failed" -> ``event/auth_failure``; "Create PDP Context rejected"
    -> ``event/pdp_reject`` (the item's ``description`` becomes ``cause``). Other
    event types (SMS, portal actions) are skipped. ``session_id`` is
    ``pdp_context.tx_teid``, else ``pdp_context.pdp_context_id``, else the ICCID.
    ``rat_type`` numbers are 3GPP TS 29.274 RAT types (6 -> ``LTE``, 8 -> ``NB-IoT``,
    9 -> ``LTE-M`` ...); strings are kept. ``record_id`` is ``emnify:e:<id>``.
  * usage records (the emnify usage-record shape) ``{"id", "start_timestamp",
    "end_timestamp", "volume": {"rx": MB, "tx": MB, "total": MB}, "sim": {"iccid"},
    "operator": {...}, "apn"?}`` -> ``usage``; ``record_id`` is ``emnify:u:<id>``.

1nce -- per SIM (``settings.iccids``):

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

cisco (IoT Control Center) -- per SIM:

  * ``GET /rws/api/v1/devices/{iccid}/sessionInfo`` -> ``{"iccid", "ipAddress",
    "dateSessionStarted", "dateSessionEnded"}`` (the current or last session; dates may
    be null). A start not seen before gives ``session/started``; an end not seen before
    gives ``session/ended``. Cisco has no session id: ``session_id`` is
    ``<iccid>:<start>``. A session that starts and ends wholly between two polls is
    invisible to this endpoint.
  * ``GET /rws/api/v1/devices/{iccid}/ctdUsages`` -> ``{"ctdDataUsage": bytes}``
    (cycle to date). Each poll emits the increase since the last committed figure as a
    ``usage`` record over ``[last poll, now]`` (a drop means a new billing cycle: the
    whole figure is new). The direction is unknown: the delta goes to ``bytes_down``.
    The first poll of a SIM only sets the mark.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

from simwatch.core.timeutil import TimeParseError, format_rfc3339, parse_rfc3339

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "BYTES_PER_MB",
    "EVENT_TYPE_MAP",
    "AdapterError",
    "CiscoSessionMark",
    "CiscoUsageMark",
    "OnceUsageMark",
    "cisco_session",
    "cisco_usage",
    "emnify_item",
    "generic_page",
    "item_id",
    "items_of",
    "mb_to_bytes",
    "normalize_time",
    "once_usage",
]

BYTES_PER_MB: Final = 1_000_000
DAY_S: Final = 86_400

Record = dict[str, object]

# event_type.description (lower case) -> (kind, status or event type)
EVENT_TYPE_MAP: Final[Mapping[str, tuple[str, str]]] = {
    "update location": ("event", "location_update"),
    "update gprs location": ("event", "location_update"),
    "purge location": ("event", "purge"),
    "purge gprs location": ("event", "purge"),
    "create pdp context": ("session", "started"),
    "pdp context established": ("session", "started"),
    "data session established": ("session", "started"),
    "update pdp context": ("session", "interim"),
    "pdp context updated": ("session", "interim"),
    "data session updated": ("session", "interim"),
    "delete pdp context": ("session", "ended"),
    "pdp context deleted": ("session", "ended"),
    "data session deleted": ("session", "ended"),
    "authentication failed": ("event", "auth_failure"),
    "authentication failure": ("event", "auth_failure"),
    "create pdp context rejected": ("event", "pdp_reject"),
    "pdp context rejected": ("event", "pdp_reject"),
}

# 3GPP TS 29.274 8.17 RAT Type values.
_RAT_TYPES: Final[Mapping[int, str]] = {
    1: "3G",
    2: "2G",
    3: "WLAN",
    4: "GAN",
    5: "HSPA",
    6: "LTE",
    7: "virtual",
    8: "NB-IoT",
    9: "LTE-M",
    10: "5G",
}


class AdapterError(ValueError):
    """A response whose overall shape is not the documented one (the poll fails)."""


# ------------------------------------------------------------------ small helpers


def _obj(value: object) -> Mapping[str, object]:
    return value if isinstance(value, dict) else {}


def _str(value: object) -> str | None:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def mb_to_bytes(value: object) -> int | None:
    """Megabytes (a number or numeric string) as whole bytes; None if not a volume."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        return None
    return round(value * BYTES_PER_MB)


def normalize_time(value: object) -> str | None:  # noqa: PLR0911 - flat dispatch on type
    """An upstream timestamp as RFC 3339; None if it cannot be read."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            return None
        return format_rfc3339(value / 1000 if value > 1e11 else value)
    if not isinstance(value, str) or not value:
        return None
    try:
        return format_rfc3339(parse_rfc3339(value))
    except TimeParseError:
        pass
    try:
        parsed = datetime.fromisoformat(value.strip().replace(" ", "T", 1))
    except ValueError:
        return None
    if parsed.tzinfo is None:  # no offset: the platforms document UTC
        parsed = parsed.replace(tzinfo=UTC)
    return format_rfc3339(parsed.timestamp())


def _mcc(value: object) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:03d}"
    return _str(value)


def _mnc(value: object) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:02d}"  # an integer MNC loses its padding; two digits assumed
    if isinstance(value, list) and value:  # emnify operators list their MNCs
        return _mnc(_obj(value[0]).get("mnc"))
    return _str(value)


def _rat(value: object) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return _RAT_TYPES.get(value)
    if isinstance(value, dict):
        return _rat(value.get("description") or value.get("id"))
    return _str(value)


def _network(*sources: Mapping[str, object]) -> tuple[str | None, str | None]:
    """MCC/MNC from the first source that has them (flat, or an operator with a country)."""
    for src in sources:
        for cand in (src, _obj(src.get("network")), _obj(src.get("operator"))):
            mcc = _mcc(cand.get("mcc")) or _mcc(_obj(cand.get("country")).get("mcc"))
            mnc = _mnc(cand.get("mnc"))
            if mcc is not None and mnc is not None:
                return mcc, mnc
    return None, None


def _put(rec: Record, key: str, value: object) -> None:
    if value is not None:
        rec[key] = value


def _iccid_of(item: Mapping[str, object], default: str | None) -> str | None:
    return (
        _str(_obj(item.get("sim")).get("iccid"))
        or _str(item.get("iccid"))
        or _str(_obj(item.get("endpoint")).get("iccid"))
        or default
    )


# ------------------------------------------------------------------ generic


def generic_page(body: object) -> tuple[list[Record], str | None, int]:
    """``{"records": [...], "next": cursor|null}`` -> (records, next cursor, non-objects)."""
    if not isinstance(body, dict):
        raise AdapterError("expected an object with 'records' and 'next'")
    records = body.get("records")
    nxt = body.get("next")
    if not isinstance(records, list):
        raise AdapterError("field 'records' is not a list")
    if nxt is not None and not isinstance(nxt, str | int):
        raise AdapterError("field 'next' is not a string or null")
    out: list[Record] = [r for r in records if isinstance(r, dict)]
    return out, (str(nxt) if nxt is not None else None), len(records) - len(out)


# ------------------------------------------------------------------ emnify / 1NCE items


def items_of(body: object) -> list[Mapping[str, object]]:
    """A page of items: a JSON array (or an object holding one under a known key)."""
    if isinstance(body, dict):
        for key in ("items", "events", "data"):
            if isinstance(body.get(key), list):
                body = body[key]
                break
    if not isinstance(body, list):
        raise AdapterError("expected a JSON array of items")
    return [item for item in body if isinstance(item, dict)]


def item_id(item: Mapping[str, object]) -> int | None:
    """The item's numeric id (the incremental cursor), if it has one."""
    value = item.get("id")
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def emnify_item(
    item: Mapping[str, object], *, prefix: str = "emnify", iccid: str | None = None
) -> Record | None:
    """One emnify (or 1NCE) event or usage item -> a record; None when not mapped."""
    rid = _str(item.get("id"))
    sim_iccid = _iccid_of(item, iccid)
    if rid is None or sim_iccid is None:
        return None
    if "event_type" in item:
        return _emnify_event(item, f"{prefix}:e:{rid}", sim_iccid)
    if "volume" in item:
        return _emnify_usage(item, f"{prefix}:u:{rid}", sim_iccid)
    return None


def _emnify_event(item: Mapping[str, object], rid: str, iccid: str) -> Record | None:
    etype = item.get("event_type")
    desc = _obj(etype).get("description") if isinstance(etype, dict) else etype
    if not isinstance(desc, str):
        return None
    mapped = EVENT_TYPE_MAP.get(" ".join(desc.lower().split()))
    ts = normalize_time(item.get("timestamp"))
    if mapped is None or ts is None:
        return None
    kind, what = mapped
    detail = _obj(item.get("detail"))
    pdp = _obj(detail.get("pdp_context"))
    mcc, mnc = _network(pdp, detail, item)
    rec: Record = {"kind": kind, "record_id": rid, "iccid": iccid, "ts": ts}
    _put(rec, "apn", _str(pdp.get("apn")) or _str(item.get("apn")))
    _put(rec, "mcc", mcc)
    _put(rec, "mnc", mnc)
    _put(rec, "rat", _rat(pdp.get("rat_type")))
    if kind == "event":
        rec["type"] = what
        _put(rec, "cause", _str(item.get("description")))
        return rec
    rec["status"] = what
    rec["session_id"] = _str(pdp.get("tx_teid")) or _str(pdp.get("pdp_context_id")) or f"{iccid}"
    volume = _obj(detail.get("volume"))
    up = mb_to_bytes(volume.get("tx"))
    down = mb_to_bytes(volume.get("rx"))
    if what != "started" and (up is not None or down is not None):
        rec["bytes_up"] = up or 0
        rec["bytes_down"] = down or 0
    return rec


def _emnify_usage(item: Mapping[str, object], rid: str, iccid: str) -> Record | None:
    end = normalize_time(item.get("end_timestamp") or item.get("timestamp"))
    start = normalize_time(item.get("start_timestamp")) or end
    volume = _obj(item.get("volume"))
    up = mb_to_bytes(volume.get("tx"))
    down = mb_to_bytes(volume.get("rx"))
    if end is None or start is None or (up is None and down is None):
        return None
    mcc, mnc = _network(item)
    rec: Record = {
        "kind": "usage",
        "record_id": rid,
        "iccid": iccid,
        "start": start,
        "end": end,
        "bytes_up": up or 0,
        "bytes_down": down or 0,
    }
    _put(rec, "apn", _str(item.get("apn")) or _str(_obj(item.get("pdp_context")).get("apn")))
    _put(rec, "mcc", mcc)
    _put(rec, "mnc", mnc)
    _put(rec, "rat", _rat(item.get("rat_type")))
    return rec


# ------------------------------------------------------------------ 1NCE usage


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
        e = _obj(entry)
        date = _str(e.get("date"))
        if date is None or _day_start(date[:10]) is None:
            continue
        data = _obj(e.get("data"))
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


# ------------------------------------------------------------------ Cisco Control Center


@dataclass(frozen=True, slots=True)
class CiscoSessionMark:
    """The session start/end last reported for a SIM (RFC 3339, or None)."""

    started: str | None
    ended: str | None


@dataclass(frozen=True, slots=True)
class CiscoUsageMark:
    """The last committed cycle-to-date bytes of a SIM, and when they were read."""

    ctd: int
    at: float


def cisco_session(
    iccid: str, body: object, prev: CiscoSessionMark | None
) -> tuple[list[Record], CiscoSessionMark]:
    """``sessionInfo`` -> session started/ended records not reported before, and the mark."""
    if not isinstance(body, dict):
        raise AdapterError("expected a sessionInfo object")
    started = normalize_time(body.get("dateSessionStarted"))
    ended = normalize_time(body.get("dateSessionEnded")) if started is not None else None
    mark = CiscoSessionMark(started, ended)
    if started is None:
        return [], mark
    sid = f"{iccid}:{started}"
    out: list[Record] = []
    same = prev is not None and prev.started == started
    if not same:
        out.append(
            {
                "kind": "session",
                "record_id": f"cisco:{iccid}:s:{started}:started",
                "iccid": iccid,
                "session_id": sid,
                "status": "started",
                "ts": started,
            }
        )
    if ended is not None and not (same and prev is not None and prev.ended == ended):
        out.append(
            {
                "kind": "session",
                "record_id": f"cisco:{iccid}:s:{started}:ended",
                "iccid": iccid,
                "session_id": sid,
                "status": "ended",
                "ts": ended,
            }
        )
    return out, mark


def cisco_usage(
    iccid: str, body: object, prev: CiscoUsageMark | None, now: float
) -> tuple[list[Record], CiscoUsageMark]:
    """``ctdUsages`` -> a usage record for the increase since ``prev``, and the new mark."""
    value = _obj(body).get("ctdDataUsage")
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise AdapterError("field 'ctdDataUsage' is not a byte count")
    mark = CiscoUsageMark(value, now)
    if prev is None:
        return [], mark
    delta = value - prev.ctd if value >= prev.ctd else value  # a drop: new billing cycle
    if delta == 0:
        return [], mark
    rec: Record = {
        "kind": "usage",
        "record_id": f"cisco:{iccid}:u:{prev.at:.0f}:{value}",
        "iccid": iccid,
        "start": format_rfc3339(min(prev.at, now)),
        "end": format_rfc3339(now),
        "bytes_up": 0,
        "bytes_down": delta,
    }
    return [rec], mark
