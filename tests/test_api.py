"""The HTTP API over a small real engine: SIM views, lists, groups, incidents, auth, schema.

One fleet is built once per module by sending FORMATS.md records through the real
decoder and evaluating on the records' clock:

* 30 SIMs report every 15 minutes for two days: 10 on KPN (NL, 20408), 10 on Telefonica
  (DE, 26203), 10 on Vodafone (DE, 26202); SIM 27 is suspended, SIM 28 is tagged vip,
  SIMs 20-29 belong to customer "beta"; SIM 30 is in the inventory but never reports.
* phase B: the KPN SIMs stop for 2 h (a group incident opens), phase C: they recover for
  1 h (it resolves), phase D: the Telefonica SIMs stop for 2 h (a second one opens).
  During phase D SIM 29 stops too, with authentication failures on the wrong APN, and the
  vip SIM 28 goes silent (a ticket).
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from fleet import DAY, T0
from fleet import ICCIDS as FLEET_ICCIDS
from hypothesis import given, settings
from hypothesis import strategies as st

from simwatch.core.engine import Engine, EngineConfig
from simwatch.core.inventory import InventoryRow
from simwatch.core.records import Record, RecordDecoder
from simwatch.core.timeutil import TimeParseError, format_rfc3339, parse_rfc3339
from simwatch.http.app import make_app, token_matches
from simwatch.http.openapi import openapi_document
from simwatch.http.views import (
    ViewError,
    _first_matches,
    current_states,
    decode_cursor,
    encode_cursor,
    groups_view,
    list_sims,
    sim_short,
    sim_shorts,
    sim_view,
    status_view,
)
from simwatch.shell.settings import HttpSettings, is_loopback

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

WALL = T0 + 30 * DAY
ICCIDS = list(FLEET_ICCIDS[:31])
NL, DE3, DE2 = ICCIDS[0:10], ICCIDS[10:20], ICCIDS[20:30]
NEVER_SEEN, SUSPENDED, VIP, WRONG_APN = ICCIDS[30], ICCIDS[27], ICCIDS[28], ICCIDS[29]
NETWORK = {
    **dict.fromkeys(NL, ("204", "08")),
    **dict.fromkeys(DE3, ("262", "03")),
    **dict.fromkeys(DE2, ("262", "02")),
}
LEARN_END = T0 + 2 * DAY
B_END = LEARN_END + 2 * 3600
C_END = B_END + 3600
NOW = C_END + 2 * 3600
TOKEN = "s3cret-token"
LOCAL = HttpSettings(auth="off")


def _every(start: float, end: float, step: float) -> Iterator[float]:
    t = start
    while t < end:
        yield t
        t += step


class Feed:
    """Builds FORMATS.md records and sends them through the real decoder."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.decoder = RecordDecoder()
        self.n = 0

    def send(self, obj: dict[str, object]) -> None:
        self.n += 1
        obj.setdefault("record_id", f"r-{self.n}")
        result = self.decoder.decode_line(orjson.dumps(obj), WALL)
        assert isinstance(result, Record), result
        self.engine.ingest_record(result)

    def usage(self, iccid: str, end: float) -> None:
        mcc, mnc = NETWORK[iccid]
        self.send({
            "kind": "usage", "iccid": iccid, "start": format_rfc3339(end - 60),
            "end": format_rfc3339(end), "bytes_up": 1200, "bytes_down": 300,
            "apn": "meters.acme", "mcc": mcc, "mnc": mnc, "rat": "LTE-M",
        })  # fmt: skip

    def reports(self, start: float, end: float, iccids: list[str]) -> None:
        """Every SIM of ``iccids`` reports every 15 minutes, evaluating every 5 minutes."""
        for t in _every(start, end, 300.0):
            if (t - T0) % 900 == 0:
                for i, iccid in enumerate(iccids):
                    self.usage(iccid, t + i)
            if t >= LEARN_END:
                self.engine.evaluate(t + 120)


def inventory_row(iccid: str) -> InventoryRow:
    k = ICCIDS.index(iccid)
    return InventoryRow(
        iccid=iccid,
        customer="beta" if 20 <= k < 30 else "acme",
        apns=("meters.acme",),
        data_cap_bytes=50_000_000 if k == 0 else None,
        status="suspended" if iccid == SUSPENDED else "active",
        tags=frozenset({"vip"}) if iccid == VIP else frozenset(),
    )


