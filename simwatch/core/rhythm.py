"""Per-SIM learned reporting rhythm and silence model, columnar (numpy), for ~1M SIMs.

Each SIM learns, from its own data arrivals, what gap between two arrivals is normal for
it, and at a time ``now`` is classified as ``OK``, ``LATE`` (overdue, not alarming yet),
``SILENT`` (the gap is beyond what its history makes plausible) or ``NEVER_SEEN``.

Model (all per SIM, one row per SIM, see ``RhythmModel``)
----------------------------------------------------------
* Gap learning. A *gap* is the time from the SIM's latest data time to a newer arrival.
  Arrivals older than or equal to the latest data time (out of order, duplicates) are
  ignored entirely: they never move ``last_data`` backwards and never create a gap (the
  gap that does get learned then spans the missed arrival, which errs on the lenient
  side). Gaps shorter than ``gap_floor_s`` (several records of one report window, e.g.
  a session start and a usage record 1 s apart) move ``last_data`` forward but are not
  learned, so bursts never teach a 1 s rhythm. Consequence: a SIM that continuously
  reports faster than the floor never gets learned and keeps the default thresholds.
* Statistics on log(gap): an EWMA of the mean ``mu`` and variance ``var`` (weight
  ``1/(n+1)`` while warming up, then ``alpha``; ``var_prior`` counts as one observation).
  Robustness: the residual ``log(gap) - mu`` is clipped to ``clip_k * max(sd,
  clip_sd_floor)`` before it updates mean and variance, so one 8 h outage of a 15-min
  device moves its typical gap by a few percent, not by 30x; a lasting rhythm change
  still gets through within tens of gaps because the clipped residuals raise ``var``
  and thereby the clip.
* A slowly decaying maximum gap ``gmax`` (decays as ``exp(-gap / gmax_tau_s)``; a new
  gap may raise it to at most ``gmax_growth`` times ``max(gmax, q)``), for devices with
  recurring long gaps (heartbeat plus events, a nightly pause the mask does not catch):
  a recurring long gap is learned within a few repetitions, a one-time outage only
  raises it ``gmax_growth``-fold and then decays.
* Thresholds for a learned SIM (``gaps_seen >= min_gaps``), with
  ``q = exp(mu + quantile_z * max(sd, sd_min))`` (an upper quantile of its gaps)::

      late   = max(late_min_s,   q + min((late_factor - 1) * q,   late_slack_max_s))
      silent = max(silent_min_s, q + min((silent_factor - 1) * q, silent_slack_max_s),
                   gmax_factor * gmax, silent_over_late * late)

  So a 15-min device is late after ~2 missed reports (~33 min) and silent after ~80 min;
  a once-a-day device is late ~2 h after its usual time and silent after ~45 h.
* Unlearned SIMs (fewer than ``min_gaps`` gaps) use ``default_late_s`` /
  ``default_silent_s``. Early rule: a SIM with ``early_min_gaps <= gaps < min_gaps`` uses
  ``early_*_factor * (largest gap)``, floored at ``early_*_min_s`` and never above the
  silent default (a 1-min device with two gaps is late after 30 min and silent after
  3 h, not 2 h / 26 h; a daily device with two one-day gaps is late and silent after
  26 h, not "late" two hours after every report).
* Daytime-only devices. An hour-of-day activity mask (24 bits, UTC hours) is kept in two
  generations of ``mask_generation_s`` (the union covers the last 3.5 to 7 days by
  default). A learned gap no longer than ``mask_max_gap_s`` marks the UTC hours of its
  middle half (``[ts - 3/4 gap, ts - 1/4 gap]``) as active: the hours in which the
  device was demonstrably reporting, without the edge hours that only see the first
  or last report of a daily block (jitter around 07:00 or 19:00 does not mark hour 6
  or 19). A SIM is *diurnal* when it is learned, its data history spans at least
  ``diurnal_min_history_s``, the longest circular run of inactive hours (its quiet
  block) is at least ``diurnal_min_quiet_h`` hours and at least
  ``diurnal_quiet_factor`` typical gaps. For diurnal SIMs, elapsed time (both when
  learning gaps and when classifying) counts only seconds inside active hours, so a
  15-min 07:00-19:00 device is OK at 03:00 and late/silent at 09:00/10:00 when it missed
  the morning. When a SIM becomes diurnal its ``gmax`` (learned on wall-clock time,
  including the nightly pause) is cut to ``q``. A once-a-day device stays on wall
  clock (its typical gap is not short compared with its quiet block). The diurnal
  decision only changes at an arrival and is stored as a flag.

* Weekday-only devices. The UTC days of the week with data in the current week are
  kept (a bit per day); when a week ends with data on at least three weekdays and none
  on Saturday or Sunday, a counter goes up, anything else (weekend data, a week without
  data) resets it. After two such weeks in a row the SIM is *weekdays only*: elapsed
  time (learning and classifying, with the active hours of a diurnal SIM too) counts
  Monday to Friday (UTC) only, so a weekend is not silence and the weekend pause is
  not learned as a long gap (``gmax`` is cut to ``q`` when the SIM becomes weekday-only,
  as for diurnal ones). One quiet weekend (an outage) is not enough. The days are
  updated only at a SIM's first data of a UTC day, so the per-record cost is one
  comparison.

Columns (34 bytes per SIM): ``last_data`` float64, ``mu``/``var``/``gmax`` float32,
``mask_cur``/``mask_prev`` uint32 (bits 0-23 hours; ``mask_cur`` bits 24-30 the days of
the current week, Monday first; ``mask_prev`` bits 24-28 hold the quiet-block length,
bits 29-30 the weekday-only week counter and bit 31 the diurnal flag), ``first_data``
uint32 epoch seconds and ``gaps_seen`` uint16 (saturating).

Timestamps are float epoch seconds (UTC); arrivals outside ``[0, 2**32)`` are ignored.
``observe`` takes ``row`` in ``[0, capacity)`` (an out-of-range row raises IndexError).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from simwatch.core.arrays import all_distinct
from simwatch.core.hourmask import (
    DAY,
    HOUR,
    HOURS_MASK,
    active_clock,
    active_clock_vec,
    core_hours,
    core_hours_vec,
    quiet_block_hours,
    workday_clock,
    workday_clock_vec,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["RhythmModel", "RhythmParams", "SimState"]


def _quiet_block_hours_vec(masks: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """``hourmask.quiet_block_hours`` of each (24-bit) mask (issue 12)."""
    masks = masks & HOURS_MASK
    zeros = ~masks & HOURS_MASK
    # the longest run of ones in the zeros written twice (circular), found by doubling:
    # ends[k] has bit b set when bits b, b-1, ... b-2**k+1 are all set; then the run
    # grows greedily by 32, 16, ... 1 while such a longer run still ends somewhere
    # (``at << 2**k`` misses a run that starts at bit 0, but the second copy holds every
    # run again from bit 24 on; an all-zero mask is answered apart)
    ends = [zeros | (zeros << 24)]
    for k in range(5):
        ends.append(ends[k] & (ends[k] << (1 << k)))
    run = np.zeros(masks.shape, np.int64)
    at = np.full(masks.shape, -1, np.int64)  # bits where a run of length ``run`` ends
    for k in range(5, -1, -1):
        longer = ends[k] & (at << (1 << k))
        found = longer != 0
        run += np.where(found, 1 << k, 0)
        at = np.where(found, longer, at)
    return np.where(masks == 0, 24, run)


_QB_SHIFT = 24
_QB_MASK = 0x1F << _QB_SHIFT
_DIURNAL_BIT = 1 << 31
# Weekdays: mask_cur bits 24-30 hold the UTC days of the week (Monday = bit 24) with data
# in the current week; mask_prev bits 29-30 count the weeks in a row with data on at least
# three weekdays and none on the weekend (0-3). Two such weeks: weekdays only.
_WEEK_SHIFT = 24
_WEEK_DAYS = 0x7F << _WEEK_SHIFT
_WD_SHIFT = 29
_WD_MASK = 0x3 << _WD_SHIFT
_WEEKDAYS_ONLY = 2 << _WD_SHIFT  # counter >= 2
_MONDAY0 = 4 * 86400.0  # 1970-01-05, the first Monday of the epoch
_WEEK_S = 7 * 86400.0
_TS_MAX = 4294967296.0
_GAPS_MAX = 65535
_CHUNK = 16384  # rows per classify chunk


class SimState(IntEnum):
    """Per-SIM classification. Value 4 is reserved for the lead's ``INACTIVE``."""

    OK = 0
    LATE = 1
    SILENT = 2
    NEVER_SEEN = 3


