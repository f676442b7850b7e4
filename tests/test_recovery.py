"""The end of a fault, and the faults a session-level fleet shows only by going quiet.

- A black hole on partner 26202 (its SIMs stay attached, their data goes nowhere) ends:
  the 5-minute devices report again within minutes, the hourly ones only at their next
  report. The incident resolves once the fast ones are back, well before the hourly
  ones could report, and does not page again while those are awaited.
- A couple of SIMs coming back during an ongoing fault do not end it.
- Devices steered away from a partner that went down stay evidence against it while it
  stays dark (beyond the hour other evidence lasts), not once it shows life again.
- Session-level SIMs (one usage record per session) of a country from which nothing at
  all has come for far longer than usual count as failing ("dark"); a country that
  merely sent little does not.
- A black hole on session-level SIMs ends unseen but for their churn stopping: once
  no churner re-opened a session for longer than their rhythms make likely.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import orjson
from fleet import (
    DAY,
    T0,
    Feed,
    daily_sessions,
    iccid,
    inventory_row,
    new_engine,
    two_partner_history,
    two_partner_run,
)

from simwatch.core.evaluate import (
    EvalParams,
    Evidence,
    awaiting_report,
    churn_stopped,
    dark_rows,
    network_evidence,
)
from simwatch.core.incidents import Incident, incident_from_state, incident_state
from simwatch.core.recovery import advance_recovery
from simwatch.core.timeutil import format_rfc3339
from simwatch.http.views import sim_view

if TYPE_CHECKING:
    from collections.abc import Callable

    from simwatch.core.engine import CycleResult, Engine
    from simwatch.core.incidents import IncidentChange

HOUR = 3600.0
SIMS = 80
HISTORY_S = 2 * DAY


def learned_fleet() -> tuple[Engine, Feed, float, np.ndarray]:
    """Two days of reports of the two-partner fleet (``fleet.two_partner_period``: even
    SIMs on 26202 every 5 minutes or hourly, odd ones on 26201 every 30 minutes),
    evaluated every 10 minutes (warm-up: a day); returns the engine, the feed, when the
    history ends and each SIM's next report time."""
    engine = new_engine([iccid(k) for k in range(SIMS)], warmup_s=DAY)
    feed = Feed(engine)
    end, nxt = two_partner_history(engine, feed, SIMS, HISTORY_S)
    return engine, feed, end, nxt


def open_groups(engine: Engine) -> list[dict[str, str]]:
    return [dict(i.dims) for i in engine.incidents.open.values() if i.kind == "group"]


def run(
    engine: Engine,
    feed: Feed,
    nxt: np.ndarray,
    start: float,
    end: float,
    *,
    up: Callable[[int, float], bool],
) -> list[CycleResult]:
    """Evaluate every minute in (start, end]; SIMs for which ``up(k, t)`` send their
    reports when due. Returns the cycle results."""
    return two_partner_run(engine, feed, nxt, start, end, up=up)


def black_hole_run() -> tuple[Engine, Feed, np.ndarray, float, Callable[[int, float], bool]]:
    """The fleet with the even SIMs (partner 26202) silent for 3 h, run to the fault's
    end; the engine, feed, next reports, the fault's end and who sends (``up``)."""
    engine, feed, end, nxt = learned_fleet()
    fault_end = end + 3 * HOUR

    def up(k: int, t: float) -> bool:
        return k % 2 == 1 or not end <= t < fault_end

    run(engine, feed, nxt, end, fault_end, up=up)
    return engine, feed, nxt, fault_end, up


def test_a_black_hole_resolves_when_the_fast_reporters_are_back() -> None:
    engine, feed, nxt, fault_end, up = black_hole_run()
    assert open_groups(engine) == [{"partner": "26202"}]
    (incident,) = engine.incidents.open.values()
    assert incident.recovery_onset is None  # nobody came back while it lasted
    overdue = incident.evidence["overdue"]
    assert isinstance(overdue, int)
    assert overdue >= 30  # the hourly SIMs are overdue too
    after = run(engine, feed, nxt, fault_end, fault_end + 3 * HOUR, up=up)
    resolved = [r.evaluation.now for r in after for c in r.changes if c.kind == "resolved"]
    assert len(resolved) == 1
    # the 5-minute devices are back within 5 minutes; the hourly ones could take an hour
    assert resolved[0] - fault_end <= 15 * 60
    assert incident.recovery_onset is not None
    assert fault_end <= incident.recovery_onset <= fault_end + 10 * 60
    # ... and no page again while the hourly SIMs are awaited
    assert not any(c.kind == "opened" for r in after for c in r.changes)
    reported = incident.to_json()
    assert "recovering_since" not in reported  # resolved
    assert reported["recovered_at"] == format_rfc3339(incident.recovery_onset)


