"""End to end, Soracom (PLATFORMS.md 5): session events and air stats in through ``simwatch
run``, SIM states, partners, diagnosis and a group incident out.

The fake of ``cmp_fakes_more`` (``POST /v1/auth`` with an AuthKey, ``X-Soracom-API-Key`` and
``X-Soracom-Token`` enforced, lists paged by ``x-soracom-next-key``, session events ``from``
/ ``to`` in milliseconds, air stats in seconds) serves three days of history for 40 SIMs,
found by ``GET /v1/sims`` (no ``iccids`` configured), in the shapes of the documented
example (``tests/data/cmp/soracom-subscriber-session-status.json``: its ``imsi``,
``imei``, ``operatorId`` and ``cell`` with integer ``mcc``/``mnc`` and ``radioType``
``lte``). Each SIM sends data (an air stats bucket with bytes) every 15, 20 or 25 minutes,
day and night; a session is opened (``Created``) about every hour and closed
(``Deleted``) before the next. Even SIMs are on cell ``mcc 310, mnc 410`` (AT&T, partner
310410) and report until now; odd SIMs are on ``mcc 310, mnc 10``, an integer the operator
table knows only as the 3-digit MNC ``010`` (Verizon, partner 310010), and stop 90 minutes
before now (a partner outage).

``simwatch run`` polls it with ``initial_lookback_s`` of 4 days (each SIM's first session
events and air stats calls start before its history), ``warmup_s`` 12 h, cycles every 20 s.
Asserted over its HTTP API, once a cycle has seen every SIM: 20 SIMs ok and 20 late or
silent; exactly one open group incident, on ``{"partner": "310010"}``; a healthy SIM
``ok`` (diagnosis ``ok``) on partner 310410, RAT ``LTE`` (the example's ``lte``), rhythm
learned, in no incident; every stopped SIM late or silent on partner 310010 (integer 10 ->
``010``), its ``incident`` that group incident and its first diagnosis
``group_incident``; the AuthKey asked once (at most twice).

Everything is relative to the wall clock at the start: nothing depends on the date or hour.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import pytest
from cmp_fakes import example, serve_handler
from cmp_fakes_more import FakeSoracom
from e2e_support import api, half_failed_incidents, ready_token, secret_file, write_config
from mosquitto import free_port, stop_process
from servers import start_simwatch, until

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.real_server  # ``simwatch`` processes

SIMS = 40
HISTORY_S = 3 * 86_400
OUTAGE_S = 90 * 60  # the odd SIMs (partner 310010) stopped this long before now
BUCKET_S = 300  # "minutes" air stats: ~5-minute buckets (PLATFORMS.md 5)
EXAMPLE = example("soracom-subscriber-session-status.json")
HEALTHY = 0  # a SIM on 310410
OUT = 1  # a SIM on 310010


def iccid(k: int) -> str:
    """Soracom's ``simId`` of a SIM card is its ICCID (19 digits, like the example's)."""
    return f"894231000001{k:07d}"


def cell(k: int) -> dict[str, object]:
    """The example's cell with the SIM's network: integer MCC and MNC."""
    return {**EXAMPLE["sessionStatus"]["cell"], "mcc": 310, "mnc": 10 if k % 2 else 410}


def partner(k: int) -> str:
    return "310010" if k % 2 else "310410"


def event(k: int, kind: str, at: float, n: int) -> dict[str, object]:
    return {
        "event": kind,
        "time": int(at * 1000),
        "sessionId": f"sess-{k}-{n}",
        "imsi": f"310{k:012d}",
        "imei": EXAMPLE["sessionStatus"]["imei"],
        "apn": "soracom.io",
        "ueIpAddress": EXAMPLE["sessionStatus"]["ueIpAddress"],
        "cell": cell(k),
        "simId": iccid(k),
        "operatorId": EXAMPLE["operatorId"],
    }


def bucket(at: int, up: int, down: int) -> dict[str, object]:
    stats = {
        "uploadByteSizeTotal": up,
        "uploadPacketSizeTotal": 3,
        "downloadByteSizeTotal": down,
        "downloadPacketSizeTotal": 2,
    }
    return {"unixtime": at, "dataTrafficStatsMap": {EXAMPLE["speedClass"]: stats}}


def report_times(k: int, now: float) -> list[float]:
    """When SIM ``k`` sends data, oldest first: every 15, 20 or 25 minutes, day and night,
    for ``HISTORY_S``; the even SIMs until now (SIM 0 last 10 s ago), the odd ones until
    ``OUTAGE_S`` before now."""
    period = 900.0 + (k % 3) * 300.0
    last = (now - OUTAGE_S if k % 2 else now) - 10 - (k * 37) % 300
    count = int((last - (now - HISTORY_S)) // period)
    return [last - i * period for i in range(count, -1, -1)]


def build(fake: FakeSoracom, now: float) -> None:
    for k in range(SIMS):
        sim = iccid(k)
        fake.sims.append(sim)
        events: list[dict[str, object]] = []
        buckets: dict[int, dict[str, object]] = {}
        for n, t in enumerate(report_times(k, now)):
            if n % 4 == 0:  # a session about every hour, data in between
                if events:
                    events.append(event(k, "Deleted", t - 1, n - 4))
                events.append(event(k, "Created", t, n))
            at = int(t) // BUCKET_S * BUCKET_S
            buckets[at] = bucket(at, 1200 + k, 340 + n)
        fake.events[sim] = events
        fake.air[sim] = [buckets[at] for at in sorted(buckets)]


def config(tmp_path: Path, port: int, base_url: str, fake: FakeSoracom) -> Path:
    key = secret_file(tmp_path, "soracom-auth-key", fake.auth_key)
    source = f"""
