"""Whether the rest of a parent group is healthy, or has not had the time to show it.

Two sibling causes under one parent (``{apn: A, partner: P}`` and ``{apn: B, partner:
P}``) are one fault of the parent unless the parent's other children are healthy
(:meth:`IncidentManager._merge_sibling`). A silent fault (nothing reported, no data)
shows first where the fastest reporters are: a minute-reporting tracker is overdue
after minutes, an hourly meter after more than an hour, and a black hole shows as churn
only on devices that send often. So while a partner's black hole is young, its APNs
of slow reporters look healthy only because none of their SIMs was due yet; opening the
second APN as an incident of its own then pages twice for one fault, and never names
the partner.

:func:`rest_verdict` judges the rest only by its SIMs that would have shown the fault by
now: the rest's SIMs whose late threshold is no longer than that of the children's
failing SIMs (the 90th percentile of it). Too few such SIMs to see the children's share
in them: ``Rest.UNKNOWN`` (cannot tell yet), and the incident tracker keeps holding the
sibling back. When the children fail mostly by the network's own evidence (failure
ends, rejects, devices leaving), every SIM with a session shows a fault at once: the
whole rest is judged, and a healthy rest is ``Rest.HEALTHY``, two faults now (waiting
would show nothing more).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from simwatch.core.evaluate import Evidence
from simwatch.core.incidents import Rest
from simwatch.core.localize import above_baseline

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy.typing as npt

    from simwatch.core.evaluate import Evaluation
    from simwatch.core.localize import LocalizeParams
    from simwatch.core.state import FleetState

# evidence the network reports: a SIM with a session shows it within minutes
REPORTED = int(Evidence.FAILURE_END | Evidence.REJECT | Evidence.MOVED)
# the children's failing SIMs that set the exposure horizon: this quantile of their late
# thresholds (a fault's extent so far is what its slower failing SIMs show)
HORIZON_QUANTILE = 0.9


def rest_verdict(
    state: FleetState,
    evaluation: Evaluation,
    whole: npt.NDArray[np.bool_],
    children: Sequence[npt.NDArray[np.bool_]],
    params: LocalizeParams,
) -> Rest:
    """What the part of leaf set ``whole`` outside ``children`` shows (:class:`Rest`).

    Healthy is :func:`simwatch.core.localize.healthy_part`'s test
    (:func:`~simwatch.core.localize.above_baseline`), on the SIMs of the part exposed to
    the fault (module docstring)."""
    ev = evaluation
    leaf = ev.member_leaf[: ev.n]
    in_children = np.zeros_like(whole)
    for mask in children:
        in_children |= mask
    child_rows = np.flatnonzero(ev.members(in_children))
    rest_rows = np.flatnonzero(ev.members(whole & ~in_children))
    if rest_rows.size == 0 or child_rows.size == 0:
        return Rest.QUIET
    evidence = ev.evidence[: ev.n]
    failing = ev.failing
    child_failing = child_rows[failing[child_rows]]
    if child_failing.size == 0:
        return Rest.QUIET
    reported = bool(((evidence[child_failing] & REPORTED) != 0).mean() >= 0.5)
    if reported:
        exposed_rest, exposed_child = rest_rows, child_rows
    else:
        horizon = float(np.quantile(state.rhythm.thresholds_of(child_failing)[0], HORIZON_QUANTILE))
        exposed_rest = rest_rows[state.rhythm.thresholds_of(rest_rows)[0] <= horizon]
        exposed_child = child_rows[state.rhythm.thresholds_of(child_rows)[0] <= horizon]
    ratio = ev.leaf_expected / np.maximum(ev.leaf_total, 1.0)
    n_c = float(exposed_child.size)
    a_c = float(failing[exposed_child].sum())
    e_c = float(ratio[leaf[exposed_child]].sum())
    share = max(a_c - max(e_c, params.min_baseline_ratio * n_c), 0.0) / max(n_c, 1.0)
    n_r = float(exposed_rest.size)
    if n_r < params.split_min_share * (n_r + n_c) or share * n_r < params.min_affected:
        # waiting shows more of a silent fault, never more of a reported one
        return Rest.QUIET if reported else Rest.UNKNOWN
    a_r = float(failing[exposed_rest].sum())
    e_r = float(ratio[leaf[exposed_rest]].sum())
    if above_baseline(a_r, e_r, n_r, params):
        return Rest.FAILING
    return Rest.HEALTHY if reported else Rest.QUIET
