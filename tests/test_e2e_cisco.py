"""End to end, Cisco IoT Control Center (PLATFORMS.md 3) through ``simwatch run``.

The fake of ``cmp_fakes_more`` (HTTP Basic user name + API key enforced; one call at a
time, an overlapping call answered 429 ``40000029``; ``devices?modifiedSince=`` paged,
``pageSize`` <= 50, 3.2) serves 40 SIMs. Cisco gives no MCC/MNC and no APN per session,
so the groups come from the inventory (FORMATS.md inventory: ``iccid``, ``customer``,
``apn``): half the SIMs belong to customer "acme" (APN ``acme.iot``), half to "globex"
(APN ``globex.iot``), and ``[engine] dims = ["customer"]``. The "globex" SIMs' last
session (``sessionInfo``) ended minutes ago and their ``ctdSessionCount`` rises at every
call; the "acme" SIMs' last session ended three hours ago and their count stays put.

Then over the HTTP API: every SIM is known; every "globex" SIM is ok; an "acme" SIM is
``never_seen`` (Cisco keeps no history: the first poll only sets the counters' marks,
and an "acme" counter never moves) with its three-hour-old session known and closed;
no group incident opens (no rhythm is learned within the test: docs/platforms.md,
Cisco, "No history"); and the fake never saw two calls overlap.
Everything is relative to the wall clock at the start.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest
from cmp_fakes import serve_handler
from cmp_fakes_more import FakeCisco
from e2e_support import api, group_incidents, inventory_file, ready_token, secret_file, write_config
from mosquitto import free_port, stop_process
from servers import start_simwatch, until

if TYPE_CHECKING:
    from pathlib import Path

    from aiohttp import web

pytestmark = pytest.mark.real_server  # ``simwatch`` processes

SIMS = 40
STOPPED_S = 3 * 3600  # the "acme" SIMs' last session ended this long before now


def iccid(k: int) -> str:
    return f"89011702{k:011d}"


def customer(k: int) -> str:
    return "acme" if k % 2 else "globex"  # odd SIMs stopped


def cisco_date(ts: float) -> str:
    """``sessionInfo``'s date form, ``2016-07-06 01:31:26.917`` (PLATFORMS.md 3)."""
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S.000")


class Rising(FakeCisco):
    """``ctdSessionCount`` of the "globex" SIMs rises by one at every ``ctdUsages`` call."""

    def route(self, request: web.Request) -> web.Response:
        parts = request.path.split("/")
        if len(parts) == 7 and parts[6] == "ctdUsages" and parts[5] in self.ctd:
            ctd = self.ctd[parts[5]]
            if customer(int(parts[5][-11:])) == "globex":
                ctd["ctdSessionCount"] = int(str(ctd["ctdSessionCount"])) + 1
                ctd["ctdDataUsage"] = int(str(ctd["ctdDataUsage"])) + 15_000
        return super().route(request)


def build_fake(now: float) -> FakeCisco:
    fake = Rising()
    for k in range(SIMS):
        end = now - STOPPED_S if customer(k) == "acme" else now - 180 - k
        fake.devices[iccid(k)] = "2024-01-01T00:00:00+00:00"
        fake.session[iccid(k)] = {
            "ipAddress": f"10.0.{k}.1",
            "dateSessionStarted": cisco_date(end - 90),
            "dateSessionEnded": cisco_date(end),
        }
        fake.ctd[iccid(k)] = {"ctdDataUsage": 1_000_000 + k, "ctdSessionCount": 100 + k}
    return fake


def config(tmp_path: Path, port: int, base_url: str, fake: FakeCisco) -> Path:
    rows = [f"{iccid(k)},{customer(k)},{customer(k)}.iot" for k in range(SIMS)]
    inventory = inventory_file(tmp_path, "iccid,customer,apn", rows)
    key = secret_file(tmp_path, "cisco-key", fake.api_key)
    source = f"""
[[sources.http]]
name = "cisco"
adapter = "cisco"
base_url = "{base_url}"
auth = {{ kind = "basic", username = "{fake.user}", password_file = "{key}" }}
poll_interval_s = 2
"""
    # no history to catch up: short cycles, so the first live one comes soon
    return write_config(
        tmp_path, port, source, warmup_s=3600, eval_interval_s=10, inventory=inventory
    )


async def test_cisco_polled_sessions_to_states(tmp_path: Path) -> None:
    fake_now = time.time()
    fake = build_fake(fake_now)
    port = free_port()
    log = tmp_path / "simwatch.log"
    async with serve_handler(fake.handle) as base_url:
        process = start_simwatch(config(tmp_path, port, base_url, fake), log)
        try:
            token = await ready_token(tmp_path, log)

            def polled_twice() -> bool:  # the marks set, then a second round of calls
                done = [c for c in fake.calls if c.path.endswith("/ctdUsages")]
                return len(done) >= 2 * SIMS

            await until(polled_twice, 120, "two rounds of polls", log, interval_s=0.5)

            status = await api(port, "/api/v1/status", token)
            assert status is not None
            assert status["sims"] == SIMS

            async def evaluated() -> dict[str, Any] | None:  # an evaluation after the polls
                doc = await api(port, f"/api/v1/sims/{iccid(0)}", token)
                return doc if doc is not None and doc["state"] != "never_seen" else None

            healthy = await until(evaluated, 150, "an evaluation of the SIMs", log, interval_s=1.0)
            assert healthy["state"] == "ok", healthy
            assert healthy["customer"] == "globex"
            assert healthy["session"]["open"] is False
            stopped = await api(port, f"/api/v1/sims/{iccid(1)}", token)
            assert stopped is not None
            assert stopped["customer"] == "acme"
            # Cisco keeps no history: data is seen from the second poll on, and the
            # counter of an "acme" SIM never moved (docs/platforms.md, Cisco "No history")
            assert stopped["state"] == "never_seen", stopped
            assert stopped["last_data"] is None
            # ... but its last session, three hours old, is known and closed
            started = datetime.fromisoformat(stopped["session"]["started"])
            assert abs(started.timestamp() - (fake_now - STOPPED_S - 90)) <= 1.0
            assert stopped["session"]["open"] is False
            status = await api(port, "/api/v1/status", token)
            assert status is not None
            assert status["states"]["ok"] == SIMS // 2, status  # every "globex" SIM
            assert status["states"]["never_seen"] == SIMS // 2, status
            (source,) = status["sources"]
            assert source["errors"] == 0, source
            assert source["rejected"] == {}, source
            # no group incident: no rhythm is learned yet (docs/platforms.md, Cisco)
            assert await group_incidents(port, token) == []
            assert fake.overlaps == 0  # "one API call at a time" (PLATFORMS.md 3.2)
        finally:
            await asyncio.to_thread(stop_process, process, 15.0)