@pytest.fixture(scope="module")
def engine() -> Engine:
    eng = Engine(replace(EngineConfig(), warmup_s=0.0))
    eng.load_inventory(inventory_row(i) for i in ICCIDS)
    feed = Feed(eng)
    reporting = ICCIDS[:30]
    feed.reports(T0, LEARN_END, reporting)
    feed.reports(LEARN_END, B_END, [i for i in reporting if i not in NL])
    feed.reports(B_END, C_END, reporting)
    for k in range(6):
        feed.send({
            "kind": "event", "iccid": WRONG_APN, "ts": format_rfc3339(C_END + 600 + k * 300),
            "type": "auth_failure", "apn": "internet", "mcc": "262", "mnc": "02",
            "cause": "apn_not_allowed",
        })  # fmt: skip
    feed.reports(C_END, NOW, [i for i in reporting if i not in {*DE3, VIP, WRONG_APN}])
    eng.evaluate(NOW)
    return eng


@contextlib.asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async with TestClient(TestServer(app)) as client:
        yield client


async def metrics(_request: web.Request) -> web.Response:
    return web.Response(text="# HELP simwatch_up 1\n", content_type="text/plain")


def app_of(engine: Engine, settings: HttpSettings = LOCAL, **kw: object) -> web.Application:
    return make_app(engine, now=lambda: NOW, settings=settings, metrics_handler=metrics, **kw)  # type: ignore[arg-type]


@pytest.fixture
async def client(engine: Engine) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async with serve(app_of(engine)) as c:
        yield c


Client = TestClient[web.Request, web.Application]


async def get_json(client: Client, url: str, status: int = 200) -> dict[str, object]:
    response = await client.get(url)
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    body = await response.json()
    assert isinstance(body, dict)
    return body


async def error_of(client: Client, url: str, status: int) -> str:
    body = await get_json(client, url, status)
    error = body["error"]
    assert isinstance(error, dict)
    assert error["status"] == status
    assert "Traceback" not in error["message"]
    return str(error["message"])


# ---- one SIM ---------------------------------------------------------------------------


async def test_sim_view_explains_a_wrong_apn(client: Client) -> None:
    sim = await get_json(client, f"/api/v1/sims/{WRONG_APN}")
    assert sim["iccid"] == WRONG_APN
    assert sim["state"] == "silent"
    assert sim["status"] == "active"
    assert sim["customer"] == "beta"
    assert sim["allowed_apns"] == ["meters.acme"]
    last = parse_rfc3339(str(sim["last_data"]))
    assert C_END - 900 < last < C_END
    assert sim["silent_for_s"] == round(NOW - last)
    diagnosis = sim["diagnosis"]
    assert isinstance(diagnosis, list)
    wrong = next(f for f in diagnosis if f["code"] == "wrong_apn")
    assert wrong["severity"] == "critical"
    assert "'internet'" in wrong["hint"]
    assert "'meters.acme'" in wrong["hint"]
    assert sim["rejects"] == {
        "kind": "auth_failure",
        "at": format_rfc3339(C_END + 600 + 5 * 300),
        "count": 6,
        "apn": "internet",
        "cause": "apn_not_allowed",
    }
    session = sim["session"]
    assert isinstance(session, dict)
    assert session["partner"] == "26202"
    assert session["partner_name"] == "26202 (Vodafone Germany)"
    assert session["country"] == "DE"
    assert session["rat"] == "LTE-M"
    assert session["open"] is False
    rhythm = sim["rhythm"]
    assert isinstance(rhythm, dict)
    assert rhythm["learned"] is True
    assert 800 < float(rhythm["typical_gap_s"]) < 1000
    assert float(rhythm["late_after_s"]) < float(rhythm["silent_after_s"])
    usage = sim["usage_this_month"]
    assert isinstance(usage, dict)
    assert usage["bytes"] > 1500 * 4 * 24 * 2  # two days of 15-minute reports, in November
    assert usage["bytes"] % 1500 == 0
    assert usage["cap"] is None
    assert usage["share"] is None
    assert sim["incident"] is None  # its partner is fine


async def test_sim_view_of_a_sim_in_an_open_incident(client: Client, engine: Engine) -> None:
    sim = await get_json(client, f"/api/v1/sims/{DE3[0]}")
    incident = sim["incident"]
    assert isinstance(incident, dict)
    assert incident["state"] == "open"
    assert incident["dims"] == {"partner": "26203"}
    row = engine.state.row(DE3[0])
    found = engine.incident_of(row)
    assert found is not None
    assert incident["id"] == found.id
    diagnosis = sim["diagnosis"]
    assert isinstance(diagnosis, list)
    assert diagnosis[0]["code"] == "group_incident"