@dataclass(frozen=True, slots=True)
class RhythmParams:
    """Tuning of the rhythm model. Times in seconds, log-gaps in natural log units."""

    # Gaps a SIM must have shown before its own statistics are used.
    min_gaps: int = 3
    # Thresholds for SIMs with fewer than min_gaps gaps (generous: a daily device must
    # not be called silent before it was learned).
    default_late_s: float = 7200.0
    default_silent_s: float = 93600.0
    # Gaps (wall or active-hours) shorter than this are not learned (bursts, duplicates).
    gap_floor_s: float = 30.0
    # EWMA weight of a new log-gap once warmed up (the first gaps use 1/(n+1)).
    alpha: float = 0.05
    # Prior variance of log-gap, weighted as one observation (sd 0.14).
    var_prior: float = 0.02
    # A log-gap residual is clipped to clip_k * max(sd, clip_sd_floor) before learning.
    clip_k: float = 3.0
    clip_sd_floor: float = 0.35
    # q = exp(mu + quantile_z * max(sd, sd_min)): a high quantile of the SIM's gaps.
    quantile_z: float = 2.0
    sd_min: float = 0.02
    # late = q + min((late_factor - 1) * q, late_slack_max_s), at least late_min_s.
    late_factor: float = 2.0
    late_slack_max_s: float = 7200.0
    late_min_s: float = 120.0
    # silent = q + min((silent_factor - 1) * q, silent_slack_max_s), at least
    # silent_min_s, gmax_factor * gmax and silent_over_late * late.
    silent_factor: float = 5.0
    silent_slack_max_s: float = 72000.0
    silent_min_s: float = 600.0
    silent_over_late: float = 1.5
    gmax_factor: float = 1.5
    # A new gap raises gmax to at most gmax_growth * max(gmax, q); gmax decays with
    # exp(-gap / gmax_tau_s) (gap in the SIM's own clock).
    gmax_growth: float = 4.0
    gmax_tau_s: float = 259200.0
    # Early rule for early_min_gaps <= gaps < min_gaps: clamp(factor * largest gap,
    # min, default_silent_s).
    early_min_gaps: int = 2
    early_late_factor: float = 3.0
    early_late_min_s: float = 1800.0
    early_silent_factor: float = 8.0
    early_silent_min_s: float = 10800.0
    # Hour mask: generation length (union of two = the last 1 to 2 generations), and the
    # longest learned gap whose middle half marks hours as active.
    mask_generation_s: float = 302400.0
    mask_max_gap_s: float = 10800.0
    # Diurnal mode: data history of at least this long (30 h: every hour of a day seen),
    # a quiet block of at least diurnal_min_quiet_h hours and at least
    # diurnal_quiet_factor typical gaps.
    diurnal_min_history_s: float = 108000.0
    diurnal_min_quiet_h: int = 4
    diurnal_quiet_factor: float = 6.0

    def __post_init__(self) -> None:
        if self.min_gaps < 1 or self.early_min_gaps < 1:
            raise ValueError("min_gaps and early_min_gaps must be >= 1")
        if not 0.0 < self.alpha <= 1.0:
            raise ValueError("alpha must be in (0, 1]")
        if not 1 <= self.diurnal_min_quiet_h <= 24:
            raise ValueError("diurnal_min_quiet_h must be in [1, 24]")
        positive = (
            self.default_late_s,
            self.default_silent_s,
            self.gap_floor_s,
            self.clip_k,
            self.gmax_growth,
            self.gmax_tau_s,
            self.mask_generation_s,
            self.diurnal_quiet_factor,
        )
        if min(positive) <= 0.0:
            raise ValueError("times, clip_k, gmax_growth and factors must be > 0")
        if self.late_factor < 1.0 or self.silent_factor < 1.0 or self.silent_over_late < 1.0:
            raise ValueError("late_factor, silent_factor and silent_over_late must be >= 1")


