"""Bounded fuzzing of record decoding (issue "Bad input").

Properties, for any input at all:

* ``decode_line``, ``decode_payload`` and ``decode_obj`` never raise;
* every result is a :class:`Record` or a :class:`Rejection` with a :class:`RejectReason`,
  a non-empty detail (naming the field for every field-level reason) and a ``raw`` text
  that the dead-letter file can write (valid UTF-8, JSON-serialisable);
* every Record keeps the invariants the engine relies on: an ICCID of 18-22 ASCII
  digits, finite times (``start <= end``, not beyond the future limit), byte counts that
  are non-negative ints, enumerated fields within their enums;
* a valid record with ONE field made bad is either still a Record or rejected with a
  detail naming that field; an unknown extra field changes nothing;
* every accepted Record can be applied to an engine and its SIM viewed.

The strategies are structure-aware (valid FORMATS.md records mutated one field at a
time, bytes of valid lines mangled, whole payloads as arrays and NDJSON with LF/CRLF,
BOMs, blank lines) plus raw bytes. Examples are fixed per test and derandomized, so the
suite is reproducible; ``FUZZ_SCALE=<n>`` multiplies the examples and turns the fixed
seed off (``bench/fuzz_records.py`` runs that for minutes).

The bugs this fuzzing found are fixed; a test for each stands at the end.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Final

import orjson
import pytest
from fleet import new_engine
from fuzzing import fuzz
from hypothesis import assume, given
from hypothesis import strategies as st

from simwatch.core.records import (
    END_CAUSES,
    EVENT_TYPES,
    KINDS,
    MAX_COUNT,
    SESSION_STATUSES,
    Record,
    RecordDecoder,
    Rejection,
    RejectReason,
)
from simwatch.core.timeutil import parse_rfc3339
from simwatch.http.views import sim_view

if TYPE_CHECKING:
    from simwatch.core.engine import Engine

NOW: Final = parse_rfc3339("2026-11-20T12:00:00Z")
MAX_FUTURE_S: Final = 300.0
YEAR_1: Final = -62_135_596_800.0  # 0001-01-01T00:00:00Z, the first second datetime knows
FIELDS: Final = (
    "kind", "record_id", "iccid", "start", "end", "ts", "bytes_up", "bytes_down", "apn",
    "mcc", "mnc", "rat", "operator", "session_id", "status", "end_cause", "type", "cause",
)  # fmt: skip
FIELD_REASONS: Final = frozenset({
    RejectReason.MISSING_FIELD, RejectReason.BAD_TYPE, RejectReason.BAD_ICCID,
    RejectReason.NEGATIVE_BYTES, RejectReason.UNKNOWN_KIND, RejectReason.BAD_VALUE,
    RejectReason.BAD_TIME, RejectReason.FUTURE_TIME, RejectReason.BAD_WINDOW,
})  # fmt: skip
WHOLE_REASONS: Final = frozenset({
    RejectReason.INVALID_JSON, RejectReason.NOT_OBJECT, RejectReason.TOO_LARGE,
})  # fmt: skip
FIELD_IN_DETAIL: Final = re.compile(r"field '([a-z_]+)'")
BOM: Final = b"\xef\xbb\xbf"
LINE_LIMIT: Final = 65_536  # RecordDecoder's default max_line_bytes


# ---- checks ----------------------------------------------------------------------------


def check_record(r: Record) -> None:
    assert r.kind in KINDS
    assert isinstance(r.record_id, str)
    assert 1 <= len(r.record_id) <= 256
    assert 18 <= len(r.iccid) <= 22
    assert r.iccid.isascii()
    assert r.iccid.isdigit()
    assert math.isfinite(r.ts)
    assert r.ts <= NOW + MAX_FUTURE_S
    if r.kind == "usage":
        assert r.start is not None
        assert math.isfinite(r.start)
        assert r.start <= r.ts
    else:
        assert r.start is None
    for count in (r.bytes_up, r.bytes_down):
        assert type(count) is int
        assert count >= 0
    for text in (r.apn, r.rat, r.operator):
        assert text is None or (isinstance(text, str) and text)
    assert r.mcc is None or (len(r.mcc) == 3 and r.mcc.isascii() and r.mcc.isdigit())
    assert r.mnc is None or (2 <= len(r.mnc) <= 3 and r.mnc.isascii() and r.mnc.isdigit())
    if r.kind == "session":
        assert isinstance(r.session_id, str)
        assert r.session_id
        assert r.status in SESSION_STATUSES
        assert r.end_cause is None or isinstance(r.end_cause, str)
    if r.kind == "event":
        assert r.event_type in EVENT_TYPES
        assert r.cause is None or isinstance(r.cause, str)


def check_rejection(r: Rejection) -> None:
    assert isinstance(r.reason, RejectReason)
    assert r.reason is not RejectReason.DUPLICATE_ICCID  # an inventory reason only
    assert isinstance(r.detail, str)
    assert r.detail.strip()
    # the dead-letter file writes these as JSON: they must be clean UTF-8
    orjson.dumps({"detail": r.detail, "raw": r.raw, "record_id": r.record_id, "iccid": r.iccid})
    if r.reason in FIELD_REASONS:
        named = FIELD_IN_DETAIL.findall(r.detail)
        assert named, r.detail
        assert set(named) <= set(FIELDS), r.detail
    else:
        assert r.reason in WHOLE_REASONS


def check(result: object) -> Record | Rejection:
    if isinstance(result, Record):
        check_record(result)
        return result
    assert isinstance(result, Rejection), result
    check_rejection(result)
    return result


def outcome(result: Record | Rejection) -> str:
    return "record" if isinstance(result, Record) else str(result.reason)


# ---- strategies ------------------------------------------------------------------------

DIGITS: Final = "0123456789"
iccids = st.integers(18, 22).flatmap(lambda n: st.text(DIGITS, min_size=n, max_size=n))
epochs = st.integers(int(NOW) - 400 * 86_400, int(NOW))
# RFC 3339 spellings simwatch accepts: Z, an offset, fractions, lower-case t/z
offsets = st.sampled_from([None, 0, 60, -300, 330, 840, -720])


@st.composite
def stamps(draw: st.DrawFn, ts: int) -> str:
    offset = draw(offsets)
    if offset is None:
        text = datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    else:
        zone = timezone(timedelta(minutes=offset))
        text = datetime.fromtimestamp(ts, tz=zone).isoformat()
    if draw(st.booleans()) and text.endswith("Z"):
        text = text[:-1] + ".000Z"
    if draw(st.integers(0, 9)) == 0:
        text = text.lower()
    return text


@st.composite
def valid_records(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(sorted(KINDS)))
    rec: dict[str, Any] = {
        "kind": kind,
        "record_id": draw(st.text(min_size=1, max_size=30)),
        "iccid": draw(iccids),
    }
    counts = st.integers(0, 2**40)
    if kind == "usage":
        end = draw(epochs)
        rec["start"] = draw(stamps(end - draw(st.integers(0, 86_400))))
        rec["end"] = draw(stamps(end))
        rec["bytes_up"] = draw(counts)
        rec["bytes_down"] = draw(counts)
    else:
        rec["ts"] = draw(stamps(draw(epochs)))
    if kind == "session":
        rec["session_id"] = draw(st.text(min_size=1, max_size=12))
        rec["status"] = draw(st.sampled_from(sorted(SESSION_STATUSES)))
        if draw(st.booleans()):
            rec["end_cause"] = draw(st.sampled_from(sorted(END_CAUSES)) | st.text(max_size=10))
        if draw(st.booleans()):
            rec["bytes_up"] = draw(counts)
            rec["bytes_down"] = draw(counts)
    if kind == "event":
        rec["type"] = draw(st.sampled_from(sorted(EVENT_TYPES)))
        if draw(st.booleans()):
            rec["cause"] = draw(st.text(max_size=20))
    if draw(st.booleans()):
        rec["apn"] = draw(st.text(max_size=20))
    if draw(st.booleans()):
        rec["mcc"] = draw(st.text(DIGITS, min_size=3, max_size=3))
        rec["mnc"] = draw(st.text(DIGITS, min_size=2, max_size=3))
    if draw(st.booleans()):
        rec["rat"] = draw(st.sampled_from(["LTE-M", "NB-IoT", "2G", "4G", ""]))
    if draw(st.booleans()):
        rec["operator"] = draw(st.text(max_size=20))
    return rec


_FULLWIDTH: Final = str.maketrans(DIGITS, "".join(chr(0xFF10 + d) for d in range(10)))
_ARABIC: Final = str.maketrans(DIGITS, "".join(chr(0x0660 + d) for d in range(10)))


def fullwidth(text: str) -> str:
    """The digits as FULLWIDTH DIGITs: ``str.isdigit()`` is True, ``isascii()`` False."""
    return text.translate(_FULLWIDTH)


def arabic(text: str) -> str:
    """The digits as ARABIC-INDIC DIGITs."""
    return text.translate(_ARABIC)


def luhn_broken(iccid: str) -> str:
    """The ICCID with its last digit changed: a Luhn check-digit error."""
    return iccid[:-1] + str((int(iccid[-1]) + 1) % 10)


bad_times = st.sampled_from([
    "9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "1969-12-31T23:59:59Z",
    "1901-12-13T20:45:51Z", "2038-01-19T03:14:08Z", "2026-11-20T12:05:01Z",
    "2026-11-20T12:04:59Z", "2026-13-01T00:00:00Z", "2026-02-29T00:00:00Z",
    "2028-02-29T00:00:00Z", "2026-11-20T10:15:00", "2026-11-20 10:15:00Z",
    "2026-11-20T24:00:00Z", "20261120T101500Z", "2026-11-20T10:15:00+25:00",
    "2026-11-20T10:15:60Z", "2026-11-20T10:15:00.123456789Z", "2026-11-20T10:15:00+0100",
    "2026-11-20", "", " 2026-11-20T10:15:00Z", "2026-11-20T10:15:00Z ",
    fullwidth("2026") + "-11-20T10:15:00Z", "2026-11-20T10:15:0" + arabic("5") + "Z", "1e9", "now",
])  # fmt: skip
bad_iccids = st.one_of(
    iccids.map(luhn_broken),
    st.text(DIGITS, min_size=1, max_size=17),
    st.text(DIGITS, min_size=23, max_size=40),
    st.sampled_from([
        "8.93144E+18", "89 31 44 00 00 00 00 00 11", "8931-4400-0000-0000-011",
        fullwidth("8931440000000000011"), arabic("8931440000000000011"), "893144000000000001\x00",
        "-893144000000000001", "+8931440000000000011",
    ]),
    st.integers(10**17, 10**22),
)  # fmt: skip
big_numbers = st.sampled_from([
    -1, -(2**63), 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, 10**30, 1e300, -0.0, 0.5,
    float("nan"), float("inf"), float("-inf"), True, False,
])  # fmt: skip
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=40),
    big_numbers,
)
json_junk = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
# "\U0001f600" * 16_400 is a line over the 64 KiB limit with a short repr
long_strings = st.sampled_from(
    ["x" * 257, "9" * 300, "\U0001f600" * 16_400, "\u202e" * 999, "a\x00b"]
)
nasty = st.one_of(
    json_junk, bad_times, bad_iccids, big_numbers, long_strings, st.text(min_size=1, max_size=80)
)


@st.composite
def one_field_mutations(draw: st.DrawFn) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """(valid record, the field changed, the record with that field bad or deleted)."""
    rec = draw(valid_records())
    field = draw(st.sampled_from(FIELDS))
    mutated = dict(rec)
    if field in mutated and draw(st.integers(0, 5)) == 0:
        del mutated[field]
    else:
        mutated[field] = draw(nasty)
    return rec, field, mutated


def dumps_or_none(obj: object) -> bytes | None:
    try:
        return orjson.dumps(obj)
    except TypeError:  # ints beyond 64 bits
        return None


# ---- valid records and one bad field ---------------------------------------------------


@fuzz(300)
@given(valid_records())
def test_valid_records_decode_to_the_same_values(rec: dict[str, Any]) -> None:
    decoder = RecordDecoder()
    result = check(decoder.decode_line(orjson.dumps(rec) + b"\n", NOW))
    assert isinstance(result, Record), result
    assert result.record_id == rec["record_id"]
    assert result.iccid == rec["iccid"]
    assert result.ts == parse_rfc3339(rec["end"] if rec["kind"] == "usage" else rec["ts"])
    assert result.bytes_up == rec.get("bytes_up", 0)
    assert result.partner == (rec["mcc"] + rec["mnc"] if "mcc" in rec else None)
    # an unknown extra field (FORMATS: extend, never break) changes nothing
    extra = check(decoder.decode_obj({**rec, "vendor_extra": {"x": [1, None]}}, NOW))
    assert extra == result
    # the ICCID check is 18-22 digits; a Luhn check-digit error is not a rejection
    luhn = check(decoder.decode_obj({**rec, "iccid": luhn_broken(rec["iccid"])}, NOW))
    assert isinstance(luhn, Record)


@fuzz(800)
@given(one_field_mutations())
def test_one_bad_field_is_named_or_harmless(
    case: tuple[dict[str, Any], str, dict[str, Any]],
) -> None:
    _valid, field, mutated = case
    decoder = RecordDecoder()
    result = check(decoder.decode_obj(mutated, NOW))
    if isinstance(result, Rejection) and field != "kind":  # a new kind needs other fields
        assert f"field '{field}'" in result.detail, (field, result.detail)
        assert result.record_id == (mutated["record_id"] if field != "record_id" else None)
    data = dumps_or_none(mutated)
    if data is not None:
        # the same object as a line, and as a payload: the same outcome (orjson writes
        # NaN and infinity as null, so compare with the object as it reads back)
        expected = outcome(decoder.decode_obj(orjson.loads(data), NOW))
        as_line = "too_large" if len(data) > LINE_LIMIT else expected
        assert outcome(check(decoder.decode_line(data, NOW))) == as_line
        payload = decoder.decode_payload(data, NOW)
        assert [outcome(check(r)) for r in payload] == [expected]


@fuzz(200)
@given(valid_records(), st.sampled_from(FIELDS), nasty)
def test_duplicate_keys_last_one_wins(rec: dict[str, Any], field: str, first: object) -> None:
    """A key given twice: no crash, and the same outcome as JSON's last-one-wins."""
    first_json = dumps_or_none(first)
    assume(first_json is not None)
    assert first_json is not None
    body = orjson.dumps(rec)[1:-1]
    line = b"{" + orjson.dumps(field) + b":" + first_json + (b"," + body if body else b"") + b"}"
    decoder = RecordDecoder()
    result = check(decoder.decode_line(line, NOW))
    expected = outcome(check(decoder.decode_obj(orjson.loads(line), NOW)))
    assert outcome(result) == ("too_large" if len(line) > LINE_LIMIT else expected)


