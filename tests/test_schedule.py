"""Active hours (simwatch.core.schedule): the opening_hours subset, and active time
counted on the local clock, continuous across clock changes."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from simwatch.core.schedule import Schedule, ScheduleError, parse_active_hours


def ts(text: str) -> float:
    return datetime.fromisoformat(text).astimezone(UTC).timestamp()


def active_between(schedule: Schedule, start: str, end: str) -> float:
    t = np.array([ts(start), ts(end)])
    clock = schedule.active_clock(t, ts(end))
    return float(clock[1] - clock[0])


SPANS = [
    ("weekend skipped", "Mo-Fr 07:00-19:00", "Europe/Paris",
     "2026-11-20T18:00+01:00", "2026-11-23T08:00+01:00", 2 * 3600),
    ("weekend over the spring change", "Mo-Fr 07:00-19:00", "Europe/Paris",
     "2026-03-27T18:00+01:00", "2026-03-30T08:00+02:00", 2 * 3600),
    ("a night does not count", "Mo-Fr 07:00-19:00", "Europe/Paris",
     "2026-11-18T19:00+01:00", "2026-11-19T07:00+01:00", 0),
    ("24/7 over the autumn change counts the repeated hour", "24/7", "Europe/Paris",
     "2026-10-24T12:00Z", "2026-10-25T12:00Z", 86400),
    ("24/7 over the spring change skips nothing real", "24/7", "Europe/Paris",
     "2026-03-28T12:00Z", "2026-03-29T12:00Z", 86400),
    ("two spans and a Saturday", "Mo-Fr 08:00-12:00,13:00-18:00; Sa 09:00-12:00", "UTC",
     "2026-11-20T11:00Z", "2026-11-21T23:00Z", 3600 + 5 * 3600 + 3 * 3600),
    ("past midnight", "22:00-06:00", "Asia/Tokyo",
     "2026-11-20T21:00+09:00", "2026-11-21T07:00+09:00", 8 * 3600),
    ("a 02:00-03:00 night hour on the autumn change counts twice", "Su 02:00-03:00",
     "Europe/Paris", "2026-10-25T00:00+02:00", "2026-10-25T12:00+01:00", 2 * 3600),
]  # fmt: skip


@pytest.mark.parametrize(
    ("hours", "zone", "start", "end", "seconds"), [c[1:] for c in SPANS], ids=[c[0] for c in SPANS]
)
def test_active_time_between(hours: str, zone: str, start: str, end: str, seconds: float) -> None:
    assert active_between(Schedule(hours, zone), start, end) == pytest.approx(seconds)


def test_active_clock_never_goes_back() -> None:
    schedule = Schedule("Mo-Su 00:00-24:00", "America/New_York")
    t = np.arange(ts("2026-10-31T00:00Z"), ts("2026-11-03T00:00Z"), 600.0)
    assert np.all(np.diff(schedule.active_clock(t, float(t[-1]))) > 0)


def test_is_active() -> None:
    schedule = Schedule("Mo-Fr 07:00-19:00", "Europe/Paris")
    assert schedule.is_active(ts("2026-11-23T07:30+01:00"))  # Monday morning
    assert not schedule.is_active(ts("2026-11-23T06:30+01:00"))
    assert not schedule.is_active(ts("2026-11-22T12:00+01:00"))  # Sunday
    assert schedule.is_active(ts("2026-06-01T18:59+02:00"))  # summer time


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty active hours"),
        ("Mo-Fx 07:00-19:00", "cannot read the days 'Mo-Fx'"),
        ("Mo-Fr 7-19", "cannot read the times '7-19'"),
        ("Mo-Fr 07:00-25:00", "not a time of day"),
        ("Mo 07:00-07:00", "an empty span"),
    ],
)
def test_bad_active_hours(text: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        parse_active_hours(text)


def test_unknown_zone() -> None:
    with pytest.raises(ScheduleError, match="unknown time zone 'Mars/Base'"):
        Schedule("24/7", "Mars/Base")
