"""1NCE through CmpSource against a fake 1NCE (PLATFORMS.md 2), from its documented examples."""

from __future__ import annotations

import asyncio
import copy
from typing import TYPE_CHECKING

import pytest
from cmp_fakes import FakeTime, drain, example, serve
from cmp_fakes_platforms import FakeOnce, OnceSim, epoch
from fleet import ICCIDS, Feed, new_engine

from simwatch.core.timeutil import format_rfc3339, parse_rfc3339
from simwatch.shell.settings import HttpSourceSettings
from simwatch.sources.cmp import onence
from simwatch.sources.cmp.source import CmpSource

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from simwatch.shell.source_contract import Batch

TOKEN = "s3cret"
SIM = "8988228066605682328"  # 19 digits, as 1NCE gives them (kept so)


@pytest.fixture
async def fake() -> AsyncIterator[FakeOnce]:
    platform = FakeOnce(token=TOKEN)
    async with serve(platform.app()) as url:
        platform.url = url  # type: ignore[attr-defined]
        yield platform


def make(fake: FakeOnce, ftime: FakeTime, **kw: object) -> CmpSource:
    settings = HttpSourceSettings.model_validate(
        {
            "name": "http:1nce",
            "adapter": "1nce",
            "base_url": fake.url,  # type: ignore[attr-defined]
            "rate_limit_per_s": 1000.0,
            **kw,
        }
    )
    return CmpSource(settings, token=TOKEN, clock=ftime.clock, sleep=ftime.sleep)


def for_sim(event: dict[str, object], iccid: str = SIM) -> dict[str, object]:
    """A documented example served for ``iccid`` (Data Streamer examples say ``<iccid>``)."""
    event = copy.deepcopy(event)
    sim = event.get("sim")
    if isinstance(sim, dict):
        sim["iccid"] = iccid
    return event


