"""simwatch.core.merge: shard reports, merging them, shard outliers, the merger's incidents.

Pure functions on hand-made reports (the end-to-end check with real daemons on MQTT is
tests/test_replicas.py).
"""

from __future__ import annotations

import zlib
from dataclasses import replace

import numpy as np
import orjson
import pytest
from fleet import ICCIDS, Feed, new_engine

from simwatch.core.baseline import GroupBaseline
from simwatch.core.cluster import merge_cycle
from simwatch.core.evaluate import ChurnPart
from simwatch.core.incidents import IncidentParams
from simwatch.core.localize import localize
from simwatch.core.merge import (
    CARRIES_EVIDENCE,
    CARRIES_HEARD,
    KIND_NAMES,
    LeafCounts,
    MergedNoise,
    Merger,
    OutlierParams,
    ShardReport,
    merge_reports,
    merged_causes,
    shard_of,
    shard_outliers,
    shard_report,
)
from simwatch.service import handoff

DIMS = ("apn", "country", "partner")
AT = 1_794_960_000.0  # 2026-11-18T00:00:00Z
FAULTY = ("meters.acme", "DE", "26201")
HEALTHY = [
    ("meters.acme", "DE", "26202"),
    ("meters.acme", "FR", "20801"),
    ("iot.trackr", "DE", "26202"),
    ("iot.trackr", "FR", "20801"),
]


def report(
    shard: int,
    leaves: list[tuple[tuple[str, ...], float, float, float]],
    *,
    shards: int = 3,
    at: float = AT,
    warmed_up: bool = True,
) -> ShardReport:
    """A report from ``(values, total, overdue, expected)`` rows."""
    return ShardReport(
        shard=shard,
        shards=shards,
        evaluated_at=at,
        warmed_up=warmed_up,
        dims=DIMS,
        leaves=tuple(LeafCounts(v, t, o, e) for v, t, o, e in leaves),
    )


def fleet_part(shard: int, *, faulty_overdue: float = 3.0, shards: int = 3) -> ShardReport:
    """One shard's part of a fleet: 20 SIMs per leaf, 26201's with ``faulty_overdue``."""
    rows: list[tuple[tuple[str, ...], float, float, float]] = [(FAULTY, 20.0, faulty_overdue, 0.2)]
    rows += [(leaf, 20.0, 0.0, 0.2) for leaf in HEALTHY]
    return report(shard, rows, shards=shards)


# ---- the shard function -----------------------------------------------------------------


def test_shard_of_is_crc32_of_the_iccid_mod_shards() -> None:
    iccid = "8949020000000000017"
    assert shard_of(iccid, 7) == zlib.crc32(b"8949020000000000017") % 7
    assert shard_of(iccid, 1) == 0
    with pytest.raises(ValueError, match="at least 1"):
        shard_of(iccid, 0)


def test_shard_of_spreads_consecutive_iccids_evenly() -> None:
    counts = [0] * 4
    for i in range(20_000):
        counts[shard_of(f"89490200000{i:08d}", 4)] += 1
    assert min(counts) > 4_700  # 5,000 each on average
    assert max(counts) < 5_300


