"""Batched, columnar record decoding: many NDJSON lines or a JSON array -> typed columns.

``ColumnarDecoder.decode_lines`` / ``decode_payloads`` give a :class:`RecordColumns` (one
numpy array or list per field, in input order) and the :class:`Rejection` s, with the
same records and the same rejections (reason, detail, raw) as
:class:`~simwatch.core.records.RecordDecoder` called one line at a time. The scalar
decoder stays the reference and the one copy of the rejection rules:

1. msgspec decodes the whole batch into typed structs, one struct type per kind (a
   tagged union on ``kind``: another kind's fields are not read, as in the scalar
   decoder), one C call per line (``decode_lines``) or per array. Types are checked
   there: a record whose field has the wrong JSON type, a negative or too large byte
   count, a missing or unknown kind, or broken JSON fails the call, and the batch is
   then decoded line by line (still msgspec) to find the bad lines.
2. The rules on values run over columns: ICCID digits by one ``isdigit`` on
   the joined strings, record id and ICCID lengths by the structs' constraints, MCC,
   MNC and enums once per distinct value, each distinct timestamp text parsed once and
   kept across batches (the common ``YYYY-MM-DDTHH:MM:SSZ`` form as one ``uint8``
   matrix, other forms through the scalar decoder's memoized parser), window, future
   and too-old checks as array comparisons.
3. Every line that fails any of these checks (or is not a plain object, too large,
   starts with a BOM...) is handed to ``RecordDecoder.decode_line``: it gives the exact
   rejection, or the record when the fast checks were only stricter than needed. The
   fast path never accepts what the scalar decoder would reject, and
   ``tests/test_columnar.py`` holds the two together on the fuzz strategies of
   ``tests/test_fuzz_records.py``.

0. When the optional C extension ``simwatch.core._cdecode`` is built (``setup.py``),
   ``decode_lines`` first hands the batch to it: the lines in the canonical FORMATS.md
   shapes it is certain of (ASCII, no escapes, known keys once each, strings and plain
   integers, ``YYYY-MM-DDTHH:MM:SSZ`` times, every rule of the scalar decoder met) become
   columns in one compiled pass, without a struct per line or a Python pass per field;
   every other line goes through steps 1-3 below, unchanged, and the two parts are
   merged in input order. It never rejects: rejections come from the Python path only.
   Without the extension (``COMPILED`` is False) steps 1-3 take every line, with the same
   results (``tests/test_columnar.py`` holds the two paths together).

Measured against the alternatives in ``bench/bench_columnar.py`` (docs/performance.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from operator import attrgetter
from typing import TYPE_CHECKING, Annotated, ClassVar, Final

import msgspec
import numpy as np

from simwatch.core.records import (
    EARLIEST_TIME,
    EVENT_TYPES,
    MAX_COUNT,
    SESSION_STATUSES,
    Record,
    RecordDecoder,
    Rejection,
)
from simwatch.core.timeutil import CachedTimeParser, TimeParseError

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "COMPILED",
    "KIND_CODES",
    "ColumnarDecoder",
    "DecodedBatch",
    "RecordColumns",
    "parse_utc_column",
]

try:
    from simwatch.core._cdecode import decode_lines as _compiled_decode_lines
except ImportError:  # the optional C extension is not built: the pure-Python path
    _compiled_decode_lines = None  # type: ignore[assignment]

# whether the C extension is there (ColumnarDecoder.compiled defaults to it)
COMPILED: Final = _compiled_decode_lines is not None

USAGE: Final = 0
SESSION: Final = 1
EVENT: Final = 2
KIND_CODES: Final = {"usage": USAGE, "session": SESSION, "event": EVENT}
KIND_NAMES: Final = ("usage", "session", "event")
_MAX_RECORD_ID_CHARS: Final = 256

_Count = Annotated[int, msgspec.Meta(ge=0, le=MAX_COUNT)]
# the batch decoder's structs require these (missing, null or out of bounds: the line
# goes to the scalar decoder, which gives the rejection); lengths in code points, as len()
_RecordId = Annotated[str, msgspec.Meta(min_length=1, max_length=_MAX_RECORD_ID_CHARS)]
_Iccid = Annotated[str, msgspec.Meta(min_length=18, max_length=22)]


class _Raw(msgspec.Struct, gc=False):
    """The JSON types of a valid record (FORMATS.md), every kind's fields in one struct;
    unknown fields are ignored. The decoders' bench measures the raw decode with it;
    the decoder reads ``_Record`` s."""

    kind: str | None = None
    record_id: str | None = None
    iccid: str | None = None
    start: str | None = None
    end: str | None = None
    ts: str | None = None
    bytes_up: _Count | None = None
    bytes_down: _Count | None = None
    apn: str | None = None
    mcc: str | None = None
    mnc: str | None = None
    rat: str | None = None
    session_id: str | None = None
    status: str | None = None
    end_cause: str | None = None
    type: str | None = None
    cause: str | None = None
    operator: str | None = None


class _Record(msgspec.Struct, gc=False, tag_field="kind"):
    """What the batch decoder reads: one struct type per kind (``kind`` is the tag; a
    missing or unknown kind, a missing or null ``record_id`` or ``iccid``, or one of the
    wrong length fails the decode and goes to the scalar decoder). Each
    type has the fields of its kind only, so another kind's fields in a record are
    ignored as the scalar decoder ignores them; their names are class attributes equal
    to None, so one ``attrgetter`` reads a column across kinds. ``when`` is the event
    time's text: ``end`` for usage, ``ts`` for the others."""

    record_id: _RecordId
    iccid: _Iccid
    bytes_up: _Count | None = -1  # -1: absent (null: None, as absent)
    bytes_down: _Count | None = -1
    apn: str | None = None
    mcc: str | None = None
    mnc: str | None = None
    rat: str | None = None
    operator: str | None = None


