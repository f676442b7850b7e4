"""The /metrics collector on a hand-made fleet: exact values, bounded labels, naming, HTTP."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import threading
from collections import Counter
from dataclasses import replace
from typing import TYPE_CHECKING

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from fleet import DAY, ICCIDS, T0, Feed, inventory_row
from prometheus_client import CONTENT_TYPE_LATEST, CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.exposition import choose_encoder
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families

from simwatch.core.engine import Engine, EngineConfig
from simwatch.core.evaluate import STATE_NAMES
from simwatch.core.incidents import Incident
from simwatch.core.records import RejectReason
from simwatch.http.metrics import (
    CachedMetrics,
    EngineCollector,
    make_registry,
    metrics_handler,
)
from simwatch.shell.health import DaemonHealth
from simwatch.shell.sink_contract import SinkStats
from simwatch.shell.source_contract import SourceStats

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from prometheus_client.metrics_core import Metric

WALL = T0 + 30 * DAY
RECORD_BYTES = 1500  # bytes_up + bytes_down of every usage record below
LEARN_REPORTS = 3 * 96  # reports per SIM while learning: every 15 min for three days
OUTAGE_MIN = 150  # minutes evaluated after partner 26203 went silent
OK_REPORTS = LEARN_REPORTS + OUTAGE_MIN // 15  # reports of a 26202 SIM in all
VIP = ICCIDS[20]  # on 26203: goes silent with its partner and raises a ticket

Labels = tuple[tuple[str, str], ...]


def build_fleet() -> Engine:
    """40 SIMs: 20 on 26202 (ok), 10 on 26203 (gone silent: a group incident), 6 never
    seen, 4 suspended. Rows 0-29 learn a 15-minute rhythm over three days."""
    engine = Engine(replace(EngineConfig(), warmup_s=0.0))
    engine.load_inventory(inventory_row(i) for i in ICCIDS[:36])
    engine.load_inventory(inventory_row(i, status="suspended") for i in ICCIDS[36:])
    engine.load_inventory([inventory_row(VIP, tags=frozenset({"vip"}))])
    feed = Feed(engine, WALL)
    end = T0 + 3 * DAY
    t = T0
    while t < end:
        for i, iccid in enumerate(ICCIDS[:30]):
            feed.usage(iccid, t + i, mnc="02" if i < 20 else "03")
        if t % 3600 == 0:
            engine.evaluate(t + 60)  # the group baseline learns along
        t += 900.0
    last = end - 900.0 + 30
    for minute in range(OUTAGE_MIN):
        now = last + minute * 60
        if minute % 15 == 0:
            for i, iccid in enumerate(ICCIDS[:20]):
                feed.usage(iccid, now + i)
        engine.evaluate(now)
    return engine


@pytest.fixture(scope="module")
def fleet() -> Engine:
    return build_fleet()  # read only by the tests below


def collector(
    engine: Engine,
    *,
    health: DaemonHealth | None = None,
    stats: Sequence[SourceStats] = (),
    sinks: Sequence[SinkStats] = (),
    top_n: int = 200,
) -> EngineCollector:
    return EngineCollector(
        engine,
        health or DaemonHealth(),
        lambda: stats,
        version="9.8.7",
        top_n=top_n,
        sink_stats=lambda: sinks,
    )


def exposition(coll: EngineCollector) -> str:
    return generate_latest(make_registry(coll)).decode()


def samples(text: str, name: str) -> dict[Labels, float]:
    """Every sample called ``name``: its sorted labels -> value."""
    out: dict[Labels, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name:
                key = tuple(sorted(s.labels.items()))
                assert key not in out, f"duplicate series {name}{key}"
                out[key] = s.value
    return out


def by(text: str, name: str, *label_names: str) -> dict[tuple[str, ...], float]:
    """Samples keyed by the values of the given labels (which must identify them)."""
    out: dict[tuple[str, ...], float] = {}
    for labels, value in samples(text, name).items():
        d = dict(labels)
        key = tuple(d[n] for n in label_names)
        assert key not in out
        out[key] = value
    return out


def openmetrics_text(coll: EngineCollector) -> str:
    # prometheus_client's OpenMetrics module is not annotated.
    body: bytes = openmetrics_latest(make_registry(coll))  # type: ignore[no-untyped-call]
    return body.decode()


def openmetrics_families(text: str) -> dict[str, Metric]:
    families = parse_openmetrics(text)  # type: ignore[no-untyped-call]
    return {f.name: f for f in families}


def nonzero(values: dict[tuple[str, ...], float]) -> dict[tuple[str, ...], float]:
    return {k: v for k, v in values.items() if v}


# ---- the fleet ----------------------------------------------------------------------------


def test_fleet_states(fleet: Engine) -> None:
    text = exposition(collector(fleet))
    assert by(text, "simwatch_sims", "state") == {
        ("ok",): 20,
        ("late",): 0,
        ("silent",): 10,
        ("never_seen",): 6,
        ("inactive",): 4,
    }
    assert samples(text, "simwatch_tracked_sims") == {(): 40}


def test_group_counts_per_dimension(fleet: Engine) -> None:
    text = exposition(collector(fleet))
    group = by(text, "simwatch_group_sims", "dim", "value", "state")
    assert nonzero(group) == {
        ("partner", "26202", "ok"): 20,
        ("partner", "26203", "silent"): 10,
        ("partner", "_unknown", "never_seen"): 6,
        ("partner", "_unknown", "inactive"): 4,
        ("apn", "meters.acme", "ok"): 20,
        ("apn", "meters.acme", "silent"): 10,
        ("apn", "_unknown", "never_seen"): 6,
        ("apn", "_unknown", "inactive"): 4,
        ("country", "DE", "ok"): 20,
        ("country", "DE", "silent"): 10,
        ("country", "_unknown", "never_seen"): 6,
        ("country", "_unknown", "inactive"): 4,
    }
    # Every exported value has a series for every state (series do not come and go).
    assert len(group) == 7 * len(STATE_NAMES)


def test_group_total_affected_and_ratio(fleet: Engine) -> None:
    text = exposition(collector(fleet))
    # Never-seen and inactive SIMs are not expected to report: no ratio for them.
    assert by(text, "simwatch_group_affected_ratio", "dim", "value") == {
        ("partner", "26202"): 0.0,
        ("partner", "26203"): 1.0,
        ("apn", "meters.acme"): pytest.approx(10 / 30),
        ("country", "DE"): pytest.approx(10 / 30),
    }
    total = by(text, "simwatch_group_total_sims", "dim", "value")
    affected = by(text, "simwatch_group_affected_sims", "dim", "value")
    assert total == {
        ("partner", "26202"): 20,
        ("partner", "26203"): 10,
        ("partner", "_unknown"): 0,
        ("apn", "meters.acme"): 30,
        ("apn", "_unknown"): 0,
        ("country", "DE"): 30,
        ("country", "_unknown"): 0,
    }
    assert nonzero(affected) == {
        ("partner", "26203"): 10,
        ("apn", "meters.acme"): 10,
        ("country", "DE"): 10,
    }
    assert set(affected) == set(total)


def test_group_month_bytes(fleet: Engine) -> None:
    text = exposition(collector(fleet))
    used = by(text, "simwatch_group_month_bytes", "dim", "value")
    ok_bytes = 20 * OK_REPORTS * RECORD_BYTES
    silent_bytes = 10 * LEARN_REPORTS * RECORD_BYTES
    assert used[("partner", "26202")] == ok_bytes
    assert used[("partner", "26203")] == silent_bytes
    assert used[("partner", "_unknown")] == 0
    assert used[("apn", "meters.acme")] == ok_bytes + silent_bytes


def test_open_group_incident(fleet: Engine) -> None:
    text = exposition(collector(fleet))
    (incident,) = [i for i in fleet.incidents.open.values() if i.kind == "group"]
    assert incident.dims == {"partner": "26203"}
    assert samples(text, "simwatch_incident_info") == {
        (
            ("apn", ""),
            ("country", ""),
            ("id", incident.id),
            ("partner", "26203"),
            ("severity", "page"),
        ): 1.0
    }
    assert by(text, "simwatch_incident_affected_sims", "id") == {(incident.id,): 10}
    assert by(text, "simwatch_incident_group_sims", "id") == {(incident.id,): 10}
    assert by(text, "simwatch_incident_opened_timestamp_seconds", "id") == {
        (incident.id,): incident.opened_at
    }
    # The VIP SIM on the silent partner has a ticket: counted, never a label.
    assert by(text, "simwatch_incidents_open", "severity") == {("page",): 1, ("ticket",): 1}
    assert samples(text, "simwatch_incidents_opened_total") == {(): 2}


def test_no_label_value_is_an_iccid(fleet: Engine) -> None:
    text = exposition(collector(fleet, top_n=1)) + exposition(collector(fleet))
    assert any(i.iccid == VIP for i in fleet.incidents.open.values())  # one is in the state
    iccids = set(ICCIDS)
    values = {
        v for family in text_string_to_metric_families(text) for s in family.samples
        for v in s.labels.values()
    }  # fmt: skip
    assert values  # the check below looks at something
    assert not values & iccids
    assert not [v for v in values if re.fullmatch(r"\d{18,20}", v)]


# ---- bounded labels -----------------------------------------------------------------------


def test_top_n_sums_the_rest_into_other(fleet: Engine) -> None:
    text = exposition(collector(fleet, top_n=1))
    group = by(text, "simwatch_group_sims", "dim", "value", "state")
    partner = {k[1:]: v for k, v in nonzero(group).items() if k[0] == "partner"}
    assert partner == {
        ("26202", "ok"): 20,
        ("_other", "silent"): 10,
        ("_other", "never_seen"): 6,
        ("_other", "inactive"): 4,
    }
    ratio = by(text, "simwatch_group_affected_ratio", "dim", "value")
    assert ratio[("partner", "_other")] == 1.0
    assert by(text, "simwatch_group_affected_sims", "dim", "value")[("partner", "_other")] == 10
    used = by(text, "simwatch_group_month_bytes", "dim", "value")
    assert used[("partner", "_other")] == 10 * LEARN_REPORTS * RECORD_BYTES
    assert {k[1] for k in group} == {"26202", "meters.acme", "DE", "_other"}


def test_many_values_are_capped_at_top_n() -> None:
    engine = Engine()
    feed = Feed(engine, WALL)
    sizes = {f"apn-{k}": 1 + (k == 7) * 5 for k in range(250)}  # apn-7 is the largest
    n = 0
    for apn, size in sizes.items():
        for _ in range(size):
            feed.usage(f"893144000000{n:07d}", T0, apn=apn)
            n += 1
    engine.evaluate(T0 + 60)
    text = exposition(collector(engine))
    per_value = Counter[str]()
    for (dim, value, _state), count in by(
        text, "simwatch_group_sims", "dim", "value", "state"
    ).items():
        if dim == "apn":
            per_value[value] += int(count)
    assert len(per_value) == 201  # 200 values and _other
    assert per_value["apn-7"] == 6
    assert per_value["_other"] == 50  # the 50 apns seen last
    assert sum(per_value.values()) == n
    assert "apn-249" not in per_value
    assert len(samples(text, "simwatch_group_month_bytes")) == 201 + 2  # + partner, country


# ---- before the first evaluation, sources and the daemon ----------------------------------


def test_before_the_first_evaluation() -> None:
    engine = Engine()
    engine.load_inventory(inventory_row(i) for i in ICCIDS)
    text = exposition(collector(engine, health=DaemonHealth(started_at=T0)))
    assert samples(text, "simwatch_tracked_sims") == {(): 40}
    assert samples(text, "simwatch_sims") == {}
    assert samples(text, "simwatch_group_sims") == {}
    assert samples(text, "simwatch_last_evaluation_timestamp_seconds") == {}
    assert samples(text, "simwatch_evaluations_total") == {(): 0}
    assert by(text, "simwatch_incidents_open", "severity") == {("page",): 0, ("ticket",): 0}
    assert samples(text, "simwatch_incidents_opened_total") == {(): 0}
    assert samples(text, "simwatch_start_time_seconds") == {(): T0}
    ((labels, value),) = samples(text, "simwatch_build_info").items()
    assert dict(labels)["version"] == "9.8.7"
    assert value == 1


def test_source_and_daemon_self_metrics() -> None:
    mqtt = SourceStats(
        name="mqtt:broker-a",
        kind="mqtt",
        received=120,
        rejected=Counter({"bad_iccid": 3, "something_new": 1}),
        duplicates=4,
        errors=2,
        last_success=T0 + 5,
        connected=True,
    )
    file = SourceStats(name="file:cdr", kind="file", errors=1, last_error="no such file")
    health = DaemonHealth(
        evaluations_total=12,
        evaluation_failures_total=1,
        last_evaluation_duration_s=0.25,
        last_evaluation_timestamp=T0 + 60,
        queue_depth=lambda: 7,
        started_at=T0,
    )
    influx = SinkStats(
        name="influxdb", kind="influxdb", sent=500, errors=3, dropped=20, buffered=7, up=False
    )
    alerts = SinkStats(name="alertmanager", kind="alertmanager", sent=4, last_success=T0, up=True)
    sinks = [influx, alerts]
    text = exposition(collector(Engine(), health=health, stats=[mqtt, file], sinks=sinks))
    received = by(text, "simwatch_source_records_received_total", "source")
    assert received == {("mqtt:broker-a",): 120, ("file:cdr",): 0}
    rejected = by(text, "simwatch_source_records_rejected_total", "source", "reason")
    assert len(rejected) == 2 * len(RejectReason) + 1  # every known reason, and the new one
    assert nonzero(rejected) == {
        ("mqtt:broker-a", "bad_iccid"): 3,
        ("mqtt:broker-a", "something_new"): 1,
    }
    assert by(text, "simwatch_source_duplicates_total", "source")[("mqtt:broker-a",)] == 4
    errors = by(text, "simwatch_source_errors_total", "source")
    assert errors == {("mqtt:broker-a",): 2, ("file:cdr",): 1}
    assert by(text, "simwatch_source_last_success_timestamp_seconds", "source") == {
        ("mqtt:broker-a",): T0 + 5
    }
    assert by(text, "simwatch_source_up", "source") == {("mqtt:broker-a",): 1, ("file:cdr",): 0}
    assert samples(text, "simwatch_evaluations_total") == {(): 12}
    assert samples(text, "simwatch_evaluation_failures_total") == {(): 1}
    assert samples(text, "simwatch_evaluation_duration_seconds") == {(): 0.25}
    assert samples(text, "simwatch_last_evaluation_timestamp_seconds") == {(): T0 + 60}
    assert by(text, "simwatch_sink_errors_total", "sink") == {
        ("influxdb",): 3,
        ("alertmanager",): 0,
    }
    assert by(text, "simwatch_sink_sent_total", "sink") == {
        ("influxdb",): 500,
        ("alertmanager",): 4,
    }
    assert by(text, "simwatch_sink_dropped_total", "sink") == {
        ("influxdb",): 20,
        ("alertmanager",): 0,
    }
    assert by(text, "simwatch_sink_buffered", "sink") == {("influxdb",): 7, ("alertmanager",): 0}
    assert by(text, "simwatch_sink_up", "sink") == {("influxdb",): 0, ("alertmanager",): 1}
    assert by(text, "simwatch_sink_last_success_timestamp_seconds", "sink") == {
        ("alertmanager",): T0
    }
    assert samples(text, "simwatch_ingest_queue_depth") == {(): 7}


def test_collecting_twice_reads_the_current_state() -> None:
    engine = Engine()
    health = DaemonHealth()
    registry = make_registry(collector(engine, health=health))
    assert samples(generate_latest(registry).decode(), "simwatch_evaluations_total") == {(): 0}
    health.evaluations_total = 3
    Feed(engine, WALL).usage(ICCIDS[0], T0)
    text = generate_latest(registry).decode()
    assert samples(text, "simwatch_evaluations_total") == {(): 3}
    assert samples(text, "simwatch_tracked_sims") == {(): 1}


def test_odd_dimension_names_become_valid_label_names() -> None:
    engine = Engine(replace(EngineConfig(), dims=("partner", "cost-center", "id")))
    dims = {"partner": "26202", "cost-center": "north", "id": "x"}
    engine.incidents.open[tuple(sorted(dims.items()))] = Incident(
        id="inc-0042", kind="group", dims=dims, severity="page", opened_at=T0,
        updated_at=T0, affected=5, total=8, expected=0.1, score=12.0,
    )  # fmt: skip
    text = exposition(collector(engine))
    assert samples(text, "simwatch_incident_info") == {
        (
            ("cost_center", "north"),
            ("dim_id", "x"),
            ("id", "inc-0042"),
            ("partner", "26202"),
            ("severity", "page"),
        ): 1.0
    }


# ---- conventions --------------------------------------------------------------------------

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_NON_BASE_UNITS = ("_ms", "_milliseconds", "_minutes", "_hours", "_days", "_kb", "_mb", "_kib")


def test_names_follow_the_conventions(fleet: Engine) -> None:
    stats = [SourceStats(name="mqtt:a", kind="mqtt", last_success=T0, rejected=Counter(x=1))]
    health = DaemonHealth(last_evaluation_timestamp=T0)
    health.queue_depth = lambda: 0
    sinks = [SinkStats(name="s", kind="mqtt", sent=1, last_success=T0)]
    text = exposition(collector(fleet, health=health, stats=stats, sinks=sinks))
    families = list(text_string_to_metric_families(text))
    ours = [f for f in families if f.name.startswith("simwatch_")]
    assert len(ours) == 35
    assert {f.name for f in families} - {f.name for f in ours} <= {
        f.name for f in families if f.name.startswith("process_")
    }
    for family in families:
        assert family.documentation, family.name
        assert _NAME.fullmatch(family.name), family.name
        for s in family.samples:
            assert s.name.startswith(family.name), (family.name, s.name)
            if family.type == "counter":
                assert s.name.endswith("_total"), s.name
            else:
                assert not s.name.endswith("_total"), s.name
            if "timestamp" in s.name or "time" in s.name.split("_"):
                assert s.name.endswith("_seconds"), s.name
            if "duration" in s.name:
                assert s.name.endswith("_seconds"), s.name
            if s.name.endswith("_info"):
                assert s.value == 1, s.name
            assert not any(u in f"{s.name}_" for u in (f"{u}_" for u in _NON_BASE_UNITS))
            for label in s.labels:
                assert _LABEL.fullmatch(label), (s.name, label)
                assert not label.startswith("__"), (s.name, label)
    # Every family of the collector carries a sample on this fleet.
    assert not [f.name for f in ours if not f.samples]


def test_openmetrics_exposition_parses(fleet: Engine) -> None:
    families = openmetrics_families(openmetrics_text(collector(fleet)))
    assert families["simwatch_incident"].type == "info"
    assert families["simwatch_build"].type == "info"
    assert families["simwatch_group_month_bytes"].unit == "bytes"
    assert families["simwatch_evaluations"].type == "counter"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_check_metrics(fleet: Engine) -> None:
    promtool = shutil.which("promtool")
    assert promtool is not None
    stats = [SourceStats(name="mqtt:a", kind="mqtt", last_success=T0)]
    text = exposition(collector(fleet, stats=stats))
    done = subprocess.run(
        [promtool, "check", "metrics"],
        input=text.encode(),
        capture_output=True,
        check=False,
        timeout=30,
    )
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()


# ---- HTTP -----------------------------------------------------------------------------------


async def test_handler_serves_the_exposition(fleet: Engine) -> None:
    app = web.Application()
    app.router.add_get("/metrics", metrics_handler(make_registry(collector(fleet))))
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/metrics")
        assert resp.status == 200
        assert resp.headers["Content-Type"] == CONTENT_TYPE_PLAIN_0_0_4
        text = await resp.text()
        assert by(text, "simwatch_sims", "state")[("silent",)] == 10

        resp = await client.get("/metrics", headers={"Accept": "text/plain;version=1.0.0"})
        assert resp.headers["Content-Type"].startswith(CONTENT_TYPE_LATEST)
        assert by(await resp.text(), "simwatch_sims", "state")[("ok",)] == 20

        resp = await client.get(
            "/metrics", headers={"Accept": "application/openmetrics-text;version=1.0.0"}
        )
        assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
        om = await resp.text()
        assert om.endswith("# EOF\n")
        assert openmetrics_families(om).keys() >= {"simwatch_sims", "simwatch_incident"}


async def test_cached_handler_serves_the_registry_and_renders_once_per_cycle(
    fleet: Engine,
) -> None:
    """CachedMetrics (issue 12): the same exposition as the registry, in every format;
    the fleet's families are collected once per evaluation cycle, the rest at each scrape,
    and a scrape after a new cycle shows that cycle."""
    engine = Engine(replace(EngineConfig(), warmup_s=0.0))
    engine.load_inventory(inventory_row(i) for i in ICCIDS[:6])
    feed = Feed(engine, WALL)
    for i, iccid in enumerate(ICCIDS[:4]):
        feed.usage(iccid, WALL - 3600 + i)
    engine.evaluate(WALL)
    stats = SourceStats("mqtt", "mqtt")
    coll = collector(engine, stats=[stats])
    cached = CachedMetrics(coll, process=False)
    app = web.Application()
    app.router.add_get("/metrics", cached.handle)
    om_accept = "application/openmetrics-text;version=1.0.0"
    async with TestClient(TestServer(app)) as client:
        for accept in ("", "text/plain;version=1.0.0", om_accept):
            resp = await client.get("/metrics", headers={"Accept": accept} if accept else {})
            expected = make_aiohttp_handler_body(coll, accept)
            assert resp.headers["Content-Type"] == expected[0]
            body = await resp.text()  # gzip (asked for by the client) undone
            assert resp.headers.get("Content-Encoding") == "gzip"
            if accept == om_accept:
                assert body.count("# EOF") == 1
                assert body.endswith("# EOF\n")
                assert openmetrics_families(body) == openmetrics_families(expected[1])
            else:
                assert sorted(body.splitlines()) == sorted(expected[1].splitlines())
        assert cached.renders == 1
        stats.received = 7  # the live families move at every scrape
        feed.usage(ICCIDS[7], WALL + 10)  # a new SIM: tracked at once
        text = await (await client.get("/metrics")).text()
        assert by(text, "simwatch_source_records_received_total", "source") == {("mqtt",): 7}
        assert samples(text, "simwatch_tracked_sims") == {(): 7}
        assert cached.renders == 1
        engine.evaluate(WALL + 60)  # a cycle: its families on the next scrape
        text = await (await client.get("/metrics")).text()
        assert cached.renders == 2
        assert sum(by(text, "simwatch_sims", "state").values()) == 7
        assert (await client.get("/metrics?name[]=simwatch_sims")).status == 200
        async with cached.lock:  # a writer holds the engine: the last rendered cycle's
            engine.evaluate(WALL + 120)
            resp = await client.get("/metrics")
            assert resp.status == 200
            assert cached.renders == 2
        text = await (await client.get("/metrics")).text()  # then the new cycle's
        assert cached.renders == 3
        assert sum(by(text, "simwatch_sims", "state").values()) == 7


async def test_a_scrape_does_not_wait_for_the_refresh_after_a_live_cycle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """CachedMetrics (issue 12): while the refresh the daemon starts after a live cycle
    (``refresh_soon``) is still collecting, a scrape is answered with the last rendered
    cycle's families instead of waiting for the collection; once the refresh is done,
    scrapes show the new cycle."""
    engine = Engine(replace(EngineConfig(), warmup_s=0.0))
    engine.load_inventory(inventory_row(i) for i in ICCIDS[:6])
    feed = Feed(engine, WALL)
    for i, iccid in enumerate(ICCIDS[:4]):
        feed.usage(iccid, WALL - 3600 + i)
    engine.evaluate(WALL)
    coll = collector(engine)
    collect_cycle = coll.collect_cycle
    collecting, release = threading.Event(), threading.Event()

    def held_collect() -> Iterator[Metric]:  # the second cycle's collection waits for release
        if engine.cycles > 1:
            collecting.set()
            assert release.wait(60), "never released"
        return collect_cycle()

    monkeypatch.setattr(coll, "collect_cycle", held_collect)
    cached = CachedMetrics(coll, process=False)
    app = web.Application()
    app.router.add_get("/metrics", cached.handle)
    async with TestClient(TestServer(app)) as client:
        first = await (await client.get("/metrics")).text()
        assert sum(by(first, "simwatch_sims", "state").values()) == 6
        feed.usage(ICCIDS[7], WALL + 10)  # a SIM new to the fleet
        engine.evaluate(WALL + 60)  # a live cycle, then the daemon's refresh
        refresh = cached.refresh_soon()
        try:
            assert await asyncio.to_thread(collecting.wait, 60)
            scrape = asyncio.ensure_future(client.get("/metrics"))
            # liveness, not speed: waiting for the held refresh would never end
            await asyncio.wait({scrape}, timeout=60)
            assert scrape.done(), "the scrape waited for the refresh"
            text = await scrape.result().text()
            assert sum(by(text, "simwatch_sims", "state").values()) == 6  # the last rendered
            assert samples(text, "simwatch_tracked_sims") == {(): 7}  # live families: now
        finally:
            release.set()
        await refresh
        text = await (await client.get("/metrics")).text()
        assert sum(by(text, "simwatch_sims", "state").values()) == 7
        assert cached.renders == 2


def make_aiohttp_handler_body(coll: EngineCollector, accept: str) -> tuple[str, str]:
    """(content type, body) of the registry's own exposition for an Accept header."""
    encoder, content_type = choose_encoder(accept)
    return content_type, encoder(make_registry(coll, process=False)).decode()
