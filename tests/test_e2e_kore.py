"""End to end, KORE Super SIM (PLATFORMS.md 4): hourly usage records in through ``simwatch
run``, SIM states, hourly rhythms and inventory customers out.

The fake of ``cmp_fakes_more`` (OAuth2 client credentials as a form at the token endpoint,
``Authorization: Bearer`` enforced, ``/v1/Sims`` and ``/v1/UsageRecords`` paged by
``meta.next_page_url`` with ``PageToken``, ``PageSize`` <= 249, hour windows <= 31 days)
serves 40 SIMs in the shape of the documented Sim resource list
(``tests/data/cmp/kore-supersim-sims-page.json``) and three days of hourly usage records
grouped by SIM in the shape of ``kore-supersim-usage-records-day-sim-filter.json``. Each SIM
sends every 15, 20 or 25 minutes, day and night, so each hour's totals grow while the hour
runs; the odd SIMs stop 5 hours before now (past their learned hourly rhythm: late after
about 2 h). KORE's usage records carry no network (``network_sid``, ``iso_country`` null),
so the groups come from an inventory CSV (FORMATS.md, "Inventory"): even SIMs belong to
customer ``acme-meters``, odd SIMs to ``globex-trackers`` (``[engine] dims =
["customer"]``). The fake serves the records newest hour first, as the documented example
lists them (PLATFORMS.md gives no order): the poller hands them over in time order.

``simwatch run`` polls it with ``initial_lookback_s`` of 4 days (the first
``/v1/UsageRecords`` call starts before the history), ``warmup_s`` 12 h, cycles every 60 s.
Asserted over its HTTP API: every SIM in the inventory with its customer and no partner;
every SIM's rhythm learned as one record an hour (the engine stamps an hourly record with
the hour's end); a healthy SIM ``ok`` with its data up to the last hour that ended; every
stopped SIM late or silent, its last data the end of its last hour, and part of the one
group incident, on ``{"customer": "globex-trackers"}``; the OAuth token asked once (at
most twice). The running hour's record ends at the poll (its hour ends in the future).

Everything is relative to the wall clock at the start: nothing depends on the date or hour.
"""

from __future__ import annotations

import asyncio
import copy
import math
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest
from cmp_fakes import example, serve_handler
from cmp_fakes_more import TOKEN_PATH, FakeKore
from e2e_support import (
    api,
    group_incidents,
    inventory_file,
    ready_token,
    secret_file,
    write_config,
)
from mosquitto import free_port, stop_process
from servers import start_simwatch, until

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.real_server  # ``simwatch`` processes

SIMS = 40
HISTORY_S = 3 * 86_400
OUTAGE_S = 5 * 3600  # the odd SIMs (globex-trackers) stopped this long before now
HOUR_S = 3600
SIM_PAGE = example("kore-supersim-sims-page.json")["sims"][0]
USAGE = example("kore-supersim-usage-records-day-sim-filter.json")["usage_records"][0]


def iccid(k: int) -> str:
    return f"8988307000012{k:07d}"


def sid(k: int) -> str:
    return f"HS{k:032x}"