async def test_sim_view_capped_vip_suspended_and_never_seen(client: Client) -> None:
    capped = await get_json(client, f"/api/v1/sims/{NL[0]}")
    usage = capped["usage_this_month"]
    assert isinstance(usage, dict)
    assert usage["cap"] == 50_000_000
    assert usage["share"] == round(usage["bytes"] / 50_000_000, 4)
    vip = await get_json(client, f"/api/v1/sims/{VIP}")
    assert vip["tags"] == ["vip"]
    suspended = await get_json(client, f"/api/v1/sims/{SUSPENDED}")
    assert suspended["state"] == "inactive"
    assert suspended["status"] == "suspended"
    never = await get_json(client, f"/api/v1/sims/{NEVER_SEEN}")
    assert never["state"] == "never_seen"
    assert never["last_data"] is None
    assert never["silent_for_s"] is None
    assert never["session"] == {
        "open": False, "started": None, "apn": None, "partner": None,
        "partner_name": None, "country": None, "rat": None,
    }  # fmt: skip


async def test_errors_are_json(client: Client) -> None:
    assert "unknown SIM" in await error_of(client, f"/api/v1/sims/{'8' * 19}", 404)
    assert "ICCID" in await error_of(client, "/api/v1/sims/not-a-sim", 400)
    assert "ICCID" in await error_of(client, f"/api/v1/sims/{'1' * 23}", 400)
    assert "inc-9999" in await error_of(client, "/api/v1/incidents/inc-9999", 404)
    assert "openapi.json" in await error_of(client, "/api/v1/nothing-here", 404)
    for url, name in [
        ("/api/v1/sims?limit=0", "limit"),
        ("/api/v1/sims?limit=1001", "limit"),
        ("/api/v1/sims?limit=ten", "limit"),
        ("/api/v1/sims?state=sleepy", "state"),
        ("/api/v1/sims?cursor=%%%", "cursor"),
        ("/api/v1/sims?cursor=" + encode_cursor(10_000), "cursor"),
        ("/api/v1/sims?colour=red", "colour"),
        ("/api/v1/groups?dim=colour", "dim"),
        ("/api/v1/incidents?state=closed", "state"),
    ]:
        assert name in await error_of(client, url, 400), url
    response = await client.post("/api/v1/sims", data=b"{}")
    assert response.status == 405
    assert "GET" in response.headers["Allow"]
    assert (await response.json())["error"]["status"] == 405


# ---- the SIM list ----------------------------------------------------------------------


async def page_through(client: Client, query: str, limit: int) -> list[str]:
    seen: list[str] = []
    cursor: object = None
    pages = 0
    while True:
        url = f"/api/v1/sims?limit={limit}{query}" + (f"&cursor={cursor}" if cursor else "")
        page = await get_json(client, url)
        items = page["items"]
        assert isinstance(items, list)
        assert len(items) <= limit
        seen += [item["iccid"] for item in items]
        cursor = page["next_cursor"]
        pages += 1
        if cursor is None:
            return seen
        assert len(items) == limit
        assert pages < 100


async def test_pagination_visits_every_sim_once_in_row_order(client: Client) -> None:
    assert await page_through(client, "", 7) == ICCIDS
    assert await page_through(client, "", 31) == ICCIDS
    assert await page_through(client, "", 1000) == ICCIDS
    assert await page_through(client, "&country=DE", 3) == DE3 + DE2


