"""Maintenance windows: one-off or recurring (RFC 5545 RRULE), in a time zone, by scope.

A window is a start (local wall time in its ``timezone``), a duration and, when it
recurs, an RRULE body (``FREQ=WEEKLY;BYDAY=SU``) that repeats the start. Its *scope*
names the groups it covers: dimension -> allowed values (AND across dimensions, OR within
one; ``{}`` is the whole fleet), over any dimension: ``partner``, ``country``, ``apn``,
``customer``, ``plan``, ``rat`` or a configured extra.

Wall-clock semantics, as in a calendar: the duration runs on the local clock, so
"Sunday 02:00 for 2 h, Europe/Paris" is 02:00-04:00 Paris time on every Sunday. On the
spring change night (02:00-03:00 does not exist) it starts at 03:00 local (the start moves
forward by the gap, PEP 495 ``fold=0``) and lasts one real hour; on the autumn night
(02:00-03:00 happens twice) it starts at the first 02:00 and lasts three real hours.

Pure: time is passed in (epoch seconds), nothing is read but the system's time-zone
database (``zoneinfo``). An incident is in a window's scope when every scope dimension is
satisfied: fixed by the incident's ``dims`` to an allowed value, or, for a dimension the
incident does not fix (a customer-scoped window, a partner window and a country-wide
incident), every failing SIM of the incident has an allowed value (``in_scope``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as dtime
from typing import TYPE_CHECKING, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil import rrule as rrules

from simwatch.core.timeutil import format_rfc3339

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = [
    "MAX_DURATION_S",
    "Cron",
    "MaintenanceError",
    "Window",
    "active_windows",
    "in_scope",
    "parse_scope",
    "parse_start",
    "parse_timezone",
    "window_from_json",
]

Source = Literal["config", "api"]
MAX_DURATION_S: Final = 366 * 86400.0
MAX_NAME: Final = 200
MAX_SCOPE_VALUES: Final = 1000
_RRULE_KEYS: Final = frozenset({
    "FREQ", "INTERVAL", "COUNT", "UNTIL", "WKST", "BYDAY", "BYMONTHDAY", "BYMONTH",
    "BYSETPOS", "BYHOUR", "BYMINUTE", "BYWEEKNO", "BYYEARDAY",
})  # fmt: skip
_RRULE_FREQS: Final = ("HOURLY", "DAILY", "WEEKLY", "MONTHLY", "YEARLY")
_RRULE_PART: Final = re.compile(r"([A-Z]+)=([A-Za-z0-9,+\-]+)")
_DIM_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_DAY: Final = timedelta(days=1)
_MEMO_AHEAD: Final = timedelta(days=7)
_SLACK: Final = timedelta(hours=6)
_KEYS: Final = frozenset(
    {"id", "name", "start", "timezone", "duration_s", "rrule", "cron", "scope"}
)


class MaintenanceError(ValueError):
    """A window that cannot be used; ``field`` names the bad key."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


def parse_timezone(name: object) -> ZoneInfo:
    if not isinstance(name, str) or not name:
        raise MaintenanceError("timezone", "expected an IANA time zone name such as Europe/Paris")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise MaintenanceError(
            "timezone", f"unknown time zone {name[:60]!r} (IANA names such as Europe/Paris)"
        ) from None


