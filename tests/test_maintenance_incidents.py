"""Incidents in a maintenance window's scope: still detected, shown and stored, marked
``maintenance``, sent to Alertmanager with ``maintenance="true"``; when the window ends
while the fault goes on, the next evaluation drops the mark and the page fires."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fleet import DAY, ICCIDS, T0, Feed, new_engine

from simwatch.core.incidents import incident_from_state, incident_state
from simwatch.core.maintenance import Window, window_from_json
from simwatch.core.timeutil import format_rfc3339
from simwatch.shell.settings import AlertmanagerSinkSettings
from simwatch.shell.sink_contract import Cycle
from simwatch.sinks.alertmanager import AlertmanagerSink

if TYPE_CHECKING:
    from simwatch.core.engine import CycleResult, Engine
    from simwatch.core.incidents import Incident

DE, FR_OK, FR = ICCIDS[:10], ICCIDS[10:20], ICCIDS[20:40]
NETWORK = {
    **dict.fromkeys(DE, ("262", "02")),
    **dict.fromkeys(FR_OK, ("208", "10")),
    **dict.fromkeys(FR, ("208", "01")),
}
LEARNED = T0 + 3 * DAY
OUTAGE = LEARNED  # partner 20801 sends nothing from here on


def engine_with_outage() -> tuple[Engine, Feed]:
    """40 SIMs report every 15 min for three days; then partner 20801's 20 stop."""
    engine = new_engine(ICCIDS[:40])
    feed = Feed(engine)
    t = T0
    while t < LEARNED + 6 * 3600:
        for i, iccid in enumerate(ICCIDS[:40]):
            if t >= OUTAGE and iccid in FR:
                continue
            mcc, mnc = NETWORK[iccid]
            feed.usage(iccid, t + i, mcc=mcc, mnc=mnc)
        t += 900.0
    return engine, feed


def window(start: float, hours: float, scope: dict[str, object], wid: str = "mw-0001") -> Window:
    return window_from_json(
        {"name": "Orange works", "start": format_rfc3339(start), "duration_s": hours * 3600,
         "scope": scope},
        window_id=wid,
    )  # fmt: skip


def run_until_open(engine: Engine, start: float) -> tuple[float, Incident, CycleResult]:
    now = start
    while now < start + 4 * 3600:
        result = engine.evaluate(now)
        groups = [i for i in engine.incidents.open.values() if i.kind == "group"]
        if groups:
            return now, groups[0], result
        now += 300.0
    raise AssertionError("no incident opened")


def test_an_incident_in_scope_is_detected_and_marked_until_the_window_ends() -> None:
    engine, _ = engine_with_outage()
    ends = OUTAGE + 2 * 3600
    engine.maintenance = (window(OUTAGE - 3600, 3, {"partner": ["20801"]}),)
    now, incident, _ = run_until_open(engine, OUTAGE + 600)
    assert incident.dims == {"partner": "20801"}
    body = incident.to_json()
    assert body["maintenance"] is True
    assert body["maintenance_windows"] == [
        {"id": "mw-0001", "name": "Orange works", "ends_at": format_rfc3339(ends)}
    ]
    assert body["state"] == "open"  # still detected and shown
    # stored: the mark survives a checkpoint of the incident
    assert incident_from_state(incident_state(incident)).to_json() == body
    # the window ends while the fault goes on: the next cycle drops the mark, an update
    now = max(now, ends - 300.0)
    while now < ends:
        result = engine.evaluate(now)
        assert incident.to_json()["maintenance"] is True
        now += 300.0
    result = engine.evaluate(ends)
    assert incident.state == "open"
    assert incident.to_json()["maintenance"] is False
    assert incident.to_json()["maintenance_windows"] == []
    assert [(c.kind, c.incident.id) for c in result.changes] == [("updated", incident.id)]


def test_an_incident_outside_the_scope_or_the_time_is_not_marked() -> None:
    engine, _ = engine_with_outage()
    engine.maintenance = (
        window(OUTAGE - 3600, 3, {"partner": ["26202"]}, "other-partner"),
        window(OUTAGE - 7200, 1, {"partner": ["20801"]}, "over-already"),
        window(OUTAGE - 3600, 3, {"customer": ["beta"]}, "other-customer"),
    )
    _, incident, _ = run_until_open(engine, OUTAGE + 600)
    assert incident.to_json()["maintenance"] is False


def test_a_customer_window_covers_an_incident_whose_failing_sims_are_all_its_own() -> None:
    engine, _ = engine_with_outage()  # every SIM of the fleet is customer acme
    engine.maintenance = (window(OUTAGE - 3600, 3, {"customer": "acme"}),)
    _, incident, _ = run_until_open(engine, OUTAGE + 600)
    assert incident.to_json()["maintenance"] is True


def test_alertmanager_gets_maintenance_true_then_the_page_without_it() -> None:
    engine, _ = engine_with_outage()
    ends = OUTAGE + 2 * 3600
    engine.maintenance = (window(OUTAGE - 3600, 3, {"partner": ["20801"]}),)
    settings = AlertmanagerSinkSettings(urls=["http://127.0.0.1:9"])
    clock = [OUTAGE]
    sink = AlertmanagerSink(settings, simwatch_url="http://simwatch", clock=lambda: clock[0])
    now, incident, result = run_until_open(engine, OUTAGE + 600)
    clock[0] = now
    sink.on_cycle(Cycle(engine, result, now, live=True))
    [alert] = sink.firing
    assert alert.labels["maintenance"] == "true"
    assert alert.labels["incident"] == incident.id
    assert "In a maintenance window: Orange works" in alert.annotations["description"]
    clock[0] = ends
    sink.on_cycle(Cycle(engine, engine.evaluate(ends), ends, live=True))
    [page] = sink.firing
    assert "maintenance" not in page.labels  # the same alert as outside any window: a page
    assert page.labels["incident"] == incident.id
    [gone] = sink.pending_resolved()
    assert gone.labels["maintenance"] == "true"
    assert gone.ends_at == ends
