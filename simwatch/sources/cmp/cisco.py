"""The Cisco IoT Control Center adapter: the session and cycle-to-date usage per SIM.

per SIM:

* ``GET /rws/api/v1/devices/{iccid}/sessionInfo`` -> ``{"iccid", "ipAddress",
  "dateSessionStarted", "dateSessionEnded"}`` (the current or last session; dates may
  be null). A start not seen before gives ``session/started``; an end not seen before
  gives ``session/ended``. Cisco has no session id: ``session_id`` is
  ``<iccid>:<start>``. A session that starts and ends wholly between two polls is
  invisible to this endpoint.
* ``GET /rws/api/v1/devices/{iccid}/ctdUsages`` -> ``{"ctdDataUsage": bytes}``
  (cycle to date). Each poll emits the increase since the last committed figure as a
  ``usage`` record over ``[last poll, now]`` (a drop means a new billing cycle: the
  whole figure is new). The direction is unknown: the delta goes to ``bytes_down``.
  The first poll of a SIM only sets the mark.
"""

from __future__ import annotations

from dataclasses import dataclass

from simwatch.core.timeutil import format_rfc3339
from simwatch.sources.cmp.base import AdapterError, Record, normalize_time, obj

__all__ = ["CiscoSessionMark", "CiscoUsageMark", "cisco_session", "cisco_usage"]


@dataclass(frozen=True, slots=True)
class CiscoSessionMark:
    """The session start/end last reported for a SIM (RFC 3339, or None)."""

    started: str | None
    ended: str | None


@dataclass(frozen=True, slots=True)
class CiscoUsageMark:
    """The last committed cycle-to-date bytes of a SIM, and when they were read."""

    ctd: int
    at: float


def cisco_session(
    iccid: str, body: object, prev: CiscoSessionMark | None
) -> tuple[list[Record], CiscoSessionMark]:
    """``sessionInfo`` -> session started/ended records not reported before, and the mark."""
    if not isinstance(body, dict):
        raise AdapterError("expected a sessionInfo object")
    started = normalize_time(body.get("dateSessionStarted"))
    ended = normalize_time(body.get("dateSessionEnded")) if started is not None else None
    mark = CiscoSessionMark(started, ended)
    if started is None:
        return [], mark
    sid = f"{iccid}:{started}"
    out: list[Record] = []
    same = prev is not None and prev.started == started
    if not same:
        out.append(
            {
                "kind": "session",
                "record_id": f"cisco:{iccid}:s:{started}:started",
                "iccid": iccid,
                "session_id": sid,
                "status": "started",
                "ts": started,
            }
        )
    if ended is not None and not (same and prev is not None and prev.ended == ended):
        out.append(
            {
                "kind": "session",
                "record_id": f"cisco:{iccid}:s:{started}:ended",
                "iccid": iccid,
                "session_id": sid,
                "status": "ended",
                "ts": ended,
            }
        )
    return out, mark


def cisco_usage(
    iccid: str, body: object, prev: CiscoUsageMark | None, now: float
) -> tuple[list[Record], CiscoUsageMark]:
    """``ctdUsages`` -> a usage record for the increase since ``prev``, and the new mark."""
    value = obj(body).get("ctdDataUsage")
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise AdapterError("field 'ctdDataUsage' is not a byte count")
    mark = CiscoUsageMark(value, now)
    if prev is None:
        return [], mark
    delta = value - prev.ctd if value >= prev.ctd else value  # a drop: new billing cycle
    if delta == 0:
        return [], mark
    rec: Record = {
        "kind": "usage",
        "record_id": f"cisco:{iccid}:u:{prev.at:.0f}:{value}",
        "iccid": iccid,
        "start": format_rfc3339(min(prev.at, now)),
        "end": format_rfc3339(now),
        "bytes_up": 0,
        "bytes_down": delta,
    }
    return [rec], mark
