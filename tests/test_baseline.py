from __future__ import annotations

import numpy as np

from simwatch.core.baseline import BaselineParams, GroupBaseline


def learn(base: GroupBaseline, days: int, ratio_by_hour: list[float], size: float) -> None:
    for minute in range(days * 24 * 60):
        now = minute * 60.0
        h = base.hour(now)
        total = np.array([size, size])
        actual = total * ratio_by_hour[h]
        expected = base.expected_ratio(now, 2) * total
        base.update(now, 60.0, affected=actual, total=total, expected=expected)


def test_learns_time_of_day_shape() -> None:
    base = GroupBaseline(BaselineParams(memory_days=1.0))
    night_heavy = [0.10 if h < 6 else 0.01 for h in range(24)]
    learn(base, 4, night_heavy, 500.0)
    night = base.expected_ratio(3 * 3600.0, 2)
    day = base.expected_ratio(12 * 3600.0, 2)
    assert 0.08 < night[0] < 0.12
    assert 0.005 < day[0] < 0.02


def test_outage_is_not_learned_as_normal() -> None:
    base = GroupBaseline(BaselineParams(memory_days=1.0))
    learn(base, 2, [0.02] * 24, 400.0)
    before = base.expected_ratio(2 * 86400.0, 2).copy()
    for minute in range(180):  # three hours with leaf 0 at 60 % overdue
        now = 2 * 86400.0 + minute * 60.0
        total = np.array([400.0, 400.0])
        actual = np.array([240.0, 8.0])
        expected = base.expected_ratio(now, 2) * total
        base.update(now, 60.0, affected=actual, total=total, expected=expected)
    after = base.expected_ratio(2 * 86400.0, 2)
    assert after[0] < before[0] * 1.5


def test_frozen_leaves_are_not_learned() -> None:
    base = GroupBaseline()
    total = np.array([100.0, 100.0])
    base.update(
        0.0, 60.0, affected=np.array([1.0, 1.0]), total=total, expected=np.array([1.0, 1.0])
    )
    snapshot = base.overdue[0].copy()
    base.update(
        60.0,
        60.0,
        affected=np.array([2.0, 2.0]),
        total=total,
        expected=np.array([2.0, 2.0]),
        frozen=np.array([True, False]),
    )
    assert np.array_equal(base.overdue[0], snapshot)
    assert not np.array_equal(base.overdue[1], snapshot)


def test_new_leaf_borrows_the_fleet_ratio() -> None:
    base = GroupBaseline(BaselineParams(memory_days=1.0))
    learn(base, 2, [0.05] * 24, 300.0)
    ratios = base.expected_ratio(2 * 86400.0, 5)  # three leaves never seen before
    assert np.allclose(ratios[2:], ratios[2], rtol=1e-9)
    assert 0.03 < ratios[4] < 0.07


def test_learns_each_leafs_over_dispersion() -> None:
    # leaf 0 counts like counting noise (Poisson), leaf 1 is bursty (its failing share
    # drawn each cycle from a beta of concentration 20, mean 2 %): a day of cycles
    base = GroupBaseline()
    rng = np.random.default_rng(5)
    total = np.array([500.0, 500.0])
    for cycle in range(24 * 12):
        now = cycle * 300.0
        expected = base.expected_ratio(now, 2) * total
        share = np.array([0.02, rng.beta(0.4, 19.6)])
        affected = rng.binomial(500, share).astype(np.float64)
        base.update(now, 300.0, affected=affected, total=total, expected=expected)
    steady, bursty = base.dispersion(2)
    assert steady < 2.0
    assert bursty > 3.0


def test_a_faults_first_cycles_do_not_make_a_leaf_bursty() -> None:
    # two days of counting noise (the first day's cycles of each hour mostly go to
    # learning its expectation), then 60 % overdue for three cycles (before an incident
    # freezes the leaf): each cycle counts at most skip_z² towards its dispersion
    base = GroupBaseline()
    rng = np.random.default_rng(6)
    total = np.array([400.0, 400.0])
    for cycle in range(2 * 24 * 12 + 3):
        now = cycle * 300.0
        expected = base.expected_ratio(now, 2) * total
        affected = rng.binomial(400, [0.02, 0.02]).astype(np.float64)
        if cycle >= 2 * 24 * 12:
            affected[0] = 240.0
        base.update(now, 300.0, affected=affected, total=total, expected=expected)
    assert base.dispersion(2)[0] < 1.2


def test_a_new_leafs_first_cycles_teach_no_dispersion() -> None:
    # a leaf first seen during an outage (its SIMs' history came after the clock had
    # moved on): its expectation for this hour has no history yet, so its counts are
    # no measure of its scatter, nor of its peak
    base = GroupBaseline()
    total = np.array([20.0])
    for cycle in range(10):
        now = cycle * 60.0
        expected = base.expected_ratio(now, 1) * total
        base.update(now, 60.0, affected=np.array([20.0]), total=total, expected=expected)
    assert base.dispersion(1)[0] == 1.0
    assert base.peak_share(1)[0] == 0.0


def test_learns_each_leafs_peak_share() -> None:
    # two days at 2 % overdue, with bursts to 8 % every hour: the peak is about the
    # bursts' share, and a cycle's share counts at most skip_z sd of the leaf's scatter
    base = GroupBaseline()
    total = np.array([500.0, 500.0])
    for cycle in range(2 * 24 * 12):
        now = cycle * 300.0
        expected = base.expected_ratio(now, 2) * total
        affected = np.array([10.0, 40.0 if cycle % 12 == 0 else 10.0])
        base.update(now, 300.0, affected=affected, total=total, expected=expected)
    steady, bursty = base.peak_share(2)
    assert 0.015 < steady < 0.03
    assert 0.04 < bursty <= 0.08


def test_a_checkpoint_without_dispersion_restores_with_none_learned() -> None:
    base = GroupBaseline()
    total = np.array([100.0, 100.0])
    ones = np.ones(2)
    for cycle in range(60):  # the first hour's expectation established, then a burst
        base.update(cycle * 60.0, 60.0, affected=ones, total=total, expected=ones)
    base.update(3590.0, 60.0, affected=np.array([9.0, 1.0]), total=total, expected=ones)
    arrays, meta = base.export()
    assert base.dispersion(2)[0] > 1.0
    assert base.peak_share(2)[0] > 0.01
    del arrays["scatter"], arrays["cycles"], arrays["peak"]  # written before they were learned
    restored = GroupBaseline()
    restored.restore(arrays, meta)
    assert np.array_equal(restored.dispersion(2), np.ones(2))
    assert np.array_equal(restored.peak_share(2), np.zeros(2))
    assert np.array_equal(restored.expected_ratio(60.0, 2), base.expected_ratio(60.0, 2))
