"""CmpSource against a local fake CMP (aiohttp on 127.0.0.1, random port)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import TYPE_CHECKING

import orjson
import pytest
from aiohttp import web
from servers import until

from simwatch.core.records import Record, RecordDecoder
from simwatch.core.timeutil import parse_rfc3339
from simwatch.shell.settings import HttpSourceSettings
from simwatch.sources.cmp import base, cisco, generic
from simwatch.sources.cmp.source import CmpError, CmpSource, parse_retry_after

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Mapping
    from pathlib import Path

    from simwatch.shell.source_contract import Batch

T0 = parse_rfc3339("2026-11-20T12:00:00Z")
TOKEN = "s3cret"
SIM = ["8988280666000000001", "8988280666000000002", "8988280666000000003"]


class FakeTime:
    def __init__(self, start: float = T0, poll_interval: float = 60.0) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self.poll_interval = poll_interval

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        self.now += delay
        # a poll-interval wait yields for real so a running source does not spin
        await asyncio.sleep(0.005 if delay == self.poll_interval else 0)


@dataclass
class Req:
    path: str
    query: dict[str, str]
    auth: str | None
    at: float


@dataclass
class FakeCmp:
    url: str = ""
    time: FakeTime | None = None
    requests: list[Req] = field(default_factory=list)
    plan: list[tuple[object, ...]] = field(default_factory=list)  # injected failures, in order
    delay: float = 0.0
    in_flight: int = 0
    max_in_flight: int = 0
    generic: list[dict[str, object]] = field(default_factory=list)
    emnify: list[dict[str, object]] = field(default_factory=list)
    once_usage: dict[str, list[dict[str, object]]] = field(default_factory=dict)
    once_events: dict[str, list[dict[str, object]]] = field(default_factory=dict)
    cisco_session: dict[str, dict[str, object]] = field(default_factory=dict)
    cisco_ctd: dict[str, int] = field(default_factory=dict)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        now = self.time.now if self.time is not None else 0.0
        self.requests.append(
            Req(request.path, dict(request.query), request.headers.get("Authorization"), now)
        )
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            action = self.plan.pop(0) if self.plan else None
            if action is not None:
                if action[0] == "status":
                    headers = action[2] if len(action) > 2 else {}
                    assert isinstance(action[1], int)
                    return web.Response(status=action[1], headers=headers)  # type: ignore[arg-type]
                if action[0] == "sleep":
                    assert isinstance(action[1], float)
                    await asyncio.sleep(action[1])
                if action[0] == "truncate":
                    body = (await self.route(request)).body
                    assert isinstance(body, bytes)
                    return web.Response(
                        body=body[: len(body) // 2], content_type="application/json"
                    )
            return await self.route(request)
        finally:
            self.in_flight -= 1

    async def route(self, request: web.Request) -> web.Response:  # noqa: PLR0911 - one route each
        path, q = request.path, request.query
        if path == "/records":
            since = int(q.get("since", "0"))
            limit = int(q["limit"])
            page = self.generic[since : since + limit]
            return _json({"records": page, "next": str(since + len(page))})
        if path == "/api/v1/event":
            return _emnify_page(self.emnify, q)
        if m := re.fullmatch(r"/management-api/v([12])/sims/(\d+)/(usage|events)", path):
            version, iccid, what = m.groups()
            if iccid not in self.once_usage:
                return web.Response(status=404)
            if what == "usage":
                return _json({"stats": self.once_usage[iccid]})
            if version == "1":
                return web.Response(status=404)
            paged = _paged(self.once_events.get(iccid, []), int(q["page"]), int(q["pageSize"]))
            assert isinstance(paged.body, bytes)
            return _json(orjson.loads(paged.body))  # v2: a JSON array, no paging headers
        if m := re.fullmatch(r"/rws/api/v1/devices/(\d+)/(sessionInfo|ctdUsages)", path):
            iccid, what = m.groups()
            if what == "sessionInfo":
                return _json({"iccid": iccid, **self.cisco_session[iccid]})
            return _json({"iccid": iccid, "ctdDataUsage": self.cisco_ctd[iccid]})
        return web.Response(status=404)


def _json(obj: object, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(obj), content_type="application/json", headers=headers)


def _paged(items: list[dict[str, object]], page: int, size: int) -> web.Response:
    newest_first = sorted(items, key=lambda it: -int(str(it["id"])))
    pages = max(1, math.ceil(len(items) / size))
    headers = {
        "X-Current-Page": str(page),
        "X-Total-Pages": str(pages),
        "X-Count-Per-Page": str(size),
        "X-Total-Count": str(len(items)),
    }
    return _json(newest_first[(page - 1) * size : page * size], headers)


def _emnify_page(items: list[dict[str, object]], q: Mapping[str, str]) -> web.Response:
    """``/api/v1/event``: ``q`` type/from/until, ``sort=id``, a page past the last is the last."""
    filters = dict(part.split(":", 1) for part in q["q"].split(","))
    types = filters["type"].split("|")
    start, end = parse_rfc3339(filters["from"]), parse_rfc3339(filters["until"])
    chosen = [
        it
        for it in items
        if str(base.obj(it["event_type"]).get("id")) in types
        and start <= parse_rfc3339(str(base.normalize_time(it["timestamp"]))) <= end
    ]
    chosen.sort(key=lambda it: int(str(it["id"])))
    size = int(q["per_page"])
    pages = max(1, math.ceil(len(chosen) / size))
    page = min(int(q["page"]), pages)
    headers = {"X-Current-Page": str(page), "X-Total-Pages": str(pages)}
    return _json(chosen[(page - 1) * size : page * size], headers)


@pytest.fixture
async def fake() -> AsyncIterator[FakeCmp]:
    cmp = FakeCmp()
    app = web.Application()
    app.router.add_get("/{tail:.*}", cmp.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    cmp.url = f"http://{host}:{port}"
    yield cmp
    await runner.cleanup()


def make(
    fake: FakeCmp,
    adapter: str,
    tmp_path: Path | None = None,
    ftime: FakeTime | None = None,
    **kw: object,
) -> CmpSource:
    ftime = ftime or FakeTime()
    fake.time = ftime
    settings = HttpSourceSettings.model_validate(
        {
            "name": f"http:{adapter}",
            "adapter": adapter,
            "base_url": fake.url,
            "poll_interval_s": 60.0,
            "rate_limit_per_s": 1000.0,
            "cursor_file": tmp_path / "cursor.json" if tmp_path else None,
            **kw,
        }
    )
    return CmpSource(settings, token=TOKEN, clock=ftime.clock, sleep=ftime.sleep)


async def apply_all(sink: asyncio.Queue[Batch], *, commit: bool = True) -> list[Record]:
    """What the daemon's ingest task does: decode every object, then commit."""
    decoder = RecordDecoder()
    out: list[Record] = []
    while not sink.empty():
        batch = sink.get_nowait()
        for obj in batch.objects:
            rec = decoder.decode_obj(obj, T0 + 3600)
            assert isinstance(rec, Record), rec
            out.append(rec)
        if commit and batch.on_applied is not None:
            await batch.on_applied()
    return out


