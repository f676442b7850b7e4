"""Fake Cisco Control Center, KORE Super SIM, Soracom and Hologram platforms.

Each fake is an aiohttp handler served on 127.0.0.1 (free port) by :func:`serve`. They
enforce what ../shared/cmp/PLATFORMS.md documents (sections 3 to 6) and serve the
documented example payloads copied into ``tests/data/cmp`` (see its README):

* Cisco (3): HTTP Basic ``username:apiKey`` (else 401 / ``10000001``); one call at a
  time (an overlapping call is answered 429 with error ``40000029``); ``throttle``
  answers the next calls HTTP 400 with ``40000029`` (the status is UNCONFIRMED: 400
  proves the code is read from the body); ``devices?modifiedSince=`` paged with
  ``pageSize`` <= 50, ``pageNumber``, ``lastPage``.
* KORE (4): ``Authorization: Bearer``; ``/v1/Sims`` and ``/v1/UsageRecords`` paged by
  ``meta.next_page_url`` (absolute URLs with ``PageToken``), ``PageSize`` <= 249, hour
  windows <= 31 days (error 83604).
* Soracom (5): ``X-Soracom-API-Key`` + ``X-Soracom-Token``; lists paged by the
  ``x-soracom-next-key`` header / ``last_evaluated_key``; session events ``from``/``to``
  in milliseconds, air stats in seconds (a value in the wrong unit is a 400).
* Hologram (6): HTTP Basic ``apikey:<key>``; ``/api/1/usage/data`` newest first with
  cursor paging (``continues``, ``lastid``, ``links.next``, ``startafter``).

The credentials come from the sources' own ``auth`` settings (``basic``,
``client_credentials`` against :class:`FakeKore`'s token endpoint, ``soracom`` against
:class:`FakeSoracom`'s ``POST /v1/auth``).

(``tests/cmp_fakes.py`` did not exist when these were written; they live here.)
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from cmp_fakes import example, json_response

if TYPE_CHECKING:
    from collections.abc import Mapping

    from aiohttp import web


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, str]


# ------------------------------------------------------------------ Cisco Control Center

CISCO_THROTTLE = {"errorMessage": "Exceeding Tariff limits", "errorCode": "40000029"}


@dataclass
class FakeCisco:
    user: str = "ccuser"
    api_key: str = "cc-api-key"
    # ICCID -> ISO 8601 time of its last change, in change order (oldest first)
    devices: dict[str, str] = field(default_factory=dict)
    session: dict[str, dict[str, object]] = field(default_factory=dict)
    ctd: dict[str, dict[str, object]] = field(default_factory=dict)
    throttle: int = 0  # answer this many next calls with 40000029 (HTTP 400)
    delay: float = 0.002  # each call takes this long, so overlapping calls can be seen
    calls: list[Call] = field(default_factory=list)
    overlaps: int = 0
    in_flight: int = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.calls.append(Call(request.method, request.path, dict(request.query)))
        if request.headers.get("Authorization") != basic(self.user, self.api_key):
            return json_response(
                {"errorMessage": "Invalid credentials.", "errorCode": "10000001"}, 401
            )
        self.in_flight += 1
        try:
            await asyncio.sleep(self.delay)
            if self.in_flight > 1:  # "one API call at a time"
                self.overlaps += 1
                return json_response(CISCO_THROTTLE, 429)
            if self.throttle:
                self.throttle -= 1
                return json_response(CISCO_THROTTLE, 400)
            return self.route(request)
        finally:
            self.in_flight -= 1

    def route(self, request: web.Request) -> web.Response:
        parts = request.path.split("/")  # "", rws, api, v1, devices, [iccid, what]
        if parts[:5] != ["", "rws", "api", "v1", "devices"]:
            return json_response({"errorMessage": "Not found", "errorCode": "10000000"}, 404)
        if len(parts) == 5:
            return self.search(request.query)
        iccid, what = parts[5], parts[6] if len(parts) > 6 else ""
        if iccid not in self.session or what not in {"sessionInfo", "ctdUsages"}:
            return json_response({"errorMessage": "Invalid iccid", "errorCode": "10000003"}, 404)
        if what == "sessionInfo":
            return json_response({"iccid": iccid, **self.session[iccid]})
        return json_response({"iccid": iccid, **self.ctd[iccid]})

    def search(self, query: Mapping[str, str]) -> web.Response:
        since = query.get("modifiedSince")
        size = int(query.get("pageSize", "50"))
        number = int(query.get("pageNumber", "1"))
        if since is None:
            return json_response(
                {"errorMessage": "modifiedSince is required", "errorCode": "10000024"}, 400
            )
        if not 1 <= size <= 50:
            return json_response({"errorMessage": "Invalid pageSize", "errorCode": "10000024"}, 400)
        after = datetime.fromisoformat(since)
        changed = [i for i, at in self.devices.items() if datetime.fromisoformat(at) >= after]
        page = changed[(number - 1) * size : number * size]
        devices = [
            {"iccid": i, "status": "ACTIVATED", "ratePlan": "rp", "communicationPlan": "cp"}
            for i in page
        ]
        last = number * size >= len(changed)
        return json_response({"devices": devices, "pageNumber": number, "lastPage": last})


# ------------------------------------------------------------------ KORE Super SIM

TOKEN_PATH = "/api-services/v1/auth/token"  # KORE's token endpoint path (PLATFORMS.md 4.1)


@dataclass
class FakeKore:
    token: str = "kore-access-token"
    url: str = ""
    sims: list[dict[str, object]] = field(default_factory=list)
    usage: list[dict[str, object]] = field(default_factory=list)  # records, any order
    calls: list[Call] = field(default_factory=list)

    client_id: str = "kore-client"
    client_secret: str = "kore-secret"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.calls.append(Call(request.method, request.path, dict(request.query)))
        if request.method == "POST" and request.path == TOKEN_PATH:
            return await self.grant(request)
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return json_response({"code": 20003, "message": "Authenticate", "status": 401}, 401)
        q = request.query
        size = int(q.get("PageSize", "50"))
        if not 1 <= size <= 249:
            return json_response({"code": 20001, "message": "Invalid PageSize", "status": 400}, 400)
        if request.path == "/v1/Sims":
            return self.page("sims", self.sims, request, size)
        if request.path == "/v1/UsageRecords":
            return self.usage_page(request, size)
        return json_response({"code": 20404, "message": "Not found", "status": 404}, 404)

    async def grant(self, request: web.Request) -> web.Response:
        """OAuth2 client credentials as a form (PLATFORMS.md 4.1, the documented bodies)."""
        form = await request.post()
        wanted = {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self.client_secret,
        }
        if request.content_type != "application/x-www-form-urlencoded" or dict(form) != wanted:
            return json_response(example("kore-auth-token-error-401.json"), 401)
        answer = dict(example("kore-auth-token-response.json"))
        answer.update(access_token=self.token, expires_in=3600)
        return json_response(answer)

    def usage_page(self, request: web.Request, size: int) -> web.Response:
        q = request.query
        start = datetime.fromisoformat(q["StartTime"])
        end = datetime.fromisoformat(q["EndTime"])
        if q.get("Granularity") == "hour" and (end - start).total_seconds() > 31 * 86400:
            return json_response(
                {"code": 83604, "message": "Invalid time window", "status": 400}, 400
            )
        grouped = q.get("Group") == "sim"
        rows = []
        for rec in self.usage:
            begin = datetime.fromisoformat(str(dict(rec["period"])["start_time"]))  # type: ignore[call-overload]
            if start <= begin < end:
                rows.append(rec if grouped else {**rec, "sim_sid": None})
        return self.page("usage_records", rows, request, size)

    def page(
        self, key: str, rows: list[dict[str, object]], request: web.Request, size: int
    ) -> web.Response:
        number = int(request.query.get("Page", "0"))
        if number and request.query.get("PageToken") != f"PT{number}":
            return json_response(
                {"code": 20001, "message": "Invalid PageToken", "status": 400}, 400
            )
        chunk = rows[number * size : (number + 1) * size]
        base = {k: v for k, v in request.query.items() if k not in {"Page", "PageToken"}}

        def url(n: int) -> str:
            query = "&".join(f"{k}={v}" for k, v in base.items())
            token = f"&PageToken=PT{n}" if n else ""
            return f"{self.url}{request.path}?{query}&Page={n}{token}"

        more = (number + 1) * size < len(rows)
        meta = {
            "first_page_url": url(0),
            "key": key,
            "next_page_url": url(number + 1) if more else None,
            "page": number,
            "page_size": size,
            "previous_page_url": url(number - 1) if number else None,
            "url": url(number),
        }
        return json_response({key: chunk, "meta": meta})


# ------------------------------------------------------------------ Soracom


@dataclass
class FakeSoracom:
    api_key: str = "api-key-1"
    token: str = "token-1"
    sims: list[str] = field(default_factory=list)
    events: dict[str, list[dict[str, object]]] = field(default_factory=dict)  # sim -> events
    air: dict[str, list[dict[str, object]]] = field(default_factory=dict)  # sim -> buckets
    calls: list[Call] = field(default_factory=list)
    auth_key_id: str = "keyId-1"
    auth_key: str = "secret-1"

    async def handle(  # noqa: PLR0911 - one return per route and error
        self, request: web.Request
    ) -> web.StreamResponse:
        self.calls.append(Call(request.method, request.path, dict(request.query)))
        if request.method == "POST" and request.path == "/v1/auth":
            body = await request.json()
            if (body.get("authKeyId"), body.get("authKey")) != (self.auth_key_id, self.auth_key):
                return json_response({"code": "AUM0002", "message": "Invalid AuthKey"}, 401)
            answer = dict(example("soracom-auth-response.json"))
            answer.update(apiKey=self.api_key, token=self.token)
            return json_response(answer)
        if (
            request.headers.get("X-Soracom-API-Key") != self.api_key
            or request.headers.get("X-Soracom-Token") != self.token
        ):
            return json_response({"code": "AUM0001", "message": "No API key or token"}, 401)
        parts = request.path.split("/")
        q = request.query
        if request.path == "/v1/sims":
            return self.page([{"simId": s, "status": "active"} for s in self.sims], q)
        if parts[:3] == ["", "v1", "sims"] and parts[4:] == ["events", "sessions"]:
            start, end = int(q["from"]), int(q["to"])
            if start < 10**12 or end < 10**12:
                return json_response({"code": "SEM0001", "message": "from/to: UNIX ms"}, 400)
            rows = [e for e in self.events.get(parts[3], []) if start <= int(str(e["time"])) <= end]
            return self.page(rows, q)
        if parts[:5] == ["", "v1", "stats", "air", "sims"] and len(parts) == 6:
            start, end = int(q["from"]), int(q["to"])
            if start > 10**11 or end > 10**11 or q.get("period") not in {"minutes", "day", "month"}:
                return json_response({"code": "STA0001", "message": "from/to: UNIX s"}, 400)
            rows = [
                b for b in self.air.get(parts[5], []) if start <= int(str(b["unixtime"])) <= end
            ]
            return json_response(rows)
        return json_response({"code": "COM0001", "message": "Not found"}, 404)

    @staticmethod
    def page(rows: list[dict[str, object]], q: Mapping[str, str]) -> web.Response:
        limit = int(q.get("limit", "10"))
        first = int(q["last_evaluated_key"]) + 1 if "last_evaluated_key" in q else 0
        chunk = rows[first : first + limit]
        headers = {}
        if first + limit < len(rows):
            headers["x-soracom-next-key"] = str(first + limit - 1)
        return json_response(chunk, headers=headers)


# ------------------------------------------------------------------ Hologram


@dataclass
class FakeHologram:
    api_key: str = "holo-key"
    sessions: list[dict[str, object]] = field(default_factory=list)  # any order
    calls: list[Call] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.calls.append(Call(request.method, request.path, dict(request.query)))
        if request.headers.get("Authorization") != basic("apikey", self.api_key):
            return json_response({"success": False, "error": "Unauthorized"}, 401)
        if request.path != "/api/1/usage/data":
            return json_response({"success": False, "error": "Not found"}, 404)
        q = request.query
        limit = int(q.get("limit", "100"))
        rows = sorted(self.sessions, key=lambda s: -int(str(s["record_id"])))
        if "startafter" in q:
            rows = [r for r in rows if int(str(r["record_id"])) < int(q["startafter"])]
        if "timestart" in q:
            low = int(q["timestart"])
            rows = [r for r in rows if _epoch(str(r["timestamp"])) >= low]
        chunk = rows[:limit]
        more = len(rows) > limit
        last = chunk[-1]["record_id"] if chunk else None
        nxt = f"/api/1/usage/data?limit={limit}&startafter={last}" if more else None
        body = {
            "success": True,
            "limit": limit,
            "size": len(chunk),
            "continues": more,
            "links": {"path": "/api/1/usage/data", "base": "dashboard.hologram.io", "next": nxt},
            "lastid": last,
            "data": chunk,
        }
        return json_response(body)


def _epoch(text: str) -> int:
    return int(datetime.fromisoformat(text.replace(" ", "T") + "+00:00").timestamp())
