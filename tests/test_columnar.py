"""The columnar decoder (core/columnar.py) against the scalar reference (core/records.py).

Documented behaviour (core/columnar.py, docs/performance.md): a batch decoded into columns
gives the same records and the same rejections (reason, detail, raw) as
``RecordDecoder.decode_line`` on each line, or ``decode_payload`` on each payload, in
input order. Batches are built from the fuzz strategies of test_fuzz_records.py: valid
records, one bad field, mangled bytes, duplicate keys, junk.
"""

from __future__ import annotations

import math
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import pytest
from fuzzing import fuzz
from hypothesis import given
from hypothesis import strategies as st
from test_fuzz_records import (
    NOW,
    dumps_or_none,
    iccids,
    interesting_bytes,
    mangled_lines,
    nasty,
    one_field_mutations,
    valid_records,
)

from simwatch.core.columnar import COMPILED, ColumnarDecoder, RecordColumns, parse_utc_column
from simwatch.core.records import (
    END_CAUSES,
    EVENT_TYPES,
    MAX_COUNT,
    SESSION_STATUSES,
    Record,
    RecordDecoder,
    Rejection,
)
from simwatch.core.timeutil import parse_rfc3339


def scalar_lines(lines: list[bytes], decoder: RecordDecoder) -> list[Record | Rejection]:
    return [decoder.decode_line(x, NOW) for x in lines]


def same(columns: RecordColumns, records: list[Record]) -> None:
    got = columns.records()
    assert len(got) == len(records)
    for a, b in zip(got, records, strict=True):
        assert a == b
        assert type(a.ts) is float
        assert type(a.bytes_up) is int


def assert_equivalent(lines: list[bytes], max_line_bytes: int = 65536) -> None:
    scalar = RecordDecoder(max_line_bytes=max_line_bytes)
    expected = scalar_lines(lines, scalar)
    batch = ColumnarDecoder(RecordDecoder(max_line_bytes=max_line_bytes)).decode_lines(lines, NOW)
    same(batch.records, [x for x in expected if isinstance(x, Record)])
    assert batch.rejections == [x for x in expected if isinstance(x, Rejection)]


def line_of(obj: dict[str, Any]) -> bytes | None:
    data = dumps_or_none(obj)
    return None if data is None else data + b"\n"


mixed_lines = st.one_of(
    valid_records().map(orjson.dumps),
    valid_records().map(lambda r: orjson.dumps(r) + b"\n"),
    one_field_mutations().map(lambda c: line_of(c[2])).filter(lambda x: x is not None),
    mangled_lines().map(lambda c: c[0]),
)


# records whose times repeat across batches, one of them unparsable, one in another form
REPEATED_TIMES = [
    orjson.dumps(
        {"kind": "usage", "record_id": f"t{i}", "iccid": "8931440000000000011", "start": start,
         "end": end, "bytes_up": 1, "bytes_down": 0}
    )
    for i, (start, end) in enumerate([
        ("2026-11-20T10:00:00Z", "2026-11-20T10:15:00Z"),
        ("2026-11-20T10:15:00Z", "2026-11-20T10:30:00Z"),
        ("2026-11-20T10:00:00Z", "2026-11-20T10:15:00.250Z"),
        ("2026-11-20T10:00:00Z", "2026-11-20T25:15:00Z"),
        ("", "2026-11-20T10:15:00Z"),
    ])
]  # fmt: skip


@fuzz(300)
@given(st.lists(valid_records(), min_size=1, max_size=30))
def test_valid_batches_decode_to_the_scalar_records(recs: list[dict[str, Any]]) -> None:
    lines = [orjson.dumps(r) + b"\n" for r in recs]
    assert_equivalent(lines)
    # and in columns: not one of them needs the scalar decoder
    calls: list[object] = []

    class Counting(RecordDecoder):
        def decode_line(self, line: bytes | str, now: float) -> Record | Rejection:
            calls.append(line)
            return super().decode_line(line, now)

    assert len(ColumnarDecoder(Counting()).decode_lines(lines, NOW).records) == len(lines)
    assert calls == []


