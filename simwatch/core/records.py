"""Record decoding (FORMATS.md "Records") and the reject reasons.

Duplicate detection by ``record_id`` is ``simwatch.core.dedup``.

The decoder is the hot path of every source: it turns one NDJSON line, one MQTT/HTTP
payload or one already-parsed JSON object into a :class:`Record` or a :class:`Rejection`.
It never raises on bad input and never reads the wall clock: ``now`` is passed in.

Speed notes: parsing is orjson; validation is plain ``type(x) is ...`` checks and
``dict.get`` calls, with no exceptions on the happy path (only a timestamp that fails to
parse raises inside, and that record is rejected anyway). Timestamps go through a
:class:`~simwatch.core.timeutil.CachedTimeParser` owned by the decoder because record streams
repeat the same window boundaries over and over.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import orjson

from simwatch.core.timeutil import CachedTimeParser, TimeParseError

__all__ = [
    "END_CAUSES",
    "EVENT_TYPES",
    "KINDS",
    "SESSION_STATUSES",
    "Record",
    "RecordDecoder",
    "RejectReason",
    "Rejection",
]


class RejectReason(StrEnum):
    """Why an input was rejected. The values are stable metric label values."""

    INVALID_JSON = "invalid_json"
    NOT_OBJECT = "not_object"
    MISSING_FIELD = "missing_field"
    BAD_TYPE = "bad_type"
    BAD_ICCID = "bad_iccid"
    NEGATIVE_BYTES = "negative_bytes"
    UNKNOWN_KIND = "unknown_kind"
    BAD_VALUE = "bad_value"
    BAD_TIME = "bad_time"
    FUTURE_TIME = "future_time"
    BAD_WINDOW = "bad_window"
    TOO_LARGE = "too_large"
    DUPLICATE_ICCID = "duplicate_iccid"  # inventory: a second row for an ICCID already loaded


KINDS: Final = frozenset({"usage", "session", "event"})
SESSION_STATUSES: Final = frozenset({"started", "interim", "ended"})
# Known end causes. Any other string is kept as given (FORMATS: extend, never break).
END_CAUSES: Final = frozenset(
    {"normal", "idle_timeout", "scheduled_reset", "network_failure", "admin", "unknown"}
)
EVENT_TYPES: Final = frozenset(
    {"attach", "detach", "location_update", "purge", "auth_failure", "pdp_reject"}
    # the platforms' policy events (FORMATS.md, 2026-12-04)
    | {"attach_reject", "blocked", "quota_exhausted", "throttled"}
)

# Longest value excerpt quoted in a rejection detail, and longest raw text kept for a
# line rejected as too large (the rest is dropped; the detail gives the real size).
_DETAIL_VALUE_CHARS: Final = 64
_TOO_LARGE_RAW_CHARS: Final = 4096
_MAX_RECORD_ID_CHARS: Final = 256
_BOM: Final = b"\xef\xbb\xbf"
# Byte counts above this are refused: 2**53 (8 PB, exact as a float, and any sum of two
# fits the int64 columns; month totals saturate at it).
MAX_COUNT: Final = 2**53
# Event times before this are refused: 2020-01-01T00:00:00Z, the earliest time the fleet
# state stores (state.EPOCH_BASE). Older times mostly come from a device whose clock was
# never set (1970, 2000) and would corrupt its rhythm.
EARLIEST_TIME: Final = 1_577_836_800.0
_JSON_ERRORS: Final = (orjson.JSONDecodeError,)


@dataclass(slots=True)
class Record:
    """One decoded record. Times are epoch seconds (UTC)."""

    kind: str  # "usage" | "session" | "event"
    record_id: str
    iccid: str
    ts: float  # event time: usage -> `end`, session/event -> `ts`
    start: float | None = None  # usage window start
    bytes_up: int = 0
    bytes_down: int = 0
    apn: str | None = None
    mcc: str | None = None  # digits as given
    mnc: str | None = None  # digits as given: "02" and "002" stay distinct
    rat: str | None = None
    session_id: str | None = None
    status: str | None = None  # session: started | interim | ended
    end_cause: str | None = None
    event_type: str | None = None  # event: one of EVENT_TYPES
    cause: str | None = None
    operator: str | None = None  # optional operator name given by the producer

    @property
    def partner(self) -> str | None:
        """The visited network as MCC followed by MNC (``26202``), when both are known."""
        mcc = self.mcc
        mnc = self.mnc
        if mcc is None or mnc is None:
            return None
        return mcc + mnc


@dataclass(frozen=True, slots=True)
class Rejection:
    """An input that could not be used, with the reason and the original text."""

    reason: RejectReason
    detail: str  # plain English, names the field
    raw: str  # the original line/payload text (UTF-8, invalid bytes replaced)
    record_id: str | None = None
    iccid: str | None = None


# Internal rejection before `raw` is attached: (reason, detail, record_id, iccid).
_Reject = tuple[RejectReason, str, "str | None", "str | None"]


def _show(value: object) -> str:
    """A short, safe rendering of a JSON value for a rejection detail."""
    text = orjson.dumps(_text_of(value)).decode() if isinstance(value, str) else repr(value)
    if len(text) > _DETAIL_VALUE_CHARS:
        return text[:_DETAIL_VALUE_CHARS] + "..."
    return text


_JSON_TYPE_NAMES: Final = {
    type(None): "null",
    bool: "boolean",
    int: "number",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
}


def _json_type(value: object) -> str:
    return _JSON_TYPE_NAMES.get(type(value)) or type(value).__name__


def _bad_type(field: str, value: object, want: str, rid: str | None, iccid: str | None) -> _Reject:
    return (
        RejectReason.BAD_TYPE,
        f"field '{field}': expected {want}, got {_json_type(value)} {_show(value)}",
        rid,
        iccid,
    )


def _missing(field: str, kind: str, rid: str | None, iccid: str | None) -> _Reject:
    return (RejectReason.MISSING_FIELD, f"field '{field}' is required on {kind}", rid, iccid)


def _text_of(data: bytes | str) -> str:
    """Original input as a clean str: invalid UTF-8 and lone surrogates become U+FFFD."""
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return data.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


class RecordDecoder:
    """Decodes FORMATS.md records. One instance per source (it owns a timestamp cache)."""

    __slots__ = ("_max_future_s", "_max_line_bytes", "_max_payload_bytes", "_parse_time")

    def __init__(
        self,
        *,
        max_future_s: float = 300.0,
        max_line_bytes: int = 65536,
        max_payload_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        self._max_future_s = max_future_s
        self._max_line_bytes = max_line_bytes
        self._max_payload_bytes = max_payload_bytes
        self._parse_time = CachedTimeParser()

    @property
    def max_future_s(self) -> float:
        return self._max_future_s

    @property
    def max_line_bytes(self) -> int:
        return self._max_line_bytes

    @property
    def max_payload_bytes(self) -> int:
        return self._max_payload_bytes

    # ---------------------------------------------------------------- entry points

    def decode_line(self, line: bytes | str, now: float) -> Record | Rejection:
        """Decode one NDJSON line (a trailing newline is allowed).

        A blank line is rejected as ``invalid_json``; line-oriented callers normally skip
        blank lines before calling this (``decode_payload`` does).
        """
        size = len(line)
        limit = self._max_line_bytes
        # A str has at most 4 UTF-8 bytes per character: encode only when it could matter.
        if size > limit or (
            size * 4 > limit
            and type(line) is str
            and len(line.encode("utf-8", "surrogatepass")) > limit
        ):
            return self._too_large(line, "line", limit)
        try:
            obj = orjson.loads(line)
        except _JSON_ERRORS as exc:
            return self._line_json_error(line, exc, now)
        result = self._check(obj, now)
        if type(result) is Record:
            return result
        return self._rejection(result, _text_of(line).rstrip("\r\n"))  # type: ignore[arg-type]

    def decode_obj(self, obj: object, now: float, raw: str | None = None) -> Record | Rejection:
        """Decode an already-parsed JSON value (e.g. one element of an MQTT array).

        ``raw`` is the text to keep on rejection; by default the value re-serialised as JSON.
        """
        result = self._check(obj, now)
        if type(result) is Record:
            return result
        if raw is None:
            raw = _dump(obj)
        return self._rejection(result, raw)  # type: ignore[arg-type]

    def decode_payload(self, payload: bytes, now: float) -> list[Record | Rejection]:
        """Decode one MQTT/HTTP payload.

        Accepted forms: a single JSON object, a JSON array of objects, or NDJSON lines
        (blank lines skipped). A bad array element or line is rejected on its own; the
        others survive. A payload above ``max_payload_bytes`` is rejected whole.
        """
        if len(payload) > self._max_payload_bytes:
            return [self._too_large(payload, "payload", self._max_payload_bytes)]
        try:
            obj = orjson.loads(payload)
        except _JSON_ERRORS as exc:
            return self._decode_lines(payload, now, exc)
        check = self._check
        if type(obj) is not list:
            single = check(obj, now)
            if type(single) is Record:
                return [single]
            return [self._rejection(single, _text_of(payload).strip())]  # type: ignore[arg-type]
        out: list[Record | Rejection] = []
        append = out.append
        for item in obj:
            result = check(item, now)
            if type(result) is Record:
                append(result)
            else:
                append(self._rejection(result, _dump(item)))  # type: ignore[arg-type]
        return out

    def _decode_lines(self, payload: bytes, now: float, exc: Exception) -> list[Record | Rejection]:
        """The payload is not one JSON value: NDJSON, or a BOM, or just broken."""
        body = payload.strip()
        if not body:
            return []
        if body.startswith(_BOM) and not body[len(_BOM) :].lstrip().startswith(_BOM):
            return self.decode_payload(body[len(_BOM) :], now)  # one BOM is skipped, once
        if b"\n" not in body:
            return [self._json_rejection(payload, exc)]
        return [
            self.decode_line(line, now) for line in body.split(b"\n") if line and not line.isspace()
        ]

    # ---------------------------------------------------------------- rejections

    @staticmethod
    def _rejection(result: _Reject, raw: str) -> Rejection:
        reason, detail, rid, iccid = result
        return Rejection(reason, detail, raw, rid, iccid)

    @staticmethod
    def _too_large(data: bytes | str, what: str, limit: int) -> Rejection:
        size = len(data) if isinstance(data, bytes) else len(data.encode("utf-8", "surrogatepass"))
        text = _text_of(data[:_TOO_LARGE_RAW_CHARS])
        return Rejection(
            RejectReason.TOO_LARGE,
            f"{what} is {size} bytes, over the limit of {limit} bytes "
            f"(raw keeps the first {_TOO_LARGE_RAW_CHARS})",
            text,
        )

    def _line_json_error(self, line: bytes | str, exc: Exception, now: float) -> Record | Rejection:
        # A UTF-8 byte order mark (first line of a file saved by some editors) is skipped.
        # Only one: the rest must not start with another (no recursion on junk).
        if isinstance(line, bytes):
            if line.startswith(_BOM) and not line.startswith(_BOM, len(_BOM)):
                return self.decode_line(line[len(_BOM) :], now)
        elif line.startswith("\ufeff") and not line.startswith("\ufeff", 1):
            return self.decode_line(line[1:], now)
        return self._json_rejection(line, exc)

    @staticmethod
    def _json_rejection(data: bytes | str, exc: Exception) -> Rejection:
        text = _text_of(data).rstrip("\r\n")
        if not text.strip():
            return Rejection(RejectReason.INVALID_JSON, "empty line", text)
        return Rejection(RejectReason.INVALID_JSON, f"not valid JSON: {exc}", text)

    # ---------------------------------------------------------------- validation

    def _check(self, obj: object, now: float) -> Record | _Reject:  # noqa: PLR0911 - flat dispatch
        if type(obj) is not dict:
            return (
                RejectReason.NOT_OBJECT,
                f"expected a JSON object, got {_json_type(obj)}",
                None,
                None,
            )
        get = obj.get

        rid = get("record_id")
        if type(rid) is not str or not rid or len(rid) > _MAX_RECORD_ID_CHARS:
            if rid is None:
                return _missing("record_id", "every record", None, None)
            if type(rid) is not str:
                return _bad_type("record_id", rid, "a string", None, None)
            return (
                RejectReason.BAD_VALUE,
                f"field 'record_id': must be 1-{_MAX_RECORD_ID_CHARS} characters, got {len(rid)}",
                None,
                None,
            )

        iccid = get("iccid")
        if (
            type(iccid) is not str
            or not 18 <= len(iccid) <= 22
            or not iccid.isdigit()
            or not iccid.isascii()
        ):
            if iccid is None:
                return _missing("iccid", "every record", rid, None)
            if type(iccid) is not str:
                return _bad_type("iccid", iccid, "a string of 18-22 digits", rid, None)
            return (
                RejectReason.BAD_ICCID,
                f"field 'iccid': {_show(iccid)} is not 18-22 digits",
                rid,
                None,
            )

        kind = get("kind")
        start: float | None
        if kind == "usage":
            start_v = get("start")
            end_v = get("end")
            if type(start_v) is not str or type(end_v) is not str:
                return _bad_window_types(start_v, end_v, rid, iccid)
            parse = self._parse_time
            try:
                start = parse(start_v)
            except TimeParseError:
                return _bad_time("start", start_v, rid, iccid)
            try:
                ts = parse(end_v)
            except TimeParseError:
                return _bad_time("end", end_v, rid, iccid)
            if ts < start:
                return (
                    RejectReason.BAD_WINDOW,
                    f"field 'end': {_show(end_v)} is before field 'start' {_show(start_v)}",
                    rid,
                    iccid,
                )
            if ts > now + self._max_future_s:
                detail = self._future("end", end_v, ts - now)
                return (RejectReason.FUTURE_TIME, detail, rid, iccid)
            if start < EARLIEST_TIME:
                return _too_old("start", start_v, rid, iccid)
        elif kind in ("session", "event"):
            tsv = get("ts")
            if type(tsv) is not str:
                if tsv is None:
                    return _missing("ts", kind, rid, iccid)
                return _bad_type("ts", tsv, "an RFC 3339 string", rid, iccid)
            try:
                ts = self._parse_time(tsv)
            except TimeParseError:
                return _bad_time("ts", tsv, rid, iccid)
            if ts > now + self._max_future_s:
                detail = self._future("ts", tsv, ts - now)
                return (RejectReason.FUTURE_TIME, detail, rid, iccid)
            if ts < EARLIEST_TIME:
                return _too_old("ts", tsv, rid, iccid)
            start = None
        elif kind is None:
            return _missing("kind", "every record", rid, iccid)
        elif type(kind) is not str:
            return _bad_type("kind", kind, "a string", rid, iccid)
        else:
            return (
                RejectReason.UNKNOWN_KIND,
                f"field 'kind': {_show(kind)} is not one of event, session, usage",
                rid,
                iccid,
            )

        # Byte counts: required on usage (a usage record without them would read as
        # silence), optional elsewhere (0 when absent or null).
        up = get("bytes_up")
        down = get("bytes_down")
        if (
            type(up) is not int
            or type(down) is not int
            or not 0 <= up <= MAX_COUNT
            or not 0 <= down <= MAX_COUNT
        ):
            bad_bytes = _check_bytes(kind, up, down, rid, iccid)
            if bad_bytes is not None:
                return bad_bytes
            up = up or 0
            down = down or 0

        mcc = get("mcc")
        mnc = get("mnc")
        if mcc is not None and (
            type(mcc) is not str or len(mcc) != 3 or not mcc.isdigit() or not mcc.isascii()
        ):
            if mcc == "":
                mcc = None
            else:
                return _bad_digits("mcc", mcc, "3 digits", rid, iccid)
        if mnc is not None and (
            type(mnc) is not str or not 2 <= len(mnc) <= 3 or not mnc.isdigit() or not mnc.isascii()
        ):
            if mnc == "":
                mnc = None
            else:
                return _bad_digits("mnc", mnc, "2-3 digits", rid, iccid)

        apn = get("apn")
        rat = get("rat")
        operator = get("operator")
        if (
            (apn is not None and type(apn) is not str)
            or (rat is not None and type(rat) is not str)
            or (operator is not None and type(operator) is not str)
        ):
            for name, value in (("apn", apn), ("rat", rat), ("operator", operator)):
                if value is not None and type(value) is not str:
                    return _bad_type(name, value, "a string", rid, iccid)

        session_id = status = end_cause = event_type = cause = None
        if kind == "session":
            session_id = get("session_id")
            if type(session_id) is not str or not session_id:
                if session_id is None:
                    return _missing("session_id", "session", rid, iccid)
                if type(session_id) is not str:
                    return _bad_type("session_id", session_id, "a string", rid, iccid)
                return (RejectReason.BAD_VALUE, "field 'session_id' is empty", rid, iccid)
            status = get("status")
            if type(status) is not str or status not in SESSION_STATUSES:
                if status is None:
                    return _missing("status", "session", rid, iccid)
                if type(status) is not str:
                    return _bad_type("status", status, "a string", rid, iccid)
                return (
                    RejectReason.BAD_VALUE,
                    f"field 'status': {_show(status)} is not one of started, interim, ended",
                    rid,
                    iccid,
                )
            end_cause = get("end_cause")
            if end_cause is not None and type(end_cause) is not str:
                return _bad_type("end_cause", end_cause, "a string", rid, iccid)
        elif kind == "event":
            event_type = get("type")
            if type(event_type) is not str or event_type not in EVENT_TYPES:
                if event_type is None:
                    return _missing("type", "event", rid, iccid)
                if type(event_type) is not str:
                    return _bad_type("type", event_type, "a string", rid, iccid)
                return (
                    RejectReason.BAD_VALUE,
                    f"field 'type': {_show(event_type)} is not one of "
                    + ", ".join(sorted(EVENT_TYPES)),
                    rid,
                    iccid,
                )
            cause = get("cause")
            if cause is not None and type(cause) is not str:
                return _bad_type("cause", cause, "a string", rid, iccid)

        return Record(
            kind,
            rid,
            iccid,
            ts,
            start,
            up,
            down,
            apn or None,
            mcc,
            mnc,
            rat or None,
            session_id,
            status,
            end_cause,
            event_type,
            cause,
            operator or None,
        )

    def _future(self, field: str, text: str, ahead: float) -> str:
        return (
            f"field '{field}': {_show(text)} is {ahead:.0f} s in the future "
            f"(limit {self._max_future_s:g} s)"
        )


def _bad_window_types(start_v: object, end_v: object, rid: str, iccid: str) -> _Reject:
    for name, value in (("start", start_v), ("end", end_v)):
        if value is None:
            return _missing(name, "usage", rid, iccid)
        if type(value) is not str:
            return _bad_type(name, value, "an RFC 3339 string", rid, iccid)
    raise AssertionError("unreachable: both times are strings")  # pragma: no cover


def _bad_time(field: str, text: str, rid: str, iccid: str) -> _Reject:
    return (
        RejectReason.BAD_TIME,
        f"field '{field}': {_show(text)} is not an RFC 3339 timestamp with an offset",
        rid,
        iccid,
    )


def _too_old(field: str, text: str, rid: str, iccid: str) -> _Reject:
    return (
        RejectReason.BAD_TIME,
        (
            f"field '{field}': {_show(text)} is before 2020-01-01T00:00:00Z, the earliest "
            "time simwatch keeps (a device clock that was never set?)"
        ),
        rid,
        iccid,
    )


def _bad_digits(field: str, value: object, want: str, rid: str, iccid: str) -> _Reject:
    if type(value) is not str:
        return _bad_type(
            field,
            value,
            f"a string of {want} (a JSON number loses leading zeros)",
            rid,
            iccid,
        )
    return (RejectReason.BAD_VALUE, f"field '{field}': {_show(value)} is not {want}", rid, iccid)


def _check_bytes(kind: str, up: object, down: object, rid: str, iccid: str) -> _Reject | None:
    for name, value in (("bytes_up", up), ("bytes_down", down)):
        if value is None:
            if kind == "usage":
                return _missing(name, "usage", rid, iccid)
            continue
        if type(value) is not int:
            return _bad_type(name, value, "a non-negative integer", rid, iccid)
        if value < 0:
            return (
                RejectReason.NEGATIVE_BYTES,
                f"field '{name}': {value} is negative",
                rid,
                iccid,
            )
        if value > MAX_COUNT:
            return (
                RejectReason.BAD_VALUE,
                f"field '{name}': {value} is over the largest byte count accepted (2**53)",
                rid,
                iccid,
            )
    return None


def _dump(obj: object) -> str:
    try:
        return orjson.dumps(obj).decode()
    except (TypeError, orjson.JSONEncodeError):
        return _text_of(repr(obj))