# ---- reports ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("counts", "message"),
    [
        ((10.0, -1.0, 0.0), "finite and >= 0"),
        ((10.0, 1.0, float("nan")), "finite and >= 0"),
        ((10.0, 11.0, 0.0), "overdue 11 exceeds total 10"),
    ],
)
def test_bad_leaf_counts_are_refused(counts: tuple[float, float, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LeafCounts(FAULTY, *counts)


def test_a_report_checks_its_shard_and_the_values_per_dim() -> None:
    with pytest.raises(ValueError, match=r"shard must be within 0\.\.2, got 3"):
        report(3, [])
    with pytest.raises(ValueError, match="has 2 values for 3 dims"):
        report(0, [(("meters.acme", "DE"), 1.0, 0.0, 0.0)])


def test_report_json_round_trip() -> None:
    original = fleet_part(1)
    text = orjson.dumps(original.to_json())
    assert ShardReport.from_json(orjson.loads(text)) == original


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"version": 2}, ValueError, "version: expected 1"),
        ({"leaves": {}}, TypeError, "leaves: expected a list"),
        ({"warmed_up": "yes"}, TypeError, "warmed_up: expected true or false"),
        ({"shard": 1.0}, TypeError, "shard: expected an integer"),
        ({"dims": ["apn", 3]}, TypeError, "dims: expected a list of strings"),
        ({"shard": 5}, ValueError, "shard must be within"),
    ],
)
def test_bad_report_json_names_the_field(
    change: dict[str, object], error: type[Exception], message: str
) -> None:
    data = fleet_part(1).to_json()
    data.update(change)
    with pytest.raises(error, match=message):
        ShardReport.from_json(data)


HEARD = {
    "country": {"DE": (0.004, AT - 600.0), "FR": (0.002, -float("inf"))},
    "partner": {"26201": (0.001, AT - 60.0)},
}


def test_what_a_shard_heard_of_each_group_round_trips_and_merges() -> None:
    # per group: the shard's session-level record rate and when it last heard of it
    # (never: null on the wire); merged: rates summed, the latest time
    first = replace(fleet_part(0, shards=2), heard=HEARD, carries=(CARRIES_HEARD,))
    wire = orjson.loads(orjson.dumps(first.to_json()))
    assert wire["heard"]["country"]["FR"] == [0.002, None]
    assert ShardReport.from_json(wire) == first
    other = {"country": {"FR": (0.003, AT - 1200.0)}, "apn": {"meters.acme": (0.0, AT)}}
    second = replace(fleet_part(1, shards=2), heard=other, carries=(CARRIES_HEARD,))
    merged = merge_reports([first, second], 2, at=AT)
    assert merged.heard == {
        "country": {"DE": (0.004, AT - 600.0), "FR": (0.005, AT - 1200.0)},
        "partner": {"26201": (0.001, AT - 60.0)},
        "apn": {"meters.acme": (0.0, AT)},
    }
    # a shard missing, stale, or of a version without it: no fleet figure at all (each
    # node then judges its groups' darkness on its own SIMs)
    assert merge_reports([first], 2, at=AT).heard is None
    assert merge_reports([first, replace(second, evaluated_at=AT - 60)], 2, at=AT).heard is None
    assert merge_reports([first, replace(second, carries=())], 2, at=AT).heard is None
    # a shard in its warm-up still says what it heard
    warming = replace(second, warmed_up=False)
    assert merge_reports([first, warming], 2, at=AT).heard == merged.heard


@pytest.mark.parametrize(
    ("heard", "error", "message"),
    [
        ([], TypeError, "heard: expected an object"),
        ({"country": []}, TypeError, "heard.country: expected an object"),
        ({"country": {"DE": [1.0]}}, TypeError, r"heard.country.DE: expected \[rate, last heard\]"),
        ({"country": {"DE": ["x", 1.0]}}, TypeError, "heard.country.DE: expected a number"),
        ({"country": {"DE": [-1.0, 1.0]}}, ValueError, "heard.country.DE: rate must be >= 0"),
    ],
)
def test_bad_heard_json_names_the_group(
    heard: object, error: type[Exception], message: str
) -> None:
    data = fleet_part(1).to_json()
    data["heard"] = heard
    with pytest.raises(error, match=message):
        ShardReport.from_json(data)


def test_bad_leaf_json_names_the_leaf() -> None:
    data = fleet_part(1).to_json()
    leaves = data["leaves"]
    assert isinstance(leaves, list)
    leaves[2] = {**leaves[2], "total": "20"}
    with pytest.raises(TypeError, match=r"leaves\[2\]\.total: expected a number"):
        ShardReport.from_json(data)