class _Usage(_Record, tag="usage"):
    when: str | None = msgspec.field(default=None, name="end")
    start: str | None = None
    code: ClassVar[int] = USAGE
    session_id: ClassVar[None] = None
    status: ClassVar[None] = None
    end_cause: ClassVar[None] = None
    type: ClassVar[None] = None
    cause: ClassVar[None] = None


class _Session(_Record, tag="session"):
    when: str | None = msgspec.field(default=None, name="ts")
    session_id: str | None = None
    status: str | None = None
    end_cause: str | None = None
    code: ClassVar[int] = SESSION
    start: ClassVar[None] = None
    type: ClassVar[None] = None
    cause: ClassVar[None] = None


class _Event(_Record, tag="event"):
    when: str | None = msgspec.field(default=None, name="ts")
    type: str | None = None
    cause: str | None = None
    code: ClassVar[int] = EVENT
    start: ClassVar[None] = None
    session_id: ClassVar[None] = None
    status: ClassVar[None] = None
    end_cause: ClassVar[None] = None


_AnyRecord = _Usage | _Session | _Event


_OPTIONAL_TEXT: Final = (
    "apn",
    "mcc",
    "mnc",
    "rat",
    "session_id",
    "status",
    "end_cause",
    "event_type",
    "cause",
    "operator",
)


