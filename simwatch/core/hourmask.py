"""24-bit hour-of-day masks (bit h: UTC hour h is active) and time counted in active hours.

The rhythm model keeps, per SIM, which hours of the day it reports in. For a daytime-only
device, elapsed time is counted only over its active hours, so the night is not silence.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = [
    "DAY",
    "HOUR",
    "HOURS_MASK",
    "active_clock",
    "active_clock_vec",
    "core_hours",
    "core_hours_vec",
    "quiet_block_hours",
    "workday_clock",
    "workday_clock_vec",
]

HOUR: Final = 3600.0
DAY: Final = 86400.0
HOURS_MASK: Final = 0xFFFFFF
# (1 << h) - 1 for h in 0..23: the hours before hour h, for the active-seconds prefix sums.
_LOW_BITS: Final = np.array([(1 << h) - 1 for h in range(24)], dtype=np.uint32)


def quiet_block_hours(mask: int) -> int:
    """Longest circular run of inactive hours in a 24-bit hour mask."""
    mask &= HOURS_MASK
    if mask == 0:
        return 24
    zeros = ~mask & HOURS_MASK
    run_bits = zeros | (zeros << 24)
    run = 0
    while run_bits:
        run_bits &= run_bits << 1
        run += 1
    return run


def core_hours(mask: int) -> int:
    """The hours of ``mask`` whose neighbours are active too (edge hours trimmed).

    A daytime device's first and last active hour are only partly active (it starts at
    06:45, stops at 18:10), so counting them whole would make it overdue every evening
    and before its first report every morning. Elapsed time is measured over the core
    hours; a block of one or two hours keeps its hours (nothing would be left).
    """
    mask &= HOURS_MASK
    left = ((mask << 1) | (mask >> 23)) & HOURS_MASK  # bit h set: hour h-1 active
    right = ((mask >> 1) | (mask << 23)) & HOURS_MASK  # bit h set: hour h+1 active
    core = mask & left & right
    return core or mask


def core_hours_vec(masks: npt.NDArray[np.uint32]) -> npt.NDArray[np.uint32]:
    """Vectorized ``core_hours``."""
    hours = np.uint32(HOURS_MASK)
    m = masks & hours
    left = ((m << np.uint32(1)) | (m >> np.uint32(23))) & hours
    right = ((m >> np.uint32(1)) | (m << np.uint32(23))) & hours
    core = m & left & right
    out: npt.NDArray[np.uint32] = np.where(core != 0, core, m)
    return out


def active_clock(t: float, mask: int, per_day: float) -> float:
    """Active seconds from the epoch to ``t`` counting only hours set in ``mask``."""
    day, sod = divmod(t, DAY)
    hour = int(sod // HOUR)
    acc = day * per_day + (mask & ((1 << hour) - 1)).bit_count() * HOUR
    if (mask >> hour) & 1:
        acc += sod - hour * HOUR
    return acc


def active_clock_vec(
    t: npt.NDArray[np.float64], masks: npt.NDArray[np.uint32], per_day: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Vectorized ``active_clock`` (multiplications instead of slow float floor-division)."""
    day = np.floor(t * (1.0 / DAY))
    sod = t - day * DAY
    hour = np.minimum(np.floor(sod * (1.0 / HOUR)), 23.0)
    into = sod - hour * HOUR
    h = hour.astype(np.intp)
    before = np.bitwise_count(masks & _LOW_BITS[h]).astype(np.float64) * HOUR
    inside = ((masks >> h.astype(np.uint32)) & np.uint32(1)).astype(np.float64) * into
    out: npt.NDArray[np.float64] = day * per_day + before + inside
    return out


# Days since the epoch modulo 7 (1970-01-01 was a Thursday): Thu Fri Sat Sun Mon Tue Wed.
_WORKDAY: Final = np.array([1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0])
_WORKDAYS_BEFORE: Final = np.array([0.0, 1.0, 2.0, 2.0, 2.0, 3.0, 4.0])


def workday_clock(t: float, mask: int, per_day: float) -> float:
    """``active_clock`` counting Monday to Friday (UTC) only."""
    day, sod = divmod(t, DAY)
    week, rest = divmod(int(day), 7)
    acc = (5 * week + float(_WORKDAYS_BEFORE[rest])) * per_day
    if _WORKDAY[rest]:
        acc += active_clock(sod, mask, per_day)
    return acc


def workday_clock_vec(
    t: npt.NDArray[np.float64], masks: npt.NDArray[np.uint32], per_day: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Vectorized ``workday_clock``."""
    day = np.floor(t * (1.0 / DAY))
    sod = t - day * DAY
    days = day.astype(np.int64)
    week = days // 7
    rest = days - week * 7
    within = active_clock_vec(sod, masks, per_day)  # sod < DAY: the day's part only
    out: npt.NDArray[np.float64] = (5.0 * week + _WORKDAYS_BEFORE[rest]) * per_day
    out += _WORKDAY[rest] * within
    return out
