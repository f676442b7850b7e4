"""Time helpers shared by the core: RFC 3339 parsing and formatting on float epoch seconds.

All of simwatch's core works on float seconds since the Unix epoch (UTC). The clock is
always passed in; nothing here reads the wall clock.
"""

from __future__ import annotations

from datetime import UTC, datetime

_UTC = UTC


class TimeParseError(ValueError):
    """A timestamp that is not RFC 3339."""


def parse_rfc3339(text: str) -> float:
    """Parse an RFC 3339 timestamp (``Z`` or an offset) into epoch seconds.

    A timestamp without an offset is rejected: RFC 3339 requires one, and guessing a
    zone would silently shift a SIM's history by hours.
    """
    if not isinstance(text, str) or len(text) < 20 or text[10] not in "Tt ":
        raise TimeParseError(f"not an RFC 3339 timestamp: {text!r}")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        try:  # RFC 3339 allows lower-case "t" and "z"; fromisoformat does not
            parsed = datetime.fromisoformat(text.upper())
        except ValueError as exc:
            raise TimeParseError(f"not an RFC 3339 timestamp: {text!r}") from exc
    if parsed.tzinfo is None:
        raise TimeParseError(f"timestamp has no UTC offset: {text!r}")
    return parsed.timestamp()


class CachedTimeParser:
    """``parse_rfc3339`` with a bounded memo: record streams repeat timestamps a lot."""

    __slots__ = ("_cache", "_limit")

    def __init__(self, limit: int = 65536) -> None:
        self._cache: dict[str, float] = {}
        self._limit = limit

    def __call__(self, text: str) -> float:
        value = self._cache.get(text)
        if value is None:
            value = parse_rfc3339(text)
            if len(self._cache) >= self._limit:
                self._cache.clear()
            self._cache[text] = value
        return value


def format_rfc3339(ts: float) -> str:
    """Format epoch seconds as ``2026-11-20T10:15:00Z`` (whole seconds, UTC)."""
    return datetime.fromtimestamp(round(ts), tz=_UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