async def run_until(
    source: CmpSource, sink: asyncio.Queue[Batch], done: Callable[[], bool]
) -> None:
    """Run ``source`` until ``done()`` holds (at most 10 s), then cancel it."""
    task = asyncio.create_task(source.run(sink))
    try:
        await until(done, 10.0, "the source's condition", interval_s=0.005)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def gen_record(i: int) -> dict[str, object]:
    return {
        "kind": "usage",
        "record_id": f"u-{i}",
        "iccid": SIM[i % 3],
        "start": "2026-11-20T10:00:00Z",
        "end": f"2026-11-20T10:{i:02d}:00Z",
        "bytes_up": 100 + i,
        "bytes_down": 7,
    }


def em_event(
    i: int, type_id: int, iccid: str = SIM[0], *, at: float | None = None, **fields: object
) -> dict[str, object]:
    """An event in the documented emnify shape (PLATFORMS.md 1.3), ``i`` minutes into the hour
    before T0 unless ``at`` is given."""
    when = at if at is not None else T0 - 3600 + 60 * i
    return {
        "id": i,
        "timestamp": datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000"),
        "event_type": {"id": type_id, "description": f"type {type_id}"},
        "event_source": {"id": 0, "description": "Network"},
        "event_severity": {"id": 0, "description": "Info"},
        "description": f"event #{i}",
        "sim": {"iccid": iccid},
        **fields,
    }


