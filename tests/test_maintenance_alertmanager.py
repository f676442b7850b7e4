"""The shipped Alertmanager config keeps maintenance alerts quiet: ``amtool config routes
test`` on deploy/alertmanager/alertmanager.yml, then a real Alertmanager running it (its
webhooks on loopback, as in tests/stack.py) notifies the quiet receiver while a window
covers the incident and the pager as soon as the window ends with the fault still there."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from typing import TYPE_CHECKING

import pytest
from fleet import DAY
from servers import AMTOOL, Alertmanager, binary, until
from stack import ALERTMANAGER_CONFIG, Webhook, alertmanager_config
from test_maintenance_incidents import OUTAGE, engine_with_outage, run_until_open, window
from test_sink_alertmanager import (
    E2E_START,
    SIMWATCH,
    SimulatedClock,
    alertmanager,
    am_settings,
    webhooks,
)

from simwatch.core.timeutil import format_rfc3339
from simwatch.service.daemon import Daemon
from simwatch.service.run import build_maintenance
from simwatch.shell.settings import (
    AlertmanagerSinkSettings,
    EngineSettings,
    MaintenanceSettings,
    Settings,
    SimulatorSourceSettings,
)
from simwatch.shell.sink_contract import Cycle
from simwatch.sinks.alertmanager import AlertmanagerSink
from simwatch.sources.simulator import SimulatorSource

if TYPE_CHECKING:
    from pathlib import Path


def route(*labels: str) -> str:
    tool = binary(AMTOOL)
    if tool is None:
        pytest.skip("amtool is not installed (scripts/test installs it)")
    out = subprocess.run(
        [tool, "config", "routes", "test", f"--config.file={ALERTMANAGER_CONFIG}", *labels],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (("alertname=SimwatchGroupIncident", "severity=page", "maintenance=true"),
         "maintenance-quiet"),
        (("alertname=SimwatchSimSilent", "severity=ticket", "maintenance=true"),
         "maintenance-quiet"),
        (("alertname=SimwatchGroupIncident", "severity=page"), "oncall-page"),
        (("alertname=SimwatchSimSilent", "severity=ticket"), "support-tickets"),
    ],
)  # fmt: skip
def test_shipped_routes_keep_maintenance_alerts_off_the_pager(
    labels: tuple[str, ...], receiver: str
) -> None:
    assert route(*labels) == receiver


@pytest.mark.real_server
async def test_a_real_alertmanager_pages_when_the_window_ends(tmp_path: Path) -> None:
    engine, _ = engine_with_outage()
    ends = OUTAGE + 2 * 3600
    engine.maintenance = (window(OUTAGE - 3600, 3, {"partner": ["20801"]}),)
    hook = Webhook()
    hook.start()
    server = Alertmanager(tmp_path / "am", config=alertmanager_config(hook.url))
    await asyncio.to_thread(server.start)
    settings = AlertmanagerSinkSettings(urls=[server.url], resend_interval_s=5)
    # the sink's own clock is the wall clock (Alertmanager expires alerts on it)
    sink = AlertmanagerSink(settings, simwatch_url="http://simwatch")
    task = asyncio.create_task(sink.run())
    try:
        now, incident, result = run_until_open(engine, OUTAGE + 600)
        sink.on_cycle(Cycle(engine, result, now, live=True))

        def notified(path: str) -> list[dict[str, str]]:
            return [
                alert["labels"]
                for got, body in hook.received()
                if got == path and isinstance(body, dict)
                for alert in body.get("alerts", [])
                if alert["labels"].get("incident") == incident.id
                and alert.get("status") == "firing"
            ]

        await until(lambda: notified("/maintenance-quiet"), 30, "the quiet notification")
        assert notified("/maintenance-quiet")[0]["maintenance"] == "true"
        assert notified("/oncall-page") == []
        sink.on_cycle(Cycle(engine, engine.evaluate(ends), ends, live=True))
        await until(lambda: notified("/oncall-page"), 30, "the page once the window ended")
        assert "maintenance" not in notified("/oncall-page")[0]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await sink.close()
        await asyncio.to_thread(server.stop)
        hook.stop()


@pytest.mark.real_server
@pytest.mark.slow
async def test_the_daemon_keeps_a_fault_in_a_window_quiet_then_pages(tmp_path: Path) -> None:
    """The simulator's country outage (SE) through the daemon, a window over SE from the
    config ending 10 simulated minutes after the start, and a real Alertmanager running
    the shipped config: quiet while the window lasts, a page once it is over."""
    clock = SimulatedClock(E2E_START)
    simulator = SimulatorSource(
        SimulatorSourceSettings(
            name="sim",
            sims=1500,
            seed=8,  # SE down from 30 min before the start to 30 min after
            history_s=3 * DAY,
            first_fault_after_s=-1800.0,
            fault_duration_s=3600.0,
            tick_s=0.05,
        ),
        clock=clock,
    )
    window_end = E2E_START + 600.0
    settings = Settings(
        engine=EngineSettings(
            eval_interval_s=60, close_after=3, dead_letter_file=tmp_path / "dl.ndjson"
        ),
        state_dir=tmp_path,
        maintenance=[
            MaintenanceSettings(
                name="SE works",
                start=format_rfc3339(E2E_START - DAY),
                duration_s=window_end - (E2E_START - DAY),
                scope={"country": ["SE"]},
            )
        ],
    )
    async with (
        webhooks() as hooks,
        alertmanager(tmp_path / "am", alertmanager_config(hooks.url)) as server,
    ):
        sink = AlertmanagerSink(am_settings([server.url]), simwatch_url=SIMWATCH)
        inventory = await asyncio.to_thread(simulator.inventory_rows)
        daemon = Daemon(settings, [simulator], sinks=[sink], inventory=inventory, clock=clock)
        build_maintenance(settings, daemon)
        task = asyncio.create_task(daemon.run())
        try:

            def se(receiver: str) -> list[dict[str, str]]:
                return [a for a in hooks.notified(receiver) if a.get("country") == "SE"]

            [quiet, *_] = await until(lambda: se("maintenance-quiet"), 60, "the quiet note")
            assert quiet["maintenance"] == "true"
            incident = daemon.engine.incidents.get(quiet["incident"])
            assert incident is not None
            assert incident.to_json()["maintenance"] is True
            assert se("oncall-page") == []

            def paged() -> list[dict[str, str]]:
                if clock() < window_end + 120:
                    clock.offset += 60.0  # a simulated minute every 0.1 s, past the end
                return se("oncall-page")

            [page, *_] = await until(paged, 30, "the page once the window ended", interval_s=0.1)
            assert clock() < E2E_START + 1800  # the fault still goes on
            assert page["incident"] == incident.id
            assert "maintenance" not in page
            assert incident.to_json()["maintenance"] is False
        finally:
            daemon.request_stop()
            await asyncio.wait_for(task, 10.0)