@fuzz(500)
@given(st.lists(mixed_lines, min_size=1, max_size=20))
def test_mixed_batches_same_records_and_rejections(lines: list[bytes]) -> None:
    assert_equivalent(lines)


@fuzz(150)
@given(
    st.lists(
        st.lists(mixed_lines | st.sampled_from(REPEATED_TIMES), min_size=1, max_size=10),
        min_size=1,
        max_size=6,
    ),
    st.sampled_from([0, 1, 3, 20_000]),
)
def test_one_decoder_over_many_batches(batches: list[list[bytes]], memo: int) -> None:
    """A source's decoder keeps the times of the texts it has parsed from batch to batch
    (``ColumnarDecoder.time_memo`` of them, then forgets them): every batch still decodes
    as the scalar decoder does, with the memo cleared in between or not."""
    scalar = RecordDecoder()
    decoder = ColumnarDecoder()
    decoder.time_memo = memo
    for lines in batches:
        expected = scalar_lines(lines, scalar)
        batch = decoder.decode_lines(lines, NOW)
        same(batch.records, [x for x in expected if isinstance(x, Record)])
        assert batch.rejections == [x for x in expected if isinstance(x, Rejection)]


@fuzz(150)
@given(st.lists(mixed_lines, min_size=1, max_size=8))
def test_line_limit_is_the_scalar_one(lines: list[bytes]) -> None:
    assert_equivalent(lines, max_line_bytes=200)


@fuzz(200)
@given(st.lists(valid_records() | one_field_mutations().map(lambda c: c[2]), max_size=12))
def test_array_payloads_decode_as_decode_payload(objs: list[dict[str, Any]]) -> None:
    payload = dumps_or_none(objs)
    if payload is None:
        return
    scalar = RecordDecoder().decode_payload(payload, NOW)
    batch = ColumnarDecoder().decode_payloads([payload, b'{"kind": "x"}'], NOW)
    extra = RecordDecoder().decode_payload(b'{"kind": "x"}', NOW)
    same(batch.records, [x for x in scalar if isinstance(x, Record)])
    assert batch.rejections == [x for x in scalar + extra if isinstance(x, Rejection)]


def test_str_lines_and_blank_lines_take_the_scalar_path() -> None:
    good = orjson.dumps(
        {
            "kind": "event",
            "record_id": "e1",
            "iccid": "8931440000000000011",
            "ts": "2026-11-20T10:00:00Z",
            "type": "attach",
        }
    )
    lines: list[Any] = [good, b"", b"   ", good.decode(), b"{} {}", b"\xef\xbb\xbf" + good]
    decoder = RecordDecoder()
    expected = [decoder.decode_line(x, NOW) for x in lines]
    batch = ColumnarDecoder().decode_lines(lines, NOW)
    same(batch.records, [x for x in expected if isinstance(x, Record)])
    assert len(batch.records) == 3  # the bytes, the str and the BOM line
    assert batch.rejections == [x for x in expected if isinstance(x, Rejection)]


ODD_STAMPS = [
    "2026-02-29T00:00:00Z", "2028-02-29T00:00:00Z", "2100-02-29T00:00:00Z",
    "2026-13-01T00:00:00Z", "2026-11-20T24:00:00Z", "2026-11-20T10:15:60Z",
    "2026-11-31T00:00:00Z", "2026-11-20t10:15:00z", "2026-11-20T10:15:00+01",
    "\uff11\uff19\uff17\uff10-01-01T00:00:00Z", "1969-12-31T23:59:59Z", "0000-01-01T00:00:00Z",
]  # fmt: skip


