"""The shortcuts on localize's hot path compute what the plain numpy calls did, bit for bit.

``bench/localize_ab.py`` compares whole localizations against another version; these
pin the two helpers whose equivalence is not obvious from reading them.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from simwatch.core.localize import LeafTable, _build_groups, _quantile


@pytest.mark.parametrize("seed", range(4))
def test_quantile_is_numpy_quantile_bit_for_bit(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for size in (1, 2, 3, 10, 11, 400, 1001):
        values = (rng.random(size) * 10.0) ** 3
        if seed % 2:
            values = np.round(values)  # ties
        for q in (0.0, 0.1, 0.25, 1 / 3, 0.5, 0.75, 0.9, 1.0, float(rng.random())):
            assert _quantile(values, q) == float(np.quantile(values, q)), (size, q)


def test_groups_are_the_distinct_keys_in_key_order() -> None:
    # dims of 7 x 5 x 700 values: (0, 2) and (0, 1, 2) are ranked by sorting, the rest by
    # marking; some combinations absent, so some keys are gaps
    rng = np.random.default_rng(1)
    rows = [
        ((f"a{a}", f"c{c}", f"p{p}"), 1.0, 10.0, 0.5)
        for a, c, p in zip(
            rng.integers(0, 7, 900), rng.integers(0, 5, 900), rng.integers(0, 700, 900), strict=True
        )
    ]
    table = LeafTable.from_rows(("apn", "country", "partner"), rows)
    groups = _build_groups(table, 3)
    card = [len(lab) for lab in table.labels]
    for ci, cub in enumerate(groups.cuboids):
        key = np.zeros(len(table.affected), dtype=np.int64)
        for d in cub:
            key = key * card[d] + table.codes[:, d]
        expected = np.unique(key, return_inverse=True)[1].reshape(-1)
        assert np.array_equal(groups.local[ci], expected), cub
        assert int(groups.offsets[ci + 1] - groups.offsets[ci]) == len(np.unique(key))
    assert groups.cuboids == tuple(c for d in range(4) for c in itertools.combinations(range(3), d))