@dataclass(slots=True)
class RecordColumns:
    """Decoded records as columns, in input order. Times are epoch seconds (UTC)."""

    kind: np.ndarray  # int8: 0 usage, 1 session, 2 event (KIND_CODES)
    record_id: list[str]
    iccid: list[str]
    ts: np.ndarray  # float64 event time (usage: end)
    start: np.ndarray  # float64 usage window start, NaN elsewhere
    bytes_up: np.ndarray  # int64
    bytes_down: np.ndarray  # int64
    apn: list[str | None]
    mcc: list[str | None]
    mnc: list[str | None]
    rat: list[str | None]
    session_id: list[str | None]
    status: list[str | None]
    end_cause: list[str | None]
    event_type: list[str | None]
    cause: list[str | None]
    operator: list[str | None]

    def __len__(self) -> int:
        return len(self.record_id)

    @classmethod
    def empty(cls) -> RecordColumns:
        return cls.from_records([])

    @classmethod
    def from_records(cls, records: Sequence[Record]) -> RecordColumns:
        """Columns of ``Record`` objects (the scalar decoder's output)."""
        return cls(
            kind=np.fromiter((KIND_CODES[r.kind] for r in records), np.int8, len(records)),
            record_id=[r.record_id for r in records],
            iccid=[r.iccid for r in records],
            ts=np.fromiter((r.ts for r in records), np.float64, len(records)),
            start=np.fromiter(
                (math.nan if r.start is None else r.start for r in records),
                np.float64,
                len(records),
            ),
            bytes_up=np.fromiter((r.bytes_up for r in records), np.int64, len(records)),
            bytes_down=np.fromiter((r.bytes_down for r in records), np.int64, len(records)),
            **{name: [getattr(r, name) for r in records] for name in _OPTIONAL_TEXT},
        )

    def take(self, index: Sequence[int] | np.ndarray) -> RecordColumns:
        """The rows at ``index``, in that order."""
        idx = [int(i) for i in index]
        pick = np.asarray(idx, dtype=np.intp)
        return RecordColumns(
            kind=self.kind[pick],
            record_id=[self.record_id[i] for i in idx],
            iccid=[self.iccid[i] for i in idx],
            ts=self.ts[pick],
            start=self.start[pick],
            bytes_up=self.bytes_up[pick],
            bytes_down=self.bytes_down[pick],
            **{name: [getattr(self, name)[i] for i in idx] for name in _OPTIONAL_TEXT},
        )

    def slice(self, start: int, end: int) -> RecordColumns:
        """Rows ``[start, end)`` (views of the arrays, copies of the lists)."""
        return RecordColumns(
            kind=self.kind[start:end],
            record_id=self.record_id[start:end],
            iccid=self.iccid[start:end],
            ts=self.ts[start:end],
            start=self.start[start:end],
            bytes_up=self.bytes_up[start:end],
            bytes_down=self.bytes_down[start:end],
            **{name: getattr(self, name)[start:end] for name in _OPTIONAL_TEXT},
        )

    def record(self, i: int) -> Record:
        """Row ``i`` as a ``Record`` (equal to what the scalar decoder gives)."""
        start = float(self.start[i])
        return Record(
            KIND_NAMES[self.kind[i]],
            self.record_id[i],
            self.iccid[i],
            float(self.ts[i]),
            None if math.isnan(start) else start,
            int(self.bytes_up[i]),
            int(self.bytes_down[i]),
            self.apn[i],
            self.mcc[i],
            self.mnc[i],
            self.rat[i],
            self.session_id[i],
            self.status[i],
            self.end_cause[i],
            self.event_type[i],
            self.cause[i],
            self.operator[i],
        )

    def records(self) -> list[Record]:
        return [self.record(i) for i in range(len(self))]


@dataclass(slots=True)
class DecodedBatch:
    """The records of a batch as columns, and its rejections (input order kept in each)."""

    records: RecordColumns
    rejections: list[Rejection]

    def __len__(self) -> int:
        return len(self.records) + len(self.rejections)


def concat(parts: Sequence[RecordColumns]) -> RecordColumns:
    """The rows of ``parts`` one after the other."""
    if len(parts) == 1:
        return parts[0]
    if not parts:
        return RecordColumns.empty()
    lists = {
        name: [x for p in parts for x in getattr(p, name)]
        for name in ("record_id", "iccid", *_OPTIONAL_TEXT)
    }
    return RecordColumns(
        kind=np.concatenate([p.kind for p in parts]),
        ts=np.concatenate([p.ts for p in parts]),
        start=np.concatenate([p.start for p in parts]),
        bytes_up=np.concatenate([p.bytes_up for p in parts]),
        bytes_down=np.concatenate([p.bytes_down for p in parts]),
        **lists,
    )