def test_shard_report_of_an_engine() -> None:
    iccids = ICCIDS[:4]
    engine = new_engine(iccids)
    assert shard_report(engine, 0, 2) is None  # nothing evaluated yet
    feed = Feed(engine)
    for step in range(96):  # a day of 15-minute reports: rhythms learned
        for i, iccid in enumerate(iccids):
            feed.usage(iccid, AT + step * 900 + i, mcc="262", mnc="01" if i < 2 else "02")
    now = AT + 96 * 900 + 3 * 3600  # three hours of silence
    engine.evaluate(now)
    got = shard_report(engine, 1, 2)
    assert got is not None
    assert (got.shard, got.shards, got.evaluated_at, got.warmed_up) == (1, 2, now, True)
    assert got.dims == DIMS
    leaves = {leaf.values: (leaf.total, leaf.overdue) for leaf in got.leaves}
    assert leaves == {
        ("meters.acme", "DE", "26201"): (2.0, 2.0),
        ("meters.acme", "DE", "26202"): (2.0, 2.0),
    }


# ---- merging ------------------------------------------------------------------------------


def test_merge_sums_leaves_across_shards() -> None:
    a = report(0, [(FAULTY, 10.0, 4.0, 0.1), (HEALTHY[0], 5.0, 0.0, 0.2)])
    b = report(1, [(FAULTY, 12.0, 5.0, 0.3)])
    c = report(2, [(HEALTHY[1], 7.0, 1.0, 0.1)])
    merged = merge_reports([c, a, b], 3)
    assert merged.complete
    assert merged.included == (0, 1, 2)
    table = merged.table
    rows = {
        tuple(table.labels[d][code] for d, code in enumerate(codes)): (
            table.total[i],
            table.affected[i],
            table.expected[i],
        )
        for i, codes in enumerate(table.codes.tolist())
    }
    assert rows == {
        FAULTY: (22.0, 9.0, pytest.approx(0.4)),
        HEALTHY[0]: (5.0, 0.0, 0.2),
        HEALTHY[1]: (7.0, 1.0, 0.1),
    }


def test_merging_finds_a_fault_no_shard_sees_alone() -> None:
    parts = [fleet_part(k) for k in range(3)]
    for part in parts:  # 3 overdue of 20 on one shard: below min_affected (5)
        alone = merge_reports([part], 3)
        assert localize(alone.table) == []
    causes = localize(merge_reports(parts, 3).table)
    assert [c.dims for c in causes] == [{"partner": "26201"}]
    assert (causes[0].affected, causes[0].total) == (9.0, 60.0)


def test_missing_and_stale_shards_are_named_and_left_out() -> None:
    fresh = fleet_part(0)
    stale = replace(fleet_part(2), evaluated_at=AT - 60)
    merged = merge_reports([fresh, stale], 3)
    assert merged.evaluated_at == AT  # the newest instant
    assert merged.included == (0,)
    assert merged.missing == (1,)
    assert merged.stale == (2,)
    assert not merged.complete
    assert float(merged.table.total.sum()) == fresh.total
    older = merge_reports([fresh, stale], 3, at=AT - 60)
    assert (older.included, older.stale) == ((2,), (0,))


def test_merge_refuses_reports_that_do_not_fit() -> None:
    with pytest.raises(ValueError, match="reports 2 shards, the merger has 3"):
        merge_reports([fleet_part(0), fleet_part(1, shards=2)], 3)
    other_dims = replace(report(1, []), dims=("apn",))
    with pytest.raises(ValueError, match="has dims"):
        merge_reports([fleet_part(0), other_dims], 3)
    with pytest.raises(ValueError, match="two reports for shard 0"):
        merge_reports([fleet_part(0), fleet_part(0)], 3)
    with pytest.raises(ValueError, match="at least 1"):
        merge_reports([], 0)


