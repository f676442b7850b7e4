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

A session-level SIM (``core.regime``: the emnify and 1NCE streams, a usage record when a
session closes) shows a silent fault only through its sessions, never through a report
rhythm (:func:`exposure_thresholds`): one whose session closed shows it
``session_closed_late_s`` later (it stays closed); one re-opening sessions without data
shows it as churn within ``churn_window_s``; one whose session stays open shows nothing
until it closes (whether a device's firmware churns on a broken data path is the
device's own: meters re-open, alarm panels wait). A partner's black hole that only one
APN's churning meters show is not that APN's fault while the partner's other SIMs sit in
open sessions: their verdict is "cannot tell".
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from simwatch.core import regime
from simwatch.core.evaluate import Evidence
from simwatch.core.incidents import Rest
from simwatch.core.localize import above_baseline
from simwatch.core.state import NEVER

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy.typing as npt

    from simwatch.core.evaluate import EvalParams, Evaluation
    from simwatch.core.localize import LocalizeParams
    from simwatch.core.state import FleetState

# evidence the network reports: a SIM with a session shows it within minutes
REPORTED = int(Evidence.FAILURE_END | Evidence.REJECT | Evidence.MOVED)
# the children's failing SIMs that set the exposure horizon: this quantile of their late
# thresholds (a fault's extent so far is what its slower failing SIMs show)
HORIZON_QUANTILE = 0.9


def reported_by_leaf(evaluation: Evaluation) -> npt.NDArray[np.float64]:
    """Per leaf of ``evaluation``'s counts: its failing SIMs the network reported
    failing (``REPORTED``: a failure end, a reject, a move away)."""
    n = evaluation.n
    n_leaves = len(evaluation.leaf_total)
    member = evaluation.member_leaf[:n]
    shows = evaluation.counted[:n] & (member >= 0) & evaluation.failing
    shows &= (evaluation.evidence[:n] & REPORTED) != 0
    out: npt.NDArray[np.float64] = np.bincount(member[shows], minlength=n_leaves).astype(np.float64)
    return out


def exposure_thresholds(
    state: FleetState,
    evaluation: Evaluation,
    rows: npt.NDArray[np.int64],
    eval_params: EvalParams,
) -> npt.NDArray[np.float64]:
    """Per SIM of ``rows`` (counted in ``evaluation``): how long after a silent fault
    begins it shows the fault, in seconds; NaN: it cannot show one now (module
    docstring).

    Its learned late threshold; for a session-level SIM: ``churn_window_s`` while it
    churns or fails otherwise, ``session_closed_late_s`` once its session is closed,
    NaN while its session is open."""
    out = state.rhythm.thresholds_of(rows)[0].astype(np.float64)
    c = state.cols
    session = (regime.regime_of(c.regime[rows]) == regime.SESSION) & (
        c.session_start[rows] != NEVER
    )
    if session.any():
        at = rows[session]
        by_session = np.where(c.session_open[at] != 0, np.nan, eval_params.session_closed_late_s)
        by_session[evaluation.failing[at] & np.isnan(by_session)] = eval_params.churn_window_s
        out[session] = by_session
    return out


def rest_verdict(
    state: FleetState,
    evaluation: Evaluation,
    whole: npt.NDArray[np.bool_],
    children: Sequence[npt.NDArray[np.bool_]],
    params: LocalizeParams,
    *,
    eval_params: EvalParams,
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
        child_shows = exposure_thresholds(state, ev, child_rows, eval_params)
        horizon = float(np.quantile(child_shows[failing[child_rows]], HORIZON_QUANTILE))
        exposed_rest = rest_rows[exposure_thresholds(state, ev, rest_rows, eval_params) <= horizon]
        exposed_child = child_rows[child_shows <= horizon]
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


# ---- the same verdict from per-leaf counts (a cluster's leader: ``core.merge``) ---------

# late thresholds binned in quarter octaves from a minute: a bin's SIMs are within 19 %
# of each other's threshold
EXPOSURE_BINS = 64
_BIN_FROM_S = 60.0


def exposure_bins(thresholds: npt.NDArray[np.floating]) -> npt.NDArray[np.int64]:
    """The bin of each late threshold (seconds): ``floor(4 log2(t / 60 s))`` within
    ``0 .. EXPOSURE_BINS - 1``; -1 for a threshold not learned (NaN: never exposed)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        raw = np.floor(4.0 * np.log2(np.maximum(thresholds, 1e-9) / _BIN_FROM_S))
    out: npt.NDArray[np.int64] = np.clip(np.nan_to_num(raw, nan=-1.0), 0, EXPOSURE_BINS - 1).astype(
        np.int64
    )
    out[~np.isfinite(thresholds)] = -1
    return out


def rest_verdict_counts(
    *,
    total: npt.NDArray[np.float64],
    failing: npt.NDArray[np.float64],
    expected: npt.NDArray[np.float64],
    reported: npt.NDArray[np.float64],
    counted_bins: npt.NDArray[np.float64],
    failing_bins: npt.NDArray[np.float64],
    whole: npt.NDArray[np.bool_],
    children: Sequence[npt.NDArray[np.bool_]],
    params: LocalizeParams,
) -> Rest:
    """``rest_verdict`` from per-leaf counts summed over a cluster's shards: per leaf its
    counted and failing SIMs, their expected failing count, its failing SIMs showing
    reported evidence, and its counted and failing SIMs per bin of late threshold
    (``exposure_bins``; shape (leaves, ``EXPOSURE_BINS``)). The horizon is the bin of
    the children's failing SIMs' ``HORIZON_QUANTILE``, and the exposed SIMs those of the
    bins up to it: SIMs within a bin of the horizon count as exposed (one node compares
    each SIM's own threshold). Otherwise the same decision."""
    in_children = np.zeros_like(whole)
    for mask in children:
        in_children |= mask
    rest = whole & ~in_children
    if total[rest].sum() <= 0 or total[in_children].sum() <= 0:
        return Rest.QUIET
    child_failing = float(failing[in_children].sum())
    if child_failing <= 0:
        return Rest.QUIET
    is_reported = float(reported[in_children].sum()) / child_failing >= 0.5
    ratio = expected / np.maximum(total, 1.0)
    if is_reported:
        n_l, a_l = total, failing
    else:
        cum = np.cumsum(failing_bins[in_children].sum(axis=0))
        known = float(cum[-1]) if len(cum) else 0.0
        if known <= 0:  # no failing SIM with a learned threshold: none exposed
            n_l = a_l = np.zeros_like(total)
        else:
            # np.quantile's upper neighbour: the SIM at ceil(q (N - 1)) in order
            rank = math.ceil(HORIZON_QUANTILE * (known - 1))
            horizon = int(np.searchsorted(cum, rank + 1))
            n_l = counted_bins[:, : horizon + 1].sum(axis=1)
            a_l = failing_bins[:, : horizon + 1].sum(axis=1)
    n_c = float(n_l[in_children].sum())
    a_c = float(a_l[in_children].sum())
    e_c = float((ratio * n_l)[in_children].sum())
    share = max(a_c - max(e_c, params.min_baseline_ratio * n_c), 0.0) / max(n_c, 1.0)
    n_r = float(n_l[rest].sum())
    if n_r < params.split_min_share * (n_r + n_c) or share * n_r < params.min_affected:
        return Rest.QUIET if is_reported else Rest.UNKNOWN
    a_r = float(a_l[rest].sum())
    e_r = float((ratio * n_l)[rest].sum())
    if above_baseline(a_r, e_r, n_r, params):
        return Rest.FAILING
    return Rest.HEALTHY if is_reported else Rest.QUIET
