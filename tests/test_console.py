"""The console under /ui/ (docs/console.md): sign-in, sessions, CSRF, and the pages over a
small real engine and a real history store (``console_fleet``)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from http.cookies import SimpleCookie
from typing import TYPE_CHECKING

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from console_fleet import GAPPY, IMSI, KPN, MSISDN, NOW, SIMS, TOKEN, WRONG_APN, build
from fleet import DAY

from simwatch.core.iccid import luhn_check_digit
from simwatch.core.records import Record
from simwatch.core.timeutil import format_rfc3339
from simwatch.http.app import make_app
from simwatch.http.console import COOKIE, Sessions
from simwatch.shell.history import DAY_S, HistoryStore, HistoryWriter, row_of
from simwatch.shell.maintenance import MaintenanceStore
from simwatch.shell.settings import HttpSettings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

    from simwatch.core.engine import Engine

Client = TestClient[web.Request, web.Application]
TTL = 3600.0


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Engine, HistoryStore]]:
    engine, store = build(tmp_path_factory.mktemp("console") / "history.sqlite")
    yield engine, store
    store.close()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
async def client(fleet: tuple[Engine, HistoryStore], clock: Clock) -> AsyncIterator[Client]:
    engine, store = fleet
    app = make_app(
        engine,
        now=lambda: NOW,
        settings=HttpSettings(),
        tokens=frozenset({TOKEN}),
        console=Sessions(TTL, 10, clock),
        history=store,
    )
    async with TestClient(TestServer(app)) as c:
        yield c


async def sign_in(client: Client, token: str = TOKEN) -> None:
    response = await client.post(
        "/ui/signin", data={"token": token, "next": "/ui/"}, allow_redirects=False
    )
    assert response.status == 303, await response.text()


async def page(client: Client, url: str, status: int = 200) -> str:
    response = await client.get(url, allow_redirects=False)
    text = await response.text()
    assert response.status == status, text
    return text


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF field in the page"
    return found.group(1)


# ---- signing in ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["/ui/", f"/ui/sims/{SIMS[0]}", "/ui/incidents/inc-0001", f"/ui/sims?q={SIMS[0]}"]
)
async def test_nothing_under_ui_without_signing_in(client: Client, url: str) -> None:
    response = await client.get(url, allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"].startswith("/ui/signin?next=")
    body = await response.text()
    assert SIMS[0] not in body
    assert "inc-0001" not in body
    form = await page(client, response.headers["Location"])
    assert 'name="token"' in form
    for data in ("20408", "80 of 80", SIMS[1], "acme"):  # no fleet data beyond the URL asked
        assert data not in form


async def test_a_wrong_token_signs_nobody_in(client: Client) -> None:
    response = await client.post("/ui/signin", data={"token": "guess"}, allow_redirects=False)
    assert response.status == 401
    assert COOKIE not in response.cookies
    assert "not one of this simwatch" in await response.text()
    await page(client, "/ui/", 303)


async def test_sign_in_sets_a_strict_http_only_expiring_cookie(client: Client) -> None:
    response = await client.post(
        "/ui/signin", data={"token": TOKEN, "next": f"/ui/sims/{SIMS[3]}"}, allow_redirects=False
    )
    assert response.status == 303
    assert response.headers["Location"] == f"/ui/sims/{SIMS[3]}"
    header = response.headers["Set-Cookie"]
    cookie = SimpleCookie(header)[COOKIE]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Strict"
    assert cookie["path"] == "/ui/"
    assert cookie["max-age"] == str(round(TTL))
    assert len(cookie.value) >= 40  # 256 random bits
    assert "inc-0001" in await page(client, "/ui/")


async def test_sign_in_never_redirects_off_the_console(client: Client) -> None:
    for target in ("https://evil.example/", "//evil.example/ui/", "/api/v1/sims"):
        response = await client.post(
            "/ui/signin", data={"token": TOKEN, "next": target}, allow_redirects=False
        )
        assert response.headers["Location"] == "/ui/"


async def test_a_session_expires(client: Client, clock: Clock) -> None:
    await sign_in(client)
    clock.now = NOW + TTL - 1
    await page(client, "/ui/")
    clock.now = NOW + TTL
    await page(client, "/ui/", 303)


def test_sessions_are_bounded_and_forget_the_oldest() -> None:
    clock = Clock(0.0)
    sessions = Sessions(60.0, 2, clock)
    first, _ = sessions.start()
    second, _ = sessions.start()
    third, _ = sessions.start()
    assert sessions.get(first) is None
    assert sessions.get(second) is not None
    assert sessions.get(third) is not None
    assert len(sessions) == 2
    assert sessions.get("made-up") is None


async def test_a_change_without_the_csrf_token_is_refused(client: Client) -> None:
    await sign_in(client)
    html = await page(client, "/ui/")
    token = csrf_of(html)
    refused = await client.post("/ui/signout", data={}, allow_redirects=False)
    assert refused.status == 403
    wrong = await client.post("/ui/signout", data={"csrf": "x" * 43}, allow_redirects=False)
    assert wrong.status == 403
    foreign = await client.post(
        "/ui/signout",
        data={"csrf": token},
        headers={"Origin": "https://evil.example"},
        allow_redirects=False,
    )
    assert foreign.status == 403
    await page(client, "/ui/")  # still signed in
    done = await client.post("/ui/signout", data={"csrf": token}, allow_redirects=False)
    assert done.status == 303
    await page(client, "/ui/", 303)


async def test_the_console_is_open_when_the_api_is(fleet: tuple[Engine, HistoryStore]) -> None:
    engine, store = fleet
    app = make_app(
        engine,
        now=lambda: NOW,
        settings=HttpSettings(auth="off"),
        console=Sessions(TTL, 10, Clock(NOW)),
        history=store,
    )
    async with TestClient(TestServer(app)) as c:
        assert "inc-0001" in await page(c, "/ui/")


async def test_static_files_need_no_session(client: Client) -> None:
    css = await page(client, "/ui/static/console.css")
    assert "@media" in css
    assert "addEventListener" in await page(client, "/ui/static/console.js")


# ---- the pages ----------------------------------------------------------------------------


async def test_fleet_page_lists_open_incidents_and_shares_per_group(client: Client) -> None:
    await sign_in(client)
    html = await page(client, "/ui/")
    assert 'href="/ui/incidents/inc-0001"' in html
    assert "OPEN" in html  # a word beside the colour
    assert "80 of 80" in html
    assert "20408 (KPN)" in html
    assert "above usual" in html  # KPN's bar says it in words
    assert "Overdue share by partner" in html
    assert "Overdue share by country" in html
    assert "Overdue share by apn" in html


@pytest.mark.parametrize(
    "query",
    [
        SIMS[5],
        SIMS[5] + luhn_check_digit(SIMS[5]),
        " ".join([SIMS[5][:4], SIMS[5][4:8], SIMS[5][8:]]),
    ],
)
async def test_search_takes_an_iccid_in_either_form(client: Client, query: str) -> None:
    await sign_in(client)
    response = await client.get("/ui/sims", params={"q": query}, allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == f"/ui/sims/{SIMS[5]}"


@pytest.mark.parametrize(
    ("query", "sim"), [(IMSI, SIMS[0]), (MSISDN, SIMS[1]), ("+" + MSISDN, SIMS[1])]
)
async def test_search_takes_an_imsi_or_an_msisdn(client: Client, query: str, sim: str) -> None:
    await sign_in(client)
    response = await client.get("/ui/sims", params={"q": query}, allow_redirects=False)
    assert response.headers["Location"] == f"/ui/sims/{sim}"


async def test_search_says_when_no_sim_matches(client: Client) -> None:
    await sign_in(client)
    response = await client.get("/ui/sims", params={"q": "8931449999999999999"})
    assert response.status == 404
    assert "No SIM has" in await response.text()


async def test_sim_page_reads_out_the_diagnosis_and_shows_its_history(client: Client) -> None:
    await sign_in(client)
    html = await page(client, f"/ui/sims/{WRONG_APN}")
    assert "The device uses APN &#39;internet&#39;; this SIM allows &#39;meters.acme&#39;" in html
    assert "silent" in html
    assert html.count('class="tick reject"') == 8  # its eight authentication failures
    assert html.count('class="tick data"') == 96  # a day of reports every 15 minutes
    assert "auth_failure" in html
    assert "apn_not_allowed" in html
    assert "overdue" in html
    # what its records are, and so how it is judged (the detection issue's data regimes)
    regime = re.search(r'<dd id="regime">([^<]*)</dd>', html)
    assert regime is not None
    assert regime.group(1) == (
        "one usage record per device report: judged by its learned reporting rhythm"
    )


async def test_sim_page_marks_a_past_gap_longer_than_its_rhythm_allows(client: Client) -> None:
    await sign_in(client)
    assert (await page(client, f"/ui/sims/{SIMS[GAPPY]}")).count('class="late gap"') == 1
    assert 'class="late gap"' not in await page(client, f"/ui/sims/{SIMS[97]}")


async def test_sim_page_links_its_incident(client: Client) -> None:
    await sign_in(client)
    html = await page(client, f"/ui/sims/{KPN[0]}")
    assert 'href="/ui/incidents/inc-0001"' in html
    assert "Part of incident inc-0001" in html


async def test_an_unknown_sim_is_an_error_page_not_a_trace(client: Client) -> None:
    await sign_in(client)
    html = await page(client, "/ui/sims/8931449999999999999", 404)
    assert "unknown SIM" in html
    assert "Traceback" not in html


async def test_incident_page_pages_through_its_sims(client: Client) -> None:
    await sign_in(client)
    html = await page(client, "/ui/incidents/inc-0001")
    assert "80 of 80 SIMs" in html
    assert "80 overdue by their own rhythm" in html
    assert "acme: 40 SIMs" in html
    assert 'class="affected"' in html  # the chart
    first = re.findall(r'href="/ui/sims/(\d+)" class="sim-link"', html)
    assert len(first) == 50
    following = re.search(r'href="(/ui/incidents/inc-0001\?cursor=[^"]+)" id="next-page"', html)
    assert following
    rest_html = await page(client, following.group(1).replace("&amp;", "&"))
    rest = re.findall(r'href="/ui/sims/(\d+)" class="sim-link"', rest_html)
    assert len(rest) == 30
    assert sorted(first + rest) == sorted(KPN)
    assert 'id="next-page"' not in rest_html


@contextlib.contextmanager
def altered(engine: Engine, incident_id: str, **fields: object) -> Iterator[None]:
    """The fleet's incident with ``fields`` set for the block (the fixture is shared)."""
    incident = engine.incidents.get(incident_id)
    assert incident is not None
    before = {name: getattr(incident, name) for name in fields}
    for name, value in fields.items():
        setattr(incident, name, value)
    try:
        yield
    finally:
        for name, value in before.items():
            setattr(incident, name, value)


