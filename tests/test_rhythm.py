"""Tests of the per-SIM rhythm and silence model on synthetic arrival streams."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pytest
from fleet import DAY, T0  # T0: a UTC midnight

from simwatch.core.rhythm import RhythmModel, RhythmParams, SimState

if TYPE_CHECKING:
    from collections.abc import Callable

MIN = 60.0
HOUR = 3600.0

OK, LATE, SILENT, NEVER = (
    SimState.OK,
    SimState.LATE,
    SimState.SILENT,
    SimState.NEVER_SEEN,
)


def periodic(
    period: float, days: float, jitter: float, rng: np.random.Generator, phase: float = 0.0
) -> np.ndarray:
    base = T0 + phase + np.arange(0.0, days * DAY, period)
    return np.sort(base + rng.uniform(-jitter, jitter, size=base.size))


def daytime(
    period: float,
    days: int,
    jitter: float,
    rng: np.random.Generator,
    hours: tuple[int, int] = (7, 19),
) -> np.ndarray:
    start_h, end_h = hours
    out = []
    for d in range(days):
        base = T0 + d * DAY + start_h * HOUR + np.arange(0.0, (end_h - start_h) * HOUR + 1, period)
        out.append(base + rng.uniform(-jitter, jitter, size=base.size))
    return np.sort(np.concatenate(out))


def heartbeat(
    every: float, event_rate: float, days: float, rng: np.random.Generator, phase: float = 0.0
) -> np.ndarray:
    beats = T0 + phase + np.arange(0.0, days * DAY, every)
    n_events = rng.poisson(event_rate * days * DAY)
    events = T0 + rng.uniform(0.0, days * DAY, size=n_events)
    return np.sort(np.concatenate([beats, events]))


def feed(model: RhythmModel, row: int, ts: np.ndarray) -> float:
    for t in ts.tolist():
        model.observe(row, t)
    return float(ts.max())


def state(model: RhythmModel, row: int, now: float) -> SimState:
    return SimState(int(model.classify(now, model.capacity)[row]))


def test_every_minute_device() -> None:
    m = RhythmModel(2)
    last = feed(m, 0, periodic(MIN, 3, 3.0, np.random.default_rng(1)))
    assert state(m, 0, last + 40) == OK
    assert state(m, 0, last + 4 * MIN) == LATE
    assert state(m, 0, last + 12 * MIN) == SILENT
    d = m.describe(0, last + 40)
    assert d["learned"] is True
    assert d["typical_gap_s"] == pytest.approx(60.0, rel=0.05)
    assert d["active_hours"] is None


def test_fifteen_minute_device() -> None:
    m = RhythmModel(1)
    last = feed(m, 0, periodic(15 * MIN, 5, 45.0, np.random.default_rng(2)))
    assert state(m, 0, last + 20 * MIN) == OK
    assert state(m, 0, last + 35 * MIN) == LATE
    assert state(m, 0, last + 90 * MIN) == SILENT


def test_hourly_device() -> None:
    m = RhythmModel(1)
    last = feed(m, 0, periodic(HOUR, 6, 120.0, np.random.default_rng(3)))
    assert state(m, 0, last + 70 * MIN) == OK
    assert state(m, 0, last + 2.5 * HOUR) == LATE
    assert state(m, 0, last + 6 * HOUR) == SILENT


def test_once_a_day_device() -> None:
    rng = np.random.default_rng(4)
    m = RhythmModel(1)
    ts = periodic(DAY, 7, 600.0, rng, phase=5 * HOUR + 17 * MIN)
    last = feed(m, 0, ts)
    assert state(m, 0, last + 23 * HOUR + 50 * MIN) == OK
    assert state(m, 0, last + 30 * HOUR) == LATE
    assert state(m, 0, last + 48 * HOUR) == SILENT
    assert m.describe(0, last)["active_hours"] is None  # wall clock, not diurnal


def test_daytime_only_device_is_quiet_at_night_and_late_when_it_misses_the_morning() -> None:
    m = RhythmModel(1)
    ts = daytime(15 * MIN, 6, 20.0, np.random.default_rng(5))
    last = feed(m, 0, ts)
    day6 = T0 + 6 * DAY
    assert last == pytest.approx(day6 - 5 * HOUR, abs=30)  # 19:00 on day 5
    assert state(m, 0, day6 + 3 * HOUR) == OK  # 03:00, 8 h after its last report
    assert state(m, 0, day6 + 6 * HOUR + 55 * MIN) == OK
    # The block's edge hours (07 and 18) are only partly active on a real device and do
    # not count: a missed morning shows from 08:00 on.
    assert state(m, 0, day6 + 7 * HOUR + 50 * MIN) == OK
    assert state(m, 0, day6 + 8 * HOUR + 50 * MIN) == LATE  # missed 07:00..08:45
    assert state(m, 0, day6 + 10 * HOUR + 30 * MIN) == SILENT
    d = m.describe(0, day6 + 3 * HOUR)
    assert d["active_hours"] == list(range(7, 19))
    assert d["elapsed_s"] is not None
    assert float(str(d["elapsed_s"])) < 60.0
    # On wall clock the same history would make it silent at 03:00.
    assert float(str(d["silent_after_s"])) < 8 * HOUR


def test_heartbeat_with_random_events_is_not_silent_at_five_hours() -> None:
    m = RhythmModel(1)
    ts = heartbeat(4 * HOUR, 1 / (90 * MIN), 7, np.random.default_rng(6))
    last = feed(m, 0, ts)
    assert state(m, 0, last + 5 * HOUR) != SILENT
    assert state(m, 0, last + 2 * DAY) == SILENT


def test_never_seen() -> None:
    m = RhythmModel(3)
    m.observe(1, T0)
    states = m.classify(T0 + 10, 3)
    assert states.dtype == np.int8
    assert states.tolist() == [NEVER, OK, NEVER]
    ratio = m.overdue_ratio(T0 + 10, 3)
    assert ratio.dtype == np.float32
    assert math.isnan(ratio[0])
    assert ratio[1] == pytest.approx(10 / 93600.0)
    d = m.describe(0, T0)
    assert d["last_data"] is None
    assert d["state"] == "never_seen"
    assert d["gaps_seen"] == 0
    assert np.isnan(m.last_data[0])
    assert m.last_data[1] == T0


def test_defaults_for_unlearned_sims() -> None:
    m = RhythmModel(1)
    m.observe(0, T0)
    m.observe(0, T0 + 15 * MIN)  # one gap: defaults
    last = T0 + 15 * MIN
    assert state(m, 0, last + 1.9 * HOUR) == OK
    assert state(m, 0, last + 2.1 * HOUR) == LATE
    assert state(m, 0, last + 25.9 * HOUR) == LATE
    assert state(m, 0, last + 26.1 * HOUR) == SILENT
    d = m.describe(0, last)
    assert d["learned"] is False
    assert d["late_after_s"] == 7200.0
    assert d["silent_after_s"] == 93600.0


def test_early_rule_follows_the_first_gaps_within_the_defaults() -> None:
    m = RhythmModel(2)
    for k in range(3):  # two 15-min gaps on row 0, two daily gaps on row 1
        m.observe(0, T0 + k * 15 * MIN)
        m.observe(1, T0 + k * DAY)
    d0 = m.describe(0, T0 + 30 * MIN)
    assert d0["learned"] is False
    assert d0["late_after_s"] == pytest.approx(2700.0)  # 3 x 15 min
    assert d0["silent_after_s"] == pytest.approx(10800.0)  # floor of 3 h
    d1 = m.describe(1, T0 + 2 * DAY)
    # a daily device is not "late" two hours after each report: capped at the silent default
    assert d1["late_after_s"] == 93600.0
    assert d1["silent_after_s"] == 93600.0


def test_one_outage_does_not_poison_the_threshold() -> None:
    rng = np.random.default_rng(7)
    m = RhythmModel(1)
    before = periodic(15 * MIN, 4, 45.0, rng)
    outage_end = float(before[-1]) + 8 * HOUR
    after = outage_end + np.arange(0.0, DAY, 15 * MIN) + rng.uniform(-45, 45, 96)
    feed(m, 0, before)
    silent_before = float(str(m.describe(0, float(before[-1]))["silent_after_s"]))
    last = feed(m, 0, after)
    d = m.describe(0, last)
    assert float(str(d["typical_gap_s"])) < 1.2 * 900
    silent_after = float(str(d["silent_after_s"]))
    assert silent_after < 2 * silent_before
    assert silent_after < 3 * HOUR
    assert state(m, 0, last + 20 * MIN) == OK
    assert state(m, 0, last + 3 * HOUR) == SILENT


def test_rhythm_change_is_adopted() -> None:
    rng = np.random.default_rng(8)
    m = RhythmModel(1)
    first = periodic(15 * MIN, 3, 30.0, rng)
    feed(m, 0, first)
    later = float(first[-1]) + np.arange(1, 4 * 24 + 1) * HOUR  # now hourly for 4 days
    last = feed(m, 0, later)
    d = m.describe(0, last)
    assert float(str(d["typical_gap_s"])) == pytest.approx(HOUR, rel=0.2)
    assert state(m, 0, last + 70 * MIN) == OK
    assert state(m, 0, last + 8 * HOUR) == SILENT


def test_out_of_order_and_duplicates_do_not_teach_tiny_gaps() -> None:
    m = RhythmModel(1)
    m.observe(0, T0)
    m.observe(0, T0 + 900)
    m.observe(0, T0 + 600)  # late arrival: ignored
    assert m.last_data[0] == T0 + 900
    assert m.describe(0, T0 + 900)["gaps_seen"] == 1
    m.observe(0, T0 + 900)  # duplicate
    m.observe(0, T0 + 901)  # same report window
    assert m.last_data[0] == T0 + 901
    assert m.describe(0, T0 + 901)["gaps_seen"] == 1

    rng = np.random.default_rng(9)
    clean = periodic(15 * MIN, 4, 30.0, rng)
    noisy = np.concatenate([clean, clean[::7] + 1.0, clean[::5]])  # bursts, duplicates
    noisy = noisy[np.argsort(noisy + rng.uniform(0, 300, noisy.size))]  # minutes of disorder
    a, b = RhythmModel(1), RhythmModel(1)
    feed(a, 0, clean)
    for t in noisy.tolist():
        b.observe(0, t)
    assert b.last_data[0] == clean.max()
    da, db = a.describe(0, float(clean.max())), b.describe(0, float(clean.max()))
    typical_a = float(str(da["typical_gap_s"]))
    assert float(str(db["typical_gap_s"])) == pytest.approx(typical_a, rel=0.1)
    assert float(str(db["late_after_s"])) >= 0.9 * float(str(da["late_after_s"]))
    now = float(clean.max())
    for dt, expected in ((20 * MIN, OK), (35 * MIN, LATE), (2 * HOUR, SILENT)):
        assert state(b, 0, now + dt) == expected


def test_observe_many_equals_sequential_observe() -> None:
    rng = np.random.default_rng(10)
    rows = rng.integers(0, 20, size=4000)
    ts = T0 + np.sort(rng.uniform(0, 5 * DAY, size=4000)) + rng.uniform(0, 120, size=4000)
    ts[::50] = ts[::50] - 400  # some late arrivals
    ts[1::97] = ts[::97][: ts[1::97].size]  # some exact duplicates across rows
    seq = RhythmModel(20)
    order = np.lexsort((ts, rows))
    for r, t in zip(rows[order].tolist(), ts[order].tolist(), strict=True):
        seq.observe(r, t)
    batch = RhythmModel(20)
    perm = rng.permutation(4000)
    batch.observe_many(rows[perm[:2500]], ts[perm[:2500]])
    batch2 = RhythmModel(20)
    batch2.observe_many(rows[perm], ts[perm])
    for name in ("_last", "_mu", "_var", "_gmax", "_mask_cur", "_mask_prev", "_first", "_n"):
        assert np.array_equal(getattr(seq, name), getattr(batch2, name), equal_nan=True), name
    assert not np.array_equal(seq._n, batch._n)  # the check can fail
    now = T0 + 5 * DAY + HOUR
    assert np.array_equal(seq.classify(now, 20), batch2.classify(now, 20))
    with pytest.raises(IndexError):
        batch.observe_many(np.array([20]), np.array([T0]))


def test_resize_keeps_data() -> None:
    m = RhythmModel(2)
    last = feed(m, 1, periodic(15 * MIN, 2, 30.0, np.random.default_rng(11)))
    before = m.describe(1, last + 60)
    m.resize(1000)
    assert m.capacity == 1000
    assert m.describe(1, last + 60) == before
    assert m.classify(last + 60, 1000)[2:].tolist() == [NEVER] * 998
    m.observe(999, T0)
    assert m.last_data[999] == T0
    with pytest.raises(ValueError, match="shrink"):
        m.resize(10)


def test_memory_budget_and_read_only_view() -> None:
    m = RhythmModel(1000)
    assert m.nbytes() <= 40 * 1000
    with pytest.raises(ValueError, match="read-only"):
        m.last_data[0] = 1.0


def test_params_are_validated() -> None:
    with pytest.raises(ValueError, match="alpha"):
        RhythmParams(alpha=0.0)
    m = RhythmModel(1, RhythmParams(default_late_s=60.0, default_silent_s=120.0))
    m.observe(0, T0)
    assert state(m, 0, T0 + 90) == LATE


def test_false_alarms_over_a_week_of_many_sims() -> None:
    """200 SIMs per profile (100 for 1-min), 7 days, hourly checks on days 3-7: 0 silent.

    Streams have jitter, 2 % duplicates/bursts, up to 3 min delivery delay (reordering) and,
    for profiles reporting at least hourly, 1 % lost reports (a lost daily report is a real
    missed day, so the daily and heartbeat profiles lose none).
    """
    rng = np.random.default_rng(12)
    streams: list[np.ndarray] = []
    kinds: list[str] = []

    def add(kind: str, count: int, make: Callable[[], np.ndarray], loss: float = 0.01) -> None:
        for _ in range(count):
            ts = make()
            ts = ts[rng.random(ts.size) >= loss]  # lost reports
            dup = ts[rng.random(ts.size) < 0.02] + rng.uniform(0, 5)  # bursts / duplicates
            streams.append(np.concatenate([ts, dup]))
            kinds.append(kind)

    add("1min", 100, lambda: periodic(MIN, 7, 5.0, rng, phase=rng.uniform(0, MIN)))
    add("15min", 200, lambda: periodic(15 * MIN, 7, 60.0, rng, phase=rng.uniform(0, 900)))
    add("hourly", 200, lambda: periodic(HOUR, 7, 180.0, rng, phase=rng.uniform(0, HOUR)))
    add("daily", 200, lambda: periodic(DAY, 8, 900.0, rng, phase=rng.uniform(0, DAY)), 0.0)
    add(
        "daytime",
        200,
        lambda: daytime(
            15 * MIN, 8, 30.0, rng, (int(rng.integers(5, 9)), int(rng.integers(17, 21)))
        ),
    )
    add(
        "heartbeat",
        200,
        lambda: heartbeat(4 * HOUR, 1 / (2 * HOUR), 7, rng, phase=rng.uniform(0, 4 * HOUR)),
        0.0,
    )
    rows = np.concatenate([np.full(s.size, i) for i, s in enumerate(streams)])
    ts = np.concatenate(streams)
    delivered = ts + rng.uniform(0, 180, ts.size)  # delivery delay reorders records
    order = np.argsort(delivered)
    rows, ts, delivered = rows[order], ts[order], delivered[order]
    n = len(streams)
    m = RhythmModel(n)
    silent = dict.fromkeys(set(kinds), 0)
    late = dict.fromkeys(set(kinds), 0)
    kinds_arr = np.array(kinds)
    checks = 0
    pos = 0
    for hour in range(1, 7 * 24 + 1):
        now = T0 + hour * HOUR
        end = int(np.searchsorted(delivered, now))
        for r, t in zip(rows[pos:end].tolist(), ts[pos:end].tolist(), strict=True):
            m.observe(r, t)
        pos = end
        if now < T0 + 2 * DAY:
            continue
        states = m.classify(now, n)
        checks += n
        for kind in silent:
            sel = kinds_arr == kind
            silent[kind] += int(np.count_nonzero(states[sel] == SILENT))
            late[kind] += int(np.count_nonzero(states[sel] == LATE))
    assert checks == n * (5 * 24 + 1)
    assert silent == dict.fromkeys(silent, 0), (silent, late)
    # Sanity: every SIM got learned, and late stays rare for these healthy devices (daily
    # devices are unlearned until their third gap, so the 2 h default late applies to them).
    assert all(m.describe(r, T0)["learned"] for r in range(n))
    assert sum(v for k, v in late.items() if k != "daily") < 0.001 * checks, late


def test_describe_one_row_agrees_with_the_vectorized_thresholds() -> None:
    """describe's scalar thresholds (the per-SIM API's fast path) equal _evaluate's."""
    rng = np.random.default_rng(11)
    n = 20_000
    m = RhythmModel(n)
    cols = m.export(n)
    cols["last"][:] = 1.7e9 + rng.random(n) * 1e5
    cols["mu"][:] = (rng.random(n) * 12).astype(np.float32)  # gaps of 1 s .. 2 days
    cols["var"][:] = (rng.random(n) * 0.5).astype(np.float32)
    cols["gmax"][:] = (rng.random(n) * 2e5).astype(np.float32)
    cols["n"][:] = rng.integers(0, 8, n)  # unlearned, early rule and learned rows
    cols["mask_prev"][:] = 0  # not diurnal: diurnal rows take the vectorized path anyway
    m.restore(cols)
    now = 1.7e9 + 2e5
    elapsed, late, silent, _ = m._evaluate(now, 0, n)
    states = m.classify(now, n)
    for row in range(n):
        d = m.describe(row, now)
        assert d["late_after_s"] == pytest.approx(float(late[row]), rel=1e-5), row
        assert d["silent_after_s"] == pytest.approx(float(silent[row]), rel=1e-5), row
        assert d["elapsed_s"] == pytest.approx(float(elapsed[row]), rel=1e-5), row
        near = min(abs(elapsed[row] - late[row]), abs(elapsed[row] - silent[row]))
        if near > 1e-4 * elapsed[row]:  # off the thresholds: the same state
            assert d["state"] == SimState(int(states[row])).name.lower(), row


