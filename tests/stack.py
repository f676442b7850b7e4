"""A running ``simwatch run`` with its sinks' servers, and Prometheus, once per session.

Use it from a test module with::

    pytest_plugins = ["stack"]

    def test_something(stack: Stack) -> None:
        stack.query('simwatch_sims{state="ok"}')

(``pytest_plugins`` registers this module once, so the session-scoped ``stack`` fixture
starts one set of processes for every module that asks for it.)

The daemon runs the built-in simulator: ``SIMS`` SIMs, three days of history (the
engine's 48 h warm-up is covered), and a fault already under way at start
(``first_fault_after_s`` negative), so a group incident is open as soon as the history
is replayed. With seed 1 that fault is a full outage of partner 20408, detected during
the replay; the history's fault, a partial black hole of partner 20416, was detected as
such and resolved.

The simulator is pinned to ``AS_OF`` (its ``as_of`` setting): it starts at ``AS_OF``
moved by whole hours to at most an hour before the wall clock, so it produces the same
fleet, faults and records whatever day and hour the tests run (otherwise the hour of day
decides which devices are awake when the faults hit, and at night the same outage is
seen in one APN of the partner only). tests/test_source_simulator.py checks that at
fixed dates.

Its three sinks deliver to real servers on loopback, all started before the daemon:

- Alertmanager (``stack.alertmanager``) with deploy/alertmanager/alertmanager.yml,
  changed only so it stays on loopback and answers fast: every webhook receiver posts
  to ``stack.webhook`` (a local HTTP server, path ``/<receiver name>``), the e-mail
  receivers and SMTP settings are removed, and every ``group_wait`` is 1 s;
- VictoriaMetrics (``stack.victoria``), written to with the InfluxDB v2 write API;
- Mosquitto (``stack.mosquitto``) for the MQTT sink.

Prometheus (scrape and rule evaluation every second, deploy/prometheus/recording.rules.yml
loaded when it exists) starts with the daemon. The fixture waits until the daemon has
caught up with the wall clock with a group incident open, then until Prometheus has
three scrapes of that incident and has evaluated every rule. It does not wait for the
sinks to deliver: tests that need a delivery poll for it. Every process is stopped by
PID at the end of the session (the daemon before the servers its sinks talk to).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from mosquitto import Mosquitto, free_port, stop_process
from servers import (
    Alertmanager,
    Prometheus,
    VictoriaMetrics,
    api_token,
    http_get,
    until_blocking,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

ROOT = Path(__file__).resolve().parent.parent
RECORDING_RULES = ROOT / "deploy" / "prometheus" / "recording.rules.yml"
ALERTMANAGER_CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
SIMS = 2000
SEED = 1  # first live fault: a full outage of one partner, detected during the replay
# under way for half an hour at the pinned start (up to 90 min at the real one); it lasts
# two hours, so at least 30 min are left when the tests begin
FIRST_FAULT_AFTER_S = -1800.0
# a Wednesday morning (UTC), daytime in Europe: there, both faults open as a partner
# alone (at noon the meters of one APN are seen first and the incidents are re-scoped)
AS_OF = "2026-11-04T11:00:00Z"
EVAL_INTERVAL_S = 60.0
READY_TIMEOUT_S = 120.0
PROMETHEUS_TIMEOUT_S = 60.0
GROUP_WAIT = "1s"  # instead of the example's 30 s / 2 min: the webhook hears at once


class StackError(RuntimeError):
    """The stack did not come up; the message has the daemon's log tail."""