# ---- raw bytes ---------------------------------------------------------------------------

interesting_bytes = st.sampled_from([
    b"\x00", b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xef\xbb\xbf", b"\r\n", b"\n", b"\r", b'"',
    b"\\", b"{", b"}", b"[", b",", b":", b"\\u0000", b"\\ud800", b"NaN", b"1e999", b" ",
])  # fmt: skip


@st.composite
def mangled_lines(draw: st.DrawFn) -> tuple[bytes, bool]:
    """(bytes of a valid record line mangled by a few edits, whether any edit was made)."""
    data = bytearray(orjson.dumps(draw(valid_records())))
    edits = draw(st.integers(0, 3))
    for _ in range(edits):
        at = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["truncate", "insert", "delete", "flip"]))
        if op == "truncate":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(interesting_bytes | st.binary(min_size=1, max_size=4))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        elif at < len(data):
            data[at] ^= 1 << draw(st.integers(0, 7))
    if draw(st.booleans()):
        data[0:0] = BOM
    data += draw(st.sampled_from([b"", b"\n", b"\r\n"]))
    return bytes(data), edits > 0


@fuzz(800)
@given(mangled_lines())
def test_mangled_lines_never_crash(case: tuple[bytes, bool]) -> None:
    data, edited = case
    decoder = RecordDecoder()
    result = check(decoder.decode_line(data, NOW))
    if not edited:
        assert isinstance(result, Record), result  # a BOM and CRLF are fine
    for item in decoder.decode_payload(data, NOW):
        check(item)
    text = data.decode("utf-8", "surrogateescape")  # a str with lone surrogates
    check(decoder.decode_line(text, NOW))