def utc_text(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@fuzz(300)
@given(st.lists(st.integers(0, 2**33).map(utc_text) | st.sampled_from(ODD_STAMPS), max_size=20))
def test_timestamp_column_equals_the_scalar_parser(texts: list[str]) -> None:
    values, ok = parse_utc_column(texts)
    for text, value, fine in zip(texts, values.tolist(), ok.tolist(), strict=True):
        if fine:
            assert value == parse_rfc3339(text)
        else:
            assert math.isnan(value)
    assert ok.sum() >= sum(1 for t in texts if t not in ODD_STAMPS)


def test_invalid_utf8_in_an_ignored_key_is_rejected_as_one_at_a_time() -> None:
    # found by hypothesis: msgspec skips an unknown key without checking its bytes
    good = b'{"kind":"event","record_id":"0","iccid":"000000000000000000",'
    good += b'"ts":"2025-10-16t12:00:00z","type":"attach"}'
    bad = good[:-1] + b',"\xffoperator":""}'
    assert_equivalent([good, bad])
    payload = b"[" + bad + b"]"
    scalar = RecordDecoder().decode_payload(payload, NOW)
    batch = ColumnarDecoder(RecordDecoder()).decode_payload(payload, NOW)
    assert len(batch.records) == 0
    assert batch.rejections == [x for x in scalar if isinstance(x, Rejection)]


def test_fields_of_other_kinds_are_ignored_as_one_at_a_time() -> None:
    """A record carrying another kind's fields (a usage record with a ``ts`` and no
    ``end``, a session with an event's ``type``...): the batch picks each kind's own
    fields as the scalar decoder does, whichever kinds share the batch."""
    iccid = '"iccid":"8931440000000000001"'
    usage = b'{"kind":"usage","record_id":"u1",' + iccid.encode()
    usage += (
        b',"start":"2025-10-16T11:45:00Z","end":"2025-10-16T12:00:00Z","bytes_up":1,"bytes_down":2'
    )
    session = b'{"kind":"session","record_id":"s1",' + iccid.encode()
    session += b',"ts":"2025-10-16T12:00:00Z","session_id":"x","status":"interim"'
    event = b'{"kind":"event","record_id":"e1",' + iccid.encode()
    event += b',"ts":"2025-10-16T12:00:00Z","type":"attach"'
    lines = [
        usage + b"}",
        usage.replace(b'"end"', b'"ts"') + b"}",  # no end: rejected, ts or not
        usage + b',"ts":"2025-10-16T12:01:00Z","status":"ended","type":"detach"}',
        session + b"}",
        session + b',"start":"2025-10-16T11:00:00Z","end":"x","type":"purge","cause":"c"}',
        event + b"}",
        event + b',"status":"started","end_cause":"normal","session_id":"s","start":"y"}',
    ]
    for k in range(1, len(lines) + 1):
        assert_equivalent(lines[:k])
        assert_equivalent(lines[-k:])


# ---- the compiled fast path (core/_cdecode.c) against the Python path ------------------
#
# Documented behaviour (core/columnar.py step 0, docs/performance.md "Seventh pass"): with
# the optional C extension, ``decode_lines`` gives the same columns (values, dtypes, str or
# None per row) and the same rejections as without it, whatever the lines hold; the C
# code takes the canonical FORMATS.md lines and leaves every other one to the Python path.

ASCII_TEXT = st.text(st.characters(min_codepoint=0, max_codepoint=127), max_size=24)
EARLIEST = 1_577_836_800  # records.EARLIEST_TIME
# times around the limits: the future limit (now + 300 s) and the earliest time kept
CANONICAL_EPOCHS = st.integers(int(NOW) - 400 * 86_400, int(NOW) + 400) | st.sampled_from(
    [int(NOW) + d for d in (299, 300, 301)] + [EARLIEST + d for d in (-1, 0, 1)]
)
# texts of the canonical shape that are not valid times, or are at the edges of the rules
ODD_CANONICAL = st.sampled_from([
    "2026-11-20T10:15:60Z", "2026-11-31T00:00:00Z", "2026-02-29T00:00:00Z",
    "2024-02-29T00:00:00Z", "2100-02-29T00:00:00Z", "2026-11-20T24:00:00Z",
    "2026-13-01T00:00:00Z", "2026-00-10T00:00:00Z", "2026-11-00T00:00:00Z",
    "2019-12-31T23:59:59Z", "1999-12-31T23:59:59Z", "2026-11-20T10:60:00Z",
    "2026-11-20T1a:00:00Z", "2026/11/20T10:15:00Z", "2026-11-20T10:15:00Y",
    "2026-06-31T00:00:00Z", "2025-02-30T00:00:00Z", "2025-12-32T00:00:00Z",
])  # fmt: skip


@st.composite
def rarely(draw: st.DrawFn, good: st.SearchStrategy[Any], odd: st.SearchStrategy[Any]) -> Any:
    """Mostly ``good``, sometimes ``odd`` (a middle value: hypothesis favours the ends)."""
    return draw(odd) if draw(st.integers(0, 9)) == 5 else draw(good)


def canonical_time(ts: int) -> st.SearchStrategy[str]:
    return rarely(st.just(canonical_stamp(ts)), ODD_CANONICAL)


def canonical_stamp(ts: int) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@st.composite
def canonical_records(draw: st.DrawFn) -> dict[str, Any]:
    """FORMATS.md records in the shapes the C path takes: ASCII values (some needing
    escapes in JSON: those are for the Python path), ``...Z`` times, plain integers; one
    value in eight or so at or over the edge of a rule."""
    kind = draw(rarely(st.sampled_from(["usage", "session", "event"]), st.just("Usage")))
    ids = st.text("abc-0123456789", min_size=1, max_size=30)
    rec: dict[str, Any] = {
        "kind": kind,
        "record_id": draw(rarely(ids, ASCII_TEXT | st.sampled_from(["x" * 256, "x" * 257]))),
        "iccid": draw(rarely(iccids, st.sampled_from([17, 23]).map("9".__mul__) | ASCII_TEXT)),
    }
    counts = rarely(
        st.integers(0, 2**40),
        st.sampled_from([0, MAX_COUNT, MAX_COUNT + 1, 10**15, 10**16, "1", -1]),
    )
    if kind.lower() == "usage":
        end = draw(CANONICAL_EPOCHS)
        window = rarely(st.integers(0, 86_400), st.sampled_from([-60, -1, 0, 1]))
        rec["start"] = draw(canonical_time(end - draw(window)))
        rec["end"] = draw(canonical_time(end))
        rec["bytes_up"] = draw(counts)
        rec["bytes_down"] = draw(counts)
    else:
        rec["ts"] = draw(canonical_time(draw(CANONICAL_EPOCHS)))
        if draw(st.booleans()):
            rec["bytes_up"] = draw(counts)
        if draw(st.booleans()):
            rec["bytes_down"] = draw(counts)
    if kind == "session" or draw(st.integers(0, 9)) == 0:  # other kinds' fields: ignored
        rec["session_id"] = draw(rarely(ids, ASCII_TEXT | st.just(7)))
        rec["status"] = draw(rarely(st.sampled_from(sorted(SESSION_STATUSES)), st.just("paused")))
        if draw(st.booleans()):
            rec["end_cause"] = draw(
                rarely(st.sampled_from(sorted(END_CAUSES)), ASCII_TEXT | st.just(3))
            )
    if kind == "event" or draw(st.integers(0, 9)) == 0:
        rec["type"] = draw(rarely(st.sampled_from(sorted(EVENT_TYPES)), st.just("reboot")))
        if draw(st.booleans()):
            rec["cause"] = draw(rarely(ids, ASCII_TEXT | st.just(4)))
    for name in ("apn", "rat", "operator"):
        if draw(st.booleans()):
            rec[name] = draw(
                rarely(st.sampled_from(["internet", "LTE-M", "NB-IoT"]), ASCII_TEXT | st.just(5))
            )
    if draw(st.booleans()):
        rec["mcc"] = draw(
            rarely(
                st.sampled_from(["262", "208"]), st.sampled_from(["", "26", "2620", "a62", "2 2"])
            )
        )
        rec["mnc"] = draw(
            rarely(st.sampled_from(["02", "002"]), st.sampled_from(["", "2", "0x", "0202"]))
        )
    return rec


# byte-level edits of a canonical line: each makes it unusual for the C path or invalid
EDITS = [
    (b'"kind"', b'"\\u006bind"'),  # an escaped key
    (b'"record_id":"', b'"record_id":"\\n'),  # an escape in a value
    (b'"iccid"', b'"iccid":null,"iccid"'),  # a duplicate key, null first
    (b',"iccid"', b',"imsi":"262011234567890","iccid"'),  # an unknown key
    (b'"bytes_up":', b'"bytes_up":-'),  # a negative count
    (b'"bytes_up":', b'"bytes_up":0'),  # a leading zero
    (b'"bytes_down":', b'"bytes_down":99999999999999999999'),  # a huge number
    (b'"bytes_down":1', b'"bytes_down":1.0'),  # a fraction
    (b'"bytes_down":', b'"bytes_down":1e3,"x":'),  # an exponent, then an unknown key
    (b'Z"', b'z"'),  # a lower-case zone
    (b'Z"', b'+00:00"'),  # an offset
    (b'Z"', b'.5Z"'),  # a fraction of a second
    (b'"apn":"', b'"apn":"\xc3\xa9'),  # non-ASCII
    (b'"mcc":"', b'"mcc":null,"mc":"'),  # a null
    (b'":', b'" : '),  # whitespace around a colon: valid JSON, taken
    (b",", b" ,\t"),  # whitespace around a comma: valid JSON, taken
    (b"}", b"}{}"),  # two values on a line
    (b"}", b",}"),  # a trailing comma
    (b'"', b""),  # a quote less
    (b'"kind":"', b'"kind":true,"k":"'),  # a boolean
    (b",", b",\x0c"),  # a form feed: not JSON whitespace
    (b'"apn":"', b'"apn":["'),  # an array
]


@st.composite
def canonical_lines(draw: st.DrawFn) -> bytes:
    """A canonical record line, perhaps edited (EDITS, truncated, mangled bytes)."""
    data = orjson.dumps(draw(canonical_records()))
    how = draw(st.integers(0, 5))
    if how == 1:
        old, new = draw(st.sampled_from(EDITS))
        data = data.replace(old, new, draw(st.integers(1, 2)))
    elif how == 2:
        data = data[: draw(st.integers(0, len(data)))]
    elif how == 3:
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(interesting_bytes | st.binary(min_size=1, max_size=3)) + data[at:]
    elif how == 4:
        field = draw(st.sampled_from(["record_id", "iccid", "kind", "ts", "end", "mcc", "apn"]))
        obj = orjson.loads(data)
        obj[field] = draw(nasty)
        data = dumps_or_none(obj) or data
    return data + draw(st.sampled_from([b"", b"\n", b"\r\n", b" "]))


def same_columns(a: RecordColumns, b: RecordColumns) -> None:
    for f in fields(RecordColumns):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            assert x.dtype == y.dtype, f.name
            assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), f.name
        else:
            assert x == y, f.name
            assert [type(v) for v in x] == [type(v) for v in y], f.name


