"""The pushed formats' pure decoding (``simwatch.sources.webhook.formats``), no server.

KORE (PLATFORMS.md 4.3) and Cisco (3.3) bodies are built from the fields PLATFORMS.md
lists (no vendor example is retrievable); emnify / 1NCE come from the documented examples
in ``tests/data/cmp/``.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import orjson
import pytest

from simwatch.core.records import RecordDecoder, RejectReason
from simwatch.sources.webhook.errors import BodyError
from simwatch.sources.webhook.formats import CHUNK, decode_body

DATA = Path(__file__).parent / "data" / "cmp"
NOW = 1.9e9  # after every example: none is "in the future"


def records(fmt: str, body: bytes, content_type: str = "application/json") -> list[Any]:
    decoded = decode_body(fmt, body, content_type)
    out = []
    decoder = RecordDecoder()
    for payload in decoded.payloads:
        out.extend(orjson.loads(payload))
        assert all(type(r).__name__ == "Record" for r in decoder.decode_payload(payload, NOW))
    return out


def kore(kind: str, **data: object) -> dict[str, object]:
    return {
        "specversion": "1.0",
        "id": "CE1",
        "type": f"com.twilio.iot.supersim.connection.{kind}",
        "time": "2024-05-01T10:00:00Z",
        "data": {"event_sid": "EZ9", "sim_iccid": "89883070000123456789", **data},
    }


def test_kore_session_ended_carries_the_cumulative_totals() -> None:
    body = kore(
        "data-session.ended",
        data_session_sid="SS1",
        data_session_data_upload=700,
        data_session_data_download=300,
        rat_type="LTE",
        network={"mcc": "262", "mnc": "02"},
    )
    (rec,) = records("kore", orjson.dumps(body))
    assert rec == {
        "kind": "session",
        "record_id": "kore:e:EZ9",  # event_sid: the same event from KORE or Twilio is one
        "iccid": "89883070000123456789",
        "ts": "2024-05-01T10:00:00Z",
        "mcc": "262",
        "mnc": "02",
        "rat": "LTE",
        "status": "ended",
        "session_id": "SS1",
        "bytes_up": 700,
        "bytes_down": 300,
    }


def test_kore_failed_and_unknown() -> None:
    body = [
        kore("data-session.failed", error={"code": 1, "message": "no"}),
        kore("attachment.failed"),
        {"type": "com.kore.eventstreams.test.event", "data": {}},  # the documented test event
        "not an event",
    ]
    decoded = decode_body("kore", orjson.dumps(body), "application/json")
    (payload,) = decoded.payloads
    mapped = orjson.loads(payload)
    assert [(r["kind"], r.get("type"), r.get("cause")) for r in mapped] == [
        ("event", "pdp_reject", "1 no"),
        ("event", "attach_reject", None),
    ]
    assert [label for label, _ in decoded.unknown] == [
        "type com.kore.eventstreams.test.event",
        "non-object item",
    ]
    with pytest.raises(BodyError, match="CloudEvent"):
        decode_body("kore", b"42", "application/json")


def test_cisco_json_variant_and_unused_events() -> None:
    push = {
        "eventId": "E-1",
        "eventType": "SESSION_START",
        "timestamp": "2024-03-01T10:00:00.000Z",
        "data": {"iccid": "89302720396911992571"},
    }
    (rec,) = records("cisco", orjson.dumps(push))
    assert rec["record_id"] == "cisco:p:E-1"
    assert (rec["kind"], rec["status"], rec["session_id"]) == ("session", "started", rec["iccid"])
    usage = {**push, "eventType": "CTD_USAGE", "data": {"iccid": "1", "dataUsage": 5}}
    decoded = decode_body("cisco", orjson.dumps(usage), "application/json")
    assert decoded.records == 0
    assert [label for label, _ in decoded.unknown] == ["eventType CTD_USAGE"]
    form = b"timestamp=2024-03-01T10%3A00%3A00Z&data=%3Cnot-xml"
    with pytest.raises(BodyError, match="eventType"):
        decode_body("cisco", form, "application/x-www-form-urlencoded")
    with pytest.raises(BodyError, match="not XML"):
        decode_body("cisco", form + b"&eventType=SESSION_STOP", "application/x-www-form-urlencoded")


def test_cisco_record_id_without_event_id_is_stable() -> None:
    form = (
        b"eventType=SESSION_STOP&timestamp=2024-03-01T10%3A00%3A00Z&data="
        b"%3Cr%3E%3Ciccid%3E8988216716970004975%3C%2Ficcid%3E%3C%2Fr%3E"
    )
    first = records("cisco", form, "application/x-www-form-urlencoded")
    again = records("cisco", form, "application/x-www-form-urlencoded")
    assert first == again  # a re-delivery has the same record_id: counted once


def test_emnify_bulk_is_chunked_and_unused_types_are_reported() -> None:
    usage = orjson.loads((DATA / "emnify-ds-usage-data.json").read_bytes())[0]
    threshold = orjson.loads((DATA / "emnify-event-quota-threshold-reached.json").read_bytes())
    items = [{**usage, "id": i} for i in range(CHUNK + 5)] + [threshold]
    decoded = decode_body("emnify", orjson.dumps(items), "application/json")
    assert decoded.records == CHUNK + 5
    assert [len(orjson.loads(p)) for p in decoded.payloads] == [CHUNK, 5]
    ((label, raw),) = decoded.unknown
    assert label == "event type 18 (Quota threshold reached)"
    assert orjson.loads(raw)["id"] == threshold["id"]


@pytest.mark.parametrize(
    ("fmt", "body", "reason"),
    [
        ("records", b"", RejectReason.INVALID_JSON),
        ("records", b"nope\nnot json either", RejectReason.INVALID_JSON),
        ("records", b"42", RejectReason.NOT_OBJECT),
        ("emnify", b"[1, 2", RejectReason.INVALID_JSON),
        ("1nce", b"true", RejectReason.NOT_OBJECT),
    ],
)
def test_bodies_that_cannot_be_decoded(fmt: str, body: bytes, reason: RejectReason) -> None:
    with pytest.raises(BodyError) as info:
        decode_body(fmt, body, "application/json")
    assert info.value.reason == reason
    copy = pickle.loads(pickle.dumps(info.value))
    assert (copy.reason, copy.detail) == (reason, info.value.detail)  # crosses a worker


def test_records_ndjson_with_some_bad_lines_is_accepted() -> None:
    body = b'{"kind":"usage"}\nnot json\n{"kind":"event"}\n'
    decoded = decode_body("records", body, "application/x-ndjson")
    assert decoded.payloads == [body]  # as it came: ingest rejects the bad line on its own
    assert decoded.records == 3