def test_a_recovering_page_says_so_and_a_resolved_one_when_its_recovery_began() -> None:
    # Between a fault's end and the page's resolution its failing count falls to a few
    # or none while most SIMs are awaited; the page's evidence said nothing then (the
    # console: "No network evidence"). Now it says the group is recovering since when,
    # and the resolved incident keeps when that was.
    engine, feed, nxt, fault_end, up = black_hole_run()
    (incident,) = engine.incidents.open.values()
    assert "recovering" not in incident.evidence_text()
    worst = incident.peak_evidence["failing"]
    assert isinstance(worst, int)
    assert worst >= 30
    t = fault_end
    while incident.recovery_onset is None:
        run(engine, feed, nxt, t, t + 60.0, up=up)
        t += 60.0
        assert t < fault_end + HOUR
    assert incident.resolved_at is None
    onset = format_rfc3339(incident.recovery_onset)
    text = incident.evidence_text()
    assert f"recovering since {onset}" in text
    assert incident.to_json()["recovering_since"] == onset
    run(engine, feed, nxt, t, t + 60.0, up=up)  # the awaiting applies from the next cycle
    t += 60.0
    assert incident.resolved_at is None
    text = incident.evidence_text()
    evaluation = engine.last_evaluation
    assert evaluation is not None
    awaited = np.flatnonzero(evaluation.awaiting)
    assert awaited.size  # the hourly SIMs
    assert f"{awaited.size} SIMs awaited" in text
    # what support reads of a SIM awaited
    sim = engine.state.index.iccid(int(awaited[0]))
    findings = engine.diagnose(sim, evaluation.now) or []
    hint = next(f.hint for f in findings if f.code == "group_incident")
    assert f"recovering since {onset}" in hint
    assert "This SIM: it has been quiet since before its group began to recover" in hint
    run(engine, feed, nxt, t, t + 3 * HOUR, up=up)
    assert incident.resolved_at is not None
    reported = incident.to_json()
    assert reported["recovered_at"] == onset
    assert "recovering_since" not in reported
    assert "recovering" not in incident.evidence_text()
    # what it rested on at its worst, not the few SIMs left at its end
    assert incident.peak_evidence["failing"] == worst
    assert reported["peak_evidence"] == incident.peak_evidence
    assert incident.evidence_text().startswith(f"{worst} of ")
    # the daemon's log line says so beside the count left at its end
    assert f"; at its worst {worst} of " in incident.headline()
    restored = incident_from_state(orjson.loads(orjson.dumps(incident_state(incident))))
    assert restored.peak_evidence == incident.peak_evidence


