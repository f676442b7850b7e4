"""End to end per platform: a platform's records in through ``simwatch run``, the verdicts out.

emnify (PLATFORMS.md 1.1 authentication, 1.2 ``GET /api/v1/event``, 1.3 event types): the
fake of ``cmp_fakes_platforms`` (JWT auth enforced, documented paging) serves three days of
history built from the documented examples (``tests/data/cmp/emnify-event-*.json``, ids,
times, SIMs and visited networks varied): 60 SIMs around the clock, half on partner 26201,
half on 26202, each with an accepted PDP context (type 3) and its deletion with volume
(type 5) every 15 to 25 minutes. The SIMs on 26202 stop 90 minutes before now (a partner
outage); one SIM on 26201 gets the documented "rejected, because endpoint has no quota"
PDP context events instead of sessions for its last three hours.

A real ``simwatch run`` polls the fake (``[[sources.http]] adapter = "emnify"``); then over
its HTTP API: a healthy SIM is ok on partner 26201 (asked by either ICCID form), the
no-quota SIM is diagnosed ``quota_exhausted``, a group incident is open on partner 26202,
and the platform's authentication was asked a bounded number of times. The same history
pushed the way the Data Streamer does (PLATFORMS.md 1.5: bulk arrays of events, and usage
records like ``emnify-ds-usage-data.json`` whose ICCID has 20 digits) to a
``[[sources.webhook]] format = "emnify"`` gives the same verdicts, with one SIM per card.

Everything is relative to the wall clock at the start, and every SIM reports day and night
alike: nothing depends on the date or the hour.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
import pytest
from cmp_fakes import example, serve
from cmp_fakes_platforms import JWT, FakeEmnify
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

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.real_server  # ``simwatch`` processes

SIMS = 60
HISTORY_S = 3 * 86_400
OUTAGE_S = 90 * 60  # the SIMs on 26202 stopped this long before now
QUOTA_S = 3 * 3600  # the no-quota SIM's sessions are refused this long before now
QUOTA_SIM = 0  # a SIM on 26201
HEALTHY_SIM = 2  # another SIM on 26201
PUSH_CHUNK = 250  # items per bulk push (under 1 MB: aiohttp warns about larger raw bodies)
EVENTS_PER_PAGE = 1000  # /api/v1/endpoint was recorded sending 1000 a page (PLATFORMS.md 1.2)


def iccid(k: int) -> str:
    """19 digits, without the Luhn check digit (as emnify gives them, PLATFORMS.md 1.3)."""
    return f"894902000000{k:07d}"


def with_luhn(digits: str) -> str:
    """The 20-digit form printed on the card (ITU-T E.118 Luhn check digit)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:  # doubled: the check digit will sit to the right of these
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return digits + str((10 - total % 10) % 10)


def partner(k: int) -> str:
    return "02" if k % 2 else "01"  # odd SIMs on 26202, even on 26201


