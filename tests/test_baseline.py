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
