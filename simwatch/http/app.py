"""The HTTP API (aiohttp): per-SIM status, the SIM list, groups and incidents.

Handlers read the engine directly: the daemon runs everything on one event loop, so a
handler never sees a half-applied record or evaluation. All the work is in the pure
views of ``simwatch.http.views``; this module parses requests, checks bearer tokens and turns
every failure into a JSON error (``{"error": {"status": 404, "message": "..."}}``),
never a stack trace.
"""

from __future__ import annotations

import hmac
import logging
from typing import TYPE_CHECKING, Final

import orjson
from aiohttp import web

from simwatch.http import views
from simwatch.http.maintenance import add_maintenance_routes
from simwatch.http.openapi import openapi_document

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping, Sequence

    from aiohttp.typedefs import Handler, Middleware

    from simwatch.core.engine import Engine
    from simwatch.http.console import Sessions
    from simwatch.shell.history import HistoryStore
    from simwatch.shell.maintenance import MaintenanceStore
    from simwatch.shell.push import PushReceiver, PushReply
    from simwatch.shell.settings import HttpSettings
    from simwatch.shell.source_contract import SourceStats

    # a cluster's /api/v1/sims/{iccid}: (status, body) from the node owning the SIM, or
    # None when this node owns it (service.cluster)
    SimForward = Callable[[str], Awaitable[tuple[int, object] | None]]

log = logging.getLogger(__name__)

API_PREFIX: Final = "/api/"
INGEST_ROUTE: Final = "ingest"  # POST /api/v1/ingest/{name}: its handler authenticates
REALM: Final = 'Bearer realm="simwatch"'
INGEST_REALM: Final = 'Bearer realm="simwatch", Basic realm="simwatch"'
_READ_CHUNK: Final = 1 << 16

