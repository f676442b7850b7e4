"""Time helpers shared by the core: RFC 3339 parsing and formatting on float epoch seconds.

All of simwatch's core works on float seconds since the Unix epoch (UTC). The clock is
always passed in; nothing here reads the wall clock.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime

import numpy as np

_UTC = UTC


class TimeParseError(ValueError):
    """A timestamp that is not RFC 3339."""


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _fast_utc(text: str) -> float | None:
    """The common ``YYYY-MM-DDTHH:MM:SSZ`` form by arithmetic; None for anything else."""
    if (
        len(text) != 20
        or text[19] != "Z"
        or text[4] != "-"
        or text[7] != "-"
        or text[10] != "T"
        or text[13] != ":"
        or text[16] != ":"
    ):
        return None
    digits = text[0:4] + text[5:7] + text[8:10] + text[11:13] + text[14:16] + text[17:19]
    if not (digits.isascii() and digits.isdigit()):
        return None
    y, mo, d = int(text[0:4]), int(text[5:7]), int(text[8:10])
    h, mi, s = int(text[11:13]), int(text[14:16]), int(text[17:19])
    if not (1 <= mo <= 12 and 1 <= d <= _DAYS_IN_MONTH[mo - 1] and h < 24 and mi < 60 and s < 60):
        return None  # the slow path gives the precise error (or accepts Feb 29 properly)
    if mo == 2 and d == 29 and not (y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)):
        return None
    return float(_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s)


def parse_rfc3339(text: str) -> float:
    """Parse an RFC 3339 timestamp (``Z`` or an offset) into epoch seconds.

    A timestamp without an offset is rejected: RFC 3339 requires one, and guessing a
    zone would silently shift a SIM's history by hours.
    """
    if isinstance(text, str):
        fast = _fast_utc(text)
        if fast is not None:
            return fast
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
    """``parse_rfc3339`` with bounded memos: record streams repeat timestamps a lot.

    The common ``YYYY-MM-DDTHH:MM:SSZ`` form is memoized per minute (the epoch of
    ``YYYY-MM-DDTHH:MM:00Z``) and the seconds added, so nearly every call is one dict
    lookup; other forms are memoized whole.
    """

    __slots__ = ("_cache", "_limit", "_minutes")

    def __init__(self, limit: int = 65536) -> None:
        self._cache: dict[str, float] = {}
        self._minutes: dict[str, float] = {}
        self._limit = limit

    def __call__(self, text: str) -> float:
        if len(text) == 20 and text[19] == "Z" and text[16] == ":":
            tens, ones = text[17], text[18]
            if "0" <= tens <= "5" and "0" <= ones <= "9":
                minute = text[:17]
                base = self._minutes.get(minute)
                if base is None:
                    base = _fast_utc(minute + "00Z")
                    if base is not None:
                        if len(self._minutes) >= self._limit:
                            self._minutes.clear()
                        self._minutes[minute] = base
                if base is not None:
                    return base + (ord(tens) - 48) * 10 + (ord(ones) - 48)
        value = self._cache.get(text)
        if value is None:
            value = parse_rfc3339(text)
            if len(self._cache) >= self._limit:
                self._cache.clear()
            self._cache[text] = value
        return value


_SECOND_TEXTS = tuple(f"{s:02d}Z" for s in range(60))


@functools.lru_cache(maxsize=4096)
def _minute_text(minute: int) -> str:
    """``2026-11-20T10:15:`` for a minute number (epoch seconds // 60)."""
    return datetime.fromtimestamp(minute * 60, tz=_UTC).strftime("%Y-%m-%dT%H:%M:")


def format_rfc3339(ts: float) -> str:
    """Format epoch seconds as ``2026-11-20T10:15:00Z`` (whole seconds, UTC).

    The text up to the minute is memoized (a SIM view formats several times of the same
    recent minutes: a strftime costs ten times the lookup)."""
    minute, second = divmod(round(ts), 60)
    return _minute_text(minute) + _SECOND_TEXTS[second]


def format_rfc3339_many(ts: np.ndarray) -> list[str | None]:
    """``format_rfc3339`` of many epoch seconds at once (None for NaN): a page of SIMs
    formats its timestamps in one numpy call instead of one ``strftime`` each."""
    values = np.asarray(ts, dtype=np.float64)
    out: list[str | None] = [None] * len(values)
    known = np.flatnonzero(~np.isnan(values))
    seconds = np.round(values[known]).astype("datetime64[s]")  # half to even, as round()
    for i, text in zip(known.tolist(), np.datetime_as_string(seconds).tolist(), strict=True):
        out[i] = text + "Z"
    return out


def month_of(ts: float) -> int:
    """Calendar month number (year*12 + month-1, counted from January 2020) of an epoch time."""
    d = datetime.fromtimestamp(ts, tz=_UTC)
    return (d.year - 2020) * 12 + d.month - 1
