"""``GET/POST/DELETE /api/v1/maintenance``: bearer tokens as every /api/ route, 400s
naming the field, config windows read-only, API windows kept across a restart (the
state directory's maintenance.json), responses as the OpenAPI document says."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from fleet import T0, new_engine
from test_api import validate

from simwatch.core.maintenance import window_from_json
from simwatch.http.app import make_app
from simwatch.http.openapi import openapi_document
from simwatch.service.daemon import Daemon
from simwatch.service.run import build_maintenance
from simwatch.shell.maintenance import MaintenanceStore
from simwatch.shell.settings import EngineSettings, HttpSettings, MaintenanceSettings, Settings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from simwatch.core.engine import Engine

TOKEN = "maintenance-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NOW = T0 + 3600.0  # 2026-11-18T01:00:00Z, a Wednesday
CONFIG = window_from_json(
    {"name": "nightly", "start": "2026-11-01T00:30", "duration_s": 3600, "rrule": "FREQ=DAILY",
     "scope": {"country": "DE"}},
    source="config",
    window_id="cfg-1",
)  # fmt: skip
SUNDAYS = {
    "name": "Orange works",
    "start": "2026-11-22T02:00",
    "timezone": "Europe/Paris",
    "duration_s": 7200,
    "rrule": "FREQ=WEEKLY;BYDAY=SU",
    "scope": {"partner": ["20801"]},
}
Client = TestClient[web.Request, web.Application]


def store_of(engine: Engine, directory: Path) -> MaintenanceStore:
    def to_engine(windows: tuple[object, ...]) -> None:
        engine.maintenance = windows  # type: ignore[assignment]

    store = MaintenanceStore(
        [CONFIG], directory / "maintenance.json", on_change=to_engine, clock=lambda: NOW
    )
    store.load()
    return store


@contextlib.asynccontextmanager
async def serving(engine: Engine, store: MaintenanceStore) -> AsyncIterator[Client]:
    app = make_app(
        engine,
        now=lambda: NOW,
        settings=HttpSettings(),
        tokens=frozenset({TOKEN}),
        maintenance=store,
    )
    async with TestClient(TestServer(app)) as client:
        yield client


async def body_of(response: object, status: int) -> object:
    assert getattr(response, "status", None) == status, await response.text()  # type: ignore[attr-defined]
    return await response.json()  # type: ignore[attr-defined]


async def test_windows_are_created_listed_kept_and_deleted(tmp_path: Path) -> None:
    engine = new_engine()
    doc = orjson.loads(orjson.dumps(openapi_document(maintenance=True)))
    schemas = doc["components"]["schemas"]
    async with serving(engine, store_of(engine, tmp_path)) as client:
        for method in ("get", "post"):  # a bearer token, as every /api/ route
            response = await client.request(method, "/api/v1/maintenance", json=SUNDAYS)
            assert response.status == 401
        response = await client.post("/api/v1/maintenance", json=SUNDAYS, headers=AUTH)
        created = await body_of(response, 201)
        assert response.headers["Location"] == "/api/v1/maintenance/mw-0001"
        assert not validate(schemas["MaintenanceWindow"], created, doc)
        assert created == {
            "id": "mw-0001", "name": "Orange works", "source": "api",
            "start": "2026-11-22T02:00:00", "timezone": "Europe/Paris", "duration_s": 7200.0,
            "rrule": "FREQ=WEEKLY;BYDAY=SU", "cron": None, "scope": {"partner": ["20801"]},
            "created_at": "2026-11-18T01:00:00Z", "active": False, "current": None,
            "next": {"start": "2026-11-22T01:00:00Z", "end": "2026-11-22T03:00:00Z"},
        }  # fmt: skip
        assert [w.id for w in engine.maintenance] == ["cfg-1", "mw-0001"]  # for the next cycle
        listing = await body_of(await client.get("/api/v1/maintenance", headers=AUTH), 200)
        assert not validate(schemas["MaintenanceList"], listing, doc)
        assert isinstance(listing, dict)
        assert [(w["id"], w["source"], w["active"]) for w in listing["windows"]] == [
            ("cfg-1", "config", True),  # 00:30-01:30 every day
            ("mw-0001", "api", False),
        ]
        active = await body_of(
            await client.get("/api/v1/maintenance?active=true", headers=AUTH), 200
        )
        assert [w["id"] for w in active["windows"]] == ["cfg-1"]  # type: ignore[index]
    # a restart: the API's window is read back from the state directory, ids go on
    engine = new_engine()
    async with serving(engine, store_of(engine, tmp_path)) as client:
        listing = await body_of(await client.get("/api/v1/maintenance", headers=AUTH), 200)
        assert [w["id"] for w in listing["windows"]] == ["cfg-1", "mw-0001"]  # type: ignore[index]
        again = await body_of(
            await client.post("/api/v1/maintenance", json=SUNDAYS, headers=AUTH), 201
        )
        assert again["id"] == "mw-0002"  # type: ignore[index]
        response = await client.delete("/api/v1/maintenance/cfg-1", headers=AUTH)
        error = await body_of(response, 409)
        assert "read-only" in error["error"]["message"]  # type: ignore[index]
        response = await client.delete("/api/v1/maintenance/mw-0404", headers=AUTH)
        await body_of(response, 404)
        response = await client.delete("/api/v1/maintenance/mw-0001", headers=AUTH)
        assert response.status == 204
        assert [w.id for w in engine.maintenance] == ["cfg-1", "mw-0002"]
    kept = orjson.loads((tmp_path / "maintenance.json").read_bytes())
    assert [w["id"] for w in kept["windows"]] == ["mw-0002"]


BAD_POSTS = [
    ({**SUNDAYS, "timezone": "Mars/Base"},
     "timezone: unknown time zone 'Mars/Base' (IANA names such as Europe/Paris)"),
    ({**SUNDAYS, "duration_s": -1}, "duration_s: must be > 0"),
    ({**SUNDAYS, "rrule": "FREQ=WEEKLY;BYDAY=XX"}, "rrule: invalid 'BYDAY': XX"),
    ({**SUNDAYS, "id": "mine"}, "id: given by the server; leave it out"),
    ({**SUNDAYS, "scope": {"partner": 20801}}, "scope.partner: expected a value"),
    ([SUNDAYS], "(body): expected a JSON object"),
    ("{not json", "(body): not valid JSON"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "message"), BAD_POSTS, ids=[m for _, m in BAD_POSTS])
async def test_a_bad_window_is_a_400_naming_the_field(
    tmp_path: Path, body: object, message: str
) -> None:
    engine = new_engine()
    async with serving(engine, store_of(engine, tmp_path)) as client:
        data = body.encode() if isinstance(body, str) else orjson.dumps(body)
        response = await client.post("/api/v1/maintenance", data=data, headers=AUTH)
        error = await body_of(response, 400)
        assert error["error"]["message"].startswith(message)  # type: ignore[index]
        listing = await body_of(await client.get("/api/v1/maintenance", headers=AUTH), 200)
        assert [w["id"] for w in listing["windows"]] == ["cfg-1"]  # type: ignore[index]
        response = await client.get("/api/v1/maintenance?active=maybe", headers=AUTH)
        await body_of(response, 400)
    assert not (tmp_path / "maintenance.json").exists()


async def test_openapi_describes_the_maintenance_routes(tmp_path: Path) -> None:
    engine = new_engine()
    async with serving(engine, store_of(engine, tmp_path)) as client:
        doc = await body_of(await client.get("/api/v1/openapi.json", headers=AUTH), 200)
        assert isinstance(doc, dict)
        routes = {r.resource.canonical for r in client.app.router.routes() if r.resource}
        assert {"/api/v1/maintenance", "/api/v1/maintenance/{id}"} <= routes
        assert routes == set(doc["paths"]) - {"/metrics"}  # no metrics handler given here
        assert set(doc["paths"]["/api/v1/maintenance"]) == {"get", "post"}
        assert set(doc["paths"]["/api/v1/maintenance/{id}"]) == {"delete"}


def test_the_daemon_gets_config_and_kept_windows_at_start(tmp_path: Path) -> None:
    settings = Settings(
        engine=EngineSettings(dead_letter_file=tmp_path / "dl.ndjson"),
        state_dir=tmp_path,
        maintenance=[
            MaintenanceSettings(name="nightly", start="2026-11-01T00:30", duration_s=3600)
        ],
    )
    daemon = Daemon(settings, [])
    store = build_maintenance(settings, daemon)
    assert [w.id for w in daemon.engine.maintenance] == ["cfg-1"]
    store.add(SUNDAYS)
    assert [w.id for w in daemon.engine.maintenance] == ["cfg-1", "mw-0001"]
    again = Daemon(settings, [])  # a restart: the API's window comes back from state_dir
    build_maintenance(settings, again)
    assert [(w.id, w.source) for w in again.engine.maintenance] == [
        ("cfg-1", "config"),
        ("mw-0001", "api"),
    ]
    (tmp_path / "maintenance.json").write_text("{broken", encoding="utf-8")
    with pytest.raises(ValueError, match=r"maintenance\.json: cannot read the maintenance windows"):
        build_maintenance(settings, Daemon(settings, []))