LANDING: Final = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>simwatch</title></head>
<body>
<h1>simwatch</h1>
<p>Watches a fleet of IoT SIM cards, finds silent SIMs and what they share.</p>
<ul>
<li><a href="/ui/">/ui/</a> the console: fleet, incidents, SIM search (sign in with an
API token)</li>
<li><a href="/api/v1/status">/api/v1/status</a> fleet summary and sources</li>
<li><a href="/api/v1/sims">/api/v1/sims</a> SIMs (filters: state, apn, country, partner,
customer; limit, cursor)</li>
<li>/api/v1/sims/{iccid} one SIM: state, rhythm, session, diagnosis</li>
<li><a href="/api/v1/groups">/api/v1/groups</a> counts per group and state (dim=partner, ...)</li>
<li><a href="/api/v1/incidents">/api/v1/incidents</a> incidents (state=open|resolved)</li>
<li>/api/v1/incidents/{id}/sims an incident's affected SIMs (limit, cursor)</li>
<li><a href="/api/v1/openapi.json">/api/v1/openapi.json</a> OpenAPI 3.1 description</li>
<li><a href="/-/healthy">/-/healthy</a>, <a href="/-/ready">/-/ready</a>,
<a href="/metrics">/metrics</a></li>
</ul>
</body></html>
"""


_GROUPS_CACHED_DIMS = 16  # groups views kept (one per dim asked; a bad dim is a 400)


def json_response(data: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    response = json_response({"error": {"status": status, "message": message}}, status)
    if headers:
        response.headers.update(headers)
    return response


def token_matches(given: str, tokens: frozenset[str]) -> bool:
    """Compare against every token in constant time (no early exit on a match)."""
    raw = given.encode("utf-8", "surrogateescape")  # raw header bytes arrive as surrogates
    found = False
    for token in tokens:
        found |= hmac.compare_digest(raw, token.encode())
    return found


def _unauthorized(request: web.Request, tokens: frozenset[str]) -> web.Response | None:
    """The 401 for an ``/api/`` request without one of ``tokens``; None when it may pass."""
    if not request.path.startswith(API_PREFIX) or request.match_info.route.name == INGEST_ROUTE:
        return None
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        return error_response(401, "missing bearer token", {"WWW-Authenticate": REALM})
    if scheme.lower() != "bearer" or not token_matches(token.strip(), tokens):
        return error_response(
            401, "invalid bearer token", {"WWW-Authenticate": f'{REALM}, error="invalid_token"'}
        )
    return None


def _guard(tokens: frozenset[str] | None) -> Middleware:
    """The one middleware: bearer tokens for ``/api/`` (when ``tokens`` is not None), then
    every failure as a JSON error, never a stack trace. (One middleware, not two: each
    costs a wrapper per request.)"""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            if tokens is not None:
                refused = _unauthorized(request, tokens)
                if refused is not None:
                    return refused
            return await handler(request)
        except views.ViewError as exc:
            return error_response(exc.status, exc.message)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            keep = {k: v for k, v in exc.headers.items() if k in ("Allow", "WWW-Authenticate")}
            where = f"{request.method} {request.path[:200]}"
            hint = "; the endpoints are listed at /api/v1/openapi.json" if exc.status == 404 else ""
            return error_response(exc.status, f"{exc.reason}: {where}{hint}", keep)
        except Exception:
            log.exception("error serving %s %s", request.method, request.path)
            return error_response(500, "internal error; see the server log")

    return guard


def _query(request: web.Request, *known: str) -> Mapping[str, str]:
    """The query parameters; 400 naming the first one the endpoint does not know."""
    query = request.query
    unknown = sorted(k for k in query if k not in known)
    if unknown:
        raise views.bad_request(f"unknown parameter {unknown[0][:40]!r}")
    return query


class _Api:
    def __init__(
        self,
        engine: Engine,
        now: Callable[[], float],
        settings: HttpSettings,
        ready: Callable[[], bool],
        source_stats: Callable[[], Sequence[SourceStats]],
        *,
        sim_forward: SimForward | None = None,
    ) -> None:
        self.engine = engine
        self.sim_forward = sim_forward
        self.now = now
        self.settings = settings
        self.ready = ready
        self.source_stats = source_stats
        # The groups view scans the whole fleet (milliseconds at 1M SIMs); its answer only
        # changes with an evaluation or a SIM new to the fleet, so it is kept per
        # (evaluation cycle, fleet size, dim) and served as encoded bytes.
        self._groups_cache: dict[str | None, tuple[tuple[int, int], bytes]] = {}

    async def landing(self, _request: web.Request) -> web.Response:
        return web.Response(text=LANDING, content_type="text/html")

    async def healthy(self, _request: web.Request) -> web.Response:
        return json_response({"status": "ok"})

    async def is_ready(self, _request: web.Request) -> web.Response:
        if self.ready():
            return json_response({"status": "ready"})
        return json_response({"status": "not ready"}, 503)

    async def openapi(self, request: web.Request) -> web.Response:
        named = request.app.router.named_resources()
        document = openapi_document(
            max_page_size=self.settings.max_page_size,
            ingest=INGEST_ROUTE in named,
            maintenance="maintenance" in named,
        )
        return json_response(document)

    async def status(self, _request: web.Request) -> web.Response:
        return json_response(views.status_view(self.engine, self.now(), self.source_stats()))

    async def sim(self, request: web.Request) -> web.Response:
        iccid = request.match_info["iccid"]
        if self.sim_forward is not None:  # a cluster: the node owning the SIM answers
            answer = await self.sim_forward(iccid)
            if answer is not None:
                return json_response(answer[1], answer[0])
        return json_response(views.sim_view(self.engine, iccid, self.now()))

    async def sims(self, request: web.Request) -> web.Response:
        query = _query(request, "limit", "cursor", "state", *views.LIST_FILTERS)
        limit = views.parse_limit(query.get("limit"), self.settings.max_page_size)
        filters = {k: query[k] for k in ("state", *views.LIST_FILTERS) if k in query}
        page = views.list_sims(
            self.engine, self.now(), filters, limit=limit, cursor=query.get("cursor")
        )
        return json_response(page)

    async def groups(self, request: web.Request) -> web.Response:
        dim = _query(request, "dim").get("dim") or None
        engine = self.engine
        evaluation = engine.last_evaluation
        key = (engine.cycles, len(engine.state))
        cached = self._groups_cache.get(dim)
        if cached is not None and cached[0] == key:
            body = cached[1]
        else:
            body = orjson.dumps(views.groups_view(engine, self.now(), dim))
            if evaluation is not None and evaluation.n >= key[1]:  # else it depends on now
                if len(self._groups_cache) > _GROUPS_CACHED_DIMS:
                    self._groups_cache.clear()
                self._groups_cache[dim] = (key, body)
        return web.Response(body=body, content_type="application/json")

    async def incidents(self, request: web.Request) -> web.Response:
        state = _query(request, "state").get("state") or None
        return json_response(views.incidents_view(self.engine, state))

    async def incident(self, request: web.Request) -> web.Response:
        return json_response(views.incident_view(self.engine, request.match_info["id"]))

    async def incident_sims(self, request: web.Request) -> web.Response:
        query = _query(request, "limit", "cursor")
        limit = views.parse_limit(query.get("limit"), self.settings.max_page_size)
        engine = self.engine
        incident = views.known_incident(engine, request.match_info["id"])
        rows = views.failing_rows(engine, incident)
        page = views.incident_sims(
            engine, rows, self.now(), limit=limit, cursor=query.get("cursor") or None
        )
        return json_response(page)


class _Ingest:
    """``POST /api/v1/ingest/{name}``: a pushed body handed to the receiver of that name.

    Authenticated here, not by the middleware: an API bearer token, or the receiver's own
    Basic credentials. The body is read up to the receiver's ``max_body_bytes`` (its own
    limit, not ``http.max_body_bytes``): beyond it, 413.
    """

    def __init__(self, receivers: Sequence[PushReceiver], tokens: frozenset[str] | None) -> None:
        self.receivers = {r.name: r for r in receivers}
        self.tokens = tokens  # None: the API's auth is off

    def refusal(self, request: web.Request, receiver: PushReceiver | None) -> web.Response | None:
        """The 401 for a request without a valid token or Basic credentials, else None."""
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer" and self.tokens and token_matches(value.strip(), self.tokens):
            return None
        basic = receiver is not None and receiver.basic_required
        if scheme == "basic" and basic and receiver is not None:
            if receiver.basic_matches(value.strip()):
                return None
        elif self.tokens is None and not basic:
            return None  # the API's auth is off and the source asks for no credentials
        message = "invalid credentials" if header else "missing bearer token or Basic credentials"
        return error_response(401, message, {"WWW-Authenticate": INGEST_REALM})

    async def handle(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        receiver = self.receivers.get(name)
        refused = self.refusal(request, receiver)
        if refused is not None:
            return refused
        if receiver is None:
            known = ", ".join(sorted(self.receivers)) or "none configured"
            return error_response(404, f"no webhook source {name[:100]!r} ({known})")
        size = request.content_length
        limit = receiver.max_body_bytes
        if size is not None and size > limit:
            return _push_response(receiver.too_large(size))
        chunks: list[bytes] = []
        read = 0
        while chunk := await request.content.read(_READ_CHUNK):
            read += len(chunk)
            if read > limit:
                return _push_response(receiver.too_large(size))
            chunks.append(chunk)
        return _push_response(await receiver.receive(b"".join(chunks), request.content_type))


def _push_response(reply: PushReply) -> web.Response:
    response = json_response(reply.body, reply.status)
    if reply.retry_after_s is not None:
        response.headers["Retry-After"] = str(reply.retry_after_s)
    return response


def make_app(
    engine: Engine,
    *,
    now: Callable[[], float],
    settings: HttpSettings,
    tokens: frozenset[str] = frozenset(),
    ready: Callable[[], bool] = lambda: True,
    metrics_handler: Handler | None = None,
    source_stats: Callable[[], Sequence[SourceStats]] = lambda: (),
    receivers: Sequence[PushReceiver] = (),
    sim_forward: SimForward | None = None,
    console: Sessions | None = None,
    history: HistoryStore | None = None,
    maintenance: MaintenanceStore | None = None,
) -> web.Application:
    """The API application. Raises ``ValueError`` when tokens are required but none given.

    ``console``: the console's sessions, to serve the console under ``/ui/``
    (``simwatch.http.console``), reading the per-SIM ``history`` when given.
    ``maintenance``: the maintenance windows' store, served at ``/api/v1/maintenance``."""
    tokens = frozenset(t for t in tokens if t)  # an empty line must never be a token
    if settings.auth_required() and not tokens:
        raise ValueError(
            f"the API needs bearer tokens (http.auth={settings.auth!r}, host "
            f"{settings.host!r}) but none are configured: set http.tokens_file"
        )
    guard = _guard(tokens if settings.auth_required() else None)
    app = web.Application(middlewares=[guard], client_max_size=settings.max_body_bytes)
    api = _Api(engine, now, settings, ready, source_stats, sim_forward=sim_forward)
    app.router.add_get("/", api.landing)
    app.router.add_get("/-/healthy", api.healthy)
    app.router.add_get("/-/ready", api.is_ready)
    if metrics_handler is not None:
        app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/api/v1/openapi.json", api.openapi)
    app.router.add_get("/api/v1/status", api.status)
    app.router.add_get("/api/v1/sims", api.sims)
    app.router.add_get("/api/v1/sims/{iccid}", api.sim)
    app.router.add_get("/api/v1/groups", api.groups)
    app.router.add_get("/api/v1/incidents", api.incidents)
    app.router.add_get("/api/v1/incidents/{id}", api.incident)
    app.router.add_get("/api/v1/incidents/{id}/sims", api.incident_sims)
    if receivers:  # with webhook sources only (bearer token or the source's Basic)
        ingest = _Ingest(receivers, tokens if settings.auth_required() else None)
        app.router.add_post("/api/v1/ingest/{name}", ingest.handle, name=INGEST_ROUTE)
    if maintenance is not None:  # maintenance windows (issue 13)
        add_maintenance_routes(app, maintenance, now)
    if console is not None:  # the console (issue 13)
        from simwatch.http.console import add_console  # noqa: PLC0415 - Jinja2 only with it

        add_console(
            app,
            lambda: engine,
            now=now,
            tokens=tokens if settings.auth_required() else None,
            sessions=console,
            history=history,
            token_matches=token_matches,
            maintenance=lambda: maintenance,
        )
    return app


__all__ = ["make_app", "token_matches"]
