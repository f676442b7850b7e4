"""Bounded fuzzing of the HTTP API's requests (issue "Bad input").

A small real engine (13 SIMs fed FORMATS.md records through the decoder) is served by
the real app (``simwatch.http.app.make_app``, the real ``/metrics`` handler) on 127.0.0.1.
Requests are written as raw HTTP/1.1 bytes so paths, query strings and headers can be
anything a client could send: random paths around the real routes (dot segments,
encoded slashes, case, overlong segments), query strings with the real parameters and
junk values (huge and non-ASCII limits, forged and broken cursors, repeated keys,
unknown names), random methods and headers (Authorization, Content-Length with a body).

Properties:

* no response is a 500, and no body holds a traceback (``Traceback``, ``File "``);
* every error answer is JSON ``{"error": {"status": <the status>, "message": "..."}}``;
* a SIM page never holds more than ``limit`` items nor more than ``http.max_page_size``;
  paging with any limit and filters visits each matching SIM exactly once, in order;
* with auth on, no request without the right bearer token gets any SIM's data: every
  ``/api/`` answer is 401, and no body anywhere names an ICCID of the fleet.

The bugs this fuzzing found are fixed; a test for each stands at the end.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import re
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote, unquote

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from fleet import DAY, ICCIDS, T0, Feed, inventory_row, new_engine
from fuzzing import fuzz
from hypothesis import HealthCheck, event, given
from hypothesis import strategies as st

from simwatch.core.evaluate import STATE_NAMES
from simwatch.core.timeutil import format_rfc3339
from simwatch.http.app import make_app
from simwatch.http.metrics import EngineCollector, make_registry, metrics_handler
from simwatch.http.views import LIST_FILTERS, encode_cursor
from simwatch.shell.health import DaemonHealth
from simwatch.shell.settings import HttpSettings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from aiohttp import web

    from simwatch.core.engine import Engine

NOW: Final = T0 + 2 * DAY + 6 * 3600
SIMS: Final = ICCIDS[:13]
TOKEN: Final = "fuzz-token-0123456789"
MAX_PAGE: Final = 5
NETWORKS: Final = [("262", "02"), ("262", "03"), ("204", "08")]


ONE_SERVER: Final = HealthCheck.function_scoped_fixture  # one server serves every example


# ---- the fleet and the servers ----------------------------------------------------------


@pytest.fixture(scope="module")
def api_engine() -> Engine:
    """13 SIMs: 10 report hourly for two days (SIMs 7-9 stop 6 h before NOW), SIM 10 is
    suspended, 11 is vip and never reports, 12 is in no inventory but sent one event."""
    eng = new_engine()
    eng.load_inventory(
        inventory_row(
            iccid,
            customer="beta" if k % 2 else "acme",
            status="suspended" if k == 10 else "active",
            tags=frozenset({"vip"}) if k == 11 else frozenset(),
        )
        for k, iccid in enumerate(SIMS[:12])
    )
    feed = Feed(eng, now=NOW)
    t = T0
    while t < NOW:
        for k, iccid in enumerate(SIMS[:10]):
            if k >= 7 and t > NOW - 6 * 3600:
                continue
            mcc, mnc = NETWORKS[k % 3]
            feed.usage(iccid, t + 60 + k, start=format_rfc3339(t), bytes_up=100 + k,
                       bytes_down=10, mcc=mcc, mnc=mnc)  # fmt: skip
        if t > NOW - 12 * 3600:
            eng.evaluate(t + 1800)
        t += 3600
    feed.event(SIMS[12], NOW - 60, "attach")
    eng.evaluate(NOW)
    return eng


def app_for(
    engine: Engine, http: HttpSettings, tokens: frozenset[str] = frozenset()
) -> web.Application:
    collector = EngineCollector(engine, DaemonHealth(started_at=T0), tuple, version="fuzz")
    return make_app(
        engine,
        now=lambda: NOW,
        settings=http,
        tokens=tokens,
        metrics_handler=metrics_handler(make_registry(collector, process=False)),
    )


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[int]:
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        port = client.port
        assert isinstance(port, int)
        yield port


@pytest.fixture
async def open_port(api_engine: Engine) -> AsyncIterator[int]:
    http = HttpSettings(auth="off", max_page_size=MAX_PAGE)
    async with serving(app_for(api_engine, http)) as port:
        yield port


@pytest.fixture
async def auth_port(api_engine: Engine) -> AsyncIterator[int]:
    http = HttpSettings(auth="on", max_page_size=MAX_PAGE)
    async with serving(app_for(api_engine, http, frozenset({TOKEN, "second-token"}))) as port:
        yield port


@dataclasses.dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


async def send_raw(port: int, data: bytes) -> Answer:
    """One request on its own connection; the whole answer (the server closes)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Answer(status, headers, body)


