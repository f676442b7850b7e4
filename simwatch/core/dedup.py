"""Duplicate detection by ``record_id`` in bounded memory, stable across processes."""

from __future__ import annotations

import mmap
from typing import TYPE_CHECKING, Final

import numpy as np

from simwatch.core.arrays import unique_first_inverse

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["Deduplicator", "fingerprint", "fingerprints"]

# Record ids are remembered as a stable 63-bit fingerprint (the same in every process, so
# the dedup memory can be checkpointed): the id's UTF-8 bytes read as one little-endian
# integer, modulo the prime 2**62 - 57 (a Karp-Rabin fingerprint: two ids collide only if
# their difference is a multiple of the prime), with the byte length in the top bits so
# that trailing NUL bytes still count. ~0.25 us per id (a blake2b digest costs ~0.9 us).
_FINGERPRINT_PRIME: Final = 2**62 - 57
_LENGTH_SHIFT: Final = 53  # byte length < 1024 (256 characters): the key stays < 2**63


def fingerprint(record_id: str) -> int:
    """The stable dedup key of a record id (a non-negative int below 2**63)."""
    data = record_id.encode()
    return (int.from_bytes(data, "little") % _FINGERPRINT_PRIME) ^ (len(data) << _LENGTH_SHIFT)


_P64: Final = np.uint64(_FINGERPRINT_PRIME)
_LOW30: Final = np.uint64((1 << 30) - 1)