def test_no_report_at_all_is_an_empty_merge() -> None:
    merged = merge_reports([], 2)
    assert merged.missing == (0, 1)
    assert merged.included == ()


# ---- shard outliers ------------------------------------------------------------------------


def stalled(part: ShardReport) -> ShardReport:
    """The shard's feed stopped: every counted SIM is overdue."""
    leaves = tuple(LeafCounts(x.values, x.total, x.total, x.expected) for x in part.leaves)
    return replace(part, leaves=leaves)


def test_a_stalled_shard_is_an_outlier_and_left_out() -> None:
    parts = [fleet_part(0), stalled(fleet_part(1)), fleet_part(2)]
    outliers = shard_outliers(parts)
    assert [o.shard for o in outliers] == [1]
    assert outliers[0].overdue == outliers[0].total == 100.0
    merged = merge_reports(parts, 3)
    assert merged.included == (0, 2)
    assert [c.dims for c in localize(merged.table)] == [{"partner": "26201"}]


def test_a_plain_sum_with_a_stalled_shard_is_a_fleet_wide_cause() -> None:
    parts = [fleet_part(0), stalled(fleet_part(1)), fleet_part(2)]
    never = OutlierParams(min_overdue=1e9)  # outlier check off
    merged = merge_reports(parts, 3, outlier_params=never)
    assert merged.outliers == ()
    assert {} in [c.dims for c in localize(merged.table)]


def test_a_real_fault_on_every_shard_is_no_outlier() -> None:
    parts = [fleet_part(k, faulty_overdue=18.0) for k in range(3)]
    assert shard_outliers(parts) == ()


def test_an_uneven_start_of_a_fault_is_no_outlier() -> None:
    # 7 overdue on one shard, 1 on the other, of 400 each: chance at a fault's onset
    a = report(0, [(FAULTY, 400.0, 7.0, 1.0)], shards=2)
    b = report(1, [(FAULTY, 400.0, 1.0, 1.0)], shards=2)
    assert shard_outliers([a, b]) == ()
    assert shard_outliers([a]) == ()


# ---- the merger ---------------------------------------------------------------------------


def cycle_reports(
    at: float, *, faulty: float, shards: tuple[int, ...] = (0, 1, 2)
) -> list[ShardReport]:
    return [replace(fleet_part(k, faulty_overdue=faulty), evaluated_at=at) for k in shards]


def test_the_merger_opens_one_incident_and_holds_it_while_a_shard_is_missing() -> None:
    merger = Merger(3, incident_params=IncidentParams(open_after=2, close_after=2))
    first = merger.cycle(cycle_reports(AT, faulty=8.0))
    assert first.decided
    assert [c.dims for c in first.causes] == [{"partner": "26201"}]
    assert first.changes == []  # seen once: not yet open
    second = merger.cycle(cycle_reports(AT + 60, faulty=8.0))
    assert [(c.kind, c.incident.id, c.incident.dims) for c in second.changes] == [
        ("opened", "inc-0001", {"partner": "26201"})
    ]
    # shard 1 goes missing: nothing is decided, the incident stays open as it was
    for k in range(4):
        held = merger.cycle(cycle_reports(AT + 120 + 60 * k, faulty=0.0, shards=(0, 2)))
        assert not held.decided
        assert held.merged.missing == (1,)
        assert held.changes == []
    assert [i.id for i in merger.incidents.open.values()] == ["inc-0001"]
    # all back and the fault over: it resolves after close_after cycles
    changes = [merger.cycle(cycle_reports(AT + 600 + 60 * k, faulty=0.0)) for k in range(2)]
    assert [c.kind for c in changes[-1].changes] == ["resolved"]


