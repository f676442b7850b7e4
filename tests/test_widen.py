"""A silent cause is named as wide as the SIMs that could show it (``exposure.widen_silent``).

Hand-made per-leaf counts, as one node or a cluster's leader has them: the numbers of the
2,000-SIM sweep's R1 black hole (``partial_blackhole``, seed 1, 29 minutes in), where a
partner's third of its devices went dark and localization named only its APN of
15-minute meters for as long as the partner's slower SIMs were not due. The engine's
end of it, on simulated fleets, is the scenario sweep (``bench/scenarios.py``).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import orjson
import pytest

from simwatch.core.exposure import (
    EXPOSURE_BINS,
    LeafExposure,
    exposed_counts,
    exposure_bins,
    rest_verdict_counts,
    widen_silent,
)
from simwatch.core.incidents import Rest
from simwatch.core.localize import LeafTable, LocalizeParams, above_baseline, localize
from simwatch.core.merge import (
    CARRIES_EXPOSURE,
    LeafCounts,
    ShardReport,
    merge_reports,
    merged_causes,
)

DIMS = ("apn", "partner")
AT = 1_794_960_000.0
PARAMS = LocalizeParams()
METERS = {"apn": "meters.acme", "partner": "26201"}
PARTNER = {"partner": "26201"}
FAST, SLOW = 19, 36  # bins of late threshold: 32 minutes (15-minute meters), 9 hours
SILENT_FOR = 20  # the meters' overdue SIMs' silence: 38 minutes


def _leaf(
    values: tuple[str, str],
    counted: dict[int, float],
    failing: dict[int, float],
    expected: float,
    *,
    silence: dict[int, float] | None = None,
    reported: float = 0.0,
) -> dict[str, object]:
    return {
        "values": values,
        "counted": counted,
        "failing": failing,
        "expected": expected,
        "silence": silence or {},
        "reported": reported,
    }


def fleet(
    *,
    alarms_failing: float = 7.0,
    alarms_bin: int = FAST,
    silent_for: int = SILENT_FOR,
    reported: float = 0.0,
) -> list[dict[str, object]]:
    """Partner 26201: 59 meters, 20 of them dark; 128 alarm panels, 44 of them due by now
    (in ``alarms_bin``), ``alarms_failing`` of those silent; 26202 healthy."""
    return [
        _leaf(
            ("meters.acme", "26201"),
            {FAST: 59.0},
            {FAST: 20.0},
            0.1,
            silence={silent_for: 20.0},
            reported=reported,
        ),
        _leaf(
            ("alarms.acme", "26201"),
            {alarms_bin: 44.0, SLOW: 84.0},
            {alarms_bin: alarms_failing},
            3.9,
            silence={alarms_bin + 1: alarms_failing},
        ),
        _leaf(("meters.acme", "26202"), {FAST: 60.0}, {}, 0.1),
        _leaf(("alarms.acme", "26202"), {FAST: 40.0, SLOW: 80.0}, {FAST: 1.0}, 3.6),
    ]


def _bins(counts: dict[int, float]) -> np.ndarray:
    out = np.zeros(EXPOSURE_BINS)
    for b, k in counts.items():
        out[b] = k
    return out


def table_of(leaves: list[dict[str, object]]) -> tuple[LeafTable, LeafExposure]:
    rows = [
        (
            leaf["values"],
            sum(leaf["failing"].values()),  # type: ignore[attr-defined]
            sum(leaf["counted"].values()),  # type: ignore[attr-defined]
            leaf["expected"],
        )
        for leaf in leaves
    ]
    table = LeafTable.from_rows(DIMS, rows)  # type: ignore[arg-type]
    exposure = LeafExposure(
        reported=np.array([leaf["reported"] for leaf in leaves], float),
        counted_bins=np.stack([_bins(leaf["counted"]) for leaf in leaves]),  # type: ignore[arg-type]
        failing_bins=np.stack([_bins(leaf["failing"]) for leaf in leaves]),  # type: ignore[arg-type]
        silence_bins=np.stack([_bins(leaf["silence"]) for leaf in leaves]),  # type: ignore[arg-type]
    )
    return table, exposure


def named(leaves: list[dict[str, object]]) -> list[dict[str, str]]:
    table, exposure = table_of(leaves)
    return [dict(c.dims) for c in widen_silent(localize(table, PARAMS), table, exposure, PARAMS)]


def test_a_partner_s_black_hole_is_named_once_its_due_sims_fail_alike() -> None:
    table, _ = table_of(fleet())
    # localization judges the alarm panels on all 128: 7 silent is their usual 3.9 or so
    assert [dict(c.dims) for c in localize(table, PARAMS)] == [METERS]
    # on the 44 that could show it by now, 7 silent is a sixth, as the meters' third is
    # (the rest of a partial fault shows as it comes due)
    assert named(fleet()) == [PARTNER]
    widened = widen_silent(localize(table, PARAMS), table, table_of(fleet())[1], PARAMS)[0]
    assert (widened.affected, widened.total) == (27.0, 187.0)  # the partner's counts
    assert widened.score > 0


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"alarms_failing": 1.0}, "its other APN's due SIMs report: the meters' fault"),
        ({"alarms_bin": SLOW - 1}, "its other APN's failing SIMs are not due yet: cannot tell"),
        ({"reported": 15.0}, "the network reports it: localization saw all of it"),
    ],
)
def test_a_silent_cause_stays_where_its_exposed_rest_is_healthy(
    change: dict[str, float], why: str
) -> None:
    assert named(fleet(**change)) == [METERS], why  # type: ignore[arg-type]


def test_too_few_due_sims_to_tell_leave_the_cause_as_named() -> None:
    # 2 of the 4 alarm panels due by now silent: alike, but too few to form a cause
    leaves = fleet()
    leaves[1] = {**leaves[1], "counted": {FAST: 4.0, SLOW: 124.0}, "failing": {FAST: 2.0}}
    assert named(leaves) == [METERS]


def test_a_rest_failing_unlike_the_cause_leaves_it_as_named() -> None:
    # the meters wholly dark, a sixth of the due alarm panels silent: above their usual,
    # but not the meters' fault reaching them (the one-share model prefers apart)
    leaves = fleet(alarms_failing=8.0)
    leaves[0] = {**leaves[0], "failing": {FAST: 59.0}, "silence": {SILENT_FOR: 59.0}}
    table, exposure = table_of(leaves)
    counts = exposed_counts(table, exposure, table.leaves_of(METERS))
    assert counts is not None
    assert above_baseline(8.0, float(counts[2][1]), 44.0, PARAMS)
    assert named(leaves) == [METERS]


def test_the_horizon_grows_with_the_fault_s_age() -> None:
    # alarm panels due after 45 minutes (bin 21), past the meters' thresholds (bin 19):
    # exposed only once the meters' failing SIMs have been silent that long
    young = fleet(alarms_bin=FAST + 2, silent_for=FAST + 1)
    old = fleet(alarms_bin=FAST + 2, silent_for=FAST + 2)
    assert named(young) == [METERS]
    assert named(old) == [PARTNER]
    table, exposure = table_of(old)
    counts = exposed_counts(table, exposure, table.leaves_of(METERS))
    assert counts is not None
    assert counts[1].tolist() == [59.0, 44.0, 60.0, 40.0]  # the 9-hourly not exposed


def test_a_fault_that_shows_mostly_otherwise_has_no_age_in_silence() -> None:
    # 3 of the meters' 20 failing SIMs overdue by their rhythm (the rest churning, say),
    # silent for 37 h: long-dead devices, not the fault's age (R3's black hole, seed 9,
    # held on the APN 37 min longer by them)
    old = fleet(alarms_bin=FAST + 2, silent_for=FAST + 2)
    dead = [{**old[0], "silence": {33: 3.0}}, *old[1:]]
    assert named(old) == [PARTNER]
    assert named(dead) == [METERS]


def test_another_fault_s_leaves_are_not_the_rest() -> None:
    # one APN dark on two partners, each its own fault (as two countries would be): the
    # other's SIMs are not the rest of the APN, and neither names the APN fleet-wide
    leaves = [
        _leaf(("meters.acme", "26201"), {FAST: 60.0}, {FAST: 60.0}, 0.1, silence={20: 60.0}),
        _leaf(("meters.acme", "26202"), {FAST: 60.0}, {FAST: 60.0}, 0.1, silence={20: 60.0}),
        _leaf(("meters.acme", "20801"), {FAST: 300.0}, {FAST: 1.0}, 0.3),
        _leaf(("alarms.acme", "26201"), {FAST: 200.0}, {}, 0.2),
        _leaf(("alarms.acme", "26202"), {FAST: 200.0}, {}, 0.2),
    ]
    table, exposure = table_of(leaves)
    causes = localize(table, PARAMS)
    assert sorted(sorted(c.dims.items()) for c in causes) == [
        [("apn", "meters.acme"), ("partner", "26201")],
        [("apn", "meters.acme"), ("partner", "26202")],
    ]
    assert widen_silent(causes, table, exposure, PARAMS) == causes


def test_a_partner_s_country_is_its_parent() -> None:
    # 20801 named first (its SIMs due first); France's other partner's due SIMs fail
    # alike: France, the group that holds 20801 and more
    dims = ("country", "partner")
    rows = [
        (("FR", "20801"), 30.0, 60.0, 0.1),
        (("FR", "20810"), 9.0, 200.0, 6.0),
        (("DE", "26201"), 1.0, 300.0, 0.3),
    ]
    table = LeafTable.from_rows(dims, rows)
    exposure = LeafExposure(
        reported=np.zeros(3),
        counted_bins=np.stack(
            [_bins({FAST: 60.0}), _bins({FAST: 40.0, SLOW: 160.0}), _bins({FAST: 300.0})]
        ),
        failing_bins=np.stack([_bins({FAST: 30.0}), _bins({FAST: 9.0}), _bins({FAST: 1.0})]),
        silence_bins=np.stack([_bins({20: 30.0}), _bins({20: 9.0}), _bins({})]),
    )
    causes = localize(table, PARAMS)
    assert [dict(c.dims) for c in causes] == [{"partner": "20801"}]
    assert [dict(c.dims) for c in widen_silent(causes, table, exposure, PARAMS)] == [
        {"country": "FR"}
    ]


# ---- a cluster's leader: the same from the shards' reports -----------------------------


def _sparse(counts: dict[int, float], share: float) -> tuple[int, ...]:
    """``LeafCounts``' wire form of per-bin counts (first bin, counts up to the last)."""
    if not counts:
        return ()
    first, last = min(counts), max(counts)
    return (first, *[round(counts.get(b, 0.0) * share) for b in range(first, last + 1)])