@fuzz(400)
@given(st.binary(max_size=600) | st.text(max_size=300).map(str.encode))
def test_raw_bytes_never_crash(data: bytes) -> None:
    decoder = RecordDecoder()
    check(decoder.decode_line(data, NOW))
    for item in decoder.decode_payload(data, NOW):
        check(item)


@fuzz(300)
@given(st.text(st.characters(codec=None, exclude_categories=()), max_size=200))
def test_any_str_line_never_crashes(text: str) -> None:
    """A str line may hold anything, lone surrogates included."""
    check(RecordDecoder().decode_line(text, NOW))


@fuzz(300)
@given(st.binary(min_size=0, max_size=700) | st.text(min_size=60, max_size=400))
def test_size_limits(data: bytes | str) -> None:
    decoder = RecordDecoder(max_line_bytes=256, max_payload_bytes=512)
    size = len(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
    result = check(decoder.decode_line(data, NOW))
    if size > 256:
        assert isinstance(result, Rejection)
        assert result.reason is RejectReason.TOO_LARGE
        assert f"{size} bytes" in result.detail
        assert len(result.raw) <= 4096
    raw = data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass")
    out = decoder.decode_payload(raw, NOW)
    if len(raw) > 512:
        assert [outcome(r) for r in out] == ["too_large"]
    for item in out:
        check(item)


# ---- whole payloads --------------------------------------------------------------------

payload_items = st.one_of(
    valid_records(),
    one_field_mutations().map(lambda case: case[2]),
    st.dictionaries(st.sampled_from(FIELDS), json_junk, max_size=6),
)


@fuzz(200)
@given(
    st.lists(payload_items, max_size=12),
    st.sampled_from(["array", "ndjson-lf", "ndjson-crlf"]),
    st.booleans(),
    st.booleans(),
)
def test_payloads_keep_one_result_per_item_in_order(
    items: list[dict[str, Any]], form: str, bom: bool, blank_lines: bool
) -> None:
    encoded = [dumps_or_none(item) for item in items]
    assume(all(e is not None for e in encoded))
    lines = [e for e in encoded if e is not None]
    decoder = RecordDecoder()
    # one JSON value (an array, or a single line) is decoded as objects; several NDJSON
    # lines one by one (so the 64 KiB line limit applies to each)
    if form == "array" or len(lines) == 1:
        expected = [outcome(decoder.decode_obj(orjson.loads(line), NOW)) for line in lines]
    else:
        expected = [outcome(decoder.decode_line(line, NOW)) for line in lines]
    if form == "array":
        payload = b"[" + b",".join(lines) + b"]"
    else:
        sep = b"\n" if form == "ndjson-lf" else b"\r\n"
        if blank_lines:
            sep = sep + b"  " + sep
        payload = sep.join(lines) + sep
    if bom:
        payload = BOM + payload
    results = [check(r) for r in decoder.decode_payload(payload, NOW)]
    assert [outcome(r) for r in results] == expected
    ids = [r.record_id for r in results if isinstance(r, Record)]
    assert ids == [o["record_id"] for o, e in zip(items, expected, strict=True) if e == "record"]


# ---- accepted records go through the engine --------------------------------------------


@fuzz(150)
@given(st.lists(payload_items | valid_records(), min_size=1, max_size=16))
def test_accepted_records_are_applied_evaluated_and_viewed(objs: list[dict[str, Any]]) -> None:
    """Every accepted record is applied and its SIM can be viewed; then an evaluation and
    every SIM's view still work. A fresh engine per example: nothing depends on what
    another test fed it."""
    engine = new_engine()
    decoder = RecordDecoder()
    accepted: set[str] = set()
    ids: set[str] = set()
    for obj in objs:
        result = check(decoder.decode_obj(obj, NOW))
        if isinstance(result, Record):
            engine.ingest_record(result)
            if result.record_id not in ids:  # else a duplicate delivery, dropped
                ids.add(result.record_id)
                accepted.add(result.iccid)
            if result.iccid in accepted:
                assert engine.state.row(result.iccid) >= 0
                orjson.dumps(sim_view(engine, result.iccid, NOW))
    assert set(engine.state.index.iccids()) == accepted
    engine.evaluate(NOW)
    for iccid in accepted:
        orjson.dumps(sim_view(engine, iccid, NOW))


# ---- bugs the fuzzing found (fixed; these keep them fixed) ----------------------------


class CrashedError(AssertionError):
    """A crash re-raised without its (deep, slow to render) traceback."""


@pytest.mark.parametrize("entry", ["decode_line", "decode_line_str", "decode_payload"])
def test_many_leading_boms_are_a_rejection(entry: str) -> None:
    data = BOM * 2000 + b'{"kind":"usage"}'  # 6 KB, a tenth of the line limit
    decoder = RecordDecoder()
    try:
        if entry == "decode_line":
            results = [decoder.decode_line(data, NOW)]
        elif entry == "decode_line_str":
            results = [decoder.decode_line(data.decode(), NOW)]
        else:
            results = decoder.decode_payload(data, NOW)
    except RecursionError:
        raise CrashedError("RecursionError") from None
    assert [outcome(check(result)) for result in results] == ["invalid_json"]


def test_decode_obj_with_a_lone_surrogate_is_a_rejection() -> None:
    obj = {"record_id": "r-1", "iccid": "\ud800" * 19, "kind": "usage"}
    result = check(RecordDecoder().decode_obj(obj, NOW))
    assert isinstance(result, Rejection)
    assert result.reason is RejectReason.BAD_ICCID


USAGE_LINE: Final = (
    b'{"kind":"usage","record_id":"u-1","iccid":"8931440000000000011",'
    b'"start":"%s","end":"%s","bytes_up":%d,"bytes_down":%d}'
)


def _decode_and_apply(*lines: bytes) -> tuple[list[Record | Rejection], Engine]:
    """Each line decoded (and checked), the Records applied to a fresh engine."""
    engine = new_engine()
    decoder = RecordDecoder()
    results = [check(decoder.decode_line(line, NOW)) for line in lines]
    for result in results:
        if isinstance(result, Record):
            engine.ingest_record(result)
    return results, engine


@pytest.mark.parametrize("stamp", ["0000-01-01T00:00:00Z", "0001-01-01T00:00:00+14:00"])
def test_year_zero_is_rejected(stamp: str) -> None:
    """Times before 2020-01-01 are refused (records.EARLIEST_TIME): a bad_time naming the
    first time field, and nothing reaches the engine."""
    (result,), engine = _decode_and_apply(USAGE_LINE % (stamp.encode(), stamp.encode(), 1, 1))
    assert isinstance(result, Rejection), result
    assert result.reason is RejectReason.BAD_TIME
    assert result.detail.startswith("field 'start': "), result.detail
    assert result.record_id == "u-1"
    assert len(engine.state) == 0


@pytest.mark.parametrize(
    ("counts", "field"),
    [
        ((2**63, 0), "bytes_up"),
        ((2**64 - 1, 0), "bytes_up"),
        ((2**63 - 1, 1), "bytes_up"),
        ((0, 2**53 + 1), "bytes_down"),
    ],
    ids=["2^63", "2^64-1", "sum-2^63", "2^53+1"],
)
def test_byte_counts_over_2_53_are_rejected(counts: tuple[int, int], field: str) -> None:
    """FORMATS.md: byte counts are non-negative integers; records.MAX_COUNT (2**53) is the
    largest accepted. Above it: bad_value naming the field, nothing applied."""
    end = b"2026-11-20T10:15:00Z"
    (result,), engine = _decode_and_apply(USAGE_LINE % (end, end, *counts))
    assert isinstance(result, Rejection), result
    assert result.reason is RejectReason.BAD_VALUE
    assert result.detail.startswith(f"field '{field}': "), result.detail
    assert "(2**53)" in result.detail
    assert len(engine.state) == 0


def test_byte_counts_of_2_53_are_applied_and_the_month_total_saturates() -> None:
    """2**53 up and down, twice: both records applied; the month total stops at 2**53
    instead of overflowing the int64 column."""
    end = b"2026-11-20T10:15:00Z"
    lines = [
        USAGE_LINE.replace(b"u-1", f"u-{k}".encode()) % (end, end, MAX_COUNT, MAX_COUNT)
        for k in range(2)
    ]
    results, engine = _decode_and_apply(*lines)
    assert all(isinstance(r, Record) for r in results), results
    assert engine.ingestor.stats.applied == 2
    row = engine.state.row("8931440000000000011")
    assert int(engine.state.cols.month_bytes[row]) == MAX_COUNT