def assert_paths_agree(lines: list[bytes], max_line_bytes: int = 65536) -> None:
    """The C path, the Python path and the scalar decoder: the same batch."""
    fast = ColumnarDecoder(RecordDecoder(max_line_bytes=max_line_bytes)).decode_lines(lines, NOW)
    slow = ColumnarDecoder(RecordDecoder(max_line_bytes=max_line_bytes), compiled=False)
    python = slow.decode_lines(lines, NOW)
    same_columns(fast.records, python.records)
    assert fast.rejections == python.rejections
    expected = scalar_lines(lines, RecordDecoder(max_line_bytes=max_line_bytes))
    same(fast.records, [x for x in expected if isinstance(x, Record)])
    assert fast.rejections == [x for x in expected if isinstance(x, Rejection)]


needs_c = pytest.mark.skipif(not COMPILED, reason="the optional C extension is not built")


@needs_c
@fuzz(400)
@given(st.lists(canonical_lines() | mixed_lines, min_size=1, max_size=25))
def test_compiled_and_python_paths_give_the_same_batch(lines: list[bytes]) -> None:
    assert_paths_agree(lines)


BASE_LINES = [
    {"kind": "usage", "record_id": "u-1", "iccid": "8931440000000000011",
     "start": "2026-11-20T10:00:00Z", "end": "2026-11-20T10:15:00Z", "bytes_up": 1200,
     "bytes_down": 340, "apn": "meters.acme", "mcc": "262", "mnc": "02", "rat": "LTE-M",
     "operator": "Acme"},
    {"kind": "session", "record_id": "s-10", "iccid": "8931440000000000011",
     "session_id": "a1b2", "status": "ended", "ts": "2026-11-20T11:00:01Z",
     "bytes_up": 88000, "bytes_down": 12000, "end_cause": "scheduled_reset", "apn": "x",
     "mcc": "262", "mnc": "002"},
    {"kind": "event", "record_id": "e-3", "iccid": "8931440000000000011",
     "ts": "2026-11-20T10:00:00Z", "type": "auth_failure", "apn": "internet", "mcc": "262",
     "mnc": "02", "cause": "apn_not_allowed", "bytes_up": 0},
]  # fmt: skip
ODD_VALUES: list[object] = [
    None, "", 0, 5, -1, 1.5, 2**53, 2**53 + 1, 10**16, True, [], {}, "x" * 257, "9" * 23,
    "9" * 17, "Usage", "paused", "reboot", "2026-11-20T10:15:00+00:00", "26", "0202", "a",
]  # fmt: skip