def stamp(ts: float) -> str:
    """The examples' timestamp form, ``2021-10-27T08:38:02.000Z``."""
    return datetime.fromtimestamp(int(ts), tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def volume(k: int, n: int) -> dict[str, float]:
    """A session's volume in MB, as the examples give it."""
    rx, tx = 0.01 + (n % 7) * 0.001, 0.002 + (k % 5) * 0.001
    return {"total": rx + tx, "rx": rx, "tx": tx}


class History:
    """Events in the documented shapes, varied per SIM and time; ids grow with time."""

    def __init__(self, *, usage: bool) -> None:
        self.usage = usage  # the Data Streamer's usage record of each session, too
        self.usage_record = example("emnify-ds-usage-data.json")[0]
        self.accepted = example("emnify-event-create-pdp-context-accepted.json")
        self.deleted = example("emnify-event-delete-pdp-context.json")
        self.no_quota = example("emnify-event-create-pdp-context-rejected-no-quota.json")
        self.pending: list[tuple[float, dict[str, Any]]] = []

    def _event(self, template: dict[str, Any], k: int, ts: float) -> dict[str, Any]:
        event = copy.deepcopy(template)
        event["timestamp"] = stamp(ts)
        event["sim"]["iccid"] = iccid(k)
        event["sim"]["id"] = 100_000 + k
        event["endpoint"]["id"] = 200_000 + k
        event["endpoint"]["name"] = f"meter {k}"
        event["imsi"]["imsi"] = f"2620{partner(k)}{k:09d}"
        return event

    def session(self, k: int, start: float, n: int) -> None:
        session_id = f"s-{k}-{n}"
        for template, ts in ((self.accepted, start), (self.deleted, start + 90)):
            event = self._event(template, k, ts)
            detail = event["detail"]
            detail["session_id"] = session_id
            detail["pdp_context"]["mcc"] = "262"
            detail["pdp_context"]["mnc"] = partner(k)
            detail["pdp_context"]["apn"] = "em"
            detail["country"]["mcc"] = "262"
            if "volume" in detail:
                detail["volume"] = volume(k, n)
            self.pending.append((ts, event))
        if self.usage:
            record = copy.deepcopy(self.usage_record)
            record["start_timestamp"] = stamp(start).replace(".000Z", "Z")
            record["end_timestamp"] = stamp(start + 90)
            record["sim"]["iccid"] = with_luhn(iccid(k))  # 20 digits, as in the example
            record["sim"]["id"] = 100_000 + k
            record["endpoint"]["id"] = 200_000 + k
            record["operator"]["mnc"] = partner(k)
            record["session_id"] = session_id
            record["volume"] = volume(k, n)
            self.pending.append((start + 90, record))

    def rejected(self, k: int, ts: float) -> None:
        self.pending.append((ts, self._event(self.no_quota, k, ts)))

    def events(self) -> list[dict[str, object]]:
        self.pending.sort(key=lambda pair: pair[0])
        out = []
        for i, (_ts, event) in enumerate(self.pending):
            event["id"] = 7_000_000_000 + i
            out.append(event)
        return out


def build_history(now: float, *, usage: bool = False) -> list[dict[str, object]]:
    """The scenario's items, oldest first (with ``usage``: Data Streamer usage records too)."""
    history = History(usage=usage)
    for k in range(SIMS):
        period = 900.0 + (k % 3) * 300.0  # 15, 20 or 25 minutes, day and night alike
        t, n = now - HISTORY_S + (k * 37) % 900, 0
        stop = now - OUTAGE_S if partner(k) == "02" else now - 120
        while t + 90 < stop:
            if k == QUOTA_SIM and t > now - QUOTA_S:
                history.rejected(k, t)
            else:
                history.session(k, t, n)
            t += period
            n += 1
    return history.events()


def poll_source(tmp_path: Path, base_url: str, token: str) -> str:
    token_file = secret_file(tmp_path, "emnify-token", token)
    return f"""
[[sources.http]]
name = "emnify"
adapter = "emnify"
base_url = "{base_url}"
auth = {{ kind = "emnify", application_token_file = "{token_file}" }}
poll_interval_s = 2
page_size = {EVENTS_PER_PAGE}
initial_lookback_s = {4 * 86_400}
"""


async def assert_verdicts(port: int, token: str, log: Path) -> None:
    """What the scenario must give, whichever way the records came."""

    async def group_incident() -> list[dict[str, Any]]:
        return await group_incidents(port, token)

    incidents = await until(group_incident, 240, "a group incident", log, interval_s=1.0)
    assert [i["dims"] for i in incidents] == [{"partner": "26202"}]

    # one SIM per card whichever ICCID form its records carry, found by either form
    status = await api(port, "/api/v1/status", token)
    assert status is not None
    assert status["sims"] == SIMS
    healthy = await api(port, f"/api/v1/sims/{with_luhn(iccid(HEALTHY_SIM))}", token)
    assert healthy is not None
    same = await api(port, f"/api/v1/sims/{iccid(HEALTHY_SIM)}", token)
    assert same is not None
    assert healthy["iccid"] == same["iccid"]
    assert healthy["iccid"] in {iccid(HEALTHY_SIM), with_luhn(iccid(HEALTHY_SIM))}
    await assert_partner_scenario(
        port,
        token,
        incidents[0]["id"],
        healthy=iccid(HEALTHY_SIM),
        quota=iccid(QUOTA_SIM),
        outage=iccid(1),
    )


async def test_emnify_polled_history_to_states_diagnosis_and_incident(tmp_path: Path) -> None:
    fake = FakeEmnify(events=build_history(time.time()), max_per_page=EVENTS_PER_PAGE)
    port = free_port()
    log = tmp_path / "simwatch.log"
    async with serve(fake.app()) as base_url:
        source = poll_source(tmp_path, base_url, fake.application_token)
        process = start_simwatch(write_config(tmp_path, port, source), log)
        try:
            await assert_verdicts(port, await ready_token(tmp_path, log), log)
            # the JWT was asked once (at most once more, on a renewal): never in a loop
            assert 1 <= len([r for r in fake.requests if r.path == "/api/v1/authenticate"]) <= 2
            assert fake.gets("/api/v1/event")
            assert all(r.auth == f"Bearer {JWT}" for r in fake.gets("/api/v1/event"))
        finally:
            await asyncio.to_thread(stop_process, process, 15.0)


async def test_emnify_data_streamer_push_to_states_diagnosis_and_incident(
    tmp_path: Path,
) -> None:
    """The same history pushed as the Data Streamer does (PLATFORMS.md 1.5): bulk JSON
    arrays of events and usage records (the usage records with 20-digit ICCIDs, as in
    the example) to ``POST /api/v1/ingest/{name}`` of a ``format = "emnify"`` source."""
    items = build_history(time.time(), usage=True)
    port = free_port()
    log = tmp_path / "simwatch.log"
    source = '[[sources.webhook]]\nname = "emnify-stream"\nformat = "emnify"\n'
    process = start_simwatch(write_config(tmp_path, port, source), log)
    try:
        token = await ready_token(tmp_path, log)
        url = f"http://127.0.0.1:{port}/api/v1/ingest/emnify-stream"
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        async with aiohttp.ClientSession() as client:

            async def push(chunk: list[dict[str, object]]) -> bool:
                try:
                    async with client.post(url, data=orjson.dumps(chunk), headers=headers) as r:
                        return r.status == 200
                except aiohttp.ClientConnectionError:
                    return False  # not listening yet

            for i in range(0, len(items), PUSH_CHUNK):
                chunk = items[i : i + PUSH_CHUNK]
                await until(functools.partial(push, chunk), 60, f"push of items {i}..", log)
        await assert_verdicts(port, token, log)
    finally:
        await asyncio.to_thread(stop_process, process, 15.0)