def test_a_shard_in_its_warm_up_is_left_out() -> None:
    parts = cycle_reports(AT, faulty=8.0)
    parts[2] = replace(parts[2], warmed_up=False)
    merged = merge_reports(parts, 3)
    assert merged.warming == (2,)
    assert merged.included == (0, 1)
    assert float(merged.table.total.sum()) == parts[0].total + parts[1].total
    result = Merger(3, incident_params=IncidentParams(open_after=1)).cycle(parts)
    assert not result.decided  # all three needed by default
    assert result.causes == []
    lenient = Merger(3, min_shards=2, incident_params=IncidentParams(open_after=1))
    assert [c.dims for c in lenient.cycle(parts).causes] == [{"partner": "26201"}]


def test_min_shards_lets_the_merger_decide_on_part_of_the_fleet() -> None:
    merger = Merger(3, min_shards=2, incident_params=IncidentParams(open_after=1))
    result = merger.cycle(cycle_reports(AT, faulty=8.0, shards=(0, 2)))
    assert result.decided
    assert [c.incident.dims for c in result.changes] == [{"partner": "26201"}]
    with pytest.raises(ValueError, match=r"min_shards must be within 1\.\.3"):
        Merger(3, min_shards=4)
    with pytest.raises(ValueError, match="at least 1"):
        Merger(0)


# ---- optional fields: what newer reports carry, what older ones still do ----------------


def test_the_optional_fields_round_trip_and_a_previous_versions_report_still_merges() -> None:
    churn = ChurnPart(sims=6, rate=0.01, starts=(AT - 600.0, AT - 60.0), stopped=2,
                      stopped_last=AT - 600.0)  # fmt: skip
    leaf = LeafCounts(
        FAULTY, 20.0, 8.0, 0.2, recovered=3.0, churn=churn, late=2.0, awaiting=1.0,
        kinds=(6.0, 0.0, 0.0, 0.0, 0.0), usual=(0.1, 0.0, 0.0, 0.0, 0.0),
        causes={"failure_end": {"network_failure": 5.0, "": 1.0}}, arrived=4.0,
    )  # fmt: skip
    new = replace(report(0, []), leaves=(leaf,), carries=("recovery", "evidence"))
    assert ShardReport.from_json(orjson.loads(orjson.dumps(new.to_json()))) == new
    # a shard of the previous version: no "carries", no optional field in its leaves
    old_json = report(1, [(FAULTY, 20.0, 1.0, 0.2)]).to_json()
    del old_json["carries"]
    old = ShardReport.from_json(old_json)
    merged = merge_reports([new, old, report(2, [])], 3)
    assert merged.included == (0, 1, 2)
    assert merged.table.affected.tolist() == [9.0]
    assert merged.recovered is not None
    assert merged.recovered.tolist() == [3.0]  # what the shards that count them counted
    assert merged.churn_of(np.ones(1, bool)) == churn
    # evidence per kind only when every shard sends it: a sum missing one is no level
    assert merged.evidence is None
    both = merge_reports([replace(new, shards=2), replace(new, shard=1, shards=2)], 2)
    assert both.evidence is not None
    assert both.evidence.kinds[0].tolist() == [12.0]
    assert both.evidence_of({"partner": "26201"})["failure_end_cause"] == "network_failure"


NOISY_DIMS = ("apn", "partner")
NOISY_LEAVES = [(apn, p) for apn in "abcd" for p in ("p1", "p2", "p3", "p4", "p5")]
BURSTY = ("a", "p1")


def noisy_reports(at: float, bursty: float, rng: np.random.Generator) -> dict[str, ShardReport]:
    """Two nodes' halves of 20 leaves of 100 SIMs expecting 3 overdue (1.5 a node):
    Poisson counts, but ``bursty`` overdue on each node's half of leaf (a, p1)."""
    out = {}
    for shard, name in enumerate(("n1", "n2")):
        leaves = tuple(
            LeafCounts(v, 50.0, bursty if v == BURSTY else float(rng.poisson(1.5)), 1.5)
            for v in NOISY_LEAVES
        )
        out[name] = replace(report(shard, [], shards=2, at=at), dims=NOISY_DIMS, leaves=leaves)
    return out