[[sources.http]]
name = "soracom"
adapter = "soracom"
base_url = "{base_url}"
auth = {{ kind = "soracom", auth_key_id = "{fake.auth_key_id}", auth_key_file = "{key}" }}
poll_interval_s = 5
page_size = 100
rate_limit_per_s = 100
initial_lookback_s = {4 * 86_400}
"""
    # cycles every 20 s: the incident needs two live cycles, so the test waits 40 s, not 120
    return write_config(tmp_path, port, source, eval_interval_s=20)


async def assert_verdicts(port: int, token: str, log: Path) -> None:
    async def settled() -> list[dict[str, Any]]:
        return await half_failed_incidents(port, token, SIMS)

    incidents = await until(settled, 240, "SIM states and a group incident", log, interval_s=1.0)
    assert [i["dims"] for i in incidents] == [{"partner": "310010"}]

    healthy = await api(port, f"/api/v1/sims/{iccid(HEALTHY)}", token)
    assert healthy is not None
    assert healthy["state"] == "ok", healthy
    assert [f["code"] for f in healthy["diagnosis"]] == ["ok"]
    assert healthy["session"]["partner"] == "310410"
    assert healthy["session"]["rat"] == "LTE"  # the example's "lte"
    assert healthy["rhythm"]["learned"] is True
    assert healthy["incident"] is None

    for k in range(OUT, SIMS, 2):  # every odd SIM: late or silent on 310010, in the incident
        outage = await api(port, f"/api/v1/sims/{iccid(k)}", token)
        assert outage is not None
        assert outage["state"] in {"late", "silent"}, outage
        assert outage["session"]["partner"] == "310010"  # integer 10 -> "010"
        assert outage["incident"] is not None, outage
        assert outage["incident"]["id"] == incidents[0]["id"]
        assert outage["diagnosis"][0]["code"] == "group_incident", outage["diagnosis"]


async def test_soracom_history_to_states_partners_and_incident(tmp_path: Path) -> None:
    fake = FakeSoracom()
    build(fake, time.time())
    port = free_port()
    log = tmp_path / "simwatch.log"
    async with serve_handler(fake.handle) as base_url:
        process = start_simwatch(config(tmp_path, port, base_url, fake), log)
        try:
            await assert_verdicts(port, await ready_token(tmp_path, log), log)
            # the first poll read each SIM's whole history (initial_lookback_s, 4 days)
            for sim in fake.sims:
                first = next(c for c in fake.calls if c.path == f"/v1/sims/{sim}/events/sessions")
                assert int(first.query["from"]) < int(str(fake.events[sim][0]["time"]))
                air = next(c for c in fake.calls if c.path == f"/v1/stats/air/sims/{sim}")
                assert int(air.query["from"]) < int(str(fake.air[sim][0]["unixtime"]))
            # the platform's own rules were kept: AuthKey asked a bounded number of times
            assert 1 <= len([c for c in fake.calls if c.path == "/v1/auth"]) <= 2
        finally:
            await asyncio.to_thread(stop_process, process, 15.0)
