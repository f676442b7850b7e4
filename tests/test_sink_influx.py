"""The InfluxDB sink: points read back from a real VictoriaMetrics (its InfluxDB
``/api/v2/write``), the bounded buffer while the server is away, retries and refusals,
line-protocol escaping, and the schema of every line it writes.

VictoriaMetrics turns ``measurement,tags field=v`` into the series ``measurement_field``
with the tags as labels. It stores a string field as the number 0 (the text is lost), so
string fields (``state``, ``previous``, ``dims``, ``iccid``) are checked in the lines
themselves and the numbers through VictoriaMetrics.
"""

from __future__ import annotations

import asyncio
import logging
import math
import urllib.parse
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Self

import numpy as np
import orjson
import pytest
from aiohttp import web
from fleet import DAY, Feed, inventory_row, new_engine
from fleet import iccid as fleet_iccid
from mosquitto import free_port
from servers import VictoriaMetrics, http_get, until

from simwatch.core.evaluate import STATE_NAMES
from simwatch.shell.settings import InfluxSinkSettings
from simwatch.shell.sink_contract import Cycle
from simwatch.sinks.influx.points import escape_tag, string_field
from simwatch.sinks.influx.schema import DIM_TAGS, SCHEMA
from simwatch.sinks.influx.sink import InfluxSink

if TYPE_CHECKING:
    from pathlib import Path

    from simwatch.core.engine import CycleResult, Engine

pytestmark = [
    pytest.mark.real_server,
    pytest.mark.skipif(not VictoriaMetrics.available(), reason="victoria-metrics is not installed"),
]


def _second_day_of_last_month() -> float:
    """A fixed point in the past (VictoriaMetrics refuses far-future samples) with four
    days left in its month, so month totals do not reset during a test."""
    today = datetime.now(UTC)
    year, month = (today.year, today.month - 1) if today.month > 1 else (today.year - 1, 12)
    return datetime(year, month, 2, tzinfo=UTC).timestamp()


T0 = _second_day_of_last_month()  # not fleet's T0: here it follows today's date
BYTES = 1500  # every usage record: 1200 up + 300 down
ICCIDS = [fleet_iccid(k) for k in range(300)]
WAIT = 15.0  # the bound on every wait


def settings(url: str, **kw: object) -> InfluxSinkSettings:
    base: dict[str, object] = {
        "url": url,
        "org": "simwatch",
        "bucket": "simwatch",
        "flush_interval_s": 0.05,
        "retry_min_s": 0.05,
        "retry_max_s": 0.2,
        "timeout_s": 5.0,
    }
    base.update(kw)
    return InfluxSinkSettings.model_validate(base)


def cycle(sink: InfluxSink, engine: Engine, now: float) -> CycleResult:
    result = engine.evaluate(now)
    sink.on_cycle(Cycle(engine, result, now, live=False))
    return result


def waiting_lines(sink: InfluxSink) -> list[str]:
    """Every point the sink holds, as the line protocol it would write."""
    out: list[str] = []
    for entry in [*sink._pending, *sink._queue]:
        out += entry.chunk.lines(entry.start, entry.stop)
    return out


Series = dict[str, Any]


def export(vm: VictoriaMetrics, match: str = '{__name__=~"simwatch_.*"}') -> list[Series]:
    vm.force_flush()
    query = urllib.parse.urlencode({"match[]": match})
    status, body = http_get(f"{vm.url}/api/v1/export?{query}")
    assert status == 200, body[:300]
    return [orjson.loads(line) for line in body.splitlines() if line.strip()]