@needs_c
def test_compiled_path_on_every_edit_of_valid_lines() -> None:
    """Each FORMATS.md example line with every EDIT, and every field of it set to each
    of ODD_VALUES or left out: the C path and the Python path agree on each batch."""
    lines = [orjson.dumps(rec) for rec in BASE_LINES]
    assert compiled_fallback(lines) == []
    batch = list(lines)
    for line in lines:
        for old, new in EDITS:
            batch += [line.replace(old, new, 1), line.replace(old, new)]
        batch += [line[:cut] for cut in range(0, len(line), 7)]
        batch += [line + end for end in (b"\n", b"\r\n", b" \t", b"\n\n", b"\x00")]
    for rec in BASE_LINES:
        for field in [*rec, "session_id", "status", "type", "cause", "end_cause", "operator"]:
            batch.append(orjson.dumps({k: v for k, v in rec.items() if k != field}))
            batch += [orjson.dumps({**rec, field: value}) for value in ODD_VALUES]
    assert_paths_agree(batch)
    assert_paths_agree(batch[::-1])
    assert 0 < len(compiled_fallback(batch)) < len(batch) - 30


@needs_c
def test_compiled_path_at_the_edges_of_the_time_rules() -> None:
    """Every odd or edge time in each time field of each kind, and windows around zero."""
    iccid = "8931440000000000011"
    texts = [*ODD_CANONICAL.elements, "2026-11-20T10:00:00Z", "2024-02-29T23:59:59Z"]  # type: ignore[attr-defined]
    texts += [canonical_stamp(t) for t in (int(NOW) + 299, int(NOW) + 300, int(NOW) + 301)]
    texts += [canonical_stamp(EARLIEST + d) for d in (-1, 0, 1)]
    lines = []
    for text in texts:
        for other in ("2026-11-20T10:00:00Z", text):
            lines.append(orjson.dumps({"kind": "usage", "record_id": "u", "iccid": iccid,
                "start": text, "end": other, "bytes_up": 1, "bytes_down": 2}))  # fmt: skip
            lines.append(orjson.dumps({"kind": "usage", "record_id": "u", "iccid": iccid,
                "start": other, "end": text, "bytes_up": 1, "bytes_down": 2}))  # fmt: skip
        lines.append(orjson.dumps({"kind": "event", "record_id": "e", "iccid": iccid,
            "ts": text, "type": "attach"}))  # fmt: skip
        lines.append(orjson.dumps({"kind": "session", "record_id": "s", "iccid": iccid,
            "ts": text, "session_id": "a", "status": "ended"}))  # fmt: skip
    assert_paths_agree(lines)
    assert 0 < len(compiled_fallback(lines)) < len(lines)


