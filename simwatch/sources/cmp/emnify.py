"""The emnify adapter: its event records and Data Streamer usage records (PLATFORMS.md 1).

Pure mapping, no I/O and no clock, shared by the REST poller (``GET /api/v1/event``) and
the Data Streamer (push) receiver, whose payloads carry the same event / usage shapes
(PLATFORMS.md 1.3, 1.4, 1.5). 1NCE's Data Streamer and v2 events share the event shape
(``simwatch.sources.cmp.onence`` calls :func:`map_event` with its own prefix).

Events are classified by ``event_type.id`` (PLATFORMS.md 1.3), never by
``event_type.description``:

* 1 / 2 Update (GPRS) location -> ``event/location_update``; ``detail`` is the visited
  operator: ``mcc`` = ``detail.country.mcc``, ``mnc`` = the first of ``detail.mnc[]``
  (an operator can list several MNCs; the first listed keeps one partner per operator).
  A ``detail.update_location_failure_reason`` (1NCE v2) makes it ``event/attach_reject``
  with the reason verbatim as ``cause``.
* 3 Create PDP Context from source Network with severity Info -> ``session/started``
  keyed by ``detail.session_id`` (else ``pdp_context.ipcan_session_id``, else
  ``pdp_context.pdp_context_id``). The same type 3 from Policy Control or with severity
  Warn or more (no ``detail``), or with a ``detail.data_service_failure_cause`` (1NCE v2), is
  a rejected request: ``event/quota_exhausted`` when the cause is a quota one (a 1NCE code
  ``NO_QUOTA_FOUND`` ``QUOTA_EXPIRED`` ``QUOTA_EXHAUSTED`` ``MONTHLY_USAGE_LIMIT_EXCEEDED``,
  or a description saying "no quota" / "quota … exhausted"), ``event/blocked`` when the
  description says the endpoint is blocked (or ``DATA_SERVICE_BARRED``), else
  ``event/pdp_reject``. ``cause`` is the failure code if given, else the description.
* 4 Update PDP Context (1NCE Data Streamer) -> ``session/interim`` (running totals).
* 5 Delete PDP Context -> ``session/ended`` with ``detail.volume`` (MB) as bytes
  (``tx`` = ``bytes_up``, ``rx`` = ``bytes_down``); ``INACTIVITY_TIMER_EXPIRED`` gives
  ``end_cause`` ``idle_timeout``.
* 15 / 16 Purge (GPRS) location -> ``event/purge``.
* 0 Generic from Policy Control -> ``event/throttled`` (data disconnected to apply a
  throttling action or a quota change), or ``event/blocked`` when the description says the
  endpoint was disabled (1NCE). Generic events from other sources are skipped.
* 11 Endpoint blocked, 12 Organisation blocked -> ``event/blocked`` (an organisation
  block has no SIM, ``sim: null``, so it maps to nothing per SIM).
* 19 Quota used up -> ``event/quota_exhausted``.

Every other type (SIM lifecycle, quota thresholds, SMS quota, 6 / 7 user and
application authentication failures, which concern portal users, not SIMs) maps to
nothing. ``EVENT_TYPE_IDS`` lists the ids that map, for the poller's ``q=type:`` filter.
``record_id`` is ``emnify:e:<id>`` (``emnify:u:<id>`` for usage records).

Usage records (Data Streamer): ``traffic_type.id`` 5 Data -> ``usage`` over
``[start_timestamp, end_timestamp]`` (swapped when given the wrong way round, as in a 1NCE
example) with ``volume.tx``/``rx`` MB as bytes. Traffic type 6 SMS (``volume`` is a
message count) maps to nothing: an SMS never counts as data.

ICCIDs are kept as the platform gives them (19 digits without the Luhn digit).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from simwatch.core.timeutil import format_rfc3339
from simwatch.sources.cmp.base import (
    AdapterError,
    Record,
    iccid_of,
    mb_to_bytes,
    mcc_of,
    mnc_of,
    normalize_time,
    obj,
    put,
    rat_of,
    text,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "EVENT_TYPE_IDS",
    "QUOTA_CAUSES",
    "event_queries",
    "item_id",
    "items_of",
    "map_event",
    "map_usage",
    "records_from_event",
    "records_from_usage",
]

# event_type.id values that map to a record (PLATFORMS.md 1.3)
GENERIC: Final = 0
UPDATE_LOCATION: Final = frozenset({1, 2})
CREATE_PDP: Final = 3
UPDATE_PDP: Final = 4  # 1NCE Data Streamer only
DELETE_PDP: Final = 5
BLOCKED: Final = frozenset({11, 12})
PURGE: Final = frozenset({15, 16})
QUOTA_USED_UP: Final = 19
EVENT_TYPE_IDS: Final[tuple[int, ...]] = (0, 1, 2, 3, 5, 11, 12, 15, 16, 19)

# /api/v1/event (PLATFORMS.md 1.2): up to 6 values per filter, 10 req/s burst 5, 30 days
MAX_FILTER_VALUES: Final = 6
EVENT_RATE_PER_S: Final = 10.0
MIN_WAIT_S: Final = 1e-3  # a shorter wait is not worth a sleep
HISTORY_S: Final = 30 * 86_400
OVERLAP_S: Final = 300.0  # each poll re-reads this much before its cursor (late events)

SOURCE_POLICY_CONTROL: Final = 1
TRAFFIC_DATA: Final = 5
TRAFFIC_SMS: Final = 6

# 1NCE v2 data_service_failure_cause values (PLATFORMS.md 2.3)
QUOTA_CAUSES: Final = frozenset(
    {"NO_QUOTA_FOUND", "QUOTA_EXPIRED", "QUOTA_EXHAUSTED", "MONTHLY_USAGE_LIMIT_EXCEEDED"}
)
_BLOCKED_CAUSES: Final = frozenset({"DATA_SERVICE_BARRED"})
_END_CAUSES: Final[Mapping[str, str]] = {"INACTIVITY_TIMER_EXPIRED": "idle_timeout"}


def items_of(body: object) -> list[Mapping[str, object]]:
    """A page of items: a JSON array (emnify sends collections without an envelope)."""
    if not isinstance(body, list):
        raise AdapterError("expected a JSON array of items")
    return [item for item in body if isinstance(item, dict)]


def event_queries(start: float, end: float) -> list[str]:
    """The ``q`` values asking ``/api/v1/event`` for the mapped types in ``[start, end]``.

    ``type`` takes at most ``MAX_FILTER_VALUES`` values, so the ids go in several queries;
    ``from`` and ``until`` (``YYYY-MM-DDTHH:mm:ssZ``) are only accepted together.
    """
    span = f"from:{format_rfc3339(start)},until:{format_rfc3339(end)}"
    ids = EVENT_TYPE_IDS
    return [
        f"type:{'|'.join(str(t) for t in ids[i : i + MAX_FILTER_VALUES])},{span}"
        for i in range(0, len(ids), MAX_FILTER_VALUES)
    ]


def item_id(item: Mapping[str, object]) -> int | None:
    """The item's numeric id (the incremental cursor), if it has one."""
    value = item.get("id")
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def records_from_event(event: Mapping[str, object]) -> list[Record]:
    """One emnify event (REST or Data Streamer) -> FORMATS.md records ([] when not mapped)."""
    return map_event(event, prefix="emnify")