async def test_list_filters(client: Client, engine: Engine) -> None:
    async def iccids(query: str) -> list[str]:
        return await page_through(client, query, 1000)

    assert await iccids("&partner=26203") == DE3
    assert await iccids("&country=NL") == NL
    assert await iccids("&customer=beta") == DE2
    assert await iccids("&state=silent") == [*DE3, VIP, WRONG_APN]
    assert await iccids("&state=silent&customer=beta") == [VIP, WRONG_APN]
    assert await iccids("&state=never_seen") == [NEVER_SEEN]
    assert await iccids("&state=inactive") == [SUSPENDED]
    assert await iccids("&apn=meters.acme&state=ok") == [
        i for i in ICCIDS if i not in {*DE3, VIP, WRONG_APN, SUSPENDED, NEVER_SEEN}
    ]
    assert await iccids("&partner=99999") == []
    assert await iccids("&partner=") == ICCIDS  # an empty value filters nothing
    page = await get_json(client, f"/api/v1/sims?partner=26202&limit=1&cursor={encode_cursor(21)}")
    assert page["items"] == [
        {
            "iccid": DE2[1], "state": "ok", "status": "active", "customer": "beta",
            "apn": "meters.acme", "country": "DE", "partner": "26202",
            "last_data": page["items"][0]["last_data"],  # type: ignore[index]
            "silent_for_s": page["items"][0]["silent_for_s"],  # type: ignore[index]
        }
    ]  # fmt: skip
    assert page["next_cursor"] == encode_cursor(22)
    # The state filter uses the last evaluation, not the columns' newest data.
    evaluation = engine.last_evaluation
    assert evaluation is not None
    expected = [engine.state.index.iccid(int(r)) for r in np.flatnonzero(evaluation.states == 2)]
    assert await iccids("&state=silent") == expected


def test_page_build_matches_the_one_sim_form(engine: Engine) -> None:
    states = current_states(engine, NOW)
    rows = np.arange(len(engine.state))
    expected = [sim_short(engine, int(r), int(states[r]), NOW) for r in rows]
    assert sim_shorts(engine, rows, states, NOW) == expected
    assert {s["state"] for s in expected} == {"ok", "silent", "never_seen", "inactive"}


def test_cursor_round_trip_and_rejects() -> None:
    for row in (0, 1, 7, 123_456):
        assert decode_cursor(encode_cursor(row), 200_000) == row
    for bad in ("", "cm93O", "x", "cm93Oi0x", "bm9wZTox"):  # "row", "row:-1", "nope:1"
        with pytest.raises(ViewError) as info:
            decode_cursor(bad, 10)
        assert info.value.status == 400
        assert "cursor" in info.value.message


# ---- groups, incidents, status ---------------------------------------------------------


async def test_groups_are_kept_per_evaluation_and_fleet_size() -> None:
    """The fleet scan behind /groups runs once per evaluation (and per new SIM)."""
    eng = Engine(replace(EngineConfig(), warmup_s=0.0))
    feed = Feed(eng)

    def usage(iccid: str, end: float, mnc: str) -> None:
        feed.send({
            "kind": "usage", "iccid": iccid, "start": format_rfc3339(end - 60),
            "end": format_rfc3339(end), "bytes_up": 1, "bytes_down": 1,
            "apn": "meters.acme", "mcc": "262", "mnc": mnc,
        })  # fmt: skip

    def partners(body: dict[str, object]) -> dict[str, int]:
        groups = body["groups"]
        assert isinstance(groups, list)
        return {g["dims"]["partner"]: g["sims"] for g in groups}

    usage(ICCIDS[0], NOW - 120, "01")
    eng.evaluate(NOW - 60)
    async with serve(app_of(eng)) as c:
        url = "/api/v1/groups?dim=partner"
        assert partners(await get_json(c, url)) == {"26201": 1}
        usage(ICCIDS[0], NOW - 30, "02")  # roams: same fleet, new partner
        assert partners(await get_json(c, url)) == {"26201": 1}  # as of the last cycle
        eng.evaluate(NOW)
        assert partners(await get_json(c, url)) == {"26202": 1}
        usage(ICCIDS[1], NOW - 10, "03")  # a SIM new to the fleet shows at once
        assert partners(await get_json(c, url)) == {"26202": 1, "26203": 1}