async def test_incident_page_says_when_its_recovery_began(
    client: Client, fleet: tuple[Engine, HistoryStore]
) -> None:
    await sign_in(client)
    assert 'id="recovery"' not in await page(client, "/ui/incidents/inc-0001")
    with altered(fleet[0], "inc-0001", recovery_onset=NOW - 300.0):
        html = await page(client, "/ui/incidents/inc-0001")
    since = format_rfc3339(NOW - 300.0)
    assert re.search(rf'Recovering since</dt><dd id="recovery">{since.replace("T", " ")}', html)
    assert f"recovering since {since}" in html  # the evidence says it too


async def test_incident_page_says_since_when_it_names_its_group(
    client: Client, fleet: tuple[Engine, HistoryStore]
) -> None:
    await sign_in(client)
    assert 'id="named"' not in await page(client, "/ui/incidents/inc-0001")
    with altered(fleet[0], "inc-0001", named_at=NOW - 600.0):
        html = await page(client, "/ui/incidents/inc-0001")
    since = format_rfc3339(NOW - 600.0).replace("T", " ")
    assert re.search(rf'Named so since</dt><dd id="named">{since}:', html)


async def test_a_resolved_incident_page_shows_its_evidence_at_its_worst(
    client: Client, fleet: tuple[Engine, HistoryStore]
) -> None:
    await sign_in(client)
    # resolved, its last evidence the few SIMs left at its end
    end = {"evidence": {"failing": 2, "overdue": 2}, "resolved_at": NOW - 60.0}
    with altered(fleet[0], "inc-0001", **end):
        html = await page(client, "/ui/incidents/inc-0001")
    assert "Evidence at its worst" in html
    assert "80 of 80 SIMs failing: 80 overdue by their own rhythm" in html
    assert "2 of 80 SIMs failing" not in html