def _windowed_partner_outage(
    *,
    ended_by_network: bool,
    retry_late: frozenset[int] = frozenset(),
    refused_again: bool = False,
    into_window: float = 0.0,
) -> tuple[list[CycleResult], list[float | None], float]:
    """A windowed feed (usage summed over 15-minute clock windows, delivered 2-10 min after
    each window closes), 60 SIMs on two partners, 26202 down for two hours: its windows
    of the outage carry nothing, and its devices are back on the network (a session each,
    no data yet) at the end. ``ended_by_network``: the network ends their sessions with a
    failure cause at the start (else they die without an end record). ``retry_late``:
    SIMs of 26202 whose devices retry a session every 10 min through the fault, each
    refused, and come back 12 min after the end (or, ``refused_again``, are refused once
    more 2 min after it, and never come back in the run). ``into_window``: the fault
    starts this long into a window (that window carries the data sent before it).
    Returns the cycles from the fault's start, the open incidents' recovery onsets at
    each cycle while it lasts, and the fault's end."""
    window = 900.0
    sims = 60
    engine = new_engine([iccid(k) for k in range(sims)], warmup_s=DAY)
    feed = Feed(engine)
    lag = {k: 120.0 + (k * 53) % 480 for k in range(sims)}

    def net(k: int) -> str:
        return "02" if k % 2 == 0 else "01"

    fault_start = T0 + 2 * DAY + into_window
    fault_end = T0 + 2 * DAY + 2 * HOUR
    down = [k for k in range(sims) if net(k) == "02"]
    retry = fault_end + (120 if refused_again else 720)
    back = {k: (np.inf if refused_again else retry) if k in retry_late else fault_end for k in down}
    # (arrival, k, window end): the outage's windows and its sessions carry nothing
    arrivals = sorted(
        (w + lag[k], k, w)
        for k in range(sims)
        for w in np.arange(T0 + window, fault_start + 6 * HOUR, window)
        if net(k) == "01" or not (w - window >= fault_start and w <= back[k])
    )
    for k in range(sims):  # each has a session open since the start
        feed.session(iccid(k), T0 - 60, "started", mcc="262", mnc=net(k), apn="meters.acme")
    results = []
    onsets: list[float | None] = []
    t, i = T0 + 600.0, 0
    while t <= fault_start + 5 * HOUR:
        while i < len(arrivals) and arrivals[i][0] <= t:
            _, k, w = arrivals[i]
            feed.usage(iccid(k), float(w), start=format_rfc3339(w - window), mnc=net(k))
            i += 1
        if ended_by_network and fault_start <= t < fault_start + 60:
            for n, k in enumerate(down):
                feed.session(iccid(k), t + n, "ended", end_cause="network_failure", mnc="02")
        if fault_start < t < fault_end and t % 600 < 60:  # the late retriers' attempts
            for n, k in enumerate(sorted(retry_late)):
                feed.event(iccid(k), t + n, "pdp_reject", cause="network_failure", mnc="02")
        if fault_end <= t < fault_end + 60:  # back on the network, no data yet
            for k in down:
                if k not in retry_late:
                    feed.session(iccid(k), t, "started", mcc="262", mnc="02", apn="meters.acme")
        if retry <= t < retry + 60:  # the late retriers' next attempt
            for n, k in enumerate(sorted(retry_late)):
                if refused_again:
                    feed.event(iccid(k), t + n, "pdp_reject", cause="network_failure", mnc="02")
                else:
                    feed.session(iccid(k), t, "started", mcc="262", mnc="02", apn="meters.acme")
        result = engine.evaluate(t)
        if t >= fault_start:
            results.append(result)
        if fault_start <= t < fault_end:
            onsets += [incident.recovery_onset for incident in engine.incidents.open.values()]
        t += 600.0 if t < fault_start - HOUR else 60.0
    return results, onsets, fault_end


def _group_changes(results: list[CycleResult]) -> list[tuple[float, IncidentChange]]:
    return [(r.evaluation.now, c) for r in results for c in r.changes if c.incident.kind == "group"]


def test_sims_back_on_the_network_start_the_recovery_before_their_data() -> None:
    # A partner outage on a windowed feed: the partner's sessions die without an end
    # record. When it is back, its devices attach and open sessions at once, but their
    # data shows only when the first window after the end closes and arrives (17-25 min
    # on). The new sessions are the recovery: the incident resolves within minutes of
    # the end, and no page follows while the windows are awaited.
    results, _, fault_end = _windowed_partner_outage(ended_by_network=False)
    changes = _group_changes(results)
    opened = [(at, c.incident) for at, c in changes if c.kind == "opened"]
    assert [incident.dims for _, incident in opened] == [{"partner": "26202"}]
    incident = opened[0][1]
    assert incident.recovery_onset is not None
    assert fault_end - 60 <= incident.recovery_onset <= fault_end + 180  # not at 17-25 min
    resolved = [at for at, c in changes if c.kind == "resolved"]
    assert len(resolved) == 1  # and no page again while the windows are awaited
    # two cycles without the cause once the recovery is seen (``close_after_recovering``),
    # not the five of a cause that merely went quiet
    assert resolved[0] - fault_end <= 3 * 60


def test_a_window_begun_before_the_network_dropped_the_sims_is_no_recovery() -> None:
    # The fault starts 7 min into a 15-minute window: that window, delivered minutes
    # later, holds the data sent before the network dropped the SIMs, and closes after
    # the drop. Taken as data since the drop (its end is later), it took 14 SIMs out of
    # an APN's fault at 2,000 SIMs (R2 ``apn_country`` seed 1) and dated its recovery
    # in the middle of it. Every SIM stays failing until the fault ends.
    results, onsets, fault_end = _windowed_partner_outage(ended_by_network=True, into_window=420)
    changes = _group_changes(results)
    opened = [c.incident for _, c in changes if c.kind == "opened"]
    assert [incident.dims for incident in opened] == [{"partner": "26202"}]
    assert set(onsets) == {None}
    counts = {
        cause.affected
        for r in results
        if r.evaluation.now < fault_end and r.evaluation.now >= fault_end - HOUR
        for cause in r.evaluation.causes
    }
    assert counts == {30}  # all of 26202, through the windows that span the drop
    resolved = [at for at, c in changes if c.kind == "resolved"]
    assert len(resolved) == 1
    assert resolved[0] - fault_end <= 3 * 60


