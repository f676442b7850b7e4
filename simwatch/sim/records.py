"""Writing a device's records (``usage``, ``session``, ``event`` lines of FORMATS.md) with
the noise of delivery: late and duplicated arrivals. Times are written shifted by
``shift_s`` (whole minutes; 0 but for a fleet played at another time than it simulates).

``RecordWriter`` is the base of the fleet simulator: it owns the output (lines keyed by
arrival time), the record and arrival counters and the per-chunk random stream ``_rnd``
(reset by the simulator for every chunk, shared with the devices' state machine).

What a report becomes depends on the SIM's data regime (``Device.regime``):

* R1, application heartbeats: one usage record per report, delivered within seconds.
* R2, windowed usage (mediation, KORE usage records, Soracom stats): the reports of a
  fixed window (15 min or 1 h, aligned to the clock) summed into one record, delivered
  the SIM's platform lag (2-10 min) after the window closes. A window with no data has
  no record.
* R3, session level (emnify and 1NCE Data Streamers): usage since the last record when
  the session closes, and while it is open at most every 15 min and only once 100 kB
  have gathered, so a small device sends one usage record per session.

Session and event records are the same in every regime.
"""

from __future__ import annotations

import math
import random
from itertools import count
from typing import TYPE_CHECKING

import orjson

from simwatch.core.timeutil import format_rfc3339
from simwatch.sim.device import R1, R2, R3, next_month_start

R3_INTERIM_S = 900.0  # a session-level platform reports an open session at most this often
R3_INTERIM_BYTES = 100_000  # ... and only above this volume (emnify, 1NCE Data Streamer)

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

    def _emit(self, t: float, obj: dict[str, object], lag: float = 0.0) -> None:
        """Deliver one record of event time ``t``, ``lag`` seconds after it at the earliest
        (a platform's processing delay), late or duplicated at the configured rates."""
        # Kept as str: holding orjson's oversized bytes buffers fragments the heap badly.
        line = orjson.dumps(obj).decode()
        rnd = self._rnd.random
        late = self._late_p
        self._records += 1
        u = rnd()
        t += lag
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
        if sim.regime == R3:
            if status == "started":
                sim.r3_since = t
                sim.r3_up = sim.r3_down = 0
            elif status == "ended":
                self._flush_session_usage(sim, t)
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
        """The device sent ``up``/``down`` bytes over ``window`` seconds ending at ``t``;
        the records that produces depend on the SIM's data regime."""
        sim.sess_up += up
        sim.sess_down += down
        if sim.capped:
            if t >= sim.month_end:
                sim.month_end = next_month_start(t)
                sim.month_bytes = 0
            sim.month_bytes += up + down
        regime = sim.regime
        if regime == R1:
            self._usage_record(sim, t - window, t, up, down)
        elif regime == R2:
            w = sim.r2_window
            bucket = (t // w) * w
            if bucket != sim.acc_bucket:
                self.flush_window(sim)
                sim.acc_bucket = bucket
            sim.acc_up += up
            sim.acc_down += down
            # the window's record says where the device was when it sent, not where it
            # is when the platform closes the window (it may have moved since)
            sim.acc_attrs = (sim.apn, sim.mcc, sim.mnc, sim.rat)
        else:
            sim.r3_up += up
            sim.r3_down += down
            if sim.r3_up + sim.r3_down >= R3_INTERIM_BYTES and t - sim.r3_since >= R3_INTERIM_S:
                self._flush_session_usage(sim, t)

    def flush_window(self, sim: Device, until: float = math.inf) -> None:
        """R2: deliver the SIM's open usage window if it has closed by ``until``."""
        bucket = sim.acc_bucket
        if bucket < 0 or bucket + sim.r2_window > until:
            return
        end = bucket + sim.r2_window
        lag = sim.r2_lag * (0.8 + 0.5 * self._rnd.random())
        self._usage_record(sim, bucket, end, sim.acc_up, sim.acc_down, lag=lag, attrs=sim.acc_attrs)
        sim.acc_bucket = -1.0
        sim.acc_up = sim.acc_down = 0

    def _flush_session_usage(self, sim: Device, t: float) -> None:
        """R3: the usage since the last record of the session (interim or at its close)."""
        if sim.r3_up + sim.r3_down > 0:
            self._usage_record(sim, sim.r3_since, t, sim.r3_up, sim.r3_down)
        sim.r3_since = t
        sim.r3_up = sim.r3_down = 0

    def _usage_record(
        self,
        sim: Device,
        t0: float,
        t: float,
        up: int,
        down: int,
        *,
        lag: float = 0.0,
        attrs: tuple[str, str, str, str] | None = None,
    ) -> None:
        apn, mcc, mnc, rat = attrs or (sim.apn, sim.mcc, sim.mnc, sim.rat)
        prefixes = self._minute_prefix
        secs = self._secs
        m, sec = divmod(round(t), 60)
        m0, sec0 = divmod(round(t0), 60)
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
                "apn": apn,
                "mcc": mcc,
                "mnc": mnc,
                "rat": rat,
            },
            lag,
        )

    def _end_session(self, sim: Device, t: float, cause: str) -> None:
        if sim.sess_id is not None:
            self._session(sim, t, "ended", cause)
            sim.sess_id = None
            sim.refresh()