async def test_an_incident_page_tells_the_peak_against_the_total_it_had_then(
    client: Client, fleet: tuple[Engine, HistoryStore]
) -> None:
    # devices left the group while it failed: fewer SIMs now than failed at its peak
    await sign_in(client)
    with altered(fleet[0], "inc-0001", affected=30, total=50, peak_affected=80, peak_total=80):
        html = await page(client, "/ui/incidents/inc-0001")
    assert "30 of 50 SIMs" in html
    assert "peak 80 of 80)" in html


async def test_an_unknown_incident_is_a_404_page(client: Client) -> None:
    await sign_in(client)
    assert "unknown incident" in await page(client, "/ui/incidents/inc-9999", 404)


# ---- the history store --------------------------------------------------------------------


def _record(sim: str, ts: float, n: int) -> Record:
    return Record(kind="usage", record_id=f"r{n}", iccid=sim, ts=ts, bytes_up=10)


def test_history_finds_a_sim_by_either_form_and_drops_old_days(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "h.sqlite", days=2)
    start = 20_000 * DAY_S
    long_form = SIMS[2] + luhn_check_digit(SIMS[2])
    rows = [row_of(_record(SIMS[2], start + k * DAY, k)) for k in range(4)]
    rows.append(row_of(_record(long_form, start + 3 * DAY + 60, 9)))
    store.write(rows, [("partner=1", start, 1.0, 0.0, 0.0)])
    found = store.records([SIMS[2], long_form], start, start + 4 * DAY)
    assert [r.ts for r in found] == [start + k * DAY for k in range(4)] + [start + 3 * DAY + 60]
    assert store.prune(start + 3 * DAY) == 1  # the first day is more than two days old
    assert len(store.records([SIMS[2]], start, start + 4 * DAY)) == 3
    assert store.series("partner=1", 0, start + 4 * DAY) == []
    store.close()
    reopened = HistoryStore(tmp_path / "h.sqlite", days=2)  # a restart keeps the rest
    reopened.write([row_of(_record(SIMS[2], start + 3 * DAY + 1, 10))])
    assert len(reopened.records([SIMS[2], long_form], start, start + 4 * DAY)) == 5
    reopened.close()