def test_sims_refused_before_the_end_await_their_next_attempt() -> None:
    # At 50,000 SIMs (bench/scenarios.py, r2 apn_outage seed 1) the page resolved 11 min
    # after the end: SIMs the network refused through the fault and that retry at their
    # own pace (46 at 12:09 of 12,446) counted as failing on their refusals from before
    # the end until the evidence named the group no more. Once the recovery is seen, a
    # SIM refused before it awaits its next attempt, as a silent SIM awaits its report.
    late = frozenset(range(0, 20, 2))  # 10 of 26202's 30 SIMs
    results, _, fault_end = _windowed_partner_outage(ended_by_network=True, retry_late=late)
    changes = _group_changes(results)
    opened = [c.incident for _, c in changes if c.kind == "opened"]
    assert [incident.dims for incident in opened] == [{"partner": "26202"}]
    assert opened[0].recovery_onset is not None
    resolved = [at for at, c in changes if c.kind == "resolved"]
    assert len(resolved) == 1  # not held by the refusals, nor paged again after them
    assert resolved[0] - fault_end <= 5 * 60  # their next attempt is 12 min on


def test_sims_refused_again_after_the_recovery_began_hold_the_page() -> None:
    # ... but a SIM refused again once the recovery began shows the fault going on for
    # it: 10 of 30 refused again 2 min after the end keep the page open.
    late = frozenset(range(0, 20, 2))
    results, _, fault_end = _windowed_partner_outage(
        ended_by_network=True, retry_late=late, refused_again=True
    )
    changes = _group_changes(results)
    opened = [c.incident for _, c in changes if c.kind == "opened"]
    assert [incident.dims for incident in opened] == [{"partner": "26202"}]
    resolved = [at for at, c in changes if c.kind == "resolved"]
    # they stay evidence for the hour a refusal does
    assert not resolved or resolved[0] - fault_end >= 60 * 60


def test_a_few_sims_coming_back_do_not_end_an_ongoing_fault() -> None:
    engine, feed, end, nxt = learned_fleet()
    back = {0, 4}  # two 5-minute SIMs recover; the fault goes on for the rest

    def up(k: int, t: float) -> bool:
        if k % 2 == 1:
            return True
        return t < end or (k in back and t >= end + 2 * HOUR)

    results = run(engine, feed, nxt, end, end + 3 * HOUR, up=up)
    assert open_groups(engine) == [{"partner": "26202"}]
    (incident,) = engine.incidents.open.values()
    assert incident.recovery_onset is None
    assert sum(r[1] for r in incident.recoveries) == 0  # older than the window by now
    assert sum(len(r.changes) for r in results if r.evaluation.now > end + 2 * HOUR) == 0


def _partner_incident(*, affected: float, peak: float, onset: float | None = None) -> Incident:
    """An open page on a partner of 4,898 SIMs (17 expected failing)."""
    return Incident(
        id="inc-0001",
        kind="group",
        dims={"partner": "26201"},
        severity="page",
        opened_at=0.0,
        updated_at=0.0,
        affected=affected,
        total=4898.0,
        expected=17.0,
        score=20.0,
        peak_affected=peak,
        recovery_onset=onset,
    )


def test_a_recovery_seen_while_the_fault_still_spreads_is_void() -> None:
    # a partner's black hole: its first 11 silent SIMs page, and in the same minutes 5 of
    # the partner's 5,000 SIMs report again after being late (its usual turnover); then
    # the fault reaches 537 SIMs: it was no recovery, and its real end must be awaited
    params = EvalParams()
    incident = _partner_incident(affected=11.0, peak=11.0)

    def cycle(minute: int, recovered: float, affected: float) -> float | None:
        incident.affected = affected
        incident.peak_affected = max(incident.peak_affected, affected)
        at = 60.0 * minute
        advance_recovery(incident, at, recovered, None, params=params, interval_s=60.0)
        return incident.recovery_onset

    assert cycle(8, 5.0, 11.0) == 420.0  # the turnover looks like a recovery ...
    assert cycle(20, 0.0, 27.0) == 420.0  # 27 = 2 x 11 + 5: not yet past it
    assert cycle(41, 0.0, 537.0) is None  # ... until the fault grows past it
    assert incident.recoveries == []
    assert cycle(42, 9.0, 540.0) is None  # a tenth of 540 has to come back now
    assert cycle(180, 60.0, 1040.0) is None  # ... of the peak, 1,040
    assert cycle(181, 50.0, 1100.0) == 60.0 * 179  # the fault's end
    # the SIMs still awaited after its end (slow reporters going late) do not void it
    assert cycle(193, 0.0, 1246.0) == 60.0 * 179