async def test_groups_by_partner_and_by_leaf(client: Client) -> None:
    body = await get_json(client, "/api/v1/groups?dim=partner")
    assert body["dim"] == "partner"
    assert body["evaluated_at"] == format_rfc3339(NOW)
    groups = body["groups"]
    assert isinstance(groups, list)
    by_partner = {g["dims"]["partner"]: g for g in groups}
    assert set(by_partner) == {"20408", "26202", "26203"}
    assert groups[0]["dims"] == {"partner": "26203"}  # most affected first
    assert by_partner["26203"]["states"]["silent"] == 10
    assert (by_partner["26203"]["total"], by_partner["26203"]["affected"]) == (10, 10)
    assert by_partner["26203"]["affected_ratio"] == 1.0
    assert by_partner["20408"]["states"] == {
        "ok": 10, "late": 0, "silent": 0, "never_seen": 0, "inactive": 0,
    }  # fmt: skip
    de2 = by_partner["26202"]["states"]
    assert (de2["ok"], de2["silent"], de2["inactive"]) == (7, 2, 1)
    # the suspended SIM is not expected to report; of the two silent ones, the wrong APN
    # explains one: the vip SIM alone is affected
    assert by_partner["26202"]["sims"] == 10
    assert (by_partner["26202"]["total"], by_partner["26202"]["affected"]) == (9, 1)
    assert by_partner["26202"]["affected_ratio"] == round(1 / 9, 4)
    unassigned = body["unassigned"]
    assert isinstance(unassigned, dict)
    assert unassigned["sims"] == 1
    assert (unassigned["total"], unassigned["affected"]) == (0, 0)
    assert unassigned["affected_ratio"] is None
    assert unassigned["states"]["never_seen"] == 1
    leaves = await get_json(client, "/api/v1/groups")
    assert leaves["dim"] is None
    leaf_groups = leaves["groups"]
    assert isinstance(leaf_groups, list)
    assert sum(g["sims"] for g in leaf_groups) == 30
    assert {"apn": "meters.acme", "country": "DE", "partner": "26203"} in [
        g["dims"] for g in leaf_groups
    ]
    customers = await get_json(client, "/api/v1/groups?dim=customer")
    assert {g["dims"]["customer"]: g["sims"] for g in customers["groups"]} == {  # type: ignore[attr-defined]
        "acme": 21,
        "beta": 10,
    }


async def test_incidents(client: Client, engine: Engine) -> None:
    body = await get_json(client, "/api/v1/incidents")
    incidents = body["incidents"]
    assert isinstance(incidents, list)
    kinds = {(i["kind"], i["state"], tuple(sorted(i["dims"].items()))) for i in incidents}
    assert ("group", "resolved", (("country", "NL"),)) in kinds
    assert ("group", "open", (("partner", "26203"),)) in kinds
    assert ("sim", "open", (("iccid", VIP),)) in kinds
    ids = [i["id"] for i in incidents]
    assert ids == sorted(ids)
    opened = await get_json(client, "/api/v1/incidents?state=open")
    assert {i["id"] for i in opened["incidents"]} == {  # type: ignore[attr-defined]
        i.id for i in engine.incidents.open.values()
    }
    resolved = await get_json(client, "/api/v1/incidents?state=resolved")
    assert all(i["state"] == "resolved" for i in resolved["incidents"])  # type: ignore[attr-defined]
    assert resolved["incidents"]
    first = incidents[0]
    assert await get_json(client, f"/api/v1/incidents/{first['id']}") == first
    nl = next(i for i in incidents if i["dims"] == {"country": "NL"})
    assert (nl["affected"], nl["total"]) == (10, 10)
    assert B_END < parse_rfc3339(nl["resolved_at"]) <= C_END


async def test_an_incident_s_sims_are_the_sims_it_counts(client: Client, engine: Engine) -> None:
    # the page's link: the Telefonica SIMs that stopped, page by page, in a stable order
    page_id = next(i.id for i in engine.incidents.open.values() if i.dims == {"partner": "26203"})
    incident = engine.incidents.get(page_id)
    assert incident is not None
    seen: list[str] = []
    url = f"/api/v1/incidents/{page_id}/sims?limit=3"
    pages = 0
    while True:
        body = await get_json(client, url)
        pages += 1
        assert body["count"] == round(incident.affected) == 10
        items = body["items"]
        assert isinstance(items, list)
        assert len(items) <= 3
        seen += [item["iccid"] for item in items]
        assert all(item["partner"] == "26203" for item in items)
        if body["next_cursor"] is None:
            break
        url = f"/api/v1/incidents/{page_id}/sims?limit=3&cursor={body['next_cursor']}"
    assert (pages, seen) == (4, DE3)
    # a SIM incident: its one SIM; an unknown one: 404 naming it
    ticket = next(i.id for i in engine.incidents.open.values() if i.iccid == VIP)
    body = await get_json(client, f"/api/v1/incidents/{ticket}/sims")
    items = body["items"]
    assert isinstance(items, list)
    assert [item["iccid"] for item in items] == [VIP]
    assert "inc-9999" in await error_of(client, "/api/v1/incidents/inc-9999/sims", 404)