def _insert(
    cols: RecordColumns, rows: np.ndarray, more: RecordColumns, more_rows: np.ndarray
) -> RecordColumns:
    """The rows of ``cols`` and of ``more`` in the order of their input rows (``rows`` and
    ``more_rows``, each increasing, disjoint): ``more`` inserted where it belongs, one
    slice per inserted row (a batch's few unusual lines cost little)."""
    at = np.searchsorted(rows, more_rows)  # where each goes among ``cols``' rows
    cuts = at.tolist()

    def merged(old: list[str | None], new: list[str | None]) -> list[str | None]:
        out: list[str | None] = []
        prev = 0
        for cut, value in zip(cuts, new, strict=True):
            out += old[prev:cut]
            out.append(value)
            prev = cut
        out += old[prev:]
        return out

    return RecordColumns(
        kind=np.insert(cols.kind, at, more.kind),
        ts=np.insert(cols.ts, at, more.ts),
        start=np.insert(cols.start, at, more.start),
        bytes_up=np.insert(cols.bytes_up, at, more.bytes_up),
        bytes_down=np.insert(cols.bytes_down, at, more.bytes_down),
        **{  # type: ignore[arg-type]
            name: merged(getattr(cols, name), getattr(more, name))
            for name in ("record_id", "iccid", *_OPTIONAL_TEXT)
        },
    )


# ---- timestamps -------------------------------------------------------------------------

_DIGIT_POS: Final = np.array([0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18])
_SEP_POS: Final = np.array([4, 7, 10, 13, 16, 19])
_SEP_CHARS: Final = np.frombuffer(b"--T::Z", np.uint8)
_MONTH_DAYS: Final = np.array([0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], np.int64)