# ---- weekdays apart from weekends (issue 13) ----------------------------------------------

_MONDAY = 1_794_787_200.0  # 2026-11-16T00:00:00Z, a Monday


def _reports(model: RhythmModel, row: int, start: float, end: float, weekends: bool) -> float:
    """Every 15 minutes from ``start`` to ``end`` (skipping Saturday and Sunday UTC unless
    ``weekends``); returns the last report time."""
    t, last = start, start
    while t < end:
        day = int(((t - _MONDAY) % (7 * 86400)) // 86400)
        if weekends or day < 5:
            model.observe(row, t)
            last = t
        t += 900.0
    return last


def test_a_weekday_only_device_is_not_silent_over_the_weekend() -> None:
    model = RhythmModel(2)
    three_weeks = _MONDAY + 19 * 86400  # to Saturday of the third week
    _reports(model, 0, _MONDAY, three_weeks, weekends=False)
    _reports(model, 1, _MONDAY, three_weeks, weekends=True)
    sunday_noon = _MONDAY + 20 * 86400 + 12 * 3600
    weekday, every_day = model.describe(0, sunday_noon), model.describe(1, sunday_noon)
    assert weekday["weekdays_only"] is True
    assert every_day["weekdays_only"] is False
    assert weekday["state"] == "ok"  # silent since Friday night, but that is its weekend
    assert list(model.classify(sunday_noon, 2)) == [SimState.OK, SimState.SILENT]
    # on a weekday it is judged by its 15-min rhythm: an hour without data is late
    monday = _MONDAY + 21 * 86400
    last = _reports(model, 0, monday, monday + 10 * 3600, weekends=False)
    assert model.describe(0, last + 3600)["state"] in ("late", "silent")


def test_one_quiet_weekend_is_not_a_weekday_rhythm() -> None:
    model = RhythmModel(1)
    first_saturday = _MONDAY + 5 * 86400
    _reports(model, 0, _MONDAY, first_saturday, weekends=True)
    second_monday = _MONDAY + 7 * 86400  # a weekend without data (an outage), then on
    _reports(model, 0, second_monday, second_monday + 12 * 86400, weekends=True)
    assert model.describe(0, second_monday + 12 * 86400)["weekdays_only"] is False
