"""End to end, Hologram (PLATFORMS.md 6): per-session usage records in through ``simwatch
run``, SIM states, partners, diagnosis and a group incident out.

The fake of ``cmp_fakes_more`` (HTTP Basic ``apikey:<key>`` enforced, ``/api/1/usage/data``
newest first with cursor paging: ``continues``, ``lastid``, ``links.next``, ``startafter``;
``timestart`` honoured) serves three days of session records for 40 SIMs built from the
documented example (``tests/data/cmp/hologram-usage-data-page.json``: its fields, zone-less
``YYYY-MM-DD HH:MM:SS`` times; ``record_id`` growing with time, the ``sim`` field carrying
the ICCID). A record exists once its session ended (the record's ``timestamp`` is the
session's end). Each SIM has a 5-minute session every 15, 20 or 25 minutes, day and night.
Even SIMs are on ``network_name`` ``NTT docomo`` (the operator table's 440 10) and report
until now; odd SIMs are on ``Rakuten Mobile`` (440 11) and stop 90 minutes before now (a
partner outage).

``simwatch run`` polls it with ``initial_lookback_s`` of 4 days (``timestart`` before the
history; the first poll pages the whole history down, 250 a page, and hands it over oldest
first), ``warmup_s`` 12 h, cycles every 60 s. Asserted over its HTTP API, once a cycle has
seen every SIM: 20 SIMs ok and 20 late or silent; exactly one open group incident, on
``{"partner": "44011"}``; every SIM with its last data at the end of its last session, on
its partner (44010 / 44011, resolved from the network name), RAT ``LTE``, its rhythm
learned; the healthy SIMs ``ok`` (diagnosis ``ok``) in no incident; every stopped SIM
late or silent, its ``incident`` that group incident and its first diagnosis
``group_incident``.

Everything is relative to the wall clock at the start: nothing depends on the date or hour.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest
from cmp_fakes import example, serve_handler
from cmp_fakes_more import FakeHologram
from e2e_support import api, half_failed_incidents, ready_token, secret_file, write_config
from mosquitto import free_port, stop_process
from servers import start_simwatch, until

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.real_server  # ``simwatch`` processes

SIMS = 40
HISTORY_S = 3 * 86_400
OUTAGE_S = 90 * 60  # the odd SIMs (partner 44011) stopped this long before now
SESSION_S = 300
EXAMPLE = example("hologram-usage-data-page.json")["data"][0]


def iccid(k: int) -> str:
    return f"891234000001{k:07d}"


def network(k: int) -> str:
    return "Rakuten Mobile" if k % 2 else "NTT docomo"


def stamp(ts: float) -> str:
    """The example's zone-less form, ``2025-09-19 16:45:18`` (UTC)."""
    return datetime.fromtimestamp(int(ts), tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def session_ends(k: int, now: float) -> list[float]:
    """When SIM ``k``'s sessions end, oldest first: every 15, 20 or 25 minutes, day and
    night, for ``HISTORY_S``; the even SIMs until now (SIM 0's last one 10 s ago), the odd
    ones until ``OUTAGE_S`` before now."""
    period = 900.0 + (k % 3) * 300.0
    last = (now - OUTAGE_S if k % 2 else now) - 10 - (k * 37) % 300
    count = int((last - (now - HISTORY_S)) // period)
    return [last - i * period for i in range(count, -1, -1)]


def build(fake: FakeHologram, now: float) -> dict[int, str]:
    """The sessions, and each SIM's last session end (RFC 3339)."""
    last: dict[int, str] = {}
    sessions: list[tuple[float, dict[str, object]]] = []
    for k in range(SIMS):
        for end in session_ends(k, now):
            record = {
                **EXAMPLE,
                "linkid": 2_000_000 + k,
                "session_begin": stamp(end - SESSION_S),
                "timestamp": stamp(end),
                "bytes": 245_679 + k,
                "network_name": network(k),
                "sim": iccid(k),
            }
            sessions.append((end, record))
            last[k] = datetime.fromtimestamp(int(end), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    sessions.sort(key=lambda pair: pair[0])
    for i, (_end, record) in enumerate(sessions):
        record["record_id"] = 5_234_567_891 + i
        fake.sessions.append(record)
    return last


def config(tmp_path: Path, port: int, base_url: str, fake: FakeHologram) -> Path:
    key = secret_file(tmp_path, "hologram-api-key", fake.api_key)
    source = f"""
[[sources.http]]
name = "hologram"
adapter = "hologram"
base_url = "{base_url}"
auth = {{ kind = "basic", username = "apikey", password_file = "{key}" }}
poll_interval_s = 5
page_size = 250
rate_limit_per_s = 100
initial_lookback_s = {4 * 86_400}
"""
    return write_config(tmp_path, port, source)


async def assert_verdicts(port: int, token: str, log: Path, last: dict[int, str]) -> None:
    async def settled() -> list[dict[str, Any]]:
        return await half_failed_incidents(port, token, SIMS)

    incidents = await until(settled, 240, "SIM states and a group incident", log, interval_s=1.0)
    assert [i["dims"] for i in incidents] == [{"partner": "44011"}]

    for k in range(SIMS):
        sim = await api(port, f"/api/v1/sims/{iccid(k)}", token)
        assert sim is not None
        assert sim["last_data"] == last[k], (k, sim)
        assert sim["session"]["partner"] == ("44011" if k % 2 else "44010")
        assert sim["session"]["rat"] == "LTE"
        assert sim["rhythm"]["learned"] is True, (k, sim["rhythm"])
        if k % 2:  # stopped: late or silent on 44011, in the incident
            assert sim["state"] in {"late", "silent"}, sim
            assert sim["incident"] is not None, sim
            assert sim["incident"]["id"] == incidents[0]["id"]
            assert sim["diagnosis"][0]["code"] == "group_incident", sim["diagnosis"]
        else:
            assert sim["state"] == "ok", sim
            assert [f["code"] for f in sim["diagnosis"]] == ["ok"]
            assert sim["incident"] is None


async def test_hologram_sessions_to_states_partners_and_incident(tmp_path: Path) -> None:
    now = time.time()
    fake = FakeHologram()
    last = build(fake, now)
    port = free_port()
    log = tmp_path / "simwatch.log"
    async with serve_handler(fake.handle) as base_url:
        process = start_simwatch(config(tmp_path, port, base_url, fake), log)
        try:
            await assert_verdicts(port, await ready_token(tmp_path, log), log, last)
            assert fake.calls
            assert all(c.path == "/api/1/usage/data" for c in fake.calls)
            # the first poll asked for the whole history (initial_lookback_s, 4 days) and
            # paged it down with startafter, 250 at a time
            first = fake.calls[0].query
            assert int(first["timestart"]) <= now - HISTORY_S
            assert first["limit"] == "250"
            assert any("startafter" in c.query for c in fake.calls)
        finally:
            await asyncio.to_thread(stop_process, process, 15.0)