def parse_utc_column(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``YYYY-MM-DDTHH:MM:SSZ`` strings as epoch seconds, all at once.

    Returns (seconds float64, ok bool): ``ok`` is False where the text is not exactly
    that form of a valid date and time (years 1970-9999); those get NaN and are for the
    scalar parser. Equal to ``timeutil.parse_rfc3339`` wherever ``ok``.
    """
    n = len(texts)
    out = np.full(n, np.nan)
    ok = np.zeros(n, np.bool_)
    if n == 0:
        return out, ok
    lengths = np.fromiter(map(len, texts), np.int64, n)
    same = lengths == 20
    if same.all():
        joined = "".join(texts)
        index = None
    else:
        index = np.flatnonzero(same)
        if index.size == 0:
            return out, ok
        joined = "".join([texts[i] for i in index.tolist()])
    if not joined.isascii():
        return _parse_utc_rows(texts, out, ok, index)
    m = np.frombuffer(joined.encode("ascii"), np.uint8).reshape(-1, 20)
    digits = m[:, _DIGIT_POS].astype(np.int64) - 48
    good = ((digits >= 0) & (digits <= 9)).all(axis=1) & (m[:, _SEP_POS] == _SEP_CHARS).all(axis=1)
    y = digits[:, 0] * 1000 + digits[:, 1] * 100 + digits[:, 2] * 10 + digits[:, 3]
    mo = digits[:, 4] * 10 + digits[:, 5]
    d = digits[:, 6] * 10 + digits[:, 7]
    h = digits[:, 8] * 10 + digits[:, 9]
    mi = digits[:, 10] * 10 + digits[:, 11]
    s = digits[:, 12] * 10 + digits[:, 13]
    good &= (y >= 1970) & (mo >= 1) & (mo <= 12) & (d >= 1) & (h < 24) & (mi < 60) & (s < 60)
    mo_c = np.clip(mo, 1, 12)
    leap = (y % 4 == 0) & ((y % 100 != 0) | (y % 400 == 0))
    good &= (d <= _MONTH_DAYS[mo_c]) & ((mo_c != 2) | (d <= 28) | leap)
    # days from civil (H. Hinnant), as timeutil._days_from_civil
    yy = y - (mo_c <= 2)
    era = yy // 400
    yoe = yy - era * 400
    doy = (153 * (mo_c + np.where(mo_c > 2, -3, 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    days = era * 146097 + doe - 719468
    seconds = (days * 86400 + h * 3600 + mi * 60 + s).astype(np.float64)
    if index is None:
        out[good] = seconds[good]
        ok[:] = good
    else:
        out[index[good]] = seconds[good]
        ok[index] = good
    return out, ok


def _parse_utc_rows(
    texts: list[str], out: np.ndarray, ok: np.ndarray, index: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Non-ASCII among the 20-character texts: each on its own (rare)."""
    rows = range(len(texts)) if index is None else index.tolist()
    for i in rows:
        part, fine = parse_utc_column([texts[i]]) if texts[i].isascii() else (out[:0], ok[:0])
        if fine.size and fine[0]:
            out[i] = part[0]
            ok[i] = True
    return out, ok


# ---- the decoder ------------------------------------------------------------------------

_KIND_FIELDS: Final = (
    "code",
    "when",
    "start",
    "session_id",
    "status",
    "end_cause",
    "type",
    "cause",
)
_GET: Final = {name: attrgetter(name) for name in (*_KIND_FIELDS, *_Record.__struct_fields__)}


def _all_digits(values: list[str]) -> bool:
    joined = "".join(values)
    return joined.isascii() and joined.isdigit()


# the times of the texts seen (``ColumnarDecoder._times``), cleared when it would pass this
TIME_MEMO: Final = 20_000
_NO_TIME: Final[dict[str | None, float]] = {None: math.nan, "": math.nan}
_STATUS_OK: Final = frozenset(SESSION_STATUSES)
_EVENT_OK: Final = frozenset(EVENT_TYPES)


def _present(values: list[str | None], *, nonempty: bool = False) -> np.ndarray:
    """Per row: not None (and with ``nonempty`` not "")."""
    if nonempty:  # bool(None) and bool("") are False
        return np.fromiter(map(bool, values), np.bool_, len(values))
    arr = np.array(values, dtype=object)
    # elementwise comparison with None on an object array (not an identity test)
    present: np.ndarray = arr != None  # noqa: E711
    return present


def _counts(values: list[int | None]) -> np.ndarray:
    """Byte counts as int64 (already 0..2**53 by the struct's type; -1 where absent);
    None (a null) is absent too."""
    if None not in values:
        return np.fromiter(values, np.int64, len(values))
    # None -> NaN; counts are at most 2**53 (MAX_COUNT), exact in float64
    arr = np.array(values, dtype=np.float64)
    return np.where(np.isnan(arr), -1.0, arr).astype(np.int64)


def _code_ok(values: list[str | None], shortest: int, longest: int) -> np.ndarray | None:
    """Per row: None, "" or ``shortest``-``longest`` ASCII digits (MCC, MNC); None when
    every row is (each distinct value checked once)."""
    bad = {
        v
        for v in set(values)
        if v and not (shortest <= len(v) <= longest and v.isascii() and v.isdigit())
    }
    if not bad:
        return None
    return ~np.fromiter(map(bad.__contains__, values), np.bool_, len(values))


def _all_of_kind(values: list[str | None], rows: int, allowed: frozenset[str]) -> bool:
    """Whether every one of ``values`` outside the kind's ``rows`` is None (another kind's
    field: a class attribute) and every value of the kind is in ``allowed`` (not None)."""
    if values.count(None) != len(values) - rows:
        return False
    distinct = set(values)
    distinct.discard(None)
    return distinct <= allowed


class ColumnarDecoder:
    """Decodes batches into ``RecordColumns``; one instance per source (as RecordDecoder).

    ``scalar`` is the reference decoder that handles every line the fast path does not
    take (and owns the limits: future time, line and payload size).
    """

    __slots__ = ("_array", "_lines", "_parse_time", "_time_of", "compiled", "scalar", "time_memo")

    def __init__(self, scalar: RecordDecoder | None = None, *, compiled: bool = COMPILED) -> None:
        self.scalar = scalar if scalar is not None else RecordDecoder()
        # the C fast path of decode_lines first (when built; False: the Python path only)
        self.compiled = compiled and COMPILED
        self._lines = msgspec.json.Decoder(_AnyRecord)
        self._array = msgspec.json.Decoder(list[_AnyRecord])
        self._parse_time = CachedTimeParser()
        self._time_of: dict[str | None, float] = dict(_NO_TIME)  # text -> seconds or NaN
        self.time_memo = TIME_MEMO  # at most this many texts in ``_time_of`` (then cleared)

    # ---------------------------------------------------------------- entry points

    def decode_lines(self, lines: Sequence[bytes | str], now: float) -> DecodedBatch:
        """NDJSON lines, one record each (a trailing newline is allowed): as
        ``[RecordDecoder.decode_line(x, now) for x in lines]``, in columns."""
        if len(lines) == 0:
            return DecodedBatch(RecordColumns.empty(), [])
        if self.compiled:
            return self._decode_compiled(lines, now)
        return self._decode_python(lines, now)[0]

    def _decode_compiled(self, lines: Sequence[bytes | str], now: float) -> DecodedBatch:
        """The C pass over every line; the lines it leaves go the Python way, merged back
        in input order."""
        n = len(lines)
        kind = np.empty(n, np.int8)
        ts = np.empty(n, np.float64)
        start = np.empty(n, np.float64)
        up = np.empty(n, np.int64)
        down = np.empty(n, np.int64)
        limit = now + self.scalar.max_future_s  # as RecordDecoder._check computes it
        fallback, rid, iccid, apn, mcc, mnc, rat, sid, status, cause_end, etype, cause, op = (
            _compiled_decode_lines(
                lines, self.scalar.max_line_bytes, limit, kind, ts, start, up, down
            )
        )
        m = n - len(fallback)
        cols = RecordColumns(
            kind=kind[:m],
            record_id=rid,
            iccid=iccid,
            ts=ts[:m],
            start=start[:m],
            bytes_up=up[:m],
            bytes_down=down[:m],
            apn=apn,
            mcc=mcc,
            mnc=mnc,
            rat=rat,
            session_id=sid,
            status=status,
            end_cause=cause_end,
            event_type=etype,
            cause=cause,
            operator=op,
        )
        if not fallback:
            return DecodedBatch(cols, [])
        rest, rows = self._decode_python([lines[i] for i in fallback], now)
        if not len(rest.records):
            return DecodedBatch(cols, rest.rejections)
        if m == 0:
            return rest
        slow = np.asarray(fallback, np.intp)
        fast = np.ones(n, np.bool_)
        fast[slow] = False
        return DecodedBatch(
            _insert(cols, np.flatnonzero(fast), rest.records, slow[rows]), rest.rejections
        )

    def _decode_python(
        self, lines: Sequence[bytes | str], now: float
    ) -> tuple[DecodedBatch, np.ndarray]:
        """msgspec, columnar checks, the scalar decoder for the rest (steps 1-3); and the
        indices of the lines that gave the records."""
        raws: list[_AnyRecord | None] | None = None
        limit = self.scalar.max_line_bytes
        all_bytes = set(map(type, lines)) == {bytes}
        if all_bytes and max(map(len, lines)) <= limit:
            try:  # one C call per line (one value per line, whatever the line holds)
                raws = list(map(self._lines.decode, lines))
            except (msgspec.DecodeError, msgspec.ValidationError):
                raws = None
        if raws is None:
            raws = self._one_by_one(lines, limit)
        if not (all_bytes and b"".join(lines).isascii()):  # type: ignore[arg-type]
            for i, line in enumerate(lines):  # msgspec lets invalid UTF-8 in ignored keys pass
                if raws[i] is not None and type(line) is bytes and not _utf8(line):
                    raws[i] = None  # the scalar decoder rejects it, with its reason
        return self._finish(raws, lines, now)

    def decode_payloads(self, payloads: Sequence[bytes], now: float) -> DecodedBatch:
        """Whole payloads (an object, an array of objects or NDJSON lines each): as
        ``RecordDecoder.decode_payload`` on each, in columns."""
        parts: list[RecordColumns] = []
        rejections: list[Rejection] = []
        for payload in payloads:
            batch = self.decode_payload(payload, now)
            parts.append(batch.records)
            rejections.extend(batch.rejections)
        return DecodedBatch(concat(parts), rejections)

    def decode_payload(self, payload: bytes, now: float) -> DecodedBatch:
        scalar = self.scalar
        if len(payload) <= scalar.max_payload_bytes and payload[:1] == b"[" and _utf8(payload):
            try:
                raws = self._array.decode(payload)
            except (msgspec.DecodeError, msgspec.ValidationError):
                pass
            else:
                cols, ok = self._validate(raws, now)
                if ok.all():
                    return DecodedBatch(cols, [])
        # objects, NDJSON, a BOM, a bad element: the scalar decoder, then columns
        items = scalar.decode_payload(payload, now)
        return DecodedBatch(
            RecordColumns.from_records([x for x in items if type(x) is Record]),
            [x for x in items if type(x) is Rejection],
        )

    def decode_objects(self, objects: Sequence[object], now: float) -> DecodedBatch:
        """Already-parsed JSON values (REST adapters): ``RecordDecoder.decode_obj`` each."""
        if not objects:
            return DecodedBatch(RecordColumns.empty(), [])
        items = [self.scalar.decode_obj(obj, now) for obj in objects]
        return DecodedBatch(
            RecordColumns.from_records([x for x in items if type(x) is Record]),
            [x for x in items if type(x) is Rejection],
        )

    # ---------------------------------------------------------------- internals

    def _one_by_one(self, lines: Sequence[bytes | str], limit: int) -> list[_AnyRecord | None]:
        """The batch call failed: each line on its own (None = for the scalar decoder)."""
        decode = self._lines.decode
        out: list[_AnyRecord | None] = []
        for line in lines:
            if type(line) is not bytes or len(line) > limit:
                out.append(None)  # the scalar decoder owns sizes and str input
                continue
            try:
                out.append(decode(line))
            except (msgspec.DecodeError, msgspec.ValidationError):
                out.append(None)
        return out

    def _finish(
        self, raws: list[_AnyRecord | None], lines: Sequence[bytes | str], now: float
    ) -> tuple[DecodedBatch, np.ndarray]:
        """Validate the decoded structs in columns; the rest goes to the scalar decoder.
        Also the indices of the lines that gave the records (input order)."""
        n = len(raws)
        if not all(raws):  # a struct is always true: some are None (for the scalar decoder)
            fallback = np.fromiter((r is None for r in raws), np.bool_, n)
            good_idx = np.flatnonzero(~fallback)
            structs: list[_AnyRecord] = [raws[i] for i in good_idx.tolist()]  # type: ignore[misc]
        else:
            good_idx = np.arange(n)
            structs = raws  # type: ignore[assignment]
        cols, ok = self._validate(structs, now)
        bad = np.ones(n, np.bool_)
        bad[good_idx[ok]] = False
        if not bad.any():
            return DecodedBatch(cols, []), good_idx
        keep = np.flatnonzero(ok)
        fast = cols.take(keep) if keep.size < len(structs) else cols
        rejections: list[Rejection] = []
        late_records: list[Record] = []
        late_rows: list[int] = []
        decode_line = self.scalar.decode_line
        for i in np.flatnonzero(bad).tolist():
            result = decode_line(lines[i], now)
            if type(result) is Record:
                late_records.append(result)
                late_rows.append(i)
            else:
                rejections.append(result)  # type: ignore[arg-type]
        if not late_records:
            return DecodedBatch(fast, rejections), good_idx[keep]
        # records the fast checks sent to the scalar decoder: merged back in input order
        rows = np.concatenate([good_idx[keep], np.asarray(late_rows, np.intp)])
        merged = concat([fast, RecordColumns.from_records(late_records)])
        order = np.argsort(rows, kind="stable")
        return DecodedBatch(merged.take(order), rejections), rows[order]

    def _validate(self, structs: list[_AnyRecord], now: float) -> tuple[RecordColumns, np.ndarray]:
        """Columns of ``structs`` and which rows pass every rule (the rest: scalar)."""
        n = len(structs)
        get = _GET
        kind = np.fromiter(map(get["code"], structs), np.int8, n)
        ok = np.ones(n, np.bool_)
        rid = list(map(get["record_id"], structs))  # 1-256 characters (the struct's type)
        iccid = list(map(get["iccid"], structs))  # 18-22 characters (the struct's type)
        if not _all_digits(iccid):
            ok &= np.fromiter((c.isascii() and c.isdigit() for c in iccid), np.bool_, n)

        usage = kind == USAGE
        ts, ts_ok = self._times(list(map(get["when"], structs)))  # usage: end, others: ts
        start = np.full(n, np.nan)
        if usage.any():
            start, start_ok = self._times(list(map(get["start"], structs)))  # None: not usage
            ok &= ~usage | (start_ok & (ts >= start) & (start >= EARLIEST_TIME))
        ok &= ts_ok
        ok &= ts <= now + self.scalar.max_future_s
        ok &= ts >= EARLIEST_TIME  # usage: start >= EARLIEST and end >= start imply it

        up = _counts(list(map(get["bytes_up"], structs)))
        down = _counts(list(map(get["bytes_down"], structs)))
        ok &= ~usage | ((up >= 0) & (down >= 0))  # required on usage (-1: absent)
        np.maximum(up, 0, out=up)
        np.maximum(down, 0, out=down)

        mcc = list(map(get["mcc"], structs))
        mnc = list(map(get["mnc"], structs))
        for codes_ok in (_code_ok(mcc, 3, 3), _code_ok(mnc, 2, 3)):
            if codes_ok is not None:
                ok &= codes_ok
        if "" in mcc:
            mcc = [v or None for v in mcc]
        if "" in mnc:
            mnc = [v or None for v in mnc]

        # each kind's own fields (None in the other kinds' structs)
        session_id = list(map(get["session_id"], structs))
        status = list(map(get["status"], structs))
        end_cause = list(map(get["end_cause"], structs))
        session = kind == SESSION
        sessions = int(np.count_nonzero(session))
        if sessions and not (
            _all_of_kind(status, sessions, _STATUS_OK) and "" not in session_id
            and session_id.count(None) == n - sessions
        ):  # fmt: skip
            sess_ok = _present(session_id, nonempty=True) & np.fromiter(
                map(_STATUS_OK.__contains__, status), np.bool_, n
            )
            ok &= ~session | sess_ok
        event_type = list(map(get["type"], structs))
        cause = list(map(get["cause"], structs))
        event = kind == EVENT
        events = int(np.count_nonzero(event))
        if events and not _all_of_kind(event_type, events, _EVENT_OK):
            ok &= ~event | np.fromiter(map(_EVENT_OK.__contains__, event_type), np.bool_, n)

        apn = list(map(get["apn"], structs))
        rat = list(map(get["rat"], structs))
        operator = list(map(get["operator"], structs))
        if "" in apn:
            apn = [v or None for v in apn]
        if "" in rat:
            rat = [v or None for v in rat]
        if "" in operator:
            operator = [v or None for v in operator]
        cols = RecordColumns(
            kind=kind,
            record_id=rid,
            iccid=iccid,
            ts=ts,
            start=start,
            bytes_up=up,
            bytes_down=down,
            apn=apn,
            mcc=mcc,
            mnc=mnc,
            rat=rat,
            session_id=session_id,
            status=status,
            end_cause=end_cause,
            event_type=event_type,
            cause=cause,
            operator=operator,
        )
        return cols, ok

    def _times(self, texts: list[str | None]) -> tuple[np.ndarray, np.ndarray]:
        """Parsed times and which parsed (None, "" or an unparsable text: NaN, not ok).

        Each distinct text is parsed once (``_time_of``, kept across batches: a batch's
        times repeat, and the next batch's are mostly the same seconds), so per record
        this is a set and a dict lookup."""
        memo = self._time_of
        distinct = set(texts)
        new = distinct.difference(memo)
        if new:
            if len(memo) + len(new) > self.time_memo:  # forget the older batches' texts
                memo.clear()
                memo.update(_NO_TIME)
                new = distinct.difference(memo)
            fresh: list[str] = list(new)  # type: ignore[arg-type]
            memo.update(zip(fresh, self._parse_times(fresh).tolist(), strict=True))
        values = np.fromiter(map(memo.__getitem__, texts), np.float64, len(texts))
        return values, ~np.isnan(values)

    def _parse_times(self, texts: list[str]) -> np.ndarray:
        """Non-empty texts as epoch seconds (NaN where unparsable): the common form at
        once (``parse_utc_column``), the others by the scalar decoder's parser."""
        values, ok = parse_utc_column(texts)
        if not ok.all():
            parse = self._parse_time
            for i in np.flatnonzero(~ok).tolist():
                try:
                    values[i] = parse(texts[i])
                except TimeParseError:
                    continue
        return values


def _utf8(data: bytes) -> bool:
    """Whether ``data`` is valid UTF-8 (ASCII, the common case, at C speed)."""
    if data.isascii():
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
