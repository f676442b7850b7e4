"""Maintenance windows (simwatch.core.maintenance): occurrences on the local wall clock
across clock changes, one-off and recurring windows, validation naming the field, scope."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest

from simwatch.core.maintenance import (
    MaintenanceError,
    Window,
    active_windows,
    in_scope,
    window_from_json,
)

if TYPE_CHECKING:
    from collections.abc import Callable


def ts(text: str) -> float:
    return datetime.fromisoformat(text).astimezone(UTC).timestamp()


def utc(value: float) -> str:
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


PARIS_SUNDAYS = {
    "name": "20801 Sunday works",
    "start": "2026-01-04T02:00",  # a Sunday
    "timezone": "Europe/Paris",
    "duration_s": 7200,
    "rrule": "FREQ=WEEKLY;BYDAY=SU",
    "scope": {"partner": ["20801"]},
}


def sundays() -> Window:
    return window_from_json(PARIS_SUNDAYS, window_id="mw-0001")


def cron_sundays() -> Window:
    """The same window as a cron schedule: 02:00 local every Sunday."""
    data = {k: v for k, v in PARIS_SUNDAYS.items() if k != "rrule"}
    return window_from_json({**data, "cron": "0 2 * * SUN"}, window_id="mw-0002")


KINDS = pytest.mark.parametrize("make", [sundays, cron_sundays], ids=["rrule", "cron"])


# Sunday 02:00-04:00 Paris time, in UTC, around both 2026 clock changes (29 March: 02:00
# CET -> 03:00 CEST; 25 October: 03:00 CEST -> 02:00 CET).
PARIS_OCCURRENCES = [
    ("winter Sunday before the change", "2026-03-22T01:30:00Z", ("01:00", "03:00")),
    ("spring change: 02:00 does not exist, 03:00-04:00 CEST", "2026-03-29T01:30:00Z",
     ("01:00", "02:00")),
    ("summer Sunday", "2026-04-05T01:00:00Z", ("00:00", "02:00")),
    ("autumn change: from the first 02:00 CEST to 04:00 CET", "2026-10-25T02:30:00Z",
     ("00:00", "03:00")),
    ("winter Sunday after the change", "2026-11-01T02:59:59Z", ("01:00", "03:00")),
]  # fmt: skip


@KINDS
@pytest.mark.parametrize(
    ("at", "span"), [c[1:] for c in PARIS_OCCURRENCES], ids=[c[0] for c in PARIS_OCCURRENCES]
)
def test_recurring_window_follows_the_local_clock_across_changes(
    make: Callable[[], Window], at: str, span: tuple[str, str]
) -> None:
    found = make().occurrence_at(ts(at))
    assert found is not None
    day = at[:10]
    assert (utc(found[0]), utc(found[1])) == (f"{day}T{span[0]}:00Z", f"{day}T{span[1]}:00Z")


OUTSIDE = [
    ("just before, winter", "2026-03-22T00:59:59Z"),
    ("the end is excluded", "2026-03-22T03:00:00Z"),
    ("spring change: 01:30 CET is before the window", "2026-03-29T00:30:00Z"),
    ("spring change: 04:00 CEST is after it", "2026-03-29T02:00:00Z"),
    ("autumn change: 04:00 CET is after it", "2026-10-25T03:00:00Z"),
    ("a Saturday", "2026-10-24T01:00:00Z"),
    ("before the first occurrence", "2025-12-28T01:30:00Z"),
]


@KINDS
@pytest.mark.parametrize("at", [c[1] for c in OUTSIDE], ids=[c[0] for c in OUTSIDE])
def test_recurring_window_is_not_active_outside_its_occurrences(
    make: Callable[[], Window], at: str
) -> None:
    assert make().occurrence_at(ts(at)) is None


def test_one_off_window_with_an_offset_start() -> None:
    window = window_from_json(
        {"name": "core upgrade", "start": "2026-12-06T23:30:00+00:00", "duration_s": 5400,
         "timezone": "Asia/Tokyo"},
        window_id="mw-0002",
    )  # fmt: skip
    assert window.start.isoformat() == "2026-12-07T08:30:00"  # Tokyo wall time
    assert window.occurrence_at(ts("2026-12-06T23:29:59Z")) is None
    assert window.occurrence_at(ts("2026-12-07T00:59:59Z")) == (
        ts("2026-12-06T23:30:00Z"),
        ts("2026-12-07T01:00:00Z"),
    )
    assert window.occurrence_at(ts("2026-12-07T01:00:00Z")) is None
    assert window.next_occurrence(ts("2026-12-01T00:00:00Z")) == (
        ts("2026-12-06T23:30:00Z"),
        ts("2026-12-07T01:00:00Z"),
    )
    assert window.next_occurrence(ts("2026-12-08T00:00:00Z")) is None


def test_rrule_count_ends_the_series() -> None:
    window = window_from_json(
        {"name": "x", "start": "2026-12-01T10:00", "duration_s": 600,
         "rrule": "FREQ=DAILY;COUNT=2"},
        window_id="w",
    )  # fmt: skip
    assert window.occurrence_at(ts("2026-12-02T10:05:00Z")) is not None
    assert window.occurrence_at(ts("2026-12-03T10:05:00Z")) is None
    assert window.next_occurrence(ts("2026-12-02T11:00:00Z")) is None


@KINDS
def test_json_shows_the_current_and_next_occurrence(make: Callable[[], Window]) -> None:
    window = make()
    during = window.to_json(ts("2026-03-29T01:30:00Z"))
    assert during["active"] is True
    assert during["current"] == {"start": "2026-03-29T01:00:00Z", "end": "2026-03-29T02:00:00Z"}
    assert during["next"] == {"start": "2026-04-05T00:00:00Z", "end": "2026-04-05T02:00:00Z"}
    before = window.to_json(ts("2026-03-28T12:00:00Z"))
    assert before["active"] is False
    assert before["current"] is None
    assert before["next"] == {"start": "2026-03-29T01:00:00Z", "end": "2026-03-29T02:00:00Z"}
    assert before["scope"] == {"partner": ["20801"]}
    assert before["start"] == "2026-01-04T02:00:00"
    assert before["timezone"] == "Europe/Paris"
    assert window_from_json(window.spec()) == window  # the persisted form reads back


def test_active_windows_gives_each_current_end() -> None:
    one_off = window_from_json(
        {"name": "y", "start": "2026-03-29T00:00:00Z", "duration_s": 86400}, window_id="w2"
    )
    found = active_windows([sundays(), one_off], ts("2026-03-29T01:30:00Z"))
    assert [(w.id, utc(end)) for w, end in found] == [
        ("mw-0001", "2026-03-29T02:00:00Z"),
        ("w2", "2026-03-30T00:00:00Z"),
    ]


BAD = [
    ({"start": "2026-01-01T00:00", "duration_s": 60}, "name: expected a non-empty text"),
    ({"name": "x", "duration_s": 60}, "start: required"),
    ({"name": "x", "start": "tomorrow", "duration_s": 60}, "start: expected a local time"),
    ({"name": "x", "start": "2026-02-30T00:00", "duration_s": 60}, "start: not a valid date"),
    ({"name": "x", "start": "2026-01-01T00:00"}, "duration_s: required"),
    ({"name": "x", "start": "2026-01-01T00:00", "duration_s": 0}, "duration_s: must be > 0"),
    ({"name": "x", "start": "2026-01-01T00:00", "duration_s": True}, "duration_s: required"),
    ({"name": "x", "start": "2026-01-01T00:00", "duration_s": 60, "timezone": "Mars/Base"},
     "timezone: unknown time zone 'Mars/Base'"),
    ({"name": "x", "start": "2026-01-01T00:00", "duration_s": 60, "rrule": "FREQ=MINUTELY"},
     "rrule: FREQ must be one of HOURLY, DAILY, WEEKLY, MONTHLY, YEARLY"),
    ({"name": "x", "start": "2026-01-01T00:00", "duration_s": 60, "rrule": "BYDAY=SU"},
     "rrule: FREQ is missing"),
    ({"name": "x", "start": "2026-01-01T00:00", "duration_s": 60,
      "rrule": "FREQ=WEEKLY;BYDAY=XX"}, "rrule: invalid 'BYDAY': XX"),
    ({"name": "x", "start": "2026-01-01T00:00", "duration_s": 60,
      "rrule": "FREQ=DAILY\nDTSTART:20200101T000000"}, "rrule: cannot read"),
    ({"name": "x", "start": "2026-01-01T00:00", "duration_s": 60, "scope": ["20801"]},
     "scope: expected an object"),
    ({"name": "x", "start": "2026-01-01T00:00", "duration_s": 60, "scope": {"partner": []}},
     "scope.partner: expected a value or a non-empty list"),
    ({"name": "x", "start": "2026-01-01T00:00", "duration_s": 60, "color": "red"},
     "color: unknown field"),
]  # fmt: skip


@pytest.mark.parametrize(("data", "message"), BAD, ids=[m.split(":")[0] for _, m in BAD])
def test_bad_window_names_the_field(data: dict[str, object], message: str) -> None:
    with pytest.raises(MaintenanceError) as info:
        window_from_json(data, window_id="w")
    assert str(info.value).startswith(message)
    assert info.value.field == message.split(":", maxsplit=1)[0]


def test_cron_day_of_month_or_day_of_week_as_cron_does() -> None:
    window = window_from_json(
        {"name": "x", "start": "2026-11-01T00:00", "duration_s": 600, "cron": "0 3 1 * MON"},
        window_id="w",
    )
    assert window.occurrence_at(ts("2026-12-01T03:05:00Z")) is not None  # the 1st, a Tuesday
    assert window.occurrence_at(ts("2026-12-07T03:05:00Z")) is not None  # a Monday
    assert window.occurrence_at(ts("2026-12-08T03:05:00Z")) is None
    assert window.next_occurrence(ts("2026-12-01T04:00:00Z")) == (
        ts("2026-12-07T03:00:00Z"),
        ts("2026-12-07T03:10:00Z"),
    )
    steps = window_from_json(
        {"name": "x", "start": "2026-11-01T00:00", "duration_s": 60, "cron": "*/15 8-9 * * *"},
        window_id="w",
    )
    assert steps.occurrence_at(ts("2026-11-02T09:45:30Z")) is not None
    assert steps.occurrence_at(ts("2026-11-02T09:50:30Z")) is None
    assert steps.occurrence_at(ts("2026-10-31T09:45:30Z")) is None  # before its start


BAD_CRON = [
    ("0 2 * *", "cron: expected 5 fields"),
    ("61 2 * * *", "cron: '61' is outside 0-59 (minute)"),
    ("0 2 * * XYZ", "cron: cannot read 'XYZ' in the day of week"),
    ("0 2 30-1 * *", "cron: '30-1' is outside 1-31 (day of month)"),
]


@pytest.mark.parametrize(("cron", "message"), BAD_CRON, ids=[c for c, _ in BAD_CRON])
def test_bad_cron_names_the_field(cron: str, message: str) -> None:
    with pytest.raises(MaintenanceError) as info:
        window_from_json(
            {"name": "x", "start": "2026-01-01T00:00", "duration_s": 60, "cron": cron},
            window_id="w",
        )
    assert str(info.value).startswith(message)


def test_rrule_and_cron_together_are_refused() -> None:
    with pytest.raises(MaintenanceError, match="cron: give rrule or cron, not both"):
        window_from_json({**PARIS_SUNDAYS, "cron": "0 2 * * SUN"}, window_id="w")


SCOPES = [
    ("the group itself", {"partner": ("20801",)}, {"partner": "20801"}, {}, True),
    ("a part of it", {"partner": ("20801",)}, {"partner": "20801", "apn": "m2m"}, {}, True),
    ("another partner", {"partner": ("20801",)}, {"partner": "20810"}, {}, False),
    ("a wider group whose failing SIMs are all inside", {"partner": ("20801",)},
     {"country": "FR"}, {"partner": frozenset({"20801"})}, True),
    ("a wider group failing elsewhere too", {"partner": ("20801",)}, {"country": "FR"},
     {"partner": frozenset({"20801", "20810"})}, False),
    ("nothing known of the failing SIMs: page", {"customer": ("acme",)}, {"partner": "20801"},
     {}, False),
    ("a customer's SIMs only", {"customer": ("acme", "beta")}, {"partner": "20801"},
     {"customer": frozenset({"acme"})}, True),
    ("every dimension must hold", {"partner": ("20801",), "apn": ("m2m",)},
     {"partner": "20801", "apn": "web"}, {}, False),
    ("the whole fleet", {}, {"country": "DE"}, {}, True),
]  # fmt: skip


@pytest.mark.parametrize(
    ("scope", "dims", "members", "inside"), [c[1:] for c in SCOPES], ids=[c[0] for c in SCOPES]
)
def test_scope(
    scope: dict[str, tuple[str, ...]],
    dims: dict[str, str],
    members: dict[str, frozenset[str]],
    inside: bool,
) -> None:
    assert in_scope(scope, dims, members) is inside
