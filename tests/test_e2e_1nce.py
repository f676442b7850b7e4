"""End to end, 1NCE (PLATFORMS.md 2): v2 events polled per SIM through ``simwatch run``.

The fake of ``cmp_fakes_platforms`` (OAuth ``client_credentials`` with HTTP Basic enforced,
2.1; ``GET /v1/sims`` paged, ``pageSize`` <= 100; ``GET /v2/sims/{iccid}/events`` a JSON
array newest first, ``pageSize`` <= 1000, 2.2) serves three days of v2 events built from
the documented examples (``tests/data/cmp/1nce-v2-ds-event-*.json`` and
``1nce-ds-event-delete-pdp-context.json``; ids, times, SIMs and networks varied): 40 SIMs,
found by ``GET /v1/sims`` (no ``iccids`` configured), half on partner 26201, half on 26202.
Each SIM has an "Update location" (type 1) naming its network, then a "Create PDP Context"
(type 3) and its "Delete PDP Context" (type 5, with volume) every 15 to 25 minutes. The
SIMs on 26202 stop 90 minutes before now (a partner outage); one SIM on 26201 gets the
documented "Quota used up" (type 19) event instead of sessions for its last three hours.

Then over the daemon's HTTP API: a healthy SIM is ok on partner 26201, the quota SIM is
diagnosed ``quota_exhausted``, a group incident is open on partner 26202, and the OAuth
token endpoint was asked a bounded number of times. Everything is relative to the wall
clock at the start and every SIM reports day and night alike.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import pytest
from cmp_fakes import example, serve
from cmp_fakes_platforms import JWT, FakeOnce, OnceSim
from e2e_support import (
    api,
    assert_partner_scenario,
    group_incidents,
    ready_token,
    secret_file,
    write_config,
)
from mosquitto import free_port, stop_process
from servers import start_simwatch, until
from test_e2e_platforms import stamp

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.real_server  # ``simwatch`` processes

SIMS = 40
HISTORY_S = 3 * 86_400
OUTAGE_S = 90 * 60  # the SIMs on 26202 stopped this long before now
QUOTA_S = 3 * 3600  # the quota SIM's sessions are refused this long before now
LOCATION_EVERY_S = 6 * 3600  # an "Update location" this often (and first)
QUOTA_SIM = 0  # a SIM on 26201
HEALTHY_SIM = 2  # another SIM on 26201
OUTAGE_SIM = 1  # a SIM on 26202
TOKEN_PATH = "/management-api/oauth/token"


def iccid(k: int) -> str:
    """19 digits, as 1NCE gives them (PLATFORMS.md 2)."""
    return f"898822806660{k:07d}"


def mnc(k: int) -> str:
    return "02" if k % 2 else "01"  # odd SIMs on 26202, even on 26201


class History:
    """v2 events in the documented shapes, per SIM; ids grow with time (2.2)."""

    def __init__(self) -> None:
        self.create = example("1nce-v2-ds-event-create-pdp-context.json")
        self.delete = example("1nce-ds-event-delete-pdp-context.json")
        self.location = example("1nce-v2-ds-event-update-location.json")
        self.quota = example("1nce-v2-ds-event-quota-used-up.json")
        self.pending: list[tuple[float, int, dict[str, Any]]] = []

    def _event(self, template: dict[str, Any], k: int, ts: float) -> dict[str, Any]:
        event = copy.deepcopy(template)
        event["timestamp"] = stamp(ts)
        event["sim"]["iccid"] = iccid(k)
        event["sim"]["id"] = 10_000_000 + k
        event["imsi"]["imsi"] = f"901405{k:09d}"
        event["endpoint"]["id"] = 100_000_000 + k
        event["endpoint"]["name"] = iccid(k)
        self.pending.append((ts, k, event))
        return event

    def located(self, k: int, ts: float) -> None:
        detail = self._event(self.location, k, ts)["detail"]
        detail["country"]["mcc"] = "262"
        detail["mnc"] = [{"id": 3, "mnc": mnc(k)}]

    def session(self, k: int, start: float, n: int) -> None:
        for template, ts in ((self.create, start), (self.delete, start + 90)):
            detail = self._event(template, k, ts)["detail"]
            detail["country"]["mcc"] = "262"
            pdp = detail["pdp_context"]
            pdp["mcc"], pdp["mnc"], pdp["apn"] = "262", mnc(k), "iot.1nce.net"
            pdp["pdp_context_id"] = 2_000_000_000 + k * 10_000 + n
            if "volume" in detail:
                rx, tx = 0.01 + (n % 7) * 0.001, 0.002 + (k % 5) * 0.001
                detail["volume"] = {"rx": rx, "tx": tx, "total": rx + tx}

    def used_up(self, k: int, ts: float) -> None:
        self._event(self.quota, k, ts)

    def sims(self) -> dict[str, OnceSim]:
        self.pending.sort(key=lambda item: item[0])
        out = {iccid(k): OnceSim() for k in range(SIMS)}
        for i, (_ts, k, event) in enumerate(self.pending):
            event["id"] = 20_000_000 + i
            out[iccid(k)].events_v2.append(event)
        return out


def build_sims(now: float) -> dict[str, OnceSim]:
    history = History()
    for k in range(SIMS):
        period = 900.0 + (k % 3) * 300.0  # 15, 20 or 25 minutes, day and night alike
        t, n = now - HISTORY_S + (k * 37) % 900, 0
        stop = now - OUTAGE_S if mnc(k) == "02" else now - 120
        located = -float("inf")
        while t + 90 < stop:
            if t - located >= LOCATION_EVERY_S:
                history.located(k, t - 5)
                located = t
            if k == QUOTA_SIM and t > now - QUOTA_S:
                history.used_up(k, t)
            else:
                history.session(k, t, n)
            t += period
            n += 1
    return history.sims()


def once_source(tmp_path: Path, base_url: str, fake: FakeOnce) -> str:
    secret = secret_file(tmp_path, "1nce-secret", fake.client_secret)
    return f"""
