"""The whole export chain, through a real ``simwatch run`` process (tests/stack.py).

One daemon (simulator, a partner outage under way, so a group incident is open once the
history is replayed) runs its three sinks, configured from ``[sinks.*]`` TOML sections,
against real servers on loopback; every test reads what arrived there:

- Alertmanager holds the page for the open incident: labels equal to the incident's
  group as simwatch's API shows it, ``generatorURL`` resolving to the incident in the
  API, the routing of deploy/alertmanager/alertmanager.yml sending it to the page
  receiver (whose webhook hears it), and ``amtool alert query`` showing it.
- VictoriaMetrics (InfluxDB write API) holds the group, per-SIM and incident points,
  consistent with the API: the group points count every SIM, a silent SIM's last usage
  point carries its API dims and ``last_data``, the incident's ``opened`` point is at
  its opening time.
- A late MQTT subscriber gets the retained open-incidents list and status ``online``.
- Prometheus sees every sink up, delivering, with no error and nothing dropped.
- The walkthrough of docs/operations.md section 1: its environment variables load into
  the intended settings, and its claims (log line, amtool output, summary wording)
  match what the running daemon and Alertmanager really do.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
import urllib.parse
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import aiomqtt
import pytest
from servers import AMTOOL, binary, http_get, until_blocking

from simwatch.service.run import api_url, build_sinks
from simwatch.shell.settings import SimulatorSourceSettings, api_token_file, load_settings
from simwatch.sinks.alertmanager import GROUP_ALERTNAME, AlertmanagerSink

if TYPE_CHECKING:
    from collections.abc import Callable

    from stack import Stack

pytest_plugins = ["stack"]
pytestmark = (
    pytest.mark.real_server
)  # the whole stack: simwatch, Prometheus, Alertmanager, VictoriaMetrics, Mosquitto

T = TypeVar("T")

Json = dict[str, Any]

ROOT = Path(__file__).resolve().parent.parent
OPERATIONS = ROOT / "docs" / "operations.md"
WALKTHROUGH_AS_OF = "2026-11-04T11:00:00Z"  # stack.AS_OF: the walkthrough shows what the stack runs
WITHIN_S = 30.0  # a delivery the tests wait for (re-sends: 60 s; influx flush: 5 s)
SINKS = {"alertmanager", "influxdb", "mqtt"}
STATES = ("ok", "late", "silent", "never_seen", "inactive")


def poll(
    what: str,
    get: Callable[[], T | None],
    done: Callable[[T], bool] = bool,
    within: float = WITHIN_S,
) -> T:
    """The first answer of ``get`` that is not None and ``done`` (by default: truthy),
    polled with ``until_blocking`` for ``within`` seconds; else fail with the last."""
    last: list[T | None] = [None]

    def check() -> tuple[T] | None:  # a tuple: a falsy answer can be the one awaited
        value = last[0] = get()
        return (value,) if value is not None and done(value) else None

    found: tuple[T] = until_blocking(check, within, what, detail=lambda: f"(last: {last[0]!r})")
    return found[0]


def get_json(url: str) -> Any:
    status, body = http_get(url, timeout=30.0)
    assert status == 200, f"GET {url}: HTTP {status} {body[:300]!r}"
    return json.loads(body)


def open_incident(stack: Stack) -> Json:
    """The open group incident (the stack guarantees one)."""
    incidents = stack.api("/api/v1/incidents?state=open")["incidents"]
    groups = [i for i in incidents if i["kind"] == "group"]
    assert groups, incidents
    incident: Json = groups[0]
    return incident


def epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def summary_pattern(dims: dict[str, str]) -> re.Pattern[str]:
    """The page's summary: the group (a partner with its operator name, when known),
    then affected of total SIMs and the usual count at this hour."""
    scope = ", ".join(
        re.escape(f"{'APN' if dim == 'apn' else dim} {value}")
        + (r"(?: \([^)]+\))?" if dim == "partner" else "")
        for dim, value in dims.items()
    )
    return re.compile(
        rf"{scope or 'the whole fleet'}: \d+ of \d+ SIMs stopped sending data"
        r" \(normally about \d+(?:\.\d)?\)"
    )


# ---- Alertmanager -----------------------------------------------------------------------


def am_page(stack: Stack, incident_id: str) -> Json:
    """The active page alert of the incident, as Alertmanager's v2 API holds it."""

    def find() -> Json | None:
        alerts = get_json(stack.alertmanager_url + "/api/v2/alerts?active=true")
        found = [a for a in alerts if a["labels"].get("incident") == incident_id]
        return found[0] if found else None

    return poll(f"Alertmanager holding the page of {incident_id}", find)