class RhythmModel:
    """Columnar per-SIM rhythm model; rows are SIM indices assigned by the caller."""

    __slots__ = (
        "_cap",
        "_dirty",
        "_dirty_mv",
        "_first",
        "_first_mv",
        "_gmax",
        "_gmax_mv",
        "_last",
        "_last_mv",
        "_late_c",
        "_log_quiet",
        "_mask_cur",
        "_mask_cur_mv",
        "_mask_prev",
        "_mask_prev_mv",
        "_mu",
        "_mu_mv",
        "_n",
        "_n_mv",
        "_params",
        "_silent_c",
        "_var",
        "_var_mv",
    )

    def __init__(self, capacity: int, params: RhythmParams | None = None) -> None:
        if capacity < 0:
            raise ValueError("capacity must be >= 0")
        self._params = params if params is not None else RhythmParams()
        p = self._params
        # mu threshold per quiet-block length: diurnal iff mu <= _log_quiet[qb].
        self._log_quiet = [
            math.log(qb * HOUR / p.diurnal_quiet_factor)
            if qb >= p.diurnal_min_quiet_h
            else -math.inf
            for qb in range(25)
        ]
        self._cap = 0
        self._last: npt.NDArray[np.float64] = np.empty(0, dtype=np.float64)
        self._mu: npt.NDArray[np.float32] = np.empty(0, dtype=np.float32)
        self._var: npt.NDArray[np.float32] = np.empty(0, dtype=np.float32)
        self._gmax: npt.NDArray[np.float32] = np.empty(0, dtype=np.float32)
        self._mask_cur: npt.NDArray[np.uint32] = np.empty(0, dtype=np.uint32)
        self._mask_prev: npt.NDArray[np.uint32] = np.empty(0, dtype=np.uint32)
        self._first: npt.NDArray[np.uint32] = np.empty(0, dtype=np.uint32)
        self._n: npt.NDArray[np.uint16] = np.empty(0, dtype=np.uint16)
        # Each row's late and silent thresholds (``_thresholds`` of its mu, var, gmax and
        # gaps), kept between cycles: they change only when the row learns, which marks
        # it dirty (``_dirty``, 1: to compute again before the next read).
        self._late_c: npt.NDArray[np.float32] = np.empty(0, dtype=np.float32)
        self._silent_c: npt.NDArray[np.float32] = np.empty(0, dtype=np.float32)
        self._dirty: npt.NDArray[np.uint8] = np.empty(0, dtype=np.uint8)
        self._alloc(capacity)

    # -- storage ---------------------------------------------------------------------

    def _alloc(self, capacity: int) -> None:
        keep = min(self._cap, capacity)
        last = np.full(capacity, np.nan, dtype=np.float64)
        mu = np.zeros(capacity, dtype=np.float32)
        var = np.zeros(capacity, dtype=np.float32)
        gmax = np.zeros(capacity, dtype=np.float32)
        mask_cur = np.zeros(capacity, dtype=np.uint32)
        mask_prev = np.zeros(capacity, dtype=np.uint32)
        first = np.zeros(capacity, dtype=np.uint32)
        ngaps = np.zeros(capacity, dtype=np.uint16)
        if keep:
            last[:keep] = self._last[:keep]
            mu[:keep] = self._mu[:keep]
            var[:keep] = self._var[:keep]
            gmax[:keep] = self._gmax[:keep]
            mask_cur[:keep] = self._mask_cur[:keep]
            mask_prev[:keep] = self._mask_prev[:keep]
            first[:keep] = self._first[:keep]
            ngaps[:keep] = self._n[:keep]
        self._last = last
        self._mu = mu
        self._var = var
        self._gmax = gmax
        self._mask_cur = mask_cur
        self._mask_prev = mask_prev
        self._first = first
        self._n = ngaps
        self._late_c = np.zeros(capacity, dtype=np.float32)
        self._silent_c = np.zeros(capacity, dtype=np.float32)
        self._dirty = np.ones(capacity, dtype=np.uint8)
        self._dirty_mv = self._dirty.data.cast("B")
        # Memoryviews: scalar indexing on them is several times faster than on ndarrays.
        self._last_mv = last.data.cast("B").cast("d")
        self._mu_mv = mu.data.cast("B").cast("f")
        self._var_mv = var.data.cast("B").cast("f")
        self._gmax_mv = gmax.data.cast("B").cast("f")
        self._mask_cur_mv = mask_cur.data.cast("B").cast("I")
        self._mask_prev_mv = mask_prev.data.cast("B").cast("I")
        self._first_mv = first.data.cast("B").cast("I")
        self._n_mv = ngaps.data.cast("B").cast("H")
        self._cap = capacity

    @property
    def capacity(self) -> int:
        return self._cap

    @property
    def params(self) -> RhythmParams:
        return self._params

    def resize(self, capacity: int) -> None:
        """Grow the columns to ``capacity`` rows, keeping all data (shrinking is refused)."""
        if capacity < self._cap:
            raise ValueError(f"cannot shrink from {self._cap} to {capacity} rows")
        if capacity > self._cap:
            self._alloc(capacity)

    @property
    def last_data(self) -> npt.NDArray[np.float64]:
        """Latest data time per row (epoch seconds), NaN = never; a read-only view."""
        view = self._last.view()
        view.flags.writeable = False
        return view

    def learned(self, n: int) -> npt.NDArray[np.bool_]:
        """Per row in [0, n): the SIM has enough gaps for its own thresholds."""
        return self._n[: self._check_n(n)] >= self._params.min_gaps

    def nbytes(self) -> int:
        """Bytes held by all columns."""
        cols = (
            self._last,
            self._mu,
            self._var,
            self._gmax,
            self._mask_cur,
            self._mask_prev,
            self._first,
            self._n,
        )
        return sum(c.nbytes for c in cols)

    # -- checkpoint ------------------------------------------------------------------

    _COLUMNS = ("last", "mu", "var", "gmax", "mask_cur", "mask_prev", "first", "n")

    def export(self, n: int) -> dict[str, np.ndarray]:
        """Copies of every column's rows ``[0, n)``, by name (for a checkpoint)."""
        n = self._check_n(n)
        return {name: getattr(self, f"_{name}")[:n].copy() for name in self._COLUMNS}

    def restore(self, columns: dict[str, np.ndarray]) -> None:
        """Overwrite rows ``[0, n)`` with ``export(n)``'s columns (growing if needed)."""
        sizes = {columns[name].shape for name in self._COLUMNS}
        if len(sizes) != 1:
            raise ValueError("rhythm columns of different lengths")
        (shape,) = sizes
        n = shape[0]
        if n > self._cap:
            self.resize(n)
        for name in self._COLUMNS:
            own = getattr(self, f"_{name}")
            given = columns[name]
            if given.dtype != own.dtype or given.ndim != 1:
                raise ValueError(f"rhythm column {name}: {given.dtype}, expected {own.dtype}")
            own[:n] = given  # in place: the memoryviews stay valid
        self._dirty[:n] = 1

    def take(self, rows: npt.NDArray[np.int64]) -> dict[str, np.ndarray]:
        """Copies of every column's ``rows`` (a partition's SIMs, ``core.handoff``)."""
        if rows.size and (int(rows.min()) < 0 or int(rows.max()) >= self._cap):
            raise IndexError(f"rows out of range 0..{self._cap - 1}")
        return {name: getattr(self, f"_{name}")[rows] for name in self._COLUMNS}

    def put(self, rows: npt.NDArray[np.int64], columns: Mapping[str, np.ndarray]) -> None:
        """Overwrite ``rows`` with ``take(rows)``'s columns (in place; rows < capacity)."""
        for name in self._COLUMNS:
            own = getattr(self, f"_{name}")
            given = columns[name]
            if given.dtype != own.dtype or given.shape != rows.shape:
                raise ValueError(f"rhythm column {name}: {given.dtype}{given.shape}")
            own[rows] = given
            self._dirty[rows] = 1

    # -- learning --------------------------------------------------------------------

    def advances(self, row: int, ts: float) -> bool:
        """Whether data at ``ts`` would be the SIM's latest (``observe`` moves its last
        data time): a valid time after its last data, or its first."""
        last = self._last_mv[row]
        return 0.0 <= ts < _TS_MAX and (math.isnan(last) or ts > last)

    def advances_many(
        self, rows: npt.NDArray[np.int64], ts: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.bool_]:
        """``advances`` per element (for distinct rows)."""
        last = self._last[rows]
        out: npt.NDArray[np.bool_] = (ts >= 0.0) & (ts < _TS_MAX) & (np.isnan(last) | (ts > last))
        return out

    def observe(self, row: int, ts: float) -> None:
        """One data arrival at ``ts`` for the SIM in ``row``."""
        # One flat function with locals: this runs once per record.
        if not 0.0 <= ts < _TS_MAX:
            return
        if row < 0:
            raise IndexError(f"row {row} out of range")
        last_mv = self._last_mv
        last = last_mv[row]
        self._dirty_mv[row] = 1  # its thresholds may change
        if math.isnan(last):  # never seen: first arrival, no gap yet
            last_mv[row] = ts
            self._first_mv[row] = int(ts)
            day = int(((ts - _MONDAY0) % _WEEK_S) // DAY)
            self._mask_cur_mv[row] |= 1 << (_WEEK_SHIFT + day)
            return
        if ts <= last:  # out of order or duplicate: ignored
            return
        p = self._params
        last_mv[row] = ts
        wall = ts - last
        cur = cur0 = self._mask_cur_mv[row]
        prev = prev0 = self._mask_prev_mv[row]
        gen_len = p.mask_generation_s
        gen_new = ts // gen_len
        gen_old = last // gen_len
        if gen_new != gen_old:
            prev = (prev & ~HOURS_MASK) | (cur & HOURS_MASK if gen_new == gen_old + 1.0 else 0)
            cur &= _WEEK_DAYS
        # the days of the week: a finished week with data on 3+ weekdays and none on the
        # weekend counts one more; anything else (or a week with no data) starts again
        count0 = count = (prev & _WD_MASK) >> _WD_SHIFT
        if ts // DAY != last // DAY:  # a new UTC day (a day's bit is set by its first data)
            days = cur >> _WEEK_SHIFT
            week_new = (ts - _MONDAY0) // _WEEK_S
            week_old = (last - _MONDAY0) // _WEEK_S
            if week_new != week_old:
                if (
                    week_new == week_old + 1.0
                    and not days & 0x60
                    and (days & 0x1F).bit_count() >= 3
                ):
                    count = min(count + 1, 3)
                else:
                    count = 0
                days = 0
            day = int(((ts - _MONDAY0) % _WEEK_S) // DAY)
            if day >= 5:
                count = 0
            days |= 1 << day
            cur = (cur & ~_WEEK_DAYS) | (days << _WEEK_SHIFT)
            prev = (prev & ~_WD_MASK) | (count << _WD_SHIFT)
        weekdays = count >= 2
        if wall >= p.gap_floor_s:
            if wall <= p.mask_max_gap_s:
                h_a = int((ts - 0.75 * wall) // HOUR)
                h_b = int((ts - 0.25 * wall) // HOUR)
                if h_a == h_b:
                    cur |= 1 << (h_a % 24)
                else:
                    for h in range(h_a, h_b + 1):
                        cur |= 1 << (h % 24)
            if prev & _DIURNAL_BIT:
                core = core_hours(cur | prev)
                per_day = core.bit_count() * HOUR
                clock = workday_clock if weekdays else active_clock
                gap = clock(ts, core, per_day) - clock(last, core, per_day)
            elif weekdays:
                gap = workday_clock(ts, HOURS_MASK, DAY) - workday_clock(last, HOURS_MASK, DAY)
            else:
                gap = wall
            n = self._learn(row, gap, p) if gap >= p.gap_floor_s else self._n_mv[row]
        else:
            n = self._n_mv[row]
        if weekdays and count0 < 2 and n:
            # Entering weekday time: the wall-clock gmax holds the weekend pause.
            sd = math.sqrt(self._var_mv[row])
            q = math.exp(self._mu_mv[row] + p.quantile_z * max(sd, p.sd_min))
            self._gmax_mv[row] = min(self._gmax_mv[row], q)
        if n < p.min_gaps:
            if cur != cur0 or prev != prev0:
                union = (cur | prev) & HOURS_MASK
                self._mask_cur_mv[row] = cur
                self._mask_prev_mv[row] = (prev & ~_QB_MASK) | (
                    quiet_block_hours(union) << _QB_SHIFT
                )
            return
        if cur != cur0 or (prev ^ prev0) & HOURS_MASK:
            union = (cur | prev) & HOURS_MASK
            prev = (prev & ~_QB_MASK) | (quiet_block_hours(union) << _QB_SHIFT)
            self._mask_cur_mv[row] = cur
        diurnal = (
            ts - self._first_mv[row] >= p.diurnal_min_history_s
            and self._mu_mv[row] <= self._log_quiet[(prev & _QB_MASK) >> _QB_SHIFT]
        )
        if diurnal:
            if not prev & _DIURNAL_BIT:
                # Entering active-hours time: the wall-clock gmax holds the nightly pause.
                sd = math.sqrt(self._var_mv[row])
                q = math.exp(self._mu_mv[row] + p.quantile_z * max(sd, p.sd_min))
                self._gmax_mv[row] = min(self._gmax_mv[row], q)
                prev |= _DIURNAL_BIT
        else:
            prev &= ~_DIURNAL_BIT
        if prev != prev0:
            self._mask_prev_mv[row] = prev

    def _learn(self, row: int, gap: float, p: RhythmParams) -> int:
        """Learn one gap; returns the new gap count."""
        n_mv = self._n_mv
        n = n_mv[row]
        lg = math.log(gap)
        if n == 0:
            self._mu_mv[row] = lg
            self._var_mv[row] = p.var_prior
            self._gmax_mv[row] = gap
            n_mv[row] = 1
            return 1
        mu_mv = self._mu_mv
        var_mv = self._var_mv
        gmax_mv = self._gmax_mv
        mu = mu_mv[row]
        var = var_mv[row]
        sd = math.sqrt(var)
        clip = p.clip_k * (max(p.clip_sd_floor, sd))
        d = lg - mu
        d = clip if d > clip else (max(d, -clip))
        a = 1.0 / (n + 1)
        a = max(a, p.alpha)
        mu_mv[row] = mu + a * d
        var_mv[row] = (1.0 - a) * (var + a * d * d)
        gmax = gmax_mv[row] * math.exp(-gap / p.gmax_tau_s)
        if gap > gmax:
            if n + 1 >= p.min_gaps:
                q = math.exp(mu + p.quantile_z * (max(p.sd_min, sd)))
                cap = p.gmax_growth * (max(q, gmax))
                gmax = min(cap, gap)
            else:
                gmax = gap
        gmax_mv[row] = gmax
        if n < _GAPS_MAX:
            n += 1
            n_mv[row] = n
        return n

    def observe_many(self, rows: npt.ArrayLike, ts: npt.ArrayLike) -> None:
        """A batch of arrivals; same result as ``observe`` in ``ts`` order per row."""
        r = np.asarray(rows, dtype=np.int64).ravel()
        t = np.asarray(ts, dtype=np.float64).ravel()
        if r.shape != t.shape:
            raise ValueError("rows and ts must have the same length")
        if r.size == 0:
            return
        if int(r.min()) < 0 or int(r.max()) >= self._cap:
            raise IndexError("row out of range")
        order = np.lexsort((t, r))
        observe = self.observe
        for row, when in zip(r[order].tolist(), t[order].tolist(), strict=True):
            observe(row, when)

    # -- batch learning (issue 12: vectorized apply) ------------------------------------

    def observe_distinct(self, rows: npt.NDArray[np.int64], ts: npt.NDArray[np.float64]) -> None:
        """One arrival for each of several *distinct* rows: the same columns, bit for bit,
        as ``observe(row, t)`` on each (``tests/test_rhythm_batch.py``).

        The same formulas over arrays, in float64 with the results stored as float32, as
        ``observe`` does per row; ``log`` and ``exp`` go through ``math`` (numpy's may
        differ in the last bit). Rows on the active-hours or the weekday clock, and a
        row's first data of a UTC day (the days of the week), take ``observe`` one by one
        (minorities)."""
        if not all_distinct(rows):
            raise ValueError("observe_distinct needs distinct rows")
        valid = (ts >= 0.0) & (ts < _TS_MAX)  # NaN: not valid, as in observe
        rows = rows[valid]
        ts = ts[valid]
        if rows.size == 0:
            return
        if int(rows.min()) < 0 or int(rows.max()) >= self._cap:
            raise IndexError("row out of range")
        last = self._last[rows]
        first = np.isnan(last)
        if first.any():  # never seen: first arrival, no gap yet (and its day of the week)
            fr = rows[first]
            self._last[fr] = ts[first]
            self._first[fr] = ts[first].astype(np.uint32)
            day = np.floor_divide(np.mod(ts[first] - _MONDAY0, _WEEK_S), DAY).astype(np.int64)
            self._mask_cur[fr] |= np.left_shift(1, _WEEK_SHIFT + day).astype(np.uint32)
        newer = ~first & (ts > last)  # out of order or duplicate: ignored
        rows, ts, last = rows[newer], ts[newer], last[newer]
        prev0 = self._mask_prev[rows].astype(np.int64)
        # one by one: rows on the active-hours clock (diurnal) or the weekday clock, and
        # a row's first data of a UTC day (it updates the days of the week): minorities
        diurnal_now = (prev0 & _DIURNAL_BIT) != 0
        diurnal_now |= (prev0 & _WD_MASK) >= _WEEKDAYS_ONLY
        diurnal_now |= np.floor_divide(ts, DAY) != np.floor_divide(last, DAY)
        if diurnal_now.any():
            observe = self.observe
            for row, when in zip(rows[diurnal_now].tolist(), ts[diurnal_now].tolist(), strict=True):
                observe(row, when)
            keep = ~diurnal_now
            rows, ts, last, prev0 = rows[keep], ts[keep], last[keep], prev0[keep]
        if rows.size:
            self._observe_wall_clock(rows, ts, last, prev0)

    def _observe_wall_clock(
        self,
        rows: npt.NDArray[np.int64],
        ts: npt.NDArray[np.float64],
        last: npt.NDArray[np.float64],
        prev0: npt.NDArray[np.int64],
    ) -> None:
        """``observe`` for distinct rows with a previous arrival, not diurnal, ts > last."""
        p = self._params
        self._dirty[rows] = 1  # their thresholds may change
        self._last[rows] = ts
        wall = ts - last
        cur0 = self._mask_cur[rows].astype(np.int64)
        cur = cur0.copy()
        prev = prev0.copy()
        gen_new = np.floor_divide(ts, p.mask_generation_s)
        gen_old = np.floor_divide(last, p.mask_generation_s)
        rotate = gen_new != gen_old
        if rotate.any():
            carried = np.where(gen_new == gen_old + 1.0, cur & HOURS_MASK, 0)
            prev = np.where(rotate, (prev & ~HOURS_MASK) | carried, prev)
            cur = np.where(rotate, cur & _WEEK_DAYS, cur)
        learnable = wall >= p.gap_floor_s
        marks = learnable & (wall <= p.mask_max_gap_s)
        if marks.any():
            h_a = np.floor_divide(ts - 0.75 * wall, HOUR).astype(np.int64)
            h_b = np.floor_divide(ts - 0.25 * wall, HOUR).astype(np.int64)
            span = int((h_b - h_a)[marks].max())
            for k in range(span + 1):
                hour = h_a + k
                on = marks & (hour <= h_b)
                cur |= np.where(on, np.left_shift(1, hour % 24), 0)
        n = self._n[rows].astype(np.int64)
        learn = np.flatnonzero(learnable)  # not diurnal: the gap is the wall-clock gap
        if learn.size:
            n[learn] = self._learn_distinct(rows[learn], wall[learn], p)
        unlearned = n < p.min_gaps
        qb = _quiet_block_hours_vec((cur | prev) & HOURS_MASK) << _QB_SHIFT
        # unlearned: the masks (and the quiet block) only when they changed
        changed = (cur != cur0) | (prev != prev0)
        # learned: the quiet block when the hours changed, then the diurnal decision
        changed_learned = (cur != cur0) | (((prev ^ prev0) & HOURS_MASK) != 0)
        refresh = np.where(unlearned, changed, changed_learned)
        prev = np.where(refresh, (prev & ~_QB_MASK) | qb, prev)
        learned = ~unlearned
        if learned.any():
            lrows = rows[learned]
            lprev = prev[learned]
            mu = self._mu[lrows].astype(np.float64)
            log_quiet = np.array(self._log_quiet)[(lprev & _QB_MASK) >> _QB_SHIFT]
            history = ts[learned] - self._first[lrows].astype(np.float64)
            diurnal = (history >= p.diurnal_min_history_s) & (mu <= log_quiet)
            entering = diurnal & ((lprev & _DIURNAL_BIT) == 0)
            if entering.any():
                # entering active-hours time: the wall-clock gmax holds the nightly pause
                erows = lrows[entering]
                sd = np.sqrt(self._var[erows].astype(np.float64))
                q = [
                    math.exp(m + p.quantile_z * max(s, p.sd_min))
                    for m, s in zip(mu[entering].tolist(), sd.tolist(), strict=True)
                ]
                gmax = self._gmax[erows].astype(np.float64)
                self._gmax[erows] = np.minimum(gmax, q)
            lprev = np.where(diurnal, lprev | _DIURNAL_BIT, lprev & ~_DIURNAL_BIT)
            prev[learned] = lprev
        self._mask_cur[rows] = cur
        self._mask_prev[rows] = prev

    def _learn_distinct(
        self, rows: npt.NDArray[np.int64], gaps: npt.NDArray[np.float64], p: RhythmParams
    ) -> npt.NDArray[np.int64]:
        """``_learn`` for distinct rows; returns the new gap counts."""
        n = self._n[rows].astype(np.int64)
        lg = np.fromiter(map(math.log, gaps.tolist()), np.float64, gaps.size)
        fresh = n == 0
        if fresh.any():
            fr = rows[fresh]
            self._mu[fr] = lg[fresh]
            self._var[fr] = p.var_prior
            self._gmax[fr] = gaps[fresh]
        old = ~fresh
        if old.any():
            rw = rows[old]
            g = gaps[old]
            n_old = n[old]
            mu = self._mu[rw].astype(np.float64)
            var = self._var[rw].astype(np.float64)
            sd = np.sqrt(var)
            clip = p.clip_k * np.maximum(p.clip_sd_floor, sd)
            d = lg[old] - mu
            d = np.where(d > clip, clip, np.maximum(d, -clip))
            a = np.maximum(1.0 / (n_old + 1), p.alpha)
            self._mu[rw] = mu + a * d
            self._var[rw] = (1.0 - a) * (var + a * d * d)
            # -x / tau as observe computes it (the same float64 operations), exp by math
            decay = np.fromiter(map(math.exp, (-g / p.gmax_tau_s).tolist()), np.float64, g.size)
            gmax = self._gmax[rw].astype(np.float64) * decay
            grow = g > gmax
            if grow.any():
                capped = grow & (n_old + 1 >= p.min_gaps)
                if capped.any():
                    q = np.array(
                        [
                            math.exp(m + p.quantile_z * max(p.sd_min, s))
                            for m, s in zip(mu[capped].tolist(), sd[capped].tolist(), strict=True)
                        ]
                    )
                    cap = p.gmax_growth * np.maximum(q, gmax[capped])
                    gmax[capped] = np.minimum(cap, g[capped])
                plain = grow & ~capped
                gmax[plain] = g[plain]
            self._gmax[rw] = gmax
        n = np.where(n < _GAPS_MAX, n + 1, n)
        self._n[rows] = n
        return n

    # -- classification ----------------------------------------------------------------

    def _evaluate(
        self, now: float, lo: int, hi: int
    ) -> tuple[
        npt.NDArray[np.float32],
        npt.NDArray[np.float32],
        npt.NDArray[np.float32],
        npt.NDArray[np.bool_],
    ]:
        """Effective elapsed seconds, late and silent thresholds and diurnal flag."""
        last = self._last[lo:hi]
        elapsed = (now - last).astype(np.float32)
        prev = self._mask_prev[lo:hi]
        diurnal = prev >= _DIURNAL_BIT
        weekdays = (prev & np.uint32(_WD_MASK)) >= _WEEKDAYS_ONLY
        idx = np.flatnonzero(diurnal | weekdays)
        if idx.size:
            sub_last = last[idx]
            ok = ~np.isnan(sub_last)
            idx = idx[ok]
            sub_last = sub_last[ok]
            masks = np.where(
                diurnal[idx],
                core_hours_vec(self._mask_cur[lo:hi][idx] | prev[idx]),
                np.uint32(HOURS_MASK),
            )
            per_day = np.bitwise_count(masks).astype(np.float64) * HOUR
            t_now = np.full(idx.size, now, dtype=np.float64)
            plain = active_clock_vec(t_now, masks, per_day) - active_clock_vec(
                sub_last, masks, per_day
            )
            work = weekdays[idx]
            if work.any():
                plain[work] = workday_clock_vec(
                    t_now[work], masks[work], per_day[work]
                ) - workday_clock_vec(sub_last[work], masks[work], per_day[work])
            elapsed[idx] = plain

        self._refresh_thresholds()
        return elapsed, self._late_c[lo:hi], self._silent_c[lo:hi], diurnal

    def _thresholds(
        self,
        mu: npt.NDArray[np.float32],
        var: npt.NDArray[np.float32],
        gmax: npt.NDArray[np.float32],
        ngaps: npt.NDArray[np.uint16],
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """Late and silent thresholds from the learned statistics (module docstring)."""
        p = self._params
        sd = np.sqrt(var)
        np.maximum(sd, np.float32(p.sd_min), out=sd)
        sd *= np.float32(p.quantile_z)
        sd += mu
        q = np.exp(sd, out=sd)
        late, silent = self.interval_thresholds(q)
        np.maximum(silent, gmax * np.float32(p.gmax_factor), out=silent)
        unlearned = ngaps < p.min_gaps
        if unlearned.any():
            np.copyto(late, np.float32(p.default_late_s), where=unlearned)
            np.copyto(silent, np.float32(p.default_silent_s), where=unlearned)
            early = unlearned & (ngaps >= p.early_min_gaps)
            if early.any():
                e_idx = np.flatnonzero(early)
                big = gmax[e_idx]
                late[e_idx] = np.clip(
                    big * np.float32(p.early_late_factor), p.early_late_min_s, p.default_silent_s
                )
                silent[e_idx] = np.clip(
                    big * np.float32(p.early_silent_factor),
                    p.early_silent_min_s,
                    p.default_silent_s,
                )
        return late, silent

    def interval_thresholds(
        self, q: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """Late and silent thresholds for a typical gap ``q`` (learned, or an expected
        interval the user set), before the ``gmax`` floor: ``late = max(late_min_s, q +
        min((late_factor - 1) q, late_slack_max_s))``, ``silent = max(silent_min_s, q +
        min((silent_factor - 1) q, silent_slack_max_s), silent_over_late * late)``."""
        p = self._params
        q = np.asarray(q, dtype=np.float32)
        late = q * np.float32(p.late_factor - 1.0)
        np.minimum(late, np.float32(p.late_slack_max_s), out=late)
        late += q
        np.maximum(late, np.float32(p.late_min_s), out=late)
        silent = q * np.float32(p.silent_factor - 1.0)
        np.minimum(silent, np.float32(p.silent_slack_max_s), out=silent)
        silent += q
        np.maximum(silent, late * np.float32(p.silent_over_late), out=silent)
        np.maximum(silent, np.float32(p.silent_min_s), out=silent)
        return late, silent

    def thresholds_of(
        self, rows: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """The learned late and silent thresholds of some rows (any order)."""
        self._refresh_thresholds()
        return self._late_c[rows], self._silent_c[rows]

    def _refresh_thresholds(self) -> None:
        """Compute the kept thresholds of the rows that learned since the last read
        (``_thresholds``, elementwise: the same values as over all rows at once)."""
        dirty = np.flatnonzero(self._dirty)
        if dirty.size:
            late, silent = self._thresholds(
                self._mu[dirty], self._var[dirty], self._gmax[dirty], self._n[dirty]
            )
            self._late_c[dirty] = late
            self._silent_c[dirty] = silent
            self._dirty[dirty] = 0

    def classify(self, now: float, n: int) -> npt.NDArray[np.int8]:
        """``SimState`` values (int8) of rows ``[0, n)`` at time ``now``."""
        n = self._check_n(n)
        out = np.empty(n, dtype=np.int8)
        # Chunks keep the temporaries in cache: several times faster than whole columns.
        for lo in range(0, n, _CHUNK):
            hi = min(lo + _CHUNK, n)
            elapsed, late, silent, _ = self._evaluate(now, lo, hi)
            state = out[lo:hi]
            np.greater_equal(elapsed, late, out=state.view(np.bool_))
            state += (elapsed >= silent).view(np.int8)
            np.putmask(state, np.isnan(elapsed), np.int8(SimState.NEVER_SEEN))
        return out

    def overdue_ratio(self, now: float, n: int) -> npt.NDArray[np.float32]:
        """Effective elapsed time over the silent threshold (NaN = never seen), rows [0, n)."""
        n = self._check_n(n)
        out = np.empty(n, dtype=np.float32)
        for lo in range(0, n, _CHUNK):
            hi = min(lo + _CHUNK, n)
            elapsed, _, silent, _ = self._evaluate(now, lo, hi)
            np.divide(elapsed, silent, out=out[lo:hi])
        return out

    def _thresholds_one(self, row: int) -> tuple[float, float]:
        """``_evaluate``'s late and silent thresholds for one row, in Python floats.

        The per-SIM API asks for one row at a time, where forty numpy operations on
        one-element slices cost ~100 us; this costs a few. Same formulas, in float64
        instead of float32 (a relative difference below 1e-6; test_rhythm.py holds them
        together)."""
        p = self._params
        gaps = int(self._n[row])
        gmax = float(self._gmax[row])
        if gaps < p.min_gaps:
            if gaps < p.early_min_gaps:
                return p.default_late_s, p.default_silent_s
            late = min(max(gmax * p.early_late_factor, p.early_late_min_s), p.default_silent_s)
            silent = min(
                max(gmax * p.early_silent_factor, p.early_silent_min_s), p.default_silent_s
            )
            return late, silent
        sd = max(math.sqrt(float(self._var[row])), p.sd_min)
        q = math.exp(float(self._mu[row]) + sd * p.quantile_z)
        late = max(q + min(q * (p.late_factor - 1.0), p.late_slack_max_s), p.late_min_s)
        silent = q + min(q * (p.silent_factor - 1.0), p.silent_slack_max_s)
        silent = max(silent, gmax * p.gmax_factor, late * p.silent_over_late, p.silent_min_s)
        return late, silent

    def describe(self, row: int, now: float) -> dict[str, object]:
        """The model's view of one SIM, for the per-SIM API."""
        if not 0 <= row < self._cap:
            raise IndexError(f"row {row} out of range")
        last = float(self._last[row])
        diurnal = bool(self._mask_prev[row] >= _DIURNAL_BIT)
        weekdays = int(self._mask_prev[row]) & _WD_MASK >= _WEEKDAYS_ONLY
        if diurnal or weekdays:  # their own clock: the vectorized path (a minority of SIMs)
            elapsed_a, late_a, silent_a, _ = self._evaluate(now, row, row + 1)
            elapsed, late, silent = float(elapsed_a[0]), float(late_a[0]), float(silent_a[0])
        else:
            elapsed = now - last
            late, silent = self._thresholds_one(row)
        gaps = int(self._n[row])
        learned = gaps >= self._params.min_gaps
        never = math.isnan(last)
        if never:
            state = SimState.NEVER_SEEN
        elif elapsed >= silent:
            state = SimState.SILENT
        elif elapsed >= late:
            state = SimState.LATE
        else:
            state = SimState.OK
        hours: list[int] | None = None
        if diurnal:
            union = int(self._mask_cur[row] | self._mask_prev[row]) & HOURS_MASK
            hours = [h for h in range(24) if (union >> h) & 1]
        return {
            "last_data": None if never else last,
            "typical_gap_s": math.exp(float(self._mu[row])) if gaps else None,
            "late_after_s": late,
            "silent_after_s": silent,
            "learned": learned,
            "active_hours": hours,
            "weekdays_only": weekdays,
            "gaps_seen": gaps,
            "elapsed_s": None if never else elapsed,
            "state": state.name.lower(),
        }

    def _check_n(self, n: int) -> int:
        if not 0 <= n <= self._cap:
            raise ValueError(f"n={n} outside [0, {self._cap}]")
        return n