def request_bytes(
    method: str, target: str, headers: list[tuple[str, str]], body: bytes = b""
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape") + body


TRACE: Final = re.compile(rb'Traceback|File "|\.py", line')


def check_answer(method: str, answer: Answer) -> None:
    assert answer.status != 500, answer
    assert 200 <= answer.status < 600, answer
    assert not TRACE.search(answer.body), answer.body[:500]
    if answer.status >= 400 and method != "HEAD":
        assert answer.headers.get("content-type", "").startswith("application/json"), answer
        error = answer.json()["error"]
        assert error["status"] == answer.status
        assert isinstance(error["message"], str)
        assert error["message"].strip()


# ---- strategies -----------------------------------------------------------------------

segments = st.one_of(
    st.sampled_from([
        "", "api", "v1", "sims", "groups", "incidents", "status", "openapi.json", "-", "healthy",
        "ready", "metrics", "..", ".", "%2e%2e", "%2F", "API", "Sims", "inc-0001", SIMS[0],
        SIMS[12], "8" * 23, "%00", "%ff", "%", "x" * 300,
    ]),
    st.text(max_size=12).map(lambda s: quote(s, safe="")),
)  # fmt: skip
ROUTES: Final = [
    "/", "/-/healthy", "/-/ready", "/metrics", "/api/v1/openapi.json", "/api/v1/status",
    "/api/v1/sims", f"/api/v1/sims/{SIMS[3]}", "/api/v1/groups", "/api/v1/incidents",
    "/api/v1/incidents/inc-0001",
]  # fmt: skip
QUERY_ROUTES: Final = ["/api/v1/sims", "/api/v1/groups", "/api/v1/incidents"]
paths = st.one_of(
    st.sampled_from(QUERY_ROUTES),  # most requests go where the query parameters matter
    st.sampled_from(QUERY_ROUTES),
    st.sampled_from(QUERY_ROUTES),
    st.sampled_from(ROUTES),
    st.sampled_from(ROUTES),
    st.sampled_from(ROUTES).flatmap(lambda r: segments.map(lambda s: f"{r}/{s}")),
    st.lists(segments, min_size=1, max_size=5).map(lambda parts: "/" + "/".join(parts)),
    st.lists(segments, max_size=3).map(lambda parts: "/api/v1/" + "/".join(parts)),
)


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


values_of: dict[str, st.SearchStrategy[str]] = {
    "limit": st.one_of(
        st.integers(-3, 2 * MAX_PAGE).map(str),
        st.sampled_from(
            ["", " 3", "3 ", "+3", "0x3", "3.0", "1e1", "\u0663", "\uff13", "9" * 200, "-0"]
        ),
    ),
    "cursor": st.one_of(
        st.integers(0, 2**70).map(encode_cursor),
        st.integers(0, 20).map(encode_cursor),
        st.text(max_size=20).map(b64),
        st.sampled_from(
            [
                "row:1",
                b64("row:"),
                b64("row:-1"),
                b64("row: 1"),
                b64("row:٣"),
                b64("row:" + "9" * 100),
                "%%%",
                "====",
                "cm93OjE=",
                "cm93OjE",
            ]
        ),
        st.text(max_size=30),
    ),
    "state": st.sampled_from([*STATE_NAMES, "", "OK", "silent ", "x"]) | st.text(max_size=10),
    "dim": st.sampled_from(
        ["apn", "country", "partner", "rat", "customer", "plan", "", "iccid", "x"]
    )
    | st.text(max_size=10),
}
for _name in LIST_FILTERS:
    values_of[_name] = st.sampled_from(["", "meters.acme", "DE", "26202", "beta", "x"]) | st.text(
        max_size=10
    )
KNOWN_PARAMS: Final = sorted(values_of)


@st.composite
def query_strings(draw: st.DrawFn) -> str:
    pairs = []
    for _ in range(draw(st.integers(0, 4))):
        name = draw(st.sampled_from(KNOWN_PARAMS) | st.text(max_size=8))
        value = draw(values_of.get(name, st.text(max_size=10)))
        if draw(st.integers(0, 9)):
            pairs.append(f"{quote(name, safe='')}={quote(value, safe='')}")
        else:  # unencoded: '+', ';', '%' and friends as they come (visible ASCII only)
            pairs.append(re.sub(r"[^\x21-\x7e]|#", "", f"{name}={value}"))
    sep = draw(st.sampled_from(["&", "&", ";"]))
    return sep.join(pairs)


header_pairs = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "Accept",
                "Authorization",
                "Accept-Encoding",
                "X-Forwarded-For",
                "Cookie",
                "Range",
                "Content-Type",
                "If-None-Match",
                "Origin",
            ]
        ),
        st.one_of(
            st.sampled_from(
                [
                    "*/*",
                    "application/json",
                    "text/html",
                    "gzip",
                    "Bearer",
                    "Bearer ",
                    f"Bearer {TOKEN}x",
                    f"bearer {TOKEN[:-1]}",
                    f"Basic {TOKEN}",
                    "bytes=0-1",
                    "127.0.0.1, 10.0.0.1",
                ]
            ),
            st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=30),
        ),
    ),
    max_size=3,
    unique_by=lambda pair: pair[0],  # a repeated Content-Type is a protocol error (below)
)
methods = st.sampled_from(["GET"] * 6 + ["HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"])


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, list[tuple[str, str]], bytes]:
    path = draw(paths)
    query = draw(query_strings())
    target = path + ("?" + query if query or draw(st.booleans()) else "")
    body = draw(st.sampled_from([b"", b"{}", b"x" * 2000, b'{"limit": 100000}']))
    return draw(methods), target, draw(header_pairs), body