def test_steered_devices_are_evidence_while_their_partner_stays_dark() -> None:
    engine, feed, end, _ = learned_fleet()
    steered = [iccid(k) for k in range(0, SIMS, 2)][:12]
    for n, sim in enumerate(steered):  # steered to 26203 when 26202 went down
        feed.event(sim, end + 60.0 + n, "location_update", mcc="262", mnc="03")
    params = engine.config.evaluation
    rows = np.array([engine.state.row(s) for s in steered])

    def moved(at: float) -> int:
        why = np.zeros(len(engine.state), np.uint8)
        ev = network_evidence(engine.state, at, why, params)
        return int(((ev[rows] & Evidence.MOVED) != 0).sum())

    assert moved(end + 30 * 60) == len(steered)
    # two hours on: other evidence would have lapsed; 26202 has said nothing since
    assert moved(end + 2 * HOUR) == len(steered)
    assert moved(end + params.moved_dark_hold_s + 2 * HOUR) == 0  # the hold is bounded
    # 26202 shows life (one of its SIMs reports): the steered ones are no evidence now
    feed.usage(iccid(40), end + 2 * HOUR + 60, mnc="02")
    assert moved(end + 2 * HOUR + 120) == 0


def _session_fleet() -> tuple[Engine, Feed, float]:
    """40 session-level SIMs in DE, 40 in FR: a session a day each (a usage record at
    its close, a scheduled reset), at hours spread over the day, for five days."""
    sims = [iccid(k) for k in range(80)]
    engine = new_engine(sims, warmup_s=DAY)
    feed = Feed(engine)
    return engine, feed, daily_sessions(feed, sims)


def test_a_session_level_country_that_went_dark_counts_as_failing() -> None:
    engine, feed, last = _session_fleet()
    params = EvalParams()
    fr = {engine.state.row(iccid(k)) for k in range(40, 80)}
    # the sessions stay open (nothing closes them when the network goes away):
    # every SIM is "ok" by its sessions, and the records stop
    quiet = last + 60.0
    assert not set(dark_rows(engine.state, quiet, params).tolist())
    # DE keeps sending its daily resets; FR sends nothing for 8 hours
    for k in range(10):
        feed.session(iccid(k), quiet + k * 40 * 60, "started", mcc="262", mnc="02")
    dark = set(dark_rows(engine.state, quiet + 8 * HOUR, params).tolist())
    assert dark == fr
    # one record from FR and it is no longer dark
    feed.session(iccid(41), quiet + 8 * HOUR, "started", mcc="208", mnc="01")
    assert not set(dark_rows(engine.state, quiet + 8 * HOUR + 60, params).tolist())


def test_churn_stopped_once_the_churners_rhythms_make_their_silence_unlikely() -> None:
    # 8 session-level devices re-opening a session every 20 min (a black hole) stop at
    # `last`: each has stopped once 25 min (1.25 rhythms) passed since its own last start
    sims = [iccid(k) for k in range(8)]
    engine = new_engine(sims)
    feed = Feed(engine)
    start = T0 + DAY
    for j in range(6):
        for k, sim in enumerate(sims):
            feed.session(sim, start + j * 1200.0 + k * 60.0, "started", apn="meters.acme",
                         mcc="262", mnc="02")  # fmt: skip
    last = start + 5 * 1200.0 + 7 * 60.0
    rows = np.array([engine.state.row(s) for s in sims])
    params = EvalParams()
    assert np.isnan(churn_stopped(engine.state, rows, last + 600.0, params))
    assert np.isnan(churn_stopped(engine.state, rows, last + 1200.0, params))
    assert churn_stopped(engine.state, rows, last + 1500.0, params) == last
    # fewer than recovery_min SIMs with a rhythm of re-opening: no verdict
    assert np.isnan(churn_stopped(engine.state, rows[:4], last + 6 * HOUR, params))