async def test_history_writer_is_bounded_and_writes_off_the_loop(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "h.sqlite", days=2)
    writer = HistoryWriter(store, max_pending=1000, clock=lambda: 20_000 * DAY_S)
    writer.add_records(_record(SIMS[0], 20_000 * DAY_S + k, k) for k in range(1500))
    assert writer.stats.dropped == 500
    await writer.flush()
    assert writer.stats.written == 1000
    assert len(store.records([SIMS[0]], 0, 30_000 * DAY_S)) == 1000
    store.close()


# ---- the daemon feeds the history -----------------------------------------------------------


async def test_the_daemon_writes_records_figures_and_ids_to_the_history(tmp_path: Path) -> None:
    from fleet import inventory_row  # noqa: PLC0415
    from test_daemon import ICCID, ListSource, run_until, settings, usage  # noqa: PLC0415

    from simwatch.service.daemon import Daemon  # noqa: PLC0415
    from simwatch.service.run import build_history  # noqa: PLC0415
    from simwatch.shell.settings import ConsoleSettings  # noqa: PLC0415

    start = time.time() - 3 * 3600
    lines = [usage(i, start + i * 60) for i in range(120)]
    source = ListSource("backlog", [lines[:60], lines[60:]])
    history_file = tmp_path / "history.sqlite"
    config = settings(tmp_path).model_copy(
        update={"console": ConsoleSettings(history_file=history_file)}
    )
    rows = [inventory_row(ICCID, imsi=IMSI, extra={"MSISDN": "+31 6 1234-5678"})]
    daemon = Daemon(config, [source], inventory=rows)
    writer = build_history(config, daemon)
    assert writer is not None
    task = asyncio.create_task(writer.run(), name="history")
    try:
        await run_until(daemon, lambda: source.applied == 2 and writer.stats.written == 120)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    store = writer.store
    assert len(store.records([ICCID], start - 60, start + 3 * 3600)) == 120
    assert store.series("partner=26202", start, start + 3 * 3600)
    assert store.find_id(IMSI) == ICCID
    assert store.find_id("31612345678") == ICCID  # as the search box normalizes it
    store.close()


