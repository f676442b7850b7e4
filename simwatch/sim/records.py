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
        self._minute_prefix: dict[int, str] = {}
        self._json_strs: dict[str, str] = {}
        # usage records' attributes (apn, mcc, mnc, rat) -> their JSON members, closed
        self._usage_tails: dict[tuple[str, str, str, str], str] = {}
        self._secs = [f"{s:02d}Z" for s in range(60)]
        self._rnd = random.Random(0)  # noqa: S311 - synthetic data, not crypto
        # the delivered lines and their arrival times, in the order they were written
        # (which breaks ties of arrival time)
        self._out_at: list[float] = []
        self._out_lines: list[str] = []
        self._records = 0
        self._late_p = config.late_fraction
        self._dup_p = config.duplicate_fraction
        self._late = 0
        self._dups = 0
        # records of event time past this are simulated but not delivered (``end_at_horizon``)
        self._horizon = math.inf

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
        self._emit_line(t, orjson.dumps(obj).decode(), lag)

    def _json_str(self, value: str) -> str:
        """``value`` as orjson writes it (quoted, escaped); cached: SIMs and their
        attributes repeat in every record."""
        cache = self._json_strs
        out = cache.get(value)
        if out is None:
            if len(cache) > 200_000:
                cache.clear()
            out = cache[value] = orjson.dumps(value).decode()
        return out

    def _emit_line(self, t: float, line: str, lag: float = 0.0) -> None:
        """``_emit`` of a record already written as its JSON line."""
        rnd = self._rnd.random
        late = self._late_p
        if t > self._horizon:
            # past the run's horizon: not delivered, its draws taken all the same so that
            # every record before it is the one an endless run would have written
            rnd()
            if rnd() < self._dup_p:
                rnd()
            return
        self._records += 1
        u = rnd()
        t += lag
        if u < late:  # one draw decides lateness and the delay
            arrival = t + 60.0 + 420.0 * u / late
            self._late += 1
        else:
            arrival = t + 0.5 + 14.5 * (u - late) / (1.0 - late)
        out_at = self._out_at
        out_lines = self._out_lines
        out_at.append(arrival)
        out_lines.append(line)
        if rnd() < self._dup_p:
            self._dups += 1
            out_at.append(arrival + 30.0 + rnd() * 870.0)
            out_lines.append(line)

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

    def _report_run(
        self, sim: Device, reports: tuple[list[float], list[int], list[int]], i: int, k: int
    ) -> None:
        """The reports [i, k) of ``reports`` (times, bytes up, bytes down) of a sending
        SIM, in order: ``_usage`` of each (its own window) and its failed sends reset; for
        R1 and R3 one loop with the SIM's counters in locals (the records written on the
        way read none of them)."""
        times, ups, downs = reports
        sim.fails = 0
        regime = sim.regime
        window = sim.window
        if regime == R2:
            usage = self._usage
            for j in range(i, k):
                usage(sim, times[j], window, ups[j], downs[j])
            return
        # the month's volume of a capped SIM (``_usage``)
        capped = sim.capped
        month_end = sim.month_end
        month_bytes = sim.month_bytes
        record = self._usage_record
        sess_up = sim.sess_up
        sess_down = sim.sess_down
        if regime == R1:
            for j in range(i, k):
                up = ups[j]
                down = downs[j]
                t = times[j]
                sess_up += up
                sess_down += down
                if capped:
                    if t >= month_end:
                        month_end = next_month_start(t)
                        month_bytes = 0
                    month_bytes += up + down
                record(sim, t - window, t, up, down)
        else:
            # R3: the usage since the last record, delivered at most every R3_INTERIM_S
            # and only above R3_INTERIM_BYTES (``_usage``, ``_flush_session_usage``)
            r3_up = sim.r3_up
            r3_down = sim.r3_down
            since = sim.r3_since
            for j in range(i, k):
                up = ups[j]
                down = downs[j]
                sess_up += up
                sess_down += down
                if capped:
                    t = times[j]
                    if t >= month_end:
                        month_end = next_month_start(t)
                        month_bytes = 0
                    month_bytes += up + down
                r3_up += up
                r3_down += down
                if r3_up + r3_down >= R3_INTERIM_BYTES:
                    t = times[j]
                    if t - since >= R3_INTERIM_S:
                        record(sim, since, t, r3_up, r3_down)
                        since = t
                        r3_up = r3_down = 0
            sim.r3_up = r3_up
            sim.r3_down = r3_down
            sim.r3_since = since
        sim.sess_up = sess_up
        sim.sess_down = sess_down
        sim.month_end = month_end
        sim.month_bytes = month_bytes

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
        key = attrs or (sim.apn, sim.mcc, sim.mnc, sim.rat)
        tail = self._usage_tails.get(key)
        if tail is None:
            js = self._json_str
            apn, mcc, mnc, rat = key
            tail = f'"apn":{js(apn)},"mcc":{js(mcc)},"mnc":{js(mnc)},"rat":{js(rat)}}}'
            if len(self._usage_tails) > 200_000:
                self._usage_tails.clear()
            self._usage_tails[key] = tail
        prefixes = self._minute_prefix
        secs = self._secs
        m, sec = divmod(round(t), 60)
        m0, sec0 = divmod(round(t0), 60)
        end = prefixes.get(m) or self._prefix(m)
        start = prefixes.get(m0) or self._prefix(m0)
        # the line orjson writes for the record's dict (keys in this order; the times and
        # counts need no escaping): tests/test_sim_records.py holds them together
        line = (
            f'{{"kind":"usage","record_id":"u-{next(self._record_seq)}",'
            f'"iccid":{self._json_str(sim.iccid)},'
            f'"start":"{start}{secs[sec0]}","end":"{end}{secs[sec]}",'
            f'"bytes_up":{up:d},"bytes_down":{down:d},{tail}'
        )
        self._emit_line(t, line, lag)

    def _end_session(self, sim: Device, t: float, cause: str) -> None:
        if sim.sess_id is not None:
            self._session(sim, t, "ended", cause)
            sim.sess_id = None
            sim.refresh()
