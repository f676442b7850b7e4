"""MCC/MNC lookups: the country of a Mobile Country Code and the operator of an MCC+MNC.

The shipped tables live in ``simwatch/data`` (see its README for source and licence). A
user CSV can replace or add rows on top of them: same columns, ``mcc,mnc,name`` and/or
``mcc,country``. MNCs are compared as given, so ``02`` and ``002`` are different codes.
"""

from __future__ import annotations

import csv
from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from pathlib import Path

__all__ = ["OperatorTable", "OperatorTableError"]

_COUNTRIES_FILE = "mcc_countries.csv"
_OPERATORS_FILE = "operators.csv"


class OperatorTableError(ValueError):
    """A table file that cannot be used; the message names the file and line."""


def _digits(value: str, low: int, high: int) -> bool:
    return low <= len(value) <= high and value.isascii() and value.isdigit()


class OperatorTable:
    """Read-only lookups of country by MCC and operator name by MCC+MNC."""

    __slots__ = ("_countries", "_operators")

    def __init__(
        self, countries: Mapping[str, str], operators: Mapping[tuple[str, str], str]
    ) -> None:
        self._countries = dict(countries)
        # Keyed by mcc + mnc: unambiguous because an MCC is always 3 digits.
        self._operators = {mcc + mnc: name for (mcc, mnc), name in operators.items()}

    @classmethod
    def load(cls, override: Path | None = None) -> OperatorTable:
        """The packaged tables, then ``override`` (a user CSV) on top of them."""
        countries: dict[str, str] = {}
        operators: dict[tuple[str, str], str] = {}
        data = resources.files("simwatch.core") / "data"
        for name in (_COUNTRIES_FILE, _OPERATORS_FILE):
            text = (data / name).read_text(encoding="utf-8")
            _merge(text.splitlines(keepends=True), f"simwatch/data/{name}", countries, operators)
        if override is not None:
            try:
                text = override.read_text(encoding="utf-8-sig")
            except UnicodeDecodeError as exc:
                raise OperatorTableError(f"{override}: not UTF-8 text ({exc.reason})") from exc
            except OSError as exc:
                raise OperatorTableError(f"{override}: cannot read: {exc.strerror}") from exc
            _merge(text.splitlines(keepends=True), str(override), countries, operators)
        return cls(countries, operators)

    def country(self, mcc: str) -> str | None:
        """ISO 3166-1 alpha-2 (upper case) of ``mcc``; None for unknown or international codes."""
        return self._countries.get(mcc)

    def operator(self, mcc: str, mnc: str) -> str | None:
        """Operator name of the network ``mcc``+``mnc`` (digits as given), or None."""
        return self._operators.get(mcc + mnc)

    def __len__(self) -> int:
        """Number of known operators (networks)."""
        return len(self._operators)


def _rows(lines: list[str], source: str) -> Iterator[tuple[int, dict[str, str]]]:
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None:
        raise OperatorTableError(f"{source}: empty file, expected a header row")
    columns = [column.strip().lower() for column in header]
    if "mcc" not in columns:
        raise OperatorTableError(f"{source}:1: header has no 'mcc' column: {header}")
    has_operator = "mnc" in columns or "name" in columns
    if has_operator and not ("mnc" in columns and "name" in columns):
        raise OperatorTableError(f"{source}:1: header needs both 'mnc' and 'name' columns")
    if not has_operator and "country" not in columns:
        raise OperatorTableError(
            f"{source}:1: header needs 'mnc' and 'name' columns and/or a 'country' column"
        )
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        if len(row) > len(columns):
            raise OperatorTableError(
                f"{source}:{reader.line_num}: {len(row)} fields, header has {len(columns)}"
            )
        yield (
            reader.line_num,
            {column: cell.strip() for column, cell in zip(columns, row, strict=False)},
        )


def _merge(
    lines: list[str],
    source: str,
    countries: dict[str, str],
    operators: dict[tuple[str, str], str],
) -> None:
    for line, row in _rows(lines, source):
        where = f"{source}:{line}"
        mcc = row.get("mcc", "")
        if not _digits(mcc, 3, 3):
            raise OperatorTableError(f"{where}: mcc {mcc!r} is not 3 digits")
        mnc = row.get("mnc", "")
        name = row.get("name", "")
        country = row.get("country", "")
        if not (mnc or name or country):
            raise OperatorTableError(f"{where}: row sets neither an operator nor a country")
        if mnc or name:
            if not _digits(mnc, 2, 3):
                raise OperatorTableError(f"{where}: mnc {mnc!r} is not 2-3 digits")
            if not name:
                raise OperatorTableError(f"{where}: operator name is empty")
            operators[mcc, mnc] = name
        if country:
            if len(country) != 2 or not (country.isascii() and country.isalpha()):
                raise OperatorTableError(
                    f"{where}: country {country!r} is not an ISO 3166-1 alpha-2 code"
                )
            countries[mcc] = country.upper()
