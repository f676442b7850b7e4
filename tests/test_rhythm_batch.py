"""``RhythmModel.observe_distinct`` against ``observe`` one row at a time (issue 12).

Documented behaviour (core/rhythm.py): one arrival for each of several distinct rows
leaves every column bit for bit as ``observe`` on each does. The rows' histories cover
what the model distinguishes: never seen, one arrival, a few gaps (early rule), learned
periodic devices, bursts under the gap floor, long outages (gmax), daytime-only devices
(the hour mask, the quiet block, entering and leaving diurnal mode) and mask
generations rolling over; the arrivals are late, duplicate, just after, long after.
"""

from __future__ import annotations

import numpy as np
import pytest
from fuzzing import fuzz
from hypothesis import given
from hypothesis import strategies as st

from simwatch.core.hourmask import quiet_block_hours
from simwatch.core.rhythm import RhythmModel, _quiet_block_hours_vec

T0 = 1_794_960_000.0  # a UTC midnight
MIN = 60.0
DAY = 86_400.0


def history(kind: int, seed: int) -> list[float]:  # noqa: PLR0911 - one history per kind
    rng = np.random.default_rng(seed)
    jitter = rng.uniform(-20, 20)
    if kind == 0:
        return []
    if kind == 1:
        return [T0]
    if kind == 2:  # two or three gaps
        return [T0 + k * 600.0 + jitter for k in range(int(rng.integers(2, 4)))]
    if kind == 3:  # learned, 15 min, with a burst and an outage
        times = [T0 + k * 900.0 + rng.uniform(0, 30) for k in range(40)]
        return [*times, times[-1] + 5.0, times[-1] + 8 * 3600.0]
    if kind == 4:  # daytime only, 07:00-19:00, 15 min, four days
        return [
            T0 + d * DAY + 7 * 3600.0 + k * 900.0 + rng.uniform(0, 60)
            for d in range(4)
            for k in range(48)
        ]
    if kind == 5:  # daily
        return [T0 + d * DAY + rng.uniform(0, 600) for d in range(6)]
    if kind == 6:  # daytime only, 29 h of history: the next arrivals may make it diurnal
        day1 = [T0 + 7 * 3600.0 + k * 900.0 + rng.uniform(0, 60) for k in range(48)]
        return day1 + [T0 + DAY + 7 * 3600.0 + k * 900.0 for k in range(21)]
    return [T0 + k * 3.0 for k in range(10)]  # bursts only, under the gap floor


def columns(model: RhythmModel, n: int) -> dict[str, np.ndarray]:
    return model.export(n)


@fuzz(200)
@given(
    st.lists(st.tuples(st.integers(0, 7), st.integers(0, 10**6)), min_size=1, max_size=12),
    st.lists(
        st.sampled_from([-5 * DAY, -1.0, 0.0, 1.0, 10.0, 29.0, 31.0, 900.0, 3 * 3600.0, 4 * DAY])
        | st.floats(-DAY, 8 * DAY),
        min_size=1,
        max_size=12,
    ),
    st.integers(0, 2**32),
)
def test_distinct_rows_equal_one_at_a_time(
    rows_spec: list[tuple[int, int]], offsets: list[float], seed: int
) -> None:
    n = len(rows_spec)
    base = RhythmModel(n)
    for row, (kind, row_seed) in enumerate(rows_spec):
        for t in history(kind, row_seed):
            base.observe(row, t)
    ref = RhythmModel(n)
    ref.restore(columns(base, n))
    got = RhythmModel(n)
    got.restore(columns(base, n))
    rng = np.random.default_rng(seed)
    rows = rng.permutation(n)[: len(offsets)]
    last = base.last_data
    ts = np.array(
        [
            (T0 if np.isnan(last[r]) else float(last[r])) + off
            for r, off in zip(rows.tolist(), offsets, strict=False)
        ]
    )
    rows = rows[: ts.size].astype(np.int64)
    for r, t in zip(rows.tolist(), ts.tolist(), strict=True):
        ref.observe(r, t)
    got.observe_distinct(rows, ts)
    expected, actual = columns(ref, n), columns(got, n)
    for name, value in expected.items():
        assert np.array_equal(value, actual[name], equal_nan=value.dtype.kind == "f"), name


def test_repeated_rows_are_refused() -> None:
    with pytest.raises(ValueError, match="distinct"):
        RhythmModel(4).observe_distinct(np.array([1, 1]), np.array([T0, T0 + 900]))


def test_out_of_range_and_invalid_times() -> None:
    model = RhythmModel(2)
    model.observe_distinct(np.array([0, 1]), np.array([np.nan, -1.0]))  # ignored, as observe
    assert np.isnan(model.last_data).all()
    with pytest.raises(IndexError):
        model.observe_distinct(np.array([2]), np.array([T0]))


@fuzz(300)
@given(
    st.lists(
        st.integers(0, 2**32 - 1)
        | st.sampled_from([0, 2**24 - 1, 1, 2**23, 0x800001, 0x7FFFFE, 0x0F0F0F, 0xFFF000]),
        min_size=1,
        max_size=40,
    )
)
def test_quiet_block_of_many_masks_is_the_scalar_one(masks: list[int]) -> None:
    """The longest circular run of quiet hours over arrays (by doubling) is
    ``hourmask.quiet_block_hours`` of each mask: runs across midnight, at either end,
    no quiet hour, no active hour, bits above the 24 hours ignored."""
    got = _quiet_block_hours_vec(np.array(masks, np.int64))
    assert got.tolist() == [quiet_block_hours(m) for m in masks]
