"""When an open group incident's recovery began (``Incident.recovery_onset``).

One rule, two callers: the engine (one node: it counts its own SIMs) and a cluster's
leader (``Engine.apply_merge``: the counts every shard reported, summed). Per cycle at
``now``, the SIMs of the incident's group that were failing at the previous cycle and
sent data since are appended to ``Incident.recoveries``; once at least
``EvalParams.recovery_min`` and ``recovery_share`` of its peak of failing SIMs did within
``recovery_window_s``, the onset is the cycle before the first of the latest of them
that reach that count alone (``_onset``). Session-level
SIMs show a black hole's end only as their churn stopping (``evaluate.churn_stop``).
An onset is void, and counting starts again, once the incident's failing count grows
past ``recovery_regrowth`` times its peak at the onset plus ``recovery_min``: the fault
was still spreading.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from simwatch.core.evaluate import EvalParams
    from simwatch.core.incidents import Incident


def advance_recovery(
    incident: Incident,
    now: float,
    recovered: float,
    churn_stop_at: Callable[[], float] | None,
    *,
    params: EvalParams,
    interval_s: float,
) -> None:
    """Count ``recovered`` SIMs at ``now`` toward ``incident``'s recovery and set its
    onset when due; ``churn_stop_at()`` (None: no churner) says when its churners
    stopped (NaN: not yet), asked only while no onset is set."""
    if recovered:
        incident.recoveries.append([now, float(recovered)])
    recent = [r for r in incident.recoveries if r[0] > now - params.recovery_window_s]
    incident.recoveries = recent
    if incident.recovery_onset is not None:
        grown = params.recovery_regrowth * incident.recovery_peak + params.recovery_min
        if incident.affected <= grown:
            return
        # still spreading: what came back was the group's turnover, not the fault's end
        incident.recovery_onset = None
        incident.recoveries = recent = [r for r in recent if r[0] >= now]
    needed = max(params.recovery_min, params.recovery_share * incident.peak_affected)
    if recent and sum(r[1] for r in recent) >= needed:
        incident.recovery_onset = _onset(recent, needed, interval_s)
        incident.recovery_peak = incident.peak_affected
        return
    if churn_stop_at is None:
        return
    stopped = churn_stop_at()
    if not math.isnan(stopped):
        incident.recovery_onset = stopped
        incident.recovery_peak = incident.peak_affected


def _onset(recent: list[list[float]], needed: float, interval_s: float) -> float:
    """When the recovery began: the cycle before the first of the latest recovery cycles
    whose SIMs alone reach ``needed`` (data that came in a cycle was sent after the cycle
    before it). Not the first come-back in the window: while a fault goes on, a SIM
    comes back now and then (a late window delivered, a device that re-attached), and an
    onset dated from those would start the silent SIMs' wait for their next report
    before the fault ended. Found at 50,000 SIMs (a mixed fleet's black hole of a
    partner, ended 17:00): single SIMs at 16:51, 16:56 and 16:57, then 18 to 37 a
    minute from 17:01; the onset was 16:50, the SIMs with 15-minute windows were late
    again from 17:21, before their first window after the end arrived, and paged."""
    total = 0.0
    for at, count in reversed(recent):
        total += count
        if total >= needed:
            return at - interval_s
    return recent[0][0] - interval_s


__all__ = ["advance_recovery"]