def test_the_leader_learns_each_leaf_s_noise_on_the_sums() -> None:
    # One node tests a bursty leaf's count against its learned over-dispersion and
    # history peak (issue 15's noise); the leader had the counts alone and named every
    # burst of a bursty leaf. It now learns each leaf's noise on the merged counts, as
    # one node learns on its own (a shard's learning does not add up: a node's half of
    # a leaf scatters unlike the whole, and its peaks come at other times).
    nodes = ["n1", "n2"]
    noise, one_node = MergedNoise(), GroupBaseline()
    rng = np.random.default_rng(1)
    at = AT
    for k in range(3 * 144):  # three days every 10 minutes; (a, p1) 18 every 4th cycle
        at = AT + 600.0 * k
        reports = noisy_reports(at, 9.0 if k % 4 == 0 else float(rng.poisson(1.5)), rng)
        merged = merge_cycle(reports, nodes, at, noise=noise, interval_s=600.0).merged
        one_node.update(
            at,
            600.0,
            affected=merged.table.affected,
            total=merged.table.total,
            expected=merged.table.expected,
        )
    at += 600.0
    burst = noisy_reports(at, 9.0, np.random.default_rng(5))
    plain = merge_cycle(burst, nodes, at)
    assert [c.dims for c in plain.causes or []] == [{"apn": "a", "partner": "p1"}]
    learned = merge_cycle(burst, nodes, at, noise=noise, interval_s=600.0)
    table = learned.merged.table
    assert table.dispersion is not None
    assert table.peak is not None
    # what one node learns on the same counts (the leaves in the same order here)
    n = len(table.total)
    assert table.dispersion.tolist() == pytest.approx(one_node.dispersion(n).tolist())
    assert table.peak.tolist() == pytest.approx((one_node.peak_share(n) * table.total).tolist())
    assert table.dispersion[0] > 2.0, table.dispersion[0]  # the bursty leaf
    assert learned.causes == []
    # a real fault on that leaf is still named, and on a quiet leaf too
    for leaf in (BURSTY, ("c", "p3")):
        fault = {
            name: replace(r, leaves=tuple(
                replace(x, overdue=25.0) if x.values == leaf else x for x in r.leaves
            ))
            for name, r in burst.items()
        }  # fmt: skip
        found = merge_cycle(fault, nodes, at, noise=noise, interval_s=600.0)
        assert [c.dims for c in found.causes or []] == [{"apn": leaf[0], "partner": leaf[1]}]
    # the leader's engine keeps what it learned in its checkpoint
    engine = new_engine()
    engine.merged_noise = noise
    arrays, meta = engine.export_state()
    restored = new_engine()
    restored.restore_state(arrays, orjson.loads(orjson.dumps(meta)))
    before, again = noise.apply(table), restored.merged_noise.apply(table)
    assert before.dispersion is not None
    assert again.dispersion is not None
    assert again.dispersion.tolist() == before.dispersion.tolist()
    # ... and puts it in the cluster's object store for the next leader (a fail-over
    # does not start the new one at counting noise)
    data = handoff.encode_noise(noise.export(), node="n1", at=at)
    carried, put_at = handoff.decode_noise(data, None)
    assert put_at == at
    next_leader = carried.apply(table)
    assert next_leader.dispersion is not None
    assert next_leader.peak is not None
    assert next_leader.dispersion.tolist() == before.dispersion.tolist()
    assert before.peak is not None
    assert next_leader.peak.tolist() == before.peak.tolist()
    for junk in (b"", b"not a zip", handoff.pack({"at": at}, {}), handoff.pack({}, {})):
        with pytest.raises(ValueError, match="merged noise"):
            handoff.decode_noise(junk, None)
    # what an open incident's leaves show is not learned as their noise
    frozen = MergedNoise()
    for k in range(3 * 144):
        at = AT + 600.0 * k
        merge_cycle(
            noisy_reports(at, 9.0 if k % 4 == 0 else 1.5, rng), nodes, at,
            noise=frozen, frozen=[{"apn": "a"}], interval_s=600.0,
        )  # fmt: skip
    assert frozen.apply(table).dispersion.tolist()[0] == 1.0  # type: ignore[union-attr]


