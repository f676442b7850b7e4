"""The HTTP security model (docs/security.md), tested against the real app on 127.0.0.1.

* Bearer tokens: with auth on, every ``/api/`` route answers 401 (JSON, with
  ``WWW-Authenticate``) to a missing, wrong, or wrongly framed token, and names no SIM;
  ``/``, ``/-/healthy``, ``/-/ready`` and ``/metrics`` stay open. Auth is on by default
  (a token is generated in the state dir when no tokens file is set); ``off`` is refused
  on a host that is not loopback; an app with auth on and no token refuses to start.
* The token check calls ``hmac.compare_digest`` once per configured token on every
  request, whether or not one matched (no early exit), and its answer decides.
* Limits: ``http.max_body_bytes`` (a JSON 413 beyond it; GET endpoints never read a body),
  ``http.max_page_size`` (config bounds; the paging limits are fuzzed in test_fuzz_api.py).
* No stack traces to clients: internal errors are a JSON 500 with a fixed message;
  requests broken at the HTTP level get aiohttp's short plain-text 400 without a trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import re
from typing import TYPE_CHECKING, Final

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from fleet import ICCIDS, T0, new_engine
from hypothesis import given, settings
from hypothesis import strategies as st

from simwatch.core.inventory import InventoryRow
from simwatch.core.records import Record, RecordDecoder
from simwatch.core.timeutil import format_rfc3339
from simwatch.http.app import make_app, token_matches
from simwatch.http.metrics import EngineCollector, make_registry, metrics_handler
from simwatch.service.run import api_tokens
from simwatch.shell.health import DaemonHealth
from simwatch.shell.settings import ConfigError, HttpSettings, load_settings, read_tokens

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from pathlib import Path

    from simwatch.core.engine import Engine

NOW: Final = T0
SIMS: Final = ICCIDS[:4]
TOKENS: Final = ("alpha-token-1", "bravo-token-2", "charlie-token-3")
TRACE: Final = re.compile(rb'Traceback|File "|\.py", line')


@pytest.fixture(scope="module")
def engine() -> Engine:
    """Four SIMs (the first vip) that reported once; module-wide (overrides conftest's)."""
    eng = new_engine()
    eng.load_inventory(
        InventoryRow(iccid=i, tags=frozenset({"vip"}) if k == 0 else frozenset())
        for k, i in enumerate(SIMS)
    )
    decoder = RecordDecoder()
    for k, iccid in enumerate(SIMS):
        line = orjson.dumps({
            "kind": "usage", "record_id": f"u-{k}", "iccid": iccid,
            "start": format_rfc3339(NOW - 600), "end": format_rfc3339(NOW - 540),
            "bytes_up": 10, "bytes_down": 1, "apn": "meters.acme", "mcc": "262", "mnc": "02",
        })  # fmt: skip
        record = decoder.decode_line(line, NOW)
        assert isinstance(record, Record)
        eng.ingest_record(record)
    eng.evaluate(NOW)
    return eng


def app_for(
    engine: Engine,
    http: HttpSettings,
    tokens: frozenset[str] = frozenset(TOKENS),
    *,
    sim_series: int = 0,
    ready: Callable[[], bool] = lambda: True,
) -> web.Application:
    collector = EngineCollector(
        engine, DaemonHealth(started_at=NOW), tuple, version="test", sim_series=sim_series
    )
    return make_app(
        engine,
        now=lambda: NOW,
        settings=http,
        tokens=tokens,
        ready=ready,
        metrics_handler=metrics_handler(make_registry(collector, process=False)),
    )


Client = TestClient[web.Request, web.Application]


@contextlib.asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[Client]:
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client


def api_urls(app: web.Application, engine: Engine) -> list[str]:
    """Every /api/ route of the app, placeholders filled with things that exist."""
    incident = next(iter(engine.incidents.all()), None)
    fill = {"{iccid}": SIMS[1], "{id}": incident.id if incident else "inc-0001"}
    urls = []
    for resource in app.router.resources():
        path = resource.canonical
        for key, value in fill.items():
            path = path.replace(key, value)
        if path.startswith("/api/"):
            urls.append(path)
    return urls


def assert_no_sim(body: bytes) -> None:
    for iccid in SIMS:
        assert iccid.encode() not in body


# ---- tokens ----------------------------------------------------------------------------

BAD_HEADERS: Final = [
    None,  # no Authorization at all
    "",
    "Bearer",
    "Bearer ",
    f"Bearer {TOKENS[0]}x",
    f"Bearer {TOKENS[0][:-1]}",
    f"Bearer {TOKENS[0].upper()}",
    f"Basic {TOKENS[0]}",
    TOKENS[0],
    f"Token {TOKENS[0]}",
    f"Bearer {TOKENS[0]},{TOKENS[1]}",
    f"Bearer {TOKENS[0]} {TOKENS[1]}",
    "Bearer " + "x" * 4000,
]


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "DELETE"])
async def test_auth_on_every_api_route_refuses_without_the_token(
    engine: Engine, method: str
) -> None:
    app = app_for(engine, HttpSettings(auth="on"))
    async with serve(app) as client:
        urls = api_urls(app, engine)
        assert len(urls) >= 7  # status, openapi, sims, one sim, groups, incidents, one incident
        for url in [*urls, "/api/v1/no-such-thing", "/api/", "/api/v1/sims?limit=1"]:
            for header in BAD_HEADERS:
                headers = {} if header is None else {"Authorization": header}
                response = await client.request(method, url, headers=headers)
                assert response.status == 401, (method, url, header)
                challenge = response.headers["WWW-Authenticate"]
                assert challenge.startswith('Bearer realm="simwatch"')
                body = await response.read()
                assert_no_sim(body)
                if method != "HEAD":
                    assert response.content_type == "application/json"
                    error = orjson.loads(body)["error"]
                    assert error["status"] == 401
                    missing = not header  # no header, or an empty one
                    assert error["message"] == (
                        "missing bearer token" if missing else "invalid bearer token"
                    ), header