class Webhook:
    """Alertmanager's webhook receivers: a local HTTP server (a thread of the test
    process) that answers 200 to every POST and keeps ``(path, decoded body)``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._received: list[tuple[str, Any]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    doc: Any = json.loads(body)
                except ValueError:
                    doc = body.decode(errors="replace")
                with hook._lock:
                    hook._received.append((self.path, doc))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass  # quiet: the test reads ``received``

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port: int = self.server.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def received(self) -> list[tuple[str, Any]]:
        """Every POST so far: (path, JSON body), oldest first (a copy)."""
        with self._lock:
            return list(self._received)

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="webhook", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self.server.shutdown()
            self._thread.join(10)
            self._thread = None
        self.server.server_close()


@dataclass
class Stack:
    """The running daemon, its sinks' servers and Prometheus, with a few helpers."""

    directory: Path
    simwatch_url: str
    prometheus: Prometheus
    process: subprocess.Popen[bytes]
    log_file: Path
    alertmanager: Alertmanager
    victoria: VictoriaMetrics
    mosquitto: Mosquitto
    webhook: Webhook
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def prometheus_url(self) -> str:
        return self.prometheus.url

    @property
    def alertmanager_url(self) -> str:
        return self.alertmanager.url

    def api(self, path: str) -> Any:
        """GET a simwatch API path; the decoded JSON body (raises on a non-200)."""
        token = api_token(self.directory / "state")  # generated by simwatch at start
        status, body = http_get(self.simwatch_url + path, token=token)
        if status != 200:
            raise StackError(f"GET {path}: HTTP {status} {body[:300]!r}")
        return json.loads(body)

    def prometheus_api(self, path: str, params: dict[str, str] | list[tuple[str, str]]) -> Any:
        """GET a Prometheus API path; the whole JSON answer (``status``, ``data``/``error``)."""
        url = f"{self.prometheus.url}{path}?{urllib.parse.urlencode(params)}"
        status, body = http_get(url, timeout=30.0)
        if status == 0:
            raise StackError(f"GET {url}: no answer")
        return json.loads(body)

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query at now: the result list ([] when empty; raises on an error)."""
        answer = self.prometheus_api("/api/v1/query", {"query": expr})
        if answer.get("status") != "success":
            raise StackError(f"{expr}: {answer.get('errorType')}: {answer.get('error')}")
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop Prometheus, the daemon, then its sinks' servers, by PID."""
        self.prometheus.stop()
        stop_process(self.process)
        self.alertmanager.stop()
        self.victoria.stop()
        self.mosquitto.stop()
        self.webhook.stop()


def sinks_config(alertmanager_url: str, influx_url: str, mqtt_port: int) -> str:
    """The [sinks.*] sections for the three servers (InfluxDB org, bucket: defaults)."""
    return f"""
[sinks.alertmanager]
urls = ["{alertmanager_url}"]

[sinks.influxdb]
url = "{influx_url}"

[sinks.mqtt]
host = "127.0.0.1"
port = {mqtt_port}
"""


def simwatch_config(
    directory: Path, port: int, *, sims: int = SIMS, seed: int = SEED, sinks: str = ""
) -> str:
    return f"""\
state_dir = "{directory / "state"}"

[engine]
dead_letter_file = "{directory / "deadletter.ndjson"}"
eval_interval_s = {EVAL_INTERVAL_S}

[http]
host = "127.0.0.1"
port = {port}

[log]
level = "info"

[[sources.simulator]]
name = "sim"
sims = {sims}
seed = {seed}
history_s = {3 * 86400.0}
first_fault_after_s = {FIRST_FAULT_AFTER_S}
as_of = {AS_OF}
{sinks}"""


def alertmanager_config(webhook_url: str, example: Path = ALERTMANAGER_CONFIG) -> str:
    """The example config, kept on loopback: webhooks to ``webhook_url/<receiver>``, no
    e-mail (receivers left without one drop their notifications), short group_wait."""
    config = yaml.safe_load(example.read_text(encoding="utf-8"))
    config["global"] = {
        k: v for k, v in (config.get("global") or {}).items() if not k.startswith("smtp_")
    }
    routes = [config["route"]]
    while routes:
        route = routes.pop()
        if "group_wait" in route:
            route["group_wait"] = GROUP_WAIT
        routes.extend(route.get("routes", []))
    for receiver in config["receivers"]:
        receiver.pop("email_configs", None)
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = f"{webhook_url}/{receiver['name']}"
    return str(yaml.safe_dump(config, sort_keys=False))


def prometheus_config(target: str, rule_files: list[Path]) -> str:
    rules = "".join(f'\n  - "{path}"' for path in rule_files)
    return f"""\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:{rules or " []"}
scrape_configs:
  - job_name: simwatch
    static_configs:
      - targets: ["{target}"]
"""


def _wait(what: str, timeout: float, check: Callable[[], bool], on_fail: Callable[[], str]) -> None:
    try:
        until_blocking(check, timeout, what, detail=on_fail)
    except AssertionError as exc:
        raise StackError(str(exc)) from None


