"""Soracom through CmpSource against a fake that enforces PLATFORMS.md 5.

The cells come from the documented ``sessionStatus`` example (integer ``mcc`` 440,
``mnc`` 10, ``radioType`` ``lte``); session events and air stats have schemas but no
documented example (PLATFORMS.md 7), so their items follow the ``SessionEvent`` and
``AirStatsResponse`` field lists of section 5.2.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest
from cmp_fakes import FakeTime, example, serve_handler
from cmp_fakes import drain as drain_handed_over
from cmp_fakes_more import FakeSoracom

from simwatch.core.operators import OperatorTable
from simwatch.core.timeutil import parse_rfc3339
from simwatch.shell.settings import HttpSourceSettings
from simwatch.sources.cmp.soracom import resolve_mnc
from simwatch.sources.cmp.source import CmpError, CmpSource

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from simwatch.shell.source_contract import Batch

T0 = parse_rfc3339("2026-11-20T12:00:00Z")
EXAMPLE = example("soracom-subscriber-session-status.json")
A = EXAMPLE["iccid"]  # 8942310000012345678, the documented 19-digit ICCID
B = "8942310000012345679"
MS = 1000


@pytest.fixture
async def soracom() -> AsyncIterator[tuple[FakeSoracom, str]]:
    fake = FakeSoracom()
    async with serve_handler(fake.handle) as url:
        yield fake, url


def make(url: str, ftime: FakeTime, key: str = "secret-1", **kw: object) -> CmpSource:
    auth = {"kind": "soracom", "auth_key_id": "keyId-1", "auth_key": key}
    settings = HttpSourceSettings.model_validate(
        {"name": "soracom", "adapter": "soracom", "base_url": url, "auth": auth}
        | {"rate_limit_per_s": 1000.0, **kw}
    )
    return CmpSource(settings, clock=ftime.clock, sleep=ftime.sleep)


async def drain(sink: asyncio.Queue[Batch]) -> list[dict[str, object]]:
    return await drain_handed_over(sink, T0 + 86400)


def event(kind: str, at: float, cell: dict[str, object]) -> dict[str, object]:
    return {
        "event": kind,
        "time": int(at * MS),
        "sessionId": "sess-1",
        "imsi": EXAMPLE["imsi"],
        "imei": EXAMPLE["sessionStatus"]["imei"],
        "apn": "soracom.io",
        "ueIpAddress": EXAMPLE["sessionStatus"]["ueIpAddress"],
        "cell": cell,
        "simId": A,
        "operatorId": EXAMPLE["operatorId"],
    }


def bucket(at: int, up: int, down: int) -> dict[str, object]:
    half = {"uploadPacketSizeTotal": 1, "downloadPacketSizeTotal": 1}
    return {
        "date": "2026-11-20T11:45:00",
        "unixtime": at,
        "dataTrafficStatsMap": {
            "s1.standard": {"uploadByteSizeTotal": up - 10, "downloadByteSizeTotal": down, **half},
            "s1.fast": {"uploadByteSizeTotal": 10, "downloadByteSizeTotal": 0, **half},
        },
    }


def session(status: str, at: float, mcc: str, mnc: str, rat: str) -> dict[str, object]:
    kind = {"started": "Created", "interim": "Modified", "ended": "Deleted"}[status]
    rec: dict[str, object] = {
        "kind": "session",
        "record_id": f"soracom:{A}:sess-1:{kind}:{int(at * MS)}",
        "iccid": A,
        "session_id": "sess-1",
        "status": status,
        "ts": _iso(at),
        "apn": "soracom.io",
        "mcc": mcc,
        "mnc": mnc,
        "rat": rat,
    }
    if status == "ended":
        rec["end_cause"] = "unknown"
    return rec


def usage(at: int, up: int, down: int, d_up: int, d_down: int) -> dict[str, object]:
    return {
        "kind": "usage",
        "record_id": f"soracom:{A}:u:{at}:{up}:{down}",
        "iccid": A,
        "start": _iso(at),
        "end": _iso(at + 300),
        "bytes_up": d_up,
        "bytes_down": d_down,
    }


def _iso(at: float) -> str:
    from simwatch.core.timeutil import format_rfc3339  # noqa: PLC0415 - test helper

    return format_rfc3339(at)


async def test_sessions_cells_and_air_stats(soracom: tuple[FakeSoracom, str]) -> None:
    fake, url = soracom
    documented = EXAMPLE["sessionStatus"]["cell"]  # mcc 440, mnc 10 (integers), "lte"
    fake.sims = [A, B]
    fake.events = {
        A: [
            event("Created", T0 - 1800, documented),
            # 310 + 10: the table knows 310-010 (3 digits) -> "010"
            event("Modified", T0 - 1200, {"mcc": 310, "mnc": 10, "radioType": "LTE-M"}),
            event("Deleted", T0 - 600, {"mcc": 310, "mnc": 260, "radioType": "NB-IoT"}),
        ]
    }
    b1, b2 = int(T0) - 900, int(T0) - 600
    fake.air = {A: [bucket(b1, 100, 2000), bucket(b2, 50, 0)]}
    ftime = FakeTime(T0)
    # one SIM / event per page: the next-key paging
    src = make(url, ftime, page_size=1, initial_lookback_s=3 * 3600)
    sink: asyncio.Queue[Batch] = asyncio.Queue()
    await src.poll_once(sink)
    assert await drain(sink) == [
        session("started", T0 - 1800, "440", "10", "LTE"),
        session("interim", T0 - 1200, "310", "010", "LTE-M"),
        session("ended", T0 - 600, "310", "260", "NB-IoT"),
        usage(b1, 100, 2000, 100, 2000),
        usage(b2, 50, 0, 50, 0),
    ]
    assert (fake.calls[0].method, fake.calls[0].path) == ("POST", "/v1/auth")
    sims_q = [c.query for c in fake.calls if c.path == "/v1/sims"]
    assert sims_q == [{"limit": "1"}, {"limit": "1", "last_evaluated_key": "0"}]
    events_q = [c.query for c in fake.calls if c.path == f"/v1/sims/{A}/events/sessions"]
    assert len(events_q) == 3  # three pages of one event
    assert events_q[0]["from"] == str(int((T0 - 3 * 3600) * MS))
    # a minute on: the last bucket grew, a new session started
    ftime.now += 60
    fake.calls.clear()
    fake.events[A].append(event("Created", T0 + 30, documented))
    fake.air[A][1] = bucket(b2, 50, 70)
    await src.poll_once(sink)
    assert await drain(sink) == [
        usage(b2, 50, 70, 0, 70),  # in time order: the bucket ended before the session
        session("started", T0 + 30, "440", "10", "LTE"),
    ]
    events_q = [c.query for c in fake.calls if c.path == f"/v1/sims/{A}/events/sessions"]
    assert events_q[0]["from"] == str(int((T0 - 600) * MS) + 1)
    assert not [c for c in fake.calls if c.path == "/v1/sims"]  # the list is re-read hourly
    await src.poll_once(sink)
    assert await drain(sink) == []


async def test_empty_sim_list_is_an_error(soracom: tuple[FakeSoracom, str]) -> None:
    _fake, url = soracom
    with pytest.raises(CmpError, match="no SIMs to poll"):
        await make(url, FakeTime(T0)).poll_once(asyncio.Queue())


async def test_auth_key_is_required(soracom: tuple[FakeSoracom, str]) -> None:
    fake, url = soracom
    fake.sims = [A]
    with pytest.raises(CmpError, match="401"):
        await make(url, FakeTime(T0), key="wrong").poll_once(asyncio.Queue())
    assert [(c.method, c.path) for c in fake.calls] == [("POST", "/v1/auth")]


def test_mnc_rule() -> None:
    table = OperatorTable(
        {"440": "JP", "310": "US"}, {("440", "10"): "NTT docomo", ("310", "010"): "Verizon"}
    )
    assert resolve_mnc("440", 10, table) == "10"  # 440-010 unknown: 2 digits
    assert resolve_mnc("310", 10, table) == "010"  # 310-010 known: 3 digits win
    assert resolve_mnc("310", 260, table) == "260"  # >= 100: only 3 digits possible
    assert resolve_mnc("440", 1, table) == "01"  # 1 digit: padded (documented)
    assert resolve_mnc("440", 1000, table) is None