def test_the_merged_leaves_say_how_groups_nest() -> None:
    # a partner's SIMs are all in its country: {apn, partner=20801} lies inside
    # {apn, country=FR}, which the dims alone cannot tell (core.incidents.update_groups)
    merged = merge_reports([fleet_part(s) for s in range(3)], 3)
    narrow = {"apn": "meters.acme", "partner": "20801"}
    wide = {"apn": "meters.acme", "country": "FR"}
    assert merged.within(narrow, wide)
    # a country with two partners does not lie inside one of them
    assert merged.within({"partner": "26201"}, {"country": "DE"})
    assert not merged.within({"country": "DE"}, {"partner": "26201"})
    assert not merged.within({"apn": "meters.acme", "partner": "26202"}, wide)
    assert not merged.within({"partner": "99999"}, wide)  # no such leaf: inside nothing


@pytest.mark.parametrize(
    ("field", "value", "error", "message"),
    [
        ("exposure", [70, 1], ValueError, "bins outside 0..63"),
        ("exposure", [3, -1], TypeError, "expected a list of counts"),
        ("usual", [1.0], TypeError, "expected a list of 5 numbers"),
        ("churn", {"sims": 1, "starts": []}, TypeError, "churn.rate: expected a number"),
        ("arrived", "4", TypeError, "expected a number"),
    ],
)
def test_bad_optional_leaf_fields_name_the_leaf(
    field: str, value: object, error: type[Exception], message: str
) -> None:
    data = fleet_part(1).to_json()
    leaves = data["leaves"]
    assert isinstance(leaves, list)
    leaves[0] = {**leaves[0], field: value}
    with pytest.raises(error, match=rf"leaves\[0\]\.{field}.*{message}|{message}"):
        ShardReport.from_json(data)


def test_the_leader_judges_a_partner_s_moves_on_its_net_loss_over_every_shard() -> None:
    # 10 SIMs left 26201 for 26202 on one node while 8 came the other way on the other:
    # reselection both ways, no partner's failure, as one node holding them all judges it
    # (``evaluate.net_departures``); the same 10 with nothing coming back is a fault.
    moved = KIND_NAMES.index("moved")
    on_26201, on_26202 = ("meters.acme", "DE", "26201"), ("meters.acme", "DE", "26202")

    def leaf(values: tuple[str, ...], left: float, came: float) -> LeafCounts:
        kinds = tuple(left if k == moved else 0.0 for k in range(len(KIND_NAMES)))
        usual = tuple(0.05 if k == moved else 0.0 for k in range(len(KIND_NAMES)))
        return LeafCounts(values, 100.0, left, 3.0, kinds=kinds, usual=usual, arrived=came)

    def merged(came_back: float) -> list[dict[str, str]]:
        parts = [
            (leaf(on_26201, 10.0, 0.0), leaf(on_26202, 0.0, 10.0)),
            (leaf(on_26201, 0.0, came_back), leaf(on_26202, came_back, 0.0)),
        ]
        reports = [
            replace(report(shard, [], shards=2), leaves=leaves, carries=(CARRIES_EVIDENCE,))
            for shard, leaves in enumerate(parts)
        ]
        reports = [ShardReport.from_json(orjson.loads(orjson.dumps(r.to_json()))) for r in reports]
        return [dict(c.dims) for c in merged_causes(merge_reports(reports, 2))]

    assert merged(came_back=0.0) == [{"partner": "26201"}]
    assert merged(came_back=8.0) == []