@needs_c
@fuzz(100)
@given(st.lists(canonical_lines(), min_size=1, max_size=12))
def test_compiled_path_keeps_the_line_limit(lines: list[bytes]) -> None:
    assert_paths_agree(lines, max_line_bytes=180)


def compiled_fallback(lines: list[Any], now: float = NOW) -> list[int]:
    """The indices of the lines the C code leaves to the Python path."""
    from simwatch.core import _cdecode  # noqa: PLC0415 - only when built

    n = len(lines)
    arrays = (np.empty(n, np.int8), np.empty(n), np.empty(n), *(np.empty(n, np.int64),) * 2)
    return _cdecode.decode_lines(lines, 65536, now + 300.0, *arrays)[0]


@needs_c
@fuzz(200)
@given(st.lists(canonical_records(), min_size=1, max_size=20))
def test_canonical_valid_lines_take_the_compiled_path(recs: list[dict[str, Any]]) -> None:
    """Every canonical line the scalar decoder accepts, with no JSON escape, is taken by
    the C code: the parity tests above exercise it, and the enums it knows are
    SESSION_STATUSES and EVENT_TYPES (a new one would fall back: no wrong result, but
    this fails)."""
    lines = [orjson.dumps(r) + b"\n" for r in recs]
    scalar = RecordDecoder()
    accepted = [
        i for i, line in enumerate(lines)
        if type(scalar.decode_line(line, NOW)) is Record and b"\\" not in line
    ]  # fmt: skip
    assert sorted(set(range(len(lines))) - set(compiled_fallback(lines))) == accepted
    for status in SESSION_STATUSES:
        assert_paths_agree([line.replace(b'"interim"', f'"{status}"'.encode()) for line in lines])


