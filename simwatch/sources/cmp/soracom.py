"""The Soracom adapter (PLATFORMS.md section 5): session events and air stats per SIM.

* ``GET /v1/sims/{sim_id}/events/sessions?from=&to=`` (UNIX ms) ``&limit=
  &last_evaluated_key=``; the next page's key comes in the ``x-soracom-next-key`` header.
  ``event`` ``Created`` -> ``session/started``, ``Modified`` (handover or update) ->
  ``session/interim``, ``Deleted`` -> ``session/ended`` (``end_cause`` ``unknown``: the
  API gives none). ``session_id`` is the event's ``sessionId``; ``record_id`` is
  ``soracom:<sim>:<sessionId>:<event>:<time>``, stable across re-polls.
* ``cell {mcc, mnc, radioType}``: MCC and MNC arrive as **integers**, so ``10`` may be
  MNC ``10`` or ``010``. The rule (:func:`resolve_mnc`): the 3-digit form wins when the
  operator table knows MCC + that 3-digit MNC; otherwise 2 digits when the value is
  below 100; otherwise (100-999) it can only be 3 digits. ``radioType`` (``lte``,
  ``LTE-M``, ``NB-IoT``, ``3G``, ``GSM``; case varies) is normalised to FORMATS.md names.
* ``GET /v1/stats/air/sims/{sim_id}?from=&to=`` (UNIX s) ``&period=minutes`` ->
  ``[{unixtime, dataTrafficStatsMap {<class>: {uploadByteSizeTotal,
  downloadByteSizeTotal, …}}}]``: ~5-minute buckets, summed over the classes. A bucket's
  totals may still grow: the adapter keeps the last totals per bucket (``marks``) and
  emits the increase, ``record_id`` ``soracom:<sim>:u:<unixtime>:<up>:<down>``.
* SIM list (no ``iccids`` configured): ``GET /v1/sims?limit=&last_evaluated_key=``, paged
  by ``x-soracom-next-key`` like the session events; each SIM's ``simId`` (else
  ``iccid``) addresses it. Soracom's ``simId`` of a SIM card is its ICCID, which is what
  the records carry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from simwatch.core.timeutil import format_rfc3339
from simwatch.sources.cmp.base import (
    AdapterError,
    Record,
    growth,
    normalize_time,
    obj,
    put,
    text,
    whole,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from simwatch.core.operators import OperatorTable

__all__ = [
    "BUCKET_S",
    "resolve_mnc",
    "soracom_air",
    "soracom_sessions",
    "soracom_sims",
]

BUCKET_S: Final = 300  # "minutes" air stats: about every 5 minutes
_STATUS: Final[Mapping[str, str]] = {
    "Created": "started",
    "Modified": "interim",
    "Deleted": "ended",
}
_RAT: Final[Mapping[str, str]] = {
    "lte": "LTE",
    "lte-m": "LTE-M",
    "nb-iot": "NB-IoT",
    "3g": "3G",
    "gsm": "2G",
}
MAX_MNC: Final = 999
TWO_DIGITS: Final = 100


def resolve_mnc(mcc: str, mnc: int, operators: OperatorTable) -> str | None:
    """An integer MNC as 2 or 3 digits: a 3-digit MNC the table knows wins, else 2."""
    if mnc > MAX_MNC:
        return None
    three = f"{mnc:03d}"
    if mnc >= TWO_DIGITS or operators.operator(mcc, three) is not None:
        return three
    return f"{mnc:02d}"


def _cell(cell: Mapping[str, object], operators: OperatorTable) -> dict[str, str]:
    out: dict[str, str] = {}
    mcc, mnc = whole(cell.get("mcc")), whole(cell.get("mnc"))
    if mcc is not None and mcc <= MAX_MNC and mnc is not None:
        code = f"{mcc:03d}"
        resolved = resolve_mnc(code, mnc, operators)
        if resolved is not None:
            out["mcc"], out["mnc"] = code, resolved
    rat = text(cell.get("radioType"))
    if rat is not None:
        out["rat"] = _RAT.get(rat.lower(), rat)
    return out


def soracom_sessions(
    iccid: str, body: object, operators: OperatorTable
) -> tuple[list[Record], int | None, int]:
    """A session-event page -> records, the newest event time (ms), items skipped."""
    if not isinstance(body, list):
        raise AdapterError("expected a list of session events")
    out: list[Record] = []
    newest: int | None = None
    skipped = 0
    for raw in body:
        item = obj(raw)
        status = _STATUS.get(str(item.get("event")))
        when = whole(item.get("time"))
        ts = normalize_time(when) if when is not None else None
        sid = text(item.get("sessionId"))
        if status is None or ts is None or when is None or sid is None:
            skipped += 1
            continue
        newest = when if newest is None else max(newest, when)
        rec: Record = {
            "kind": "session",
            "record_id": f"soracom:{iccid}:{sid}:{item.get('event')}:{when}",
            "iccid": iccid,
            "session_id": sid,
            "status": status,
            "ts": ts,
        }
        put(rec, "apn", text(item.get("apn")))
        rec.update(_cell(obj(item.get("cell")), operators))
        if status == "ended":
            rec["end_cause"] = "unknown"
        out.append(rec)
    return out, newest, skipped


def soracom_air(
    iccid: str, body: object, marks: Mapping[str, tuple[int, int]]
) -> tuple[list[Record], dict[str, tuple[int, int]]]:
    """Air stats buckets -> usage records for what grew since ``marks``, and new marks."""
    if not isinstance(body, list):
        raise AdapterError("expected a list of air stats")
    out: list[Record] = []
    seen: dict[str, tuple[int, int]] = {}
    for raw in body:
        item = obj(raw)
        start = whole(item.get("unixtime"))
        if start is None:
            continue
        up = down = 0
        for stats in obj(item.get("dataTrafficStatsMap")).values():
            up += whole(obj(stats).get("uploadByteSizeTotal")) or 0
            down += whole(obj(stats).get("downloadByteSizeTotal")) or 0
        key = str(start)
        d_up, d_down = growth(marks, seen, key, up, down)
        if d_up + d_down == 0:
            continue
        out.append(
            {
                "kind": "usage",
                "record_id": f"soracom:{iccid}:u:{start}:{up}:{down}",
                "iccid": iccid,
                "start": format_rfc3339(start),
                "end": format_rfc3339(start + BUCKET_S),
                "bytes_up": d_up,
                "bytes_down": d_down,
            }
        )
    return out, seen


def soracom_sims(body: object) -> list[str]:
    """A ``GET /v1/sims`` page -> the SIM ids (``simId``, else ``iccid``)."""
    if not isinstance(body, list):
        raise AdapterError("expected a list of SIMs")
    return [
        i for s in body if (i := text(obj(s).get("simId")) or text(obj(s).get("iccid"))) is not None
    ]