def samples(rows: list[Series], name: str, **labels: str) -> dict[int, float]:
    """{epoch s: value} of every series named ``name`` whose labels include ``labels``."""
    out: dict[int, float] = {}
    for row in rows:
        metric = row["metric"]
        if metric["__name__"] == name and all(metric.get(k) == v for k, v in labels.items()):
            for ts, value in zip(row["timestamps"], row["values"], strict=True):
                out[ts // 1000] = value
    return out


# ---- line protocol ----------------------------------------------------------------------------


def split_unescaped(text: str, sep: str) -> list[str]:
    """Split at ``sep`` outside double quotes and not escaped by a backslash."""
    parts, current, quoted, i = [], "", False, 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            current += text[i : i + 2]
            i += 2
            continue
        if char == '"':
            quoted = not quoted
        if char == sep and not quoted:
            parts.append(current)
            current = ""
        else:
            current += char
        i += 1
    parts.append(current)
    return parts


def unescape(text: str) -> str:
    return text.replace("\\,", ",").replace("\\=", "=").replace("\\ ", " ")


def string_value(raw: str) -> str:
    """The text of a string field value."""
    assert raw.startswith('"')
    assert raw.endswith('"')
    return raw[1:-1].replace('\\"', '"').replace("\\\\", "\\")


def parse_line(line: str) -> tuple[str, dict[str, str], dict[str, str], int]:
    """(measurement, tags, raw field values, time) of one line."""
    head, fields, t = split_unescaped(line, " ")
    name, *tag_parts = split_unescaped(head, ",")
    pairs = [split_unescaped(p, "=") for p in tag_parts]
    tags = {unescape(k): unescape(v) for k, v in pairs}
    pairs = [split_unescaped(p, "=") for p in split_unescaped(fields, ",")]
    field_values = {unescape(k): v for k, v in pairs}
    return unescape(name), tags, field_values, int(t)


def check_schema(line: str, dims: tuple[str, ...]) -> str:
    """Assert the line is exactly influx_schema's; return its measurement."""
    name, tags, fields, _ = parse_line(line)
    measurement = SCHEMA[name]
    allowed = {t for t in measurement.tags if t != DIM_TAGS}
    if DIM_TAGS in measurement.tags:
        allowed |= set(dims)
    assert set(tags) <= allowed, (line, set(tags) - allowed)
    assert all(tags.values()), line
    assert set(fields) <= set(measurement.fields), (line, set(fields) - set(measurement.fields))
    for key, raw in fields.items():
        kind = measurement.fields[key]
        if kind == "int":
            assert raw.endswith("i"), (line, key)
            int(raw[:-1])
        elif kind == "float":
            assert math.isfinite(float(raw)), (line, key)
        else:
            assert raw.startswith('"'), (line, key)
            assert raw.endswith('"'), (line, key)
    return name


# ---- the points, read back ----------------------------------------------------------------


async def test_points_read_back_from_victoriametrics(tmp_path: Path) -> None:
    """A real engine: 3 SIMs report every 15 min, one of them (vip) goes silent and opens
    a ticket, a fourth is in the inventory only. Every measurement is read back."""
    engine = new_engine()
    sims = ICCIDS[:3]
    engine.load_inventory([inventory_row(sims[0], tags=frozenset({"vip"}))])
    engine.load_inventory([inventory_row(i) for i in [*sims[1:], ICCIDS[3]]])
    feed = Feed(engine)
    fed: dict[str, list[float]] = {i: [] for i in sims}  # data times fed per SIM
    for t in np.arange(T0, T0 + 3 * DAY, 900.0).tolist():
        for k, iccid in enumerate(sims):
            feed.usage(iccid, t + k)
            fed[iccid].append(t + k)
    start = T0 + 3 * DAY

    with VictoriaMetrics(tmp_path / "vm") as vm:
        sink = InfluxSink(settings(vm.url), token="any", clock=lambda: 1234.0)
        task = asyncio.create_task(sink.run())
        expected_usage: dict[str, dict[int, tuple[int, int, float]]] = {i: {} for i in sims}
        results: dict[int, CycleResult] = {}
        opened: list[tuple[int, str, int]] = []
        counted_before = dict.fromkeys(sims, 0)
        for step in range(1, 73):  # 6 h of 5-minute cycles
            now = start + step * 300
            if step % 3 == 0:  # sims 1 and 2 keep reporting every 15 min
                for iccid in sims[1:]:
                    feed.usage(iccid, now - 30)
                    fed[iccid].append(now - 30)
            result = cycle(sink, engine, now)
            results[int(now)] = result
            for iccid in sims:
                if len(fed[iccid]) > counted_before[iccid]:
                    new = len(fed[iccid]) - counted_before[iccid]
                    expected_usage[iccid][int(now)] = (
                        new * BYTES,
                        len(fed[iccid]) * BYTES,
                        fed[iccid][-1],
                    )
                    counted_before[iccid] = len(fed[iccid])
            opened += [
                (int(now), c.incident.id, round(c.incident.affected))
                for c in result.changes
                if c.kind == "opened"
            ]
            await asyncio.sleep(0)
        await until(lambda: sink.stats.buffered == 0, WAIT)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await sink.close()
        rows = await asyncio.to_thread(export, vm)

    stats = sink.stats
    assert stats.errors == 0
    assert stats.dropped == 0
    assert stats.up
    assert stats.last_success == 1234.0
    assert stats.last_error is None

    # per-SIM usage: bytes since the previous point, the month's bytes, the newest data
    sim_tags = {"customer": "acme", "apn": "meters.acme", "country": "DE", "partner": "26202"}
    usage_series = [
        r["metric"] for r in rows if r["metric"]["__name__"] == "simwatch_sim_usage_bytes"
    ]
    assert sorted(usage_series, key=lambda m: m["iccid"]) == [
        {"__name__": "simwatch_sim_usage_bytes", "iccid": i, **sim_tags} for i in sims
    ]
    for iccid in sims:
        want = expected_usage[iccid]
        assert samples(rows, "simwatch_sim_usage_bytes", iccid=iccid) == {
            t: v[0] for t, v in want.items()
        }
        assert samples(rows, "simwatch_sim_usage_month_bytes", iccid=iccid) == {
            t: v[1] for t, v in want.items()
        }
        assert samples(rows, "simwatch_sim_usage_last_data", iccid=iccid) == {
            t: v[2] for t, v in want.items()
        }
    first = int(start + 300)
    assert expected_usage[sims[0]] == {first: (288 * BYTES, 288 * BYTES, fed[sims[0]][-1])}

    # per-SIM state changes: exactly the engine's, with the code of the new state
    for iccid in [*sims, ICCIDS[3]]:
        row = engine.state.row(iccid)
        want_codes = {
            t: int(r.state_changes.new[list(r.state_changes.rows).index(row)])
            for t, r in results.items()
            if row in r.state_changes.rows
        }
        got = samples(rows, "simwatch_sim_state_code", iccid=iccid, **sim_tags)
        if iccid == ICCIDS[3]:
            assert got == {}  # never seen, never changed: no point
        else:
            assert got == want_codes
    silent_sim = samples(rows, "simwatch_sim_state_code", iccid=sims[0])
    assert list(silent_sim.values()) == [0, 1, 2]  # ok at the first cycle, then late, silent

    # groups: every cycle, per dimension value, as the evaluation counts them
    for t, result in results.items():
        evaluation = result.evaluation
        row = engine.state.row(ICCIDS[3])
        mask = np.ones(evaluation.n, bool)
        mask[row] = False
        counts = np.bincount(evaluation.states[mask], minlength=len(STATE_NAMES))
        for dim, value in (("apn", "meters.acme"), ("partner", "26202"), ("country", "DE")):
            for s, name in enumerate(STATE_NAMES):
                got = samples(rows, f"simwatch_group_{name}", dim=dim, value=value)
                assert got[t] == counts[s], (t, dim, name)
            total = int(evaluation.counted[mask].sum())
            affected = int(evaluation.overdue[mask].sum())
            assert samples(rows, "simwatch_group_total", dim=dim, value=value)[t] == total
            assert samples(rows, "simwatch_group_affected", dim=dim, value=value)[t] == affected
            ratio = samples(rows, "simwatch_group_affected_ratio", dim=dim, value=value).get(t)
            # VictoriaMetrics keeps 12 significant digits
            assert ratio == (pytest.approx(affected / total, rel=1e-9) if total else None)
            used = sum(v[1] for v in _last_before(expected_usage, t).values())
            assert samples(rows, "simwatch_group_month_bytes", dim=dim, value=value)[t] == used
        unknown = samples(rows, "simwatch_group_never_seen", dim="apn", value="_unknown")
        assert unknown[t] == 1  # the inventory-only SIM has no APN yet

    # incidents: the vip SIM's ticket
    assert len(opened) == 1
    t_open, incident_id, affected = opened[0]
    labels = {"id": incident_id, "kind": "sim", "severity": "ticket", "event": "opened"}
    assert samples(rows, "simwatch_incident_affected", **labels) == {t_open: affected}
    assert t_open in samples(rows, "simwatch_incident_total", **labels)
    assert t_open in samples(rows, "simwatch_incident_score", **labels)
    incident_series = {
        r["metric"]["__name__"]: r["metric"]
        for r in rows
        if r["metric"]["__name__"] == "simwatch_incident_affected"
    }
    assert incident_series["simwatch_incident_affected"] == {
        "__name__": "simwatch_incident_affected",
        **labels,
    }
    assert stats.sent == sum(len(r["values"]) for r in rows if _is_point_counter(r))


def _last_before(
    expected: dict[str, dict[int, tuple[int, int, float]]], t: int
) -> dict[str, tuple[int, int, float]]:
    """Per SIM, its newest expected usage point at or before ``t``."""
    out = {}
    for iccid, points in expected.items():
        times = [p for p in points if p <= t]
        if times:
            out[iccid] = points[max(times)]
    return out


def _is_point_counter(row: Series) -> bool:
    """One series per point kind whose sample count equals the points written."""
    return row["metric"]["__name__"] in {
        "simwatch_sim_usage_bytes",
        "simwatch_sim_state_code",
        "simwatch_group_ok",
        "simwatch_incident_affected",
    }


# ---- the server away: bounded buffer, delivery after -----------------------------------------


def fleet(n: int) -> tuple[Engine, Feed]:
    engine = new_engine()
    engine.load_inventory(inventory_row(i) for i in ICCIDS[:n])
    return engine, Feed(engine)


def report_all(feed: Feed, n: int, now: float) -> None:
    for iccid in ICCIDS[:n]:
        feed.usage(iccid, now - 10)


async def test_points_wait_while_server_away_and_arrive_after(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="simwatch.sinks.influx.sink")
    engine, feed = fleet(50)
    vm = VictoriaMetrics(tmp_path / "vm")
    await asyncio.to_thread(vm.start)
    sink = InfluxSink(settings(vm.url, batch_size=40, max_buffer_points=1000), token=None)
    task = asyncio.create_task(sink.run())
    try:
        start = T0 + 60
        report_all(feed, 50, start)
        cycle(sink, engine, start)
        await until(lambda: sink.stats.buffered == 0, WAIT)
        delivered = sink.stats.sent
        assert delivered == 50 + 50 + 3  # usage, never_seen -> ok, one value per dimension

        await asyncio.to_thread(vm.stop)
        away = [start + 60 * k for k in range(1, 5)]
        produced = 0
        for now in away:
            report_all(feed, 50, now)
            result = cycle(sink, engine, now)
            produced += 50 + len(result.state_changes) + 3
            await asyncio.sleep(0.1)  # the writer tries, fails, backs off
        stats = sink.stats
        assert stats.errors >= 1
        assert not stats.up
        assert stats.last_error
        assert stats.buffered == produced
        assert stats.dropped == 0
        assert stats.sent == delivered
        assert f"influxdb sink: writes to {vm.url}" in caplog.text
        assert "retrying with backoff" in caplog.text

        await asyncio.to_thread(vm.start)  # same port, same data directory
        await until(lambda: sink.stats.buffered == 0, WAIT)
        assert stats.up
        assert stats.last_error is None
        assert stats.sent == delivered + produced
        assert "recovered after" in caplog.text
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1  # the failure is logged once, not at every retry
        rows = await asyncio.to_thread(export, vm)
        usage = samples(rows, "simwatch_sim_usage_bytes")
        for now in [start, *away]:
            per_sim = [
                r for r in rows
                if r["metric"]["__name__"] == "simwatch_sim_usage_bytes"
                and int(now) * 1000 in r["timestamps"]
            ]  # fmt: skip
            assert len(per_sim) == 50, now
            assert usage[int(now)] == BYTES
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await sink.close()
        await asyncio.to_thread(vm.stop)


async def test_beyond_the_bound_the_oldest_points_are_dropped_and_counted(
    tmp_path: Path,
) -> None:
    """Nothing listens at first: 8 cycles of 200 SIMs (1824 points) meet a 1000-point
    buffer, then a ninth cycle arrives while a batch is being retried. The oldest points
    go, the batch in flight stays, and the newest 1000 arrive once the server is up."""
    engine, feed = fleet(200)
    vm = VictoriaMetrics(tmp_path / "vm", port=free_port())  # not started yet
    sink = InfluxSink(settings(vm.url, batch_size=100, max_buffer_points=1000), token=None)
    times = [T0 + 60 * k for k in range(1, 10)]
    for now in times[:8]:  # no yield in between: the writer takes nothing yet
        report_all(feed, 200, now)
        cycle(sink, engine, now)
    # per cycle 200 usage points and one group point per dimension, plus at the first
    # cycle 200 state changes (never_seen -> ok): 8 * 203 + 200 = 1824
    assert sink.stats.buffered == 1000
    assert sink.stats.dropped == 824

    task = asyncio.create_task(sink.run())
    try:
        await until(lambda: sink.stats.errors >= 1, WAIT)  # a batch of 100 is in flight, retried
        assert sink._pending_points == 100
        report_all(feed, 200, times[8])
        cycle(sink, engine, times[8])
        assert sink.stats.buffered == 1000
        assert sink.stats.dropped == 824 + 203

        await asyncio.to_thread(vm.start)
        await until(lambda: sink.stats.buffered == 0, WAIT)
        assert sink.stats.sent == 1000
        rows = await asyncio.to_thread(export, vm)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await sink.close()
        await asyncio.to_thread(vm.stop)

    def usage_points(now: float) -> int:
        return sum(
            int(now) * 1000 in r["timestamps"]
            for r in rows
            if r["metric"]["__name__"] == "simwatch_sim_usage_bytes"
        )

    group = samples(rows, "simwatch_group_ok", dim="apn", value="meters.acme")
    # dropped: cycles 1-3 (809 points), then the oldest 15 of cycle 4's usage (824);
    # cycle 9 then pushed out the 85 left of cycle 4 not in flight, its group points
    # and 115 of cycle 5's usage
    assert [usage_points(t) for t in times] == [0, 0, 0, 100, 85, 200, 200, 200, 200]
    assert sorted(group) == [int(t) for t in times[4:]]
    assert samples(rows, "simwatch_sim_state_code") == {}  # cycle 1's changes: dropped


# ---- retries, refusals, shutdown (a scripted HTTP server) --------------------------------------


class ScriptedServer:
    """An ``/api/v2/write`` that answers the scripted statuses, then 204."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.requests: list[tuple[dict[str, str], dict[str, str], bytes]] = []
        self.port = free_port()
        self.runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append((dict(request.query), dict(request.headers), body))
        status = self.statuses.pop(0) if self.statuses else 204
        headers = {"Retry-After": "0"} if status == 503 else {}
        if status >= 400:
            return web.json_response(
                {"message": f"scripted {status}"}, status=status, headers=headers
            )
        return web.Response(status=status)

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_post("/api/v2/write", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


async def test_unavailable_is_retried_and_a_refused_batch_dropped() -> None:
    engine, feed = fleet(3)
    async with ScriptedServer([503, 204, 400]) as server:
        sink = InfluxSink(settings(server.url, org="ops", bucket="fleet"), token="s3cret")
        task = asyncio.create_task(sink.run())
        try:
            report_all(feed, 3, T0 + 60)
            cycle(sink, engine, T0 + 60)
            first = sink.stats.buffered
            await until(lambda: sink.stats.sent == first, WAIT)
            report_all(feed, 3, T0 + 120)
            cycle(sink, engine, T0 + 120)
            second = sink.stats.buffered
            await until(lambda: sink.stats.buffered == 0, WAIT)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    stats = sink.stats
    assert stats.errors == 2  # the 503 and the 400
    assert stats.sent == first  # the batch refused with 503 was written again, whole
    assert stats.dropped == second  # the batch refused with 400 cannot succeed: given up
    assert "HTTP 400" in (stats.last_error or "")
    (q1, h1, b1), (_, _, b2), (_, _, b3) = server.requests
    assert b1 == b2  # the same batch, retried
    assert b3 != b1
    assert q1 == {"org": "ops", "bucket": "fleet", "precision": "s"}
    assert h1["Authorization"] == "Token s3cret"


async def test_close_flushes_what_is_buffered() -> None:
    engine, feed = fleet(3)
    async with ScriptedServer([]) as server:
        sink = InfluxSink(settings(server.url, batch_size=2), token=None)
        report_all(feed, 3, T0 + 60)
        cycle(sink, engine, T0 + 60)
        lines = waiting_lines(sink)
        await sink.close()  # run() never ran
    assert sink.stats.sent == len(lines) == 9
    assert b"\n".join(body for _, _, body in server.requests) == "\n".join(lines).encode()
    assert "Authorization" not in server.requests[0][1]  # no token: no header
    assert sink.stats.buffered == 0


async def test_close_with_the_server_away_counts_the_rest_as_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine, feed = fleet(3)
    sink = InfluxSink(settings(f"http://127.0.0.1:{free_port()}"), token=None)
    report_all(feed, 3, T0 + 60)
    cycle(sink, engine, T0 + 60)
    waiting = sink.stats.buffered
    await sink.close()
    assert sink.stats.dropped == waiting
    assert sink.stats.buffered == 0
    assert f"{waiting} points not written at shutdown" in caplog.text


# ---- escaping ------------------------------------------------------------------------------


def test_escape_tag() -> None:
    assert escape_tag("a,b c=d") == r"a\,b\ c\=d"
    assert escape_tag("C:\\path") == "C:\\path"  # InfluxDB keeps backslashes as they are
    assert escape_tag("ends\\") == "ends"  # would escape the separator after it
    assert escape_tag("two\nlines\t") == r"two\nlines\t"
    assert escape_tag("\\") == ""  # no value: the tag is left out
    assert string_field('say "hi" \\') == r'"say \"hi\" \\"'


async def test_odd_tag_values_round_trip(tmp_path: Path) -> None:
    """APNs, customers, dimension names and values with commas, spaces, equals signs and
    backslashes come back from VictoriaMetrics exactly (a trailing backslash is cut)."""
    engine = new_engine(dims=("apn", "country", "partner", "site name"))
    odd = {
        ICCIDS[0]: ("iot apn,v=2", "ACME, Inc. a=b", "Hall 7\\B"),
        ICCIDS[1]: ("plain.apn", "Ünïcødé GmbH", "gate=3 "),
        ICCIDS[2]: ("x", "trailing\\", "w"),
    }
    engine.load_inventory(
        inventory_row(i, customer=c, extra={"site name": s}) for i, (_, c, s) in odd.items()
    )
    feed = Feed(engine)
    for iccid, (apn, _, _) in odd.items():
        feed.usage(iccid, T0 + 30, apn=apn)
    with VictoriaMetrics(tmp_path / "vm") as vm:
        sink = InfluxSink(settings(vm.url), token=None)
        cycle(sink, engine, T0 + 60)
        await sink.close()
        assert sink.stats.sent > 0
        assert sink.stats.dropped == 0
        rows = await asyncio.to_thread(export, vm)
    for iccid, (apn, customer, site) in odd.items():
        (series,) = [
            r["metric"]
            for r in rows
            if r["metric"]["__name__"] == "simwatch_sim_usage_bytes"
            and r["metric"]["iccid"] == iccid
        ]
        assert series["apn"] == apn
        assert series["customer"] == customer.rstrip("\\")
        assert series["site name"] == site
        assert samples(rows, "simwatch_group_ok", dim="site name", value=site)
        assert samples(rows, "simwatch_group_ok", dim="apn", value=apn)


# ---- the lines themselves ------------------------------------------------------------------


def test_every_line_follows_the_schema() -> None:
    engine = new_engine(dims=("apn", "country", "partner", "customer"))
    engine.load_inventory([inventory_row(ICCIDS[0], tags=frozenset({"vip"}), customer="a b")])
    engine.load_inventory([inventory_row(ICCIDS[1]), inventory_row(ICCIDS[2], status="suspended")])
    feed = Feed(engine)
    for t in np.arange(T0, T0 + 3 * DAY, 900.0).tolist():
        feed.usage(ICCIDS[0], t)
        feed.usage(ICCIDS[1], t + 1)
    sink = InfluxSink(settings("http://127.0.0.1:1", max_buffer_points=100_000), token=None)
    start = T0 + 3 * DAY
    for step in range(1, 80):
        cycle(sink, engine, start + step * 300)
    lines = waiting_lines(sink)
    dims = engine.state.dims
    kinds = {check_schema(line, dims) for line in lines}
    assert kinds == set(SCHEMA)
    states = [parse_line(line) for line in lines if line.startswith("simwatch_sim_state,")]
    for _, tags, fields, _ in states:
        code = int(fields["code"][:-1])
        assert fields["state"] == f'"{STATE_NAMES[code]}"'
        assert fields["previous"].strip('"') in STATE_NAMES
        assert tags["customer"] in {"a b", "acme"}
    (incident,) = [parse_line(line) for line in lines if line.startswith("simwatch_incident,")]
    _, tags, fields, t = incident
    assert tags["kind"] == "sim"
    assert fields["iccid"] == f'"{ICCIDS[0]}"'
    assert orjson.loads(string_value(fields["dims"])) == {"iccid": ICCIDS[0]}


def test_usage_points_count_bytes_since_the_previous_point() -> None:
    engine, feed = fleet(2)
    sink = InfluxSink(settings("http://127.0.0.1:1"), token=None)
    end_of_month = datetime.fromtimestamp(T0, UTC).replace(day=28).timestamp()
    feed.usage(ICCIDS[0], end_of_month)
    feed.usage(ICCIDS[0], end_of_month + 10)
    cycle(sink, engine, end_of_month + 60)
    feed.usage(ICCIDS[0], end_of_month + 70)
    cycle(sink, engine, end_of_month + 120)
    cycle(sink, engine, end_of_month + 180)  # nothing new: no usage point
    next_month = end_of_month + 5 * DAY
    feed.usage(ICCIDS[0], next_month)
    cycle(sink, engine, next_month + 60)
    usage = [parse_line(line) for line in waiting_lines(sink) if "_usage," in line]
    assert [(f["bytes"], f["month_bytes"], t) for _, _, f, t in usage] == [
        (f"{2 * BYTES}i", f"{2 * BYTES}i", int(end_of_month + 60)),
        (f"{BYTES}i", f"{3 * BYTES}i", int(end_of_month + 120)),
        (f"{BYTES}i", f"{BYTES}i", int(next_month + 60)),  # a new month starts from 0
    ]
    assert usage[0][2]["last_data"] == repr(end_of_month + 10)


def test_a_sink_joining_a_running_engine_does_not_count_old_bytes_as_new() -> None:
    engine, feed = fleet(2)
    feed.usage(ICCIDS[0], T0)
    engine.evaluate(T0 + 60)  # a cycle before the sink existed
    sink = InfluxSink(settings("http://127.0.0.1:1"), token=None)
    cycle(sink, engine, T0 + 120)
    assert not [line for line in waiting_lines(sink) if "_usage," in line]
    feed.usage(ICCIDS[0], T0 + 150)
    cycle(sink, engine, T0 + 180)
    (usage,) = [parse_line(line) for line in waiting_lines(sink) if "_usage," in line]
    assert usage[2]["bytes"] == f"{BYTES}i"


def test_sim_points_off_writes_groups_and_incidents_only() -> None:
    engine, feed = fleet(5)
    sink = InfluxSink(settings("http://127.0.0.1:1", sim_points=False), token=None)
    report_all(feed, 5, T0 + 30)
    cycle(sink, engine, T0 + 60)
    assert {parse_line(line)[0] for line in waiting_lines(sink)} == {"simwatch_group"}
