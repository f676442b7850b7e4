"""KORE Super SIM through CmpSource against a fake that enforces PLATFORMS.md 4.

The fake serves the documented Sims list example and UsageRecords items shaped as the
documented examples (``kore-supersim-usage-records-*.json``), re-timed to hours.
"""

from __future__ import annotations

import asyncio
import copy
from typing import TYPE_CHECKING

import pytest
from cmp_fakes import FakeTime, example, serve_handler
from cmp_fakes import drain as drain_handed_over
from cmp_fakes_more import TOKEN_PATH, FakeKore

from simwatch.core.timeutil import format_rfc3339, parse_rfc3339
from simwatch.shell.settings import HttpSourceSettings
from simwatch.sources.cmp.kore import kore_usage
from simwatch.sources.cmp.source import CmpError, CmpSource

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from simwatch.shell.source_contract import Batch

T0 = parse_rfc3339("2026-11-20T12:00:00Z")
SIMS = example("kore-supersim-sims-page.json")
SA = SIMS["sims"][0]["sid"]  # HSaaa…
IA = SIMS["sims"][0]["iccid"]  # 89883070000123456789
SB, IB = "HS" + "b" * 32, "89883070000123456790"
DAY = example("kore-supersim-usage-records-day-sim-filter.json")


def sims() -> list[dict[str, object]]:
    second = {**SIMS["sims"][0], "sid": SB, "iccid": IB, "unique_name": "Second"}
    return [SIMS["sims"][0], second]


def record(sid: str, hour: float, up: int, down: int) -> dict[str, object]:
    rec: dict[str, object] = copy.deepcopy(DAY["usage_records"][0])
    rec["sim_sid"] = sid
    rec["period"] = {"start_time": format_rfc3339(hour), "end_time": format_rfc3339(hour + 3600)}
    rec["data_upload"], rec["data_download"], rec["data_total"] = up, down, up + down
    return rec


@pytest.fixture
async def kore() -> AsyncIterator[tuple[FakeKore, str]]:
    fake = FakeKore()
    async with serve_handler(fake.handle) as url:
        fake.url = url
        yield fake, url


def make(url: str, ftime: FakeTime, secret: str = "kore-secret", **kw: object) -> CmpSource:
    auth = {
        "kind": "client_credentials",
        "client_id": "kore-client",
        "client_secret": secret,
        "token_url": url + TOKEN_PATH,
    }
    settings = HttpSourceSettings.model_validate(
        {"name": "kore", "adapter": "kore", "base_url": url, "auth": auth}
        | {"rate_limit_per_s": 1000.0, **kw}
    )
    return CmpSource(settings, clock=ftime.clock, sleep=ftime.sleep)


async def drain(sink: asyncio.Queue[Batch]) -> list[dict[str, object]]:
    return await drain_handed_over(sink, T0 + 86400)


def usage(
    sid: str, iccid: str, hour: float, tot: tuple[int, int], delta: tuple[int, int]
) -> dict[str, object]:
    start = format_rfc3339(hour)
    return {
        "kind": "usage",
        "record_id": f"kore:{sid}:{start}:{tot[0]}:{tot[1]}",
        "iccid": iccid,
        "start": start,
        "end": format_rfc3339(hour + 3600),
        "bytes_up": delta[0],
        "bytes_down": delta[1],
    }


