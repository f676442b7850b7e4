"""Small array helpers for the batch path (issue 12).

numpy 2's ``np.unique`` on 1-D integers takes a stable sort (``return_index``) or a hash
table (no options), both several times slower on a batch of a few thousand keys than an
ordinary ``argsort`` (``bench/bench_columnar.py``; docs/performance.md); these give the
same results from one quicksort.
"""

from __future__ import annotations

import numpy as np

__all__ = ["all_distinct", "unique_first_inverse"]


def unique_first_inverse(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``np.unique(keys, return_index=True, return_inverse=True)`` for a 1-D array: the
    sorted distinct keys, the position of each one's first occurrence, and per element
    the index of its key among them."""
    n = keys.size
    if n == 0:
        empty = np.zeros(0, np.intp)
        return keys[:0], empty, empty
    order = np.argsort(keys)
    ordered = keys[order]
    starts = np.empty(n, np.bool_)
    starts[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=starts[1:])
    at = np.flatnonzero(starts)
    first = np.minimum.reduceat(order, at)  # any order within a key: the least position
    inverse = np.empty(n, np.intp)
    inverse[order] = np.cumsum(starts) - 1
    return ordered[at], first, inverse


def all_distinct(values: np.ndarray) -> bool:
    """Whether no value of a 1-D array repeats."""
    if values.size < 2:
        return True
    ordered = np.sort(values)
    return not bool((ordered[1:] == ordered[:-1]).any())