async def test_status_landing_and_probes(engine: Engine) -> None:
    state = {"ready": False}
    app = app_of(engine, ready=lambda: state["ready"])
    async with serve(app) as client:
        status = await get_json(client, "/api/v1/status")
        assert status["sims"] == 31
        assert status["states"] == {
            "ok": 17, "late": 0, "silent": 12, "never_seen": 1, "inactive": 1,
        }  # fmt: skip
        assert status["open_incidents"] == len(engine.incidents.open)
        assert status["sources"] == []
        assert await get_json(client, "/-/ready", 503) == {"status": "not ready"}
        state["ready"] = True
        assert await get_json(client, "/-/ready") == {"status": "ready"}
        assert await get_json(client, "/-/healthy") == {"status": "ok"}
        landing = await client.get("/")
        assert landing.content_type == "text/html"
        html = await landing.text()
        for path in ("/api/v1/sims", "/api/v1/groups", "/api/v1/openapi.json", "/-/ready"):
            assert f'href="{path}"' in html


async def test_an_internal_error_is_a_json_500_without_a_trace(engine: Engine) -> None:
    def broken() -> bool:
        raise RuntimeError("secret internals")

    async with serve(app_of(engine, ready=broken)) as client:
        response = await client.get("/-/ready")
        assert response.status == 500
        body = await response.json()
        assert body["error"]["status"] == 500
        assert "secret" not in body["error"]["message"]
        assert "server log" in body["error"]["message"]


# ---- auth ------------------------------------------------------------------------------