def customer(k: int) -> str:
    return "globex-trackers" if k % 2 else "acme-meters"


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(int(ts), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def report_times(k: int, now: float) -> list[float]:
    """When SIM ``k`` sends data, oldest first: every 15, 20 or 25 minutes, day and night,
    for ``HISTORY_S``; the even SIMs until now, the odd ones until ``OUTAGE_S`` before now."""
    period = 900.0 + (k % 3) * 300.0
    last = (now - OUTAGE_S if k % 2 else now) - 10 - (k * 37) % 300
    count = int((last - (now - HISTORY_S)) // period)
    return [last - i * period for i in range(count, -1, -1)]


def build(fake: FakeKore, now: float, *, newest_first: bool = False) -> dict[int, float]:
    """The SIMs and their hourly usage records (hour by hour, oldest first unless
    ``newest_first``; the SIMs of an hour in list order); each SIM's last report time."""
    last: dict[int, float] = {}
    records: list[tuple[int, int, dict[str, object]]] = []
    for k in range(SIMS):
        fake.sims.append({**SIM_PAGE, "sid": sid(k), "iccid": iccid(k), "status": "active"})
        hours: dict[int, tuple[int, int]] = {}
        for t in report_times(k, now):
            hour = math.floor(t / HOUR_S) * HOUR_S
            up, down = hours.get(hour, (0, 0))
            hours[hour] = (up + 1200 + k, down + 340)
            last[k] = t
        for hour, (up, down) in hours.items():
            rec = copy.deepcopy(USAGE)
            rec["sim_sid"] = sid(k)
            rec["period"] = {"start_time": rfc3339(hour), "end_time": rfc3339(hour + HOUR_S)}
            rec["data_upload"], rec["data_download"], rec["data_total"] = up, down, up + down
            records.append((hour, k, rec))
    records.sort(key=lambda item: (-item[0] if newest_first else item[0], item[1]))
    fake.usage.extend(rec for _hour, _k, rec in records)
    return last


def config(tmp_path: Path, port: int, base_url: str, fake: FakeKore) -> Path:
    secret = secret_file(tmp_path, "kore-client-secret", fake.client_secret)
    rows = [f"{iccid(k)},{customer(k)},iot.kore,active" for k in range(SIMS)]
    inventory = inventory_file(tmp_path, "iccid,customer,apn,status", rows)
    source = f"""
[[sources.http]]
name = "kore"
adapter = "kore"
base_url = "{base_url}"
auth = {{ kind = "client_credentials", client_id = "{fake.client_id}", \
client_secret_file = "{secret}", token_url = "{base_url}{TOKEN_PATH}" }}
poll_interval_s = 30
page_size = 249
rate_limit_per_s = 100
initial_lookback_s = {4 * 86_400}
"""
    return write_config(tmp_path, port, source, inventory=inventory)


def parse(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


async def assert_verdicts(
    port: int, token: str, log: Path, now: float, last: dict[int, float]
) -> None:
    async def evaluated() -> dict[str, int] | None:
        doc = await api(port, "/api/v1/status", token)
        if doc is None or doc["sims"] != SIMS or doc["evaluated_at"] is None:
            return None
        if parse(doc["evaluated_at"]) < now - 120:  # a cycle of the history's catch-up
            return None
        states: dict[str, int] = doc["states"]
        if states["ok"] != SIMS // 2 or states["late"] + states["silent"] != SIMS // 2:
            return None
        return states

    await until(evaluated, 150, "every SIM's usage evaluated", log, interval_s=1.0)

    async def group_incident() -> list[dict[str, Any]]:
        return await group_incidents(port, token)

    (incident,) = await until(group_incident, 150, "a group incident", log, interval_s=1.0)
    assert incident["dims"] == {"customer": "globex-trackers"}
    for k in range(SIMS):
        sim = await api(port, f"/api/v1/sims/{iccid(k)}", token)
        assert sim is not None
        assert sim["in_inventory"] is True
        assert sim["customer"] == customer(k)
        assert sim["session"]["partner"] is None  # usage records name no network
        rhythm = sim["rhythm"]  # one record an hour, stamped with the hour's end
        assert rhythm["learned"] is True, (k, rhythm)
        # (the running hour's record ends at the poll: the last gap may be shorter)
        assert abs(rhythm["typical_gap_s"] - HOUR_S) < 0.1 * HOUR_S, (k, rhythm)
        if k % 2:  # stopped: data until the end of its last hour, then past its rhythm
            end = math.floor(last[k] / HOUR_S) * HOUR_S + HOUR_S
            assert parse(sim["last_data"]) == end, (k, sim)
            assert sim["state"] in {"late", "silent"}, sim
            assert sim["silent_for_s"] > rhythm["late_after_s"], sim
            assert sim["incident"] is not None, sim
            assert sim["incident"]["id"] == incident["id"]
            assert sim["diagnosis"][0]["code"] == "group_incident"
        else:  # the last hour that ended (the running hour may not count yet)
            assert parse(sim["last_data"]) >= math.floor(now / HOUR_S) * HOUR_S, sim
            assert sim["state"] == "ok", sim
            assert [f["code"] for f in sim["diagnosis"]] == ["ok"]
            assert sim["incident"] is None


async def test_kore_hourly_usage_to_states_and_customers(tmp_path: Path) -> None:
    now = time.time()
    fake = FakeKore()
    last = build(fake, now, newest_first=True)  # the documented example's order
    port = free_port()
    log = tmp_path / "simwatch.log"
    async with serve_handler(fake.handle) as base_url:
        fake.url = base_url
        process = start_simwatch(config(tmp_path, port, base_url, fake), log)
        try:
            await assert_verdicts(port, await ready_token(tmp_path, log), log, now, last)
            # the token was asked once (at most once more, on a renewal): never in a loop
            grants = [c for c in fake.calls if c.path == TOKEN_PATH]
            assert 1 <= len(grants) <= 2
            usage_calls = [c for c in fake.calls if c.path == "/v1/UsageRecords"]
            assert all(c.query["Group"] == "sim" for c in usage_calls)
            # the first poll read the whole history (initial_lookback_s, 4 days back)
            assert parse(usage_calls[0].query["StartTime"]) <= now - HISTORY_S
        finally:
            await asyncio.to_thread(stop_process, process, 15.0)