# ---- properties -----------------------------------------------------------------------


@fuzz(400, ONE_SERVER)
@given(requests())
async def test_any_request_gets_an_answer_without_a_500_or_a_trace(
    open_port: int, req: tuple[str, str, list[tuple[str, str]], bytes]
) -> None:
    method, target, headers, body = req
    answer = await send_raw(open_port, request_bytes(method, target, headers, body))
    event(f"status {answer.status}")
    check_answer(method, answer)
    if answer.status == 200 and method == "GET" and target.startswith("/api/v1/sims?"):
        page = answer.json()
        assert len(page["items"]) <= MAX_PAGE


@fuzz(300, ONE_SERVER)
@given(requests())
async def test_without_the_token_no_api_answer_and_no_iccid(
    auth_port: int, req: tuple[str, str, list[tuple[str, str]], bytes]
) -> None:
    method, target, headers, body = req
    assert all(v.strip() != f"Bearer {TOKEN}" for _k, v in headers)
    answer = await send_raw(auth_port, request_bytes(method, target, headers, body))
    event(f"{'api' if target.startswith('/api/') else 'other'} status {answer.status}")
    check_answer(method, answer)
    if target.startswith("/api/"):
        assert answer.status == 401, (target, answer)
        assert answer.headers["www-authenticate"].startswith("Bearer")
    # an error may quote the client's own path back; it never names another SIM
    asked = unquote(target)
    leaked = [iccid for iccid in SIMS if iccid.encode() in answer.body and iccid not in asked]
    assert not leaked, (target, answer.body[:300])


