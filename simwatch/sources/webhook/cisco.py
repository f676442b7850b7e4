"""Cisco IoT Control Center Push API posts (PLATFORMS.md 3.3).

A push is an HTTP POST, either ``application/x-www-form-urlencoded`` with the fields
``eventType``, ``timestamp``, ``signature2`` and ``data`` (an XML document in the
namespace ``http://api.jasperwireless.com/ws/schema``), or ``application/json`` with the
same keys and ``data`` as a JSON object. ``eventId`` is read when present. The
``signature2`` check (Base64 HMAC-SHA256 of ``timestamp`` with the account's Push API
secret) is done by ``signature_ok`` when a secret is given.

Events (only ``SESSION_STOP`` with its ``iccid`` is documented in detail; the other names
are from a production receiver):

* ``SESSION_START`` -> ``session/started``; ``SESSION_STOP`` -> ``session/ended``
  (``session_id`` is the ICCID: the push names no session).
* every other event type (``CTD_USAGE``, ``PAST24H_DATA_USAGE_EXCEEDED``, automation
  rules) is reported as not used.

``record_id`` is ``cisco:p:<eventId>``, else a digest of the event's type, timestamp and
data, so a re-delivery is counted once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import urllib.parse
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING, Final

import orjson

from simwatch.core.records import RejectReason
from simwatch.sources.cmp.base import normalize_time, obj, text
from simwatch.sources.webhook.errors import BodyError, SignatureError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from simwatch.sources.cmp.base import Record

__all__ = ["records_from_body", "signature_ok"]

PREFIX: Final = "cisco"
_SESSIONS: Final = {"SESSION_START": "started", "SESSION_STOP": "ended"}
_RAW: Final = 4096


def signature_ok(fields: Mapping[str, str], secret: str) -> bool:
    """``signature2 == Base64(HMAC-SHA256(secret, timestamp))``, compared in constant time."""
    given = fields.get("signature2", "").encode()
    digest = hmac.new(secret.encode(), fields.get("timestamp", "").encode(), hashlib.sha256)
    return hmac.compare_digest(given, base64.b64encode(digest.digest()))


def fields_of(body: bytes, content_type: str) -> dict[str, object]:
    """The push's fields, from a form or JSON body (``BodyError`` when neither)."""
    if content_type == "application/json" or body.lstrip().startswith(b"{"):
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise BodyError(RejectReason.INVALID_JSON, f"not JSON: {exc}") from exc
        if not isinstance(value, dict):
            raise BodyError(RejectReason.NOT_OBJECT, "expected a JSON object")
        return value
    try:
        pairs = urllib.parse.parse_qsl(body.decode(), strict_parsing=True)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BodyError(RejectReason.BAD_VALUE, f"not a form (urlencoded): {exc}") from exc
    return dict(pairs)


def _xml_values(data: str) -> dict[str, str]:
    """Leaf elements of the XML ``data`` by local name (namespaces dropped)."""
    try:
        # expat: no external entities; entity expansion is bounded (billion laughs refused)
        root = ET.fromstring(data)  # noqa: S314 - see above
    except ET.ParseError as exc:
        raise BodyError(RejectReason.BAD_VALUE, f"data is not XML: {exc}") from exc
    values: dict[str, str] = {}
    for element in root.iter():
        if len(element) == 0 and element.text and element.text.strip():
            values.setdefault(element.tag.rpartition("}")[2], element.text.strip())
    return values


def records_from_body(
    body: bytes, content_type: str, secret: str | None = None
) -> tuple[list[Record], list[tuple[str, str]]]:
    """One push -> (records, (label, raw) not used); with the account's Push API
    ``secret``, ``SignatureError`` unless ``signature2`` checks."""
    fields = fields_of(body, content_type)
    if secret is not None:
        given = {k: v for k in ("signature2", "timestamp") if isinstance(v := fields.get(k), str)}
        if not signature_ok(given, secret):
            raise SignatureError("signature2 does not match the Push API secret")
    event_type = text(fields.get("eventType"))
    if event_type is None:
        raise BodyError(RejectReason.MISSING_FIELD, "field 'eventType' is required")
    data = fields.get("data")
    is_xml = isinstance(data, str) and bool(data.strip())
    values: Mapping[str, object] = _xml_values(str(data)) if is_xml else obj(data)
    status = _SESSIONS.get(event_type)
    raw = body[:_RAW].decode("utf-8", "replace")
    iccid = text(values.get("iccid"))
    ts = normalize_time(fields.get("timestamp")) or normalize_time(values.get("timestamp"))
    if status is None or iccid is None or ts is None:
        return [], [(f"eventType {event_type}", raw)]
    eid = text(fields.get("eventId"))
    if eid is None:
        content = orjson.dumps(
            [event_type, fields.get("timestamp"), values], option=orjson.OPT_SORT_KEYS
        )
        eid = hashlib.sha256(content).hexdigest()[:32]
    rec: Record = {
        "kind": "session",
        "record_id": f"{PREFIX}:p:{eid}",
        "iccid": iccid,
        "ts": ts,
        "session_id": iccid,
        "status": status,
    }
    return [rec], []
