"""Cisco IoT Control Center through CmpSource against a fake that enforces PLATFORMS.md 3.

Cisco publishes no retrievable example payloads (PLATFORMS.md 7): the fake's bodies follow
the documented field lists of section 3.2 (``sessionInfo``, ``ctdUsages``, device search).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from typing import TYPE_CHECKING

import pytest
from cmp_fakes import FakeTime, serve_handler
from cmp_fakes import drain as drain_handed_over
from cmp_fakes_more import FakeCisco

from simwatch.core.timeutil import parse_rfc3339
from simwatch.shell.settings import HttpSourceSettings
from simwatch.sources.cmp.source import CmpError, CmpSource

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from simwatch.shell.source_contract import Batch

T0 = parse_rfc3339("2026-11-20T12:00:00Z")
A, B = "8988216716970004975", "89302720396911992571"  # the documented 19/20-digit forms


@pytest.fixture
async def cisco() -> AsyncIterator[tuple[FakeCisco, str]]:
    fake = FakeCisco()
    async with serve_handler(fake.handle) as url:
        yield fake, url


def make(url: str, ftime: FakeTime, key: str = "cc-api-key", **kw: object) -> CmpSource:
    auth = {"kind": "basic", "username": "ccuser", "password": key}
    settings = HttpSourceSettings.model_validate(
        {"name": "cisco", "adapter": "cisco", "base_url": url, "auth": auth}
        | {"rate_limit_per_s": 1000.0, **kw}
    )
    return CmpSource(settings, clock=ftime.clock, sleep=ftime.sleep)


async def drain(sink: asyncio.Queue[Batch]) -> list[dict[str, object]]:
    return await drain_handed_over(sink, T0 + 86400)


def session(rid: str, sid: str, status: str, ts: str, **extra: str) -> dict[str, object]:
    return {
        "kind": "session",
        "record_id": rid,
        "iccid": A,
        "session_id": sid,
        "status": status,
        "ts": ts,
        **extra,
    }


async def test_sessions_usage_and_missed_sessions(cisco: tuple[FakeCisco, str]) -> None:
    fake, url = cisco
    fake.session = {
        A: {
            "ipAddress": "10.0.0.1",
            "dateSessionStarted": "2026-11-20 09:00:00.000+0000",
            "dateSessionEnded": None,
        },
        B: {"ipAddress": "null", "dateSessionStarted": None, "dateSessionEnded": None},
    }
    fake.ctd = {
        A: {"ctdDataUsage": 1000, "ctdSessionCount": 3, "ctdSMSUsage": 0},
        B: {"ctdDataUsage": 0, "ctdSessionCount": 0},
    }
    ftime = FakeTime(T0)
    src = make(url, ftime, iccids=[A, B])
    sink: asyncio.Queue[Batch] = asyncio.Queue()
    await src.poll_once(sink)
    first = f"{A}:2026-11-20T09:00:00Z"
    assert await drain(sink) == [
        session(
            f"cisco:{A}:s:2026-11-20T09:00:00Z:started", first, "started", "2026-11-20T09:00:00Z"
        )
    ]
    # five minutes on: a new session (the first had no end), 3 more sessions counted of
    # which only 1 was seen, 3000 more bytes
    ftime.now += 300
    fake.session[A] = {"dateSessionStarted": "2026-11-20 11:58:00", "dateSessionEnded": "null"}
    fake.ctd[A] = {"ctdDataUsage": 4000, "ctdSessionCount": 6}
    await src.poll_once(sink)
    second = f"{A}:2026-11-20T11:58:00Z"
    assert await drain(sink) == [
        session(
            f"cisco:{A}:s:2026-11-20T09:00:00Z:ended",
            first,
            "ended",
            "2026-11-20T11:58:00Z",
            end_cause="unknown",
        ),
        session(
            f"cisco:{A}:s:2026-11-20T11:58:00Z:started", second, "started", "2026-11-20T11:58:00Z"
        ),
        {
            "kind": "usage",
            "record_id": f"cisco:{A}:u:{T0:.0f}:4000",
            "iccid": A,
            "start": "2026-11-20T12:00:00Z",
            "end": "2026-11-20T12:05:00Z",
            "bytes_up": 0,
            "bytes_down": 3000,
        },
        session(
            f"cisco:{A}:missed:3:6",
            f"{A}:ctd:6",
            "ended",
            "2026-11-20T12:05:00Z",
            end_cause="unknown",
        ),
    ]
    # the session ends; nothing else changed
    ftime.now += 300
    fake.session[A]["dateSessionEnded"] = "2026-11-20 12:07:00"
    await src.poll_once(sink)
    assert await drain(sink) == [
        session(f"cisco:{A}:s:2026-11-20T11:58:00Z:ended", second, "ended", "2026-11-20T12:07:00Z")
    ]
    await src.poll_once(sink)
    assert await drain(sink) == []
    assert fake.overlaps == 0  # one call at a time by default
    assert src.stats.errors == 0


async def test_throttle_40000029_backs_off_and_retries(cisco: tuple[FakeCisco, str]) -> None:
    fake, url = cisco
    fake.session = {s: {"dateSessionStarted": "2026-11-20 09:00:00"} for s in (A, B)}
    fake.ctd = {s: {"ctdDataUsage": 5, "ctdSessionCount": 1} for s in (A, B)}
    fake.throttle = 1  # the first call is refused with 40000029 (HTTP 400)
    ftime = FakeTime(T0)
    src = make(url, ftime, iccids=[A, B])
    sink: asyncio.Queue[Batch] = asyncio.Queue()
    await src.poll_once(sink)
    recs = await drain(sink)
    assert sorted(str(r["iccid"]) for r in recs) == [B, A]  # neither SIM skipped
    assert len(ftime.sleeps) == 1
    assert ftime.sleeps[0] > 0  # backed off before the retry
    assert [c.path for c in fake.calls[:2]] == [f"/rws/api/v1/devices/{A}/sessionInfo"] * 2
    assert src.stats.last_error is None


async def test_fake_refuses_overlapping_calls(cisco: tuple[FakeCisco, str]) -> None:
    """The fake enforces one call at a time: a source told to fan out gets 40000029."""
    fake, url = cisco
    sims = [f"89882167169700050{i:02d}" for i in range(8)]
    fake.session = {s: {} for s in sims}
    fake.ctd = {s: {"ctdDataUsage": 0} for s in sims}
    src = make(url, FakeTime(T0), iccids=sims, max_concurrency=4)
    with contextlib.suppress(CmpError):
        await src.poll_once(asyncio.Queue())
    assert fake.overlaps > 0
    assert src.stats.errors > 0


async def test_discovery_pages_modified_since(cisco: tuple[FakeCisco, str]) -> None:
    fake, url = cisco
    sims = [f"8988216716970{i:06d}" for i in range(120)]
    fake.devices = dict.fromkeys(sims, "2026-01-01T00:00:00+00:00")
    fake.session = {s: {"dateSessionStarted": None} for s in sims}
    fake.ctd = {s: {"ctdDataUsage": 0, "ctdSessionCount": 0} for s in sims}
    ftime = FakeTime(T0)
    src = make(url, ftime)
    await src.poll_once(asyncio.Queue())
    search = [c.query for c in fake.calls if c.path == "/rws/api/v1/devices"]
    assert search == [
        {"modifiedSince": "2000-01-01T00:00:00Z", "pageSize": "50", "pageNumber": str(n)}
        for n in (1, 2, 3)
    ]
    polled = {c.path.split("/")[5] for c in fake.calls if c.path.endswith("/sessionInfo")}
    assert polled == set(sims)
    # later polls ask only for what changed since the previous discovery (5 min margin)
    new = "89882167169700999999"
    fake.devices[new] = "2026-11-20T12:01:00+00:00"
    fake.session[new], fake.ctd[new] = {}, {"ctdDataUsage": 0}
    ftime.now += 60
    fake.calls.clear()
    await src.poll_once(asyncio.Queue())
    search = [c.query for c in fake.calls if c.path == "/rws/api/v1/devices"]
    assert search == [
        {"modifiedSince": "2026-11-20T11:55:00Z", "pageSize": "50", "pageNumber": "1"}
    ]
    assert len([c for c in fake.calls if c.path.endswith("/sessionInfo")]) == 121
    assert fake.overlaps == 0


async def test_calls_per_poll(cisco: tuple[FakeCisco, str]) -> None:
    """Two calls per SIM and poll, plus the device search: N/50 pages once, then one."""
    fake, url = cisco
    n = 150
    sims = [f"8988216716971{i:06d}" for i in range(n)]
    fake.devices = dict.fromkeys(sims, "2026-01-01T00:00:00+00:00")
    fake.session = {s: {} for s in sims}
    fake.ctd = {s: {"ctdDataUsage": 0} for s in sims}
    fake.delay = 0.0
    src = make(url, FakeTime(T0))
    await src.poll_once(asyncio.Queue())
    assert len(fake.calls) == 2 * n + math.ceil(n / 50)
    fake.calls.clear()
    await src.poll_once(asyncio.Queue())
    assert len(fake.calls) == 2 * n + 1


async def test_empty_sim_list_is_an_error_logged_once(
    cisco: tuple[FakeCisco, str], caplog: pytest.LogCaptureFixture
) -> None:
    _fake, url = cisco
    caplog.set_level(logging.INFO, logger="simwatch.sources.cmp.source")
    src = make(url, FakeTime(T0))
    for _ in range(3):
        with pytest.raises(CmpError, match="no SIMs to poll: the platform's SIM list is empty"):
            await src.poll_once(asyncio.Queue())
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert src.stats.errors == 3


async def test_basic_auth_is_required(cisco: tuple[FakeCisco, str]) -> None:
    fake, url = cisco
    fake.session, fake.ctd = {A: {}}, {A: {"ctdDataUsage": 0}}
    src = make(url, FakeTime(T0), key="wrong", iccids=[A])
    sink: asyncio.Queue[Batch] = asyncio.Queue()
    with pytest.raises(CmpError, match="HTTP 401"):
        await src.poll_once(sink)
    assert sink.empty()


async def test_unknown_iccid_is_skipped(cisco: tuple[FakeCisco, str]) -> None:
    fake, url = cisco
    fake.session = {A: {"dateSessionStarted": "2026-11-20 09:00:00"}}
    fake.ctd = {A: {"ctdDataUsage": 0}}
    src = make(url, FakeTime(T0), iccids=[B, A])
    sink: asyncio.Queue[Batch] = asyncio.Queue()
    await src.poll_once(sink)
    assert [r["iccid"] for r in await drain(sink)] == [A]
    assert src.stats.errors == 1
