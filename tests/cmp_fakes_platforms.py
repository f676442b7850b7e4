"""Fake emnify and 1NCE platforms, as ../shared/cmp/PLATFORMS.md sections 1 and 2 document them.

Each fake is an aiohttp application served on 127.0.0.1 (free port) by :func:`serve`,
serving the documented example payloads copied into ``tests/data/cmp`` (see
``README-emnify-1nce.md``). They enforce:

* emnify (1.1, 1.2): ``POST /api/v1/authenticate`` ``{"application_token"}`` ->
  ``{"auth_token": <JWT>}``; every other call needs ``Authorization: Bearer`` with an issued
  JWT or the configured token, else ``401 {"message": "token contains an invalid number
  of segments"}``. ``GET /api/v1/event``: ``q`` filters ``type`` (numeric, at most 6 values
  separated by ``|``), ``from``/``until`` (only together, ``YYYY-MM-DDTHH:mm:ssZ``), a bad
  ``q`` is 422; ``sort`` only the documented fields (else 400); ``per_page`` < 1 -> the
  default, too large -> capped (``max_per_page``); ``page`` past the last -> **the last page**;
  lower-case ``x-*`` paging headers and an empty ``Link`` (as recorded); 429 with
  ``Retry-After`` when ``throttle`` is set.
* 1NCE (2.1, 2.2): everything below ``/management-api``; ``POST /management-api/oauth/token``
  with HTTP Basic ``client_id:client_secret`` -> ``{"access_token", "expires_in": 3600}``;
  Bearer as above. ``GET /v1/sims`` paged (``pageSize`` <= 100, else 400);
  ``/v1/sims/{iccid}/usage`` (404 for an unknown ICCID); ``/v1/sims/{iccid}/events`` an
  ``EventCollection`` (``pageSize`` <= 1000, ``sort=-timestamp`` newest first), v1 events
  carry **no id**; ``/v2/sims/{iccid}/events`` a JSON array newest first (404 when
  ``v2`` is off).

``tests/cmp_fakes.py`` did not exist when these were written, so they live here.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from aiohttp import web
from cmp_fakes import json_response

if TYPE_CHECKING:
    from collections.abc import Mapping

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ0ZXN0In0.c2lnbmF0dXJl"  # three segments
EMNIFY_SORT_FIELDS = frozenset(
    [
        "id",
        "timestamp",
        "source",
        "severity",
        "alert",
        "organisation",
        "user",
        "endpoint",
        "tags",
        "ip_address",
        "iccid",
        "imsi",
        "type",
    ]
)
MULTI_FILTERS = frozenset({"iccid", "iccid_with_luhn", "endpoint", "type", "network", "rat"})


def epoch(ts: object) -> float:
    """An example's timestamp (the forms PLATFORMS.md 1.3 lists) as epoch seconds."""
    parsed = datetime.fromisoformat(str(ts))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    auth: str | None


@dataclass
class _Base:
    token: str = "s3cret"  # the token a test configures directly
    issued: set[str] = field(default_factory=set)
    requests: list[Seen] = field(default_factory=list)
    throttle: int = 0  # answer the next N calls 429
    retry_after: str = "2"

    def _note(self, request: web.Request) -> None:
        self.requests.append(
            Seen(
                request.method,
                request.path,
                dict(request.query),
                request.headers.get("Authorization"),
            )
        )

    def _authorized(self, request: web.Request) -> bool:
        auth = request.headers.get("Authorization", "")
        scheme, _, value = auth.partition(" ")
        return scheme == "Bearer" and (value == self.token or value in self.issued)

    def _throttled(self) -> web.Response | None:
        if self.throttle > 0:
            self.throttle -= 1
            return web.Response(status=429, headers={"Retry-After": self.retry_after})
        return None

    def gets(self, path: str) -> list[Seen]:
        return [r for r in self.requests if r.method == "GET" and r.path == path]


@dataclass
class FakeEmnify(_Base):
    """``events`` are served by ``GET /api/v1/event`` (documented filters and paging)."""

    application_token: str = "5cCI6IkpXVCJ9.."
    events: list[dict[str, object]] = field(default_factory=list)
    max_per_page: int = 100
    default_per_page: int = 50
    paging_headers: bool = True  # False: the body alone (the last page repeats past the end)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/v1/authenticate", self.authenticate)
        app.router.add_get("/api/v1/event", self.event_list)
        return app

    async def authenticate(self, request: web.Request) -> web.Response:
        self._note(request)
        body = await request.json()
        if body.get("application_token") != self.application_token:
            return web.Response(status=401)
        self.issued.add(JWT)
        return json_response({"auth_token": JWT})

    async def event_list(self, request: web.Request) -> web.Response:
        self._note(request)
        if not self._authorized(request):
            return json_response({"message": "token contains an invalid number of segments"}, 401)
        if (refused := self._throttled()) is not None:
            return refused
        q = request.query
        sort = q.get("sort", "id")
        if any(f.lstrip("-") not in EMNIFY_SORT_FIELDS for f in sort.split(",")):
            return json_response({"message": f"bad sort {sort}"}, 400)
        try:
            filters = _filters(q.get("q", ""))
            page, per_page = int(q.get("page", "1")), int(q.get("per_page", "0"))
        except ValueError as exc:
            return json_response({"message": str(exc)}, 422)
        items = [e for e in self.events if _matches(e, filters)]
        items.sort(key=lambda e: int(str(e["id"])), reverse=sort.startswith("-"))
        if per_page < 1:
            per_page = self.default_per_page
        per_page = min(per_page, self.max_per_page)
        pages = max(1, math.ceil(len(items) / per_page))
        page = min(max(page, 1), pages)  # past the last: the last page (PLATFORMS.md 1.2)
        headers = {  # lower case, as recorded
            "x-count-per-page": str(per_page),
            "x-current-page": str(page),
            "x-total-count": str(len(items)),
            "x-total-pages": str(pages),
            "link": "",
        }
        body = items[(page - 1) * per_page : page * per_page]
        return json_response(body, headers=headers if self.paging_headers else None)


