"""The Cisco IoT Control Center adapter (PLATFORMS.md section 3): sessions, usage, SIMs.

Per SIM, one call at a time (Cisco's fair-use policy, section 3.2):

* ``GET /rws/api/v1/devices/{iccid}/sessionInfo`` -> ``{"iccid", "ipAddress",
  "dateSessionStarted", "dateSessionEnded"}``: the current or most recent session only;
  dates are null (or the string ``"null"``) when there is none, written
  ``2016-07-06 01:31:…`` (space separated, zone UNCONFIRMED: read as UTC). A start not
  reported before gives ``session/started``; an end not reported before gives
  ``session/ended``. When ``dateSessionStarted`` changes while the previous session had no
  end, that session is closed (``ended`` at the new start, ``end_cause`` ``unknown``).
  Cisco has no session id: ``session_id`` is ``<iccid>:<start>``.
* ``GET /rws/api/v1/devices/{iccid}/ctdUsages`` -> ``ctdDataUsage`` (bytes, cycle to
  date) and ``ctdSessionCount`` (sessions since the start of the billing cycle). The
  increase of ``ctdDataUsage`` since the last committed figure is a ``usage`` record over
  ``[last poll, now]`` (a drop means a new billing cycle: the whole figure is new; the
  direction is unknown: the delta goes to ``bytes_down``). Sessions that started and
  ended wholly between two polls are invisible to ``sessionInfo``; the increase of
  ``ctdSessionCount`` beyond the starts seen reveals them: one ``session/ended`` record
  (``session_id`` ``<iccid>:ctd:<count>``, at the poll time, ``end_cause`` ``unknown``)
  says the SIM had a session in that window. The first poll of a SIM only sets the marks.
* SIM discovery (no ``iccids`` configured): ``GET /rws/api/v1/devices?modifiedSince=…
  &pageSize=50&pageNumber=N`` until ``lastPage``; the first discovery asks from
  ``DISCOVER_FROM``, later ones from the previous discovery's start (minus a margin).

Record ids derive from upstream values only (start/end dates, counter values), so a
re-poll or a re-delivery yields the same ids and the engine counts them once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from simwatch.core.timeutil import format_rfc3339
from simwatch.sources.cmp.base import AdapterError, Record, normalize_time, obj, text

__all__ = [
    "DISCOVER_FROM",
    "PAGE_SIZE",
    "THROTTLE_CODE",
    "CiscoSessionMark",
    "CiscoUsageMark",
    "cisco_devices",
    "cisco_session",
    "cisco_usage",
    "is_throttle",
]

THROTTLE_CODE: Final = "40000029"  # "Exceeding Tariff limits" (section 3.2, fair use)
PAGE_SIZE: Final = 50  # the documented maximum of devices?pageSize
DISCOVER_FROM: Final = "2000-01-01T00:00:00Z"


@dataclass(frozen=True, slots=True)
class CiscoSessionMark:
    """The session start/end last reported for a SIM (RFC 3339, or None)."""

    started: str | None
    ended: str | None


@dataclass(frozen=True, slots=True)
class CiscoUsageMark:
    """The last committed cycle-to-date bytes (and session count) of a SIM, and when."""

    ctd: int
    at: float
    sessions: int | None = None


def is_throttle(body: bytes) -> bool:
    """An error body carrying Cisco's rate-limit code 40000029 (any HTTP status)."""
    return THROTTLE_CODE.encode() in body


def _date(value: object) -> str | None:
    if value == "null":  # the documented example writes null as a string
        return None
    return normalize_time(value)


def cisco_session(
    iccid: str, body: object, prev: CiscoSessionMark | None
) -> tuple[list[Record], CiscoSessionMark]:
    """``sessionInfo`` -> session records not reported before, and the new mark."""
    if not isinstance(body, dict):
        raise AdapterError("expected a sessionInfo object")
    started = _date(body.get("dateSessionStarted"))
    ended = _date(body.get("dateSessionEnded")) if started is not None else None
    mark = CiscoSessionMark(started, ended)
    out: list[Record] = []
    if (
        prev is not None
        and prev.started is not None
        and prev.ended is None
        and started is not None
        and prev.started != started
    ):  # a new session while the previous one had no end: that one ended
        out.append(_ended(iccid, prev.started, started, "unknown"))
    if started is None:
        return out, mark
    same = prev is not None and prev.started == started
    if not same:
        out.append(
            {
                "kind": "session",
                "record_id": f"cisco:{iccid}:s:{started}:started",
                "iccid": iccid,
                "session_id": f"{iccid}:{started}",
                "status": "started",
                "ts": started,
            }
        )
    if ended is not None and not (same and prev is not None and prev.ended == ended):
        out.append(_ended(iccid, started, ended, None))
    return out, mark


def _ended(iccid: str, started: str, ended: str, cause: str | None) -> Record:
    rec: Record = {
        "kind": "session",
        "record_id": f"cisco:{iccid}:s:{started}:ended",
        "iccid": iccid,
        "session_id": f"{iccid}:{started}",
        "status": "ended",
        "ts": ended,
    }
    if cause is not None:
        rec["end_cause"] = cause
    return rec


def _count(body: object, field: str) -> int | None:
    value = obj(body).get(field)
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        return None
    return value


def cisco_usage(
    iccid: str,
    body: object,
    prev: CiscoUsageMark | None,
    now: float,
    *,
    new_starts: int = 0,
) -> tuple[list[Record], CiscoUsageMark]:
    """``ctdUsages`` -> usage (and missed-session) records since ``prev``, and the mark.

    ``new_starts``: session starts ``sessionInfo`` reported in this poll, which the
    increase of ``ctdSessionCount`` does not count as missed.
    """
    value = _count(body, "ctdDataUsage")
    if value is None:
        raise AdapterError("field 'ctdDataUsage' is not a byte count")
    sessions = _count(body, "ctdSessionCount")
    mark = CiscoUsageMark(value, now, sessions)
    if prev is None:
        return [], mark
    out: list[Record] = []
    delta = value - prev.ctd if value >= prev.ctd else value  # a drop: new billing cycle
    if delta > 0:
        out.append(
            {
                "kind": "usage",
                "record_id": f"cisco:{iccid}:u:{prev.at:.0f}:{value}",
                "iccid": iccid,
                "start": format_rfc3339(min(prev.at, now)),
                "end": format_rfc3339(now),
                "bytes_up": 0,
                "bytes_down": delta,
            }
        )
    if sessions is not None and prev.sessions is not None:
        grown = sessions - prev.sessions if sessions >= prev.sessions else sessions
        if grown - new_starts > 0:
            out.append(
                {
                    "kind": "session",
                    "record_id": f"cisco:{iccid}:missed:{prev.sessions}:{sessions}",
                    "iccid": iccid,
                    "session_id": f"{iccid}:ctd:{sessions}",
                    "status": "ended",
                    "ts": format_rfc3339(now),
                    "end_cause": "unknown",
                }
            )
    return out, mark


def cisco_devices(body: object) -> tuple[list[str], bool]:
    """One ``devices?modifiedSince=`` page -> its ICCIDs and whether it is the last."""
    if not isinstance(body, dict) or not isinstance(body.get("devices"), list):
        raise AdapterError("expected {'devices': [...], 'lastPage': ...}")
    iccids = [i for d in body["devices"] if (i := text(obj(d).get("iccid"))) is not None]
    return iccids, body.get("lastPage") is not False
