"""Compact ICCID -> dense row index for millions of SIMs.

simwatch keeps per-SIM state in numpy columns indexed by a dense row number
(``0..n-1``, assigned in insertion order). ``IccidIndex`` maps the ICCID string to
that row and back in about 15-32 bytes per SIM (a ``dict[str, int]`` costs ~140).

Layout
------
* Each ICCID (18 to 22 ASCII digits) is the integer ``v = int(iccid) < 10**22 < 2**74``
  plus its length, stored as two numbers per row (10 bytes): ``lo`` (``uint64``) =
  ``v mod 2**64`` and ``hi`` (``uint16``) = ``(len - 18) << 10 | v >> 64``
  (``v >> 64 < 543``). The length is part of the key, so ``"0" + x`` and ``x`` are
  different SIMs, and the string comes back exactly (``v`` zero-padded to ``len``).
* An open-addressing hash table (``int32`` row numbers, ``-1`` = empty) of
  power-of-two size, load factor at most 0.7, triangular probing
  (offsets 0, 1, 3, 6, ...: visits every slot of a power-of-two table), Fibonacci
  hashing of ``lo`` (top bits of ``lo * 0x9E3779B97F4A7C15 mod 2**64``). The table
  doubles with a vectorized rehash; the key columns are sized with it (capacity =
  70 % of the table), so memory is 15 to 32 bytes per SIM depending on where the
  fleet size falls between two doublings.

Scalar calls (``get``/``add``, per record) run plain Python int arithmetic and read
the arrays through ``memoryview`` objects, which index ~2x faster than numpy
scalars. Batch calls (``get_many``/``add_many``) parse, hash and probe with numpy.
Both paths compute the same hash, so they share one table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy.typing as npt

__all__ = ["IccidIndex"]

_MIN_LEN: Final = 18
_MAX_LEN: Final = 22
_LO_DIGITS: Final = 18  # batch parse: last 18 digits (< 10**18 < 2**63) and a prefix
_P18: Final = 10**18
_5P18: Final = 5**18  # 10**18 == 5**18 << 18
_LEN_SHIFT: Final = 10  # hi = (len - 18) << 10 | v >> 64
_TOP_MASK: Final = (1 << _LEN_SHIFT) - 1
_COMMA: Final = ord(",")
_FIB: Final = 0x9E3779B97F4A7C15  # 2**64 / golden ratio, odd
_M64: Final = (1 << 64) - 1
_MAX_LOAD_NUM: Final = 7
_MAX_LOAD_DEN: Final = 10
_MIN_TABLE_BITS: Final = 3
_MAX_ROWS: Final = 2**31 - 1  # rows are stored as int32 in the table
_EMPTY: Final = -1
_HI_TAG: Final = tuple(max(n - _MIN_LEN, 0) << _LEN_SHIFT for n in range(_MAX_LEN + 1))
_SPECS: Final = tuple(f"0{n}d" for n in range(_MIN_LEN, _MAX_LEN + 1))  # by len - 18

_FIB_U64: Final = np.uint64(_FIB)


def _limit_for(size: int) -> int:
    return size * _MAX_LOAD_NUM // _MAX_LOAD_DEN


def _bits_for(rows: int) -> int:
    bits = _MIN_TABLE_BITS
    while _limit_for(1 << bits) < rows:
        bits += 1
    return bits


def _decode(hi: int, lo: int) -> str:
    return format((hi & _TOP_MASK) << 64 | lo, _SPECS[hi >> _LEN_SHIFT])


def _invalid(iccid: object) -> ValueError:
    return ValueError(f"not an ICCID (18 to 22 ASCII digits): {iccid!r}")


def _hash_many(lo: npt.NDArray[np.uint64], shift: int) -> npt.NDArray[np.int64]:
    """Vectorized twin of the scalar hash ``(lo * FIB mod 2**64) >> shift``."""
    x = lo * _FIB_U64  # wraps mod 2**64, like the masked Python product
    x >>= np.uint64(shift)
    return x.astype(np.int64)


def _parse_many(
    iccids: Sequence[str] | npt.NDArray[np.str_],
) -> tuple[npt.NDArray[np.uint16], npt.NDArray[np.uint64]]:
    """Encode a batch of ICCIDs as (hi, lo) arrays; ValueError if any is invalid.

    The batch is joined with "," into one ASCII buffer: the n - 1 commas give every
    ICCID's start and end without a per-string Python step, and a buffer holding
    exactly n - 1 commas and otherwise only digits splits back into exactly the n
    given strings (a comma inside an element would add one).
    """
    n = len(iccids)
    if n == 0:
        return np.zeros(0, np.uint16), np.zeros(0, np.uint64)
    try:
        raw = np.frombuffer(",".join(iccids).encode("ascii"), dtype=np.uint8)
    except (TypeError, UnicodeEncodeError):
        raw = np.zeros(0, np.uint8)
    digits = raw - np.uint8(48)  # "," and other non-digits wrap to > 9
    ends = np.flatnonzero(raw == _COMMA)
    lens = starts = np.empty(0, np.int64)  # stay empty (-> ValueError) unless the split works
    if ends.size == n - 1 and int(np.count_nonzero(digits > 9)) == n - 1:
        ends = np.append(ends, raw.size)
        starts = np.empty(n, np.int64)
        starts[0] = 0
        starts[1:] = ends[:-1] + 1
        lens = ends - starts
    if lens.size != n or int(lens.min()) < _MIN_LEN or int(lens.max()) > _MAX_LEN:
        bad = next((s for s in iccids if not IccidIndex.valid(s)), None)
        raise _invalid(bad)
    ten = np.uint64(10)
    lo = np.zeros(n, np.uint64)
    pre = np.zeros(n, np.uint64)
    width = int(lens[0])
    if bool((lens == width).all()):
        # one length (the usual case): digit k of every ICCID is the slice [k :: width + 1]
        for k in range(width - _LO_DIGITS):
            pre *= ten
            pre += digits[k :: width + 1]
        for k in range(width - _LO_DIGITS, width):
            lo *= ten
            lo += digits[k :: width + 1]
    else:
        for k in range(_LO_DIGITS):
            lo *= ten
            lo += digits[ends - (_LO_DIGITS - k)]
        plen = lens - _LO_DIGITS
        for k in range(_MAX_LEN - _MIN_LEN):
            # start + k < end always (a prefix has at most 4 digits), so the read is in bounds
            more = plen > k
            pre = np.where(more, pre * ten + digits[starts + k], pre)
    # v = pre * 10**18 + lo18; its low 64 bits wrap naturally in uint64 ...
    low = pre * np.uint64(_P18) + lo
    # ... and v >> 64 == (pre * 5**18 + (lo18 >> 18)) >> 46, exactly: v = 2**18 * x + r with
    # x = pre * 5**18 + (lo18 >> 18) < 2**56 and r = lo18 mod 2**18 < 2**18, so r never carries.
    top = (pre * np.uint64(_5P18) + (lo >> np.uint64(18))) >> np.uint64(46)
    hi = top.astype(np.uint16) | ((lens - _MIN_LEN) << _LEN_SHIFT).astype(np.uint16)
    return hi, low


class IccidIndex:
    """ICCID -> dense row (0..n-1, insertion order), and row -> ICCID.

    ``get`` returns -1 for an unknown ICCID; ``add`` returns the existing row or
    appends a new one. Invalid ICCIDs (anything but 18 to 22 ASCII digits) raise
    ``ValueError`` from ``get``/``add``/``get_many``/``add_many`` (a batch is all or
    nothing: nothing is added when any element is invalid); ``in`` answers False.
    """

    __slots__ = (
        "_hi",
        "_hi_mv",
        "_limit",
        "_lo",
        "_lo_mv",
        "_mask",
        "_n",
        "_shift",
        "_table",
        "_table_mv",
    )

    _table: npt.NDArray[np.int32]  # slot -> row, -1 = empty
    _hi: npt.NDArray[np.uint16]  # row -> (len - 18) << 10 | int(iccid) >> 64
    _lo: npt.NDArray[np.uint64]  # row -> int(iccid) mod 2**64
    _table_mv: memoryview  # the same three arrays, for fast scalar access
    _hi_mv: memoryview
    _lo_mv: memoryview
    _n: int
    _limit: int  # rows that fit before the table grows (70 % of its slots)
    _mask: int
    _shift: int  # 64 - log2(table size)

    def __init__(self, capacity: int = 1024) -> None:
        if capacity < 0:
            raise ValueError(f"capacity must be >= 0, got {capacity}")
        self._n = 0
        self._alloc(_bits_for(capacity))

    # -- storage ---------------------------------------------------------------------

    def _alloc(self, bits: int) -> None:
        """(Re)allocate a table of 2**bits slots and key columns; rehash existing rows."""
        size = 1 << bits
        limit = min(_limit_for(size), _MAX_ROWS)
        n = self._n
        hi = np.zeros(limit, np.uint16)
        lo = np.zeros(limit, np.uint64)
        if n:
            hi[:n] = self._hi[:n]
            lo[:n] = self._lo[:n]
        self._table = np.full(size, _EMPTY, np.int32)
        self._hi, self._lo = hi, lo
        self._limit = limit
        self._mask = size - 1
        self._shift = 64 - bits
        self._table_mv = self._table.data
        self._hi_mv = self._hi.data
        self._lo_mv = self._lo.data
        if n:
            rows = np.arange(n, dtype=np.int32)
            self._insert_many(_hash_many(lo[:n], self._shift), rows)

    def _reserve(self, rows: int) -> None:
        if rows > self._limit:
            if rows > _MAX_ROWS:
                raise OverflowError(f"IccidIndex holds at most {_MAX_ROWS} rows")
            self._alloc(max(_bits_for(rows), self._shift_bits() + 1))

    def _shift_bits(self) -> int:
        return 64 - self._shift

    def _insert_many(self, slots: npt.NDArray[np.int64], rows: npt.NDArray[np.int32]) -> None:
        """Place rows whose keys are distinct and absent, all probing in lockstep.

        Each round, every pending row whose slot is empty writes itself there; when
        several target one slot, one write survives and the rest see another row and
        move on, exactly as a scalar insert would have after that row was placed.
        """
        table = self._table
        mask = self._mask
        step = 0
        while rows.size:
            free = table[slots] == _EMPTY
            table[slots[free]] = rows[free]
            pending = table[slots] != rows
            rows = rows[pending]
            step += 1
            slots = (slots[pending] + step) & mask

    def _lookup_many(
        self, hi: npt.NDArray[np.uint16], lo: npt.NDArray[np.uint64]
    ) -> npt.NDArray[np.int64]:
        out = np.full(lo.size, _EMPTY, np.int64)
        idx = np.arange(lo.size)
        slots = _hash_many(lo, self._shift)
        table, key_hi, key_lo, mask = self._table, self._hi, self._lo, self._mask
        step = 0
        while idx.size:
            rows = table[slots].astype(np.int64)
            occupied = rows >= 0
            safe = np.where(occupied, rows, 0)
            hit = occupied & (key_lo[safe] == lo) & (key_hi[safe] == hi)
            out[idx[hit]] = rows[hit]
            more = occupied & ~hit
            idx, hi, lo = idx[more], hi[more], lo[more]
            step += 1
            slots = (slots[more] + step) & mask
        return out

    # -- scalar path -----------------------------------------------------------------

    def __len__(self) -> int:
        return self._n

    def __contains__(self, iccid: object) -> bool:
        return self.valid(iccid) and self.get(iccid) >= 0  # type: ignore[arg-type]

    def get(self, iccid: str) -> int:
        """Row of ``iccid``, or -1 when unknown."""
        if not isinstance(iccid, str):
            raise _invalid(iccid)
        n = len(iccid)
        if not (_MIN_LEN <= n <= _MAX_LEN and iccid.isascii() and iccid.isdigit()):
            raise _invalid(iccid)
        v = int(iccid)
        lo = v & _M64
        mask = self._mask
        slot = (lo * _FIB & _M64) >> self._shift
        table, key_lo = self._table_mv, self._lo_mv
        step = 0
        while True:
            row: int = table[slot]
            if row < 0:
                return -1
            if key_lo[row] == lo and self._hi_mv[row] == (v >> 64 | _HI_TAG[n]):
                return row
            step += 1
            slot = (slot + step) & mask

    def add(self, iccid: str) -> int:
        """Row of ``iccid``, appending it as row ``len(self)`` when new."""
        if not isinstance(iccid, str):
            raise _invalid(iccid)
        n = len(iccid)
        if not (_MIN_LEN <= n <= _MAX_LEN and iccid.isascii() and iccid.isdigit()):
            raise _invalid(iccid)
        v = int(iccid)
        lo = v & _M64
        hi = v >> 64 | _HI_TAG[n]
        h = lo * _FIB & _M64
        mask = self._mask
        slot = h >> self._shift
        table, key_lo, key_hi = self._table_mv, self._lo_mv, self._hi_mv
        step = 0
        while True:
            row: int = table[slot]
            if row < 0:
                break
            if key_lo[row] == lo and key_hi[row] == hi:
                return row
            step += 1
            slot = (slot + step) & mask
        row = self._n
        if row >= self._limit:
            self._reserve(row + 1)
            mask = self._mask
            slot = h >> self._shift
            table = self._table_mv
            step = 0
            while table[slot] >= 0:
                step += 1
                slot = (slot + step) & mask
        self._hi_mv[row] = hi
        self._lo_mv[row] = lo
        table[slot] = row
        self._n = row + 1
        return row

    def iccid(self, row: int) -> str:
        """The ICCID of ``row`` (0 <= row < len); IndexError otherwise (no negative indexing)."""
        if not 0 <= row < self._n:
            raise IndexError(f"row {row} out of range 0..{self._n - 1}")
        return _decode(self._hi_mv[row], self._lo_mv[row])

    # -- batch path ------------------------------------------------------------------

    def get_many(self, iccids: Sequence[str] | npt.NDArray[np.str_]) -> npt.NDArray[np.int64]:
        """Rows of ``iccids`` (int64), -1 for unknown ones."""
        hi, lo = _parse_many(iccids)
        if lo.size == 0 or self._n == 0:
            return np.full(lo.size, _EMPTY, np.int64)
        return self._lookup_many(hi, lo)

    def add_many(self, iccids: Sequence[str] | npt.NDArray[np.str_]) -> npt.NDArray[np.int64]:
        """Rows of ``iccids`` (int64), appending unknown ones in order of first appearance."""
        hi, lo = _parse_many(iccids)
        rows = self._lookup_many(hi, lo) if self._n else np.full(lo.size, _EMPTY, np.int64)
        miss = np.flatnonzero(rows < 0)
        if miss.size == 0:
            return rows
        mhi, mlo = hi[miss], lo[miss]
        order = np.lexsort((mlo, mhi))  # stable: equal keys keep their batch order
        shi, slo = mhi[order], mlo[order]
        starts = np.ones(order.size, dtype=bool)
        starts[1:] = (shi[1:] != shi[:-1]) | (slo[1:] != slo[:-1])
        group = np.cumsum(starts) - 1  # group id of each sorted element
        first = order[starts]  # position (in miss) of each distinct key's first appearance
        by_appearance = np.argsort(first)
        n = self._n
        count = first.size
        new_row = np.empty(count, np.int64)
        new_row[by_appearance] = np.arange(n, n + count)
        rows[miss[order]] = new_row[group]
        self._reserve(n + count)
        keep = first[by_appearance]
        self._hi[n : n + count] = mhi[keep]
        self._lo[n : n + count] = mlo[keep]
        self._n = n + count
        slots = _hash_many(mlo[keep], self._shift)
        self._insert_many(slots, np.arange(n, n + count, dtype=np.int32))
        return rows

    def iccids(self, rows: npt.NDArray[np.integer] | None = None) -> list[str]:
        """ICCIDs of ``rows`` (all rows in order when None); IndexError for a bad row."""
        n = self._n
        if rows is None:
            his, los = self._hi[:n].tolist(), self._lo[:n].tolist()
        else:
            r = np.asarray(rows)
            if r.size and r.dtype.kind not in "iu":
                raise TypeError(f"rows must be integers, got dtype {r.dtype}")
            r = r.astype(np.int64).ravel()
            if r.size and (int(r.min()) < 0 or int(r.max()) >= n):
                raise IndexError(f"rows out of range 0..{n - 1}")
            his, los = self._hi[r].tolist(), self._lo[r].tolist()
        return [_decode(h, lo) for h, lo in zip(his, los, strict=True)]

    # -- checkpoint ------------------------------------------------------------------

    def keys(self) -> tuple[npt.NDArray[np.uint16], npt.NDArray[np.uint64]]:
        """Copies of the (hi, lo) key columns of rows ``0..len-1`` (for a checkpoint)."""
        n = self._n
        return self._hi[:n].copy(), self._lo[:n].copy()

    def restore(self, hi: npt.NDArray[np.uint16], lo: npt.NDArray[np.uint64]) -> None:
        """Replace the index with the rows of ``keys()`` (same rows, same order)."""
        if hi.shape != lo.shape or hi.ndim != 1:
            raise ValueError("hi and lo must be 1-d arrays of the same length")
        if hi.dtype != np.uint16 or lo.dtype != np.uint64:
            raise ValueError(f"key dtypes must be uint16/uint64, got {hi.dtype}/{lo.dtype}")
        n = int(lo.size)
        if n > _MAX_ROWS:
            raise OverflowError(f"IccidIndex holds at most {_MAX_ROWS} rows")
        self._n = 0
        self._alloc(_bits_for(max(n, 1)))
        self._hi[:n] = hi
        self._lo[:n] = lo
        self._n = n
        if n:
            self._insert_many(_hash_many(self._lo[:n], self._shift), np.arange(n, dtype=np.int32))

    # -- misc ------------------------------------------------------------------------

    def nbytes(self) -> int:
        """Bytes held by the table and key columns (allocated capacity, not just used rows)."""
        return int(self._table.nbytes + self._hi.nbytes + self._lo.nbytes)

    @staticmethod
    def valid(iccid: object) -> bool:
        """True for a str of 18 to 22 ASCII digits ``0-9`` (no signs, spaces or other digits)."""
        return (
            isinstance(iccid, str)
            and _MIN_LEN <= len(iccid) <= _MAX_LEN
            and iccid.isascii()
            and iccid.isdigit()
        )
