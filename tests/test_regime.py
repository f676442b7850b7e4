"""Data regimes: what a SIM's usage records are, learned per SIM, and how it is judged.

The shapes come from the platforms' documentation (../shared/cmp/PLATFORMS.md):
KORE's UsageRecords and Soracom's air stats sum usage over clock windows (an hour, about
5 minutes); emnify's and 1NCE's Data Streamers send a usage record when a PDP context
closes, and while it is open only above 100 kB ("aggregated since PDP start or the last
record"), so a small device sends one record per session, often one a day (the daily
reset). Such a SIM must not look silent all day, and must not be "never late" either:
it is judged by its sessions.
"""

from __future__ import annotations

import numpy as np
import pytest
from fleet import DAY, T0, Feed, iccid, new_engine

from simwatch.core import regime
from simwatch.core.evaluate import STATE_NAMES
from simwatch.core.timeutil import format_rfc3339
from simwatch.http.views import sim_view

HOUR = 3600

NO_STARTS = np.array([], dtype=np.int32)


@pytest.mark.parametrize(
    ("start", "end", "starts", "expected"),
    [
        # KORE UsageRecords, hourly granularity: one clock hour
        (10 * HOUR, 11 * HOUR, NO_STARTS, regime.WINDOWED),
        # a 15-minute mediation window
        (10 * HOUR + 900, 10 * HOUR + 1800, NO_STARTS, regime.WINDOWED),
        # Soracom air stats: about every 5 minutes, on the clock
        (10 * HOUR + 300, 10 * HOUR + 600, NO_STARTS, regime.WINDOWED),
        # a Data Streamer record at PDP context close: from the session's start, a day
        (3 * HOUR + 17, 27 * HOUR + 45, np.array([3 * HOUR + 17]), regime.SESSION),
        # ... whose session start arrived a few seconds off the record's start
        (3 * HOUR + 17, 27 * HOUR + 45, np.array([3 * HOUR + 50]), regime.SESSION),
        # an interim record of an open context (45 s on emnify) from the session start
        (3 * HOUR + 17, 3 * HOUR + 62, np.array([3 * HOUR + 17]), regime.PER_REPORT),
        # a device's own 15-minute report, ending whenever the device sent it
        (10 * HOUR + 433, 10 * HOUR + 1333, NO_STARTS, regime.PER_REPORT),
        # an hourly report that is not from a session start
        (10 * HOUR + 433, 11 * HOUR + 433, np.array([2 * HOUR]), regime.PER_REPORT),
        # an empty or reversed window
        (10 * HOUR, 10 * HOUR, NO_STARTS, regime.PER_REPORT),
    ],
)
def test_one_record_points_to_a_regime(
    start: int, end: int, starts: np.ndarray, expected: int
) -> None:
    assert regime.classify_usage(start, end, starts) == expected


def test_the_regime_changes_only_when_two_records_in_a_row_agree() -> None:
    packed = regime.updated(0, regime.SESSION)  # the first record sets it
    assert regime.regime_of(packed) == regime.SESSION
    packed = regime.updated(packed, regime.PER_REPORT)  # one interim record: no change
    assert regime.regime_of(packed) == regime.SESSION
    packed = regime.updated(packed, regime.SESSION)
    packed = regime.updated(packed, regime.PER_REPORT)
    assert regime.regime_of(packed) == regime.SESSION
    packed = regime.updated(packed, regime.PER_REPORT)  # two in a row: it changed
    assert regime.regime_of(packed) == regime.PER_REPORT
    packed = regime.updated(packed, regime.WINDOWED)
    packed = regime.updated(packed, regime.SESSION)  # two different ones: no change
    assert regime.regime_of(packed) == regime.PER_REPORT


def _daily_session_sim(feed: Feed, sim: str, days: int) -> float:
    """A small device on a Data Streamer: a session a day (reset at 03:00), one usage
    record at each close. Returns the start of the session open at the end."""
    start = T0 + 3 * HOUR
    feed.session(sim, start, "started", apn="meters.acme", mcc="262", mnc="02")
    for _ in range(days):
        end = start + DAY - 5
        feed.send(
            {
                "kind": "usage",
                "iccid": sim,
                "start": format_rfc3339(start),
                "end": format_rfc3339(end),
                "bytes_up": 40_000,
                "bytes_down": 9_000,
                "apn": "meters.acme",
                "mcc": "262",
                "mnc": "02",
            },
            end,
        )
        feed.session(sim, end, "ended", end_cause="scheduled_reset")
        start = end + 5
        feed.session(sim, start, "started", apn="meters.acme", mcc="262", mnc="02")
    return start


def test_a_session_level_sim_is_judged_by_its_sessions() -> None:
    sim = iccid(1)
    engine = new_engine([sim])
    feed = Feed(engine)
    start = _daily_session_sim(feed, sim, days=4)
    shown = sim_view(engine, sim, start + 20 * HOUR)["regime"]
    assert isinstance(shown, dict)
    assert shown["name"] == "session"
    assert "sessions" in shown["judged_by"]

    def state_at(t: float) -> str:
        return STATE_NAMES[int(engine.evaluate(t).evaluation.states[engine.state.row(sim)])]

    # 20 hours into its session, no usage record since its last close: nothing is wrong
    assert state_at(start + 20 * HOUR) == "ok"
    # the session ends and no new one opens: late after 30 minutes, silent after 2 hours
    end = start + 21 * HOUR
    feed.session(sim, end, "ended", end_cause="normal")
    assert state_at(end + 20 * 60) == "ok"
    assert state_at(end + 40 * 60) == "late"
    assert state_at(end + 3 * HOUR) == "silent"
    # a new session: fine again
    feed.session(sim, end + 3 * HOUR + 60, "started", apn="meters.acme", mcc="262", mnc="02")
    assert state_at(end + 3 * HOUR + 120) == "ok"