PDP = {"apn": "meters.acme", "mcc": "262", "mnc": "02", "rat_type": 6, "pdp_context_id": 4711}


def emnify_feed() -> list[dict[str, object]]:
    return [
        em_event(1, 1, detail={"country": {"mcc": "262"}, "mnc": [{"mnc": "01"}]}),
        em_event(2, 3, detail={"session_id": "sess-a", "pdp_context": PDP}),
        em_event(3, 8),  # SIM activation: not asked for (q=type:...)
        em_event(
            4,
            5,
            detail={
                "session_id": "sess-a",
                "pdp_context": PDP,
                "volume": {"tx": 0.0012, "rx": 0.00034},
            },
        ),
        em_event(
            5,
            3,
            SIM[1],
            event_source={"id": 1},
            event_severity={"id": 1},
            description="PDP Context Request rejected, because SIM is not activated.",
        ),
        em_event(6, 19, SIM[1], event_source={"id": 1}, event_severity={"id": 1}),
    ]


# ------------------------------------------------------------------ adapters through the poller


async def test_generic_follows_pages_with_auth(fake: FakeCmp, tmp_path: Path) -> None:
    fake.generic = [gen_record(i) for i in range(7)]
    src = make(fake, "generic", tmp_path, page_size=3)
    sink: asyncio.Queue[Batch] = asyncio.Queue()
    await src.poll_once(sink)
    recs = await apply_all(sink)
    assert [r.record_id for r in recs] == [f"u-{i}" for i in range(7)]
    assert [r.get("since") for r in (q.query for q in fake.requests)] == [None, "3", "6"]
    assert all(q.auth == f"Bearer {TOKEN}" for q in fake.requests)
    assert src.stats.errors == 0
    assert src.stats.last_success == T0
    assert orjson.loads((tmp_path / "cursor.json").read_bytes())["cursor"] == "7"
    # nothing new: one request, nothing handed over
    await src.poll_once(sink)
    assert sink.empty()
    assert fake.requests[-1].query["since"] == "7"


async def test_emnify_events_map_and_resume(fake: FakeCmp, tmp_path: Path) -> None:
    fake.emnify = emnify_feed()
    src = make(fake, "emnify", tmp_path, page_size=3)
    sink: asyncio.Queue[Batch] = asyncio.Queue()
    await src.poll_once(sink)
    # two queries (at most 6 types each): 4 events in 2 pages, then 1 event
    assert [q.query["page"] for q in fake.requests] == ["1", "2", "1"]
    recs = {r.record_id: r for r in await apply_all(sink)}
    assert sorted(recs) == [f"emnify:e:{i}" for i in (1, 2, 4, 5, 6)]
    assert src.skipped == 0
    loc = recs["emnify:e:1"]
    assert (loc.kind, loc.event_type, loc.partner) == ("event", "location_update", "26201")
    started, ended = recs["emnify:e:2"], recs["emnify:e:4"]
    assert (started.status, started.session_id, started.apn, started.rat) == (
        "started",
        "sess-a",
        "meters.acme",
        "LTE",
    )
    assert (ended.status, ended.session_id, ended.bytes_up, ended.bytes_down) == (
        "ended",
        "sess-a",
        1200,
        340,
    )
    assert (recs["emnify:e:5"].event_type, recs["emnify:e:5"].cause) == (
        "pdp_reject",
        "PDP Context Request rejected, because SIM is not activated.",
    )
    assert recs["emnify:e:6"].event_type == "quota_exhausted"
    # a minute later, two new events: one request per query, only the new events
    assert fake.time is not None
    fake.time.now += 60
    fake.emnify += [em_event(8, 2, at=T0 + 30), em_event(9, 15, at=T0 + 40)]
    fake.requests.clear()
    await src.poll_once(sink)
    assert len(fake.requests) == 2
    assert [r.record_id for r in await apply_all(sink)] == ["emnify:e:8", "emnify:e:9"]