def _filters(q: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for part in filter(None, q.split(",")):
        name, sep, value = part.partition(":")
        if not sep or not value:
            raise ValueError(f"bad filter {part!r}")
        values = value.split("|") if name in MULTI_FILTERS else [value]
        if len(values) > 6:
            raise ValueError(f"{name}: more than 6 values")
        if name == "type" and not all(v.isdigit() for v in values):
            raise ValueError("type is numeric")
        if name in {"from", "until"}:
            datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ")  # noqa: DTZ007 - format check only
        out[name] = values
    if ("from" in out) != ("until" in out):
        raise ValueError("from and until only together")
    return out


def _matches(event: Mapping[str, object], filters: Mapping[str, list[str]]) -> bool:
    etype = event.get("event_type")
    if (
        "type" in filters
        and str(etype.get("id") if isinstance(etype, dict) else None) not in (filters["type"])
    ):
        return False
    if "from" in filters:
        ts = epoch(event["timestamp"])
        return epoch(filters["from"][0]) <= ts <= epoch(filters["until"][0])
    return True


@dataclass
class OnceSim:
    usage: list[dict[str, object]] = field(default_factory=list)  # DailyUsage stats
    events_v2: list[dict[str, object]] = field(default_factory=list)
    events_v1: list[dict[str, object]] = field(default_factory=list)


@dataclass
class FakeOnce(_Base):
    client_id: str = "8100xxxx-client"
    client_secret: str = "secret"
    sims: dict[str, OnceSim] = field(default_factory=dict)
    v2: bool = True
    # v2 events' order is UNCONFIRMED (PLATFORMS.md 2.2): newest first, or ascending ids
    v2_newest_first: bool = True

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/management-api/oauth/token", self.oauth)
        app.router.add_get("/management-api/v1/sims", self.sim_list)
        app.router.add_get("/management-api/v1/sims/{iccid}/usage", self.usage)
        app.router.add_get("/management-api/v1/sims/{iccid}/events", self.events_v1)
        app.router.add_get("/management-api/v2/sims/{iccid}/events", self.events_v2)
        return app

    async def oauth(self, request: web.Request) -> web.Response:
        self._note(request)
        basic = f"{self.client_id}:{self.client_secret}".encode()
        if request.headers.get("Authorization") != "Basic " + base64.b64encode(basic).decode():
            return json_response({"statusCode": 400, "errorCode": "AuthValidationError"}, 400)
        self.issued.add(JWT)
        return json_response(
            {"status_code": 200, "access_token": JWT, "token_type": "bearer", "expires_in": 3600}
        )

    def _check(self, request: web.Request) -> web.Response | None:
        self._note(request)
        if not self._authorized(request):
            return web.Response(status=401)
        return self._throttled()

    async def sim_list(self, request: web.Request) -> web.Response:
        if (refused := self._check(request)) is not None:
            return refused
        page, size = int(request.query.get("page", "1")), int(request.query.get("pageSize", "10"))
        if not 1 <= size <= 100:
            return json_response({"message": "pageSize must be 1..100"}, 400)
        sims = [{"iccid": i, "iccid_with_luhn": i + "0"} for i in self.sims]
        pages = max(1, math.ceil(len(sims) / size))
        headers = {
            "X-Count-Per-Page": str(size),
            "X-Current-Page": str(page),
            "X-Total-Count": str(len(sims)),
            "X-Total-Pages": str(pages),
        }
        return json_response(sims[(page - 1) * size : page * size], headers=headers)

    def _sim(self, request: web.Request) -> OnceSim | None:
        return self.sims.get(request.match_info["iccid"])

    async def usage(self, request: web.Request) -> web.Response:
        if (refused := self._check(request)) is not None:
            return refused
        if (sim := self._sim(request)) is None:
            return web.Response(status=404)
        start, end = request.query["start_dt"], request.query["end_dt"]
        stats = [d for d in sim.usage if start <= str(d["date"])[:10] <= end]
        return json_response({"stats": stats})

    def _page(self, request: web.Request) -> tuple[int, int] | web.Response:
        page, size = int(request.query.get("page", "1")), int(request.query.get("pageSize", "10"))
        if not 1 <= size <= 1000:
            return json_response({"message": "pageSize must be 1..1000"}, 400)
        return page, size

    async def events_v1(self, request: web.Request) -> web.Response:
        if (refused := self._check(request)) is not None:
            return refused
        if (sim := self._sim(request)) is None:
            return web.Response(status=404)
        paging = self._page(request)
        if isinstance(paging, web.Response):
            return paging
        page, size = paging
        items = list(sim.events_v1)
        if request.query.get("sort", "").startswith("-timestamp"):
            items.sort(key=lambda e: epoch(e["timestamp"]), reverse=True)
        pages = max(1, math.ceil(len(items) / size))
        body = {"events": items[(page - 1) * size : page * size], "totalEvents": len(items)}
        return json_response({**body, "totalPages": pages})

    async def events_v2(self, request: web.Request) -> web.Response:
        if (refused := self._check(request)) is not None:
            return refused
        if not self.v2 or (sim := self._sim(request)) is None:
            return web.Response(status=404)
        paging = self._page(request)
        if isinstance(paging, web.Response):
            return paging
        page, size = paging
        items = sorted(sim.events_v2, key=lambda e: int(str(e["id"])), reverse=self.v2_newest_first)
        return json_response(items[(page - 1) * size : page * size])