def shard(i: int, leaves: list[dict[str, object]], share: float) -> ShardReport:
    return ShardReport(
        shard=i,
        shards=2,
        evaluated_at=AT,
        warmed_up=True,
        dims=DIMS,
        leaves=tuple(
            LeafCounts(
                values=leaf["values"],  # type: ignore[arg-type]
                total=round(sum(leaf["counted"].values()) * share),  # type: ignore[attr-defined]
                overdue=round(sum(leaf["failing"].values()) * share),  # type: ignore[attr-defined]
                expected=leaf["expected"] * share,  # type: ignore[operator]
                reported=leaf["reported"] * share,  # type: ignore[operator]
                exposure=_sparse(leaf["counted"], share),  # type: ignore[arg-type]
                failing_exposure=_sparse(leaf["failing"], share),  # type: ignore[arg-type]
                silence_exposure=_sparse(leaf["silence"], share),  # type: ignore[arg-type]
            )
            for leaf in leaves
        ),
        carries=(CARRIES_EXPOSURE,),
    )


def _halves(leaves: list[dict[str, object]]) -> list[dict[str, object]]:
    """The same fleet with every count even (two shards of exactly half)."""

    def even(counts: dict[int, float]) -> dict[int, float]:
        return {b: 2 * round(k / 2) for b, k in counts.items()}

    return [
        {**leaf, **{k: even(leaf[k]) for k in ("counted", "failing", "silence")}}  # type: ignore[arg-type]
        for leaf in leaves
    ]