async def test_1nce_usage_deltas_and_events(fake: FakeCmp, tmp_path: Path) -> None:
    day: dict[str, object] = {
        "date": "2026-11-20",
        "data": {"volume": 0.5, "volume_tx": 0.3, "volume_rx": 0.2},
    }
    fake.once_usage = {SIM[0]: [day], SIM[1]: []}
    fake.once_events = {SIM[0]: [em_event(i, 1) for i in range(1, 6)]}
    src = make(fake, "1nce", tmp_path, page_size=2, iccids=SIM[:2])
    sink: asyncio.Queue[Batch] = asyncio.Queue()
    await src.poll_once(sink)
    recs = await apply_all(sink)
    usage = [r for r in recs if r.kind == "usage"]
    assert [(u.iccid, u.bytes_up, u.bytes_down) for u in usage] == [(SIM[0], 300_000, 200_000)]
    assert usage[0].ts == T0  # today's window ends now, not at midnight (future)
    assert sorted(r.record_id for r in recs if r.kind == "event") == [
        f"1nce:e:{i}" for i in range(1, 6)
    ]
    usage_q = next(q for q in fake.requests if q.path.endswith("/usage"))
    assert usage_q.query == {"start_dt": "2026-11-19", "end_dt": "2026-11-20"}
    # the day's totals grow: only the increase is new; an unchanged poll gives nothing
    day["data"] = {"volume": 0.9, "volume_tx": 0.6, "volume_rx": 0.3}
    await src.poll_once(sink)
    recs = await apply_all(sink)
    assert [(r.bytes_up, r.bytes_down) for r in recs] == [(300_000, 100_000)]
    await src.poll_once(sink)
    assert await apply_all(sink) == []


async def test_cisco_sessions_and_usage_delta(fake: FakeCmp, tmp_path: Path) -> None:
    fake.cisco_session = {
        SIM[0]: {"ipAddress": "10.0.0.1", "dateSessionStarted": "2026-11-20 09:00:00.000+0000"},
        SIM[1]: {"ipAddress": None, "dateSessionStarted": None, "dateSessionEnded": None},
    }
    fake.cisco_ctd = {SIM[0]: 1000, SIM[1]: 50}
    ftime = FakeTime()
    src = make(fake, "cisco", tmp_path, ftime, iccids=SIM[:2])
    sink: asyncio.Queue[Batch] = asyncio.Queue()
    await src.poll_once(sink)
    recs = await apply_all(sink)
    assert [(r.iccid, r.kind, r.status) for r in recs] == [(SIM[0], "session", "started")]
    ftime.now += 300
    fake.cisco_session[SIM[0]]["dateSessionEnded"] = "2026-11-20T11:00:00Z"
    fake.cisco_ctd[SIM[0]] = 4000
    await src.poll_once(sink)
    recs = await apply_all(sink)
    assert [(r.kind, r.status, r.bytes_up + r.bytes_down) for r in recs] == [
        ("session", "ended", 0),
        ("usage", None, 3000),
    ]
    assert recs[1].start == T0
    assert recs[1].ts == T0 + 300
    assert recs[0].session_id == f"{SIM[0]}:2026-11-20T09:00:00Z"