async def test_auth_on_requires_a_bearer_token(engine: Engine) -> None:
    app = app_of(engine, HttpSettings(auth="on"), tokens=frozenset({"other", TOKEN}))
    async with serve(app) as client:
        for url in ("/api/v1/status", f"/api/v1/sims/{VIP}", "/api/v1/openapi.json"):
            response = await client.get(url)
            assert response.status == 401
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert (await response.json())["error"]["status"] == 401
        for header in (f"Bearer {TOKEN}x", f"Basic {TOKEN}", "Bearer ", TOKEN):
            response = await client.get("/api/v1/status", headers={"Authorization": header})
            assert response.status == 401, header
            assert "invalid_token" in response.headers["WWW-Authenticate"]
        ok = await client.get("/api/v1/status", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status == 200
        assert (await ok.json())["sims"] == 31
        for url in ("/-/healthy", "/-/ready", "/metrics", "/"):
            assert (await client.get(url)).status == 200, url
        # Unknown API paths do not tell an unauthenticated caller what exists.
        assert (await client.get("/api/v1/nothing")).status == 401


async def test_auth_is_on_by_default_and_off_only_on_loopback(engine: Engine) -> None:
    assert HttpSettings().auth_required()
    with pytest.raises(ValueError, match="tokens"):
        app_of(engine, HttpSettings())  # on, and no token: refuses to start
    async with serve(app_of(engine, HttpSettings(), tokens=frozenset({TOKEN}))) as client:
        assert (await client.get("/api/v1/status")).status == 401
        assert (await client.get("/-/healthy")).status == 200
    async with serve(app_of(engine, HttpSettings(auth="off", host="127.0.0.1"))) as client:
        assert (await client.get("/api/v1/status")).status == 200
    with pytest.raises(ValueError, match=r"only allowed on a loopback host, not '0\.0\.0\.0'"):
        HttpSettings(auth="off", host="0.0.0.0")
    with pytest.raises(ValueError, match="tokens"):
        app_of(engine, HttpSettings(auth="on"), tokens=frozenset({""}))


def test_loopback_and_token_helpers() -> None:
    assert is_loopback("127.0.0.1")
    assert is_loopback("127.1.2.3")
    assert is_loopback("::1")
    assert is_loopback("[::1]")
    assert is_loopback("localhost")
    assert not is_loopback("0.0.0.0")
    assert not is_loopback("10.0.0.1")
    assert not is_loopback("example.com")
    assert token_matches("b", frozenset({"a", "b"}))
    assert not token_matches("", frozenset({"a"}))
    assert not token_matches("ab", frozenset({"a", "b"}))


# ---- views without HTTP and before the first evaluation --------------------------------


def test_views_before_the_first_evaluation() -> None:
    eng = Engine(replace(EngineConfig(), warmup_s=0.0))
    eng.load_inventory(inventory_row(i) for i in ICCIDS)
    feed = Feed(eng)
    for t in _every(T0, T0 + DAY, 900.0):
        for iccid in ICCIDS[:20]:
            feed.usage(iccid, t)
    now = T0 + DAY + 6 * 3600  # the 20 SIMs have been quiet for 6 hours
    assert eng.last_evaluation is None
    sim = sim_view(eng, ICCIDS[0], now)
    assert sim["state"] == "silent"
    assert sim["incident"] is None
    findings = sim["diagnosis"]
    assert isinstance(findings, list)
    assert findings[-1]["code"] == "silent"
    assert sim_view(eng, NEVER_SEEN, now)["state"] == "never_seen"
    assert sim_view(eng, SUSPENDED, now)["state"] == "inactive"
    page = list_sims(eng, now, {"state": "silent"}, limit=100)
    assert [i["iccid"] for i in page["items"]] == ICCIDS[:20]  # type: ignore[attr-defined]
    groups = groups_view(eng, now, "country")
    assert groups["evaluated_at"] is None
    status = status_view(eng, now)
    assert status["states"] == {"ok": 0, "late": 0, "silent": 20, "never_seen": 10, "inactive": 1}
    with pytest.raises(ViewError) as info:
        sim_view(eng, "12345", now)
    assert info.value.status == 400


# ---- the OpenAPI document against real responses ---------------------------------------


def validate(
    schema: dict[str, object], value: object, doc: dict[str, object], at: str = "$"
) -> list[str]:
    """A JSON Schema subset: $ref, type, enum, properties, required, additionalProperties,
    items, minimum, maximum, pattern, oneOf, format date-time."""
    if "$ref" in schema:
        target: object = doc
        for part in str(schema["$ref"]).removeprefix("#/").split("/"):
            assert isinstance(target, dict)
            target = target[part]
        assert isinstance(target, dict)
        return validate(target, value, doc, at)
    if "oneOf" in schema:
        options = schema["oneOf"]
        assert isinstance(options, list)
        matching = [o for o in options if not validate(o, value, doc, at)]
        return [] if len(matching) == 1 else [f"{at}: {len(matching)} oneOf options match"]
    errors: list[str] = []
    kinds = schema.get("type")
    if kinds is not None:
        allowed = kinds if isinstance(kinds, list) else [kinds]
        if not any(_is_type(value, str(k)) for k in allowed):
            return [f"{at}: {value!r} is not of type {kinds}"]
    if "enum" in schema and value not in schema["enum"]:  # type: ignore[operator]
        errors.append(f"{at}: {value!r} not in {schema['enum']}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:  # type: ignore[operator]
            errors.append(f"{at}: {value} < minimum")
        if "maximum" in schema and value > schema["maximum"]:  # type: ignore[operator]
            errors.append(f"{at}: {value} > maximum")
    if isinstance(value, str):
        if "pattern" in schema and not re.search(str(schema["pattern"]), value):
            errors.append(f"{at}: {value!r} does not match {schema['pattern']}")
        if schema.get("format") == "date-time":
            try:
                parse_rfc3339(value)
            except TimeParseError:
                errors.append(f"{at}: {value!r} is not RFC 3339")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        assert isinstance(props, dict)
        required = schema.get("required", [])
        assert isinstance(required, list)
        errors += [f"{at}: missing {name!r}" for name in required if name not in value]
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in props:
                errors += validate(props[key], item, doc, f"{at}.{key}")
            elif extra is False:
                errors.append(f"{at}: unexpected property {key!r}")
            elif isinstance(extra, dict):
                errors += validate(extra, item, doc, f"{at}.{key}")
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for k, item in enumerate(value):
            errors += validate(schema["items"], item, doc, f"{at}[{k}]")  # type: ignore[arg-type]
    return errors


def _is_type(value: object, kind: str) -> bool:
    checks: dict[str, bool] = {
        "null": value is None,
        "boolean": isinstance(value, bool),
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, int | float) and not isinstance(value, bool),
        "string": isinstance(value, str),
        "array": isinstance(value, list),
        "object": isinstance(value, dict),
    }
    return checks[kind]


def test_the_validator_can_fail() -> None:
    doc = openapi_document()
    sim: dict[str, object] = {"$ref": "#/components/schemas/SimShort"}
    assert validate(sim, {"iccid": "1"}, doc)
    assert validate({"type": ["integer", "null"]}, 1.5, doc)
    assert validate({"type": "integer"}, True, doc)  # noqa: FBT003 - a JSON value
    assert validate({"oneOf": [{"type": "null"}, {"type": "null"}]}, None, doc)
    assert not validate({"type": "string", "format": "date-time"}, format_rfc3339(T0), doc)


async def test_every_endpoint_matches_the_openapi_document(client: Client, engine: Engine) -> None:
    doc = await get_json(client, "/api/v1/openapi.json")
    assert doc["openapi"] == "3.1.0"
    assert doc == orjson.loads(orjson.dumps(openapi_document()))
    paths = doc["paths"]
    assert isinstance(paths, dict)
    open_id = next(i.id for i in engine.incidents.open.values() if i.kind == "group")
    calls = [
        ("/", "/", 200),
        ("/-/healthy", "/-/healthy", 200),
        ("/-/ready", "/-/ready", 200),
        ("/metrics", "/metrics", 200),
        ("/api/v1/openapi.json", "/api/v1/openapi.json", 200),
        ("/api/v1/status", "/api/v1/status", 200),
        ("/api/v1/sims", "/api/v1/sims?limit=5&state=silent", 200),
        ("/api/v1/sims", "/api/v1/sims?limit=1000", 200),
        ("/api/v1/sims", "/api/v1/sims?limit=x", 400),
        ("/api/v1/sims/{iccid}", f"/api/v1/sims/{WRONG_APN}", 200),
        ("/api/v1/sims/{iccid}", f"/api/v1/sims/{DE3[3]}", 200),
        ("/api/v1/sims/{iccid}", f"/api/v1/sims/{NEVER_SEEN}", 200),
        ("/api/v1/sims/{iccid}", f"/api/v1/sims/{SUSPENDED}", 200),
        ("/api/v1/sims/{iccid}", f"/api/v1/sims/{NL[0]}", 200),
        ("/api/v1/sims/{iccid}", "/api/v1/sims/123", 400),
        ("/api/v1/sims/{iccid}", f"/api/v1/sims/{'9' * 20}", 404),
        ("/api/v1/groups", "/api/v1/groups", 200),
        ("/api/v1/groups", "/api/v1/groups?dim=partner", 200),
        ("/api/v1/groups", "/api/v1/groups?dim=x", 400),
        ("/api/v1/incidents", "/api/v1/incidents", 200),
        ("/api/v1/incidents", "/api/v1/incidents?state=x", 400),
        ("/api/v1/incidents/{id}", f"/api/v1/incidents/{open_id}", 200),
        ("/api/v1/incidents/{id}", "/api/v1/incidents/inc-0000", 404),
        ("/api/v1/incidents/{id}/sims", f"/api/v1/incidents/{open_id}/sims?limit=2", 200),
        ("/api/v1/incidents/{id}/sims", f"/api/v1/incidents/{open_id}/sims?limit=x", 400),
        ("/api/v1/incidents/{id}/sims", "/api/v1/incidents/inc-0000/sims", 404),
    ]
    for path, url, status in calls:
        response = await client.get(url)
        assert response.status == status, url
        documented = paths[path]["get"]["responses"][str(status)]
        content_type, media = next(iter(documented["content"].items()))
        assert response.content_type == content_type, url
        if content_type == "application/json":
            errors = validate(media["schema"], await response.json(), doc)
            assert not errors, (url, errors[:5])
    # Every route is documented and every documented path was called.
    routes = {r.resource.canonical for r in client.app.router.routes() if r.resource}
    assert routes == set(paths) == {path for path, _, _ in calls}
    # Every documented query parameter exists: a bad value is refused, naming it.
    for path, item in paths.items():
        for param in item["get"].get("parameters", []):
            schema = param["schema"]
            if param["in"] == "query" and ("enum" in schema or schema.get("type") == "integer"):
                name = param["name"]
                url = path.replace("{id}", open_id)
                assert name in await error_of(client, f"{url}?{name}=bogus", 400), (path, name)


# ---- the list scan stops early, and finds what a full scan finds --------------------------


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    n=st.integers(0, 40_000),
    start_share=st.floats(0, 1),
    count=st.integers(1, 1001),
    shares=st.lists(st.integers(1, 50), min_size=1, max_size=3),
    seed=st.integers(0, 2**32 - 1),
)
def test_first_matches_equals_a_full_scan(
    n: int, start_share: float, count: int, shares: list[int], seed: int
) -> None:
    rng = np.random.default_rng(seed)
    wanted = [(rng.integers(0, k, n).astype(np.int16), 0) for k in shares]
    start = int(n * start_share)
    mask = np.ones(n, bool)
    for column, code in wanted:
        mask &= column == code
    expected = np.flatnonzero(mask)
    expected = expected[expected >= start][:count]
    got = _first_matches(wanted, start, n, count)
    assert got.tolist() == expected.tolist()
