"""The SIM inventory CSV (FORMATS.md "Inventory"): a streaming parser of its text.

Opening the file is the shell's job (``simwatch.shell.inventory``); this module parses
the lines it is given.

A bad row becomes a :class:`~simwatch.core.records.Rejection` (its ``raw`` is the CSV text of
the row) and the reading goes on; a problem with the whole file (unreadable, no header,
no ``iccid`` column, not UTF-8, broken CSV quoting) raises :class:`InventoryError`.
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from simwatch.core.iccid import alternate_form
from simwatch.core.records import MAX_COUNT, Rejection, RejectReason
from simwatch.core.schedule import ScheduleError, parse_active_hours, parse_zone

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

__all__ = [
    "STATUSES",
    "InventoryError",
    "InventoryRow",
    "parse_inventory",
]

STATUSES: Final = ("active", "suspended", "test", "deactivated")
_KNOWN_COLUMNS: Final = frozenset({
    "iccid", "imsi", "customer", "apn", "plan", "data_cap_bytes", "status", "tags",
    "expected_interval_s", "active_hours", "timezone",
})  # fmt: skip
MAX_INTERVAL_S: Final = 366 * 86400.0
_SHOW_CHARS: Final = 64


@dataclass(slots=True)
class InventoryRow:
    """One SIM of the inventory."""

    iccid: str
    imsi: str | None = None
    customer: str | None = None
    apns: tuple[str, ...] = ()
    plan: str | None = None
    data_cap_bytes: int | None = None
    status: str = "active"
    tags: frozenset[str] = frozenset()
    extra: dict[str, str] = field(default_factory=dict)
    # set expectations (docs/configuration.md "Expectations"): override the learned rhythm
    expected_interval_s: float | None = None
    active_hours: str | None = None
    timezone: str | None = None


class InventoryError(Exception):
    """The inventory file as a whole cannot be used; the message names the problem."""


def _show(value: str) -> str:
    if len(value) > _SHOW_CHARS:
        value = value[:_SHOW_CHARS] + "..."
    return repr(value)


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(";") if part.strip()]


def _digits(value: str, low: int, high: int) -> bool:
    return low <= len(value) <= high and value.isascii() and value.isdigit()


def _tap(lines: Iterator[str], taken: list[str]) -> Iterator[str]:
    """Pass lines through to the csv reader, keeping the ones of the current row."""
    for line in lines:
        taken.append(line)
        yield line


def parse_inventory(lines: Iterable[str], source: str) -> Iterator[InventoryRow | Rejection]:
    """Parse inventory CSV text: one InventoryRow or Rejection per non-blank data row.

    ``lines`` are the file's lines (an open text handle will do); ``source`` names the
    file in errors. A second row for an ICCID already read is rejected as
    ``duplicate_iccid`` (the first one wins). Raises InventoryError for whole-file
    problems (empty, no header, not UTF-8, broken CSV).
    """
    taken: list[str] = []
    reader = csv.reader(_tap(iter(lines), taken))
    header = _next_row(reader, source)
    if header is None:
        raise InventoryError(f"{source}: the inventory is empty, expected a header row")
    columns = _columns(header, source)
    taken.clear()
    seen: set[str] = set()
    while (row := _next_row(reader, source)) is not None:
        raw = "".join(taken).rstrip("\r\n")
        taken.clear()
        if not any(cell.strip() for cell in row):
            continue
        result = _parse_row(row, columns, raw, reader.line_num)
        if isinstance(result, InventoryRow):
            if result.iccid in seen or alternate_form(result.iccid) in seen:
                result = Rejection(
                    RejectReason.DUPLICATE_ICCID,
                    f"line {reader.line_num}: field 'iccid': {result.iccid} "
                    "already appeared in an earlier row (with or without its check digit)",
                    raw,
                    None,
                    result.iccid,
                )
            else:
                seen.add(result.iccid)
        yield result


def _next_row(reader: Iterator[list[str]], source: str) -> list[str] | None:
    line = getattr(reader, "line_num", 0) + 1
    try:
        return next(reader, None)
    except UnicodeDecodeError as exc:
        raise InventoryError(f"{source}: not UTF-8 text near line {line} ({exc.reason})") from exc
    except csv.Error as exc:
        raise InventoryError(f"{source}: broken CSV near line {line}: {exc}") from exc


def _columns(header: list[str], source: str) -> list[str]:
    columns: list[str] = []
    for cell in header:
        name = cell.strip()
        lower = name.lower()
        columns.append(lower if lower in _KNOWN_COLUMNS else name)
    if "iccid" not in columns:
        raise InventoryError(f"{source}: the header has no 'iccid' column: {header}")
    duplicates = sorted({c for c in columns if c and columns.count(c) > 1})
    if duplicates:
        raise InventoryError(f"{source}: the header repeats column(s) {', '.join(duplicates)}")
    return columns


@functools.lru_cache(maxsize=4096)  # a fleet repeats a few texts a million times
def _hours_problem(text: str) -> str | None:
    try:
        parse_active_hours(text)
    except ScheduleError as exc:
        return str(exc)
    return None


@functools.lru_cache(maxsize=1024)
def _zone_problem(name: str) -> str | None:
    try:
        parse_zone(name)
    except ScheduleError as exc:
        return str(exc)
    return None


def _parse_row(row: list[str], columns: list[str], raw: str, line: int) -> InventoryRow | Rejection:  # noqa: PLR0911 - one return per check
    if len(row) > len(columns):
        return Rejection(
            RejectReason.BAD_VALUE,
            f"line {line}: row has {len(row)} fields, the header has {len(columns)}",
            raw,
        )
    values: dict[str, str] = {}
    extra: dict[str, str] = {}
    for name, cell in zip(columns, row, strict=False):
        if name in _KNOWN_COLUMNS:
            values[name] = cell.strip()
        elif name:
            extra[name] = cell.strip()

    iccid = values.get("iccid", "")
    if not _digits(iccid, 18, 22):
        if not iccid:
            return Rejection(
                RejectReason.MISSING_FIELD, f"line {line}: field 'iccid' is empty", raw
            )
        hint = (
            " (it looks like a number reformatted by a spreadsheet)"
            if "E+" in iccid.upper()
            else ""
        )
        return Rejection(
            RejectReason.BAD_ICCID,
            f"line {line}: field 'iccid': {_show(iccid)} is not 18-22 digits{hint}",
            raw,
        )

    def bad(field_name: str, problem: str) -> Rejection:
        return Rejection(
            RejectReason.BAD_VALUE,
            f"line {line}: field '{field_name}': {problem}",
            raw,
            None,
            iccid,
        )

    imsi = values.get("imsi") or None
    if imsi is not None and not _digits(imsi, 14, 15):
        return bad("imsi", f"{_show(imsi)} is not 14-15 digits")

    status = (values.get("status") or "active").lower()
    if status not in STATUSES:
        return bad("status", f"{_show(values['status'])} is not one of {', '.join(STATUSES)}")

    cap_text = values.get("data_cap_bytes", "")
    cap: int | None = None
    if cap_text:
        body = cap_text[1:] if cap_text[0] in "+-" else cap_text
        if not (body.isascii() and body.isdigit()):
            return bad("data_cap_bytes", f"{_show(cap_text)} is not a whole number of bytes")
        if len(body.lstrip("0")) > len(str(MAX_COUNT)):  # before int(): no giant numbers
            return bad("data_cap_bytes", f"{_show(cap_text)} is over 2**53 bytes")
        cap = int(cap_text)
        if cap < 0:
            return bad("data_cap_bytes", f"{cap} is negative")
        if cap > MAX_COUNT:
            return bad("data_cap_bytes", f"{cap} is over 2**53 bytes")

    interval_text = values.get("expected_interval_s", "")
    interval: float | None = None
    if interval_text:
        try:
            interval = float(interval_text)
        except ValueError:
            interval = -1.0
        if not 60.0 <= interval <= MAX_INTERVAL_S:  # NaN fails too
            return bad(
                "expected_interval_s",
                f"{_show(interval_text)} is not a number of seconds in [60, {MAX_INTERVAL_S:.0f}]",
            )
    hours = values.get("active_hours") or None
    zone = values.get("timezone") or None
    problem = None if hours is None else _hours_problem(hours)
    if problem is not None:
        return bad("active_hours", problem)
    problem = None if zone is None else _zone_problem(zone)
    if problem is not None:
        return bad("timezone", problem)

    return InventoryRow(
        iccid=iccid,
        imsi=imsi,
        customer=values.get("customer") or None,
        apns=tuple(_split(values.get("apn", ""))),
        plan=values.get("plan") or None,
        data_cap_bytes=cap,
        status=status,
        tags=frozenset(_split(values.get("tags", ""))),
        extra=extra,
        expected_interval_s=interval,
        active_hours=hours,
        timezone=zone,
    )