# ------------------------------------------------------------------ failures


async def test_429_retry_after_seconds_and_date(fake: FakeCmp) -> None:
    ftime = FakeTime()
    http_date = format_datetime(datetime.fromtimestamp(T0 + 30, tz=UTC), usegmt=True)
    fake.plan = [("status", 429, {"Retry-After": "7"}), ("status", 429, {"Retry-After": http_date})]
    fake.generic = [gen_record(1)]
    src = make(fake, "generic", ftime=ftime)
    sink: asyncio.Queue[Batch] = asyncio.Queue()
    await src.poll_once(sink)
    assert ftime.sleeps == [7.0, 23.0]  # the date is 30 s after T0; 7 s were already waited
    assert len(fake.requests) == 3
    assert [r.record_id for r in await apply_all(sink)] == ["u-1"]
    assert src.stats.errors == 2
    assert src.stats.last_error is None


def test_parse_retry_after() -> None:
    assert parse_retry_after("120", T0) == 120.0
    assert parse_retry_after("Fri, 20 Nov 2026 12:01:00 GMT", T0) == 60.0
    assert parse_retry_after("Fri, 20 Nov 2026 11:00:00 GMT", T0) == 0.0
    assert parse_retry_after("999999", T0) == 3600.0
    assert parse_retry_after("soon", T0) is None
    assert parse_retry_after(None, T0) is None


async def test_5xx_backs_off_then_recovers(fake: FakeCmp, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="simwatch.sources.cmp.source")
    fake.plan = [("status", 500), ("status", 502), ("status", 503)]
    fake.generic = [gen_record(1)]
    ftime = FakeTime()
    src = make(fake, "generic", ftime=ftime)
    src._rng.seed(1)
    sink: asyncio.Queue[Batch] = asyncio.Queue()
    connected: list[bool] = []

    def recovered() -> bool:
        connected.append(src.stats.connected)
        return src.stats.last_success is not None

    await run_until(src, sink, recovered)
    backoffs = ftime.sleeps[:3]
    for n, delay in enumerate(backoffs):
        assert 0.5 * 2**n <= delay <= 2**n  # jittered exponential: 1, 2, 4 s before jitter
    assert len(fake.requests) == 4
    assert src.stats.errors == 3
    assert src.stats.last_error is None
    assert False in connected  # while failing
    assert connected[-1] is True  # once recovered
    assert not src.stats.connected  # the source stopped
    # logged once when the failure started and once on recovery
    assert [r.levelname for r in caplog.records if r.name == "simwatch.sources.cmp.source"] == [
        "WARNING",
        "INFO",
    ]
    assert [r.record_id for r in await apply_all(sink)] == ["u-1"]


def test_backoff_is_capped(fake: FakeCmp) -> None:
    src = make(fake, "generic")
    assert all(30.0 <= src.backoff_delay(n) <= 60.0 for n in (7, 20, 1000))


async def test_timeout_is_an_error_then_retried(fake: FakeCmp) -> None:
    fake.plan = [("sleep", 0.6)]
    fake.generic = [gen_record(2)]
    src = make(fake, "generic", timeout_s=0.15)
    sink: asyncio.Queue[Batch] = asyncio.Queue()
    seen: list[str | None] = []
    with pytest.raises(CmpError, match="timed out"):
        await src.poll_once(sink)
    seen.append(src.stats.last_error)
    await src.poll_once(sink)
    assert seen == ["GET /records timed out"]
    assert src.stats.errors == 1
    assert src.stats.last_error is None
    assert [r.record_id for r in await apply_all(sink)] == ["u-2"]


