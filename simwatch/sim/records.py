"""Writing a device's records (``usage``, ``session``, ``event`` lines of FORMATS.md) with
the noise of delivery: late and duplicated arrivals. Times are written shifted by
``shift_s`` (whole minutes; 0 but for a fleet played at another time than it simulates).

``RecordWriter`` is the base of the fleet simulator: it owns the output (lines keyed by
arrival time), the record and arrival counters and the per-chunk random stream ``_rnd``
(reset by the simulator for every chunk, shared with the devices' state machine).
"""

from __future__ import annotations

import random
from itertools import count
from typing import TYPE_CHECKING

import orjson

from simwatch.core.timeutil import format_rfc3339
from simwatch.sim.device import next_month_start

if TYPE_CHECKING:
    from simwatch.sim.config import SimConfig
    from simwatch.sim.device import Device


class RecordWriter:
    """Formats records and delivers them (late, duplicated) into ``_out``."""

    def __init__(self, config: SimConfig, *, shift_s: float = 0.0) -> None:
        if shift_s % 60:
            raise ValueError(f"time shift {shift_s} s is not whole minutes")
        self._cfg = config
        self._shift = shift_s  # records carry event time + this (whole minutes)
        self._record_seq = count(1)
        self._arrival_seq = count(1)
        self._minute_prefix: dict[int, str] = {}
        self._secs = [f"{s:02d}Z" for s in range(60)]
        self._rnd = random.Random(0)  # noqa: S311 - synthetic data, not crypto
        self._out: list[tuple[float, int, str]] = []
        self._records = 0
        self._late_p = config.late_fraction
        self._dup_p = config.duplicate_fraction
        self._late = 0
        self._dups = 0

    def _prefix(self, minute: int) -> str:
        """``2026-11-02T10:15:`` for an epoch minute (cached: records repeat minutes a lot)."""
        if len(self._minute_prefix) > 200_000:
            self._minute_prefix.clear()
        prefix = format_rfc3339(minute * 60 + self._shift)[:17]
        self._minute_prefix[minute] = prefix
        return prefix

    def _fmt(self, t: float) -> str:
        m, sec = divmod(round(t), 60)
        return (self._minute_prefix.get(m) or self._prefix(m)) + self._secs[sec]

    def _emit(self, t: float, obj: dict[str, object]) -> None:
        # Kept as str: holding orjson's oversized bytes buffers fragments the heap badly.
        line = orjson.dumps(obj).decode()
        rnd = self._rnd.random
        late = self._late_p
        self._records += 1
        u = rnd()
        if u < late:  # one draw decides lateness and the delay
            arrival = t + 60.0 + 420.0 * u / late
            self._late += 1
        else:
            arrival = t + 0.5 + 14.5 * (u - late) / (1.0 - late)
        out = self._out
        out.append((arrival, next(self._arrival_seq), line))
        if rnd() < self._dup_p:
            self._dups += 1
            out.append((arrival + 30.0 + rnd() * 870.0, next(self._arrival_seq), line))

    def _event(self, sim: Device, t: float, etype: str, apn: str | None, cause: str | None) -> None:
        obj: dict[str, object] = {
            "kind": "event",
            "record_id": f"e-{next(self._record_seq)}",
            "iccid": sim.iccid,
            "ts": self._fmt(t),
            "type": etype,
        }
        if apn is not None:
            obj["apn"] = apn
        obj["mcc"] = sim.mcc
        obj["mnc"] = sim.mnc
        if cause is not None:
            obj["cause"] = cause
        self._emit(t, obj)

    def _session(self, sim: Device, t: float, status: str, end_cause: str | None = None) -> None:
        obj: dict[str, object] = {
            "kind": "session",
            "record_id": f"s-{next(self._record_seq)}",
            "iccid": sim.iccid,
            "session_id": sim.sess_id,
            "status": status,
            "ts": self._fmt(t),
            "apn": sim.apn,
            "mcc": sim.mcc,
            "mnc": sim.mnc,
            "rat": sim.rat,
        }
        if status != "started":
            obj["bytes_up"] = sim.sess_up
            obj["bytes_down"] = sim.sess_down
        if end_cause is not None:
            obj["end_cause"] = end_cause
        self._emit(t, obj)

    def _usage(self, sim: Device, t: float, window: float, up: int, down: int) -> None:
        prefixes = self._minute_prefix
        secs = self._secs
        m, sec = divmod(round(t), 60)
        m0, sec0 = divmod(round(t - window), 60)
        end = prefixes.get(m) or self._prefix(m)
        start = prefixes.get(m0) or self._prefix(m0)
        self._emit(
            t,
            {
                "kind": "usage",
                "record_id": f"u-{next(self._record_seq)}",
                "iccid": sim.iccid,
                "start": start + secs[sec0],
                "end": end + secs[sec],
                "bytes_up": up,
                "bytes_down": down,
                "apn": sim.apn,
                "mcc": sim.mcc,
                "mnc": sim.mnc,
                "rat": sim.rat,
            },
        )
        sim.sess_up += up
        sim.sess_down += down
        if sim.capped:
            if t >= sim.month_end:
                sim.month_end = next_month_start(t)
                sim.month_bytes = 0
            sim.month_bytes += up + down

    def _end_session(self, sim: Device, t: float, cause: str) -> None:
        if sim.sess_id is not None:
            self._session(sim, t, "ended", cause)
            sim.sess_id = None
            sim.refresh()