async def test_auth_on_each_configured_token_opens_every_api_route(engine: Engine) -> None:
    app = app_for(engine, HttpSettings(auth="on"))
    async with serve(app) as client:
        urls = api_urls(app, engine)
        # without an incident, the one-incident routes ask for one that does not exist
        absent = {
            "/api/v1/incidents/inc-0001",
            "/api/v1/incidents/inc-0001/sims",
        } if not list(engine.incidents.all()) else set()  # fmt: skip
        assert absent <= set(urls)
        for token in TOKENS:
            for header in (f"Bearer {token}", f"bearer {token}", f"Bearer  {token} "):
                for url in urls:
                    response = await client.get(url, headers={"Authorization": header})
                    assert response.status == (404 if url in absent else 200), (url, header)
        response = await client.get(
            f"/api/v1/sims/{SIMS[1]}", headers={"Authorization": f"Bearer {TOKENS[2]}"}
        )
        assert (await response.json())["iccid"] == SIMS[1]


async def test_open_endpoints_need_no_token_and_name_no_sim(engine: Engine) -> None:
    async with serve(app_for(engine, HttpSettings(auth="on"))) as client:
        for url, kind in [("/-/healthy", "application/json"), ("/-/ready", "application/json"),
                          ("/", "text/html"), ("/metrics", "text/plain")]:  # fmt: skip
            response = await client.get(url)
            assert response.status == 200, url
            assert response.content_type == kind
            assert_no_sim(await response.read())
        assert await (await client.get("/-/healthy")).json() == {"status": "ok"}


async def test_metrics_with_sim_series_names_tagged_sims_without_a_token(engine: Engine) -> None:
    """The documented exception: metrics.sim_series=true puts vip ICCIDs on /metrics,
    which is open. docs/security.md says so; keep /metrics off untrusted networks then."""
    async with serve(app_for(engine, HttpSettings(auth="on"), sim_series=10)) as client:
        text = await (await client.get("/metrics")).text()
        assert f'iccid="{SIMS[0]}"' in text  # the vip SIM
        for iccid in SIMS[1:]:
            assert iccid not in text  # untagged SIMs never


@pytest.mark.parametrize(
    ("host", "auth", "required"),
    [
        ("127.0.0.1", "on", True), ("0.0.0.0", "on", True), ("::", "on", True),
        ("simwatch.example", "on", True), ("127.0.0.1", "off", False), ("::1", "off", False),
        ("localhost", "off", False),
    ],
)  # fmt: skip
async def test_auth_modes(engine: Engine, host: str, auth: str, required: bool) -> None:
    http = HttpSettings(host=host, auth=auth)
    assert http.auth_required() is required
    async with serve(app_for(engine, http)) as client:
        status = (await client.get("/api/v1/status")).status
        assert status == (401 if required else 200)
        assert (await client.get("/-/healthy")).status == 200


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "simwatch.example"])
def test_auth_off_is_refused_off_loopback(host: str) -> None:
    off_loopback = r"^http \(from SIMWATCH_HTTP__AUTH\): auth: 'off' is only allowed on a loopback"
    with pytest.raises(ConfigError, match=off_loopback):
        load_settings(None, {"SIMWATCH_HTTP__HOST": host, "SIMWATCH_HTTP__AUTH": "off"})


