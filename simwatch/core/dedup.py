"""Duplicate detection by ``record_id`` in bounded memory, stable across processes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["Deduplicator", "fingerprint", "int64_array"]

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


def int64_array(values: list[int], chunk: int = 65536) -> np.ndarray:
    """``values`` as an int64 array, converted in chunks: in a worker thread the event
    loop gets the GIL between two chunks (one ``np.array`` call of a million Python ints
    would hold it for ~180 ms)."""
    out = np.empty(len(values), np.int64)
    for start in range(0, len(values), chunk):
        out[start : start + chunk] = values[start : start + chunk]
    return out


_EMPTY: Final = -1  # a free slot (keys are non-negative)
_GONE: Final = -2  # a key moved out of the old generation (a tombstone: probing goes on)
_MULT: Final = 0x9E3779B97F4A7C15  # Fibonacci hashing: the slot is the product's top bits
_MASK64: Final = 2**64 - 1
_FIRST_SLOTS: Final = 4096  # a table starts this small and doubles up to its full size


class _Table:
    """A set of non-negative int64 keys in one numpy array (open addressing, linear
    probing). It never shrinks: ``clear`` keeps the array, so a table that reached its
    full size is reused generation after generation without allocating."""

    __slots__ = ("keys", "mask", "shift", "size", "view")

    def __init__(self, slots: int) -> None:
        self.keys = np.full(slots, _EMPTY, np.int64)
        self.view = memoryview(self.keys.data)  # one slot as a Python int, for single keys
        self.mask = slots - 1
        self.shift = 64 - (slots.bit_length() - 1)
        self.size = 0  # keys held (tombstones not counted)

    def clear(self) -> None:
        self.keys.fill(_EMPTY)
        self.size = 0

    def home(self, keys: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):
            product = keys.view(np.uint64) * np.uint64(_MULT)
        return (product >> np.uint64(self.shift)).astype(np.intp) & self.mask

    def find(self, keys: np.ndarray) -> np.ndarray:
        """Per key its slot, or -1 when absent."""
        out = np.full(len(keys), -1, np.intp)
        idx = np.arange(len(keys))
        pos, table = self.home(keys), self.keys
        while idx.size:
            at = table[pos]
            hit = at == keys
            out[idx[hit]] = pos[hit]
            go = ~hit & (at != _EMPTY)
            idx, keys, pos = idx[go], keys[go], (pos[go] + 1) & self.mask
        return out

    def insert(self, keys: np.ndarray) -> None:
        """Add distinct keys that are not in the table (it must have room: see
        ``Deduplicator._room``)."""
        self.size += len(keys)
        pos, table = self.home(keys), self.keys
        while keys.size:
            free = np.flatnonzero(table[pos] == _EMPTY)
            # several keys may probe the same free slot in one round: one of them gets
            # it (the last written), the others probe on
            table[pos[free]] = keys[free]
            rest = np.ones(keys.size, np.bool_)
            rest[free[table[pos[free]] == keys[free]]] = False
            keys, pos = keys[rest], (pos[rest] + 1) & self.mask

    def find_one(self, key: int) -> int:
        view, mask = self.view, self.mask
        pos = ((key * _MULT) & _MASK64) >> self.shift
        while True:
            at = view[pos]
            if at == key:
                return pos
            if at == _EMPTY:
                return -1
            pos = (pos + 1) & mask

    def insert_one(self, key: int) -> None:
        view, mask = self.view, self.mask
        pos = ((key * _MULT) & _MASK64) >> self.shift
        while view[pos] != _EMPTY:
            pos = (pos + 1) & mask
        view[pos] = key
        self.size += 1

    def live(self) -> np.ndarray:
        return self.keys[self.keys >= 0]


class Deduplicator:
    """Remembers recent record_ids in bounded memory.

    Two rotating generations of ``fingerprint(record_id)``: new ids go into the current
    generation; when it holds ``capacity // 2`` entries it becomes the old generation and
    the previous old one is dropped. A repeat found in the old generation is moved to the
    current one. So the last ``capacity // 2`` distinct ids are always remembered and at
    most ``capacity`` keys are held. Keys are stable across processes
    (``export``/``restore`` carry them through a checkpoint); the chance of a false
    duplicate among two million ids is about 1e-6.

    Each generation is one int64 numpy array used as an open-addressing hash set with at
    least twice as many slots as the generation holds (a power of two): 16-32 bytes per
    id of capacity (32 MiB for the default 2M), allocated as the generations first fill and then
    reused (a rotation clears the dropped generation's array and fills it again).
    Nothing is allocated per id: the Python sets this replaced held a 32-byte int object
    per id and rebuilt their tables every generation, which kept the process's resident
    memory creeping (docs/performance.md, "Soak").
    """

    __slots__ = ("_current", "_full_slots", "_half", "_old")

    def __init__(self, capacity: int = 2_000_000) -> None:
        if capacity < 2:
            raise ValueError(f"capacity must be at least 2, got {capacity}")
        self._half = capacity // 2
        self._full_slots = 1 << (2 * self._half - 1).bit_length()  # >= 2 slots per key
        first = min(self._full_slots, _FIRST_SLOTS)
        self._current = _Table(first)
        self._old = _Table(first)

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
        keys = np.fromiter(map(fingerprint, record_ids), np.int64, n)
        out = np.empty(n, np.bool_)
        start = 0
        while start < n:
            start += self._judge(keys[start:], out[start:])
        return out

    def _judge(self, keys: np.ndarray, out: np.ndarray) -> int:
        """Judge ``keys`` in order up to the first rotation (included); how many."""
        uniq, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
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
        self._room(current.size + int(np.count_nonzero(taken & ~in_current)))
        self._current.insert(uniq[taken & ~in_current])
        if self._current.size >= self._half:
            self._rotate()
        return cut

    def _room(self, size: int) -> None:
        """Double the current generation's array until ``size`` keys fill at most half
        of it (only while the generations first fill: then it has its full size)."""
        table = self._current
        slots = len(table.keys)
        if 2 * size <= slots or slots >= self._full_slots:
            return
        while 2 * size > slots and slots < self._full_slots:
            slots *= 2
        bigger = _Table(slots)
        bigger.insert(table.live())
        self._current = bigger

    def _rotate(self) -> None:
        dropped = self._old
        self._old = self._current
        dropped.clear()  # its array is reused: nothing is allocated per generation
        self._current = dropped

    def _seen_key(self, key: int) -> bool:
        current = self._current
        if current.find_one(key) >= 0:
            return True
        old = self._old
        slot = old.find_one(key)
        duplicate = slot >= 0
        if duplicate:
            old.view[slot] = _GONE
            old.size -= 1
        self._room(current.size + 1)
        self._current.insert_one(key)
        if self._current.size >= self._half:
            self._rotate()
        return duplicate

    def __len__(self) -> int:
        return self._current.size + self._old.size

    def export(self) -> tuple[np.ndarray, np.ndarray]:
        """(current, old) generations as int64 arrays, for a checkpoint."""
        return self._current.live(), self._old.live()

    def key_lists(self) -> tuple[list[int], list[int]]:
        """(current, old) generations as lists of ints."""
        current, old = self.export()
        return current.tolist(), old.tolist()

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
        first = min(self._full_slots, _FIRST_SLOTS)
        self._current, self._old = _Table(first), _Table(first)
        self._room(len(prev))
        self._current.insert(prev)
        self._current, self._old = _Table(first), self._current
        self._room(len(cur))
        self._current.insert(cur)