def start_stack(directory: Path, *, sims: int = SIMS, seed: int = SEED) -> Stack:
    """Start the sinks' servers, the daemon, then Prometheus; wait until the daemon
    caught up with an incident open and Prometheus scraped it."""
    directory.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    webhook = Webhook()
    alertmanager = Alertmanager(directory / "alertmanager", config=alertmanager_config(webhook.url))
    victoria = VictoriaMetrics(directory / "victoria-metrics")
    mosquitto = Mosquitto(directory / "mosquitto")
    try:
        webhook.start()
        alertmanager.start()
        victoria.start()
        mosquitto.start()
    except BaseException:
        for server in (mosquitto, victoria, alertmanager, webhook):
            server.stop()
        raise
    servers_up = time.monotonic() - started
    port = free_port()
    config = directory / "simwatch.toml"
    sinks = sinks_config(alertmanager.url, victoria.url, mosquitto.port)
    text = simwatch_config(directory, port, sims=sims, seed=seed, sinks=sinks)
    config.write_text(text, encoding="utf-8")
    log_file = directory / "simwatch.log"
    with log_file.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "simwatch", "run", "--config.file", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=directory,
        )
    stack = Stack(
        directory=directory,
        simwatch_url=f"http://127.0.0.1:{port}",
        prometheus=Prometheus(directory / "prometheus"),
        process=process,
        log_file=log_file,
        alertmanager=alertmanager,
        victoria=victoria,
        mosquitto=mosquitto,
        webhook=webhook,
    )
    stack.timings["servers_up_s"] = servers_up
    try:
        _start(stack, started)
    except BaseException:
        stack.stop()
        raise
    return stack


def _start(stack: Stack, started: float) -> None:
    # Prometheus comes up while the daemon replays its history (it takes seconds)
    rule_files = [RECORDING_RULES] if RECORDING_RULES.exists() else []
    target = stack.simwatch_url.removeprefix("http://")
    stack.prometheus.write_config(prometheus_config(target, rule_files))
    stack.prometheus.start()
    stack.timings["prometheus_up_s"] = time.monotonic() - started

    def alive_then(check: Callable[[], bool]) -> Callable[[], bool]:
        def run() -> bool:
            if stack.process.poll() is not None:
                raise StackError(f"simwatch exited ({stack.process.returncode}):\n{stack.log()}")
            return check()

        return run

    _wait(
        "simwatch /-/ready",
        READY_TIMEOUT_S,
        alive_then(lambda: http_get(stack.simwatch_url + "/-/ready", timeout=2.0)[0] == 200),
        stack.log,
    )
    stack.timings["ready_s"] = time.monotonic() - started

    def caught_up() -> bool:
        evaluated = stack.api("/api/v1/status").get("evaluated_at")
        if not evaluated:
            return False
        at = datetime.fromisoformat(evaluated).timestamp()
        return at >= time.time() - 2 * EVAL_INTERVAL_S

    _wait("simwatch caught up with the history", READY_TIMEOUT_S, alive_then(caught_up), stack.log)
    stack.timings["caught_up_s"] = time.monotonic() - started
    open_incidents = stack.api("/api/v1/incidents?state=open")["incidents"]
    if not any(i.get("kind") == "group" for i in open_incidents):
        raise StackError(
            "no group incident open after the history replay (the simulator's fault for"
            f" this seed was not detected in time): {open_incidents}\n{stack.log()}"
        )

    def scraped() -> bool:
        # the incident open at the end of the replay, in three scrapes (rate() needs two)
        return bool(
            stack.query(
                "count_over_time(simwatch_incident_info[1m]) >= 3"
                " and on (id) simwatch_incident_info"
            )
            and stack.query("simwatch_incident_affected_sims")
        )

    _wait(
        "Prometheus scraping simwatch",
        PROMETHEUS_TIMEOUT_S,
        scraped,
        lambda: f"prometheus log:\n{stack.prometheus.log()}\nsimwatch log:\n{stack.log()}",
    )
    if rule_files:
        _wait(
            "Prometheus evaluating the recording rules",
            PROMETHEUS_TIMEOUT_S,
            lambda: _rules_evaluated(stack),
            stack.prometheus.log,
        )
    stack.timings["scraped_s"] = time.monotonic() - started


def _rules_evaluated(stack: Stack) -> bool:
    groups = stack.prometheus_api("/api/v1/rules", {})["data"]["groups"]
    # a rule never evaluated has the zero time, 0001-01-01T00:00:00Z
    return all(
        not rule.get("lastEvaluation", "0001").startswith("0001")
        for group in groups
        for rule in group["rules"]
    )


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """simwatch (simulator, an incident open, three sinks to real servers) and Prometheus
    scraping it every second."""
    running = start_stack(tmp_path_factory.mktemp("stack"))
    try:
        yield running
    finally:
        running.stop()
