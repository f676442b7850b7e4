"""KORE (formerly Twilio) Super SIM connection events pushed by Event Streams (PLATFORMS.md 4.3).

The body is one CloudEvents envelope or a JSON array of them: ``{"specversion": "1.0",
"id", "type", "source", "time", "datacontenttype": "application/json", "data": {...}}``.
``data`` is a ``SuperSim.ConnectionEvent``: ``event_sid`` (copy of the envelope id),
``event_type``, ``sim_iccid``, ``timestamp``, ``network {mcc, mnc, ...}``, ``apn``,
``rat_type``, ``data_session_sid``, the update window's ``data_upload`` /
``data_download`` (bytes) with ``data_session_update_start_time`` / ``_end_time``, the
session's cumulative ``data_session_data_upload`` / ``_download``, ``error {code,
message}``.

Types (the suffix after ``supersim.connection.``; KORE and Twilio prefixes both accepted):

* ``attachment.accepted`` -> ``event/attach``
* ``attachment.rejected`` / ``attachment.failed`` -> ``event/attach_reject``, ``cause`` =
  ``error.code`` and ``error.message`` (e.g. 83705 "Attachment Rejected Due To SIM In
  Inactive State")
* ``data-session.started`` -> ``session/started`` (``session_id`` = ``data_session_sid``)
* ``data-session.updated`` -> a ``usage`` record for the update window (bytes in it) and,
  when the cumulative fields are there, ``session/interim`` with the running totals
* ``data-session.ended`` -> ``session/ended`` (cumulative totals when given)
* ``data-session.failed`` -> ``event/pdp_reject`` with the error as ``cause``

``record_id`` is ``kore:e:<event_sid>`` (``kore:u:<event_sid>`` for the usage record):
KORE identifies one event delivered by both KORE and Twilio by ``event_sid``, so a
re-delivery, or the same event from the other system, is counted once. Any other type,
or an envelope without ``data``, is reported as not used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import orjson

from simwatch.core.records import RejectReason
from simwatch.sources.cmp.base import mcc_of, mnc_of, normalize_time, obj, put, rat_of, text
from simwatch.sources.webhook.errors import BodyError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from simwatch.sources.cmp.base import Record

__all__ = ["records_from_body", "records_from_event"]

PREFIX: Final = "kore"
_MARK: Final = "supersim.connection."
_RAW_ITEM: Final = 4096


def _bytes(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value >= 0:
        return value
    if isinstance(value, float) and value >= 0:
        return round(value)
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _cause(data: Mapping[str, object]) -> str | None:
    error = obj(data.get("error"))
    code, message = text(error.get("code")), text(error.get("message"))
    if code and message:
        return f"{code} {message}"
    return code or message


def _base(data: Mapping[str, object], sid: str, iccid: str, ts: str) -> Record:
    rec: Record = {"kind": "event", "record_id": f"{PREFIX}:e:{sid}", "iccid": iccid, "ts": ts}
    net = obj(data.get("network"))
    put(rec, "mcc", mcc_of(net.get("mcc")))
    put(rec, "mnc", mnc_of(net.get("mnc")))
    put(rec, "apn", text(data.get("apn")))
    put(rec, "rat", rat_of(data.get("rat_type")))
    return rec


def _session(rec: Record, data: Mapping[str, object], status: str) -> Record:
    rec["kind"] = "session"
    rec["status"] = status
    rec["session_id"] = text(data.get("data_session_sid")) or rec["iccid"]
    up = _bytes(data.get("data_session_data_upload"))
    down = _bytes(data.get("data_session_data_download"))
    if status != "started" and (up is not None or down is not None):
        rec["bytes_up"] = up or 0
        rec["bytes_down"] = down or 0
    return rec


def _usage(data: Mapping[str, object], sid: str, iccid: str, ts: str) -> Record | None:
    up, down = _bytes(data.get("data_upload")), _bytes(data.get("data_download"))
    if up is None and down is None:
        return None
    end = normalize_time(data.get("data_session_update_end_time")) or ts
    start = normalize_time(data.get("data_session_update_start_time")) or end
    start, end = min(start, end), max(start, end)
    rec = _base(data, sid, iccid, ts)
    del rec["ts"]
    rec.update(kind="usage", record_id=f"{PREFIX}:u:{sid}", start=start, end=end, bytes_up=up or 0)
    rec["bytes_down"] = down or 0
    return rec


def records_from_event(envelope: Mapping[str, object]) -> list[Record]:  # noqa: PLR0911 - flat dispatch
    """One CloudEvents envelope -> FORMATS.md records ([] when not used)."""
    data = obj(envelope.get("data"))
    etype = text(envelope.get("type")) or text(data.get("event_type")) or ""
    _, mark, suffix = etype.partition(_MARK)
    sid = text(data.get("event_sid")) or text(envelope.get("id"))
    iccid = text(data.get("sim_iccid"))
    ts = normalize_time(data.get("timestamp")) or normalize_time(envelope.get("time"))
    if not mark or sid is None or iccid is None or ts is None:
        return []
    rec = _base(data, sid, iccid, ts)
    if suffix == "attachment.accepted":
        rec["type"] = "attach"
        return [rec]
    if suffix in ("attachment.rejected", "attachment.failed"):
        rec["type"] = "attach_reject"
        put(rec, "cause", _cause(data))
        return [rec]
    if suffix == "data-session.started":
        return [_session(rec, data, "started")]
    if suffix == "data-session.updated":
        usage = _usage(data, sid, iccid, ts)
        out = [] if usage is None else [usage]
        if "bytes_up" in _session(dict(rec), data, "interim") or usage is None:
            out.append(_session(rec, data, "interim"))
        return out
    if suffix == "data-session.ended":
        return [_session(rec, data, "ended")]
    if suffix == "data-session.failed":
        rec["type"] = "pdp_reject"
        put(rec, "cause", _cause(data))
        return [rec]
    return []


def records_from_body(value: object) -> tuple[list[Record], list[tuple[str, str]]]:
    """A parsed body (one envelope or an array) -> (records, (label, raw) not used)."""
    if isinstance(value, dict):
        items: list[object] = [value]
    elif isinstance(value, list):
        items = value
    else:
        raise BodyError(
            RejectReason.NOT_OBJECT, f"expected a CloudEvent or an array, got {value!r:.40}"
        )
    records: list[Record] = []
    unknown: list[tuple[str, str]] = []
    for item in items:
        mapped = records_from_event(item) if isinstance(item, dict) else []
        if mapped:
            records.extend(mapped)
            continue
        label = f"type {item.get('type')}" if isinstance(item, dict) else "non-object item"
        raw = orjson.dumps(item).decode()
        unknown.append((label, raw if len(raw) <= _RAW_ITEM else raw[:_RAW_ITEM] + "..."))
    return records, unknown
