"""The engine on hand-made fleets: per-SIM states, explanations, hints, ingest semantics."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from fleet import DAY, ICCIDS, T0, Feed, inventory_row, new_engine
from fleet import iccid as nth_iccid

from simwatch.core.evaluate import leaf_mask
from simwatch.core.localize import LeafTable, localize

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from simwatch.core.engine import Engine

WALL = T0 + 30 * DAY


def every(start: float, end: float, step: float) -> Iterator[float]:
    t = start
    while t < end:
        yield t
        t += step


def learn_15min(feed: Feed, iccids: Sequence[str], days: float = 3.0) -> float:
    """Every SIM reports every 15 minutes for `days`; returns the last report time."""
    end = T0 + days * DAY
    for t in every(T0, end, 900.0):
        for i, iccid in enumerate(iccids):
            feed.usage(iccid, t + i)  # a second apart: realistic spread, same rhythm
    return end - 900.0 + len(iccids)


def codes(engine: Engine, iccid: str, now: float) -> list[str]:
    engine.evaluate(now)
    findings = engine.diagnose(iccid, now)
    assert findings is not None
    return [f.code for f in findings]


def test_learned_sim_goes_late_then_silent(engine: Engine) -> None:
    feed = Feed(engine)
    last = learn_15min(feed, ICCIDS[:2])
    assert codes(engine, ICCIDS[0], last + 600) == ["ok"]
    assert "late" in codes(engine, ICCIDS[0], last + 3600)
    assert "silent" in codes(engine, ICCIDS[0], last + 4 * 3600)
    findings = engine.diagnose(ICCIDS[0], last + 4 * 3600)
    assert findings is not None
    assert "normally reports every 15 min" in findings[-1].hint


def test_cycle_reports_per_sim_state_changes(engine: Engine) -> None:
    feed = Feed(engine)
    last = learn_15min(feed, ICCIDS[:2])
    first = engine.evaluate(last + 600).state_changes
    # the first cycle: every SIM that left never_seen (the 38 never seen did not change)
    assert sorted(engine.state.index.iccid(int(r)) for r in first.rows) == list(ICCIDS[:2])
    assert first.old.tolist() == [3, 3]
    assert first.new.tolist() == [0, 0]
    assert len(engine.evaluate(last + 660).state_changes) == 0  # nothing moved
    late = engine.evaluate(last + 3600).state_changes
    assert late.old.tolist() == [0, 0]
    assert late.new.tolist() == [1, 1]
    feed.usage(ICCIDS[0], last + 3700)
    feed.usage("8931440000000099999", last + 3700)  # new to the fleet: from never_seen
    back = engine.evaluate(last + 3720).state_changes
    changed = {
        engine.state.index.iccid(int(r)): (int(o), int(n))
        for r, o, n in zip(back.rows, back.old, back.new, strict=True)
    }
    assert changed == {ICCIDS[0]: (1, 0), "8931440000000099999": (3, 0)}


def test_never_seen_and_inactive(engine: Engine) -> None:
    engine.load_inventory([inventory_row(ICCIDS[5], status="suspended")])
    assert codes(engine, ICCIDS[4], T0) == ["never_seen"]
    assert codes(engine, ICCIDS[5], T0) == ["inactive"]
    assert engine.diagnose("8931440000000099999", T0) is None


def test_wrong_apn_is_named_with_both_apns(engine: Engine) -> None:
    feed = Feed(engine)
    last = learn_15min(feed, ICCIDS[:1])
    for k in range(6):
        feed.event(ICCIDS[0], last + 600 + k * 300, "auth_failure", apn="internet",
                   mcc="262", mnc="02", cause="apn_not_allowed")  # fmt: skip
    now = last + 3 * 3600
    engine.evaluate(now)
    findings = engine.diagnose(ICCIDS[0], now)
    assert findings is not None
    wrong = next(f for f in findings if f.code == "wrong_apn")
    assert "'internet'" in wrong.hint
    assert "'meters.acme'" in wrong.hint
    evaluation = engine.last_evaluation
    assert evaluation is not None
    row = engine.state.row(ICCIDS[0])
    assert not evaluation.overdue[row]  # explained per SIM: never counted towards a group


def test_allowed_apn_auth_failure_is_not_wrong_apn(engine: Engine) -> None:
    feed = Feed(engine)
    last = learn_15min(feed, ICCIDS[:1])
    feed.event(ICCIDS[0], last + 600, "auth_failure", apn="meters.acme", cause="bad_password")
    found = codes(engine, ICCIDS[0], last + 3 * 3600)
    assert "auth_failure" in found
    assert "wrong_apn" not in found


def test_data_cap_reached(engine: Engine) -> None:
    engine.load_inventory([inventory_row(ICCIDS[0], data_cap_bytes=100_000)])
    feed = Feed(engine)
    last = learn_15min(feed, ICCIDS[:1], days=2.0)  # 1500 bytes * 192 reports > 100 kB
    findings = engine.diagnose(ICCIDS[0], last + 60)
    engine.evaluate(last + 60)
    findings = engine.diagnose(ICCIDS[0], last + 60)
    assert findings is not None
    cap = next(f for f in findings if f.code == "data_cap")
    assert "100.0 kB" in cap.hint


def test_refused_near_the_cap_is_the_cap_but_far_from_it_is_not(engine: Engine) -> None:
    # the platform counts bytes this monitor never saw (before it watched, or in the open
    # session's next record): refused with 96 % of the cap seen is the cap, with 72 % not
    engine.load_inventory(
        [
            inventory_row(ICCIDS[0], data_cap_bytes=300_000),
            inventory_row(ICCIDS[1], data_cap_bytes=400_000),
        ]
    )
    feed = Feed(engine)
    last = learn_15min(feed, ICCIDS[:2], days=2.0)  # 1500 bytes * 192 reports = 288 kB
    row = engine.state.row(ICCIDS[0])
    assert int(engine.state.cols.month_bytes[row]) == 288_000
    for iccid in ICCIDS[:2]:
        feed.event(iccid, last + 600, "pdp_reject", apn="meters.acme", cause="data_cap_reached")
    near = engine.diagnose(ICCIDS[0], last + 3600)
    far = engine.diagnose(ICCIDS[1], last + 3600)
    assert near is not None
    assert far is not None
    assert near[0].code == "data_cap"
    assert "288.0 kB of 300.0 kB seen here" in near[0].hint
    assert "data_cap_reached" in near[0].hint
    assert "data_cap" not in {f.code for f in far}
    assert "pdp_reject" in {f.code for f in far}
    evaluation = engine.evaluate(last + 3600).evaluation
    assert not evaluation.overdue[row]  # explained per SIM: never counted towards a group


def test_daily_reset_is_not_churn_but_four_drops_an_hour_is(engine: Engine) -> None:
    feed = Feed(engine)
    last = learn_15min(feed, ICCIDS[:2])
    for day in range(3):  # one scheduled reset a day
        t = T0 + day * DAY + 5
        feed.session(ICCIDS[0], t - 4, "ended", end_cause="scheduled_reset")
        feed.session(ICCIDS[0], t, "started", apn="meters.acme", mcc="262", mnc="02")
    for k in range(5):  # five drops within the last hour
        t = last - 3000 + k * 600
        feed.session(ICCIDS[1], t - 2, "ended", end_cause="network_failure")
        feed.session(ICCIDS[1], t, "started", apn="meters.acme", mcc="262", mnc="02")
    assert "session_churn" not in codes(engine, ICCIDS[0], last + 60)
    found = codes(engine, ICCIDS[1], last + 60)
    assert "session_churn" in found


def test_duplicates_count_once_and_late_records_do_not_roll_back(engine: Engine) -> None:
    feed = Feed(engine)
    feed.usage(ICCIDS[0], T0 + 600, record_id="dup", mnc="02")
    feed.usage(ICCIDS[0], T0 + 600, record_id="dup", mnc="02")
    assert engine.ingestor.stats.duplicates == 1
    assert engine.ingestor.stats.applied == 1
    feed.usage(ICCIDS[0], T0 + 1200, mnc="03")  # moved to another partner
    feed.usage(ICCIDS[0], T0 + 900, mnc="02")  # a late record from the old partner
    assert engine.sim_dims(engine.state.row(ICCIDS[0]))["partner"] == "26203"
    assert engine.state.rhythm.last_data[engine.state.row(ICCIDS[0])] == T0 + 1200


def test_unknown_sims_are_tracked(engine: Engine) -> None:
    feed = Feed(engine)
    feed.usage("8949000000000000001", T0 + 60)
    assert engine.ingestor.stats.unknown_sims == 1
    assert engine.state.row("8949000000000000001") >= 0


def test_country_and_operator_names(engine: Engine) -> None:
    feed = Feed(engine)
    feed.usage(ICCIDS[0], T0 + 60, mcc="310", mnc="410")
    feed.usage(ICCIDS[1], T0 + 60, mcc="262", mnc="02", operator="Partner Name From Records")
    dims = engine.sim_dims(engine.state.row(ICCIDS[0]))
    assert dims["country"] == "US"
    assert dims["partner"] == "310410"
    assert engine.partner_label("26202") == "26202 (Partner Name From Records)"


def test_vip_sim_raises_a_ticket(engine: Engine) -> None:
    engine.load_inventory([inventory_row(ICCIDS[0], tags=frozenset({"vip"}))])
    feed = Feed(engine)
    last = learn_15min(feed, ICCIDS[:3])
    changes = []
    for minute in range(0, 6 * 60, 1):
        now = last + minute * 60
        if minute % 15 == 0:
            feed.usage(ICCIDS[1], now)
            feed.usage(ICCIDS[2], now + 1)
        changes += engine.evaluate(now).changes
    opened = [c.incident for c in changes if c.kind == "opened"]
    assert [i.severity for i in opened] == ["ticket"]
    assert opened[0].iccid == ICCIDS[0]
    assert "silent" in opened[0].reasons


def test_no_ticket_during_warmup() -> None:
    engine = new_engine(warmup_s=10 * DAY)
    engine.load_inventory([inventory_row(ICCIDS[0], tags=frozenset({"vip"}))])
    feed = Feed(engine)
    last = learn_15min(feed, ICCIDS[:1])
    changes = []
    for minute in range(0, 6 * 60, 5):
        changes += engine.evaluate(last + minute * 60).changes
    assert changes == []
    assert "silent" in codes(engine, ICCIDS[0], last + 6 * 3600)  # diagnosed, not ticketed


def test_the_leaves_learned_over_dispersion_is_applied() -> None:
    # three partners of 20 SIMs reporting every 15 minutes; the baseline's history
    # (two days of 5-minute cycles, as GroupBaseline.update learns them): partners
    # 26201 and 26202 burst to 8 of 20 failing every fourth cycle, 26203 never fails.
    # 9 of 26201 silent is a count counting noise would call a fault, and one of that
    # leaf's bursts: no cause. All 20 of 26202 silent is beyond its history: a cause.
    partners = ("26201", "26202", "26203")
    sims = {p: [nth_iccid(20 * k + j) for j in range(20)] for k, p in enumerate(partners)}
    engine = new_engine([i for ids in sims.values() for i in ids])
    feed = Feed(engine)

    def report(start: float, end: float, silent: set[str]) -> None:
        for t in every(start, end, 900.0):
            for p, ids in sims.items():
                for j, i in enumerate(ids):
                    if i not in silent:
                        feed.usage(i, t + j, mnc=p[3:])

    end = T0 + 2 * DAY
    report(T0, end, set())
    state = engine.state
    n = state.n_leaves
    bursty = leaf_mask(state, {"partner": "26201"}) | leaf_mask(state, {"partner": "26202"})
    total = np.full(n, 20.0)
    for cycle in range(2 * 288):
        at = end - 2 * DAY + cycle * 300.0
        expected = engine.baseline.expected_ratio(at, n) * total
        affected = np.where(bursty & (cycle % 4 == 0), 8.0, 0.0)
        engine.baseline.update(at, 300.0, affected=affected, total=total, expected=expected)

    nine = set(sims["26201"][:9])
    report(end, end + 3 * 3600, nine)
    burst = engine.assess(end + 3 * 3600)
    assert burst.leaf_affected.sum() == 9
    plain = LeafTable(
        dims=state.dims,
        codes=state.leaf_codes(),
        labels=state.leaf_labels(),
        affected=burst.leaf_affected,
        total=burst.leaf_total,
        expected=burst.leaf_expected,
    )
    assert [dict(c.dims) for c in localize(plain)] == [{"partner": "26201"}]  # counting noise
    assert burst.causes == []

    report(end + 3 * 3600, end + 6 * 3600, set(sims["26202"]))
    outage = engine.assess(end + 6 * 3600)
    assert outage.leaf_affected.sum() == 20
    assert [dict(c.dims) for c in outage.causes] == [{"partner": "26202"}]