def parse_start(text: object, tz: ZoneInfo) -> datetime:
    """``YYYY-MM-DDTHH:MM[:SS]`` local wall time in ``tz`` (naive result); with an offset
    (``Z``, ``+01:00``) the instant is converted to ``tz``'s wall time."""
    if not isinstance(text, str) or not re.fullmatch(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d.*", text):
        raise MaintenanceError(
            "start", f"expected a local time YYYY-MM-DDTHH:MM, got {str(text)[:40]!r}"
        )
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise MaintenanceError("start", f"not a valid date and time: {text[:40]!r}") from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(tz).replace(tzinfo=None)
    return parsed.replace(microsecond=0)


def _parse_rrule(text: object, start: datetime) -> rrules.rrule | None:
    if text is None or text == "":
        return None
    if not isinstance(text, str):
        raise MaintenanceError("rrule", "expected an RRULE such as FREQ=WEEKLY;BYDAY=SU")
    body = text.strip().removeprefix("RRULE:")
    keys = []
    for part in body.split(";"):
        match = _RRULE_PART.fullmatch(part)
        if match is None:
            raise MaintenanceError("rrule", f"cannot read {part[:40]!r} (KEY=VALUE;... expected)")
        keys.append(match.group(1))
        if match.group(1) not in _RRULE_KEYS:
            raise MaintenanceError("rrule", f"unsupported part {match.group(1)[:20]!r}")
        if match.group(1) == "FREQ" and match.group(2) not in _RRULE_FREQS:
            raise MaintenanceError(
                "rrule", f"FREQ must be one of {', '.join(_RRULE_FREQS)}, not {match.group(2)!r}"
            )
    if "FREQ" not in keys:
        raise MaintenanceError("rrule", "FREQ is missing (e.g. FREQ=WEEKLY;BYDAY=SU)")
    if len(set(keys)) != len(keys):
        raise MaintenanceError("rrule", "a part is given twice")
    try:
        rule = rrules.rrulestr(body, dtstart=start, cache=True)
    except (ValueError, TypeError) as exc:
        raise MaintenanceError("rrule", str(exc)[:200] or "invalid RRULE") from None
    if not isinstance(rule, rrules.rrule):  # pragma: no cover - no RDATE/EXDATE parts reach here
        raise MaintenanceError("rrule", "one RRULE expected")
    return rule


def parse_scope(value: object) -> dict[str, tuple[str, ...]]:
    """``{"partner": ["20801"], "country": "FR"}`` -> dimension -> allowed values."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MaintenanceError("scope", 'expected an object such as {"partner": ["20801"]}')
    out: dict[str, tuple[str, ...]] = {}
    for dim, values in value.items():
        if not isinstance(dim, str) or not _DIM_NAME.fullmatch(dim):
            raise MaintenanceError("scope", f"invalid dimension name {str(dim)[:40]!r}")
        listed = [values] if isinstance(values, str) else values
        if (
            not isinstance(listed, list)
            or not listed
            or len(listed) > MAX_SCOPE_VALUES
            or not all(isinstance(v, str) and v and len(v) <= MAX_NAME for v in listed)
        ):
            raise MaintenanceError(
                f"scope.{dim}", "expected a value or a non-empty list of values (strings)"
            )
        out[dim] = tuple(dict.fromkeys(listed))
    return out


_CRON_FIELDS: Final = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31),
                       ("month", 1, 12), ("day of week", 0, 7))  # fmt: skip
_CRON_NAMES: Final = {
    3: {m: i + 1 for i, m in enumerate(
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"))},
    4: {d: i for i, d in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"))},
}  # fmt: skip
_CRON_SEARCH_DAYS: Final = 4 * 366 + 1  # a 29 February is found within four years


def _cron_number(text: str, index: int) -> int:
    names = _CRON_NAMES.get(index, {})
    if text.upper() in names:
        return names[text.upper()]
    if not text.isascii() or not text.isdigit():
        raise MaintenanceError("cron", f"cannot read {text[:20]!r} in the {_CRON_FIELDS[index][0]}")
    return int(text)


def _cron_field(text: str, index: int) -> frozenset[int]:
    name, low, high = _CRON_FIELDS[index]
    values: set[int] = set()
    for part in text.split(","):
        body, _, step_text = part.partition("/")
        step = _cron_number(step_text, index) if step_text else 1
        if body == "*":
            first, last = low, high
        elif "-" in body:
            a, _, b = body.partition("-")
            first, last = _cron_number(a, index), _cron_number(b, index)
        else:
            first = _cron_number(body, index)
            last = high if step_text else first
        if not low <= first <= last <= high or step < 1:
            raise MaintenanceError("cron", f"{part[:20]!r} is outside {low}-{high} ({name})")
        values.update(range(first, last + 1, step))
    return frozenset(values)


@dataclass(frozen=True, slots=True)
class Cron:
    """A 5-field cron schedule (minute hour day-of-month month day-of-week; ``*``,
    ``a-b``, ``*/n``, lists, month and day names). Day of month and day of week both
    restricted: either matches (as cron does)."""

    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # Monday = 0 (Python's), from cron's Sunday = 0 or 7
    either: bool  # both day fields restricted

    @classmethod
    def parse(cls, text: str) -> Cron:
        fields = text.split()
        if len(fields) != 5:
            raise MaintenanceError(
                "cron", "expected 5 fields: minute hour day-of-month month day-of-week"
            )
        parsed = [_cron_field(f, i) for i, f in enumerate(fields)]
        return cls(
            minutes=tuple(sorted(parsed[0])),
            hours=tuple(sorted(parsed[1])),
            days=parsed[2],
            months=parsed[3],
            weekdays=frozenset((d - 1) % 7 for d in parsed[4]),
            either=fields[2] != "*" and fields[4] != "*",
        )

    def day_matches(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        in_days = day.day in self.days
        in_weekdays = day.weekday() in self.weekdays
        return (in_days or in_weekdays) if self.either else (in_days and in_weekdays)

    def between(self, lo: datetime, hi: datetime) -> list[datetime]:
        """The starts in ``[lo, hi]`` (local wall time), ascending."""
        out = []
        day = lo.date()
        while day <= hi.date():
            if self.day_matches(day):
                for hour in self.hours:
                    for minute in self.minutes:
                        at = datetime.combine(day, dtime(hour, minute))
                        if lo <= at <= hi:
                            out.append(at)
            day += timedelta(days=1)
        return out

    def after(self, local: datetime) -> datetime | None:
        """The first start at or after ``local``."""
        day = local.date()
        for _ in range(_CRON_SEARCH_DAYS):
            if self.day_matches(day):
                for hour in self.hours:
                    for minute in self.minutes:
                        at = datetime.combine(day, dtime(hour, minute))
                        if at >= local:
                            return at
            day += timedelta(days=1)
        return None


@dataclass(frozen=True, slots=True)
class Window:
    """One maintenance window (see the module docstring). Build with ``window_from_json``."""

    id: str
    name: str
    start: datetime  # naive, local wall time in ``timezone``
    timezone: str
    duration_s: float
    rrule: str | None = None
    scope: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    cron: str | None = None  # instead of rrule: a 5-field cron schedule of the starts
    source: Source = "api"
    created_at: float | None = None
    _tz: ZoneInfo = field(default=ZoneInfo("UTC"), repr=False, compare=False)
    _rule: rrules.rrule | None = field(default=None, repr=False, compare=False)
    _cron: Cron | None = field(default=None, repr=False, compare=False)
    # the occurrences of a span of local time, kept: [lo, hi, starts] (see _starts_near)
    _memo: list[object] = field(default_factory=list, repr=False, compare=False)

    def _instant(self, local: datetime) -> float:
        return local.replace(tzinfo=self._tz).timestamp()

    def _span(self, local: datetime) -> tuple[float, float]:
        return (
            self._instant(local),
            self._instant(local + timedelta(seconds=self.duration_s)),
        )

    def _starts_near(self, t: float) -> Iterable[datetime]:
        """Local starts of the occurrences that can cover ``t`` (6 h of slack either side:
        a zone's offset changes by at most 2 h at a clock change), ascending."""
        if self._rule is None and self._cron is None:
            return (self.start,)
        local = datetime.fromtimestamp(t, self._tz).replace(tzinfo=None)
        lo = local - timedelta(seconds=self.duration_s) - _SLACK
        hi = local + _SLACK
        if self._cron is not None:  # from the window's start on
            return self._cron.between(max(lo, self.start), hi)
        if self._rule is None:  # pragma: no cover - one of the two is set here
            return ()
        memo = self._memo
        if not memo or not (memo[0] <= lo and hi <= memo[1]):  # type: ignore[operator]
            # a week ahead at once: the rule is walked from its start once a week, not
            # at every evaluation (dateutil iterates from DTSTART)
            ahead = hi + _MEMO_AHEAD
            memo[:] = [lo, ahead, self._rule.between(lo, ahead, inc=True)]
        kept: list[datetime] = memo[2]  # type: ignore[assignment]
        return [s for s in kept if lo <= s <= hi]

    def occurrence_at(self, t: float) -> tuple[float, float] | None:
        """(start, end) in epoch seconds of the occurrence covering ``t``, or None (the
        latest-ending one when occurrences overlap)."""
        best: tuple[float, float] | None = None
        for local in self._starts_near(t):
            start, end = self._span(local)
            if start <= t < end and (best is None or end > best[1]):
                best = (start, end)
        return best

    def next_occurrence(self, t: float) -> tuple[float, float] | None:
        """The occurrence under way at ``t``, else the next one to start; None when none
        is left."""
        current = self.occurrence_at(t)
        if current is not None:
            return current
        if self._rule is None and self._cron is None:
            start, end = self._span(self.start)
            return (start, end) if start > t else None
        return self._after(math.nextafter(t, math.inf))

    def covers(self, dims: Mapping[str, str], members: Mapping[str, frozenset[str]]) -> bool:
        return in_scope(self.scope, dims, members)

    def to_json(self, now: float) -> dict[str, object]:
        current = self.occurrence_at(now)
        later = self.next_occurrence(now) if current is None else self._after(current[1])
        return {
            "id": self.id,
            "name": self.name,
            "source": self.source,
            "start": self.start.isoformat(),
            "timezone": self.timezone,
            "duration_s": self.duration_s,
            "rrule": self.rrule,
            "cron": self.cron,
            "scope": {k: list(v) for k, v in self.scope.items()},
            "created_at": None if self.created_at is None else format_rfc3339(self.created_at),
            "active": current is not None,
            "current": _span_json(current),
            "next": _span_json(later),
        }

    def _after(self, end: float) -> tuple[float, float] | None:
        """The first occurrence starting at or after ``end``."""
        local = datetime.fromtimestamp(end, self._tz).replace(tzinfo=None)
        if self._cron is not None:
            at = self._cron.after(max(local - _SLACK, self.start))
            while at is not None:
                start, stop = self._span(at)
                if start >= end:
                    return start, stop
                at = self._cron.after(at + timedelta(minutes=1))
            return None
        if self._rule is None:
            return None
        for candidate in self._rule.xafter(local - _DAY, inc=True):
            start, stop = self._span(candidate)
            if start >= end:
                return start, stop
        return None

    def spec(self) -> dict[str, object]:
        """What ``window_from_json`` takes back (the persisted form)."""
        out: dict[str, object] = {
            "id": self.id,
            "name": self.name,
            "start": self.start.isoformat(),
            "timezone": self.timezone,
            "duration_s": self.duration_s,
            "scope": {k: list(v) for k, v in self.scope.items()},
        }
        if self.rrule is not None:
            out["rrule"] = self.rrule
        if self.cron is not None:
            out["cron"] = self.cron
        if self.created_at is not None:
            out["created_at"] = self.created_at
        return out


def _span_json(span: tuple[float, float] | None) -> dict[str, str] | None:
    if span is None:
        return None
    return {"start": format_rfc3339(span[0]), "end": format_rfc3339(span[1])}


def window_from_json(
    data: Mapping[str, object],
    *,
    source: Source = "api",
    window_id: str | None = None,
    created_at: float | None = None,
    strict: bool = True,
) -> Window:
    """A ``Window`` from its JSON / TOML form; ``MaintenanceError`` naming the bad field.

    Keys: ``name`` (required), ``start`` (required), ``timezone`` (default UTC),
    ``duration_s`` (required, > 0), ``rrule`` (optional), ``scope`` (optional, default the
    whole fleet), ``id`` (only with ``window_id`` None). ``strict``: unknown keys are errors.
    """
    if not isinstance(data, dict):
        raise MaintenanceError("(body)", "expected a JSON object")
    if strict:
        unknown = sorted(k for k in data if k not in _KEYS)
        if unknown:
            raise MaintenanceError(str(unknown[0])[:40], "unknown field")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
        raise MaintenanceError("name", f"expected a non-empty text of at most {MAX_NAME} chars")
    tz_name = data.get("timezone", "UTC")
    tz = parse_timezone(tz_name)
    if "start" not in data:
        raise MaintenanceError("start", "required (local time YYYY-MM-DDTHH:MM)")
    start = parse_start(data["start"], tz)
    duration = data.get("duration_s")
    if isinstance(duration, bool) or not isinstance(duration, int | float):
        raise MaintenanceError("duration_s", "required: the window's length in seconds")
    if not math.isfinite(duration) or duration <= 0 or duration > MAX_DURATION_S:
        raise MaintenanceError("duration_s", f"must be > 0 and at most {MAX_DURATION_S:.0f}")
    raw_rule = data.get("rrule")
    rule = _parse_rrule(raw_rule, start)
    raw_cron = data.get("cron")
    cron = None
    if raw_cron is not None and raw_cron != "":
        if not isinstance(raw_cron, str):
            raise MaintenanceError("cron", "expected 5 fields such as '0 2 * * SUN'")
        if rule is not None:
            raise MaintenanceError("cron", "give rrule or cron, not both")
        cron = Cron.parse(raw_cron)
    scope = parse_scope(data.get("scope"))
    wid = window_id if window_id is not None else data.get("id")
    if not isinstance(wid, str) or not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", wid):
        raise MaintenanceError("id", "expected 1-64 letters, digits, '_', '.', ':' or '-'")
    return Window(
        id=wid,
        name=name.strip(),
        start=start,
        timezone=str(tz_name),
        duration_s=float(duration),
        rrule=None if rule is None else str(raw_rule).strip().removeprefix("RRULE:"),
        scope=scope,
        cron=None if cron is None else " ".join(str(raw_cron).split()),
        source=source,
        created_at=created_at,
        _tz=tz,
        _rule=rule,
        _cron=cron,
    )


def active_windows(windows: Iterable[Window], t: float) -> list[tuple[Window, float]]:
    """The windows under way at ``t``, each with the end of its current occurrence."""
    out = []
    for window in windows:
        occurrence = window.occurrence_at(t)
        if occurrence is not None:
            out.append((window, occurrence[1]))
    return out


def in_scope(
    scope: Mapping[str, tuple[str, ...]],
    dims: Mapping[str, str],
    members: Mapping[str, frozenset[str]],
) -> bool:
    """Whether a group (``dims``, its failing SIMs' values in ``members``) lies inside
    ``scope``: each scope dimension is fixed by ``dims`` to an allowed value, or every
    failing SIM has an allowed value (an empty or missing member set is not inside:
    when in doubt, page)."""
    for dim, allowed in scope.items():
        value = dims.get(dim)
        if value is not None:
            if value not in allowed:
                return False
            continue
        values = members.get(dim)
        if not values or not values <= frozenset(allowed):
            return False
    return True
