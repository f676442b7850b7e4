"""The emnify adapter: its event feed and usage records (1NCE's event feed shares the shape).

``GET /api/v1/event?page=N&per_page=M&sort=-id`` -> a JSON array, newest first.
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
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from simwatch.sources.cmp.base import (
    AdapterError,
    Record,
    iccid_of,
    mb_to_bytes,
    network,
    normalize_time,
    obj,
    put,
    rat_of,
    text,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["EVENT_TYPE_MAP", "emnify_item", "item_id", "items_of"]

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
    rid = text(item.get("id"))
    sim_iccid = iccid_of(item, iccid)
    if rid is None or sim_iccid is None:
        return None
    if "event_type" in item:
        return _emnify_event(item, f"{prefix}:e:{rid}", sim_iccid)
    if "volume" in item:
        return _emnify_usage(item, f"{prefix}:u:{rid}", sim_iccid)
    return None


def _emnify_event(item: Mapping[str, object], rid: str, iccid: str) -> Record | None:
    etype = item.get("event_type")
    desc = obj(etype).get("description") if isinstance(etype, dict) else etype
    if not isinstance(desc, str):
        return None
    mapped = EVENT_TYPE_MAP.get(" ".join(desc.lower().split()))
    ts = normalize_time(item.get("timestamp"))
    if mapped is None or ts is None:
        return None
    kind, what = mapped
    detail = obj(item.get("detail"))
    pdp = obj(detail.get("pdp_context"))
    mcc, mnc = network(pdp, detail, item)
    rec: Record = {"kind": kind, "record_id": rid, "iccid": iccid, "ts": ts}
    put(rec, "apn", text(pdp.get("apn")) or text(item.get("apn")))
    put(rec, "mcc", mcc)
    put(rec, "mnc", mnc)
    put(rec, "rat", rat_of(pdp.get("rat_type")))
    if kind == "event":
        rec["type"] = what
        put(rec, "cause", text(item.get("description")))
        return rec
    rec["status"] = what
    rec["session_id"] = text(pdp.get("tx_teid")) or text(pdp.get("pdp_context_id")) or f"{iccid}"
    volume = obj(detail.get("volume"))
    up = mb_to_bytes(volume.get("tx"))
    down = mb_to_bytes(volume.get("rx"))
    if what != "started" and (up is not None or down is not None):
        rec["bytes_up"] = up or 0
        rec["bytes_down"] = down or 0
    return rec


def _emnify_usage(item: Mapping[str, object], rid: str, iccid: str) -> Record | None:
    end = normalize_time(item.get("end_timestamp") or item.get("timestamp"))
    start = normalize_time(item.get("start_timestamp")) or end
    volume = obj(item.get("volume"))
    up = mb_to_bytes(volume.get("tx"))
    down = mb_to_bytes(volume.get("rx"))
    if end is None or start is None or (up is None and down is None):
        return None
    mcc, mnc = network(item)
    rec: Record = {
        "kind": "usage",
        "record_id": rid,
        "iccid": iccid,
        "start": start,
        "end": end,
        "bytes_up": up or 0,
        "bytes_down": down or 0,
    }
    put(rec, "apn", text(item.get("apn")) or text(obj(item.get("pdp_context")).get("apn")))
    put(rec, "mcc", mcc)
    put(rec, "mnc", mnc)
    put(rec, "rat", rat_of(item.get("rat_type")))
    return rec
