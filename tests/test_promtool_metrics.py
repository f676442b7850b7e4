"""/metrics of a real daemon at 100,000 SIMs: promtool, a real Prometheus, opt-in SIM series.

One daemon for the module (``Daemon`` + ``serve`` from ``simwatch.service.run``, on loopback):
an inventory of 100,000 SIMs over 300 partners and 40 APNs (so the top-N cap and
``_other`` are exercised), 600 SIMs with a learned 15-minute rhythm of which the 300 on
partner 26201 went silent 90 minutes ago (a real group incident), 94,400 SIMs seen once,
5,000 never seen, 200 SIMs tagged ``vip``, and some records that fail validation. The
records come through the daemon's real ingest path from a source that hands over
prepared NDJSON lines, and are evaluated on event time like any backlog.

- The text format (0.0.4 and 1.0.0), fetched over HTTP, passes ``promtool check metrics``
  with no lint problem. promtool reads only the text format, so the OpenMetrics answer
  is checked by what consumes it: prometheus-client's strict OpenMetrics parser, and a
  real Prometheus scraping the daemon (Prometheus asks for OpenMetrics first) with
  deploy/prometheus/prometheus.yml's job and both rule files: the target is up, every
  rule evaluates without error, the recording rules have values, and nothing alerts.
- By default no label is an ICCID; with ``sim_series`` on, at most that many tagged SIMs
  get series, and that exposition passes promtool too.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import numpy as np
import orjson
import pytest
import pytest_asyncio
import yaml
from mosquitto import free_port
from prometheus_client import generate_latest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families
from servers import PROMTOOL, Prometheus, binary, http_get, until

from simwatch import __version__
from simwatch.core.engine import Engine
from simwatch.core.evaluate import STATE_NAMES
from simwatch.core.inventory import InventoryRow
from simwatch.core.records import Record, RecordDecoder
from simwatch.core.timeutil import format_rfc3339
from simwatch.http.metrics import EngineCollector, make_registry
from simwatch.service.daemon import Daemon
from simwatch.service.run import serve
from simwatch.shell.health import DaemonHealth
from simwatch.shell.settings import EngineSettings, HttpSettings, Settings
from simwatch.shell.sink_contract import SinkStats
from simwatch.shell.source_contract import Batch, SourceStats

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from simwatch.shell.sink_contract import Cycle
    from simwatch.shell.source_contract import Sink

pytestmark = pytest.mark.real_server  # a daemon serving HTTP, and a real Prometheus

# The tests that talk to the daemon run on its event loop (one per module).
on_daemon_loop = pytest.mark.asyncio(loop_scope="module")

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "prometheus"
N_SIMS = 100_000
COHORT = 600  # rows 0..599 report every 15 minutes for HISTORY_S: learned rhythms
FAULTY = 300  # rows 0..299 are on partner 26201, silent for the last OUTAGE_S
NEVER_SEEN = 5_000  # the last rows: inventory only
HISTORY_S = 10 * 3600.0
OUTAGE_S = 90 * 60.0
VIP_EVERY = 500  # rows 0, 500, 1000, ... are tagged vip: 200 SIMs
BAD_LINES = 40  # 30 with a bad ICCID, 10 not JSON
MCCS = ["262", "208", "234", "222", "214", "204", "206", "228", "232", "240"]
MCCS += ["242", "238", "244", "260", "230", "310", "302", "440", "450", "505"]
PARTNERS = [(mcc, f"{mnc:02d}") for mcc in MCCS for mnc in range(1, 16)]  # 300
APNS = [f"apn{k}.iot" for k in range(40)]
LINE = (
    b'{"kind":"usage","record_id":"u-%d","iccid":"%s","start":"%s","end":"%s",'
    b'"bytes_up":900,"bytes_down":120,"apn":"%s","mcc":"%s","mnc":"%s","rat":"LTE-M"}'
)
ICCID_RE = re.compile(r"\d{18,22}")


def iccid(row: int) -> str:
    return f"8949020000{row:09d}"


def promtool() -> str | None:
    return binary(PROMTOOL)


needs_promtool = pytest.mark.skipif(promtool() is None, reason="promtool is not installed")


# ---- the daemon ----------------------------------------------------------------------------


class LinesSource:
    """Hands prepared NDJSON lines to the daemon in batches, then idles like a live feed."""

    def __init__(self, name: str, lines: list[bytes], batch: int = 5_000) -> None:
        self.stats = SourceStats(name=name, kind="file")
        self.lines = lines
        self.batch = batch
        self.applied = 0  # backlog batches applied
        self.batches = (len(lines) + batch - 1) // batch

    async def run(self, sink: Sink) -> None:
        # Let the daemon's clock task take its first turn (it then sleeps a whole
        # interval) before the backlog is queued: a clock turn while a backlog is half
        # applied evaluates every boundary up to the wall clock against a partial fleet.
        await asyncio.sleep(0.5)
        for start in range(0, len(self.lines), self.batch):
            chunk = self.lines[start : start + self.batch]
            await sink.put(Batch(source=self.stats.name, lines=chunk, on_applied=self._ack))
            self.stats.connected = True
            self.stats.last_success = time.time()
        k = 0
        while True:  # then a live trickle: four records a second for SIMs seen once
            await asyncio.sleep(0.25)
            k += 1
            row = COHORT + k % 1000
            end = format_rfc3339(time.time()).encode()
            line = LINE % (10**8 + k, iccid(row).encode(), end, end, APNS[row % len(APNS)].encode(),
                           b"262", b"02")  # fmt: skip
            await sink.put(Batch(source=self.stats.name, lines=[line]))
            self.stats.last_success = time.time()

    async def _ack(self) -> None:
        self.applied += 1
        self.stats.last_success = time.time()


class CountingSink:
    """A sink that delivers instantly: its statistics make the sink series real."""

    def __init__(self) -> None:
        self.stats = SinkStats(name="influxdb", kind="influxdb")

    def on_cycle(self, cycle: Cycle) -> None:
        self.stats.sent += 1
        self.stats.up = True
        self.stats.last_success = time.time()
        del cycle

    async def run(self) -> None:
        await asyncio.Event().wait()

    async def close(self) -> None:
        return


def inventory() -> Iterator[InventoryRow]:
    for row in range(N_SIMS):
        yield InventoryRow(
            iccid=iccid(row),
            customer=f"c{row % 25}",
            apns=(APNS[row % len(APNS)],),
            status="active",
            tags=frozenset({"vip"}) if row % VIP_EVERY == 0 else frozenset(),
        )


def record_lines(now: float) -> list[bytes]:
    """Every record, in event-time order (as a feed delivers a backlog)."""
    rng = np.random.default_rng(7)
    timed: list[tuple[float, bytes]] = []
    n = 0

    def add(row: int, end: float, mcc: str, mnc: str) -> None:
        nonlocal n
        n += 1
        start, stop = format_rfc3339(end - 60).encode(), format_rfc3339(end).encode()
        apn = APNS[row % len(APNS)].encode()
        line = LINE % (n, iccid(row).encode(), start, stop, apn, mcc.encode(), mnc.encode())
        timed.append((end, line))

    first = (now - HISTORY_S) // 900 * 900
    t = first
    while t < now - 120:
        for row in range(COHORT):
            end = t + row * 1.3
            faulty = row < FAULTY
            if end < now - 120 and not (faulty and end >= now - OUTAGE_S):
                add(row, end, "262", "01" if faulty else "02")
        t += 900
    offsets = rng.integers(0, 3000, N_SIMS)
    partners = rng.integers(0, len(PARTNERS), N_SIMS)
    for row in range(COHORT, N_SIMS - NEVER_SEEN):
        mcc, mnc = PARTNERS[int(partners[row])]
        add(row, now - 3600 + int(offsets[row]), mcc, mnc)
    timed.sort(key=lambda x: x[0])
    lines = [line for _, line in timed]
    bad_at = now - 1800
    for k in range(BAD_LINES):
        if k < 30:
            bad = LINE % (10**9 + k, b"12345", *(format_rfc3339(bad_at).encode(),) * 2,
                          b"apn0.iot", b"262", b"02")  # fmt: skip
        else:
            bad = b'{"kind":"usage","record_id":'
        lines.insert(len(lines) - 1000 + k, bad)
    return lines


class Running:
    def __init__(self, daemon: Daemon, source: LinesSource, port: int, n_lines: int) -> None:
        self.daemon = daemon
        self.source = source
        self.port = port
        self.n_lines = n_lines

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def get(self, path: str, accept: str | None = None) -> tuple[str, str]:
        """(Content-Type, body) of a GET on the daemon."""
        headers = {"Accept": accept} if accept else {}
        async with (
            aiohttp.ClientSession() as client,
            client.get(self.url + path, headers=headers) as response,
        ):
            assert response.status == 200, await response.text()
            return response.headers["Content-Type"], await response.text()


WAIT = 45.0  # the bound on the daemon's start-up waits


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def running(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Running]:
    tmp = tmp_path_factory.mktemp("daemon")
    now = time.time()
    lines = await asyncio.to_thread(record_lines, now)
    rows = await asyncio.to_thread(lambda: list(inventory()))
    http = HttpSettings(port=free_port(), auth="off")  # auth: test_http_security.py
    settings = Settings(
        engine=EngineSettings(warmup_s=0, dead_letter_file=tmp / "dl.ndjson"), http=http
    )
    source = LinesSource("file:backlog", lines)
    daemon = Daemon(settings, [source], sinks=[CountingSink()], inventory=rows)
    task = asyncio.create_task(
        daemon.run(extra_tasks=[("http", lambda: serve(daemon, http, frozenset()))])
    )
    try:
        await until(lambda: source.applied == source.batches, WAIT, "all records applied")
        await until(lambda: daemon.health.ready, WAIT, "ready")
        await until(
            lambda: any(i.kind == "group" for i in daemon.engine.incidents.open.values()),
            WAIT,
            "a group incident open",
        )

        async def http_ready() -> bool:  # the HTTP task starts with the TaskGroup
            url = f"http://127.0.0.1:{http.port}/-/ready"
            status, _ = await asyncio.to_thread(http_get, url)
            return status == 200

        await until(http_ready, WAIT, "the HTTP API answering /-/ready")
        yield Running(daemon, source, http.port, len(lines))
    finally:
        daemon.request_stop()
        await asyncio.wait_for(task, 15)


# ---- helpers ---------------------------------------------------------------------------------


def check_metrics(text: str) -> subprocess.CompletedProcess[bytes]:
    exe = promtool()
    assert exe is not None
    return subprocess.run(
        [exe, "check", "metrics"], input=text.encode(), capture_output=True, check=False, timeout=60
    )


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    out: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


def label_names_and_values(text: str) -> tuple[set[str], set[str]]:
    names: set[str] = set()
    values: set[str] = set()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            names.update(s.labels)
            values.update(s.labels.values())
    return names, values


# ---- the text format through promtool --------------------------------------------------------


@on_daemon_loop
@needs_promtool
@pytest.mark.parametrize("accept", [None, "text/plain;version=1.0.0"])
async def test_text_scrape_passes_promtool(running: Running, accept: str | None) -> None:
    content_type, text = await running.get("/metrics", accept)
    assert content_type.startswith("text/plain")
    done = await asyncio.to_thread(check_metrics, text)
    output = (done.stdout + done.stderr).decode()
    assert done.returncode == 0, output
    assert output == ""  # no lint problem printed
    # and it is the fleet described above, not an empty daemon
    assert samples(text, "simwatch_tracked_sims") == {(): N_SIMS}
    states = {dict(k)["state"]: v for k, v in samples(text, "simwatch_sims").items()}
    assert states["never_seen"] == NEVER_SEEN
    assert states["silent"] >= FAULTY
    partners = {
        dict(k)["value"]
        for k in samples(text, "simwatch_group_sims")
        if dict(k)["dim"] == "partner"
    }
    # 302 partners and the never-seen SIMs' _unknown: the top 200 and _other
    assert len(partners) == 200 + 1
    assert {"_other", "_unknown", "26201"} <= partners
    assert samples(text, "simwatch_incidents_open")[(("severity", "page"),)] >= 1
    info = samples(text, "simwatch_incident_info")
    assert {dict(k)["partner"] for k in info} >= {"26201"}
    rejected = {
        dict(k)["reason"]: v
        for k, v in samples(text, "simwatch_source_records_rejected_total").items()
    }
    assert rejected["bad_iccid"] == 30
    assert rejected["invalid_json"] == 10
    ((labels, received),) = samples(text, "simwatch_source_records_received_total").items()
    assert labels == (("source", "file:backlog"),)
    assert received >= running.n_lines  # the backlog, and the live trickle so far
    assert samples(text, "simwatch_sink_up") == {(("sink", "influxdb"),): 1}


@on_daemon_loop
async def test_openmetrics_scrape_parses_strictly(running: Running) -> None:
    content_type, text = await running.get(
        "/metrics", "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    )
    assert content_type.startswith("application/openmetrics-text")
    assert text.endswith("# EOF\n")
    families = {f.name: f for f in parse_openmetrics(text)}  # type: ignore[no-untyped-call]
    assert families["simwatch_build"].type == "info"
    assert families["simwatch_incident"].type == "info"
    assert families["simwatch_source_records_received"].type == "counter"
    tracked = families["simwatch_tracked_sims"].samples
    assert [s.value for s in tracked] == [N_SIMS]


# ---- a real Prometheus with the deploy config and rules --------------------------------------


def prometheus_config(target: str) -> str:
    """deploy/prometheus/prometheus.yml pointed at the test daemon, on a 1 s cadence."""
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text(encoding="utf-8"))
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(DEPLOY / f) for f in config["rule_files"]]
    del config["alerting"]  # nothing to send to: the test reads the alerts from the API
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "simwatch"]
    job["static_configs"] = [{"targets": [target]}]
    config["scrape_configs"] = [job]
    return str(yaml.safe_dump(config))


async def prom_api(prom: Prometheus, path: str) -> Any:
    status, body = await asyncio.to_thread(http_get, prom.url + path)
    assert status == 200, body[:500]
    return orjson.loads(body)["data"]


@on_daemon_loop
@pytest.mark.skipif(not Prometheus.available(), reason="prometheus is not installed")
async def test_prometheus_scrapes_and_evaluates_the_rules(running: Running, tmp_path: Path) -> None:
    prom = Prometheus(tmp_path / "prometheus")
    prom.write_config(prometheus_config(f"127.0.0.1:{running.port}"))
    await asyncio.to_thread(prom.start)
    try:
        deadline = time.monotonic() + 30
        wanted = {
            "instance:simwatch_source_records_received:rate5m",
            "dim:simwatch_group_affected_ratio:max",
            "instance:simwatch_sims_silent:ratio",
            "instance:simwatch_group_month_bytes:sum",
            "source:simwatch_source_records_rejected:ratio_rate5m",
            "sink:simwatch_sink_sent:rate5m",
        }
        while True:
            targets = (await prom_api(prom, "/api/v1/targets"))["activeTargets"]
            results = {}
            for name in wanted:
                data = await prom_api(prom, f"/api/v1/query?query={name}")
                results[name] = data["result"]
            if targets and targets[0]["health"] == "up" and all(results.values()):
                break
            missing = [name for name, result in results.items() if not result]
            assert time.monotonic() < deadline, (targets, missing, prom.log())
            await asyncio.sleep(0.5)
        (target,) = targets
        assert target["labels"]["job"] == "simwatch"
        assert target["lastError"] == ""
        metadata = await prom_api(
            prom, "/api/v1/targets/metadata?match_target={job=%22simwatch%22}"
        )
        types = {m["metric"]: (m["type"], m["unit"]) for m in metadata}
        # info families and units exist only in OpenMetrics: that is what was scraped
        assert types["simwatch_build"] == ("info", "")
        assert types["simwatch_group_month_bytes"] == ("gauge", "bytes")
        dims = {r["metric"]["dim"]: float(r["value"][1]) for r in results[
            "dim:simwatch_group_affected_ratio:max"
        ]}  # fmt: skip
        assert dims.keys() == {"apn", "country", "partner"}
        assert dims["partner"] == 1.0  # 26201: all its learned SIMs are silent
        groups = (await prom_api(prom, "/api/v1/rules"))["groups"]
        rules = [r for g in groups for r in g["rules"]]
        assert sorted(r["name"] for r in rules) == sorted(_rule_names())
        assert [(r["name"], r["lastError"]) for r in rules if r["health"] != "ok"] == []
        alerts = (await prom_api(prom, "/api/v1/alerts"))["alerts"]
        assert alerts == []  # a healthy daemon: nothing pending, nothing firing
    finally:
        await asyncio.to_thread(prom.stop)


def _rule_names() -> list[str]:
    """Every alert and record named in the deployed rule files: what Prometheus must load."""
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text(encoding="utf-8"))
    names = []
    for name in config["rule_files"]:
        rules = yaml.safe_load((DEPLOY / name).read_text(encoding="utf-8"))
        names += [r.get("alert") or r["record"] for g in rules["groups"] for r in g["rules"]]
    return names


# ---- per-SIM series: off by default, capped when on ------------------------------------------


@on_daemon_loop
async def test_no_iccid_label_by_default(running: Running) -> None:
    _, text = await running.get("/metrics")
    names, values = label_names_and_values(text)
    assert "iccid" not in names
    assert not [v for v in values if ICCID_RE.fullmatch(v)]
    assert "simwatch_sim_state" not in text


def tagged_collector(engine: Engine, sim_series: int) -> EngineCollector:
    return EngineCollector(
        engine, DaemonHealth(), lambda: (), version=__version__, sim_series=sim_series
    )


@on_daemon_loop
@needs_promtool
async def test_sim_series_opt_in_is_capped(running: Running) -> None:
    engine = running.daemon.engine
    text = generate_latest(make_registry(tagged_collector(engine, 100))).decode()
    done = await asyncio.to_thread(check_metrics, text)
    assert done.returncode == 0, (done.stdout + done.stderr).decode()
    assert (done.stdout + done.stderr) == b""
    state = samples(text, "simwatch_sim_state")
    per_sim: dict[str, dict[str, float]] = {}
    for labels, value in state.items():
        d = dict(labels)
        per_sim.setdefault(d["iccid"], {})[d["state"]] = value
    # the first 100 tagged SIMs in inventory order; every state has a series, one is 1
    assert list(per_sim) == [iccid(row) for row in range(0, 100 * VIP_EVERY, VIP_EVERY)]
    assert all(sorted(s) == sorted(STATE_NAMES) and sum(s.values()) == 1 for s in per_sim.values())
    assert per_sim[iccid(0)]["silent"] == 1  # on the silent partner
    assert per_sim[iccid(VIP_EVERY)]["ok"] == 1  # on the healthy one
    last = samples(text, "simwatch_sim_last_data_timestamp_seconds")
    assert len(last) == 100
    last_data = engine.state.rhythm.last_data
    assert last[(("iccid", iccid(0)),)] == last_data[0]
    assert samples(text, "simwatch_sim_series_omitted_sims") == {(): N_SIMS // VIP_EVERY - 100}
    _, values = label_names_and_values(text)
    assert len({v for v in values if ICCID_RE.fullmatch(v)}) == 100

    everything = generate_latest(make_registry(tagged_collector(engine, 10_000))).decode()
    iccids = {dict(k)["iccid"] for k in samples(everything, "simwatch_sim_state")}
    assert len(iccids) == N_SIMS // VIP_EVERY
    assert samples(everything, "simwatch_sim_series_omitted_sims") == {(): 0}


def test_sim_series_edge_cases() -> None:
    engine = Engine()
    vip = frozenset({"vip"})
    engine.load_inventory(
        [
            InventoryRow(iccid=iccid(1), tags=vip),
            InventoryRow(iccid=iccid(2)),
            InventoryRow(iccid=iccid(3), tags=vip, status="suspended"),
        ]
    )
    end = 1_795_000_000.0
    line = LINE % (1, iccid(1).encode(), format_rfc3339(end - 60).encode(),
                   format_rfc3339(end).encode(), b"a.iot", b"262", b"02")  # fmt: skip
    record = RecordDecoder().decode_line(line, end)
    assert isinstance(record, Record)
    engine.ingest_record(record)

    def scrape() -> str:
        return generate_latest(make_registry(tagged_collector(engine, 5))).decode()

    text = scrape()  # before the first evaluation: no state yet, the last data time is
    assert samples(text, "simwatch_sim_state") == {}
    assert samples(text, "simwatch_sim_last_data_timestamp_seconds") == {
        (("iccid", iccid(1)),): end
    }  # the never-seen SIM has no series
    engine.evaluate(end + 60)
    engine.load_inventory([InventoryRow(iccid=iccid(4), tags=vip)])  # after the evaluation
    text = scrape()
    states = {
        (dict(k)["iccid"], dict(k)["state"])
        for k, v in samples(text, "simwatch_sim_state").items()
        if v
    }
    assert states == {(iccid(1), "ok"), (iccid(3), "inactive")}  # iccid 4: no state yet
    assert samples(text, "simwatch_sim_series_omitted_sims") == {(): 0}
    with pytest.raises(ValueError, match="sim_series"):
        tagged_collector(engine, -1)
    assert "iccid" not in generate_latest(make_registry(tagged_collector(engine, 0))).decode()