[[sources.http]]
name = "1nce"
adapter = "1nce"
base_url = "{base_url}/management-api"
auth = {{ kind = "client_credentials", client_id = "{fake.client_id}", \
client_secret_file = "{secret}" }}
poll_interval_s = 2
page_size = 1000
initial_lookback_s = {4 * 86_400}
"""


async def assert_verdicts(port: int, token: str, log: Path) -> None:
    async def group_incident() -> list[dict[str, Any]]:
        return await group_incidents(port, token)

    incidents = await until(group_incident, 240, "a group incident", log, interval_s=1.0)
    assert [i["dims"] for i in incidents] == [{"partner": "26202"}]

    status = await api(port, "/api/v1/status", token)
    assert status is not None
    assert status["sims"] == SIMS

    await assert_partner_scenario(
        port,
        token,
        incidents[0]["id"],
        healthy=iccid(HEALTHY_SIM),
        quota=iccid(QUOTA_SIM),
        outage=iccid(OUTAGE_SIM),
    )


async def test_1nce_polled_v2_events_to_states_diagnosis_and_incident(tmp_path: Path) -> None:
    # newest first: the order of v2 events is UNCONFIRMED (PLATFORMS.md 2.2); the poller
    # hands each SIM's events over in time order either way (``in_time_order``)
    fake = FakeOnce(sims=build_sims(time.time()), v2_newest_first=True)
    port = free_port()
    log = tmp_path / "simwatch.log"
    async with serve(fake.app()) as base_url:
        source = once_source(tmp_path, base_url, fake)
        process = start_simwatch(write_config(tmp_path, port, source), log)
        try:
            token = await ready_token(tmp_path, log)

            def polled_twice() -> bool:  # every SIM's history read, and read again
                seen = Counter(r.path for r in fake.requests if "/v2/" in r.path)
                return len(seen) == SIMS and min(seen.values()) >= 2

            await until(polled_twice, 240, "two rounds of polls", log, interval_s=0.5)
            await assert_verdicts(port, token, log)
            # the access token (3600 s) was asked once, at most once more: never in a loop
            assert 1 <= len([r for r in fake.requests if r.path == TOKEN_PATH]) <= 2
            assert fake.gets("/management-api/v1/sims")  # the fleet was discovered
            events = [r for r in fake.requests if r.path.startswith("/management-api/v2/")]
            assert {r.path.split("/")[4] for r in events} == {iccid(k) for k in range(SIMS)}
            assert all(r.auth == f"Bearer {JWT}" for r in events)
        finally:
            await asyncio.to_thread(stop_process, process, 15.0)