@pytest.mark.parametrize(
    ("change", "expected"),
    [({}, PARTNER), ({"alarms_failing": 2.0}, METERS), ({"alarms_bin": SLOW - 1}, METERS)],
)
def test_the_leader_widens_as_one_node_does(
    change: dict[str, float], expected: dict[str, str]
) -> None:
    leaves = _halves(fleet(**change))  # type: ignore[arg-type]
    assert named(leaves) == [expected]
    reports = [shard(i, leaves, 0.5) for i in range(2)]
    wire = [ShardReport.from_json(orjson.loads(orjson.dumps(r.to_json()))) for r in reports]
    assert wire == reports
    merged = merge_reports(wire, 2, at=AT)
    assert [dict(c.dims) for c in merged_causes(merged, PARAMS)] == [expected]


def test_a_shard_of_an_older_version_without_silence_judges_by_thresholds_alone() -> None:
    old = fleet(alarms_bin=FAST + 2, silent_for=FAST + 2)
    assert named(old) == [PARTNER]
    reports = [shard(i, _halves(old), 0.5) for i in range(2)]
    older = [
        replace(r, leaves=tuple(replace(leaf, silence_exposure=()) for leaf in r.leaves))
        for r in reports
    ]
    assert [dict(c.dims) for c in merged_causes(merge_reports(older, 2, at=AT), PARAMS)] == [METERS]


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        ("20", TypeError, r"leaves\[0\]\.silence_exposure: expected a list of counts"),
        ([63, 1, 1], ValueError, r"leaves\[0\]\.silence_exposure: bins outside 0\.\.63"),
    ],
)
def test_a_bad_silence_exposure_names_the_field(
    value: object, error: type[Exception], message: str
) -> None:
    data = shard(0, fleet(), 1.0).to_json()
    leaves = data["leaves"]
    assert isinstance(leaves, list)
    leaves[0] = {**leaves[0], "silence_exposure": value}
    with pytest.raises(error, match=message):
        ShardReport.from_json(data)