# documented event example -> the exact record (the SIM's ICCID filled in)
EXPECTED: dict[str, dict[str, object]] = {
    "1nce-v2-ds-event-create-pdp-context.json": {
        "kind": "session",
        "record_id": "1nce:e:12345679",
        "ts": "2024-12-13T12:48:24Z",
        "session_id": "2382739057",  # no detail.session_id: the pdp_context_id
        "status": "started",
        "apn": "stg.eu.ng.1nce.net",
        "mcc": "262",
        "mnc": "02",
        "rat": "LTE",
    },
    "1nce-v2-ds-event-update-location.json": {
        "kind": "event",
        "record_id": "1nce:e:12345678",
        "ts": "2024-12-13T12:49:57Z",
        "type": "location_update",
        "mcc": "262",
        "mnc": "02",
    },
    "1nce-v2-ds-event-quota-used-up.json": {
        "kind": "event",
        "record_id": "1nce:e:17254295",
        "ts": "2025-10-06T03:22:08Z",
        "type": "quota_exhausted",
        "cause": "Quota volume is completely used up and data access denied for endpoint.",
    },
    "1nce-ds-event-create-pdp-context.json": {
        "kind": "session",
        "record_id": "1nce:e:1234567890",
        "ts": "2019-01-21T09:36:17Z",
        "session_id": "110753000",
        "status": "started",
        "apn": "iot.1nce.net",
        "mcc": "262",
        "mnc": "01",
        "rat": "2G",
    },
    "1nce-ds-event-delete-pdp-context.json": {
        "kind": "session",
        "record_id": "1nce:e:12345678000",
        "ts": "2019-01-21T09:36:17Z",
        "session_id": "110753000",  # the same pdp_context_id as the create example
        "status": "ended",
        "mcc": "262",
        "mnc": "01",
        "rat": "2G",
        "bytes_up": 0,
        "bytes_down": 0,
    },
    "1nce-ds-event-update-location.json": {
        "kind": "event",
        "record_id": "1nce:e:1234567890",
        "ts": "2019-01-21T09:36:17Z",
        "type": "location_update",
        "mcc": "204",
        "mnc": "20",  # the operator lists 20 and 16: the first listed
    },
    "1nce-ds-event-quota-used-up.json": {
        "kind": "event",
        "record_id": "1nce:e:1234567890",
        "ts": "2019-01-21T09:36:17Z",
        "type": "quota_exhausted",
        "cause": "Quota volume is completely used up and data access denied for endpoint.",
    },
    "1nce-ds-event-generic-endpoint-disabled.json": {
        "kind": "event",
        "record_id": "1nce:e:1234567890",
        "ts": "2019-01-21T09:36:17Z",
        "type": "blocked",
        "cause": "Disconnecting data access for endpoint, because it has been disabled.",
    },
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_each_documented_event_polled(fake: FakeOnce, name: str) -> None:
    event = for_sim(example(name))
    fake.sims = {SIM: OnceSim(events_v2=[event])}
    ftime = FakeTime(epoch(event["timestamp"]) + 60)
    src = make(fake, ftime, iccids=[SIM])
    sink: asyncio.Queue[Batch] = asyncio.Queue()
    await src.poll_once(sink)
    assert await drain(sink) == [{**EXPECTED[name], "iccid": SIM}]
    assert onence.records_from_event(event) == [{**EXPECTED[name], "iccid": SIM}]
    # everything below the documented server path
    assert {r.path.split("/")[1] for r in fake.requests} == {"management-api"}
    # a re-poll reads the same events and hands over nothing again
    ftime.now += 60
    await src.poll_once(sink)
    assert await drain(sink) == []


def _with_detail(name: str, **detail: object) -> dict[str, object]:
    event = for_sim(example(name))
    event_detail = event["detail"]
    assert isinstance(event_detail, dict)
    event_detail.update(detail)
    return event


def test_failure_causes_are_read() -> None:
    """The v2 schema's machine-readable causes (PLATFORMS.md 2.3; no documented example)."""
    create = _with_detail(
        "1nce-v2-ds-event-create-pdp-context.json", data_service_failure_cause="QUOTA_EXHAUSTED"
    )
    [rec] = onence.records_from_event(create)
    assert (rec["kind"], rec["type"], rec["cause"]) == (
        "event",
        "quota_exhausted",
        "QUOTA_EXHAUSTED",
    )
    apn = _with_detail(
        "1nce-v2-ds-event-create-pdp-context.json", data_service_failure_cause="APN_NOT_AUTHORIZED"
    )
    [rec] = onence.records_from_event(apn)
    assert (rec["type"], rec["cause"], rec["apn"]) == (
        "pdp_reject",
        "APN_NOT_AUTHORIZED",
        "stg.eu.ng.1nce.net",
    )
    location = _with_detail(
        "1nce-v2-ds-event-update-location.json", update_location_failure_reason="RAT_NOT_ALLOWED"
    )
    [rec] = onence.records_from_event(location)
    assert (rec["type"], rec["cause"], rec["mcc"], rec["mnc"]) == (
        "attach_reject",
        "RAT_NOT_ALLOWED",
        "262",
        "02",
    )
    ended = _with_detail(
        "1nce-ds-event-delete-pdp-context.json",
        data_service_failure_cause="INACTIVITY_TIMER_EXPIRED",
    )
    [rec] = onence.records_from_event(ended)
    assert (rec["status"], rec["end_cause"]) == ("ended", "idle_timeout")


def test_data_streamer_usage_data_and_sms() -> None:
    [v1] = onence.records_from_usage(example("1nce-ds-usage-data.json"))
    assert v1 == {
        "kind": "usage",
        "record_id": "1nce:u:1234567890",
        "iccid": "<icc>",  # the example's placeholder, kept as given
        "start": "2021-08-09T12:51:20Z",  # the example's end is before its start: ordered
        "end": "2021-08-09T12:59:05Z",
        "bytes_up": 1176,  # tx 0.001176 MB
        "bytes_down": 0,
        "mcc": "262",
        "mnc": "01",
    }
    [v2] = onence.records_from_usage(example("1nce-v2-ds-usage-data.json"))
    assert v2 == {
        "kind": "usage",
        "record_id": "1nce:u:819948096",
        "iccid": "8988228066605682521",
        "start": "2024-12-15T06:24:47Z",
        "end": "2024-12-15T06:25:10Z",
        "bytes_up": 0,
        "bytes_down": 1_004_902,  # rx 1.0049019 MB
        "mcc": "247",
        "mnc": "05",
        "rat": "LTE",
    }
    # an SMS is a message count, never data
    assert onence.records_from_usage(example("1nce-ds-usage-sms.json")) == []
    assert onence.records_from_usage(example("1nce-v2-ds-usage-sms.json")) == []


async def test_discovery_daily_usage_and_throttling(fake: FakeOnce) -> None:
    """No ``iccids``: the SIM list (pages of <= 100); daily usage (data only, not SMS)."""
    sims = [f"89882280666000000{i:02d}" for i in range(3)]
    fake.sims = {s: OnceSim() for s in sims}
    fake.sims[sims[1]].usage = example("1nce-v1-daily-usage.json")["stats"]
    fake.throttle = 1
    ftime = FakeTime(parse_rfc3339("2021-06-30T12:00:00Z"))
    src = make(fake, ftime, page_size=2)
    sink: asyncio.Queue[Batch] = asyncio.Queue()
    await src.poll_once(sink)
    assert await drain(sink) == [
        {
            "kind": "usage",
            "record_id": f"1nce:{sims[1]}:u:2021-06-30:1321:1482",
            "iccid": sims[1],
            "start": "2021-06-30T00:00:00Z",
            "end": "2021-06-30T12:00:02Z",  # the day so far (after the 2 s Retry-After)
            "bytes_up": 1321,  # volume_tx "0.001321" MB
            "bytes_down": 1482,  # volume_rx "0.001482" MB
        }
    ]
    assert [r.query["page"] for r in fake.gets("/management-api/v1/sims")] == ["1", "1", "2"]
    assert 2.0 in ftime.sleeps  # the 429's Retry-After
    assert {r.query["pageSize"] for r in fake.gets("/management-api/v1/sims")} == {"2"}
    ftime.now += 60
    await src.poll_once(sink)
    assert await drain(sink) == []  # the day's totals did not grow


async def test_large_page_size_is_capped(fake: FakeOnce) -> None:
    fake.sims = {SIM: OnceSim()}
    src = make(fake, FakeTime(parse_rfc3339("2026-11-20T12:00:00Z")), page_size=5000)
    await src.poll_once(asyncio.Queue())
    assert {r.query["pageSize"] for r in fake.gets("/management-api/v1/sims")} == {"100"}
    events = fake.gets(f"/management-api/v2/sims/{SIM}/events")
    assert {r.query["pageSize"] for r in events} == {"1000"}


def v1_event(text: str, ts: float) -> dict[str, object]:
    """The documented v1 SIM_Event example with another type text and time (no id)."""
    event = dict(example("1nce-v1-events-page.json")["events"][0])
    event.update(event_type=text, timestamp=format_rfc3339(ts), iccid=SIM)
    return event


async def test_v1_events_without_ids_counted_once(fake: FakeOnce) -> None:
    """No v2 API: v1 EventCollection pages, newest first, read down to the mark only."""
    now = parse_rfc3339("2026-11-20T12:00:00Z")
    fake.v2 = False
    events = [v1_event("Update location", now - 1800 + 60 * i) for i in range(5)]
    events.append(v1_event("Status of SIM changed from 'Issued' to 'Activated'", now - 100))
    fake.sims = {SIM: OnceSim(events_v1=events)}
    ftime = FakeTime(now)
    src = make(fake, ftime, iccids=[SIM], page_size=2)
    sink: asyncio.Queue[Batch] = asyncio.Queue()
    await src.poll_once(sink)
    first = await drain(sink)
    assert len(first) == 5
    assert all(r["type"] == "location_update" and r["mcc"] == "262" for r in first)
    assert all(str(r["record_id"]).startswith("1nce:v1:") for r in first)
    assert len({r["record_id"] for r in first}) == 5
    path = f"/management-api/v1/sims/{SIM}/events"
    assert [r.query["page"] for r in fake.gets(path)] == ["1", "2", "3"]
    assert {r.query["sort"] for r in fake.gets(path)} == {"-timestamp"}
    # a re-poll: one page (it reaches the mark), no new record ids
    fake.requests.clear()
    ftime.now += 60
    await src.poll_once(sink)
    again = await drain(sink)
    assert {r["record_id"] for r in again} <= {r["record_id"] for r in first}
    assert [r.query["page"] for r in fake.gets(path)] == ["1"]
    # a new event: handed over once
    fake.sims[SIM].events_v1.append(v1_event("Purge location", now + 30))
    await src.poll_once(sink)
    new = [r for r in await drain(sink) if r["record_id"] not in {x["record_id"] for x in first}]
    assert [r["type"] for r in new] == ["purge"]


async def test_base_url_with_the_server_path(fake: FakeOnce) -> None:
    fake.sims = {SIM: OnceSim()}
    ftime = FakeTime(parse_rfc3339("2026-11-20T12:00:00Z"))
    settings = HttpSourceSettings.model_validate(
        {
            "name": "http:1nce",
            "adapter": "1nce",
            "base_url": fake.url + "/management-api",  # type: ignore[attr-defined]
            "iccids": [SIM],
        }
    )
    src = CmpSource(settings, token=TOKEN, clock=ftime.clock, sleep=ftime.sleep)
    await src.poll_once(asyncio.Queue())
    assert src.stats.errors == 0
    assert all(r.path.startswith("/management-api/v") for r in fake.requests)


@pytest.mark.parametrize(
    ("detail", "code"),
    [
        ({"data_service_failure_cause": "QUOTA_EXHAUSTED"}, "quota_exhausted"),
        ({"data_service_failure_cause": "MONTHLY_USAGE_LIMIT_EXCEEDED"}, "quota_exhausted"),
        ({"update_location_failure_reason": "RAT_NOT_ALLOWED"}, "attach_reject"),
    ],
)
def test_failure_causes_are_diagnosed(detail: dict[str, str], code: str) -> None:
    name = (
        "1nce-v2-ds-event-update-location.json"
        if "update_location_failure_reason" in detail
        else "1nce-v2-ds-event-create-pdp-context.json"
    )
    engine = new_engine(ICCIDS)
    feed = Feed(engine)
    t0 = parse_rfc3339("2026-11-01T00:00:00Z")
    t = t0
    while t < t0 + 3 * 86_400:
        feed.usage(ICCIDS[0], t)
        t += 900.0
    [record] = onence.records_from_event(_with_detail(name, **detail))
    record["iccid"], record["ts"] = ICCIDS[0], format_rfc3339(t)
    feed.send(record, t)
    now = t + 4 * 3600
    engine.evaluate(now)
    findings = engine.diagnose(ICCIDS[0], now)
    assert findings is not None
    finding = next(f for f in findings if f.code == code)
    assert next(iter(detail.values())) in finding.hint