async def test_history_writer_keeps_running_when_writing_fails(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = HistoryStore(tmp_path / "h.sqlite", days=2)
    writer = HistoryWriter(store, max_pending=1000)
    store.close()  # any sqlite error: a full disk, a broken file
    writer.add_records([_record(SIMS[0], 20_000 * DAY_S, 1)])
    await writer.flush()
    await writer.flush()
    assert writer.stats.failures == 1
    assert writer.stats.dropped == 1
    assert sum("history: writing failed" in r.getMessage() for r in caplog.records) == 1


# ---- maintenance windows from the console -----------------------------------------------------


@pytest.fixture
async def with_windows(
    fleet: tuple[Engine, HistoryStore], tmp_path: Path
) -> AsyncIterator[tuple[Client, MaintenanceStore, list[tuple[object, ...]]]]:
    engine, store = fleet
    changes: list[tuple[object, ...]] = []
    windows = MaintenanceStore([], tmp_path / "maintenance.json", on_change=changes.append)
    app = make_app(
        engine,
        now=lambda: NOW,
        settings=HttpSettings(),
        tokens=frozenset({TOKEN}),
        console=Sessions(TTL, 10, Clock(NOW)),
        history=store,
        maintenance=windows,
    )
    async with TestClient(TestServer(app)) as c:
        yield c, windows, changes


WEEKLY = {
    "name": "KPN Thursday works",
    "start": "2026-11-12T00:00",
    "timezone": "Europe/Amsterdam",
    "duration_h": "4",
    "repeat": "weekly",
    "weekday": "TH",
    "scope_dim": "partner",
    "scope_values": "20408",
}


async def test_a_recurring_window_is_created_from_the_console(
    with_windows: tuple[Client, MaintenanceStore, list[tuple[object, ...]]],
) -> None:
    client, windows, changes = with_windows
    await sign_in(client)
    html = await page(client, "/ui/maintenance")
    assert 'id="new-window"' in html
    response = await client.post(
        "/ui/maintenance", data={**WEEKLY, "csrf": csrf_of(html)}, allow_redirects=False
    )
    assert response.status == 303
    (window,) = windows.windows()
    assert window.name == "KPN Thursday works"
    assert window.rrule == "FREQ=WEEKLY;BYDAY=TH"
    assert window.duration_s == 4 * 3600
    assert dict(window.scope) == {"partner": ("20408",)}
    assert changes  # the engine is told
    listed = await page(client, "/ui/maintenance")
    assert "KPN Thursday works" in listed
    assert "ACTIVE" in listed  # NOW is Thursday 03:00 in Amsterdam
    deleted = await client.post(
        f"/ui/maintenance/{window.id}/delete", data={"csrf": csrf_of(listed)}, allow_redirects=False
    )
    assert deleted.status == 303
    assert windows.windows() == ()


async def test_a_window_needs_the_csrf_token_and_a_valid_form(
    with_windows: tuple[Client, MaintenanceStore, list[tuple[object, ...]]],
) -> None:
    client, windows, _ = with_windows
    await sign_in(client)
    html = await page(client, "/ui/maintenance")
    refused = await client.post("/ui/maintenance", data=WEEKLY, allow_redirects=False)
    assert refused.status == 403
    bad = await client.post(
        "/ui/maintenance",
        data={**WEEKLY, "timezone": "Mars/Olympus", "csrf": csrf_of(html)},
        allow_redirects=False,
    )
    assert bad.status == 400
    assert "timezone" in await bad.text()
    assert windows.windows() == ()


async def test_the_pages_work_before_the_first_evaluation(tmp_path: Path) -> None:
    from fleet import new_engine  # noqa: PLC0415

    engine = new_engine(SIMS[:3])
    store = HistoryStore(tmp_path / "h.sqlite", days=2)
    app = make_app(
        engine,
        now=lambda: NOW,
        settings=HttpSettings(),
        tokens=frozenset({TOKEN}),
        console=Sessions(TTL, 10, Clock(NOW)),
        history=store,
    )
    async with TestClient(TestServer(app)) as c:
        await sign_in(c)
        fleet_html = await page(c, "/ui/")
        assert "No incidents." in fleet_html
        assert "No evaluation yet." in fleet_html
        sim_html = await page(c, f"/ui/sims/{SIMS[0]}")
        assert "No data has ever been seen from this SIM." in sim_html
        assert "No session records" in sim_html
    store.close()


def test_the_history_figures_are_exported(tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry, generate_latest  # noqa: PLC0415

    from simwatch.http.metrics import HistoryCollector  # noqa: PLC0415

    store = HistoryStore(tmp_path / "h.sqlite", days=2)
    writer = HistoryWriter(store, max_pending=1000)
    writer.add_records(_record(SIMS[0], 20_000 * DAY_S + k, k) for k in range(1200))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HistoryCollector(writer))
    text = generate_latest(registry).decode()
    assert "simwatch_history_records_dropped_total 200.0" in text
    assert "simwatch_history_pending_records 1000.0" in text
    assert "simwatch_history_records_written_total 0.0" in text
    store.close()


async def test_sim_page_says_which_expectation_applies(tmp_path: Path) -> None:
    from fleet import inventory_row, new_engine  # noqa: PLC0415

    engine = new_engine(())
    engine.load_inventory([
        inventory_row(
            SIMS[0],
            expected_interval_s=21_600.0,
            active_hours="Mo-Fr 07:00-19:00",
            timezone="Europe/Paris",
        ),
        inventory_row(SIMS[1]),
    ])  # fmt: skip
    store = HistoryStore(tmp_path / "h.sqlite", days=2)
    app = make_app(
        engine,
        now=lambda: NOW,  # Thursday 03:00 in Paris
        settings=HttpSettings(),
        tokens=frozenset({TOKEN}),
        console=Sessions(TTL, 10, Clock(NOW)),
        history=store,
    )
    async with TestClient(TestServer(app)) as c:
        await sign_in(c)
        html = await page(c, f"/ui/sims/{SIMS[0]}")
        assert "every 6 h (set by its inventory row)" in html
        assert "active Mo-Fr 07:00-19:00 Europe/Paris (set by its inventory row)" in html
        assert "outside them now, so silence is expected" in html
        assert 'id="expectation"' not in await page(c, f"/ui/sims/{SIMS[1]}")  # all learned
    store.close()