def test_exposure_bins_are_quarter_octaves_from_a_minute() -> None:
    # the bins the fleets above are written in: 15-minute meters' 32-minute threshold in
    # bin 19, 38 minutes of silence in 20, nine hours in 36
    got = exposure_bins(np.array([1913.0, 38 * 60.0, 9 * 3600.0, np.nan]))
    assert got.tolist() == [FAST, SILENT_FOR, SLOW, -1]


# ---- a small rest failing like the children (exposure.rest_verdict_counts) -------------


@pytest.mark.parametrize(
    ("rest_failing", "rest_total", "expected"),
    [
        (3.0, 8.0, Rest.FAILING),  # 3 of 8 refused like the partner's: the country's
        (1.0, 8.0, Rest.QUIET),  # one: too few to tell
        (3.0, 200.0, Rest.HEALTHY),  # 3 of 200: the usual few, the partner's alone
    ],
)
def test_a_small_rest_failing_like_the_children_fails_with_them(
    rest_failing: float, rest_total: float, expected: Rest
) -> None:
    # an APN refused in France (the mixed fleet's shared_value, seed 6, 4 min in): 9 of
    # its 16 SIMs on 20801 and 3 of the 8 on 20810, all by the network's own word; 3 was
    # under the 5 SIMs a cause needs, and the 8 read "healthy": the page named 20801
    dims = ("apn", "partner")
    rows = [
        (("internet.iot", "20801"), 9.0, 16.0, 0.02),
        (("internet.iot", "20810"), rest_failing, rest_total, 0.01 * rest_total / 8),
    ]
    table = LeafTable.from_rows(dims, rows)
    exposure = LeafExposure(
        reported=np.array([9.0, rest_failing]),
        counted_bins=np.stack([_bins({FAST: 16.0}), _bins({FAST: rest_total})]),
        failing_bins=np.stack([_bins({FAST: 9.0}), _bins({FAST: rest_failing})]),
    )
    whole = table.leaves_of({"apn": "internet.iot"})
    child = table.leaves_of({"apn": "internet.iot", "partner": "20801"})
    assert rest_verdict_counts(table, exposure, whole, [child], PARAMS) is expected


# ---- session-level SIMs in open sessions (exposure.open_sessions) ----------------------

CHURN = 27  # the bin of churn_window_s (2 h): when a session-level SIM shows a fault