@fuzz(150, ONE_SERVER)
@given(requests())
async def test_with_the_token_any_request_gets_an_answer_without_a_500(
    auth_port: int, req: tuple[str, str, list[tuple[str, str]], bytes]
) -> None:
    method, target, headers, body = req
    headers = [(k, v) for k, v in headers if k != "Authorization"]
    headers.append(("Authorization", f"Bearer {TOKEN}"))
    answer = await send_raw(auth_port, request_bytes(method, target, headers, body))
    event(f"status {answer.status}")
    check_answer(method, answer)
    if target.startswith("/api/") and answer.status == 401:
        raise AssertionError(f"the right token was refused: {target}")


@fuzz(120, ONE_SERVER)
@given(
    st.integers(1, MAX_PAGE),
    st.dictionaries(st.sampled_from(["state", *LIST_FILTERS]), st.sampled_from(
        ["ok", "silent", "never_seen", "inactive", "late", "meters.acme", "DE", "NL", "26202",
         "20408", "beta", "acme", ""]), max_size=2),
)  # fmt: skip
async def test_paging_visits_each_matching_sim_once(
    open_port: int, limit: int, filters: dict[str, str]
) -> None:
    query = "&".join(f"{k}={quote(v)}" for k, v in sorted(filters.items()))
    everything = await send_raw(
        open_port, request_bytes("GET", f"/api/v1/sims?limit={MAX_PAGE}&{query}", [])
    )
    if everything.status == 400:  # e.g. state=DE: refused, naming the parameter
        message = everything.json()["error"]["message"]
        assert any(name in message for name in filters), message
        return
    seen: list[str] = []
    cursor = None
    for _ in range(len(SIMS) + 2):
        target = f"/api/v1/sims?limit={limit}&{query}" + (f"&cursor={cursor}" if cursor else "")
        answer = await send_raw(open_port, request_bytes("GET", target, []))
        check_answer("GET", answer)
        page = answer.json()
        assert len(page["items"]) <= limit
        seen += [item["iccid"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert len(page["items"]) == limit
    assert cursor is None
    assert len(seen) == len(set(seen))
    assert seen == sorted(seen, key=SIMS.index)  # row order is inventory order here
    assert seen[:MAX_PAGE] == [item["iccid"] for item in everything.json()["items"]]
    if not filters:
        assert set(seen) == set(SIMS)  # unfiltered: the whole fleet


@pytest.mark.parametrize("limit", ["0", str(MAX_PAGE + 1), "100000", "-1", "1.0", "٣"])
async def test_a_limit_outside_the_page_size_is_refused_naming_it(
    open_port: int, limit: str
) -> None:
    answer = await send_raw(
        open_port, request_bytes("GET", f"/api/v1/sims?limit={quote(limit)}", [])
    )
    check_answer("GET", answer)
    assert answer.status == 400
    assert "limit" in answer.json()["error"]["message"]
    assert f"1..{MAX_PAGE}" in answer.json()["error"]["message"]


async def test_the_default_page_is_capped_by_the_page_size(open_port: int) -> None:
    answer = await send_raw(open_port, request_bytes("GET", "/api/v1/sims", []))
    assert answer.status == 200
    assert len(answer.json()["items"]) == MAX_PAGE  # default 100, capped at max_page_size
    doc = (await send_raw(open_port, request_bytes("GET", "/api/v1/openapi.json", []))).json()
    limit = next(
        p for p in doc["paths"]["/api/v1/sims"]["get"]["parameters"] if p["name"] == "limit"
    )
    assert limit["schema"]["maximum"] == MAX_PAGE


# ---- bugs the fuzzing found (fixed; these keep them fixed) ----------------------------


@pytest.mark.parametrize(
    "query",
    [
        "limit=" + "1" * 4400,
        "cursor=" + b64("row:" + "1" * 4400),
        "cursor=" + b64("row:" + "0" * 4400),
    ],
    ids=["limit", "cursor", "cursor-zeros"],
)
async def test_a_huge_number_in_the_query_is_a_400(open_port: int, query: str) -> None:
    answer = await send_raw(open_port, request_bytes("GET", f"/api/v1/sims?{query}", []))
    check_answer("GET", answer)
    assert answer.status == 400
