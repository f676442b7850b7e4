"""What the CMP adapters share: their error, units, time normalisation and field helpers.

The poller (``simwatch.sources.cmp.source``) does the HTTP; the adapters only turn parsed
JSON into FORMATS.md dicts (``kind``, ``record_id``, ``iccid`` ...). Nothing in them does
I/O or reads a clock: "now" is an argument. Every ``record_id`` is derived from the upstream
record alone (its id, or the upstream values it reports), so a re-delivery after a
retry or a restart produces the same id and the engine counts it once.

Units: the platforms report volumes in megabytes; ``1 MB = 1_000_000 bytes`` (decimal,
as billed), rounded to the nearest byte. "tx" is what the device transmitted
(``bytes_up``), "rx" what it received (``bytes_down``). Times are normalised to RFC 3339
UTC (``2026-11-20T10:15:00Z``); ``+0000`` offsets and a space instead of ``T`` (as the
emnify and Cisco APIs write them) are accepted, as are epoch seconds/milliseconds.

One module per platform maps its shapes: ``generic``, ``emnify`` (also 1NCE's event
feed), ``onence`` (1NCE), ``cisco``, ``kore``, ``soracom`` and ``hologram``; each
platform's polling routine lives in ``<platform>_poll``, which the poller's ``POLLS``
registry picks by ``settings.adapter``.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

from simwatch.core.timeutil import TimeParseError, format_rfc3339, parse_rfc3339

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "BYTES_PER_MB",
    "DAY_S",
    "AdapterError",
    "Record",
    "iccid_of",
    "in_time_order",
    "mb_to_bytes",
    "mcc_of",
    "mnc_of",
    "network",
    "normalize_time",
    "obj",
    "put",
    "rat_of",
    "text",
]

BYTES_PER_MB: Final = 1_000_000
DAY_S: Final = 86_400

Record = dict[str, object]

# 3GPP TS 29.274 8.17 RAT Type values.
_RAT_TYPES: Final[Mapping[int, str]] = {
    1: "3G",
    2: "2G",
    3: "WLAN",
    4: "GAN",
    5: "HSPA",
    6: "LTE",
    7: "virtual",
    8: "NB-IoT",
    9: "LTE-M",
    10: "5G",
}


class AdapterError(ValueError):
    """A response whose overall shape is not the documented one (the poll fails)."""


def obj(value: object) -> Mapping[str, object]:
    return value if isinstance(value, dict) else {}


def text(value: object) -> str | None:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def mb_to_bytes(value: object) -> int | None:
    """Megabytes (a number or numeric string) as whole bytes; None if not a volume."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        return None
    return round(value * BYTES_PER_MB)


def normalize_time(value: object) -> str | None:  # noqa: PLR0911 - flat dispatch on type
    """An upstream timestamp as RFC 3339; None if it cannot be read."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            return None
        return format_rfc3339(value / 1000 if value > 1e11 else value)
    if not isinstance(value, str) or not value:
        return None
    try:
        return format_rfc3339(parse_rfc3339(value))
    except TimeParseError:
        pass
    try:
        parsed = datetime.fromisoformat(value.strip().replace(" ", "T", 1))
    except ValueError:
        return None
    if parsed.tzinfo is None:  # no offset: the platforms document UTC
        parsed = parsed.replace(tzinfo=UTC)
    return format_rfc3339(parsed.timestamp())


def _when(record: Record) -> str:
    when = record.get("ts", record.get("end"))
    return when if isinstance(when, str) else ""


def in_time_order(records: list[Record]) -> list[Record]:
    """``records`` oldest first (stable; by ``ts``, or a usage record's ``end``).

    Platforms serve history newest first (Hologram, 1NCE v1, maybe 1NCE v2); the engine
    learns a SIM's rhythm from the gaps between its records in time order, and a record
    older than one already applied is a late arrival that teaches no gap. The times are
    the adapters' RFC 3339 UTC strings, which sort as text.
    """
    return sorted(records, key=_when)


def mcc_of(value: object) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:03d}"
    return text(value)


def mnc_of(value: object) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:02d}"  # an integer MNC loses its padding; two digits assumed
    if isinstance(value, list) and value:  # emnify operators list their MNCs
        return mnc_of(obj(value[0]).get("mnc"))
    return text(value)


def rat_of(value: object) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return _RAT_TYPES.get(value)
    if isinstance(value, dict):
        return rat_of(value.get("description") or value.get("id"))
    return text(value)


def network(*sources: Mapping[str, object]) -> tuple[str | None, str | None]:
    """MCC/MNC from the first source that has them (flat, or an operator with a country)."""
    for src in sources:
        for cand in (src, obj(src.get("network")), obj(src.get("operator"))):
            mcc = mcc_of(cand.get("mcc")) or mcc_of(obj(cand.get("country")).get("mcc"))
            mnc = mnc_of(cand.get("mnc"))
            if mcc is not None and mnc is not None:
                return mcc, mnc
    return None, None


def whole(value: object) -> int | None:
    """A non-negative JSON integer (a byte count, a time, an MCC; not a bool), else None."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def growth(
    marks: Mapping[str, tuple[int, int]],
    seen: dict[str, tuple[int, int]],
    key: str,
    up: int,
    down: int,
) -> tuple[int, int]:
    """Bytes (up, down) that a period's running totals grew by since ``marks[key]``
    (never negative), recording the totals in ``seen`` as the period's new mark."""
    seen[key] = (up, down)
    old_up, old_down = marks.get(key, (0, 0))
    return max(0, up - old_up), max(0, down - old_down)


def put(rec: Record, key: str, value: object) -> None:
    if value is not None:
        rec[key] = value


def iccid_of(item: Mapping[str, object], default: str | None) -> str | None:
    return (
        text(obj(item.get("sim")).get("iccid"))
        or text(item.get("iccid"))
        or text(obj(item.get("endpoint")).get("iccid"))
        or default
    )