async def test_connection_refused_is_an_error(fake: FakeCmp) -> None:
    src = make(fake, "generic")
    src.settings = src.settings.model_copy(update={"base_url": "http://127.0.0.1:9"})
    with pytest.raises(CmpError, match="failed"):
        await src.poll_once(asyncio.Queue())
    assert src.stats.errors == 1
    assert not src.stats.connected


async def test_truncated_page_does_not_advance_cursor(fake: FakeCmp, tmp_path: Path) -> None:
    fake.generic = [gen_record(i) for i in range(6)]
    fake.plan = [(None,), ("truncate",)]  # the second request (page 2) is cut in half
    src = make(fake, "generic", tmp_path, page_size=3)
    sink: asyncio.Queue[Batch] = asyncio.Queue()
    with pytest.raises(CmpError, match="invalid JSON"):
        await src.poll_once(sink)
    assert src.stats.errors == 1
    first = await apply_all(sink)
    assert orjson.loads((tmp_path / "cursor.json").read_bytes())["cursor"] == "3"
    await src.poll_once(sink)
    second = await apply_all(sink)
    assert [q.query.get("since") for q in fake.requests] == [None, "3", "3", "6"]
    ids = [r.record_id for r in first + second]
    assert ids == [f"u-{i}" for i in range(6)]  # each once: none lost, none repeated


async def test_4xx_on_one_sim_skips_it(fake: FakeCmp) -> None:
    fake.once_usage = {SIM[0]: [{"date": "2026-11-20", "data": {"volume_tx": 1, "volume_rx": 0}}]}
    src = make(fake, "1nce", iccids=SIM[:2])  # SIM[1] is unknown: 404
    sink: asyncio.Queue[Batch] = asyncio.Queue()
    await src.poll_once(sink)
    assert [r.iccid for r in await apply_all(sink)] == [SIM[0]]
    assert src.stats.errors == 1


# ------------------------------------------------------------------ cursor persistence


async def test_cursor_survives_restart(fake: FakeCmp, tmp_path: Path) -> None:
    fake.emnify = emnify_feed()
    sink: asyncio.Queue[Batch] = asyncio.Queue()
    src = make(fake, "emnify", tmp_path, page_size=2)
    await src.poll_once(sink)
    first = await apply_all(sink)
    # new events arrive; the next poll hands them over but they are never applied (crash)
    assert fake.time is not None
    fake.time.now = T0 + 60
    fake.emnify += [em_event(8, 1, at=T0 + 30), em_event(9, 1, at=T0 + 35)]
    await src.poll_once(sink)
    lost: list[Mapping[str, object]] = []
    while not sink.empty():
        lost += sink.get_nowait().objects
    assert [o["record_id"] for o in lost] == ["emnify:e:8", "emnify:e:9"]
    # restart: resumes from the applied cursor (T0), so 8 and 9 come again, 1-6 do not
    fake.emnify.append(em_event(10, 1, at=T0 + 40))
    again = make(fake, "emnify", tmp_path, FakeTime(T0 + 60), page_size=2)
    await again.poll_once(sink)
    second = await apply_all(sink)
    assert [r.record_id for r in second] == [f"emnify:e:{i}" for i in (8, 9, 10)]
    assert len({r.record_id for r in first + second}) == len(first) + len(second) == 8
    # a third instance re-reads only the overlap before its cursor: the same record ids
    third = make(fake, "emnify", tmp_path, FakeTime(T0 + 120), page_size=2)
    await third.poll_once(sink)
    assert {r.record_id for r in await apply_all(sink)} <= {r.record_id for r in second}


async def test_per_sim_marks_survive_restart(fake: FakeCmp, tmp_path: Path) -> None:
    fake.cisco_session = {s: {"dateSessionStarted": "2026-11-20T09:00:00Z"} for s in SIM}
    fake.cisco_ctd = dict.fromkeys(SIM, 10)
    sink: asyncio.Queue[Batch] = asyncio.Queue()
    await make(fake, "cisco", tmp_path, iccids=SIM).poll_once(sink)
    assert len(await apply_all(sink)) == 3
    fake.cisco_ctd[SIM[2]] = 25
    await make(fake, "cisco", tmp_path, iccids=SIM).poll_once(sink)
    recs = await apply_all(sink)
    assert [(r.kind, r.iccid, r.bytes_down) for r in recs] == [("usage", SIM[2], 15)]


