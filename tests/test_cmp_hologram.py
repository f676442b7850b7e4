"""Hologram through CmpSource against a fake that enforces PLATFORMS.md 6.

The sessions are the documented ``usage/data`` example's records (plus the ``sim`` field
of the other documented parameter set: the example itself names no ICCID) and more of
the same shape to cover the operator-name lookup.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest
from cmp_fakes import FakeTime, example, serve_handler
from cmp_fakes import drain as drain_handed_over
from cmp_fakes_more import FakeHologram

from simwatch.core.timeutil import parse_rfc3339
from simwatch.shell.settings import HttpSourceSettings
from simwatch.sources.cmp.hologram import NetworkNames
from simwatch.sources.cmp.source import CmpError, CmpSource

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from simwatch.shell.source_contract import Batch

T0 = parse_rfc3339("2025-09-19T17:00:00Z")  # just after the example's sessions
PAGE = example("hologram-usage-data-page.json")
I1, I2 = "89464278206108800001", "89464278206108800002"


def sessions() -> list[dict[str, object]]:
    newest, older = PAGE["data"]  # record_id 5234567891, 5234567890
    more = [
        {**newest, "record_id": 5234567892, "network_name": "T-Mobile US", "sim": I2},
        {**newest, "record_id": 5234567893, "network_name": "ntt DOCOMO", "sim": I2},
        {**newest, "record_id": 5234567894, "network_name": "NTT docomo"},  # no ICCID
        {**newest, "record_id": 5234567895, "network_name": "NTT docomo", "sim": I1},
    ]
    return [{**newest, "sim": I1}, {**older, "sim": I2}, *more]


def usage(rid: int, iccid: str, **extra: object) -> dict[str, object]:
    older = rid == 5234567890
    return {
        "kind": "usage",
        "record_id": f"hologram:u:{rid}",
        "iccid": iccid,
        "start": "2025-09-19T12:15:33Z" if older else "2025-09-19T14:30:22Z",
        "end": "2025-09-19T14:22:17Z" if older else "2025-09-19T16:45:18Z",
        "bytes_up": 0,
        "bytes_down": 189432 if older else 245679,
        **extra,
        "rat": "3G" if older else "LTE",
    }


@pytest.fixture
async def hologram() -> AsyncIterator[tuple[FakeHologram, str]]:
    fake = FakeHologram()
    async with serve_handler(fake.handle) as url:
        yield fake, url


def make(url: str, ftime: FakeTime, key: str = "holo-key", **kw: object) -> CmpSource:
    auth = {"kind": "basic", "username": "apikey", "password": key}
    settings = HttpSourceSettings.model_validate(
        {"name": "holo", "adapter": "hologram", "base_url": url, "auth": auth}
        | {"rate_limit_per_s": 1000.0, **kw}
    )
    return CmpSource(settings, clock=ftime.clock, sleep=ftime.sleep)


async def drain(sink: asyncio.Queue[Batch]) -> list[dict[str, object]]:
    return await drain_handed_over(sink, T0 + 86400)


async def test_sessions_paged_with_cursor(hologram: tuple[FakeHologram, str]) -> None:
    fake, url = hologram
    fake.sessions = sessions()
    ftime = FakeTime(T0)
    src = make(url, ftime, page_size=2, initial_lookback_s=3 * 3600)
    sink: asyncio.Queue[Batch] = asyncio.Queue()
    await src.poll_once(sink)
    # served newest first, handed over oldest first: the order the sessions happened
    assert await drain(sink) == [
        usage(5234567890, I2),  # "Telefonica Moviles Espana S.A.": unknown
        usage(5234567891, I1),  # "T-Mobile USA, Inc": not in the table: unknown
        usage(5234567892, I2, mcc="310"),  # one name, many MNCs of one MCC: country only
        usage(5234567893, I2, mcc="440", mnc="10"),  # case-insensitive match
        usage(5234567895, I1, mcc="440", mnc="10"),  # exact name, one network
    ]
    assert src.skipped == 1  # the session without an ICCID
    queries = [c.query for c in fake.calls]
    start = str(int(T0) - 3 * 3600)
    assert queries == [
        {"limit": "2", "timestart": start},
        {"limit": "2", "startafter": "5234567894", "timestart": start},
        {"limit": "2", "startafter": "5234567892", "timestart": start},
    ]
    # a new session: the next poll pages only down to the newest id already handed over
    fake.calls.clear()
    fake.sessions.append({**PAGE["data"][0], "record_id": 5234567896, "sim": I1})
    ftime.now += 60
    await src.poll_once(sink)
    assert await drain(sink) == [usage(5234567896, I1)]
    assert [c.query for c in fake.calls] == [{"limit": "2"}]
    await src.poll_once(sink)
    assert await drain(sink) == []


async def test_basic_auth_is_required(hologram: tuple[FakeHologram, str]) -> None:
    fake, url = hologram
    fake.sessions = sessions()
    with pytest.raises(CmpError, match="HTTP 401"):
        await make(url, FakeTime(T0), key="wrong").poll_once(asyncio.Queue())


def test_network_names() -> None:
    names = NetworkNames(
        [
            ("440", "10", "NTT docomo"),
            ("310", "260", "T-Mobile US"),
            ("310", "160", "T-Mobile US"),
            ("262", "01", "Telekom"),
            ("204", "16", "Telekom"),
        ]
    )
    assert names.lookup("NTT docomo") == ("440", "10")
    assert names.lookup("NTT DOCOMO ") == ("440", "10")
    assert names.lookup("T-Mobile US") == ("310", None)
    assert names.lookup("Telekom") == (None, None)  # several countries
    assert names.lookup("T-Mobile USA, Inc") == (None, None)