def test_auth_required_without_tokens_refuses_to_start(engine: Engine, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="tokens"):
        app_for(engine, HttpSettings(), frozenset())
    with pytest.raises(ValueError, match="tokens"):
        app_for(engine, HttpSettings(), frozenset({""}))  # an empty line is never a token
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError, match=r"^http\.tokens_file: no such file"):
        load_settings(None, {"SIMWATCH_HTTP__TOKENS_FILE": str(missing)})
    (tmp_path / "blank").write_text("# nothing yet\n\n")
    with pytest.raises(ConfigError, match=r"^http\.tokens_file: no token in"):
        load_settings(None, {"SIMWATCH_HTTP__TOKENS_FILE": str(tmp_path / "blank")})


def test_without_a_tokens_file_a_token_is_generated_once_and_kept(tmp_path: Path) -> None:
    settings = load_settings(None, {"SIMWATCH_STATE_DIR": str(tmp_path / "state")})
    (token,) = api_tokens(settings)
    path = tmp_path / "state" / "api-token"
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(token) >= 40
    assert read_tokens(path) == {token}
    assert api_tokens(settings) == {token}  # a restart keeps it: clients need not change
    path.write_text("# emptied by hand\n")
    (other,) = api_tokens(settings)
    assert other != token
    off = load_settings(None, {"SIMWATCH_HTTP__AUTH": "off"})
    assert api_tokens(off) == frozenset()


