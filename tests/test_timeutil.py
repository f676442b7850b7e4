from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from simwatch.core.timeutil import (
    CachedTimeParser,
    TimeParseError,
    format_rfc3339,
    format_rfc3339_many,
    parse_rfc3339,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-20T10:15:00Z", 1795169700.0),
        ("2026-11-20T11:15:00+01:00", 1795169700.0),
        ("2026-11-20t10:15:00z", 1795169700.0),
        ("2026-11-20T10:15:00.250Z", 1795169700.25),
    ],
)
def test_parse_accepts_rfc3339(text: str, expected: float) -> None:
    assert parse_rfc3339(text) == expected


@pytest.mark.parametrize(
    "text", ["2026-11-20T10:15:00", "2026-11-20", "yesterday", "2026-13-40T10:15:00Z", ""]
)
def test_parse_rejects_non_rfc3339(text: str) -> None:
    with pytest.raises(TimeParseError):
        parse_rfc3339(text)


def test_cached_parser_is_bounded_and_correct() -> None:
    parse = CachedTimeParser(limit=4)
    for minute in range(10):
        for second in (0, 7, 59):
            text = f"2026-11-20T10:{minute:02d}:{second:02d}Z"
            assert parse(text) == parse_rfc3339(text)
            offset = f"2026-11-20T11:{minute:02d}:{second:02d}+01:00"
            assert parse(offset) == parse_rfc3339(offset)
        assert len(parse._cache) <= 4
        assert len(parse._minutes) <= 4


@pytest.mark.parametrize(
    "text", ["2026-11-20T10:15:60Z", "2026-11-20T10:15:6aZ", "2026-13-20T10:15:00Z"]
)
def test_cached_parser_rejects_what_the_strict_parser_rejects(text: str) -> None:
    with pytest.raises(TimeParseError):
        CachedTimeParser()(text)


def test_format_round_trips() -> None:
    assert format_rfc3339(1795169700.0) == "2026-11-20T10:15:00Z"
    assert parse_rfc3339(format_rfc3339(1795169700.4)) == 1795169700.0


def test_fast_path_agrees_with_datetime_over_many_dates() -> None:
    t = datetime(1999, 12, 25, 23, 59, 59, tzinfo=UTC)
    for _ in range(2000):
        t += timedelta(days=13, seconds=3607)
        text = t.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert parse_rfc3339(text) == t.timestamp(), text


@pytest.mark.parametrize(
    "text", ["2026-02-29T00:00:00Z", "2026-04-31T00:00:00Z", "2026-11-20T24:00:00Z"]
)
def test_fast_path_leaves_invalid_dates_to_the_strict_parser(text: str) -> None:
    with pytest.raises(TimeParseError):
        parse_rfc3339(text)


def test_leap_day_is_accepted() -> None:
    assert format_rfc3339(parse_rfc3339("2028-02-29T12:00:00Z")) == "2028-02-29T12:00:00Z"


def test_format_many_equals_format_one_by_one() -> None:
    rng = np.random.default_rng(5)
    values = np.concatenate([
        1.58e9 + rng.random(2000) * 4e8,  # 2020 .. 2032
        np.floor(1.7e9 + rng.random(200) * 1e8) + 0.5,  # halves: rounded to even, as round()
        [np.nan, 1577836800.0, 4102444799.4],
    ])  # fmt: skip
    rng.shuffle(values)
    expected = [None if np.isnan(v) else format_rfc3339(float(v)) for v in values]
    assert format_rfc3339_many(values) == expected
    assert format_rfc3339_many(np.zeros(0)) == []


def test_format_is_strftime_of_the_rounded_second() -> None:
    """The per-minute cache of ``format_rfc3339`` gives strftime's text, half-seconds
    rounded to even as ``round`` does, before 1970 too."""
    rng = np.random.default_rng(7)
    values = [*rng.uniform(-2e9, 4e9, 2000).tolist(), 59.5, 60.5, -0.5, 1795169759.5]
    for ts in values:
        expected = datetime.fromtimestamp(round(ts), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert format_rfc3339(ts) == expected