def amtool(stack: Stack, *args: str) -> str:
    tool = binary(AMTOOL)
    assert tool is not None, "amtool is not installed (scripts/test installs it)"
    result = subprocess.run(
        [tool, f"--alertmanager.url={stack.alertmanager_url}", "alert", "query", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_alertmanager_holds_the_page_of_the_open_incident(stack: Stack) -> None:
    incident = open_incident(stack)
    alert = am_page(stack, incident["id"])
    assert alert["labels"] == {
        "alertname": GROUP_ALERTNAME,
        "severity": "page",
        "incident": incident["id"],
        "group_incident": incident["id"],
        **incident["dims"],
    }
    assert alert["status"] == {"state": "active", "silencedBy": [], "inhibitedBy": []}
    # the example routing: severity=page goes to the page receiver
    assert [r["name"] for r in alert["receivers"]] == ["oncall-page"]
    assert epoch(alert["startsAt"]) == epoch(incident["opened_at"])
    assert epoch(alert["endsAt"]) > time.time()  # re-sent before it would end
    # generatorURL: the incident in simwatch's API
    url = alert["generatorURL"]
    assert url == f"{stack.simwatch_url}/api/v1/incidents/{incident['id']}"
    assert stack.api(url.removeprefix(stack.simwatch_url))["id"] == incident["id"]
    annotations = alert["annotations"]
    assert summary_pattern(incident["dims"]).fullmatch(annotations["summary"]), annotations
    assert {"description", "runbook_url", "dashboard_url", "affected", "total"} <= set(annotations)
    # the console is on by default: the page links the incident's page there
    assert annotations["console_url"].endswith(f"/ui/incidents/{incident['id']}")
    assert int(annotations["affected"]) <= int(annotations["total"])


def test_the_page_receiver_webhook_hears_the_page(stack: Stack) -> None:
    incident = open_incident(stack)

    def heard() -> list[Json]:
        return [
            a
            for path, body in stack.webhook.received()
            if path == "/oncall-page" and body["status"] == "firing"
            for a in body["alerts"]
            if a["labels"].get("incident") == incident["id"]
        ]

    alerts = poll("the oncall-page webhook hearing the page", heard)
    assert alerts[0]["labels"]["alertname"] == GROUP_ALERTNAME
    # the example routing by severity: pages to oncall-page, tickets to support-tickets
    # (the receiver without a webhook, noc-default, gets neither)
    receiver = {"page": "/oncall-page", "ticket": "/support-tickets"}
    for path, body in stack.webhook.received():
        for alert in body["alerts"]:
            assert receiver.get(alert["labels"]["severity"]) == path, (path, alert["labels"])


def test_amtool_shows_the_page(stack: Stack) -> None:
    incident = open_incident(stack)
    am_page(stack, incident["id"])
    alerts = json.loads(amtool(stack, "severity=page", "-o", "json"))
    mine = [a for a in alerts if a["labels"]["incident"] == incident["id"]]
    assert len(mine) == 1, alerts
    assert mine[0]["labels"]["alertname"] == GROUP_ALERTNAME
    assert incident["dims"].items() <= mine[0]["labels"].items()
    # the plain output, as docs/operations.md section 1 shows it: no labels, the summary
    lines = amtool(stack, "severity=page").splitlines()
    assert re.split(r"\s{2,}", lines[0].strip()) == ["Alertname", "Starts At", "Summary", "State"]
    rows = [re.split(r"\s{2,}", line.strip()) for line in lines[1:]]
    assert len(rows) == len(alerts)
    summary = summary_pattern(incident["dims"])
    row = next((r for r in rows if summary.fullmatch(r[2])), None)
    assert row is not None, (summary.pattern, rows)
    assert row[0] == GROUP_ALERTNAME
    assert row[3] == "active"
    # the labels (the group) only in the extended output
    extended = amtool(stack, "severity=page", "-o", "extended")
    for dim, value in incident["dims"].items():
        assert f'{dim}="{value}"' in extended


# ---- VictoriaMetrics (InfluxDB write API) -----------------------------------------------


def vm(stack: Stack, path: str, **params: str) -> Any:
    """GET a VictoriaMetrics Prometheus-API path; its ``data``."""
    url = f"{stack.victoria.url}{path}?{urllib.parse.urlencode(params)}"
    answer = get_json(url)
    assert answer["status"] == "success", answer
    return answer["data"]


def vm_series(stack: Stack, match: str) -> list[dict[str, str]]:
    """Label sets of the series matching ``match`` with points in the last four days."""
    start = f"{time.time() - 4 * 86400:.0f}"
    series: list[dict[str, str]] = vm(stack, "/api/v1/series", **{"match[]": match, "start": start})
    return series


def vm_export(stack: Stack, match: str) -> list[Json]:
    """Every point of the matching series (keep ``match`` narrow)."""
    query = urllib.parse.urlencode({"match[]": match, "start": f"{time.time() - 4 * 86400:.0f}"})
    status, body = http_get(f"{stack.victoria.url}/api/v1/export?{query}", timeout=30.0)
    assert status == 200, body[:300]
    return [json.loads(line) for line in body.splitlines() if line.strip()]


def test_victoriametrics_has_group_sim_and_incident_points(stack: Stack) -> None:
    incident = open_incident(stack)

    def flushed() -> bool:
        stack.victoria.force_flush()
        names = set(vm(stack, "/api/v1/label/__name__/values"))
        return {"simwatch_group_silent", "simwatch_sim_usage_bytes"} <= names and any(
            s.get("id") == incident["id"] for s in vm_series(stack, "simwatch_incident_affected")
        )

    poll("points in VictoriaMetrics", flushed)
    names = set(vm(stack, "/api/v1/label/__name__/values"))
    expected = {f"simwatch_group_{f}" for f in (*STATES, "total", "affected", "affected_ratio")}
    expected |= {f"simwatch_sim_usage_{f}" for f in ("bytes", "month_bytes", "last_data")}
    expected |= {"simwatch_sim_state_code", "simwatch_incident_affected"}
    assert expected <= names, expected - names

    # groups: every dimension, and the incident's group among the values
    groups = vm_series(stack, "simwatch_group_silent")
    assert {g["dim"] for g in groups} == {"apn", "country", "partner"}
    for dim, value in incident["dims"].items():
        assert {"dim": dim, "value": value} in [
            {"dim": g["dim"], "value": g["value"]} for g in groups
        ]

    # the group points of the newest cycle count every SIM once per dimension (polled:
    # that cycle's points may still wait in the sink's buffer, flushed every 5 s)
    tracked = float(stack.query("simwatch_tracked_sims")[0]["value"][1])
    newest = f"{epoch(stack.api('/api/v1/status')['evaluated_at']):.0f}"
    states = "|".join(STATES)
    expr = f'sum by (dim) (last_over_time({{__name__=~"simwatch_group_({states})"}}[30s]))'

    def totals() -> dict[str, float]:
        stack.victoria.force_flush()
        result = vm(stack, "/api/v1/query", query=expr, time=newest)["result"]
        return {r["metric"]["dim"]: float(r["value"][1]) for r in result}

    every_sim = dict.fromkeys(("apn", "country", "partner"), tracked)
    poll(f"group points of {newest} summing to {tracked}", totals, lambda t: t == every_sim)

    # per SIM: the ICCID is a tag (a SIM whose apn, country or partner changed has one
    # series per set of tags)
    usage = vm_series(stack, "simwatch_sim_usage_bytes")
    assert len({s["iccid"] for s in usage}) > tracked / 2  # most SIMs sent data in 3 days
    query = urllib.parse.urlencode({**incident["dims"], "state": "silent", "limit": "1"})
    silent = stack.api(f"/api/v1/sims?{query}")["items"][0]
    sim = stack.api(f"/api/v1/sims/{silent['iccid']}")
    # its newest usage point: the API's last data (silent since, so no newer point) and
    # the SIM's tags as the API shows them
    rows = vm_export(stack, f'simwatch_sim_usage_last_data{{iccid="{silent["iccid"]}"}}')
    newest_at, last_data, tags = max(
        (
            (t, v, row["metric"])
            for row in rows
            for t, v in zip(row["timestamps"], row["values"], strict=True)
        ),
        key=lambda point: point[0],
    )
    assert abs(last_data - epoch(sim["last_data"])) < 1.0, (last_data, sim["last_data"])
    assert newest_at / 1000 >= last_data
    for dim in ("apn", "country", "partner", "customer"):
        assert tags.get(dim) == silent[dim], (dim, tags, silent)

    # the incident: its opened point at its opening time, with its severity and kind
    rows = vm_export(stack, f'simwatch_incident_affected{{id="{incident["id"]}",event="opened"}}')
    assert len(rows) == 1
    labels = rows[0]["metric"]
    assert (labels["severity"], labels["kind"]) == ("page", "group")
    assert [t / 1000 for t in rows[0]["timestamps"]] == [epoch(incident["opened_at"])]


# ---- MQTT ---------------------------------------------------------------------------------


async def test_mqtt_subscriber_gets_the_retained_incidents_and_status(stack: Stack) -> None:
    incident = open_incident(stack)
    topics = {"simwatch/incidents/current", "simwatch/status"}
    got: dict[str, aiomqtt.Message] = {}
    client = aiomqtt.Client(
        "127.0.0.1", stack.mosquitto.port, identifier="export-chain-test", timeout=10
    )
    async with client, asyncio.timeout(WITHIN_S):
        for topic in sorted(topics):
            await client.subscribe(topic, qos=1)
        async for message in client.messages:
            got[str(message.topic)] = message
            if set(got) == topics:
                break
    status = got["simwatch/status"]
    assert (status.payload, status.retain) == (b"online", True)
    current = got["simwatch/incidents/current"]
    assert current.retain  # a subscriber arriving late gets the picture at once
    assert isinstance(current.payload, bytes)
    listed = json.loads(current.payload)
    assert incident["id"] in [i["id"] for i in listed]
    mine = next(i for i in listed if i["id"] == incident["id"])
    for key in ("dims", "kind", "severity", "state", "opened_at"):
        assert mine[key] == incident[key], key


# ---- Prometheus: the sinks' own metrics ---------------------------------------------------


def test_prometheus_sees_every_sink_up_and_delivering(stack: Stack) -> None:
    def values(expr: str) -> dict[str, float]:
        return {r["metric"]["sink"]: float(r["value"][1]) for r in stack.query(expr)}

    def all_delivering() -> dict[str, float]:
        up = values("simwatch_sink_up == 1")
        sent = values("simwatch_sink_sent_total > 0")
        return sent if set(up) == set(sent) == SINKS else {}

    sent = poll("every sink up and sent > 0 in Prometheus", all_delivering)
    assert sent["influxdb"] > sent["alertmanager"]  # points per SIM vs one alert a post
    assert values("simwatch_sink_errors_total") == dict.fromkeys(SINKS, 0.0)
    assert values("simwatch_sink_dropped_total") == dict.fromkeys(SINKS, 0.0)
    successes = values("simwatch_sink_last_success_timestamp_seconds")
    assert set(successes) == SINKS
    assert all(ts > time.time() - 600 for ts in successes.values()), successes


# ---- docs/operations.md section 1 -----------------------------------------------------------


def walkthrough() -> str:
    text = OPERATIONS.read_text(encoding="utf-8")
    match = re.search(r"^## 1\..*?(?=^## 2\.)", text, re.MULTILINE | re.DOTALL)
    assert match, "docs/operations.md has no section 1"
    return match.group(0)


def test_walkthrough_environment_loads_the_intended_settings() -> None:
    section = walkthrough()
    env = dict(re.findall(r"^(SIMWATCH_[A-Z_]+)='([^']*)'", section, re.MULTILINE))
    assert set(env) == {"SIMWATCH_SINKS__ALERTMANAGER__URLS", "SIMWATCH_SOURCES__SIMULATOR"}
    settings = load_settings(None, env)
    am = settings.sinks.alertmanager
    assert am is not None
    assert [str(u).rstrip("/") for u in am.urls] == ["http://127.0.0.1:9093"]
    assert (settings.sinks.influxdb, settings.sinks.mqtt) == (None, None)
    assert settings.sources.simulator == [
        SimulatorSourceSettings(
            name="simulator",
            first_fault_after_s=-1800.0,
            as_of=datetime.fromisoformat(WALKTHROUGH_AS_OF),
        )
    ]
    assert settings.sources.simulator[0].history_s == 3 * 86400.0  # "three days of history"
    assert (settings.http.host, settings.http.port) == ("127.0.0.1", 39153)
    sinks = build_sinks(settings)
    assert [type(s) for s in sinks] == [AlertmanagerSink]
    # the commands that follow talk to the same two addresses
    base = api_url(settings.http)
    assert 'curl -s -H "Authorization: Bearer $TOKEN" ' + f"{base}/api/v1/incidents" in section
    assert "TOKEN=$(tail -n1 var/api-token)" in section
    assert str(api_token_file(settings)) == "var/api-token"
    assert "amtool --alertmanager.url=http://127.0.0.1:9093 alert query severity=page" in section
    assert "--web.listen-address=127.0.0.1:9093" in section


def test_walkthrough_claims_match_the_running_daemon(stack: Stack) -> None:
    section = walkthrough()
    log = stack.log_file.read_text(errors="replace")
    # the log lines it quotes, in the real log's words
    ready = r"ready: evaluating live \(\d+ cycles so far, \d+ SIMs, \d+ incidents open\)"
    opened = r"incident inc-\d+ opened: partner=\d+"
    quoted = re.search(r"log says `([^`]+)`", section)
    assert quoted, "the walkthrough names no log line"
    assert re.fullmatch(ready, quoted.group(1)), quoted.group(1)
    assert re.search(f"INFO simwatch: {ready}", log), log[-2000:]
    assert re.search(f"`{opened} ...`", section)
    assert re.search(f"WARNING simwatch: {opened} affected \\d+/\\d+", log), log[-2000:]
    # the summary it quotes has the wording of the real page's summary
    incident = open_incident(stack)
    alert = am_page(stack, incident["id"])
    example = re.search(r'summary like\s+"([^"]+)"', section)
    assert example, "the walkthrough quotes no summary"
    shown = re.sub(r"\s+", " ", example.group(1))
    partner = re.match(r"partner (\d+)", shown)
    assert partner, shown
    assert summary_pattern({"partner": partner.group(1)}).fullmatch(shown), shown
    assert summary_pattern(incident["dims"]).fullmatch(alert["annotations"]["summary"])
    # the amtool columns it names are the real ones
    header = amtool(stack, "severity=page").splitlines()[0]
    for column in re.split(r"\s{2,}", header.strip()):
        assert f"`{column}`" in section, column
    assert "-o extended" in section  # where the labels (the group) are shown
