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
and the platform's authentication was asked a bounded number of times.
"""

from __future__ import annotations

import asyncio
import copy
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
import pytest
from cmp_fakes_platforms import FakeEmnify, example, serve
from mosquitto import free_port, stop_process
from servers import api_token, http_get, start_simwatch, until

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.real_server  # ``simwatch`` processes

SIMS = 60
HISTORY_S = 3 * 86_400
OUTAGE_S = 90 * 60  # the SIMs on 26202 stopped this long before now
QUOTA_S = 3 * 3600  # the no-quota SIM's sessions are refused this long before now
QUOTA_SIM = 0  # a SIM on 26201
HEALTHY_SIM = 2  # another SIM on 26201
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


class History:
    """Events in the documented shapes, varied per SIM and time; ids grow with time."""

    def __init__(self) -> None:
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
                rx, tx = 0.01 + (n % 7) * 0.001, 0.002 + (k % 5) * 0.001
                detail["volume"] = {"total": rx + tx, "rx": rx, "tx": tx}
            self.pending.append((ts, event))

    def rejected(self, k: int, ts: float) -> None:
        self.pending.append((ts, self._event(self.no_quota, k, ts)))

    def events(self) -> list[dict[str, object]]:
        self.pending.sort(key=lambda pair: pair[0])
        out = []
        for i, (_ts, event) in enumerate(self.pending):
            event["id"] = 7_000_000_000 + i
            out.append(event)
        return out


def build_history(now: float) -> list[dict[str, object]]:
    history = History()
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


def write_config(tmp_path: Path, base_url: str, token: str, port: int) -> Path:
    token_file = tmp_path / "emnify-token"
    token_file.write_text(token + "\n", encoding="utf-8")
    token_file.chmod(0o600)
    config = tmp_path / "simwatch.toml"
    config.write_text(
        f"""
state_dir = "{tmp_path / "state"}"
[engine]
eval_interval_s = 60
warmup_s = 43200
dead_letter_file = "{tmp_path / "dl.ndjson"}"
[http]
port = {port}
[[sources.http]]
name = "emnify"
adapter = "emnify"
base_url = "{base_url}"
auth = {{ kind = "emnify", application_token_file = "{token_file}" }}
poll_interval_s = 2
page_size = {EVENTS_PER_PAGE}
initial_lookback_s = {4 * 86_400}
""",
        encoding="utf-8",
    )
    return config


async def api(port: int, path: str, token: str) -> Any:
    status, body = await asyncio.to_thread(http_get, f"http://127.0.0.1:{port}{path}", 5.0, token)
    return orjson.loads(body) if status == 200 else None


async def test_emnify_history_to_states_diagnosis_and_incident(tmp_path: Path) -> None:
    now = time.time()
    fake = FakeEmnify(events=build_history(now), max_per_page=EVENTS_PER_PAGE)
    port = free_port()
    log = tmp_path / "simwatch.log"
    async with serve(fake.app()) as base_url:
        config = write_config(tmp_path, base_url, fake.application_token, port)
        process = start_simwatch(config, log)
        try:
            state_dir = tmp_path / "state"
            await until((state_dir / "api-token").exists, 60, "the API token", log)
            token = api_token(state_dir)

            async def group_incident() -> list[dict[str, Any]]:
                doc = await api(port, "/api/v1/incidents?state=open", token)
                items = [] if doc is None else doc["incidents"]
                return [i for i in items if i.get("kind") == "group"]

            incidents = await until(group_incident, 240, "a group incident", log, interval_s=1.0)
            assert [i["dims"] for i in incidents] == [{"partner": "26202"}]

            healthy = await api(port, f"/api/v1/sims/{with_luhn(iccid(HEALTHY_SIM))}", token)
            assert healthy is not None
            assert healthy["iccid"] == iccid(HEALTHY_SIM)  # the platform's form, asked by the other
            assert healthy["state"] == "ok", healthy
            assert healthy["session"]["partner"] == "26201"
            assert healthy["incident"] is None

            quota = await api(port, f"/api/v1/sims/{iccid(QUOTA_SIM)}", token)
            assert quota is not None
            codes = [f["code"] for f in quota["diagnosis"]]
            assert codes[0] == "quota_exhausted", quota["diagnosis"]
            assert "quota" in quota["diagnosis"][0]["hint"]
            assert quota["session"]["partner"] == "26201"

            outage = await api(port, f"/api/v1/sims/{iccid(1)}", token)
            assert outage is not None
            assert outage["session"]["partner"] == "26202"
            assert outage["incident"] is not None
            assert outage["incident"]["id"] == incidents[0]["id"]

            # the JWT was asked once (at most once more, on a renewal): never in a loop
            assert 1 <= len([r for r in fake.requests if r.path == "/api/v1/authenticate"]) <= 2
            assert all(
                r.auth is not None and r.auth.startswith("Bearer ")
                for r in fake.gets("/api/v1/event")
            )
        finally:
            await asyncio.to_thread(stop_process, process, 15.0)
