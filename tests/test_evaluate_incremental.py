"""Per-cycle work kept or found cheaper gives what the whole computation gives (issue 12,
the 50,000-SIM scenario runs).

Documented behaviour: ``RhythmModel`` keeps each row's late and silent thresholds between
reads and computes again only those of rows that learned since (core/rhythm.py): its
thresholds and states equal a fresh model's over the same columns, whatever was learned,
restored or put between reads. ``recent_start_counts`` (core/evaluate.py) is the count
of each ring's starts in the window.
"""

from __future__ import annotations

import numpy as np
from fuzzing import fuzz
from hypothesis import given
from hypothesis import strategies as st

from simwatch.core.evaluate import alive_groups, recent_start_counts
from simwatch.core.rhythm import RhythmModel
from simwatch.core.state import NEVER

T0 = 1_794_960_000.0  # a UTC midnight


def _fresh(model: RhythmModel, n: int) -> RhythmModel:
    fresh = RhythmModel(n)
    fresh.restore(model.export(n))
    return fresh


def _same(model: RhythmModel, n: int, now: float) -> None:
    ref = _fresh(model, n)
    rows = np.arange(n, dtype=np.int64)
    late, silent = model.thresholds_of(rows)
    want_late, want_silent = ref.thresholds_of(rows)
    assert np.array_equal(late, want_late)
    assert np.array_equal(silent, want_silent)
    assert np.array_equal(model.classify(now, n), ref.classify(now, n))
    assert np.array_equal(model.overdue_ratio(now, n), ref.overdue_ratio(now, n), equal_nan=True)
    picked = rows[::3][::-1]
    assert np.array_equal(model.thresholds_of(picked)[0], want_late[picked])


@fuzz(60)
@given(
    st.integers(1, 40),
    st.lists(
        st.tuples(
            st.sampled_from(["observe", "distinct", "put", "restore", "read"]),
            st.integers(0, 2**32),
        ),
        min_size=1,
        max_size=30,
    ),
)
def test_kept_thresholds_equal_a_fresh_models(n: int, steps: list[tuple[str, int]]) -> None:
    model = RhythmModel(n)
    now = T0
    saved = model.export(n)
    for op, seed in steps:
        rng = np.random.default_rng(seed)
        if op == "observe":  # one row, some gaps: a few (early rule) to learned
            row = int(rng.integers(n))
            for _ in range(int(rng.integers(1, 12))):
                now += float(rng.choice([3.0, 300.0, 900.0, 3600.0, 8 * 3600.0]))
                model.observe(row, now + float(rng.uniform(0, 60)))
        elif op == "distinct":
            rows = rng.permutation(n)[: int(rng.integers(1, n + 1))].astype(np.int64)
            now += float(rng.choice([60.0, 900.0, 3600.0]))
            model.observe_distinct(rows, now + rng.uniform(0, 30, rows.size))
        elif op == "put":  # another model's rows (a partition handed over)
            other = RhythmModel(n)
            for row in range(n):
                for k in range(int(rng.integers(0, 9))):
                    other.observe(row, T0 + k * float(rng.uniform(60, 7200)))
            rows = rng.permutation(n)[: int(rng.integers(1, n + 1))].astype(np.int64)
            model.put(rows, other.take(rows))
        elif op == "restore":  # a checkpoint of an earlier state
            model.restore(saved)
        else:
            _same(model, n, now + float(rng.uniform(0, 86400)))
            if seed % 2:  # a checkpoint to go back to
                saved = model.export(n)
    _same(model, n, now + 1800.0)


def test_kept_thresholds_follow_a_resize() -> None:
    model = RhythmModel(2)
    for k in range(10):
        model.observe(1, T0 + 900.0 * k)
    model.classify(T0 + 9000.0, 2)
    model.resize(5)
    for k in range(10):
        model.observe(4, T0 + 60.0 * k)
    _same(model, 5, T0 + 9600.0)


@fuzz(200)
@given(
    st.integers(0, 30),
    st.integers(1, 8),
    st.integers(-10, 20_000),
    st.sampled_from([7200.0, 3600.0, 0.0, 1.5]),
    st.integers(0, 2**32),
)
def test_recent_start_counts_is_the_sum(
    n: int, width: int, now_rel: int, window: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    ring = rng.integers(-2, 20_000, (n, width)).astype(np.int32)
    ring[rng.random((n, width)) < 0.3] = NEVER
    edges = np.array([now_rel, now_rel + 1, now_rel - 7200, now_rel - 7199, NEVER], np.int32)
    pick = rng.random((n, width)) < 0.3
    ring[pick] = rng.choice(edges, int(pick.sum()))
    want = ((ring != NEVER) & (ring > now_rel - window) & (ring <= now_rel)).sum(axis=1)
    got = recent_start_counts(ring, now_rel, window)
    assert got.dtype == want.dtype
    assert np.array_equal(got, want)


@fuzz(200)
@given(
    st.integers(0, 60),
    st.integers(1, 8),
    st.integers(0, 2**32),
    st.sampled_from([1200.0, 0.0, 1.0]),
)
def test_alive_groups_is_the_whole_comparison(n: int, size: int, seed: int, floor: float) -> None:
    rng = np.random.default_rng(seed)
    now_rel = 10_000
    column = rng.integers(0, size, n).astype(np.int16)
    heard = (now_rel - rng.choice([0.0, 1.0, floor, floor + 1.0, 5000.0, 9000.0], n)).astype(
        np.float64
    )
    heard -= rng.random(n) * rng.choice([0.0, 3000.0], n)
    span = floor + rng.choice([0.0, 0.0, 1.0, 600.0, 4000.0, np.inf, np.nan], size)
    span[0] = np.inf
    recent = heard > now_rel - floor
    split = (np.flatnonzero(recent), np.flatnonzero(~recent))
    got = alive_groups(column, span, heard=heard, now_rel=now_rel, min_span=floor, split=split)
    with np.errstate(invalid="ignore"):
        want = np.bincount(column[heard > (now_rel - span)[column]], minlength=size) > 0
    finite = np.isfinite(span)
    assert np.array_equal(got[finite], want[finite])
