"""A SIM's data regime: what its usage records are, learned from the records themselves.

Platforms deliver a device's traffic in three shapes (a fleet mixes them):

* ``per_report`` (R1): one usage record per device report (application heartbeats, MQTT,
  files from the customer's back end). Its rhythm is the device's.
* ``windowed`` (R2): usage summed over fixed clock windows (15 min to an hour: mediation,
  KORE usage records, Soracom stats about every 5 min), delivered minutes after the
  window closes. Both ends of the window lie on the clock's 5-minute grid.
* ``session`` (R3): a usage record when a data session closes, or while it is open at most
  every 15 min above a volume threshold (emnify, 1NCE Data Streamers). A small device
  sends one per session, often one a day: the record starts when its session started and
  covers at least half an hour. Such a SIM is judged by its sessions (open, closed and
  not re-opened, churning), not by a usage rhythm its data cannot show.

One record proves little (an hourly report may start as a session starts), so the regime
changes only when two records in a row agree; the first record sets it. The state is one
byte per SIM: bits 0-1 the regime, bits 2-3 a candidate, bit 4 "candidate seen once".
"""

from __future__ import annotations

from typing import Final

import numpy as np

UNKNOWN: Final = 0
PER_REPORT: Final = 1
WINDOWED: Final = 2
SESSION: Final = 3
NAMES: Final = (None, "per_report", "windowed", "session")
DESCRIPTIONS: Final = (
    None,
    "one usage record per device report: judged by its learned reporting rhythm",
    (
        "usage in fixed windows delivered after the window closes: judged by its learned "
        "rhythm of windows"
    ),
    (
        "usage only when a data session closes or grows large: judged by its sessions "
        "(a closed session not re-opened, churn), not by a report rhythm"
    ),
)

GRID_S: Final = 300  # windowed records start and end on this grid (times in an epoch
# that is a whole number of grid steps from the Unix epoch)
SESSION_MIN_S: Final = 1800  # a session-level record covers at least this long
START_TOLERANCE_S: Final = 60  # its start is a session start within this

_REGIME: Final = 0x03
_CANDIDATE_SHIFT: Final = 2
_SEEN_ONCE: Final = 0x10


def classify_usage(start: int, end: int, session_starts: np.ndarray) -> int:
    """The regime one usage record points to (times in any one epoch, whole seconds).

    ``session_starts`` are the SIM's recently seen session starts (same epoch)."""
    length = end - start
    if length <= 0:
        return PER_REPORT
    if start % GRID_S == 0 and end % GRID_S == 0:
        return WINDOWED
    if length >= SESSION_MIN_S and bool(
        (np.abs(session_starts.astype(np.int64) - start) <= START_TOLERANCE_S).any()
    ):
        return SESSION
    return PER_REPORT


def updated(packed: int, seen: int) -> int:
    """The regime byte after one more record pointing to ``seen``."""
    current = packed & _REGIME
    if current in {UNKNOWN, seen}:
        return seen
    candidate = (packed >> _CANDIDATE_SHIFT) & _REGIME
    if packed & _SEEN_ONCE and candidate == seen:
        return seen  # a second record in a row: the regime changed
    return current | (seen << _CANDIDATE_SHIFT) | _SEEN_ONCE


def regime_of(packed: int | np.ndarray) -> int | np.ndarray:
    """The regime code(s) of regime byte(s)."""
    return packed & _REGIME


def classify_usage_many(
    start: np.ndarray, end: np.ndarray, session_starts: np.ndarray
) -> np.ndarray:
    """``classify_usage`` over records (int64 arrays; ``session_starts`` one ring per row)."""
    length = end - start
    out = np.full(start.shape, PER_REPORT, np.uint8)
    windowed = (length > 0) & (start % GRID_S == 0) & (end % GRID_S == 0)
    near = np.abs(session_starts.astype(np.int64) - start[:, None]) <= START_TOLERANCE_S
    session = (length >= SESSION_MIN_S) & near.any(axis=1) & ~windowed
    out[windowed] = WINDOWED
    out[session] = SESSION
    return out


def updated_many(packed: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """``updated`` over regime bytes (uint8) and the regimes their records point to."""
    packed = packed.astype(np.uint8)
    seen = seen.astype(np.uint8)
    current = packed & _REGIME
    candidate = (packed >> _CANDIDATE_SHIFT) & _REGIME
    settle = (current == UNKNOWN) | (seen == current)
    settle |= ((packed & _SEEN_ONCE) != 0) & (candidate == seen)
    pending = current | (seen << _CANDIDATE_SHIFT) | _SEEN_ONCE
    return np.where(settle, seen, pending).astype(np.uint8)
