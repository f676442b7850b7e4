"""emnify through CmpSource against a fake emnify (PLATFORMS.md 1), from its documented examples."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest
from cmp_fakes import FakeTime, drain, example, serve
from cmp_fakes_platforms import FakeEmnify, epoch
from fleet import ICCIDS, Feed, new_engine

from simwatch.core.records import Record, RecordDecoder
from simwatch.core.timeutil import format_rfc3339, parse_rfc3339
from simwatch.shell.settings import HttpSourceSettings
from simwatch.sources.cmp import emnify
from simwatch.sources.cmp.source import CmpSource

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from simwatch.shell.source_contract import Batch

TOKEN = "s3cret"


@pytest.fixture
async def fake() -> AsyncIterator[FakeEmnify]:
    platform = FakeEmnify(token=TOKEN)
    async with serve(platform.app()) as url:
        platform.url = url  # type: ignore[attr-defined]
        yield platform


def make(fake: FakeEmnify, ftime: FakeTime, **kw: object) -> CmpSource:
    settings = HttpSourceSettings.model_validate(
        {
            "name": "http:emnify",
            "adapter": "emnify",
            "base_url": fake.url,  # type: ignore[attr-defined]
            "rate_limit_per_s": 1000.0,
            **kw,
        }
    )
    return CmpSource(settings, token=TOKEN, clock=ftime.clock, sleep=ftime.sleep)


# the exact FORMATS.md record each documented event example gives (None: nothing)
EXPECTED: dict[str, dict[str, object] | None] = {
    "emnify-event-create-pdp-context-accepted.json": {
        "kind": "session",
        "record_id": "emnify:e:31877325941",
        "iccid": "5746435358418205328",
        "ts": "2021-10-27T08:38:02Z",
        "session_id": "d12c574f-e219-45a4-8836-d17a50f66fb1",  # detail.session_id
        "status": "started",
        "apn": "em",
        "mcc": "262",
        "mnc": "02",
        "rat": "2G",
    },
    "emnify-event-create-pdp-context-rejected-data-service-disabled.json": {
        "kind": "event",
        "record_id": "emnify:e:2836707022",
        "iccid": "41595256071723032296",
        "ts": "2021-10-24T12:43:51Z",
        "type": "pdp_reject",
        "cause": "PDP Context Request rejected, because data service disabled in service profile.",
    },
    "emnify-event-create-pdp-context-rejected-no-quota.json": {
        "kind": "event",
        "record_id": "emnify:e:7745432124",
        "iccid": "6300267938152764468",
        "ts": "2021-10-27T08:55:59Z",
        "type": "quota_exhausted",
        "cause": "PDP Context Request rejected, because endpoint has no quota.",
    },
    "emnify-event-create-pdp-context-rejected-quota-exhausted.json": {
        "kind": "event",
        "record_id": "emnify:e:7598008306",
        "iccid": "91447762462599458698",
        "ts": "2021-10-27T09:12:27Z",
        "type": "quota_exhausted",
        "cause": "PDP Context Request rejected, because quota volume of endpoint is exhausted "
        "and defined action is to block data traffic.",
    },
    "emnify-event-create-pdp-context-rejected-sim-not-activated.json": {
        "kind": "event",
        "record_id": "emnify:e:117138486882",
        "iccid": "87901100765269508687",
        "ts": "2021-10-27T12:33:17Z",
        "type": "pdp_reject",
        "cause": "PDP Context Request rejected, because SIM is not activated.",
    },
    "emnify-event-delete-pdp-context.json": {
        "kind": "session",
        "record_id": "emnify:e:1906081382592",
        "iccid": "9335742231782809262",
        "ts": "2021-10-27T08:40:10Z",
        "session_id": "2a4ff039-fbb9-4eaa-b74c-2f0eaafaf624",
        "status": "ended",
        "mcc": "262",
        "mnc": "02",
        "rat": "2G",
        "bytes_up": 223_173,  # tx 0.223173 MB
        "bytes_down": 418_811,  # rx 0.418811 MB
    },
    "emnify-event-update-location.json": {
        "kind": "event",
        "record_id": "emnify:e:176777623",
        "iccid": "3590376990354243198",
        "ts": "2017-10-26T07:28:00Z",
        "type": "location_update",
        "mcc": "262",
        "mnc": "02",
    },
    "emnify-event-update-gprs-location.json": {
        "kind": "event",
        "record_id": "emnify:e:158057547412841",
        "iccid": "14610948273291945919",
        "ts": "2021-10-24T12:44:10Z",
        "type": "location_update",
        "mcc": "262",
        "mnc": "02",
    },
    "emnify-event-purge-location.json": {
        "kind": "event",
        "record_id": "emnify:e:5993503928",
        "iccid": "71247175489021804405",
        "ts": "2021-10-27T10:49:24Z",
        "type": "purge",
    },
    "emnify-event-purge-gprs-location.json": {
        "kind": "event",
        "record_id": "emnify:e:311518630325",
        "iccid": "5061064643679211967",
        "ts": "2021-10-24T12:43:51Z",
        "type": "purge",
    },
    "emnify-event-generic-throttling-disconnect.json": {
        "kind": "event",
        "record_id": "emnify:e:543839962673704",
        "iccid": "7772229804214642989",
        "ts": "2021-10-27T11:59:29Z",
        "type": "throttled",
        "cause": "Disconnecting data access for endpoint to apply throttling action.",
    },
    "emnify-event-generic-quota-updated-disconnect.json": {
        "kind": "event",
        "record_id": "emnify:e:843273935666500",
        "iccid": "6820705229564377698",
        "ts": "2021-10-27T12:38:44Z",
        "type": "throttled",
        "cause": "Disconnecting data access for endpoint, because quota has been updated.",
    },
    "emnify-event-endpoint-blocked.json": {
        "kind": "event",
        "record_id": "emnify:e:155295222517",
        "iccid": "1919136237414891188",
        "ts": "2021-10-27T14:44:11Z",
        "type": "blocked",
        "cause": "Blocking data access for endpoint, traffic limit exceeded.",
    },
    "emnify-event-quota-used-up.json": {
        "kind": "event",
        "record_id": "emnify:e:1071715568978",
        "iccid": "6971715153842702145",
        "ts": "2021-10-27T09:06:50Z",
        "type": "quota_exhausted",
        "cause": "Quota volume is completely used up and data access denied for endpoint.",
    },
    # no SIM: an organisation block (sim: null) is not a per-SIM record
    "emnify-event-organisation-blocked-prepaid-balance.json": None,
    "emnify-event-quota-threshold-reached.json": None,  # a warning, data still flows
    "emnify-event-user-authentication-failed.json": None,  # a portal user, not a SIM
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_each_documented_event_polled(fake: FakeEmnify, name: str) -> None:
    event = example(name)
    fake.events = [event]
    ftime = FakeTime(epoch(event["timestamp"]) + 60)
    src = make(fake, ftime)
    sink: asyncio.Queue[Batch] = asyncio.Queue()
    await src.poll_once(sink)
    got = await drain(sink)
    want = EXPECTED[name]
    assert got == ([want] if want is not None else [])
    assert emnify.records_from_event(event) == got  # the pure mapping the push path uses
    decoder = RecordDecoder()  # and the core accepts every record (it keeps 2020 onwards)
    kept = [r for r in got if str(r["ts"]) >= "2020"]
    assert all(isinstance(decoder.decode_obj(r, ftime.now), Record) for r in kept)
    # only the mapped types are asked for: user authentication failed (6) is never served
    if name == "emnify-event-user-authentication-failed.json":
        assert src.skipped == 0


async def test_query_asks_only_mapped_types_within_limits(fake: FakeEmnify) -> None:
    now = parse_rfc3339("2026-11-20T12:00:00Z")
    src = make(fake, FakeTime(now))
    await src.poll_once(asyncio.Queue())
    types: list[str] = []
    for req in fake.gets("/api/v1/event"):
        filters = dict(part.split(":", 1) for part in req.query["q"].split(","))
        values = filters["type"].split("|")
        assert len(values) <= 6
        types += values
        # the first poll is bounded: initial_lookback_s (1 h) back
        assert (filters["from"], filters["until"]) == (
            "2026-11-20T11:00:00Z",
            "2026-11-20T12:00:00Z",
        )
        assert req.query["sort"] == "id"
    assert sorted(map(int, types)) == sorted(emnify.EVENT_TYPE_IDS)
    assert "6" not in types  # user authentication failed is not a SIM's event


def _copies(base: dict[str, object], start: float, n: int) -> list[dict[str, object]]:
    """``n`` copies of a documented event, ids 1..n, a minute apart from ``start``."""
    out = []
    for i in range(1, n + 1):
        event = dict(base, id=i, timestamp=format_rfc3339(start + 60 * i))
        out.append(event)
    return out


async def test_paging_throttling_and_no_duplicates(fake: FakeEmnify) -> None:
    now = parse_rfc3339("2026-11-20T12:00:00Z")
    fake.events = _copies(example("emnify-event-purge-location.json"), now - 1800, 7)
    fake.max_per_page = 3  # asked for 500: the platform caps the page
    fake.throttle = 1
    ftime = FakeTime(now)
    src = make(fake, ftime)
    sink: asyncio.Queue[Batch] = asyncio.Queue()
    await src.poll_once(sink)
    first = await drain(sink)
    assert [r["record_id"] for r in first] == [f"emnify:e:{i}" for i in range(1, 8)]
    assert 2.0 in ftime.sleeps  # the 429's Retry-After was waited
    asked = [(r.query["q"].split(",")[0], r.query["page"]) for r in fake.gets("/api/v1/event")]
    assert asked == [
        ("type:0|1|2|3|5|11", "1"),  # answered 429, asked again after Retry-After
        ("type:0|1|2|3|5|11", "1"),  # no such events: one empty page
        ("type:12|15|16|19", "1"),
        ("type:12|15|16|19", "2"),
        ("type:12|15|16|19", "3"),  # the last page (x-total-pages): no page past it
    ]
    # a new event, then a re-poll: only the new one, nothing twice
    ftime.now += 60
    fake.events += _copies(example("emnify-event-purge-location.json"), now, 1)
    fake.events[-1]["id"] = 8
    await src.poll_once(sink)
    assert [r["record_id"] for r in await drain(sink)] == ["emnify:e:8"]
    ftime.now += 60
    await src.poll_once(sink)
    assert await drain(sink) == []


async def test_page_past_the_last_is_detected(fake: FakeEmnify) -> None:
    """Without paging headers, the last page answered again ends the read."""
    now = parse_rfc3339("2026-11-20T12:00:00Z")
    fake.events = _copies(example("emnify-event-purge-location.json"), now - 1800, 6)
    fake.max_per_page = 3
    fake.paging_headers = False
    src = make(fake, FakeTime(now), page_size=3)
    sink: asyncio.Queue[Batch] = asyncio.Queue()
    await src.poll_once(sink)
    ids = [r["record_id"] for r in await drain(sink)]
    assert ids == [f"emnify:e:{i}" for i in range(1, 7)]
    pages = [r.query["page"] for r in fake.gets("/api/v1/event") if "|15|" in r.query["q"]]
    assert pages == ["1", "2", "3"]  # page 3 repeated page 2: stop


def test_usage_records_data_and_sms() -> None:
    data = example("emnify-ds-usage-data.json")[0]
    assert emnify.records_from_usage(data) == [
        {
            "kind": "usage",
            "record_id": "emnify:u:333333333333333",
            "iccid": "89883030000080139311",
            "start": "2022-04-26T11:53:43Z",
            "end": "2024-02-15T14:56:15Z",
            "bytes_up": 47_085,  # tx 0.047085 MB
            "bytes_down": 172_848,  # rx 0.172848 MB
            "mcc": "262",
            "mnc": "07",
        }
    ]
    assert emnify.records_from_usage(example("emnify-ds-usage-sms.json")[0]) == []  # never data


def test_recorded_event_page_maps_nothing() -> None:
    """SIM activation (8) and SIM Assigned (51) from the recorded page are not SIM signals."""
    assert [
        emnify.records_from_event(e) for e in example("emnify-endpoint-event-list-page.json")
    ] == [
        [],
        [],
    ]


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("emnify-event-create-pdp-context-rejected-no-quota.json", "quota_exhausted"),
        ("emnify-event-create-pdp-context-rejected-quota-exhausted.json", "quota_exhausted"),
        ("emnify-event-quota-used-up.json", "quota_exhausted"),
        ("emnify-event-endpoint-blocked.json", "blocked"),
        ("emnify-event-create-pdp-context-rejected-sim-not-activated.json", "pdp_reject"),
    ],
)
def test_rejects_are_diagnosed(name: str, code: str) -> None:
    """A SIM refused data for lack of quota is diagnosed as such (not as a silent SIM only)."""
    engine = new_engine(ICCIDS)
    feed = Feed(engine)
    t0 = parse_rfc3339("2026-11-01T00:00:00Z")
    t = t0
    while t < t0 + 3 * 86_400:
        feed.usage(ICCIDS[0], t)
        t += 900.0
    [record] = emnify.records_from_event(example(name))
    record["iccid"], record["ts"] = ICCIDS[0], format_rfc3339(t)
    feed.send(record, t)
    now = t + 4 * 3600
    engine.evaluate(now)
    findings = engine.diagnose(ICCIDS[0], now)
    assert findings is not None
    finding = next(f for f in findings if f.code == code)
    assert str(record["cause"]) in finding.hint  # the platform's words, kept