def _open_fleet(rest_failing: float) -> tuple[LeafTable, LeafExposure]:
    """Germany's partner 26201 (R3: session-level SIMs in open sessions) with 1,700 of its
    5,700 SIMs failing (churn, dark); its two other partners with ``rest_failing`` of
    their 6,200 failing alike; France healthy. Only failing open-session SIMs are exposed
    by their own state; the healthy ones are ``open_bins``."""
    dims = ("country", "partner")
    rest = [float(round(rest_failing * 0.55)), rest_failing - round(rest_failing * 0.55)]
    rows = [
        (("DE", "26201"), 1700.0, 5700.0, 12.8),
        (("DE", "26202"), rest[0], 3400.0, 7.6),
        (("DE", "26203"), rest[1], 2800.0, 6.3),
        (("FR", "20801"), 2.0, 3000.0, 6.7),
    ]
    table = LeafTable.from_rows(dims, rows)
    failing = [1700.0, *rest, 2.0]
    totals = [5700.0, 3400.0, 2800.0, 3000.0]
    exposure = LeafExposure(
        reported=np.zeros(4),
        counted_bins=np.stack([_bins({CHURN: a}) for a in failing]),
        failing_bins=np.stack([_bins({CHURN: a}) for a in failing]),
        silence_bins=np.zeros((4, EXPOSURE_BINS)),
        open_bins=np.stack([_bins({CHURN: n - a}) for a, n in zip(failing, totals, strict=True)]),
    )
    return table, exposure


def test_a_partner_s_healthy_open_sessions_keep_its_country_out_of_its_page() -> None:
    # 50,000 SIMs, R3 partner_outage seed 1: 7 SIMs of Germany's other partners failing
    # (devices that had moved between them), all 7 of their SIMs exposed by their own
    # failing; the page was widened to the country
    table, exposure = _open_fleet(rest_failing=7.0)
    causes = localize(table, PARAMS)
    assert [dict(c.dims) for c in causes] == [{"partner": "26201"}]
    assert widen_silent(causes, table, exposure, PARAMS) == causes
    counts = exposed_counts(
        table, exposure, table.leaves_of({"partner": "26201"}), open_sessions=True
    )
    assert counts is not None
    assert counts[1].tolist() == [5700.0, 3400.0, 2800.0, 3000.0]  # failing or not
    # the failing ones alone (what a shard of an older version reports): the country
    older = replace(exposure, open_bins=None)
    assert [dict(c.dims) for c in widen_silent(causes, table, older, PARAMS)] == [{"country": "DE"}]


def test_open_sessions_failing_alike_widen_the_page() -> None:
    # the other partners' open sessions fail at the partner's share: the country's fault
    table, exposure = _open_fleet(rest_failing=1850.0)
    causes = localize(table, PARAMS)
    widened = widen_silent(causes, table, exposure, PARAMS)
    assert [dict(c.dims) for c in widened] == [{"country": "DE"}]


def test_the_leader_counts_the_shards_open_sessions() -> None:
    table, exposure = _open_fleet(rest_failing=7.0)
    open_bins = exposure.open_bins
    assert open_bins is not None
    values = [tuple(table.labels[d][int(c)] for d, c in enumerate(codes)) for codes in table.codes]

    def half(count: float, i: int) -> int:  # shard 0 the larger half
        return int(count) // 2 + (int(count) % 2 if i == 0 else 0)

    def report(i: int) -> ShardReport:
        return ShardReport(
            shard=i,
            shards=2,
            evaluated_at=AT,
            warmed_up=True,
            dims=table.dims,
            leaves=tuple(
                LeafCounts(
                    values=values[j],
                    total=half(table.total[j], i),
                    overdue=half(table.affected[j], i),
                    expected=float(table.expected[j]) / 2,
                    exposure=(CHURN, half(exposure.counted_bins[j, CHURN], i)),
                    failing_exposure=(CHURN, half(exposure.failing_bins[j, CHURN], i)),
                    open_exposure=(CHURN, half(open_bins[j, CHURN], i)),
                )
                for j in range(len(values))
            ),
            carries=(CARRIES_EXPOSURE,),
        )

    wire = [ShardReport.from_json(orjson.loads(orjson.dumps(report(i).to_json()))) for i in (0, 1)]
    assert [dict(c.dims) for c in merged_causes(merge_reports(wire, 2, at=AT), PARAMS)] == [
        {"partner": "26201"}
    ]
    older = [
        replace(r, leaves=tuple(replace(leaf, open_exposure=()) for leaf in r.leaves)) for r in wire
    ]
    assert [dict(c.dims) for c in merged_causes(merge_reports(older, 2, at=AT), PARAMS)] == [
        {"country": "DE"}
    ]