def fingerprints(record_ids: Sequence[str]) -> np.ndarray:
    """``fingerprint`` of each id (int64 array), for a batch at once.

    ASCII ids (the common case) as one byte matrix: the little-endian integer of each
    row reduced modulo the prime by Horner's rule over 32-bit words from the last one
    (zero padding adds nothing), with 2**62 = 57 (mod p): h * 2**32 + w is congruent to
    (h >> 30) * 57 + ((h mod 2**30) << 32) + w, which stays below 2**62 + 2**40 for any
    h below 2**63, so one conditional subtraction at the end reduces it below p. Any
    other id: ``fingerprint`` one by one."""
    n = len(record_ids)
    if n == 0 or not "".join(record_ids).isascii():
        return np.fromiter(map(fingerprint, record_ids), np.int64, n)
    lengths = np.fromiter(map(len, record_ids), np.int64, n)
    width = -(-int(lengths.max()) // 4) * 4
    if width == 0:
        return lengths << _LENGTH_SHIFT
    # numpy's bytes dtype keeps the ids' bytes (NULs included) and pads with NULs
    words = np.array(record_ids, dtype=f"S{width}").view("<u4").reshape(n, width // 4)
    h = np.zeros(n, np.uint64)
    shift30, shift32, c57 = np.uint64(30), np.uint64(32), np.uint64(57)
    for j in range(width // 4 - 1, -1, -1):
        h = (h >> shift30) * c57 + ((h & _LOW30) << shift32) + words[:, j]
    np.minimum(h, h - _P64, out=h)  # h - p wraps around when h < p
    return h.view(np.int64) ^ (lengths << _LENGTH_SHIFT)


_EMPTY: Final = 0  # a free slot: a key k is stored as k + 1 (fingerprints are >= 0)
_GONE: Final = -1  # a key moved out of the old generation (a tombstone: probing goes on)
_MULT: Final = 0x9E3779B97F4A7C15  # Fibonacci hashing: the slot is the product's top bits
_MASK64: Final = 2**64 - 1
_LAST_KEY: Final = 2**63 - 2  # the largest fingerprint stored as itself + 1 (one above:
# 2**63 - 1 would need a 62-bit remainder of all ones, it shares the slot value)


def _stored(keys: np.ndarray) -> np.ndarray:
    """Fingerprints as the tables store them (+ 1: 0 marks a free slot)."""
    stored: np.ndarray = np.minimum(keys, _LAST_KEY) + 1
    return stored


class _Table:
    """A set of fingerprints (stored + 1) in one int64 array used as an open-addressing
    hash table with linear probing, at its full size from the start. The array is an
    anonymous memory map: its pages cost nothing until a key lands in them, and ``clear``
    keeps them, so a generation turns over without allocating."""

    __slots__ = ("keys", "mask", "shift", "size", "view")

    def __init__(self, slots: int) -> None:
        # zero-filled by the kernel, page by page as they are touched
        buffer = mmap.mmap(-1, slots * 8, flags=mmap.MAP_PRIVATE)
        self.keys = np.frombuffer(buffer, np.int64)
        self.view = memoryview(buffer).cast("q")  # one slot as a Python int, for single keys
        self.mask = slots - 1
        self.shift = 64 - (slots.bit_length() - 1)
        self.size = 0  # keys held (tombstones not counted)

    def clear(self) -> None:
        self.keys.fill(_EMPTY)
        self.size = 0

    def home(self, stored: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):
            product = stored.view(np.uint64) * np.uint64(_MULT)
        return (product >> np.uint64(self.shift)).astype(np.intp) & self.mask

    def find(self, stored: np.ndarray) -> np.ndarray:
        """Per stored key its slot, or -1 when absent."""
        out = np.full(len(stored), -1, np.intp)
        idx = np.arange(len(stored))
        pos, table = self.home(stored), self.keys
        while idx.size:
            at = table[pos]
            hit = at == stored
            out[idx[hit]] = pos[hit]
            go = ~hit & (at != _EMPTY)
            idx, stored, pos = idx[go], stored[go], (pos[go] + 1) & self.mask
        return out

    def insert(self, stored: np.ndarray) -> None:
        """Add distinct stored keys that are not in the table (the owner keeps it at most
        half full)."""
        self.size += len(stored)
        pos, table = self.home(stored), self.keys
        while stored.size:
            free = np.flatnonzero(table[pos] == _EMPTY)
            # several keys may probe the same free slot in one round: one of them gets
            # it (the last written), the others probe on
            table[pos[free]] = stored[free]
            rest = np.ones(stored.size, np.bool_)
            rest[free[table[pos[free]] == stored[free]]] = False
            stored, pos = stored[rest], (pos[rest] + 1) & self.mask

    def find_one(self, stored: int) -> int:
        view, mask = self.view, self.mask
        pos = ((stored * _MULT) & _MASK64) >> self.shift
        while True:
            at = view[pos]
            if at == stored:
                return pos
            if at == _EMPTY:
                return -1
            pos = (pos + 1) & mask

    def insert_one(self, stored: int) -> None:
        view, mask = self.view, self.mask
        pos = ((stored * _MULT) & _MASK64) >> self.shift
        while view[pos] != _EMPTY:
            pos = (pos + 1) & mask
        view[pos] = stored
        self.size += 1

    def live(self) -> np.ndarray:
        """The fingerprints held (a copy)."""
        return self.keys[self.keys > 0] - 1


class Deduplicator:
    """Remembers recent record_ids in bounded memory.

    Two rotating generations of ``fingerprint(record_id)``: new ids go into the current
    generation; when it holds ``capacity // 2`` entries it becomes the old generation and
    the previous old one is dropped. A repeat found in the old generation is moved to the
    current one. So the last ``capacity // 2`` distinct ids are always remembered and at
    most ``capacity`` keys are held. Keys are stable across processes
    (``export``/``restore`` carry them through a checkpoint); the chance of a false
    duplicate among two million ids is about 1e-6.

    Each generation is one int64 array used as an open-addressing hash set with at least
    twice as many slots as the generation holds (a power of two): 16-32 bytes per id of
    capacity (32 MiB for the default 2M, resident as ids land in its pages), mapped once
    and reused (a rotation clears the dropped generation's array and fills it again).
    Nothing is allocated per id or per generation: the Python sets this replaced held a
    32-byte int object per id and rebuilt their tables as every generation grew, which
    kept the process's resident memory creeping and held the event loop for each rebuild
    (docs/performance.md, "Soak").
    """

    __slots__ = ("_current", "_half", "_old", "_slots")

    def __init__(self, capacity: int = 2_000_000) -> None:
        if capacity < 2:
            raise ValueError(f"capacity must be at least 2, got {capacity}")
        self._half = capacity // 2
        self._slots = 1 << (2 * self._half - 1).bit_length()  # >= 2 slots per key
        self._current = _Table(self._slots)
        self._old = _Table(self._slots)

    @property
    def nbytes(self) -> int:
        """Bytes held by the two generations' arrays."""
        return int(self._current.keys.nbytes + self._old.keys.nbytes)

    def seen(self, record_id: str) -> bool:
        """True when ``record_id`` was seen before (a duplicate); otherwise remember it."""
        return self._seen_key(fingerprint(record_id))

    def seen_many(self, record_ids: Sequence[str]) -> np.ndarray:
        """Per id (bool array): a duplicate, exactly as ``seen`` called on each in order.

        Between two rotations, an id is a duplicate when it is not its first occurrence
        in the batch or when either generation held it before the batch; a rotation
        happens right after the id that fills the current generation, and the rest of
        the batch is judged again after it."""
        n = len(record_ids)
        keys = _stored(fingerprints(record_ids))
        out = np.empty(n, np.bool_)
        start = 0
        while start < n:
            start += self._judge(keys[start:], out[start:])
        return out

    def _judge(self, keys: np.ndarray, out: np.ndarray) -> int:
        """Judge ``keys`` (stored form) in order up to the first rotation (included);
        returns how many were judged."""
        uniq, first, inverse = unique_first_inverse(keys)
        current, old = self._current, self._old
        in_current = current.find(uniq) >= 0
        old_slots = old.find(uniq)
        # an id not in the current generation is added to it at its first occurrence
        adds = np.sort(first[~in_current])
        room = self._half - current.size
        cut = int(adds[room - 1]) + 1 if len(adds) >= room else len(keys)
        taken = first < cut
        repeat = np.ones(len(keys), np.bool_)
        repeat[first] = False
        out[:cut] = (repeat | in_current[inverse] | (old_slots >= 0)[inverse])[:cut]
        moved = old_slots[taken & (old_slots >= 0)]
        old.keys[moved] = _GONE
        old.size -= len(moved)
        current.insert(uniq[taken & ~in_current])
        if current.size >= self._half:
            self._rotate()
        return cut

    def _rotate(self) -> None:
        dropped = self._old
        self._old = self._current
        dropped.clear()  # its array is reused: nothing is allocated per generation
        self._current = dropped

    def _seen_key(self, key: int) -> bool:
        stored = min(key, _LAST_KEY) + 1
        current = self._current
        if current.find_one(stored) >= 0:
            return True
        old = self._old
        slot = old.find_one(stored)
        duplicate = slot >= 0
        if duplicate:
            old.view[slot] = _GONE
            old.size -= 1
        current.insert_one(stored)
        if current.size >= self._half:
            self._rotate()
        return duplicate

    def __len__(self) -> int:
        return self._current.size + self._old.size

    def export(self) -> tuple[np.ndarray, np.ndarray]:
        """(current, old) generations as int64 arrays, for a checkpoint."""
        return self._current.live(), self._old.live()

    def restore(self, current: np.ndarray, old: np.ndarray) -> None:
        """Replace the memory with exported generations (cut to this capacity if smaller)."""
        half = self._half
        cur = np.unique(np.asarray(current, np.int64))
        prev = np.unique(np.asarray(old, np.int64))
        cur, prev = cur[cur >= 0], prev[prev >= 0]  # fingerprints are never negative
        if len(cur) >= half:  # the checkpoint had a larger capacity: rotate once
            cur, prev = cur[:0], cur
        prev = prev[:half]
        prev = prev[~np.isin(prev, cur)]  # a key lives in one generation
        self._current.clear()
        self._old.clear()
        self._current.insert(_stored(cur))
        self._old.insert(_stored(prev))