def test_a_detach_closes_the_session_too() -> None:
    sim = iccid(2)
    engine = new_engine([sim])
    feed = Feed(engine)
    start = _daily_session_sim(feed, sim, days=3)
    feed.event(sim, start + 2 * HOUR, "detach")
    states = engine.evaluate(start + 3 * HOUR).evaluation.states
    assert STATE_NAMES[int(states[engine.state.row(sim)])] == "late"


def test_per_report_sims_keep_their_rhythm() -> None:
    """The same daily records without a session start at their start are a once-a-day
    report, judged by the learned rhythm (late hours after the usual time)."""
    sim = iccid(3)
    engine = new_engine([sim])
    feed = Feed(engine)
    t = T0 + 3 * HOUR + 437  # reported when the device sent it, not on the clock's grid
    for _ in range(5):
        feed.usage(sim, t, start=format_rfc3339(t - 600))
        t += DAY
    shown = sim_view(engine, sim, t - DAY + 20 * HOUR)["regime"]
    assert isinstance(shown, dict)
    assert shown["name"] == "per_report"
    row = engine.state.row(sim)
    assert STATE_NAMES[int(engine.evaluate(t - DAY + 20 * HOUR).evaluation.states[row])] == "ok"
    assert STATE_NAMES[int(engine.evaluate(t + 6 * HOUR).evaluation.states[row])] != "ok"


def test_a_sim_without_usage_records_has_no_regime_yet() -> None:
    sim = iccid(4)
    engine = new_engine([sim])
    feed = Feed(engine)
    feed.session(sim, T0, "started", apn="meters.acme", mcc="262", mnc="02")
    view = sim_view(engine, sim, T0 + 60)
    assert view["regime"] == {"name": None, "judged_by": None}


def _windowed_sim(feed: Feed, sim: str, until: float) -> None:
    """Usage in 15-minute clock windows (a mediation feed) from a session opened at T0."""
    feed.session(sim, T0 + 7, "started", apn="meters.acme", mcc="262", mnc="02")
    end = T0 + 900
    while end <= until:
        feed.usage(sim, end, start=format_rfc3339(end - 900))
        end += 900


@pytest.mark.parametrize(
    ("old_session_end", "counts_as_failing"),
    [
        # the network it was on went away: the old session has no end record
        (None, False),
        # its firmware tore the session down and re-opened it (what a black hole causes)
        ("normal", True),
        # the network ended it with a failure cause, then accepted a new one
        ("network_failure", False),
    ],
)
def test_a_windowed_sim_back_on_the_network_waits_for_its_window(
    old_session_end: str | None, counts_as_failing: bool
) -> None:
    sim = iccid(5)
    engine = new_engine([sim])
    feed = Feed(engine)
    last = T0 + 2 * DAY
    _windowed_sim(feed, sim, last)
    row = engine.state.row(sim)
    shown = sim_view(engine, sim, last)["regime"]
    assert isinstance(shown, dict)
    assert shown["name"] == "windowed"
    overdue_at = last + 2 * HOUR
    assert bool(engine.evaluate(overdue_at).evaluation.overdue[row])
    back = overdue_at + 600
    if old_session_end is not None:
        feed.session(sim, back - 30, "ended", end_cause=old_session_end)
    feed.session(sim, back, "started", apn="meters.acme", mcc="262", mnc="02")
    evaluation = engine.evaluate(back + 300).evaluation
    assert bool(evaluation.overdue[row]) == counts_as_failing
    assert STATE_NAMES[int(evaluation.states[row])] != "ok"  # the SIM itself is still late
    # no data by the time its window had to show: failing again
    assert bool(engine.evaluate(back + 2 * HOUR).evaluation.overdue[row])


def test_the_batch_forms_agree_with_one_record_at_a_time() -> None:
    rng = np.random.default_rng(3)
    n = 4000
    start = rng.choice([0, 300, 17, 3 * HOUR + 17, 10 * HOUR + 433], n).astype(np.int64)
    start += rng.choice([0, 600, 900], n)
    end = start + rng.choice([0, 45, 300, 900, 1800, 3600, DAY, -60], n).astype(np.int64)
    rings = start[:, None] + rng.choice([-4000, -61, -60, 0, 59, 7200], (n, 6))
    packed = rng.integers(0, 32, n).astype(np.uint8)
    seen = regime.classify_usage_many(start, end, rings)
    for i in range(n):
        assert seen[i] == regime.classify_usage(int(start[i]), int(end[i]), rings[i])
    after = regime.updated_many(packed, seen)
    for i in range(n):
        assert after[i] == regime.updated(int(packed[i]), int(seen[i]))
