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
from servers import AMTOOL, Alertmanager, binary, until
from stack import ALERTMANAGER_CONFIG, Webhook, alertmanager_config
from test_maintenance_incidents import OUTAGE, engine_with_outage, run_until_open, window

from simwatch.shell.settings import AlertmanagerSinkSettings
from simwatch.shell.sink_contract import Cycle
from simwatch.sinks.alertmanager import AlertmanagerSink

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
