"""Set expectations of a SIM: active hours in a time zone, and the time counted in them.

``parse_active_hours`` reads the simple subset of OpenStreetMap's ``opening_hours``:
rules ``<days> <times>`` separated by ``;``, days as ``Mo``..``Su`` single, in ranges
(``Mo-Fr``, ``Sa-Mo``) or lists (``Mo,We,Fr``), times as ``HH:MM-HH:MM`` (``24:00`` allowed,
an end before the start runs past midnight) separated by ``,``; a rule without days holds
every day; ``24/7`` is always. Examples: ``Mo-Fr 07:00-19:00``,
``Mo-Fr 08:00-12:00,13:00-18:00; Sa 09:00-12:00``, ``22:00-06:00``.

``Schedule.active_clock(t)`` is the number of active seconds up to ``t`` (epoch seconds),
counted on the local wall clock of the time zone and continuous across clock changes
(the hour repeated in autumn counts twice, the hour skipped in spring not at all), so
``active_clock(now) - active_clock(last)`` is the time a SIM was expected to report in.
Pure: numpy over the minutes of a week (10,080), offsets from ``zoneinfo``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "SOURCES",
    "WEEK_MINUTES",
    "Expectation",
    "ExpectationTables",
    "Schedule",
    "ScheduleError",
    "parse_active_hours",
    "parse_zone",
]

WEEK_MINUTES: Final = 7 * 24 * 60
_DAYS: Final = ("Mo", "Tu", "We", "Th", "Fr", "Sa", "Su")
_TIME: Final = re.compile(r"(\d\d):(\d\d)-(\d\d):(\d\d)")
_EPOCH_WEEKDAY: Final = 3  # 1970-01-01 was a Thursday (Monday = 0)
_PROBE_S: Final = 6 * 3600.0  # clock changes are months apart: probe the offset every 6 h
_HORIZON_S: Final = 400 * 86400.0  # active time is counted at most this far back


class ScheduleError(ValueError):
    """Active hours or a time zone that cannot be read; the message says why."""


def parse_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(
            f"unknown time zone {name[:60]!r} (IANA names such as Europe/Paris)"
        ) from None


def _days(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        ends = part.split("-")
        if len(ends) > 2 or any(e not in _DAYS for e in ends):
            raise ScheduleError(f"cannot read the days {text!r} (Mo, Tu, We, Th, Fr, Sa, Su)")
        first = _DAYS.index(ends[0])
        last = _DAYS.index(ends[-1])
        out.extend((first + k) % 7 for k in range((last - first) % 7 + 1))
    return out


def parse_active_hours(text: str) -> npt.NDArray[np.bool_]:
    """The minutes of a week (Monday 00:00 first) ``text`` marks as active."""
    active = np.zeros(WEEK_MINUTES, bool)
    rules = [r.strip() for r in text.strip().split(";") if r.strip()]
    if not rules:
        raise ScheduleError("empty active hours (e.g. Mo-Fr 07:00-19:00)")
    for rule in rules:
        if rule == "24/7":
            active[:] = True
            continue
        days_text, _, times_text = rule.rpartition(" ")
        days = _days(days_text.strip()) if days_text.strip() else list(range(7))
        for span in times_text.split(","):
            match = _TIME.fullmatch(span)
            if match is None:
                raise ScheduleError(f"cannot read the times {span!r} (HH:MM-HH:MM)")
            h1, m1, h2, m2 = (int(g) for g in match.groups())
            if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or (h2 == 24 and m2):
                raise ScheduleError(f"not a time of day in {span!r}")
            start, end = h1 * 60 + m1, h2 * 60 + m2
            if end == start:
                raise ScheduleError(f"an empty span {span!r}")
            length = end - start if end > start else end - start + 24 * 60
            for day in days:
                first = day * 24 * 60 + start
                idx = (np.arange(first, first + length)) % WEEK_MINUTES
                active[idx] = True
    return active


class Schedule:
    """Active hours in a time zone; ``active_clock`` (see the module docstring)."""

    __slots__ = (
        "_active",
        "_cum",
        "_per_week",
        "_span",
        "_transitions",
        "text",
        "timezone",
        "tz",
    )

    def __init__(self, text: str, timezone: str = "UTC") -> None:
        self.text = text
        self.timezone = timezone
        self.tz = parse_zone(timezone)
        self._active = parse_active_hours(text)
        # active seconds before minute m: whole numbers up to 604,800, exact in float32
        # (a table of ~50 kB per distinct active hours and zone)
        minute_s = self._active.astype(np.float32) * np.float32(60.0)
        self._cum = np.concatenate((np.zeros(1, np.float32), np.cumsum(minute_s, dtype=np.float32)))
        self._per_week = float(self._cum[-1])
        self._span = (0.0, -1.0)
        # instants of clock changes, the offset in force from each, and the active
        # seconds the change adds to the local-time count (continuity)
        self._transitions = (np.zeros(0), np.zeros(0), np.zeros(0))

    def _offset(self, t: float) -> float:
        delta = datetime.fromtimestamp(t, self.tz).utcoffset()
        return 0.0 if delta is None else delta.total_seconds()

    def _local_count(self, local: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Active seconds up to local wall time ``local`` (seconds since 1970-01-01 local)."""
        minutes = np.floor(local * (1.0 / 60.0))
        index = minutes.astype(np.int64)
        index += _EPOCH_WEEKDAY * 1440
        week = index // WEEK_MINUTES
        index -= week * WEEK_MINUTES
        inside = local - minutes * 60.0
        inside *= self._active[index]
        out: npt.NDArray[np.float64] = week.astype(np.float64)
        out *= self._per_week
        out += self._cum[index]
        out += inside
        return out

    def _ensure(self, lo: float, hi: float) -> None:
        """Find the clock changes in ``[lo, hi]`` (cached; extended when asked more)."""
        if self._span[0] <= lo and hi <= self._span[1]:
            return
        lo = min(lo, self._span[0]) if self._span[1] >= self._span[0] else lo
        hi = max(hi, self._span[1])
        lo -= _PROBE_S
        at, offsets = [lo], [self._offset(lo)]
        t = lo
        while t < hi:
            nxt = min(t + _PROBE_S, hi + _PROBE_S)
            off = self._offset(nxt)
            if off != offsets[-1]:
                a, b = t, nxt  # the change lies in (a, b]: bisect to the second
                while b - a > 1.0:
                    mid = (a + b) / 2.0
                    if self._offset(mid) == offsets[-1]:
                        a = mid
                    else:
                        b = mid
                at.append(float(np.ceil(b)))
                offsets.append(off)
            t = nxt
        times = np.array(at)
        offs = np.array(offsets)
        jumps = np.zeros(len(at))
        if len(at) > 1:
            before = self._local_count(times[1:] + offs[:-1])
            after = self._local_count(times[1:] + offs[1:])
            jumps[1:] = np.cumsum(before - after)
        self._transitions = (times, offs, jumps)
        self._span = (lo + _PROBE_S, hi)

    def active_clock(self, t: npt.NDArray[np.float64], now: float) -> npt.NDArray[np.float64]:
        """Active seconds up to each ``t`` (no earlier than ``now`` - 400 days; a SIM
        silent that long is silent whatever its hours)."""
        t = np.maximum(np.asarray(t, dtype=np.float64), now - _HORIZON_S)
        if t.size == 0:
            return t
        self._ensure(float(t.min()), max(float(t.max()), now))
        times, offs, jumps = self._transitions
        if len(times) == 1:  # no clock change in the span (UTC, or between the changes)
            return self._local_count(t + offs[0])
        i = np.searchsorted(times, t, side="right")
        i -= 1
        np.maximum(i, 0, out=i)
        out = self._local_count(t + offs[i])
        out += jumps[i]
        return out

    def is_active(self, t: float) -> bool:
        local = t + self._offset(t)
        minute = int((local // 60.0 + _EPOCH_WEEKDAY * 1440) % WEEK_MINUTES)
        return bool(self._active[minute])


@dataclass(frozen=True, slots=True)
class Expectation:
    """What a user says of a SIM, a plan or a customer (any part may be left out)."""

    expected_interval_s: float | None = None
    active_hours: str | None = None
    timezone: str | None = None


@dataclass(frozen=True, slots=True)
class ExpectationTables:
    """Per-plan and per-customer expectations (``[expectations]`` in the config); a SIM's
    own inventory columns win over its plan's, which win over its customer's."""

    plans: Mapping[str, Expectation] = field(default_factory=dict)
    customers: Mapping[str, Expectation] = field(default_factory=dict)


# where a set expectation comes from (``FleetState`` keeps it per SIM in two bits)
SOURCES: Final = ("learned", "inventory", "plan", "customer")
