"""The Alertmanager sink: payloads from a real engine, delivery to real Alertmanagers.

The fleet (``Scenario``): 30 SIMs report every 15 minutes for two days, 10 on KPN (NL,
20408, customer acme), 10 on Telefonica (DE, 26203; 6 acme, 4 beta), 10 on Vodafone (DE,
26202, gamma). Two are tagged vip: VIP_IN (on 26203) and VIP_OUT (on 26202).

* phase A (4 h): both vip SIMs stop: two tickets, no group incident covers them;
* phase B (2 h): the rest of 26203 stops too: a group incident {partner: 26203} opens
  over VIP_IN (its ticket's labels gain ``group_incident``);
* phase C (2 h): 26203 comes back, VIP_IN included: the page and VIP_IN's ticket resolve,
  VIP_OUT's ticket stays.

Alertmanager runs from ``tests/servers.py``; webhook receivers are small aiohttp servers
on free loopback ports that record what Alertmanager notifies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import subprocess
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
import pytest
import yaml
from aiohttp import web
from fleet import DAY, T0
from fleet import ICCIDS as FLEET_ICCIDS
from mosquitto import free_port
from servers import AMTOOL, Alertmanager, binary, until

from simwatch.core.engine import CycleResult, Engine, EngineConfig
from simwatch.core.incidents import IncidentChange
from simwatch.core.inventory import InventoryRow
from simwatch.core.localize import Cause
from simwatch.core.records import Record, RecordDecoder
from simwatch.core.timeutil import format_rfc3339, parse_rfc3339
from simwatch.service.daemon import Daemon
from simwatch.shell.settings import (
    AlertmanagerSinkSettings,
    EngineSettings,
    Settings,
    SimulatorSourceSettings,
)
from simwatch.shell.sink_contract import Cycle
from simwatch.sinks import alertmanager as am_module
from simwatch.sinks.alertmanager import (
    DASHBOARD_GROUP,
    DASHBOARD_SIM,
    GROUP_ALERTNAME,
    SIM_ALERTNAME,
    AlertmanagerSink,
    format_time,
    label_name,
    top_customers,
)
from simwatch.sources.simulator import SimulatorSource

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = [
    pytest.mark.real_server,
    pytest.mark.skipif(
        not Alertmanager.available(), reason="prometheus-alertmanager is not installed"
    ),
]

WALL = T0 + 30 * DAY
ICCIDS = list(FLEET_ICCIDS[:30])
NL, DE3, DE2 = ICCIDS[0:10], ICCIDS[10:20], ICCIDS[20:30]
VIP_IN, VIP_OUT = DE3[0], DE2[0]
NETWORK = {
    **dict.fromkeys(NL, ("204", "08")),
    **dict.fromkeys(DE3, ("262", "03")),
    **dict.fromkeys(DE2, ("262", "02")),
}
LEARN_END = T0 + 2 * DAY
A_END = LEARN_END + 4 * 3600
B_END = A_END + 2 * 3600
C_END = B_END + 2 * 3600
SIMWATCH = "http://simwatch.test:39153"
DECK = Path(__file__).resolve().parent.parent / "deploy" / "alertmanager" / "alertmanager.yml"
TIMEOUT = 20.0


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def customer_of(iccid: str) -> str:
    if iccid in NL:
        return "acme"
    if iccid in DE3:
        return "acme" if DE3.index(iccid) < 6 else "beta"
    return "gamma"


class Scenario:
    """The fleet of the module docstring, evaluated every 5 minutes on its own clock;
    every cycle is handed to ``sinks`` (as live unless ``live`` is False)."""

    def __init__(self) -> None:
        self.engine = Engine(replace(EngineConfig(), warmup_s=0.0))
        self.engine.load_inventory(
            InventoryRow(
                iccid=i,
                customer=customer_of(i),
                apns=("meters.acme",),
                tags=frozenset({"vip"}) if i in (VIP_IN, VIP_OUT) else frozenset(),
            )
            for i in ICCIDS
        )
        self.decoder = RecordDecoder()
        self.sinks: list[AlertmanagerSink] = []
        self.live = True
        self.last: Cycle | None = None
        self.n = 0

    def usage(self, iccid: str, end: float) -> None:
        self.n += 1
        mcc, mnc = NETWORK[iccid]
        line = orjson.dumps({
            "kind": "usage", "record_id": f"r-{self.n}", "iccid": iccid,
            "start": format_rfc3339(end - 60), "end": format_rfc3339(end),
            "bytes_up": 1200, "bytes_down": 300, "apn": "meters.acme", "mcc": mcc, "mnc": mnc,
        })  # fmt: skip
        record = self.decoder.decode_line(line, WALL)
        assert isinstance(record, Record), record
        self.engine.ingest_record(record)

    def run(self, start: float, end: float, reporting: list[str]) -> None:
        t = start
        while t < end:
            if (t - T0) % 900 == 0:
                for i, iccid in enumerate(reporting):
                    self.usage(iccid, t + i)
            if t >= LEARN_END:
                now = t + 120
                self.last = Cycle(self.engine, self.engine.evaluate(now), now, self.live)
                for sink in self.sinks:
                    sink.on_cycle(self.last)
            t += 300

    def learn(self) -> Scenario:
        self.run(T0, LEARN_END, ICCIDS)
        return self

    def phase_a(self) -> Scenario:
        self.run(LEARN_END, A_END, [i for i in ICCIDS if i not in (VIP_IN, VIP_OUT)])
        return self

    def phase_b(self) -> Scenario:
        self.run(A_END, B_END, [i for i in ICCIDS if i not in DE3 and i != VIP_OUT])
        return self

    def phase_c(self) -> Scenario:
        self.run(B_END, C_END, [i for i in ICCIDS if i != VIP_OUT])
        return self

    def open_ids(self, kind: str) -> list[str]:
        return [i.id for i in self.engine.incidents.open.values() if i.kind == kind]

    def ticket_of(self, iccid: str) -> str:
        return next(
            i.id for i in self.engine.incidents.all() if i.kind == "sim" and i.iccid == iccid
        )

    def live_cycle(self) -> Cycle:
        """The last cycle again, as a live one without changes (a sink's first live cycle)."""
        assert self.last is not None
        result = replace(self.last.result, changes=[])
        return Cycle(self.engine, result, self.last.now, live=True)


def am_settings(urls: list[str], **kw: Any) -> AlertmanagerSinkSettings:
    base: dict[str, Any] = {
        "urls": urls,
        "resend_interval_s": 0.5,
        "ends_at_after_s": 300.0,
        "timeout_s": 2.0,
        "retry_min_s": 0.05,
        "retry_max_s": 0.2,
        "labels": {"env": "test"},
        "grafana_url": "http://grafana.test:3000",
        "runbook_url": "https://runbook.test/simwatch#incidents",
    }
    return AlertmanagerSinkSettings.model_validate(base | kw)


def by_name(alerts: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Alerts keyed ``page`` / ``ticket:<iccid>``."""
    out: dict[str, dict[str, Any]] = {}
    for alert in alerts:
        labels = alert["labels"]
        key = "page" if labels["severity"] == "page" else f"ticket:{labels['iccid']}"
        assert key not in out, alerts
        out[key] = alert
    return out


def firing(sink: AlertmanagerSink) -> dict[str, dict[str, Any]]:
    """The sink's firing alerts (no pending resolves), keyed as ``by_name``."""
    return by_name([a.to_json(sink.clock(), 300.0) for a in sink.firing])


# ---- payloads from a real engine (no network) -----------------------------------------


@pytest.fixture(scope="module")
def at_b() -> Scenario:
    """The scenario at the end of phase B (nothing fed to sinks)."""
    return Scenario().learn().phase_a().phase_b()


def test_payload_of_a_page_and_its_tickets(at_b: Scenario) -> None:
    clock = FakeClock(WALL)
    sink = AlertmanagerSink(
        am_settings(["http://127.0.0.1:1"]), simwatch_url=SIMWATCH + "/", console=True, clock=clock
    )
    assert (sink.stats.name, sink.stats.kind) == ("alertmanager", "alertmanager")
    sink.on_cycle(at_b.live_cycle())
    engine = at_b.engine
    [page_id] = at_b.open_ids("group")
    incident = engine.incidents.get(page_id)
    assert incident is not None
    assert incident.dims == {"partner": "26203"}
    alerts = by_name(sink.payload())
    assert set(alerts) == {"page", f"ticket:{VIP_IN}", f"ticket:{VIP_OUT}"}
    page = alerts["page"]
    assert page["labels"] == {
        "alertname": GROUP_ALERTNAME,
        "severity": "page",
        "incident": page_id,
        "group_incident": page_id,
        "partner": "26203",
        "env": "test",
    }
    assert page["generatorURL"] == f"{SIMWATCH}/api/v1/incidents/{page_id}"
    assert page["startsAt"] == format_time(incident.opened_at)
    assert page["endsAt"] == format_time(WALL + 300.0)
    notes = page["annotations"]
    assert notes["summary"].startswith(f"partner {engine.partner_label('26203')}: ")
    assert "10 of 10 SIMs" in notes["summary"]
    assert notes["affected"] == "10"
    assert notes["total"] == "10"
    assert notes["top_customers"] == "acme=6, beta=4"
    assert "Top customers of the affected SIMs: acme 6, beta 4." in notes["description"]
    # what the count rests on: here silence alone (the network said nothing)
    assert notes["evidence"] == "10 of 10 SIMs failing: 10 overdue by their own rhythm"
    assert f"Evidence: {notes['evidence']}. " in notes["description"]
    assert f"incident {page_id}" in notes["description"]
    assert format_rfc3339(incident.opened_at)[:16].replace("T", " ") in notes["description"]
    assert f"Affected SIMs: {SIMWATCH}/api/v1/incidents/{page_id}/sims" in notes["description"]
    assert notes["runbook_url"] == "https://runbook.test/simwatch#incidents"
    assert notes["dashboard_url"].startswith("http://grafana.test:3000/d/")
    assert "var-partner=26203" in notes["dashboard_url"]
    assert notes["console_url"] == f"{SIMWATCH}/ui/incidents/{page_id}"

    covered, alone = alerts[f"ticket:{VIP_IN}"], alerts[f"ticket:{VIP_OUT}"]
    assert covered["labels"] == {
        "alertname": SIM_ALERTNAME,
        "severity": "ticket",
        "incident": at_b.ticket_of(VIP_IN),
        "iccid": VIP_IN,
        "apn": "meters.acme",
        "country": "DE",
        "partner": "26203",
        "group_incident": page_id,
        "env": "test",
    }
    assert "group_incident" not in alone["labels"]
    assert list(alerts) == ["page", f"ticket:{VIP_IN}", f"ticket:{VIP_OUT}"]  # pages first
    # a ticket's label set starts when the sink first has it (here at the first live
    # cycle), so Alertmanager holds it for group_wait and learns of the page first
    assert covered["startsAt"] == alone["startsAt"] == format_time(WALL)
    assert covered["endsAt"] == format_time(WALL + 300.0)
    assert alone["labels"]["partner"] == "26202"
    assert covered["generatorURL"] == f"{SIMWATCH}/api/v1/incidents/{at_b.ticket_of(VIP_IN)}"
    assert f"inside open group incident {page_id}" in covered["annotations"]["description"]
    assert "No open group incident covers it" in alone["annotations"]["description"]
    assert alone["annotations"]["summary"] == (
        f"SIM {VIP_OUT} of customer gamma: silent beyond its usual rhythm"
    )
    assert f"{SIMWATCH}/api/v1/sims/{VIP_OUT}" in alone["annotations"]["description"]
    assert alone["annotations"]["console_url"] == f"{SIMWATCH}/ui/sims/{VIP_OUT}"
    assert sink.pending_resolved() == []
    assert sink.stats.buffered == 3  # three firing alerts the replica has not taken

    no_tickets = AlertmanagerSink(
        am_settings(["http://127.0.0.1:1"], tickets=False), simwatch_url=SIMWATCH, clock=clock
    )
    no_tickets.on_cycle(at_b.live_cycle())
    assert list(by_name(no_tickets.payload())) == ["page"]
    # without the console ([console] enabled = false), no link to it
    assert "console_url" not in by_name(no_tickets.payload())["page"]["annotations"]


def test_top_customers_counts_affected_sims_of_the_group(at_b: Scenario) -> None:
    engine = at_b.engine
    evaluation = engine.last_evaluation
    assert evaluation is not None
    assert top_customers(engine, evaluation, {"partner": "26203"}) == [("acme", 6), ("beta", 4)]
    assert top_customers(engine, evaluation, {"partner": "26203"}, limit=1) == [("acme", 6)]
    assert top_customers(engine, evaluation, {"country": "DE"}) == [
        ("acme", 6),
        ("beta", 4),
        ("gamma", 1),  # VIP_OUT
    ]
    assert top_customers(engine, evaluation, {"partner": "99999"}) == []


def test_lifecycle_label_change_resolution_and_external_url() -> None:
    clock = FakeClock(WALL)
    settings = am_settings(["http://127.0.0.1:1", "http://127.0.0.1:2"])
    settings = settings.model_copy(update={"external_url": "https://simwatch.example.net/"})
    sink = AlertmanagerSink(settings, simwatch_url=SIMWATCH, clock=clock)
    scenario = Scenario().learn()
    scenario.sinks.append(sink)
    scenario.phase_a()
    alerts = firing(sink)
    assert set(alerts) == {f"ticket:{VIP_IN}", f"ticket:{VIP_OUT}"}
    assert all("group_incident" not in a["labels"] for a in alerts.values())
    assert alerts[f"ticket:{VIP_IN}"]["generatorURL"].startswith(
        "https://simwatch.example.net/api/v1/incidents/inc-"
    )
    before = alerts[f"ticket:{VIP_IN}"]["labels"]

    clock.now = WALL + 100
    scenario.phase_b()
    [page_id] = scenario.open_ids("group")
    alerts = firing(sink)
    before_page = alerts["page"]["labels"]
    assert alerts[f"ticket:{VIP_IN}"]["labels"]["group_incident"] == page_id
    for replica in (0, 1):  # the ticket's old label set is resolved, on every replica
        [old] = [a.to_json(clock.now, 300) for a in sink.pending_resolved(replica)]
        assert old["labels"] == before
        assert old["endsAt"] == format_time(WALL + 100)

    clock.now = WALL + 200
    scenario.phase_c()
    assert scenario.open_ids("group") == []
    assert set(firing(sink)) == {f"ticket:{VIP_OUT}"}
    resolved = [
        (a.labels["incident"], a.labels.get("group_incident")) for a in sink.pending_resolved(1)
    ]
    ticket = scenario.ticket_of(VIP_IN)
    # on the second replica nothing was ever delivered: VIP_IN's old label set (phase B),
    # then the page and VIP_IN's covered label set (phase C), all resolved
    assert sorted(resolved, key=str) == sorted(
        [(ticket, None), (page_id, page_id), (ticket, page_id)], key=str
    )
    [page] = [a for a in sink.payload(1) if a["labels"] == before_page]
    assert page["endsAt"] == format_time(WALL + 200)
    assert str(page["startsAt"]) < str(page["endsAt"])


def test_the_backlog_sends_only_what_is_still_open_at_its_end() -> None:
    sink = AlertmanagerSink(
        am_settings(["http://127.0.0.1:1"]), simwatch_url=SIMWATCH, clock=FakeClock(WALL)
    )
    scenario = Scenario().learn()
    scenario.sinks.append(sink)
    scenario.live = False  # phases A-C replayed as history: the page opens and resolves
    scenario.phase_a().phase_b().phase_c()
    assert scenario.engine.incidents.resolved  # the page and a ticket came and went
    assert sink.payload() == []
    assert sink.stats.buffered == 0
    sink.on_cycle(scenario.live_cycle())
    alerts = by_name(sink.payload())
    assert set(alerts) == {f"ticket:{VIP_OUT}"}  # open at the end of the backlog
    assert sink.pending_resolved() == []


# ---- a tracker driven by hand: cheap incidents for delivery tests ---------------------


@dataclass
class Driver:
    """An engine whose incident tracker is fed causes directly (no fleet)."""

    engine: Engine = field(default_factory=lambda: Engine(replace(EngineConfig(), warmup_s=0)))
    now: float = T0
    sinks: list[AlertmanagerSink] = field(default_factory=list)

    def __post_init__(self) -> None:
        # one evaluation of the empty fleet, reused by every cycle: evaluating again
        # would feed the tracker (no causes) between the hand-fed cycles
        self.evaluation = self.engine.evaluate(self.now).evaluation

    def cycle(self, *causes: dict[str, str], live: bool = True, affected: float = 40) -> None:
        self.now += 60
        found = [Cause(dims=d, affected=affected, total=100, expected=2, score=50) for d in causes]
        changes = self.engine.incidents.update_groups(self.now, found)
        result = CycleResult(self.evaluation, changes, 0.0)
        for sink in self.sinks:
            sink.on_cycle(Cycle(self.engine, result, self.now, live))

    def open(self, dims: dict[str, str]) -> str:
        for _ in range(self.engine.config.incidents.open_after):
            self.cycle(dims, *self._others(dims))
        return next(i.id for i in self.engine.incidents.open.values() if i.dims == dims)

    def _others(self, dims: dict[str, str]) -> list[dict[str, str]]:
        return [i.dims for i in self.engine.incidents.open.values() if i.dims != dims]

    def resolve_all(self) -> None:
        for _ in range(self.engine.config.incidents.close_after):
            self.cycle()


def test_pending_resolved_alerts_are_bounded_and_superseded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(am_module, "MAX_PENDING_RESOLVED", 2)
    sink = AlertmanagerSink(
        am_settings(["http://127.0.0.1:1"]), simwatch_url=SIMWATCH, clock=FakeClock(WALL)
    )
    driver = Driver(sinks=[sink])
    ids = [driver.open({"apn": f"apn-{k}"}) for k in range(3)]
    assert len(sink.firing) == 3
    driver.resolve_all()
    kept = [a.labels["incident"] for a in sink.pending_resolved()]
    assert kept == ids[1:]  # the oldest resolve was dropped and counted
    assert sink.stats.dropped == 1
    assert sink.stats.buffered == 2


def test_a_label_set_firing_again_supersedes_its_pending_resolve() -> None:
    sink = AlertmanagerSink(
        am_settings(["http://127.0.0.1:1"]), simwatch_url=SIMWATCH, clock=FakeClock(WALL)
    )
    driver = Driver(sinks=[sink])
    narrow = {"apn": "meters.acme", "partner": "26203"}
    incident_id = driver.open(narrow)
    driver.cycle({"partner": "26203"})  # the incident widens: same id, new label set
    [old] = sink.pending_resolved()
    assert {k: old.labels.get(k) for k in narrow} == narrow
    [new] = sink.firing
    assert new.labels["incident"] == incident_id
    assert "apn" not in new.labels
    incident = driver.engine.incidents.get(incident_id)
    assert incident is not None
    incident.dims = dict(narrow)  # (by hand) back to the first label set before delivery
    change = IncidentChange("updated", incident, driver.now)
    result = CycleResult(driver.evaluation, [change], 0.0)
    sink.on_cycle(Cycle(driver.engine, result, now=driver.now, live=True))
    assert [a.labels for a in sink.firing] == [old.labels]
    assert [a.labels for a in sink.pending_resolved()] == [new.labels]  # old one superseded


def test_label_names_are_made_valid() -> None:
    assert label_name("cost-center") == "cost_center"
    assert label_name("2g") == "_2g"
    assert label_name("apn") == "apn"


# ---- real Alertmanagers -----------------------------------------------------------------


@contextlib.asynccontextmanager
async def alertmanager(
    directory: Path, config: str | None = None, port: int | None = None
) -> AsyncIterator[Alertmanager]:
    server = Alertmanager(directory, port=port, config=config)
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)


@contextlib.asynccontextmanager
async def running(sink: AlertmanagerSink) -> AsyncIterator[AlertmanagerSink]:
    task = asyncio.create_task(sink.run())
    try:
        yield sink
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await sink.close()


async def am_alerts(url: str, **params: str) -> list[dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{url}/api/v2/alerts", params=params) as response,
    ):
        assert response.status == 200
        body: list[dict[str, Any]] = await response.json()
        return body


def labels_of(alerts: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [a["labels"] for a in alerts]


async def test_alert_fires_and_resolves_in_a_real_alertmanager(tmp_path: Path) -> None:
    async with webhooks() as hooks, alertmanager(tmp_path / "am", hook_config(hooks)) as server:
        sink = AlertmanagerSink(am_settings([server.url]), simwatch_url=SIMWATCH)
        driver = Driver(sinks=[sink])
        async with running(sink):
            incident = driver.open({"partner": "26203", "apn": "meters.acme"})

            async def active() -> list[dict[str, Any]]:
                return await am_alerts(server.url, active="true")

            [alert] = await until(active, TIMEOUT, "the alert active")
            assert alert["labels"] == {
                "alertname": GROUP_ALERTNAME,
                "severity": "page",
                "incident": incident,
                "group_incident": incident,
                "partner": "26203",
                "apn": "meters.acme",
                "env": "test",
            }
            assert alert["status"]["state"] == "active"
            assert alert["generatorURL"] == f"{SIMWATCH}/api/v1/incidents/{incident}"
            assert alert["annotations"]["affected"] == "40"
            driver.resolve_all()

            async def gone() -> bool:
                return await active() == [] and await am_alerts(server.url) == []

            await until(gone, TIMEOUT, "the alert gone")
        assert sink.stats.errors == 0
        assert sink.stats.up
        assert sink.stats.sent >= 2  # the firing alert, then its resolve
        assert sink.stats.buffered == 0


async def test_every_replica_gets_alerts_and_a_down_one_catches_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    late_port = free_port()
    async with alertmanager(tmp_path / "a") as first:
        late_url = f"http://127.0.0.1:{late_port}"
        sink = AlertmanagerSink(am_settings([first.url, late_url]), simwatch_url=SIMWATCH)
        driver = Driver(sinks=[sink])
        with caplog.at_level(logging.INFO, logger="simwatch.sinks.alertmanager"):
            async with running(sink):
                gone = driver.open({"country": "NL"})
                await until(lambda: am_alerts(first.url, active="true"), TIMEOUT, "an alert active")
                driver.resolve_all()  # resolved while the second replica is down...
                stays = driver.open({"country": "DE"})
                await until(
                    lambda: sink.stats.errors >= 3 and not sink.pending_resolved(0),
                    TIMEOUT,
                    "retries, and the resolve held for the down replica",
                )
                assert [a.labels["incident"] for a in sink.pending_resolved(1)] == [gone]
                # pages still flow through the first replica: up, one of two replicas up
                assert sink.stats.up
                assert (sink.stats.replicas, sink.stats.replicas_up) == (2, 1)
                assert sink.stats.last_error is not None
                assert late_url in sink.stats.last_error
                [alert] = await am_alerts(first.url, active="true")
                assert alert["labels"]["incident"] == stays  # the first one is not held up
                async with alertmanager(tmp_path / "b", port=late_port) as late:
                    assert late.url == late_url
                    [alert] = await until(
                        lambda: am_alerts(late.url, active="true"), TIMEOUT, "caught up"
                    )
                    assert alert["labels"]["incident"] == stays
                    await until(lambda: sink.stats.replicas_up == 2, TIMEOUT, "both replicas up")
                    assert sink.pending_resolved(1) == []  # ...and delivered once it is back
                    assert sink.stats.last_error is None
                    assert sink.stats.buffered == 0
    messages = [r.getMessage() for r in caplog.records]
    assert sum("sending alerts failed" in m for m in messages) == 1
    assert sum("delivering alerts again" in m for m in messages) == 1


async def test_a_replica_that_never_answers_does_not_hold_up_the_others(
    tmp_path: Path,
) -> None:
    requests: list[web.Request] = []
    release = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        requests.append(request)
        await release.wait()  # until the test ends
        return web.Response(status=503)

    app = web.Application()
    app.router.add_post("/api/v2/alerts", hang)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with alertmanager(tmp_path / "am") as server:
            settings = am_settings([f"http://127.0.0.1:{port}", server.url], timeout_s=2.0)
            sink = AlertmanagerSink(settings, simwatch_url=SIMWATCH)
            driver = Driver(sinks=[sink])
            async with running(sink):
                driver.open({"country": "NL"})
                await until(
                    lambda: am_alerts(server.url, active="true"), TIMEOUT, "an alert active"
                )
                assert requests  # the first replica's post is still waiting for an answer
                assert sink.stats.errors == 0
                await until(lambda: sink.stats.errors >= 1, TIMEOUT)  # its timeout, counted
                assert "no answer within 2 s" in str(sink.stats.last_error)
    finally:
        release.set()
        await runner.cleanup()


# ---- notifications: webhook receivers behind a real Alertmanager -------------------------


@dataclass
class Webhooks:
    """An aiohttp server recording Alertmanager's webhook notifications per path."""

    port: int = field(default_factory=free_port)
    received: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.received.setdefault(request.path.strip("/"), []).append(body)
        return web.Response(text="ok")

    def notified(self, receiver: str, status: str = "firing") -> list[dict[str, str]]:
        """Labels of the alerts notified to ``receiver`` with ``status``, in order."""
        return [
            alert["labels"]
            for message in self.received.get(receiver, [])
            for alert in message["alerts"]
            if alert["status"] == status
        ]


@contextlib.asynccontextmanager
async def webhooks() -> AsyncIterator[Webhooks]:
    hooks = Webhooks()
    app = web.Application()
    app.router.add_post("/{receiver}", hooks.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", hooks.port)
    await site.start()
    try:
        yield hooks
    finally:
        await runner.cleanup()


def fast(route: dict[str, Any], *, root: bool = True) -> None:
    """Notification timings of a route tree cut to a second (the test cannot wait 30 s)."""
    for key in ("group_wait", "group_interval"):
        if root or key in route:
            route[key] = "1s"
    for child in route.get("routes", []):
        fast(child, root=False)


def hook_config(hooks: Webhooks) -> str:
    """One route to the webhook ``hook``: a group per incident, notified at once."""
    config = {
        "route": {
            "receiver": "hook",
            "group_by": ["alertname", "incident"],
            "group_wait": "0s",
            "group_interval": "1s",
            "repeat_interval": "1h",
        },
        "receivers": [{"name": "hook", "webhook_configs": [{"url": f"{hooks.url}/hook"}]}],
    }
    return str(yaml.safe_dump(config))


def deck_config(hooks: Webhooks) -> str:
    """The shipped example config, receivers pointed at ``hooks``, timings shortened."""
    config = yaml.safe_load(DECK.read_text(encoding="utf-8"))
    config["global"] = {"resolve_timeout": "5m"}
    config["receivers"] = [
        {"name": r["name"], "webhook_configs": [{"url": f"{hooks.url}/{r['name']}"}]}
        for r in config["receivers"]
    ]
    fast(config["route"])
    return str(yaml.safe_dump(config))


def test_the_example_config_passes_amtool() -> None:
    amtool = binary(AMTOOL)
    if amtool is None:
        pytest.skip("amtool is not installed")
    check = subprocess.run(
        [amtool, "check-config", str(DECK)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "1 inhibit rules" in check.stdout


async def test_the_page_mutes_the_tickets_behind_it(tmp_path: Path, at_b: Scenario) -> None:
    async with webhooks() as hooks, alertmanager(tmp_path / "am", deck_config(hooks)) as server:
        sink = AlertmanagerSink(am_settings([server.url]), simwatch_url=SIMWATCH)
        async with running(sink):
            sink.on_cycle(at_b.live_cycle())  # the page, a covered and an uncovered ticket
            [page_id] = at_b.open_ids("group")
            await until(
                lambda: hooks.notified("oncall-page") and hooks.notified("support-tickets"),
                TIMEOUT,
                "the page and a ticket notified",
            )
            alerts = by_name(await am_alerts(server.url))
            covered = alerts[f"ticket:{VIP_IN}"]["status"]
            assert covered["state"] == "suppressed"
            assert covered["inhibitedBy"]  # muted by the page's fingerprint
            assert alerts[f"ticket:{VIP_OUT}"]["status"]["state"] == "active"
            assert alerts["page"]["status"]["state"] == "active"
            await asyncio.sleep(2.5)  # more than group_wait + group_interval: all flushed
        assert [x["incident"] for x in hooks.notified("oncall-page")] == [page_id]
        assert [x["iccid"] for x in hooks.notified("support-tickets")] == [VIP_OUT]
        assert "noc-default" not in hooks.received


async def test_a_restart_does_not_page_twice(tmp_path: Path) -> None:
    async with webhooks() as hooks, alertmanager(tmp_path / "am", hook_config(hooks)) as server:
        driver = Driver()
        first = AlertmanagerSink(am_settings([server.url]), simwatch_url=SIMWATCH)
        driver.sinks = [first]
        async with running(first):
            incident = driver.open({"partner": "26203"})
            await until(lambda: hooks.notified("hook"), TIMEOUT, "notified")
        # a restart: a fresh sink (same incident id, as checkpoints will keep it); the
        # affected count changed meanwhile, which only touches annotations
        second = AlertmanagerSink(am_settings([server.url]), simwatch_url=SIMWATCH)
        driver.sinks = [second]
        driver.cycle({"partner": "26203"}, affected=60)
        async with running(second):
            await until(lambda: second.stats.sent >= 2, TIMEOUT)  # sent, and re-sent
            [alert] = await am_alerts(server.url, active="true")
            assert alert["annotations"]["affected"] == "60"
            await asyncio.sleep(2.5)  # two group intervals: a second page would be out
            assert len(hooks.notified("hook")) == 1
            driver.resolve_all()
            await until(lambda: hooks.notified("hook", "resolved"), TIMEOUT, "the resolve notified")
    assert [x["incident"] for x in hooks.notified("hook")] == [incident]
    assert [x["incident"] for x in hooks.notified("hook", "resolved")] == [incident]


# ---- end to end: the simulator's fault through the daemon to Alertmanager ---------------


class SimulatedClock:
    """Simulated time for the daemon and the simulator: from a fixed start (so the run is
    the same every time), with the wall clock's pace plus the jumps the test makes."""

    def __init__(self, start: float) -> None:
        self.start = start
        self.began = time.monotonic()
        self.offset = 0.0

    def __call__(self) -> float:
        return self.start + (time.monotonic() - self.began) + self.offset


E2E_START = 1_700_046_000.0  # 2023-11-15T11:00:00Z: daytime in Europe


async def test_simulated_fault_pages_and_resolves_end_to_end(tmp_path: Path) -> None:
    clock = SimulatedClock(E2E_START)
    # seed 8: a country outage (SE) that began 30 min before start and ends 30 min after
    simulator = SimulatorSource(
        SimulatorSourceSettings(
            name="sim",
            sims=1500,
            seed=8,
            history_s=3 * DAY,
            first_fault_after_s=-1800.0,
            fault_duration_s=3600.0,
            tick_s=0.05,
        ),
        clock=clock,
    )
    [fault] = [f for f in simulator.faults(until=clock() + 3600) if f["dims"] == {"country": "SE"}]
    settings = Settings(
        engine=EngineSettings(
            eval_interval_s=60, close_after=3, dead_letter_file=tmp_path / "dl.ndjson"
        )
    )
    async with webhooks() as hooks, alertmanager(tmp_path / "am", hook_config(hooks)) as server:
        sink = AlertmanagerSink(am_settings([server.url]), simwatch_url=SIMWATCH)
        inventory = await asyncio.to_thread(simulator.inventory_rows)
        daemon = Daemon(settings, [simulator], sinks=[sink], inventory=inventory, clock=clock)
        task = asyncio.create_task(daemon.run())
        try:

            async def pages() -> list[dict[str, Any]]:
                alerts = await am_alerts(server.url, active="true")
                return [a for a in alerts if a["labels"]["severity"] == "page"]

            [page] = await until(pages, 40, "a page")
            labels = page["labels"]
            incident = daemon.engine.incidents.get(labels["incident"])
            assert incident is not None
            assert incident.state == "open"
            assert labels["alertname"] == GROUP_ALERTNAME
            assert labels["group_incident"] == incident.id
            assert labels["country"] == "SE"  # the faulty group (or a part of it, at first)
            assert page["generatorURL"] == f"{SIMWATCH}/api/v1/incidents/{incident.id}"

            async def resolved() -> bool:
                clock.offset += 60.0  # a simulated minute every 0.1 s: the fault ends
                return incident.state == "resolved" and await pages() == []

            await until(resolved, 30, "the page resolved", interval_s=0.1)  # the clock's pace
            assert incident.resolved_at is not None
            assert incident.resolved_at >= parse_rfc3339(str(fault["end"]))
            await until(lambda: hooks.notified("hook", "resolved"), TIMEOUT, "the resolve notified")
        finally:
            daemon.request_stop()
            await asyncio.wait_for(task, 10.0)
        # one page, then its resolve; incidents of the history (opened and resolved before
        # the first live cycle) never reached Alertmanager
        paged = [x["incident"] for x in hooks.notified("hook") if x["severity"] == "page"]
        assert set(paged) == {incident.id}
        assert incident.opened_at < E2E_START  # it opened during the history replay
        history = [i for i in daemon.engine.incidents.all() if (i.resolved_at or 1e12) < E2E_START]
        notified = {x["incident"] for x in hooks.notified("hook")}
        assert not notified & {i.id for i in history}
    assert sink.stats.errors == 0


def test_dashboard_links_match_the_grafana_dashboards() -> None:
    """The alert's dashboard_url opens a dashboard that exists, with variables it has."""
    boards = Path(__file__).resolve().parent.parent / "grafana" / "dashboards"
    variables = {}
    for file in boards.glob("*.json"):
        board = json.loads(file.read_text(encoding="utf-8"))
        variables[board["uid"]] = {v["name"] for v in board["templating"]["list"]}
    for path, names in (
        (DASHBOARD_GROUP, {"apn", "country", "partner"}),
        (DASHBOARD_SIM, {"iccid"}),
    ):
        uid = path.split("/")[2]
        assert uid in variables, path
        assert names <= variables[uid]