async def test_hourly_usage_by_sim_paged(kore: tuple[FakeKore, str]) -> None:
    fake, url = kore
    fake.sims = sims()
    h = T0  # 12:00; the poll runs at 12:30
    fake.usage = [
        record(SB, h, 10, 20),  # the current hour, still growing
        record(SA, h - 3600, 150000, 150000),
        record(SA, h - 7200, 150000, 150000),
        record("HS" + "c" * 32, h - 3600, 5, 5),  # not in the SIM list: skipped
        record(SA, h - 5 * 3600, 1, 1),  # before the window
    ]
    ftime = FakeTime(T0 + 1800)
    src = make(url, ftime, page_size=2)
    sink: asyncio.Queue[Batch] = asyncio.Queue()
    await src.poll_once(sink)
    # in time order, and the running hour ends at the poll (12:30), not in the future
    assert await drain(sink) == [
        usage(SA, IA, h - 7200, (150000, 150000), (150000, 150000)),
        usage(SA, IA, h - 3600, (150000, 150000), (150000, 150000)),
        {**usage(SB, IB, h, (10, 20), (10, 20)), "end": format_rfc3339(h + 1800)},
    ]
    assert src.skipped == 1
    usage_q = [c.query for c in fake.calls if c.path == "/v1/UsageRecords"]
    assert usage_q[0] == {
        "Group": "sim",
        "Granularity": "hour",
        "StartTime": "2026-11-20T09:00:00Z",
        "EndTime": "2026-11-20T13:00:00Z",
        "PageSize": "2",
    }
    assert [q.get("PageToken") for q in usage_q] == [None, "PT1"]  # followed next_page_url
    assert [c.query.get("PageToken") for c in fake.calls if c.path == "/v1/Sims"] == [None]
    assert (fake.calls[0].method, fake.calls[0].path) == ("POST", TOKEN_PATH)
    # ten minutes on: the current hour grew by 5 bytes up; the rest is unchanged
    ftime.now += 600
    fake.usage[0] = record(SB, h, 15, 20)
    await src.poll_once(sink)
    assert await drain(sink) == [
        {**usage(SB, IB, h, (15, 20), (5, 0)), "end": format_rfc3339(h + 2400)}
    ]
    await src.poll_once(sink)
    assert await drain(sink) == []


async def test_configured_iccids_narrow_the_fleet(kore: tuple[FakeKore, str]) -> None:
    fake, url = kore
    fake.sims = sims()
    fake.usage = [record(SA, T0, 1, 2), record(SB, T0, 3, 4)]
    sink: asyncio.Queue[Batch] = asyncio.Queue()
    await make(url, FakeTime(T0 + 60), iccids=[IB]).poll_once(sink)
    assert [r["iccid"] for r in await drain(sink)] == [IB]
    with pytest.raises(CmpError, match="none of the configured iccids is listed"):
        await make(url, FakeTime(T0), iccids=["89883070000000000000"]).poll_once(sink)


async def test_empty_sim_list_is_an_error(kore: tuple[FakeKore, str]) -> None:
    _fake, url = kore
    with pytest.raises(CmpError, match="no SIMs to poll: GET /v1/Sims: the list is empty"):
        await make(url, FakeTime(T0)).poll_once(asyncio.Queue())


async def test_client_credentials_are_required(kore: tuple[FakeKore, str]) -> None:
    fake, url = kore
    fake.sims = sims()
    with pytest.raises(CmpError, match="401"):
        await make(url, FakeTime(T0), secret="wrong").poll_once(asyncio.Queue())
    settings = HttpSourceSettings.model_validate({"name": "k", "adapter": "kore", "base_url": url})
    with pytest.raises(CmpError, match="HTTP 401"):  # no credentials: the fake refuses
        await CmpSource(settings).poll_once(asyncio.Queue())


def test_documented_examples() -> None:
    """The per-SIM example maps to two records; the ungrouped one has no SIM: skipped."""
    recs, marks, skipped = kore_usage(DAY, {SA: IA}, {})
    assert skipped == 0
    assert recs == [
        usage(SA, IA, parse_rfc3339("2019-05-03T00:00:00Z"), (150000, 150000), (150000, 150000))
        | {"end": "2019-05-04T00:00:00Z"},
        usage(SA, IA, parse_rfc3339("2019-05-02T00:00:00Z"), (150000, 150000), (150000, 150000))
        | {"end": "2019-05-03T00:00:00Z"},
    ]
    assert kore_usage(DAY, {SA: IA}, marks)[0] == []  # unchanged totals: nothing new
    page = example("kore-supersim-usage-records-page.json")
    assert kore_usage(page, {SA: IA}, {})[::2] == ([], 1)
