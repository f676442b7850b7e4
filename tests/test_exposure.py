"""A parent's rest is judged only by its SIMs that could have shown the fault by now
(``core.exposure``): two failing APNs of fast reporters on a partner whose third APN
holds slow reporters are not yet two faults (the verdict is "cannot tell")."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest
from fleet import DAY, ICCIDS, T0, Feed, inventory_row, new_engine

from simwatch.core.evaluate import Evidence, leaf_mask
from simwatch.core.exposure import exposure_bins, leaf_exposure, rest_verdict
from simwatch.core.incidents import Rest
from simwatch.core.merge import merge_reports, shard_of, shard_report
from simwatch.core.regime import SESSION, regime_of
from simwatch.core.timeutil import format_rfc3339

if TYPE_CHECKING:
    from simwatch.core.engine import Engine

FAST = {"a.fast": ICCIDS[:10], "b.fast": ICCIDS[10:20]}
REST = ICCIDS[20:40]
FAULT = T0 + 2 * DAY
PARTNER = {"partner": "26202"}


def _partner_fleet(
    shard: tuple[int, int] | None,
) -> tuple[Engine, Feed, list[tuple[str, str]]]:
    """An engine with the partner's SIMs in its inventory (those of shard i of n with
    ``shard`` = (i, n)), a feed into it, and the (APN, ICCID) of each SIM."""
    engine = new_engine()
    apns = [(apn, i) for apn, group in FAST.items() for i in group] + [("c.rest", i) for i in REST]
    if shard is not None:
        apns = [(apn, i) for apn, i in apns if shard_of(i, shard[1]) == shard[0]]
    engine.load_inventory([inventory_row(i, apns=(apn,)) for apn, i in apns])
    return engine, Feed(engine), apns


def _fleet(
    rest_every: float,
    rest_fails: bool,
    *,
    rejected: bool = False,
    shard: tuple[int, int] | None = None,
    until: float = FAULT + 3600.0,
) -> Engine:
    """The fleet, or with ``shard`` = (i, n) only the SIMs of shard i of n (``shard_of``),
    fed until ``until``."""
    engine, feed, apns = _partner_fleet(shard)
    for apn, i in apns:
        every = rest_every if apn == "c.rest" else 900.0
        stops = FAULT if apn != "c.rest" or rest_fails else FAULT + DAY
        t = T0 + 60.0 + (int(i[-2:]) % 10) * 30.0
        while t < min(stops, until):
            feed.usage(i, t, apn=apn)
            t += every
        if rejected and apn != "c.rest":  # the network refuses their data sessions
            feed.event(i, FAULT + 120.0, "pdp_reject", apn=apn, cause="gateway_failure")
    return engine


def _verdict(engine: Engine, at: float) -> Rest:
    evaluation = engine.evaluate(at).evaluation
    state = engine.state
    children = [leaf_mask(state, {"apn": apn, **PARTNER}) for apn in FAST]
    assert all(evaluation.overdue[engine.state.row(i)] for i in FAST["a.fast"])
    return rest_verdict(
        state,
        evaluation,
        leaf_mask(state, PARTNER),
        children,
        engine.config.localize,
        eval_params=engine.config.evaluation,
    )


@pytest.mark.parametrize(
    ("rest_every", "rest_fails", "expected"),
    [
        (4 * 3600.0, True, Rest.UNKNOWN),  # slow reporters: none could be overdue yet
        (900.0, False, Rest.QUIET),  # fast reporters that keep reporting: healthy
        (900.0, True, Rest.FAILING),  # fast reporters that stopped too: the parent fails
    ],
)
def test_rest_judged_by_the_sims_that_could_show_it(
    rest_every: float, rest_fails: bool, expected: Rest
) -> None:
    engine = _fleet(rest_every, rest_fails)
    assert _verdict(engine, FAULT + 2700.0) is expected


@pytest.mark.parametrize(("rest_fails", "expected"), [(True, Rest.FAILING), (False, Rest.QUIET)])
def test_slower_sims_are_exposed_once_the_fault_is_older_than_their_threshold(
    rest_fails: bool, expected: Rest
) -> None:
    # hourly reporters in the rest: their late threshold is past every one of the fast
    # APNs' (so the thresholds alone never expose them), but the fast SIMs have been
    # silent for three hours: a fault that old shows on the hourly SIMs too
    at = FAULT + 3 * 3600.0
    engine = _fleet(3600.0, rest_fails, until=at)
    assert _verdict(engine, at) is expected
    state = engine.state
    fast = state.rhythm.thresholds_of(np.array([state.row(i) for g in FAST.values() for i in g]))
    rest = state.rhythm.thresholds_of(np.array([state.row(i) for i in REST]))
    assert fast[0].max() < rest[0].min()
    assert rest[0].max() < 3 * 3600.0


def test_a_rest_the_networks_evidence_shows_healthy_is_judged_at_once() -> None:
    # the same slow rest, but the fast APNs' SIMs were refused by the network: a fault
    # the network reports shows on every SIM with a session, so a slow rest that shows
    # none is healthy, not "cannot tell yet"
    engine = _fleet(4 * 3600.0, rest_fails=False, rejected=True)
    assert _verdict(engine, FAULT + 2700.0) is Rest.HEALTHY


@pytest.mark.parametrize(
    ("rest_every", "rest_fails", "rejected", "expected"),
    [
        (4 * 3600.0, True, False, Rest.UNKNOWN),
        (900.0, False, False, Rest.QUIET),
        (900.0, True, False, Rest.FAILING),
        (4 * 3600.0, False, True, Rest.HEALTHY),
    ],
)
def test_a_cluster_leader_reaches_the_same_verdict_from_the_shards_counts(
    rest_every: float, rest_fails: bool, rejected: bool, expected: Rest
) -> None:
    # the same fleet split over two shards: the leader has only per-leaf counts, with the
    # SIMs per bin of late threshold (exposure.rest_verdict_counts)
    assert _verdict(_fleet(rest_every, rest_fails, rejected=rejected), FAULT + 2700.0) is expected
    reports = []
    for i in range(2):
        engine = _fleet(rest_every, rest_fails, rejected=rejected, shard=(i, 2))
        engine.evaluate(FAULT + 2700.0)
        report = shard_report(engine, i, 2)
        assert report is not None
        reports.append(report)
    merged = merge_reports(reports, 2)
    assert merged.included == (0, 1)
    children = [{"apn": apn, **PARTNER} for apn in FAST]
    assert merged.rest_verdict(PARTNER, children) is expected


# ---- session-level SIMs (core.regime: a usage record when a session closes) ----------

SESSION_S = 4 * 3600.0  # each SIM's data session lasts 4 hours, then re-opens


def _session_fleet(rest: str, *, shard: tuple[int, int] | None = None) -> Engine:
    """Two APNs of session-level SIMs on 26202 re-open their sessions without data from
    ``FAULT`` (churn: a black hole's only sign in such data), beside a third, ``c.rest``,
    of the same kind of SIMs, whose sessions ``rest`` says: ``open`` (opened an hour
    before the fault, nothing since), ``churn`` (they churn too), ``closed`` (closed
    with data 20 minutes after the fault)."""
    engine, feed, apns = _partner_fleet(shard)
    for apn, i in apns:
        start = T0 + 60.0 + (int(i[-2:]) % 10) * 30.0
        last = FAULT - 3600.0
        while start + SESSION_S < last:  # a usage record as each session closes
            end = start + SESSION_S
            feed.session(i, start, "started", apn=apn)
            feed.usage(i, end, apn=apn, start=format_rfc3339(start))
            feed.session(i, end, "ended", apn=apn)
            start = end + 60.0
        feed.session(i, last, "started", apn=apn)
        if apn != "c.rest" or rest == "churn":  # broken data path: re-open, re-open ...
            for j in range(4):
                feed.session(i, FAULT + 60.0 + 600.0 * j, "started", apn=apn)
        elif rest == "closed":
            end = FAULT + 1200.0
            feed.usage(i, end, apn=apn, start=format_rfc3339(last))
            feed.session(i, end, "ended", apn=apn)
    return engine


def _session_verdict(engine: Engine, at: float) -> Rest:
    evaluation = engine.evaluate(at).evaluation
    state = engine.state
    rows = np.array([state.row(i) for apns in FAST.values() for i in apns])
    assert np.all(regime_of(state.cols.regime[rows]) == SESSION)
    assert ((evaluation.evidence[rows] & Evidence.CHURN) != 0).all()
    children = [leaf_mask(state, {"apn": apn, **PARTNER}) for apn in FAST]
    whole = leaf_mask(state, PARTNER)
    config = engine.config
    return rest_verdict(
        state, evaluation, whole, children, config.localize, eval_params=config.evaluation
    )


SESSION_CASES = [
    # open sessions show a black hole only once they close (or if their firmware churns):
    # cannot tell yet, so a partner's fault that one APN's churning meters show first is
    # not that APN's (it was judged healthy by a report rhythm such data cannot have)
    ("open", Rest.UNKNOWN),
    ("churn", Rest.FAILING),  # the rest churns as well: the partner fails
    ("closed", Rest.QUIET),  # closed with data after the fault, not yet late: healthy
]


@pytest.mark.parametrize(("rest", "expected"), SESSION_CASES)
def test_a_session_level_rest_is_judged_by_its_sessions(rest: str, expected: Rest) -> None:
    assert _session_verdict(_session_fleet(rest), FAULT + 2700.0) is expected


@pytest.mark.parametrize(("rest", "expected"), SESSION_CASES)
def test_a_cluster_leader_judges_a_session_level_rest_alike(rest: str, expected: Rest) -> None:
    reports = []
    for i in range(2):
        engine = _session_fleet(rest, shard=(i, 2))
        engine.evaluate(FAULT + 2700.0)
        report = shard_report(engine, i, 2)
        assert report is not None
        reports.append(report)
    merged = merge_reports(reports, 2)
    children = [{"apn": apn, **PARTNER} for apn in FAST]
    assert merged.rest_verdict(PARTNER, children) is expected


@pytest.mark.parametrize(("rest", "healthy_open"), [("open", 20), ("churn", 0), ("closed", 0)])
def test_healthy_open_sessions_are_counted_apart(rest: str, healthy_open: int) -> None:
    # what widening compares shares on: the rest's healthy SIMs in open sessions, which
    # the exposed counts leave out (only a failing one shows by its state), on one node
    # and in the shards' reports alike
    engine = _session_fleet(rest)
    evaluation = engine.evaluate(FAULT + 2700.0).evaluation
    exposure = leaf_exposure(engine.state, evaluation, engine.config.evaluation)
    assert exposure.open_bins is not None
    rest_leaf = leaf_mask(engine.state, {"apn": "c.rest", **PARTNER})
    churn_bin = int(exposure_bins(np.array([engine.config.evaluation.churn_window_s]))[0])
    assert exposure.open_bins[rest_leaf].sum() == healthy_open
    assert exposure.open_bins[rest_leaf, churn_bin].sum() == healthy_open
    fast = leaf_mask(engine.state, {"apn": "a.fast", **PARTNER})
    assert exposure.open_bins[fast].sum() == 0  # churning: failing, exposed by it
    report = shard_report(engine, 0, 1)
    assert report is not None
    opened = [sum(leaf.open_exposure[1:]) for leaf in report.leaves if "c.rest" in leaf.values]
    assert opened == [healthy_open]