async def test_corrupt_cursor_file_starts_afresh(fake: FakeCmp, tmp_path: Path) -> None:
    (tmp_path / "cursor.json").write_bytes(b"{not json")
    fake.generic = [gen_record(1)]
    sink: asyncio.Queue[Batch] = asyncio.Queue()
    await make(fake, "generic", tmp_path).poll_once(sink)
    assert [r.record_id for r in await apply_all(sink)] == ["u-1"]


# ------------------------------------------------------------------ limits


async def test_concurrency_never_above_limit(fake: FakeCmp) -> None:
    sims = [f"89882806660000001{i:02d}" for i in range(12)]
    fake.once_usage = {s: [] for s in sims}
    fake.delay = 0.02
    src = make(fake, "1nce", iccids=sims, max_concurrency=3)
    await src.poll_once(asyncio.Queue())
    assert len(fake.requests) == 24
    assert fake.max_in_flight == 3


async def test_rate_limit_respected(fake: FakeCmp) -> None:
    sims = [f"89882806660000002{i:02d}" for i in range(5)]
    fake.cisco_session = {s: {} for s in sims}
    fake.cisco_ctd = dict.fromkeys(sims, 0)
    ftime = FakeTime()
    src = make(fake, "cisco", ftime=ftime, iccids=sims, rate_limit_per_s=2.0, max_concurrency=4)
    bucket = src._bucket
    acquire = bucket.acquire
    granted: list[float] = []

    async def record() -> None:  # when each request was let through, on the fake clock
        await acquire()
        granted.append(ftime.now)

    bucket.acquire = record  # type: ignore[method-assign]
    await src.poll_once(asyncio.Queue())
    assert len(fake.requests) == 10
    times = [t - T0 for t in granted]
    assert len(times) == 10
    assert times[-1] >= (10 - 2) / 2.0 - 1e-6  # burst of 2, then 2 per second
    for i in range(len(times)):
        for j in range(i + 1, len(times)):
            assert j - i + 1 <= 2 + 2.0 * (times[j] - times[i]) + 1e-6


# ------------------------------------------------------------------ adapters, pure


def test_adapter_units_and_times() -> None:
    assert base.mb_to_bytes(1.5) == 1_500_000
    assert base.mb_to_bytes("0.000001") == 1
    assert base.mb_to_bytes(-1) is None
    assert base.normalize_time("2016-06-27 18:49:47.513+0000") == "2016-06-27T18:49:48Z"
    assert base.normalize_time("2026-11-20T10:00:00+01:00") == "2026-11-20T09:00:00Z"
    assert base.normalize_time(1_790_000_000_000) == base.normalize_time(1_790_000_000)
    assert base.normalize_time("yesterday") is None
    with pytest.raises(base.AdapterError):
        generic.generic_page([1, 2])
    with pytest.raises(base.AdapterError):
        cisco.cisco_usage(SIM[0], {"ctdDataUsage": -5}, None, T0)


def test_cisco_usage_cycle_reset() -> None:
    prev = cisco.CiscoUsageMark(5000, T0)
    recs, mark = cisco.cisco_usage(SIM[0], {"ctdDataUsage": 700}, prev, T0 + 60)
    assert [r["bytes_down"] for r in recs] == [700]
    assert mark == cisco.CiscoUsageMark(700, T0 + 60)
    again, _ = cisco.cisco_usage(SIM[0], {"ctdDataUsage": 700}, prev, T0 + 90)
    assert again[0]["record_id"] == recs[0]["record_id"]  # a re-delivery dedups
