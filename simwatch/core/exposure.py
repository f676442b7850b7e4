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
open sessions: their verdict is "cannot tell". Widening (:func:`widen_silent`) compares
two parts' shares instead, so there a part's healthy SIMs in open sessions count as
exposed beside its failing ones (:func:`open_sessions`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from simwatch.core import regime
from simwatch.core.evaluate import Evidence
from simwatch.core.incidents import Rest
from simwatch.core.localize import (
    Cause,
    LeafTable,
    above_baseline,
    llr,
    share_evidence,
    uncovered,
)
from simwatch.core.state import NEVER

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import numpy.typing as npt

    from simwatch.core.evaluate import EvalParams, Evaluation
    from simwatch.core.localize import LocalizeParams
    from simwatch.core.state import FleetState

# evidence the network reports: a SIM with a session shows it within minutes
REPORTED = int(Evidence.FAILURE_END | Evidence.REJECT | Evidence.MOVED)
# the children's failing SIMs that set the exposure horizon: this quantile of their late
# thresholds (a fault's extent so far is what its slower failing SIMs show)
HORIZON_QUANTILE = 0.9
# ... and no shorter than the fault's age: this quantile of the silence of the children's
# overdue SIMs (a SIM the fault hit last reported before it began, so a low quantile of
# their silence is just over its age; a high one would count long-dead devices)
AGE_QUANTILE = 0.25
# ... when at least this share of the children's failing SIMs are overdue by their rhythm
# (a fault that shows mostly as churn has no age in silence; its few overdue SIMs may be
# long-dead devices: one silent 37 h set a session-level black hole's horizon)
AGE_MIN_SHARE = 0.5


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
    session = _session_level(state, rows)
    if session.any():
        at = rows[session]
        by_session = np.where(c.session_open[at] != 0, np.nan, eval_params.session_closed_late_s)
        by_session[evaluation.failing[at] & np.isnan(by_session)] = eval_params.churn_window_s
        out[session] = by_session
    return out


def open_sessions(
    state: FleetState,
    rows: npt.NDArray[np.int64],
    thresholds: npt.NDArray[np.float64],
    eval_params: EvalParams,
) -> npt.NDArray[np.float64]:
    """Per SIM of ``rows``: ``churn_window_s`` for a session-level SIM that
    :func:`exposure_thresholds` (``thresholds``, of the same rows) cannot expose, a
    healthy one in an open session; NaN for the others.

    A session-level SIM in an open session is exposed only while it fails (churns, or
    its group is dark): whether a healthy one would churn if its data path broke is its
    firmware's, unknown until it does. Counting only the failing ones makes any
    open-session part look wholly failing: at 50,000 SIMs (R3, ``partner_outage`` seed
    1) Germany's other partners showed 7 failing of 7 exposed (devices that had moved
    between them; 6,199 SIMs in all) and the partner's page was widened to the country.
    A share compared between two parts (``widen_silent``) needs both parts' open
    sessions, failing or not: these are the healthy ones."""
    unexposed = _session_level(state, rows) & np.isnan(thresholds)
    return np.where(unexposed, eval_params.churn_window_s, np.nan)


def _session_level(state: FleetState, rows: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    """Bool per SIM of ``rows``: judged by its sessions (``exposure_thresholds``)."""
    c = state.cols
    out: npt.NDArray[np.bool_] = (regime.regime_of(c.regime[rows]) == regime.SESSION) & (
        c.session_start[rows] != NEVER
    )
    return out


def silence_of(
    state: FleetState, evaluation: Evaluation, rows: npt.NDArray[np.int64]
) -> npt.NDArray[np.float64]:
    """Per SIM of ``rows``: how long it has been silent (s) if it is overdue by its report
    rhythm, NaN otherwise (not overdue, or judged by its sessions): what dates a silent
    fault (``AGE_QUANTILE``)."""
    out = evaluation.now - state.rhythm.last_data[rows]
    out[~evaluation.overdue[rows] | _session_level(state, rows)] = np.nan
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
        silence = silence_of(state, ev, child_failing)
        silent = ~np.isnan(silence)
        if silent.sum() >= AGE_MIN_SHARE * silence.size:
            horizon = max(horizon, float(np.nanquantile(silence, AGE_QUANTILE)))
        exposed_rest = rest_rows[exposure_thresholds(state, ev, rest_rows, eval_params) <= horizon]
        exposed_child = child_rows[child_shows <= horizon]
    ratio = ev.leaf_expected / np.maximum(ev.leaf_total, 1.0)
    child = (
        float(failing[exposed_child].sum()),
        float(exposed_child.size),
        float(ratio[leaf[exposed_child]].sum()),
    )
    rest = (
        float(failing[exposed_rest].sum()),
        float(exposed_rest.size),
        float(ratio[leaf[exposed_rest]].sum()),
    )
    return _verdict(child, rest, reported=reported, params=params)


# a rest with at least this many failing SIMs that fail like the children fails with them,
# however few SIMs it has (``_verdict``)
MIN_ALIKE = 2.0


def _verdict(
    child: tuple[float, float, float],
    rest: tuple[float, float, float],
    *,
    reported: bool,
    params: LocalizeParams,
) -> Rest:
    """The rest's verdict from the children's and the rest's (failing, counted, expected)
    SIMs (exposed ones for a silent fault).

    ``FAILING`` when the rest fails like the children (one share of the members on top of
    their baseline: ``localize.share_evidence`` above ``generalize_margin``) with at least
    ``MIN_ALIKE`` failing SIMs, or above its baseline (``above_baseline``: at least
    ``min_affected``). A rest too small to show ``min_affected`` failing at the children's
    share cannot tell otherwise (a silent fault: ``UNKNOWN``, waiting shows more; a
    reported one: ``QUIET``); else ``HEALTHY`` (reported) or ``QUIET`` (silent). Before
    the first rule, 3 of a country's 8 other SIMs refused alike were "healthy" (fewer
    than 5), and a page named one partner for 4 minutes of the country's APN fault."""
    a_c, n_c, e_c = child
    a_r, n_r, e_r = rest
    if a_r >= MIN_ALIKE and (
        share_evidence(child, rest, params.min_baseline_ratio) > params.generalize_margin
    ):
        return Rest.FAILING
    share = max(a_c - max(e_c, params.min_baseline_ratio * n_c), 0.0) / max(n_c, 1.0)
    if n_r < params.split_min_share * (n_r + n_c) or share * n_r < params.min_affected:
        # waiting shows more of a silent fault, never more of a reported one
        return Rest.QUIET if reported else Rest.UNKNOWN
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


@dataclass(frozen=True, slots=True)
class LeafExposure:
    """Per leaf of a table, what a silent fault's exposure is judged on: its failing SIMs
    showing reported evidence; its counted and failing SIMs per bin of late threshold
    (``exposure_bins``; shape (leaves, ``EXPOSURE_BINS``)); its SIMs overdue by their
    report rhythm per bin of silence (the fault's age: ``AGE_QUANTILE``; None: not known,
    a cluster shard of an older version). Summable over a cluster's shards."""

    reported: npt.NDArray[np.float64]
    counted_bins: npt.NDArray[np.float64]
    failing_bins: npt.NDArray[np.float64]
    silence_bins: npt.NDArray[np.float64] | None = None
    # healthy session-level SIMs in open sessions per bin (``open_sessions``), which
    # ``counted_bins`` leaves out; None: not known (a cluster shard of an older version)
    open_bins: npt.NDArray[np.float64] | None = None


@dataclass(frozen=True, slots=True)
class SimBins:
    """Per SIM counted in a leaf of an evaluation, in row order: its leaf, the bin of its
    late threshold and of its silence (``exposure_bins``; -1: none), whether it fails.
    What :class:`LeafExposure` sums, one node's dense table or a shard report's sparse
    leaves (``merge``)."""

    leaf: npt.NDArray[np.int64]
    threshold: npt.NDArray[np.int64]
    silence: npt.NDArray[np.int64]
    failing: npt.NDArray[np.bool_]
    # healthy session-level SIMs in an open session: the bin they would show a silent
    # fault by churn in (``churn_window_s``), -1 for the others (``open_sessions``)
    open: npt.NDArray[np.int64]


def sim_bins(state: FleetState, evaluation: Evaluation, eval_params: EvalParams) -> SimBins:
    """``evaluation``'s :class:`SimBins`."""
    ev = evaluation
    member = ev.member_leaf[: ev.n]
    rows = np.flatnonzero(ev.counted[: ev.n] & (member >= 0))
    thresholds = exposure_thresholds(state, ev, rows, eval_params)
    return SimBins(
        leaf=member[rows].astype(np.int64),
        threshold=exposure_bins(thresholds),
        silence=exposure_bins(silence_of(state, ev, rows)),
        failing=ev.failing[rows],
        open=exposure_bins(open_sessions(state, rows, thresholds, eval_params)),
    )


def leaf_exposure(
    state: FleetState, evaluation: Evaluation, eval_params: EvalParams
) -> LeafExposure:
    """``evaluation``'s :class:`LeafExposure` (one node's)."""
    n_leaves = len(evaluation.leaf_total)
    sims = sim_bins(state, evaluation, eval_params)

    def per_leaf(binned: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        keys = sims.leaf[binned >= 0] * EXPOSURE_BINS + binned[binned >= 0]
        out = np.bincount(keys, minlength=n_leaves * EXPOSURE_BINS).astype(np.float64)
        return out.reshape(n_leaves, EXPOSURE_BINS)

    return LeafExposure(
        reported=reported_by_leaf(evaluation),
        counted_bins=per_leaf(sims.threshold),
        failing_bins=per_leaf(np.where(sims.failing, sims.threshold, -1)),
        silence_bins=per_leaf(sims.silence),
        open_bins=per_leaf(sims.open),
    )


def _quantile_bin(counts: npt.NDArray[np.float64], q: float) -> int:
    """The bin holding quantile ``q`` of SIMs counted per bin (``np.quantile``'s upper
    neighbour: the SIM at ``ceil(q (N - 1))`` in order); -1 when there are none."""
    cum = np.cumsum(counts)
    known = float(cum[-1]) if len(cum) else 0.0
    if known <= 0:
        return -1
    return int(np.searchsorted(cum, math.ceil(q * (known - 1)) + 1))


def exposed_counts(
    table: LeafTable,
    exposure: LeafExposure,
    children: npt.NDArray[np.bool_],
    *,
    open_sessions: bool = False,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]] | None:
    """Per leaf of ``table``: its failing, counted and expected SIMs among those exposed
    to the silent fault of the leaves ``children`` (a bool mask): those whose late
    threshold's bin is no later than the horizon, the bin of the children's failing SIMs'
    ``HORIZON_QUANTILE``, or of their fault's age (their overdue SIMs' silence at
    ``AGE_QUANTILE``, when they are ``AGE_MIN_SHARE`` of the failing) when later.
    None: the children fail mostly by the network's own evidence (``REPORTED``), which
    every SIM with a session shows at once. ``open_sessions``: healthy session-level SIMs
    in open sessions count as exposed too, as their failing ones do (``open_bins``;
    a share compared between two parts)."""
    child_failing = float(table.affected[children].sum())
    if child_failing <= 0:
        return None
    if float(exposure.reported[children].sum()) / child_failing >= 0.5:
        return None
    ratio = table.expected / np.maximum(table.total, 1.0)
    horizon = _quantile_bin(exposure.failing_bins[children].sum(axis=0), HORIZON_QUANTILE)
    if exposure.silence_bins is not None:
        silent = exposure.silence_bins[children].sum(axis=0)
        if float(silent.sum()) >= AGE_MIN_SHARE * child_failing:
            horizon = max(horizon, _quantile_bin(silent, AGE_QUANTILE))
    n_l = exposure.counted_bins[:, : horizon + 1].sum(axis=1)
    if open_sessions and exposure.open_bins is not None:
        n_l = n_l + exposure.open_bins[:, : horizon + 1].sum(axis=1)
    a_l = exposure.failing_bins[:, : horizon + 1].sum(axis=1)
    return a_l, n_l, ratio * n_l


def rest_verdict_counts(
    table: LeafTable,
    exposure: LeafExposure,
    whole: npt.NDArray[np.bool_],
    children: Sequence[npt.NDArray[np.bool_]],
    params: LocalizeParams,
) -> Rest:
    """``rest_verdict`` from per-leaf counts summed over a cluster's shards (``table``:
    counted, failing and expected SIMs per leaf; ``exposure``: their exposure), on the
    SIMs :func:`exposed_counts` finds exposed: SIMs within a bin of the horizon count as
    exposed (one node compares each SIM's own threshold). Otherwise the same decision."""
    in_children = np.zeros_like(whole)
    for mask in children:
        in_children |= mask
    rest = whole & ~in_children
    total = table.total
    if total[rest].sum() <= 0 or total[in_children].sum() <= 0:
        return Rest.QUIET
    if float(table.affected[in_children].sum()) <= 0:
        return Rest.QUIET
    exposed = exposed_counts(table, exposure, in_children)
    is_reported = exposed is None
    if exposed is None:
        a_l, n_l = table.affected, total
        e_l = table.expected
    else:
        a_l, n_l, e_l = exposed
    child = (
        float(a_l[in_children].sum()),
        float(n_l[in_children].sum()),
        float(e_l[in_children].sum()),
    )
    part = (float(a_l[rest].sum()), float(n_l[rest].sum()), float(e_l[rest].sum()))
    return _verdict(child, part, reported=is_reported, params=params)


# ---- a silent cause named wider when its parent's exposed SIMs fail alike --------------


def widen_silent(
    causes: Sequence[Cause],
    table: LeafTable,
    exposure: LeafExposure,
    params: LocalizeParams,
) -> list[Cause]:
    """``causes`` (``localize``'s, on ``table``), each silent one moved to its parent
    while the parent's other SIMs exposed to the fault fail like it.

    A silent fault shows first on its fast reporters: a partner's black hole is at first
    the failing share of its one APN of 15-minute meters, its other APNs' hourly and
    daily reporters not yet due. Localization judges the parent's other leaves on all
    their SIMs and keeps naming the APN until enough of the slow reporters are overdue,
    as long as an hour past the fault's start. Here the parent (one attribute fewer, or
    one swapped for another holding more leaves, all of the cause's: a partner's
    country) replaces the cause when its other leaves, the other causes' left out, fail
    on their exposed SIMs (:func:`exposed_counts`, healthy open sessions included) above
    their baseline and like the cause (``localize.share_evidence`` by more than
    ``generalize_margin`` nats). A cause
    the network reports is never moved (its exposure is all its SIMs: localization
    judged it). A cause another covers after the moves is dropped."""
    out: list[Cause] = []
    moved = False
    masks = [table.leaves_of(c.dims) for c in causes]
    for i, cause in enumerate(causes):
        named = cause
        others = np.zeros(len(table.total), bool)
        for j, mask in enumerate(masks):
            if j != i:
                others |= mask
        for _ in range(len(table.dims)):
            wider = _wider(named, others, table, exposure, params)
            if wider is None:
                break
            named, moved = wider, True
        out.append(named)
    if not moved:
        return out
    kept = uncovered([table.leaves_of(c.dims) for c in out])
    return sorted((out[i] for i in kept), key=lambda c: -c.score)


def _parents(dims: Mapping[str, str], table: LeafTable) -> list[dict[str, str]]:
    """The groups with one of ``dims``' attributes fewer, or swapped for another whose
    group holds all of ``dims``' leaves and more (never the whole fleet)."""
    inside = table.leaves_of(dims)
    out = [{k: v for k, v in dims.items() if k != d} for d in dims if len(dims) > 1]
    for column, dim in enumerate(table.dims):
        if dim in dims:
            continue
        values = np.unique(table.codes[inside, column])
        if len(values) != 1:
            continue
        value = table.labels[column][int(values[0])]
        for d in dims:
            swapped = {k: v for k, v in dims.items() if k != d} | {dim: value}
            if int(table.leaves_of(swapped).sum()) > int(inside.sum()):
                out.append(swapped)
    return out


def _wider(
    cause: Cause,
    others: npt.NDArray[np.bool_],
    table: LeafTable,
    exposure: LeafExposure,
    params: LocalizeParams,
) -> Cause | None:
    """The parent of ``cause`` that :func:`widen_silent` moves it to, or None."""
    inside = table.leaves_of(cause.dims)
    exposed = exposed_counts(table, exposure, inside, open_sessions=True)
    if exposed is None:
        return None
    a_l, n_l, e_l = exposed
    c_part = (float(a_l[inside].sum()), float(n_l[inside].sum()), float(e_l[inside].sum()))
    best: tuple[float, dict[str, str]] | None = None
    for parent in _parents(cause.dims, table):
        rest = table.leaves_of(parent) & ~inside & ~others
        r_part = (float(a_l[rest].sum()), float(n_l[rest].sum()), float(e_l[rest].sum()))
        if not above_baseline(r_part[0], r_part[2], r_part[1], params):
            continue
        gain = share_evidence(c_part, r_part, params.min_baseline_ratio)
        if gain > params.generalize_margin and (best is None or gain > best[0]):
            best = (gain, parent)
    if best is None:
        return None
    leaves = table.leaves_of(best[1])
    a = float(table.affected[leaves].sum())
    n = float(table.total[leaves].sum())
    e = max(float(table.expected[leaves].sum()), params.min_baseline_ratio * n)
    return Cause(dims=best[1], affected=a, total=n, expected=e, score=llr(a, e))