def test_churn_in_clock_aligned_bursts_is_no_stop() -> None:
    # 300 devices re-opening every 30 min, all on the same clock ticks: the group's starts
    # come in 5-minute bursts every 15 min with 10 quiet minutes between. A quiet of a few
    # minutes is no end, however many churners there are (a group-wide silence test took
    # 2 min without any start among 300 rhythms of 30 min for a 1e-4 event, and ended a
    # 50,000-SIM black hole mid-fault); once they all stop, the end is seen.
    sims = [iccid(k) for k in range(300)]
    engine = new_engine(sims)
    feed = Feed(engine)
    start = T0 + DAY
    for j in range(5):
        for k, sim in enumerate(sims):
            at = start + j * 1800.0 + (k % 2) * 900.0 + (k // 2) * 2.0
            feed.session(sim, at, "started", apn="meters.acme", mcc="262", mnc="02")
    last = start + 4 * 1800.0 + 900.0 + 149 * 2.0
    rows = np.array([engine.state.row(s) for s in sims])
    params = EvalParams()
    for quiet in (120.0, 300.0, 500.0):
        assert np.isnan(churn_stopped(engine.state, rows, last + quiet, params))
    # half of them were due again 30 min after their burst: they stopped
    assert churn_stopped(engine.state, rows, last - 900.0 + 1.25 * 1800.0 + 60.0, params) > 0


def test_the_onset_is_dated_from_the_come_backs_that_show_the_end_not_earlier_strays() -> None:
    # a mixed fleet's black hole of a partner at 50,000 SIMs, ended at 17:00 (minute 0
    # here): while it lasted, single SIMs came back now and then; from its end, 18 to 37 a
    # minute. Dated from the strays (16:50), the SIMs with 15-minute windows were late
    # again before their first window after the end arrived, and paged again.
    params = EvalParams()
    incident = _partner_incident(affected=1031.0, peak=1031.0)
    seen = []
    for minute, recovered in ((-9, 1.0), (-4, 1.0), (-3, 1.0), (1, 18.0), (2, 36.0), (3, 28.0)):
        advance_recovery(incident, 60.0 * minute, recovered, None, params=params, interval_s=60.0)
        seen.append(incident.recovery_onset)
    assert seen == [None] * 6  # 85 of the 104 a tenth of the peak needs
    advance_recovery(incident, 240.0, 31.0, None, params=params, interval_s=60.0)
    assert incident.recovery_onset == 0.0  # the cycle before the first of 18, 36, 28, 31
    # strays that are needed to reach the count still date it
    again = _partner_incident(affected=50.0, peak=50.0)  # 5 to come back
    for minute, recovered in ((1, 3.0), (5, 1.0), (6, 1.0)):
        advance_recovery(again, 60.0 * minute, recovered, None, params=params, interval_s=60.0)
    assert again.recovery_onset == 0.0


def test_an_onset_restored_from_an_older_checkpoint_is_not_voided() -> None:
    # a checkpoint written before ``recovery_peak`` existed: its onset stands as long as
    # the fault does not grow past twice its peak
    incident = _partner_incident(affected=900.0, peak=1000.0, onset=600.0)
    state = incident_state(incident)
    del state["recovery_peak"]
    restored = incident_from_state(state)
    assert restored.recovery_peak == 1000.0
    advance_recovery(restored, 660.0, 0.0, None, params=EvalParams(), interval_s=60.0)
    assert restored.recovery_onset == 600.0


def test_a_churner_re_opening_once_after_the_onset_is_awaited_twice_is_not() -> None:
    # At 50,000 SIMs (bench/scenarios.py, r1 partial_blackhole seed 1) 31 meters of the
    # black hole's partner, each reporting every 15 minutes, re-opened a session once
    # after the fault ended (their next report still to come) and counted as failing
    # again: the incident resolved 16 min after the end, its data back at 3 min. A
    # churner comes back by re-opening once; only a second start is churn going on.
    sims = [iccid(k) for k in range(3)]
    engine = new_engine(sims)
    feed = Feed(engine)
    t = T0
    while t < T0 + DAY:
        for name in sims:
            feed.usage(name, t)
        t += 900.0
    dark = t  # no data from here on; sessions re-opened every half hour: churn
    for k, name in enumerate(sims):
        for start in (dark + 600.0, dark + 2400.0, dark + 4200.0):
            feed.session(name, start, "started")
        if k >= 1:  # after the onset at dark + 5000: once (SIM 1) or twice (SIM 2)
            feed.session(name, dark + 5100.0, "started")
        if k == 2:
            feed.session(name, dark + 5700.0, "started")
    state = engine.state
    n = len(state)
    everyone = np.ones(n, bool)
    onset = np.full(state.n_leaves, dark + 5000.0)
    awaited = awaiting_report(
        state,
        dark + 5800.0,
        overdue=everyone,
        churning=everyone,
        onset_by_leaf=onset,
        params=EvalParams(),
    )
    rows = [state.index.get(name) for name in sims]
    assert awaited[rows].tolist() == [True, True, False]


def test_a_dark_country_that_re_attaches_over_minutes_resolves_with_its_onset() -> None:
    # At 50,000 SIMs (bench/scenarios.py, r3 country_outage seed 1) France went dark for
    # two hours. The first SIM heard again ended "dark" for the whole country at once;
    # the rest re-attached over the next ten minutes, no longer failing, so none of them
    # counted as back: the incident resolved without a recovery onset, and SIMs whose
    # usage the outage lost paged again an hour later, overdue by their broken rhythm.
    engine, feed, last = _session_fleet()
    fr = [iccid(k) for k in range(40, 80)]
    t = last + 60.0
    dark_from = t
    while t < dark_from + 9 * HOUR:  # DE goes on with its daily resets, FR is silent
        k = int((t - dark_from) // 2400) % 40
        if (t - dark_from) % 2400 < 600:
            feed.session(iccid(k), t, "started", apn="meters.acme", mcc="262", mnc="02")
        engine.evaluate(t)
        t += 600.0
    incident = next(i for i in engine.incidents.open.values() if i.dims == {"country": "FR"})
    assert incident.recovery_onset is None
    # FR comes back: one SIM a quarter of a minute apart, each re-attaching (the session
    # the outage killed had no end record)
    back = t
    starts = [(back + 20.0 * k, name) for k, name in enumerate(fr)]
    while t < back + 20 * 60.0:
        t += 60.0
        while starts and starts[0][0] <= t:
            ts, name = starts.pop(0)
            feed.session(name, ts, "started", apn="meters.acme", mcc="208", mnc="01")
        engine.evaluate(t)
    assert incident.resolved_at is not None
    assert incident.recovery_onset is not None
    assert back - 60.0 <= incident.recovery_onset <= back + 60.0


def test_windows_closed_before_the_network_dropped_the_sims_are_no_recovery() -> None:
    # The network ends the partner's sessions with a failure cause at the fault's start.
    # The window that closed at the start arrives minutes into the fault: it moves each
    # SIM's last data, but it was sent before the network dropped the SIM. Counted as a
    # come-back, it dated the recovery at the fault's second minute (50,000 SIMs, R2 APN
    # outage: `recovering_since` 09:02 through a 3-hour outage). The recovery begins at
    # the fault's end, when the devices are back on the network.
    results, onsets, fault_end = _windowed_partner_outage(ended_by_network=True)
    changes = _group_changes(results)
    opened = [c.incident for _, c in changes if c.kind == "opened"]
    assert [incident.dims for incident in opened] == [{"partner": "26202"}]
    # the pre-fault windows came in while it lasted (a SIM's at 2-10 min), none a recovery
    assert onsets
    assert set(onsets) == {None}
    incident = opened[0]
    assert incident.recovery_onset is not None
    assert fault_end - 60 <= incident.recovery_onset <= fault_end + 180
    resolved = [at for at, c in changes if c.kind == "resolved"]
    assert len(resolved) == 1
    assert resolved[0] - fault_end <= 3 * 60


def _steered_trackers_outage(
    after_s: float = 30 * 60.0,
) -> tuple[Engine, list[CycleResult], float, list[int]]:
    """Germany, two partners: meters and trackers (``iot.trackr``, hourly) on each.
    26201 goes down for 150 minutes. In its first minutes two thirds of its meters
    (every 10 min) and 7 of its 12 trackers are steered to 26202 (a location update):
    the meters report through it, the trackers send nothing more. Its other meters
    (every 30 min) report again from its end, the first of them seconds after it; its
    trackers stay quiet (the R3 trace's, whose data shows only when their sessions
    close). Runs until ``after_s`` past the end (negative: before it); returns the
    engine, each minute's result from the fault's start, its end and the steered
    trackers' rows."""
    steered = set(range(40)) | set(range(90, 97))
    quiet = set(range(90, 102))  # 26201's trackers
    mnc = {k: ("01" if k < 60 or 90 <= k < 102 else "02") for k in range(180)}
    period = {k: (HOUR if k >= 90 else 1800.0 if 40 <= k < 60 else 600.0) for k in mnc}
    engine = new_engine(warmup_s=DAY)
    engine.load_inventory(
        [inventory_row(iccid(k)) for k in range(90)]
        + [inventory_row(iccid(k), apns=("iot.trackr",)) for k in range(90, 180)]
    )
    feed = Feed(engine)
    offsets = np.random.default_rng(11).uniform(0, 1, 180)
    nxt = {k: T0 + offsets[k] * period[k] for k in period}

    def send_due(t: float, silent: set[int]) -> None:
        for k in sorted(nxt, key=nxt.__getitem__):
            while nxt[k] <= t:
                if k not in silent:
                    apn = "iot.trackr" if k >= 90 else "meters.acme"
                    feed.usage(iccid(k), nxt[k], apn=apn, mnc=mnc[k])
                nxt[k] += period[k]

    t = T0
    while t < T0 + 2 * DAY:  # two days of history
        t += 600.0
        send_due(t, set())
        engine.evaluate(t)
    start, end = t, t + 150 * 60.0
    for n, k in enumerate(sorted(steered)):
        feed.event(iccid(k), start + 60.0 + 5 * n, "location_update", mcc="262", mnc="02")
        mnc[k] = "02"
    down = {k for k, net in mnc.items() if net == "01"}  # 26201's own meters
    nxt[40] = end + 10.0  # the first of them back
    results = []
    while t < end + after_s:
        t += 60.0
        send_due(t, quiet | (down if t <= end else set()))
        results.append(engine.evaluate(t))
    rows = [engine.state.row(iccid(k)) for k in range(90, 97)]
    return engine, results, end, rows


def test_sims_steered_away_by_an_outage_stay_its_own_after_it_ends() -> None:
    # At 50,000 SIMs (bench/scenarios.py, r3 partner_outage seed 6) trackers steered
    # from 26201 to its siblings by its outage counted against it while it was dark
    # ("moved"). At its end 26201 showed life again: 7 of them, still quiet, fell back
    # to their new partner's leaves, joined 5 late trackers on 26201 and paged
    # {apn: iot.trackr, country: DE} (12 of 91 failing, 0.18 expected) at the second
    # minute, before the partner's recovery (dated its first minute) was known. An
    # overdue SIM that has sent nothing since it left its partner counts where it fell
    # silent, and is awaited there once that partner's recovery begins.
    engine, results, end, movers = _steered_trackers_outage()
    opened = [c.incident.dims for _, c in _group_changes(results) if c.kind == "opened"]
    assert opened == [{"partner": "26201"}]
    incident = next(i for i in engine.incidents.all() if i.dims == {"partner": "26201"})
    assert incident.resolved_at is not None
    assert incident.resolved_at - end <= 15 * 60.0
    # the cycle after the end: the movers are overdue, and count in 26201's leaf
    after = next(r.evaluation for r in results if r.evaluation.now == end + 60.0)
    state = engine.state
    left = {int(state.cols.prev_leaf[row]) for row in movers}
    assert after.overdue[movers].all()
    assert set(after.member_leaf[movers].tolist()) == left
    partner = state.dims.index("partner")
    names = state.leaf_labels()[partner]
    assert {names[state.leaf_codes()[leaf, partner]] for leaf in left} == {"26201"}


def test_a_sim_steered_away_names_the_page_it_counts_in() -> None:
    # A SIM counted in the partner it left (moved, or silent since it left) is part of
    # that partner's page: its view and diagnosis name it, and its ticket carries it
    # (``group_incident``) so the inhibit rule mutes it under the page. By its own
    # dimensions (its new partner) it was in no incident: a ticket per steered device.
    for after_s, why in ((-3600.0, "moved"), (60.0, "silent since it left")):
        engine, results, _, movers = _steered_trackers_outage(after_s)
        (page,) = [i for i in engine.incidents.open.values() if i.kind == "group"]
        assert page.dims == {"partner": "26201"}, why
        now = results[-1].evaluation.now
        for row in movers:
            assert engine.sim_dims(row)["partner"] == "26202"
            assert engine.incident_of(row) is page, why
        name = iccid(90)
        view = sim_view(engine, name, now)["incident"]
        assert isinstance(view, dict)
        assert view["id"] == page.id
        findings = engine.diagnose(name, now) or []
        assert [f.code for f in findings if f.code == "group_incident"] == ["group_incident"]
        # a tracker that was always on 26202: no part of it
        assert engine.incident_of(engine.state.row(iccid(150))) is None
