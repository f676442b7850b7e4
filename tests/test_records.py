from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simwatch.core.dedup import Deduplicator
from simwatch.core.records import Record, RecordDecoder, Rejection, RejectReason
from simwatch.core.timeutil import parse_rfc3339

NOW = parse_rfc3339("2026-11-20T12:00:00Z")
ICCID = "8931440000000000011"

USAGE: dict[str, Any] = {
    "kind": "usage",
    "record_id": "u-1",
    "iccid": ICCID,
    "start": "2026-11-20T10:00:00Z",
    "end": "2026-11-20T10:15:00Z",
    "bytes_up": 1200,
    "bytes_down": 340,
    "apn": "meters.acme",
    "mcc": "262",
    "mnc": "02",
    "rat": "LTE-M",
}
SESSION_START: dict[str, Any] = {
    "kind": "session",
    "record_id": "s-9",
    "iccid": ICCID,
    "session_id": "a1b2",
    "status": "started",
    "ts": "2026-11-20T00:00:05Z",
    "apn": "meters.acme",
    "mcc": "262",
    "mnc": "02",
    "rat": "LTE-M",
}
SESSION_END: dict[str, Any] = {
    "kind": "session",
    "record_id": "s-10",
    "iccid": ICCID,
    "session_id": "a1b2",
    "status": "ended",
    "ts": "2026-11-20T11:00:01Z",
    "bytes_up": 88000,
    "bytes_down": 12000,
    "end_cause": "scheduled_reset",
}
EVENT: dict[str, Any] = {
    "kind": "event",
    "record_id": "e-3",
    "iccid": ICCID,
    "ts": "2026-11-20T10:00:00Z",
    "type": "auth_failure",
    "apn": "internet",
    "mcc": "262",
    "mnc": "02",
    "cause": "apn_not_allowed",
}


def line(obj: object) -> bytes:
    return orjson.dumps(obj) + b"\n"


def decode(obj: object) -> Record | Rejection:
    return RecordDecoder().decode_line(line(obj), NOW)