def test_tokens_file_lines_comments_and_blanks(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(
        "# ops team\n  alpha-token-1  \n\n   # old: retired-token\nbravo token 2\r\n\t\n"
    )
    assert read_tokens(path) == frozenset({"alpha-token-1", "bravo token 2"})


# ---- constant-time comparison ----------------------------------------------------------


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(
    st.frozensets(st.text(min_size=1, max_size=20), min_size=1, max_size=5),
    st.text(max_size=20),
    st.booleans(),
)
def test_token_matches_is_exactly_membership(
    tokens: frozenset[str], given_token: str, pick: bool
) -> None:
    candidate = min(tokens) if pick else given_token
    assert token_matches(candidate, tokens) is (candidate in tokens)


class Spy:
    """Wraps ``hmac.compare_digest``; records the arguments; can force the answer."""

    def __init__(self, real: Callable[[bytes, bytes], bool], answer: bool | None = None) -> None:
        self.real = real
        self.answer = answer
        self.calls: list[tuple[object, object]] = []

    def __call__(self, a: bytes, b: bytes) -> bool:
        self.calls.append((a, b))
        result = self.real(a, b)
        return result if self.answer is None else self.answer


async def test_every_request_compares_every_token_with_compare_digest(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = Spy(hmac.compare_digest)
    monkeypatch.setattr(hmac, "compare_digest", spy)
    async with serve(app_for(engine, HttpSettings(auth="on"))) as client:
        for header, status in [
            (f"Bearer {TOKENS[0]}", 200),
            (f"Bearer {TOKENS[1]}", 200),
            (f"Bearer {TOKENS[2]}", 200),
            ("Bearer wrong", 401),
            ("Bearer " + "z" * 500, 401),
        ]:
            spy.calls.clear()
            response = await client.get("/api/v1/status", headers={"Authorization": header})
            assert response.status == status, header
            # one comparison per configured token, on bytes, even after a match
            assert len(spy.calls) == len(TOKENS), header
            assert all(isinstance(a, bytes) and isinstance(b, bytes) for a, b in spy.calls)
            assert {b for _a, b in spy.calls} == {t.encode() for t in TOKENS}


async def test_compare_digest_decides(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Forcing compare_digest's answer flips the outcome: nothing else (no ``==``, no set
    lookup) decides whether a token is accepted."""
    async with serve(app_for(engine, HttpSettings(auth="on"))) as client:
        monkeypatch.setattr(hmac, "compare_digest", Spy(hmac.compare_digest, answer=False))
        right = {"Authorization": f"Bearer {TOKENS[0]}"}
        assert (await client.get("/api/v1/status", headers=right)).status == 401
        monkeypatch.setattr(hmac, "compare_digest", Spy(hmac.compare_digest, answer=True))
        wrong = {"Authorization": "Bearer not-a-token"}
        assert (await client.get("/api/v1/status", headers=wrong)).status == 200


# ---- limits ----------------------------------------------------------------------------


async def _read_body(request: web.Request) -> web.Response:
    return web.json_response({"read": len(await request.read())})


async def test_a_body_over_max_body_bytes_is_a_json_413(engine: Engine) -> None:
    """No route reads a body today; any that does gets aiohttp's limit, which make_app
    sets from http.max_body_bytes, answered as a JSON error."""
    app = app_for(engine, HttpSettings(auth="off", max_body_bytes=2048))
    app.router.add_post("/-/test-body", _read_body)  # a test-only route that reads
    async with serve(app) as client:
        ok = await client.post("/-/test-body", data=b"x" * 2048)
        assert ok.status == 200
        assert await ok.json() == {"read": 2048}
        big = await client.post("/-/test-body", data=b"x" * 2049)
        assert big.status == 413
        assert big.content_type == "application/json"
        error = (await big.json())["error"]
        assert error["status"] == 413
        assert "2048" in error["message"] or "Too Large" in error["message"]
        assert not TRACE.search(await big.read())


@pytest.mark.parametrize("auth", ["on", "off"])
async def test_get_endpoints_answer_without_reading_a_huge_body(engine: Engine, auth: str) -> None:
    """A GET with ``Content-Length: 1 GB`` gets its answer at once: the body is never read."""
    app = app_for(engine, HttpSettings(auth=auth, max_body_bytes=2048))
    async with serve(app) as client:
        reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
        writer.write(
            b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n"
            + b"x" * 1000
        )
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 10)
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
        assert status_line.split()[1] == (b"401" if auth == "on" else b"200")


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"SIMWATCH_HTTP__MAX_PAGE_SIZE": "0"}, "http.max_page_size"),
        ({"SIMWATCH_HTTP__MAX_PAGE_SIZE": "100001"}, "http.max_page_size"),
        ({"SIMWATCH_HTTP__MAX_BODY_BYTES": "1023"}, "http.max_body_bytes"),
        ({"SIMWATCH_HTTP__AUTH": "maybe"}, "http.auth"),
    ],
)
def test_limit_settings_are_bounded(env: dict[str, str], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, env)
    assert str(info.value).startswith(f"{field} (from {next(iter(env))}): ")


# ---- no stack traces to clients --------------------------------------------------------


async def test_an_internal_error_shows_no_trace_nor_its_message(engine: Engine) -> None:
    def broken() -> bool:
        raise RuntimeError('Traceback (most recent call last):\n  File "/srv/secret.py", line 1')

    async with serve(app_for(engine, HttpSettings(auth="off"), ready=broken)) as client:
        response = await client.get("/-/ready")
        assert response.status == 500
        body = await response.read()
        assert not TRACE.search(body)
        assert b"secret" not in body
        assert orjson.loads(body) == {
            "error": {"status": 500, "message": "internal error; see the server log"}
        }


BROKEN_REQUESTS: Final = [
    b"GARBAGE\r\n\r\n",
    b"GET\r\n\r\n",
    b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
    b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\nContent-Type: a\r\nContent-Type: b\r\n\r\n",
    b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
    b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /api/v1/sims?\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    b"POST /api/v1/sims HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n",
    b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n",
]


@pytest.mark.parametrize("raw", BROKEN_REQUESTS, ids=range(len(BROKEN_REQUESTS)))
async def test_broken_http_gets_a_short_400_without_a_trace(engine: Engine, raw: bytes) -> None:
    async with serve(app_for(engine, HttpSettings(auth="on"))) as client:
        reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
        writer.write(raw + b"\r\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    status = int(answer.split(b" ", 2)[1])
    assert 400 <= status < 500, answer[:200]
    assert not TRACE.search(answer), answer[:500]
    assert_no_sim(answer)


# ---- bugs the fuzzing found (fixed; these keep them fixed) ----------------------------


def test_a_tokens_file_without_tokens_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text("# no tokens yet\n\n")
    env = {"SIMWATCH_HTTP__AUTH": "on", "SIMWATCH_HTTP__TOKENS_FILE": str(path)}
    with pytest.raises(ConfigError, match=r"^http\.tokens_file"):
        load_settings(None, env)


@pytest.mark.parametrize("token", [b"\xff", b"alpha-token-1\xff", b"\xed\xa0\x80"])
async def test_a_non_utf8_token_is_a_401(engine: Engine, token: bytes) -> None:
    async with serve(app_for(engine, HttpSettings(auth="on"))) as client:
        reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
        writer.write(
            b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Authorization: Bearer " + token + b"\r\n\r\n"
        )
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    assert answer.split(b" ", 2)[1] == b"401", answer[:200]
