"""Pushed bodies per ``format``: what to journal, how many records, what is not used.

Pure: no I/O, no clock. ``decode_body`` raises ``BodyError`` (reason, detail) for a body
that cannot be decoded as a whole (the receiver answers 400 and dead-letters it); one bad
item inside a bulk body does not refuse the others.

* ``records``: FORMATS.md records as one object, an array or NDJSON. The body is checked to
  be JSON (or NDJSON with at least one JSON line) and journaled as it came; each record is
  validated by ingest (a bad one goes to the dead letters there).
* ``emnify`` / ``1nce``: the Data Streamer RestAPI destination (PLATFORMS.md 1.5, 2.4): one
  event or usage record per POST, or a JSON array of them (bulk mode; 1NCE's Data Streamer
  2.0 always sends arrays, up to 3000 records). Items with ``traffic_type`` are usage
  records, items with ``event_type`` events; both are mapped by the poller's own pure
  functions (``simwatch.sources.cmp.emnify`` / ``.onence`` ``records_from_event`` /
  ``records_from_usage``), so a pushed and a polled record get the same ``record_id``.
  An item that maps to nothing (an event type simwatch does not use, SMS usage: never
  data) is reported in ``unknown`` for counting and sampling.
* ``kore``: KORE / Twilio Event Streams (PLATFORMS.md 4.3), see ``kore.py``.
* ``cisco``: the Control Center Push API (PLATFORMS.md 3.3), see ``cisco.py``.

Mapped records are journaled as JSON arrays of FORMATS.md objects, ``CHUNK`` records per
frame (ingest decodes a journal frame like an MQTT payload).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import orjson

from simwatch.core.records import RejectReason
from simwatch.sources.cmp import emnify, onence
from simwatch.sources.webhook.cisco import records_from_body as cisco_records
from simwatch.sources.webhook.errors import BodyError
from simwatch.sources.webhook.kore import records_from_body as kore_records

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from simwatch.sources.cmp.base import Record

__all__ = ["CHUNK", "BodyError", "Decoded", "decode_body"]

CHUNK: Final = 1000  # mapped records per journal frame
_RAW_ITEM: Final = 4096  # characters of one unused item kept for its dead letter


@dataclass(slots=True)
class Decoded:
    payloads: list[bytes] = field(default_factory=list)  # journal frames
    records: int = 0  # records in them (FORMATS.md records, or items for ``records``)
    unknown: list[tuple[str, str]] = field(default_factory=list)  # (label, raw) not used


def _json(body: bytes) -> object:
    if not body.strip():
        raise BodyError(RejectReason.INVALID_JSON, "empty body")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BodyError(RejectReason.INVALID_JSON, f"not JSON: {exc}") from exc


def _records(body: bytes) -> Decoded:
    if not body.strip():
        raise BodyError(RejectReason.INVALID_JSON, "empty body")
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        lines = [line for line in body.splitlines() if line.strip()]
        good = 0
        for line in lines:
            try:
                orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            good += 1
        if good == 0:
            raise BodyError(
                RejectReason.INVALID_JSON, f"neither JSON nor NDJSON (first line: {exc})"
            ) from exc
        return Decoded([body], len(lines))
    if isinstance(value, dict):
        return Decoded([body], 1)
    if isinstance(value, list):
        if not value:
            return Decoded()
        return Decoded([body], len(value))
    raise BodyError(
        RejectReason.NOT_OBJECT, f"expected a record object, an array or NDJSON, got {value!r:.40}"
    )


def _raw_item(item: object) -> str:
    text = orjson.dumps(item).decode()
    return text if len(text) <= _RAW_ITEM else text[:_RAW_ITEM] + "..."


def _items(value: object) -> list[object]:
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        return [value]
    raise BodyError(RejectReason.NOT_OBJECT, f"expected an object or an array, got {value!r:.40}")


def _label(item: Mapping[str, object]) -> str:
    """A short name for an item that maps to nothing: its event type or traffic type."""
    for key, name in (("event_type", "event type"), ("traffic_type", "usage traffic_type")):
        kind = item.get(key)
        if isinstance(kind, dict):
            return f"{name} {kind.get('id')} ({kind.get('description')})"
        if isinstance(kind, str | int):
            return f"{name} {kind}"
    return "item"


def _streamer(
    body: bytes,
    from_event: Callable[[Mapping[str, object]], list[Record]],
    from_usage: Callable[[Mapping[str, object]], list[Record]],
) -> Decoded:
    """Data Streamer items (emnify and 1NCE share the shapes) -> records."""
    records: list[Record] = []
    unknown: list[tuple[str, str]] = []
    for item in _items(_json(body)):
        if not isinstance(item, dict):
            unknown.append((f"item of JSON type {type(item).__name__}", _raw_item(item)))
            continue
        if "traffic_type" in item:
            mapped = from_usage(item)
        elif "event_type" in item:
            mapped = from_event(item)
        else:
            unknown.append(("item without event_type or traffic_type", _raw_item(item)))
            continue
        if mapped:
            records.extend(mapped)
        else:
            unknown.append((_label(item), _raw_item(item)))
    return encoded(records, unknown)


def encoded(records: list[Record], unknown: list[tuple[str, str]]) -> Decoded:
    """Mapped records as journal frames of ``CHUNK`` records each."""
    payloads = [orjson.dumps(records[i : i + CHUNK]) for i in range(0, len(records), CHUNK)]
    return Decoded(payloads, len(records), unknown)


def decode_body(fmt: str, body: bytes, content_type: str, secret: str | None = None) -> Decoded:
    """Decode a pushed body of format ``fmt`` (``BodyError`` when it cannot be;
    ``secret``: Cisco's Push API secret, ``SignatureError`` for a bad ``signature2``)."""
    if fmt == "records":
        return _records(body)
    if fmt == "emnify":
        return _streamer(body, emnify.records_from_event, emnify.records_from_usage)
    if fmt == "1nce":
        return _streamer(body, onence.records_from_event, onence.records_from_usage)
    if fmt == "kore":
        records, unknown = kore_records(_json(body))
        return encoded(records, unknown)
    if fmt == "cisco":
        records, unknown = cisco_records(body, content_type, secret)
        return encoded(records, unknown)
    raise BodyError(RejectReason.BAD_VALUE, f"unknown format {fmt!r}")