def records_from_usage(usage: Mapping[str, object]) -> list[Record]:
    """One emnify Data Streamer usage record -> ``[usage]``; [] for SMS or no volume."""
    return map_usage(usage, prefix="emnify")


def _id_of(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _type_id(event: Mapping[str, object]) -> int | None:
    etype = event.get("event_type")
    return _id_of(obj(etype).get("id")) if isinstance(etype, dict) else None


def _is_policy_reject(event: Mapping[str, object]) -> bool:
    source = _id_of(obj(event.get("event_source")).get("id"))
    severity = _id_of(obj(event.get("event_severity")).get("id"))
    return source == SOURCE_POLICY_CONTROL or (severity is not None and severity >= 1)


def _reject_type(code: str | None, description: str | None) -> str:
    """The FORMATS.md event type of a refused PDP context request."""
    if code is not None:
        if code in QUOTA_CAUSES:
            return "quota_exhausted"
        return "blocked" if code in _BLOCKED_CAUSES else "pdp_reject"
    desc = (description or "").lower()
    if "no quota" in desc or ("quota" in desc and "exhausted" in desc):
        return "quota_exhausted"
    if "blocked" in desc:
        return "blocked"
    return "pdp_reject"


def map_event(  # noqa: PLR0911 - one flat dispatch on the documented type ids
    event: Mapping[str, object], *, prefix: str, iccid: str | None = None
) -> list[Record]:
    """An event in the emnify shape -> records; ``prefix`` names the platform in record_id.

    ``iccid`` is used when the event names no SIM (a per-SIM feed).
    """
    eid = text(event.get("id"))
    tid = _type_id(event)
    sim_iccid = iccid_of(event, iccid)
    ts = normalize_time(event.get("timestamp"))
    if eid is None or tid is None or sim_iccid is None or ts is None:
        return []
    detail = obj(event.get("detail"))
    pdp = obj(detail.get("pdp_context"))
    description = text(event.get("description"))
    rec: Record = {"kind": "event", "record_id": f"{prefix}:e:{eid}", "iccid": sim_iccid, "ts": ts}
    if tid in UPDATE_LOCATION:
        put(rec, "mcc", mcc_of(obj(detail.get("country")).get("mcc")) or mcc_of(event.get("mcc")))
        put(rec, "mnc", mnc_of(detail.get("mnc")) or mnc_of(event.get("mnc")))
        reason = text(detail.get("update_location_failure_reason"))
        rec["type"] = "location_update" if reason is None else "attach_reject"
        put(rec, "cause", reason)
        return [rec]
    if tid in PURGE:
        rec["type"] = "purge"
        return [rec]
    if tid == CREATE_PDP:
        code = text(detail.get("data_service_failure_cause"))
        if code is not None or _is_policy_reject(event):
            rec["type"] = _reject_type(code, description)
            put(rec, "cause", code or description)
            _put_pdp(rec, pdp, detail)
            return [rec]
        return [_session(rec, "started", pdp, detail, sim_iccid)]
    if tid == UPDATE_PDP:
        return [_session(rec, "interim", pdp, detail, sim_iccid)]
    if tid == DELETE_PDP:
        return [_session(rec, "ended", pdp, detail, sim_iccid)]
    if tid == GENERIC:
        if not _is_policy_reject(event):
            return []
        disabled = description is not None and "disabled" in description.lower()
        rec["type"] = "blocked" if disabled else "throttled"
    elif tid in BLOCKED:
        rec["type"] = "blocked"
    elif tid == QUOTA_USED_UP:
        rec["type"] = "quota_exhausted"
    else:
        return []
    put(rec, "cause", description)
    return [rec]


def _put_pdp(rec: Record, pdp: Mapping[str, object], detail: Mapping[str, object]) -> None:
    put(rec, "apn", text(pdp.get("apn")))
    put(rec, "mcc", mcc_of(pdp.get("mcc")) or mcc_of(obj(detail.get("country")).get("mcc")))
    put(rec, "mnc", mnc_of(pdp.get("mnc")))
    put(rec, "rat", rat_of(pdp.get("rat_type")))


def _session(
    rec: Record,
    status: str,
    pdp: Mapping[str, object],
    detail: Mapping[str, object],
    iccid: str,
) -> Record:
    rec["kind"] = "session"
    rec["session_id"] = (
        text(detail.get("session_id"))
        or text(pdp.get("ipcan_session_id"))
        or text(pdp.get("pdp_context_id"))
        or iccid
    )
    rec["status"] = status
    _put_pdp(rec, pdp, detail)
    if status != "started":
        volume = obj(detail.get("volume"))
        up, down = mb_to_bytes(volume.get("tx")), mb_to_bytes(volume.get("rx"))
        if up is not None or down is not None:
            rec["bytes_up"] = up or 0
            rec["bytes_down"] = down or 0
    if status == "ended":
        put(rec, "end_cause", _END_CAUSES.get(text(detail.get("data_service_failure_cause")) or ""))
    return rec


def map_usage(
    usage: Mapping[str, object], *, prefix: str, iccid: str | None = None
) -> list[Record]:
    """A usage record in the emnify Data Streamer shape -> ``[usage]``, [] for SMS."""
    uid = text(usage.get("id"))
    sim_iccid = iccid_of(usage, iccid)
    traffic = obj(usage.get("traffic_type"))
    tid = _id_of(traffic.get("id"))
    if tid is None and "sms" in (text(traffic.get("description")) or "").lower():
        tid = TRAFFIC_SMS
    if uid is None or sim_iccid is None or (tid is not None and tid != TRAFFIC_DATA):
        return []
    end = normalize_time(usage.get("end_timestamp"))
    start = normalize_time(usage.get("start_timestamp")) or end
    end = end or start
    volume = obj(usage.get("volume"))
    up, down = mb_to_bytes(volume.get("tx")), mb_to_bytes(volume.get("rx"))
    if start is None or end is None or (up is None and down is None):
        return []
    start, end = min(start, end), max(start, end)  # RFC 3339 UTC "Z": text order is time order
    operator = obj(usage.get("operator"))
    rec: Record = {
        "kind": "usage",
        "record_id": f"{prefix}:u:{uid}",
        "iccid": sim_iccid,
        "start": start,
        "end": end,
        "bytes_up": up or 0,
        "bytes_down": down or 0,
    }
    put(rec, "mcc", mcc_of(obj(operator.get("country")).get("mcc")))
    put(rec, "mnc", mnc_of(operator.get("mnc")))
    put(rec, "rat", rat_of(obj(obj(usage.get("detail")).get("pdp_context")).get("rat_type")))
    return [rec]