def with_(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = dict(base)
    for key, value in changes.items():
        if value is _DROP:
            out.pop(key, None)
        else:
            out[key] = value
    return out


_DROP = object()


# ------------------------------------------------------------------ good records


def test_usage_example_from_formats() -> None:
    rec = decode(USAGE)
    assert rec == Record(
        kind="usage",
        record_id="u-1",
        iccid=ICCID,
        ts=parse_rfc3339("2026-11-20T10:15:00Z"),
        start=parse_rfc3339("2026-11-20T10:00:00Z"),
        bytes_up=1200,
        bytes_down=340,
        apn="meters.acme",
        mcc="262",
        mnc="02",
        rat="LTE-M",
    )
    assert isinstance(rec, Record)
    assert rec.partner == "26202"


def test_session_started_and_ended() -> None:
    started = decode(SESSION_START)
    assert isinstance(started, Record)
    assert (started.kind, started.session_id, started.status) == ("session", "a1b2", "started")
    assert started.ts == parse_rfc3339("2026-11-20T00:00:05Z")
    assert started.start is None
    assert (started.bytes_up, started.bytes_down) == (0, 0)

    ended = decode(SESSION_END)
    assert isinstance(ended, Record)
    assert (ended.status, ended.end_cause) == ("ended", "scheduled_reset")
    assert (ended.bytes_up, ended.bytes_down) == (88000, 12000)
    # Ended/interim records carry only totals: no apn/partner, and that is fine.
    assert ended.apn is None
    assert ended.partner is None


def test_unknown_end_cause_is_kept() -> None:
    rec = decode(with_(SESSION_END, end_cause="radio_link_lost"))
    assert isinstance(rec, Record)
    assert rec.end_cause == "radio_link_lost"


def test_event_fields() -> None:
    rec = decode(EVENT)
    assert isinstance(rec, Record)
    assert (rec.event_type, rec.cause, rec.partner) == ("auth_failure", "apn_not_allowed", "26202")


def test_mnc_digits_are_kept_as_given() -> None:
    two = decode(with_(USAGE, mnc="02"))
    three = decode(with_(USAGE, mnc="002"))
    assert isinstance(two, Record)
    assert isinstance(three, Record)
    assert (two.partner, three.partner) == ("26202", "262002")


def test_extra_fields_ignored_and_operator_kept() -> None:
    rec = decode(with_(USAGE, operator="Vodafone", vendor_blob={"x": [1, 2]}, imei="123"))
    assert isinstance(rec, Record)
    assert rec.operator == "Vodafone"


def test_offsets_and_fractional_times() -> None:
    rec = decode(with_(USAGE, start="2026-11-20T11:00:00+01:00", end="2026-11-20T10:15:00.5Z"))
    assert isinstance(rec, Record)
    assert rec.start == parse_rfc3339("2026-11-20T10:00:00Z")
    assert rec.ts == parse_rfc3339("2026-11-20T10:15:00Z") + 0.5


def test_null_and_empty_optionals_are_absent() -> None:
    rec = decode(with_(EVENT, apn=None, mcc="", mnc=None, rat=None, cause=None))
    assert isinstance(rec, Record)
    assert (rec.apn, rec.mcc, rec.mnc, rec.rat, rec.cause) == (None, None, None, None, None)


def test_time_at_the_future_limit_is_accepted() -> None:
    decoder = RecordDecoder(max_future_s=300)
    ok = decoder.decode_line(line(with_(EVENT, ts="2026-11-20T12:05:00Z")), NOW)
    late = decoder.decode_line(line(with_(EVENT, ts="2026-11-20T12:05:01Z")), NOW)
    assert isinstance(ok, Record)
    assert isinstance(late, Rejection)
    assert late.reason is RejectReason.FUTURE_TIME


def test_str_line_crlf_and_bom() -> None:
    decoder = RecordDecoder()
    assert isinstance(decoder.decode_line(line(USAGE).decode() + "\r\n", NOW), Record)
    assert isinstance(decoder.decode_line(b"\xef\xbb\xbf" + line(USAGE), NOW), Record)
    assert isinstance(decoder.decode_line("\ufeff" + line(USAGE).decode(), NOW), Record)


# ------------------------------------------------------------------ rejections

REJECT_CASES: list[tuple[str, bytes | str, RejectReason, str]] = [
    ("broken json", b'{"kind":"usage",', RejectReason.INVALID_JSON, "not valid JSON"),
    ("blank line", b"  \n", RejectReason.INVALID_JSON, "empty line"),
    ("invalid utf-8", b'{"kind":"\xff"}', RejectReason.INVALID_JSON, "not valid JSON"),
    ("array line", line([USAGE]), RejectReason.NOT_OBJECT, "got array"),
    ("number line", b"42", RejectReason.NOT_OBJECT, "got number"),
    (
        "no record_id",
        line(with_(USAGE, record_id=_DROP)),
        RejectReason.MISSING_FIELD,
        "'record_id'",
    ),
    ("int record_id", line(with_(USAGE, record_id=7)), RejectReason.BAD_TYPE, "'record_id'"),
    ("empty record_id", line(with_(USAGE, record_id="")), RejectReason.BAD_VALUE, "'record_id'"),
    ("no iccid", line(with_(USAGE, iccid=_DROP)), RejectReason.MISSING_FIELD, "'iccid'"),
    ("int iccid", line(with_(USAGE, iccid=8931440000000000011)), RejectReason.BAD_TYPE, "'iccid'"),
    ("short iccid", line(with_(USAGE, iccid="123")), RejectReason.BAD_ICCID, "'iccid': \"123\""),
    ("long iccid", line(with_(USAGE, iccid="8" * 23)), RejectReason.BAD_ICCID, "'iccid'"),
    (
        "letter iccid",
        line(with_(USAGE, iccid="893144000000000001F")),
        RejectReason.BAD_ICCID,
        "'iccid'",
    ),
    ("unicode digits", line(with_(USAGE, iccid="٨" * 19)), RejectReason.BAD_ICCID, "'iccid'"),
    ("no kind", line(with_(USAGE, kind=_DROP)), RejectReason.MISSING_FIELD, "'kind'"),
    ("int kind", line(with_(USAGE, kind=1)), RejectReason.BAD_TYPE, "'kind'"),
    ("unknown kind", line(with_(USAGE, kind="sms")), RejectReason.UNKNOWN_KIND, "'kind': \"sms\""),
    ("no start", line(with_(USAGE, start=_DROP)), RejectReason.MISSING_FIELD, "'start'"),
    ("no end", line(with_(USAGE, end=_DROP)), RejectReason.MISSING_FIELD, "'end'"),
    ("epoch end", line(with_(USAGE, end=1795169700)), RejectReason.BAD_TYPE, "'end'"),
    ("bad start", line(with_(USAGE, start="yesterday")), RejectReason.BAD_TIME, "'start'"),
    ("naive end", line(with_(USAGE, end="2026-11-20T10:15:00")), RejectReason.BAD_TIME, "'end'"),
    (
        "inverted",
        line(with_(USAGE, start="2026-11-20T10:30:00Z")),
        RejectReason.BAD_WINDOW,
        "'end'",
    ),
    (
        "future end",
        line(with_(USAGE, end="2026-11-21T10:15:00Z")),
        RejectReason.FUTURE_TIME,
        "'end'",
    ),
    ("no ts", line(with_(EVENT, ts=_DROP)), RejectReason.MISSING_FIELD, "'ts'"),
    (
        "bad ts",
        line(with_(SESSION_START, ts="2026-02-30T00:00:00Z")),
        RejectReason.BAD_TIME,
        "'ts'",
    ),
    ("future ts", line(with_(EVENT, ts="2027-01-01T00:00:00Z")), RejectReason.FUTURE_TIME, "'ts'"),
    ("list ts", line(with_(EVENT, ts=["x"])), RejectReason.BAD_TYPE, "'ts'"),
    ("no bytes_up", line(with_(USAGE, bytes_up=_DROP)), RejectReason.MISSING_FIELD, "'bytes_up'"),
    (
        "null bytes_down",
        line(with_(USAGE, bytes_down=None)),
        RejectReason.MISSING_FIELD,
        "'bytes_down'",
    ),
    ("negative up", line(with_(USAGE, bytes_up=-1)), RejectReason.NEGATIVE_BYTES, "'bytes_up'"),
    (
        "negative down",
        line(with_(SESSION_END, bytes_down=-5)),
        RejectReason.NEGATIVE_BYTES,
        "'bytes_down'",
    ),
    ("float bytes", line(with_(USAGE, bytes_up=1.5)), RejectReason.BAD_TYPE, "'bytes_up'"),
    ("bool bytes", line(with_(USAGE, bytes_down=True)), RejectReason.BAD_TYPE, "'bytes_down'"),
    ("string bytes", line(with_(USAGE, bytes_down="12")), RejectReason.BAD_TYPE, "'bytes_down'"),
    (
        "huge bytes",
        b'{"kind":"usage","record_id":"u","iccid":"'
        + ICCID.encode()
        + b'","start":"2026-11-20T10:00:00Z","end":"2026-11-20T10:15:00Z",'
        b'"bytes_up":99999999999999999999,"bytes_down":0}',
        RejectReason.BAD_TYPE,
        "'bytes_up'",
    ),
    ("number mcc", line(with_(USAGE, mcc=262)), RejectReason.BAD_TYPE, "'mcc'"),
    ("number mnc", line(with_(USAGE, mnc=2)), RejectReason.BAD_TYPE, "'mnc'"),
    ("short mcc", line(with_(USAGE, mcc="26")), RejectReason.BAD_VALUE, "'mcc'"),
    ("long mnc", line(with_(USAGE, mnc="0202")), RejectReason.BAD_VALUE, "'mnc'"),
    ("one-digit mnc", line(with_(USAGE, mnc="2")), RejectReason.BAD_VALUE, "'mnc'"),
    ("int apn", line(with_(USAGE, apn=5)), RejectReason.BAD_TYPE, "'apn'"),
    ("list rat", line(with_(USAGE, rat=["LTE"])), RejectReason.BAD_TYPE, "'rat'"),
    ("dict operator", line(with_(USAGE, operator={})), RejectReason.BAD_TYPE, "'operator'"),
    (
        "no session_id",
        line(with_(SESSION_START, session_id=_DROP)),
        RejectReason.MISSING_FIELD,
        "'session_id'",
    ),
    (
        "int session_id",
        line(with_(SESSION_START, session_id=5)),
        RejectReason.BAD_TYPE,
        "'session_id'",
    ),
    (
        "empty session_id",
        line(with_(SESSION_START, session_id="")),
        RejectReason.BAD_VALUE,
        "'session_id'",
    ),
    ("no status", line(with_(SESSION_START, status=_DROP)), RejectReason.MISSING_FIELD, "'status'"),
    ("odd status", line(with_(SESSION_START, status="paused")), RejectReason.BAD_VALUE, "'status'"),
    (
        "list status",
        line(with_(SESSION_START, status=["ended"])),
        RejectReason.BAD_TYPE,
        "'status'",
    ),
    ("int end_cause", line(with_(SESSION_END, end_cause=3)), RejectReason.BAD_TYPE, "'end_cause'"),
    ("no type", line(with_(EVENT, type=_DROP)), RejectReason.MISSING_FIELD, "'type'"),
    ("odd type", line(with_(EVENT, type="sms_mo")), RejectReason.BAD_VALUE, "'type'"),
    ("dict type", line(with_(EVENT, type={"a": 1})), RejectReason.BAD_TYPE, "'type'"),
    ("int cause", line(with_(EVENT, cause=17)), RejectReason.BAD_TYPE, "'cause'"),
]


@pytest.mark.parametrize(
    ("data", "reason", "needle"),
    [case[1:] for case in REJECT_CASES],
    ids=[case[0] for case in REJECT_CASES],
)
def test_rejections(data: bytes | str, reason: RejectReason, needle: str) -> None:
    result = RecordDecoder().decode_line(data, NOW)
    assert isinstance(result, Rejection)
    assert result.reason is reason
    assert needle in result.detail
    assert result.raw == data.decode("utf-8", "replace").rstrip("\r\n")  # type: ignore[union-attr]


def test_every_reason_but_inventory_ones_is_exercised() -> None:
    covered = {case[2] for case in REJECT_CASES}
    assert covered | {RejectReason.TOO_LARGE, RejectReason.DUPLICATE_ICCID} == set(RejectReason)


def test_rejection_carries_ids_when_known() -> None:
    result = decode(with_(USAGE, bytes_up=-1))
    assert isinstance(result, Rejection)
    assert (result.record_id, result.iccid) == ("u-1", ICCID)
    bad_iccid = decode(with_(USAGE, iccid="12"))
    assert isinstance(bad_iccid, Rejection)
    assert (bad_iccid.record_id, bad_iccid.iccid) == ("u-1", None)


def test_too_large_line() -> None:
    decoder = RecordDecoder(max_line_bytes=300)
    big = line(with_(USAGE, padding="x" * 400))
    result = decoder.decode_line(big, NOW)
    assert isinstance(result, Rejection)
    assert result.reason is RejectReason.TOO_LARGE
    assert f"{len(big)} bytes" in result.detail
    # The same line as str, ASCII and multi-byte.
    assert isinstance(decoder.decode_line(big.decode(), NOW), Rejection)
    wide = line(with_(USAGE, padding="é" * 100)).decode()
    assert len(wide) < 400 < len(wide.encode())
    wide_result = RecordDecoder(max_line_bytes=400).decode_line(wide, NOW)
    assert isinstance(wide_result, Rejection)
    assert wide_result.reason is RejectReason.TOO_LARGE
    assert isinstance(decoder.decode_line(line(USAGE), NOW), Record)


def test_long_values_are_shortened_in_detail() -> None:
    result = decode(with_(USAGE, iccid="9" * 5000))
    assert isinstance(result, Rejection)
    assert len(result.detail) < 200


def test_surrogates_in_str_line_are_replaced_in_raw() -> None:
    result = RecordDecoder().decode_line('{"kind":"\ud800"}', NOW)
    assert isinstance(result, Rejection)
    assert result.reason is RejectReason.INVALID_JSON
    assert result.raw == '{"kind":"\ufffd"}'
    orjson.dumps(result.raw)  # writable as JSON


# ------------------------------------------------------------------ payloads and objects


def test_decode_obj_and_raw() -> None:
    decoder = RecordDecoder()
    assert decoder.decode_obj(USAGE, NOW) == decode(USAGE)
    bad = decoder.decode_obj(with_(USAGE, bytes_up=-3), NOW)
    assert isinstance(bad, Rejection)
    assert orjson.loads(bad.raw)["bytes_up"] == -3
    given_raw = decoder.decode_obj(7, NOW, raw="7")
    assert isinstance(given_raw, Rejection)
    assert (given_raw.reason, given_raw.raw) == (RejectReason.NOT_OBJECT, "7")


def test_payload_single_object() -> None:
    out = RecordDecoder().decode_payload(orjson.dumps(USAGE), NOW)
    assert out == [decode(USAGE)]


def test_payload_array_with_one_bad_element() -> None:
    bad = with_(EVENT, record_id="e-bad", type="bogus")
    out = RecordDecoder().decode_payload(orjson.dumps([USAGE, bad, "x", SESSION_END]), NOW)
    assert [type(item).__name__ for item in out] == ["Record", "Rejection", "Rejection", "Record"]
    assert isinstance(out[1], Rejection)
    assert out[1].reason is RejectReason.BAD_VALUE
    assert orjson.loads(out[1].raw) == bad
    assert isinstance(out[2], Rejection)
    assert out[2].reason is RejectReason.NOT_OBJECT
    assert [r.record_id for r in out if isinstance(r, Record)] == ["u-1", "s-10"]


def test_payload_ndjson_with_blank_and_bad_lines() -> None:
    payload = line(USAGE) + b"\n\r\n" + b"{oops\n" + line(EVENT).rstrip() + b"\r\n"
    out = RecordDecoder().decode_payload(payload, NOW)
    assert len(out) == 3
    assert isinstance(out[0], Record)
    assert isinstance(out[1], Rejection)
    assert (out[1].reason, out[1].raw) == (RejectReason.INVALID_JSON, "{oops")
    assert isinstance(out[2], Record)
    assert out[2].record_id == "e-3"


def test_payload_edge_forms() -> None:
    decoder = RecordDecoder(max_line_bytes=10_000)
    assert decoder.decode_payload(b"", NOW) == []
    assert decoder.decode_payload(b"  \n ", NOW) == []
    assert decoder.decode_payload(b"[]", NOW) == []
    broken = decoder.decode_payload(b"{nope", NOW)
    assert [r.reason for r in broken if isinstance(r, Rejection)] == [RejectReason.INVALID_JSON]
    scalar = decoder.decode_payload(b'"hello"', NOW)
    assert [r.reason for r in scalar if isinstance(r, Rejection)] == [RejectReason.NOT_OBJECT]
    bom = decoder.decode_payload(b"\xef\xbb\xbf" + orjson.dumps([USAGE]), NOW)
    assert [type(r) for r in bom] == [Record]
    small = RecordDecoder(max_payload_bytes=100)
    too_big = small.decode_payload(orjson.dumps([USAGE, USAGE]), NOW)
    assert [r.reason for r in too_big if isinstance(r, Rejection)] == [RejectReason.TOO_LARGE]


# ------------------------------------------------------------------ robustness

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=12,
)
record_like = st.fixed_dictionaries(
    {},
    optional={
        "kind": st.sampled_from(["usage", "session", "event", "x"]) | json_values,
        "record_id": st.text(max_size=8) | json_values,
        "iccid": st.sampled_from([ICCID, "1" * 18, "12"]) | json_values,
        "start": st.sampled_from(["2026-11-20T10:00:00Z", "2026-11-20T13:00:00Z"]) | json_values,
        "end": st.sampled_from(["2026-11-20T10:15:00Z", "bad"]) | json_values,
        "ts": st.sampled_from(["2026-11-20T10:00:00+02:00", "2026-11-20"]) | json_values,
        "bytes_up": st.integers(-5, 2**70) | json_values,
        "bytes_down": st.integers(-5, 5) | json_values,
        "mcc": st.sampled_from(["262", "26", "abc"]) | json_values,
        "mnc": st.sampled_from(["02", "002", "2"]) | json_values,
        "status": st.sampled_from(["started", "ended", "x"]) | json_values,
        "session_id": json_values,
        "type": st.sampled_from(["attach", "purge", "x"]) | json_values,
        "apn": json_values,
    },
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_decode_line_never_raises_on_bytes(data: bytes) -> None:
    result = RecordDecoder(max_line_bytes=200).decode_line(data, NOW)
    assert isinstance(result, Record | Rejection)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_decode_line_never_raises_on_text(data: str) -> None:
    result = RecordDecoder().decode_line(data, NOW)
    assert isinstance(result, Record | Rejection)
    if isinstance(result, Rejection):
        orjson.dumps(result.raw)


@settings(max_examples=400, deadline=None)
@given(record_like)
def test_decode_line_never_raises_on_jsonish(obj: dict[str, Any]) -> None:
    decoder = RecordDecoder()
    result = decoder.decode_line(json.dumps(obj), NOW)
    assert isinstance(result, Record | Rejection)
    if isinstance(result, Record):
        assert result.kind in {"usage", "session", "event"}
        assert result.bytes_up >= 0
        assert result.bytes_down >= 0
        assert result.ts <= NOW + 300
    else:
        assert result.detail
    payload = decoder.decode_payload(json.dumps([obj, obj]).encode(), NOW)
    assert [_essence(item) for item in payload] == [_essence(result)] * 2


def _essence(item: Record | Rejection) -> object:
    if isinstance(item, Record):
        return item
    return (item.reason, item.detail, item.record_id, item.iccid)


# ------------------------------------------------------------------ deduplication


def test_dedup_detects_repeats() -> None:
    dedup = Deduplicator(capacity=100)
    assert dedup.seen("a") is False
    assert dedup.seen("b") is False
    assert dedup.seen("a") is True
    assert dedup.seen("a") is True
    assert len(dedup) == 2


def test_dedup_memory_is_bounded_and_recent_ids_remembered() -> None:
    capacity = 1000
    dedup = Deduplicator(capacity=capacity)
    total = 20_000
    for i in range(total):
        assert dedup.seen(f"id-{i}") is False
        assert len(dedup) <= capacity
    # The last capacity/2 distinct ids are remembered ...
    assert all(dedup.seen(f"id-{i}") for i in range(total - capacity // 2, total))
    # ... and old ones were forgotten (memory did not keep them).
    assert not dedup.seen("id-0")
    assert len(dedup) <= capacity


def test_dedup_repeats_survive_rotation() -> None:
    dedup = Deduplicator(capacity=10)
    dedup.seen("hot")
    for i in range(100):
        dedup.seen(f"cold-{i}")
        assert dedup.seen("hot") is True  # a repeat refreshes the id
    assert len(dedup) <= 10


def test_dedup_rejects_tiny_capacity() -> None:
    with pytest.raises(ValueError, match="capacity"):
        Deduplicator(capacity=1)
