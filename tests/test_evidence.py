"""Group detection on the network's own evidence, before any SIM is overdue.

A fleet of 120 SIMs in Germany reports every 30 minutes for three days (the rhythms
and the group baselines are learned), half on partner 26202, half on 26201. Then the
network speaks: sessions on 26202 end with ``network_failure``, or PDP requests are
refused, or the SIMs leave 26202 for 26203. Each must open a group incident on 26202
within minutes (a SIM reporting every 30 minutes is overdue only after about an hour),
say what it rests on, and never page the partner the SIMs went to.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from fleet import DAY, T0, Feed, iccid, new_engine

from simwatch.core.evaluate import (
    EVIDENCE_NAMES,
    Evidence,
    back_on_network,
    evidence_causes,
    net_moves,
    sent_after,
)
from simwatch.core.incidents import evidence_text
from simwatch.core.localize import Cause, LeafTable, LocalizeParams, localize
from simwatch.core.state import EPOCH_BASE, FleetState
from simwatch.core.timeutil import format_rfc3339
from simwatch.http.views import sim_view
from simwatch.shell.settings import AlertmanagerSinkSettings
from simwatch.shell.sink_contract import Cycle
from simwatch.sinks.alertmanager import AlertmanagerSink

if TYPE_CHECKING:
    from collections.abc import Sequence

    from simwatch.core.engine import Engine

SIMS = 120
PERIOD_S = 1800.0
HISTORY_S = 3 * DAY
EVAL_S = 600.0
FAILING = [iccid(k) for k in range(0, SIMS, 2)]  # the even SIMs: partner 26202


def mnc(k: int) -> str:
    return "02" if k % 2 == 0 else "01"


def learned_fleet(extra: Sequence[str] = ()) -> tuple[Engine, Feed, float]:
    """Three days of 30-minute reports, evaluated every 10 minutes; returns the time the
    history ends at (each SIM's last report within the last 30 minutes before it).
    ``extra`` SIMs are in the inventory too, with no records."""
    sims = [iccid(k) for k in range(SIMS)] + list(extra)
    engine = new_engine(sims, eval_interval_s=EVAL_S, warmup_s=DAY)
    feed = Feed(engine)
    offsets = np.random.default_rng(1).uniform(0, PERIOD_S, SIMS)
    events = sorted(
        (T0 + off + j * PERIOD_S, k)
        for k, off in enumerate(offsets)
        for j in range(int(HISTORY_S // PERIOD_S))
    )
    next_eval = T0 + EVAL_S
    for ts, k in events:
        while next_eval <= ts:
            engine.evaluate(next_eval)
            next_eval += EVAL_S
        feed.usage(iccid(k), ts, mnc=mnc(k))
    end = T0 + HISTORY_S
    while next_eval <= end:
        engine.evaluate(next_eval)
        next_eval += EVAL_S
    return engine, feed, end


def group_incidents(engine: Engine) -> list[dict[str, str]]:
    return [dict(i.dims) for i in engine.incidents.open.values() if i.kind == "group"]


def run_minutes(engine: Engine, start: float, minutes: int) -> float | None:
    """Evaluate every minute from ``start``; the first minute a group incident is open."""
    for m in range(1, minutes + 1):
        engine.evaluate(start + 60.0 * m)
        if group_incidents(engine):
            return 60.0 * m
    return None


def assert_partner_paged_on_failure_ends(engine: Engine, opened: float | None, ended: int) -> None:
    """26202's incident opened within 5 minutes and counts ``ended`` failure ends."""
    assert opened is not None
    assert opened <= 5 * 60
    assert group_incidents(engine) == [{"partner": "26202"}]
    (incident,) = engine.incidents.open.values()
    evidence = incident.to_json()["evidence"]
    assert isinstance(evidence, dict)
    assert evidence["failure_end"] == ended


def test_a_quiet_fleet_opens_nothing() -> None:
    engine, _feed, end = learned_fleet()
    assert run_minutes(engine, end, 20) is None


def test_failure_ends_open_the_partner_incident_in_minutes() -> None:
    engine, feed, end = learned_fleet()
    for n, sim in enumerate(FAILING):  # the network tears the sessions down
        feed.session(sim, end + 5.0 + n, "ended", end_cause="network_failure")
    opened = run_minutes(engine, end, 10)
    assert opened is not None
    assert opened <= 5 * 60  # before any SIM of a 30-minute rhythm is overdue
    assert group_incidents(engine) == [{"partner": "26202"}]
    (incident,) = engine.incidents.open.values()
    evidence = incident.to_json()["evidence"]
    assert isinstance(evidence, dict)
    assert evidence["failure_end"] == len(FAILING)
    assert evidence["failure_end_cause"] == "network_failure"
    assert evidence["overdue"] == 0
    # what is usual for the group at this hour, learned per kind: next to nothing
    usual = evidence["usual"]
    assert isinstance(usual, dict)
    assert set(usual) == {"failure_end", "reject", "churn", "moved", "dark"}
    assert 0 <= usual["failure_end"] < 1
    text = incident.evidence_text()
    assert "60 had sessions ended by the network (network_failure) (usually 0" in text
    # a SIM that sends data again no longer counts as failing
    for sim in FAILING:
        feed.usage(sim, end + 660.0, mnc="02")
    engine.evaluate(end + 720.0)
    assert engine.last_evaluation is not None
    assert int(engine.last_evaluation.evidence.sum()) == 0


def test_the_page_and_the_log_name_the_network_s_evidence_before_any_sim_is_overdue() -> None:
    # The on-call page says what the count rests on, and counts the customers of the
    # SIMs the network dropped (none is overdue yet: "top customers" of the overdue SIMs
    # named nobody when a page opened on the network's evidence).
    engine, feed, end = learned_fleet()
    for n, sim in enumerate(FAILING):
        feed.session(sim, end + 5.0 + n, "ended", end_cause="network_failure")
    minute = 0
    while not group_incidents(engine):
        minute += 1
        assert minute <= 5, "no page within 5 minutes"
        result = engine.evaluate(end + 60.0 * minute)
    (incident,) = engine.incidents.open.values()
    assert incident.to_json()["evidence"]["overdue"] == 0  # type: ignore[index]
    sink = AlertmanagerSink(
        AlertmanagerSinkSettings(urls=["http://127.0.0.1:1"]),
        simwatch_url="http://simwatch.test",
        clock=lambda: end + 60.0 * minute,
    )
    sink.on_cycle(Cycle(engine, result, end + 60.0 * minute, live=True))
    alerts: Any = sink.payload()  # JSON as sent
    (page,) = [a for a in alerts if a["labels"]["severity"] == "page"]
    notes = page["annotations"]
    assert notes["evidence"].startswith(
        "60 of 60 SIMs failing: 60 had sessions ended by the network (network_failure)"
    )
    assert f"Evidence: {notes['evidence']}. " in notes["description"]
    assert notes["top_customers"] == "acme=60"
    assert "Top customers of the affected SIMs: acme 60." in notes["description"]
    # the daemon's log line: the group, the count and the same evidence
    assert incident.headline() == f"partner=26202 affected 60/60; {notes['evidence']}"


def test_a_session_s_closing_usage_record_is_no_data_after_its_failure_end() -> None:
    # Session-level feeds (emnify, 1NCE) report a session's volume when it closes: the
    # usage record ends at the same second as the session's end record. That volume
    # was sent before the network dropped the session, so the drop is still evidence
    # (it was ignored: the SIM looked as if it had sent data since), and a new session
    # accepted afterwards is the SIM back on the network.
    engine, feed, end = learned_fleet()
    for n, sim in enumerate(FAILING):
        ts = end + 5.0 + n
        feed.usage(sim, ts, mnc="02")
        feed.session(sim, ts, "ended", end_cause="network_failure")
    assert_partner_paged_on_failure_ends(engine, run_minutes(engine, end, 10), len(FAILING))
    rows = np.array([engine.state.row(sim) for sim in FAILING])
    assert not back_on_network(engine.state, rows).any()
    for n, sim in enumerate(FAILING):
        feed.session(sim, end + 700.0 + n, "started", mnc="02")
    assert back_on_network(engine.state, rows).all()


def test_a_dropped_session_is_evidence_whatever_the_sims_rhythm() -> None:
    # 20 more SIMs on 26202 report once a day: two gaps seen, no rhythm learned, so they
    # are never overdue and not in the group's counts. The network drops their data
    # sessions: that is evidence like any other drop, and puts them in the counts.
    daily = [iccid(SIMS + k) for k in range(20)]
    engine, feed, end = learned_fleet(daily)
    for sim in daily:
        for day in range(3):
            feed.usage(sim, T0 + 0.5 * DAY + day * DAY, mnc="02")
        feed.session(sim, end - 3600.0, "started", mnc="02")
    engine.evaluate(end + 60.0)
    rows = np.array([engine.state.row(sim) for sim in daily])
    assert not engine.state.rhythm.learned(len(engine.state))[rows].any()
    evaluation = engine.last_evaluation
    assert evaluation is not None
    assert not evaluation.counted[rows].any()  # nothing to judge them by yet
    for n, sim in enumerate(daily):
        feed.session(sim, end + 65.0 + n, "ended", end_cause="network_failure")
    opened = run_minutes(engine, end + 60.0, 10)
    evaluation = engine.last_evaluation
    assert evaluation is not None
    assert evaluation.counted[rows].all()  # judged by the network's drop
    assert not evaluation.overdue[rows].any()
    assert_partner_paged_on_failure_ends(engine, opened, len(daily))


def test_rejects_open_the_partner_incident_with_their_cause() -> None:
    engine, feed, end = learned_fleet()
    for n, sim in enumerate(FAILING):
        feed.event(sim, end + 5.0 + n, "pdp_reject", cause="apn_unavailable", mnc="02")
    assert run_minutes(engine, end, 10) is not None
    assert group_incidents(engine) == [{"partner": "26202"}]
    (incident,) = engine.incidents.open.values()
    assert incident.evidence["reject"] == len(FAILING)
    assert incident.evidence["reject_cause"] == "apn_unavailable"


def test_policy_refusals_are_no_group_evidence() -> None:
    # a customer's quota used up is each SIM's own matter (the diagnosis names it)
    engine, feed, end = learned_fleet()
    for n, sim in enumerate(FAILING):
        feed.event(sim, end + 5.0 + n, "quota_exhausted", cause="QUOTA_EXHAUSTED")
    assert run_minutes(engine, end, 10) is None


def test_devices_leaving_a_partner_page_that_partner_never_the_one_they_join() -> None:
    engine, feed, end = learned_fleet()
    for n, sim in enumerate(FAILING):  # steered away: a location update on 26203
        feed.event(sim, end + 5.0 + n, "location_update", mcc="262", mnc="03")
    assert run_minutes(engine, end, 10) is not None
    assert group_incidents(engine) == [{"partner": "26202"}]
    (incident,) = engine.incidents.open.values()
    assert incident.evidence["moved"] == len(FAILING)
    # where they went, named: the sibling that now carries the traffic
    assert incident.evidence["moved_to"] == "26203"
    assert f"{len(FAILING)} left for another partner (most to 26203)" in (incident.evidence_text())
    for m in range(11, 70):  # they report on 26203 now: never a page there
        if m % 10 == 0:
            for sim in FAILING:
                feed.usage(sim, end + 60.0 * m, mnc="03")
        engine.evaluate(end + 60.0 * m)
        assert {"partner": "26203"} not in group_incidents(engine)


def test_steered_devices_going_home_page_neither_partner() -> None:
    # 26202 fails and its SIMs go to 26203 for three hours; once it is back they return
    # to it within a minute. Leaving 26203 is no fault of 26203, which carried them (the
    # return wave paged it: 60 SIMs leaving in a minute, where none do).
    engine, feed, end = learned_fleet()
    for n, sim in enumerate(FAILING):
        feed.event(sim, end + 5.0 + n, "location_update", mcc="262", mnc="03")
    back = 3 * 3600.0
    opened: set[tuple[tuple[str, str], ...]] = set()
    for m in range(1, 6 * 60):
        now = end + 60.0 * m
        if 60.0 * m == back:
            for n, sim in enumerate(FAILING):
                feed.event(sim, now + n, "location_update", mcc="262", mnc="02")
        if m % 10 == 0:  # every SIM reports, where it is
            for sim in FAILING:
                feed.usage(sim, now - 30.0, mnc="03" if 60.0 * m < back else "02")
            for k in range(1, SIMS, 2):
                feed.usage(iccid(k), now - 20.0, mnc="01")
        engine.evaluate(now)
        opened |= {i.key for i in engine.incidents.all() if i.kind == "group"}
    assert opened == {(("partner", "26202"),)}
    (incident,) = engine.incidents.all()
    assert incident.state == "resolved"
    # each SIM's move home is still told (when it last changed partner), with no evidence
    row = engine.state.row(FAILING[0])
    assert int(engine.state.cols.moved_at[row]) == round(end + back - EPOCH_BASE)
    assert int(engine.state.cols.prev_leaf[row]) == -1
    # a move on from there is a departure again
    feed.event(FAILING[0], end + 7 * 3600.0, "location_update", mcc="262", mnc="01")
    state = engine.state
    left = state.leaf_codes()[int(state.cols.prev_leaf[row]), state.dims.index("partner")]
    assert state.partners.values[left] == "26202"


def test_reselections_both_ways_between_a_country_s_partners_page_no_one() -> None:
    # Devices reselect between a country's partners both ways all the time, and now and
    # then a dozen do within the hour: no partner failed (at 50,000 SIMs, R1
    # fault_free_week seed 4, 10 left 23201 for 23203 and 6 went the other way, and
    # Austria paged). Only a partner that loses its devices and gains none is blamed.
    engine, feed, end = learned_fleet()
    for n in range(10):  # even SIMs: 26202 -> 26201; odd ones: 26201 -> 26202
        feed.event(iccid(2 * n), end + 30.0 + 60 * n, "location_update", mcc="262", mnc="01")
        if n < 8:
            feed.event(
                iccid(2 * n + 1), end + 50.0 + 60 * n, "location_update", mcc="262", mnc="02"
            )
    assert run_minutes(engine, end, 20) is None
    evaluation = engine.last_evaluation
    assert evaluation is not None
    moved = (evaluation.evidence & Evidence.MOVED) != 0
    assert int(moved.sum()) == 18  # each still shows its move (the per-SIM view says so)
    assert evaluation.leaf_arrived.sum() == 18


def test_a_partner_s_moves_are_judged_on_its_net_loss() -> None:
    # The Austrian burst above, as counts: 23201 lost 10 and gained 6 (net 4), 23203
    # lost 6 and gained 10 (none), where 1.7 of the country's SIMs leave in that hour;
    # the moves are all those SIMs show (nothing else fails)
    dims = ("apn", "country", "partner")
    labels = [("iot", "AT", "23201"), ("iot", "AT", "23203"), ("pos", "AT", "23201")]
    labels += [("iot", "DE", "26201"), ("iot", "DE", "26202")]
    table = LeafTable.from_rows(dims, [(leaf, 0.0, 1000.0, 1.0) for leaf in labels])
    moved = [name for _, name in EVIDENCE_NAMES].index("moved")
    # of Austria's 3,000 SIMs, 1.7 leave in that hour
    ratio = np.full((len(EVIDENCE_NAMES), len(labels)), 1.7 / 3000)

    def judged(departed: list[float], arrived: list[float]) -> tuple[LeafTable, np.ndarray]:
        kinds = np.zeros((len(EVIDENCE_NAMES), len(labels)))
        kinds[moved] = departed
        table.affected[:] = departed
        return net_moves(table, kinds, only_moved=np.array(departed), arrived=np.array(arrived))

    def causes(table: LeafTable, kinds: np.ndarray) -> list[dict[str, str]]:
        found = evidence_causes(
            table, localize(table, LocalizeParams()), kinds, ratio, LocalizeParams()
        )
        return [dict(c.dims) for c in found]

    burst = judged([7.0, 6.0, 3.0, 0.0, 0.0], [4.0, 10.0, 2.0, 0.0, 0.0])
    assert burst[1][moved].tolist() == [7 * 0.4, 0.0, 3 * 0.4, 0.0, 0.0]
    assert np.allclose(burst[0].affected, [7 * 0.4, 0.0, 3 * 0.4, 0.0, 0.0])  # net failing: 4 of 16
    assert causes(*burst) == []
    # the departures alone (nothing arrived): the false page, on both counts
    assert causes(*judged([7.0, 6.0, 3.0, 0.0, 0.0], [0.0] * 5)) == [{"country": "AT"}]
    # a partner that fails loses its devices and gains none: its departures stand whole,
    # and the sibling they went to is not blamed
    steered = judged([10.0, 0.0, 6.0, 0.0, 0.0], [0.0, 16.0, 0.0, 0.0, 0.0])
    assert steered[0].affected.tolist() == [10.0, 0.0, 6.0, 0.0, 0.0]
    assert causes(*steered) == [{"partner": "23201"}]


def test_a_usage_window_does_not_move_back_a_sim_that_moved_within_it() -> None:
    """A windowed usage record says the SIM sent data somewhere in ``[start, end]``
    (FORMATS.md), on the network it was on then; a location update and a session inside
    the window are the later word. The window's record delivered after the move must not
    move the SIM back (a false "left 26203") and then forward again (a false "left
    26202"): on a windowed fleet that was a page on a partner nothing happened to."""
    engine, feed, end = learned_fleet()
    sim = FAILING[0]
    row = engine.state.row(sim)
    feed.event(sim, end + 300.0, "location_update", mcc="262", mnc="03")
    feed.session(sim, end + 310.0, "started", apn="meters.acme", mcc="262", mnc="03")
    moved_at = int(engine.state.cols.moved_at[row])
    # the window [end, end + 15 min], sent from 26202 before the move, arrives after it
    feed.usage(sim, end + 900.0, start=format_rfc3339(end), mnc="02")
    assert engine.sim_dims(row)["partner"] == "26203"
    assert int(engine.state.cols.moved_at[row]) == moved_at
    # the next window, on 26203: no move either
    feed.usage(sim, end + 1800.0, start=format_rfc3339(end + 900.0), mnc="03")
    assert engine.sim_dims(row)["partner"] == "26203"
    assert int(engine.state.cols.moved_at[row]) == moved_at
    # a window that starts after the session is the later word: the SIM moved on
    feed.usage(sim, end + 2700.0, start=format_rfc3339(end + 1800.0), mnc="01")
    assert engine.sim_dims(row)["partner"] == "26201"


def test_sessions_re_opened_without_data_are_churn_evidence() -> None:
    engine, feed, end = learned_fleet()
    for n, sim in enumerate(FAILING):  # the data path is broken: re-open, re-open ...
        for j in range(5):
            feed.session(sim, end + 5.0 + n + 120.0 * j, "started", mnc="02")
    assert run_minutes(engine, end, 15) is not None
    assert group_incidents(engine) == [{"partner": "26202"}]
    (incident,) = engine.incidents.open.values()
    assert incident.evidence["churn"] == len(FAILING)


def test_a_session_per_report_is_no_churn_evidence() -> None:
    # session-level devices open a session for each report and send data in it
    engine, feed, end = learned_fleet()
    for n, sim in enumerate(FAILING):
        for j in range(5):
            t = end + 5.0 + n + 120.0 * j
            feed.session(sim, t, "started", mnc="02")
            feed.usage(sim, t + 30.0, mnc="02")
    assert run_minutes(engine, end, 15) is None
    assert engine.last_evaluation is not None
    assert int((engine.last_evaluation.evidence & Evidence.CHURN).sum()) == 0
    # nor does the support agent read "session churn" for such a healthy device
    findings = engine.diagnose(FAILING[0], end + 900.0)
    assert findings is not None
    assert [f.code for f in findings] == ["ok"]


def test_own_evidence_shows_in_the_diagnosis() -> None:
    engine, feed, end = learned_fleet()
    for n, sim in enumerate(FAILING):
        feed.session(sim, end + 5.0 + n, "ended", end_cause="network_failure")
    run_minutes(engine, end, 10)
    findings = engine.diagnose(FAILING[0], end + 600.0)
    assert findings is not None
    hint = next(f.hint for f in findings if f.code == "group_incident")
    assert "Evidence: 60 of 60 SIMs failing" in hint
    assert "This SIM: its session was ended by the network" in hint
    network = sim_view(engine, FAILING[0], end + 600.0)["network"]
    assert isinstance(network, dict)
    assert network["evidence"] == ["failure_end"]
    assert network["failure_end_cause"] == "network_failure"


def test_evidence_text_of_an_empty_mapping_is_empty() -> None:
    assert evidence_text({}, 10) == ""
    assert evidence_text({"failing": 3, "churn": 3}, 10) == (
        "3 of 10 SIMs failing: 3 re-opened sessions again and again"
    )


def test_evidence_text_of_a_recovering_group_says_since_when_and_how_many_are_awaited() -> None:
    at = 1_793_000_000.0
    since = format_rfc3339(at)
    assert evidence_text({"failing": 0, "awaiting": 40}, 100, recovering_since=at) == (
        f"recovering since {since}, 40 SIMs awaited (quiet since before then, not due yet)"
        "; none failing"
    )
    assert evidence_text({"failing": 3, "overdue": 3}, 100, recovering_since=at) == (
        f"3 of 100 SIMs failing: 3 overdue by their own rhythm; recovering since {since}"
    )
    assert evidence_text({}, 100, recovering_since=at) == f"recovering since {since}; none failing"


def test_a_checkpoint_without_the_evidence_columns_restores() -> None:
    state = FleetState()
    state.ensure_row(iccid(1))
    arrays, meta = state.export()
    for name in ("fail_at", "fail_cause", "prev_leaf", "moved_at"):
        del arrays[f"col.{name}"]
    restored = FleetState()
    restored.restore(arrays, meta)
    assert int(restored.cols.fail_at[0]) == -1
    assert int(restored.cols.prev_leaf[0]) == -1
    assert Evidence.MOVED == 8


def test_a_rare_kind_of_evidence_is_judged_against_its_own_usual_level() -> None:
    # 13 SIMs left partner 26200 in minutes where one does in an hour; with the 2
    # overdue ones its 400 SIMs have 15 failing where 7.2 are usual: not significant on
    # the combined count, a fault on the count of SIMs that left
    dims = ("apn", "partner")
    rows = []
    for p in range(10):
        for a in range(20):
            failing = float((p * 20 + a) % 3 == 0)  # a third of the leaves: one overdue
            rows.append(((f"apn{a}", f"2620{p}"), failing, 20.0, 0.36))
    table = LeafTable.from_rows(dims, rows)
    on_partner = np.array([label[1] == "26200" for label, *_ in rows])
    moved = np.zeros(len(rows))
    moved[np.flatnonzero(on_partner)[:13]] = 1.0
    table.affected[on_partner] = 0.0
    table.affected[np.flatnonzero(on_partner)[:15]] = 1.0
    params = LocalizeParams()
    assert localize(table, params) == []
    kinds = np.zeros((len(EVIDENCE_NAMES), len(rows)))
    kinds[[name for _, name in EVIDENCE_NAMES].index("moved")] = moved
    ratio = np.full(kinds.shape, 0.0025)  # one SIM of the partner's 400 in a cycle
    (cause,) = evidence_causes(table, [], kinds, ratio, params)
    assert dict(cause.dims) == {"partner": "26200"}
    assert (cause.affected, cause.total) == (15.0, 400.0)  # every failing SIM of it
    # where moves are usual (a border crossing at this hour), the same count is nothing
    assert evidence_causes(table, [], kinds, np.full_like(ratio, 0.02), params) == []


def test_a_chance_clump_of_reselections_is_no_cause_a_fast_exodus_is() -> None:
    # At 50,000 SIMs (bench/scenarios.py, r1 apn_outage seed 1) 6 of the 107 SIMs of
    # pos.retail on partner 24001 reselected to the sibling partner within 47 minutes,
    # where 0.2 do in an hour: nothing failed, yet it paged. Tested every cycle over a
    # sliding hour, a day offers 24 such windows: the false-alarm rate holds per day.
    dims = ("apn", "country", "partner")
    rows = [
        ((f"apn{a}", f"C{c}", f"{c:03d}0{p}"), 0.0, 107.0, 4.5)
        for a in range(40)
        for c in range(25)
        for p in range(2)
    ]
    table = LeafTable.from_rows(dims, rows)
    moved = [name for _, name in EVIDENCE_NAMES].index("moved")
    ratio = np.full((len(EVIDENCE_NAMES), len(rows)), 0.2 / 107)

    def causes(count: int, window_s: float = 3600.0) -> list[dict[str, str]]:
        kinds = np.zeros((len(EVIDENCE_NAMES), len(rows)))
        kinds[moved, 0] = count
        table.affected[:] = 0.0
        table.affected[0] = count
        found = evidence_causes(table, [], kinds, ratio, LocalizeParams(), window_s=window_s)
        return [dict(c.dims) for c in found]

    assert causes(6) == []
    assert causes(6, window_s=86400.0) == [{"apn": "apn0", "partner": "00000"}]  # per cycle
    # a partner going down steers a third of its SIMs away within minutes: 7 is enough
    assert causes(7) == [{"apn": "apn0", "partner": "00000"}]


def test_a_kind_naming_the_group_around_the_combined_causes_is_one_cause() -> None:
    # A minute into an APN's outage at 50,000 SIMs (bench/scenarios.py, r2 apn_outage
    # seed 1) the combined count named its largest countries one by one (the others had
    # not shown it yet) while the failure ends named the APN: two pages for one fault
    dims = ("apn", "country")
    rows = []
    for a in range(4):
        for c in range(8):
            n = 400.0 if c < 2 else 60.0
            ended = (0.15 * n if c < 2 else 4.0) if a == 0 else 0.0
            rows.append(((f"apn{a}", f"C{c}"), ended, n, 0.03 * n))
    table = LeafTable.from_rows(dims, rows)
    first = [
        Cause(
            dims={"apn": "apn0", "country": f"C{c}"}, affected=60, total=400, expected=12, score=60
        )
        for c in range(2)
    ]
    kinds = np.zeros((len(EVIDENCE_NAMES), len(rows)))
    kinds[[name for _, name in EVIDENCE_NAMES].index("failure_end")] = table.affected
    ratio = np.full(kinds.shape, 1e-4)
    (cause,) = evidence_causes(table, first, kinds, ratio, LocalizeParams())
    assert dict(cause.dims) == {"apn": "apn0"}
    assert (cause.affected, cause.total) == (144.0, 1160.0)  # the combined counts of it


def test_a_kind_naming_a_partner_inside_a_combined_country_cause_stays_a_cause() -> None:
    # At 2,000 SIMs (bench/scenarios.py, r3 partial_blackhole seed 6) the combined count
    # named Germany (10 churners on 26201 and 2 SIMs of 26202 overdue by chance) while
    # the churn named 26201 alone. Nested by the leaves the fleet has (a partner lies in
    # its country), the partner was dropped and the country paged; by dimensions both
    # stay, and the incidents name the partner (the country's rest is healthy).
    dims = ("country", "partner")
    leaves = (("DE", "26201"), ("DE", "26202"), ("FR", "20801"), ("FR", "20810"))
    rows = [(leaf, 10.0 if leaf[1] == "26201" else 1.0, 100.0, 1.0) for leaf in leaves]
    table = LeafTable.from_rows(dims, rows)
    country = Cause(dims={"country": "DE"}, affected=11, total=200, expected=2, score=20)
    kinds = np.zeros((len(EVIDENCE_NAMES), len(rows)))
    churn = [name for _, name in EVIDENCE_NAMES].index("churn")
    kinds[churn] = [10.0, 0.0, 0.0, 0.0]
    ratio = np.full(kinds.shape, 1e-4)
    causes = evidence_causes(table, [country], kinds, ratio, LocalizeParams())
    assert [dict(c.dims) for c in causes] == [{"country": "DE"}, {"partner": "26201"}]
    # (by the leaves, the partner lies in its country: the incidents' judgement)
    assert table.within({"partner": "26201"}, {"country": "DE"})
    assert not table.within({"country": "DE"}, {"partner": "26201"})
    assert not table.within({"partner": "99999"}, {"country": "DE"})  # no such group


def test_two_large_faults_on_different_attributes_are_not_the_whole_fleet() -> None:
    # partner 26200 down and APN apn0 down everywhere: together they outscore each, and
    # neither attribute alone splits the fleet apart (each one's other values hold the
    # other fault); the fleet beyond the two is healthy: two causes, never "{}"
    def table(rest: float) -> LeafTable:
        rows = []
        for p in range(10):
            for a in range(10):
                hit = p == 0 or a == 0
                rows.append(((f"apn{a}", f"2620{p}"), 19.0 if hit else rest, 20.0, 0.04))
        return LeafTable.from_rows(("apn", "partner"), rows)

    two = localize(table(0.0))
    assert sorted(tuple(c.dims.items()) for c in two) == [
        (("apn", "apn0"),),
        (("partner", "26200"),),
    ]
    # the rest of the fleet failing too: it is the whole fleet
    assert [dict(c.dims) for c in localize(table(10.0))] == [{}]


def test_data_sent_after_a_refusal_by_the_shape_of_its_records() -> None:
    # Refused at 08:07. A per-report device's record covers its measuring interval, but
    # it is sent at its time: its 08:10 report (measured from 07:55) is data since. A
    # 15-minute window 08:00-08:15 holds data sent anywhere in it, maybe all before the
    # refusal: it is no data since; the next window, 08:15-08:30, is.
    sims = [iccid(k) for k in range(2)]
    engine = new_engine(sims)
    feed = Feed(engine)
    t0 = T0 + 8 * 3600.0
    report, windowed = sims
    for k in range(12):  # their shapes learned (two records agree)
        end = t0 - (12 - k) * 900.0
        feed.usage(report, end + 17.0, start=format_rfc3339(end + 17.0 - 900.0))
        feed.usage(windowed, end, start=format_rfc3339(end - 900.0))
    refused = t0 + 420.0
    for name in sims:
        feed.event(name, refused, "pdp_reject", cause="apn_unavailable")
    state = engine.state
    rows = np.array([state.index.get(name) for name in sims])
    at = np.full(2, int(refused) - EPOCH_BASE)
    assert not sent_after(state, rows, at).any()
    feed.usage(report, t0 + 600.0, start=format_rfc3339(t0 - 300.0))
    feed.usage(windowed, t0 + 900.0, start=format_rfc3339(t0))
    assert sent_after(state, rows, at).tolist() == [True, False]
    feed.usage(windowed, t0 + 1800.0, start=format_rfc3339(t0 + 900.0))
    assert sent_after(state, rows, at).tolist() == [True, True]
