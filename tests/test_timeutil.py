from __future__ import annotations

import pytest

from simwatch.timeutil import CachedTimeParser, TimeParseError, format_rfc3339, parse_rfc3339


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
        text = f"2026-11-20T10:{minute:02d}:00Z"
        assert parse(text) == parse_rfc3339(text)
        assert len(parse._cache) <= 4


def test_format_round_trips() -> None:
    assert format_rfc3339(1795169700.0) == "2026-11-20T10:15:00Z"
    assert parse_rfc3339(format_rfc3339(1795169700.4)) == 1795169700.0