@needs_c
def test_every_event_type_and_status_is_known_to_the_compiled_path() -> None:
    base = {"record_id": "r", "iccid": "8931440000000000011", "ts": "2026-11-20T10:00:00Z"}
    lines = [orjson.dumps({**base, "kind": "event", "type": t}) for t in sorted(EVENT_TYPES)]
    lines += [
        orjson.dumps({**base, "kind": "session", "session_id": "s", "status": s})
        for s in sorted(SESSION_STATUSES)
    ]
    assert compiled_fallback(lines) == []
    odd = [line.replace(b'"r"', b'"r","type":"x"', 1) for line in lines[:1]]
    assert compiled_fallback(odd) == [0]  # a repeated key


@needs_c
@fuzz(300)
@given(st.lists(st.binary(max_size=300) | st.text(max_size=50), max_size=10))
def test_compiled_path_takes_any_input_without_crashing(lines: list[Any]) -> None:
    assert len(compiled_fallback(lines)) <= len(lines)
    assert_paths_agree([x for x in lines if isinstance(x, bytes)])


@needs_c
def test_compiled_path_checks_its_buffers() -> None:
    from simwatch.core import _cdecode  # noqa: PLC0415 - only when built

    small = (np.empty(1, np.int8), np.empty(1), np.empty(1), *(np.empty(1, np.int64),) * 2)
    with pytest.raises(ValueError, match="kind"):
        _cdecode.decode_lines([b"{}", b"{}"], 65536, NOW, *small)
    wrong = (np.empty(2, np.int64), *small[1:])
    with pytest.raises(ValueError, match="kind"):
        _cdecode.decode_lines([b"{}"], 65536, NOW, *wrong)
    with pytest.raises(TypeError):
        _cdecode.decode_lines(5, 65536, NOW, *small)  # type: ignore[arg-type]


@needs_c
def test_a_batch_in_another_shape_is_left_to_the_python_path() -> None:
    """After 64 lines without one taken, the C code leaves the rest of the batch untried;
    the records and rejections are the same."""
    lines = [orjson.dumps(rec) for rec in BASE_LINES] * 30
    offsets = [line.replace(b'Z"', b'+00:00"') for line in lines]
    batch = offsets[:70] + lines[:5] + offsets[70:] + lines[5:] + [b"{}"]
    assert compiled_fallback(batch) == list(range(len(batch)))
    assert_paths_agree(batch)
    mixed = lines[:1] + offsets[:70] + lines[1:9] + [b"[]"] + offsets[70:75]
    assert len(compiled_fallback(mixed)) == 76
    assert_paths_agree(mixed)
