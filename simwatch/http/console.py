"""The support console under ``/ui/``: server-rendered pages (Jinja2), a small script and
a style sheet, no build step.

- ``/ui/`` the fleet, ``/ui/incidents/{id}`` one incident, ``/ui/sims/{iccid}`` one SIM
  (``/ui/sims?q=`` the search box: an ICCID in either form, an IMSI or an MSISDN).
- Sign-in: ``POST /ui/signin`` with one of the API's bearer tokens starts a session: a
  random id (256 bits) in a cookie (HttpOnly, SameSite=Strict, Path=/ui/, expiring after
  ``console.session_ttl_s``), held in ``Sessions``, an object the app owns (no global
  state). Every page but the sign-in form and the static files redirects to the sign-in
  without a valid session. With ``http.auth = "off"`` (loopback only) the console is
  open, as the API is.
- Every change (a POST other than the sign-in) carries the session's CSRF token in a form
  field, compared in constant time, and a foreign ``Origin`` is refused.

The data come from the JSON views (``simwatch.http.views``) and ``console_views``; the
per-SIM history and the group series from the history store, read in a worker thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import math
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol
from urllib.parse import quote, urlsplit

import jinja2
from aiohttp import web

from simwatch.core.diagnosis import format_bytes, human_duration
from simwatch.core.groups import top_customers
from simwatch.core.iccid import alternate_form
from simwatch.core.timeutil import format_rfc3339, parse_rfc3339
from simwatch.http import console_views, views
from simwatch.shell.history import series_key

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping, Sequence

    from simwatch.core.engine import Engine
    from simwatch.core.incidents import Incident
    from simwatch.shell.history import HistoryRecord, HistoryStore

PREFIX: Final = "/ui/"
COOKIE: Final = "simwatch_console"
_HERE: Final = Path(__file__).parent / "console"
SIMS_PAGE: Final = 50  # SIMs per page of an incident
TOP_CUSTOMERS: Final = 5  # customers named on an incident page
STRIP_S: Final = 48 * 3600.0  # the SIM page's strip of ticks
CHART_BEFORE_S: Final = 3 * 3600.0  # an incident's chart starts this long before it
_RECENT: Final = 20  # sessions and rejects listed on a SIM page
_RESOLVED_SHOWN: Final = 30
_STALE: Final = "this form is stale or came from another site: reload the page and try again"
_REJECT_TYPES: Final = frozenset(
    {"auth_failure", "pdp_reject", "attach_reject", "blocked", "quota_exhausted"}
)


class MaintenanceWindows(Protocol):
    """What the console uses of the maintenance windows' store (issue 13, part 2):
    windows with ``to_json(now)``, and adding and deleting them (blocking I/O off the
    loop). ``add_async`` raises ``ValueError`` (``MaintenanceError``) naming the field;
    ``delete_async`` raises ``KeyError`` (unknown) or ``PermissionError`` (a window of
    the config file)."""

    def windows(self) -> Sequence[Any]: ...  # Window: id, to_json(now), occurrence_at(t)

    async def add_async(self, data: Mapping[str, object]) -> Any: ...  # noqa: ANN401 - a Window

    async def delete_async(self, window_id: str) -> None: ...


@dataclass(slots=True)
class Session:
    expires: float
    csrf: str


_SESSION: Final = web.RequestKey("console_session", Session)


class Sessions:
    """The console's sign-ins: hashed random id → expiry and CSRF token, at most ``limit``
    (the oldest is dropped beyond). ``clock`` is passed in (tests move it)."""

    def __init__(self, ttl_s: float, limit: int, clock: Callable[[], float]) -> None:
        self.ttl_s = ttl_s
        self.limit = limit
        self.clock = clock
        self._held: OrderedDict[bytes, Session] = OrderedDict()

    @staticmethod
    def _key(session_id: str) -> bytes:
        return hashlib.sha256(session_id.encode("utf-8", "surrogateescape")).digest()

    def start(self) -> tuple[str, Session]:
        session_id = secrets.token_urlsafe(32)
        session = Session(self.clock() + self.ttl_s, secrets.token_urlsafe(32))
        self._held[self._key(session_id)] = session
        while len(self._held) > self.limit:
            self._held.popitem(last=False)
        return session_id, session

    def get(self, session_id: str | None) -> Session | None:
        """The live session of a cookie's id; an expired one is forgotten."""
        if not session_id:
            return None
        key = self._key(session_id)
        session = self._held.get(key)
        if session is None:
            return None
        if self.clock() >= session.expires:
            del self._held[key]
            return None
        return session

    def end(self, session_id: str | None) -> None:
        if session_id:
            self._held.pop(self._key(session_id), None)

    def __len__(self) -> int:
        return len(self._held)


def _pct(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value * 100:.1f}%" if value < 0.1 else f"{value * 100:.0f}%"


def _bytes(n: float | None) -> str:
    return "none" if n is None else format_bytes(round(n))


def _clock_text(ts: float | None) -> str:
    return "" if ts is None else format_rfc3339(float(ts)).replace("T", " ")


def _safe_next(target: str | None) -> str:
    """A redirect target after sign-in: a path under /ui/ on this site, else /ui/."""
    if not target:
        return PREFIX
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith(PREFIX) or "\\" in target:
        return PREFIX
    return target


# ---- charts (inline SVG, drawn here, placed by the templates) -------------------------------


@dataclass(frozen=True, slots=True)
class Chart:
    """An incident's chart: affected SIMs (solid) against the usual level (dashed)."""

    width: int
    height: int
    affected: str  # polyline points
    usual: str
    start_x: float | None  # the incident's start (a vertical line)
    end_x: float | None
    y_max: int
    ticks: list[tuple[float, str]]  # x, time label
    points: int
    maintenance: list[tuple[float, float]]  # x, width of maintenance occurrences (hatched)


def incident_chart(
    series: Sequence[tuple[int, float, float, float]],
    since: float,
    until: float,
    opened_at: float,
    resolved_at: float | None,
    *,
    maintenance: Sequence[tuple[float, float]] = (),
) -> Chart:
    """``maintenance``: (start, end) of the maintenance occurrences to mark."""
    width, height, pad = 640, 180, 4
    span = max(until - since, 1.0)
    top = max([1.0, *(p[2] for p in series), *(p[3] for p in series)])
    y_max = math.ceil(top * 1.1)

    def x(t: float) -> float:
        return round((t - since) / span * width, 1)

    def y(v: float) -> float:
        return round(height - pad - v / y_max * (height - 2 * pad), 1)

    affected = " ".join(f"{x(a)},{y(f)}" for a, _, f, _ in series)
    usual = " ".join(f"{x(a)},{y(e)}" for a, _, _, e in series)
    ticks = [(x(since + span * k / 4), _clock_text(since + span * k / 4)[11:16]) for k in range(5)]
    return Chart(
        width,
        height,
        affected,
        usual,
        x(opened_at) if since <= opened_at <= until else None,
        x(resolved_at) if resolved_at is not None and since <= resolved_at <= until else None,
        y_max,
        ticks,
        len(series),
        [
            (x(max(a, since)), round(x(min(b, until)) - x(max(a, since)), 1))
            for a, b in maintenance
            if a < until and b > since
        ],
    )


@dataclass(frozen=True, slots=True)
class Tick:
    x: float
    kind: str  # data | session | event | reject
    title: str


@dataclass(frozen=True, slots=True)
class Strip:
    """The SIM page's 48 h: its records as ticks against its learned rhythm."""

    width: int
    ticks: list[Tick]
    late_x: float | None  # from here it is overdue (late), ...
    silent_x: float | None  # ... from here silent
    asleep: list[tuple[float, float]]  # x ranges outside its active hours (UTC)
    labels: list[tuple[float, str]]
    gaps: list[tuple[float, float]]  # x ranges of past gaps longer than its late threshold


def sim_strip(records: Sequence[HistoryRecord], sim: Mapping[str, object], now: float) -> Strip:
    width = 720
    since = now - STRIP_S

    def x(t: float) -> float:
        return round(min(max((t - since) / STRIP_S, 0.0), 1.0) * width, 1)

    ticks: list[Tick] = []
    for r in records:
        if r.kind == "event" and r.what in _REJECT_TYPES:
            kind = "reject"
        elif r.bytes > 0:
            kind = "data"
        else:
            kind = "session" if r.kind == "session" else "event"
        what = f" {r.what}" if r.what else ""
        title = f"{_clock_text(r.ts)} {r.kind}{what} {_bytes(r.bytes)}"
        ticks.append(Tick(x(r.ts), kind, title))
    rhythm = sim.get("rhythm")
    late_x = silent_x = None
    last = sim.get("last_data")
    gaps: list[tuple[float, float]] = []
    late_after = rhythm.get("late_after_s") if isinstance(rhythm, dict) else None
    daytime = isinstance(rhythm, dict) and bool(rhythm.get("active_hours"))
    if isinstance(late_after, float | int) and not daytime:  # nights are no gaps then
        data = [r.ts for r in records if r.bytes > 0]
        for before, after in itertools.pairwise(data):
            if after - before > late_after:
                gaps.append((x(before + late_after), round(x(after) - x(before + late_after), 1)))
    if isinstance(rhythm, dict) and isinstance(last, str):
        at = parse_rfc3339(last)
        late, silent = rhythm.get("late_after_s"), rhythm.get("silent_after_s")
        if isinstance(late, float | int) and at + late < now:
            late_x = x(at + late)
        if isinstance(silent, float | int) and at + silent < now:
            silent_x = x(at + silent)
    asleep: list[tuple[float, float]] = []
    hours = rhythm.get("active_hours") if isinstance(rhythm, dict) else None
    if isinstance(hours, list) and hours:
        start = math.floor(since / 3600) * 3600
        asleep.extend(
            (x(h), round(x(h + 3600) - x(h), 1))
            for h in range(int(start), int(now) + 3600, 3600)
            if (h // 3600) % 24 not in hours
        )
    marks = [since + k * 12 * 3600 for k in range(5)]
    labels = [(x(t), _clock_text(t)[5:16]) for t in marks]
    return Strip(width, ticks, late_x, silent_x, asleep, labels, gaps)


# ---- the pages ----------------------------------------------------------------------------


class Console:
    def __init__(
        self,
        engine: Callable[[], Engine],
        *,
        now: Callable[[], float],
        tokens: frozenset[str] | None,
        sessions: Sessions,
        history: HistoryStore | None,
        token_matches: Callable[[str, frozenset[str]], bool],
        maintenance: Callable[[], MaintenanceWindows | None] = lambda: None,
    ) -> None:
        self.engine = engine
        self.maintenance = maintenance
        self.now = now
        self.tokens = tokens  # None: the API's auth is off, and the console is open
        self.sessions = sessions
        self.history = history
        self.token_matches = token_matches
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(_HERE / "templates"),
            autoescape=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters.update(
            pct=_pct, bytes=_bytes, when=_clock_text, duration=human_duration, quote=quote
        )

    # ---- plumbing -----------------------------------------------------------------------

    def page(
        self, request: web.Request, name: str, code: int = 200, **context: object
    ) -> web.Response:
        session: Session | None = request.get(_SESSION)
        text = self.templates.get_template(name).render(
            csrf=session.csrf if session else "",
            signed_in=session is not None or self.tokens is None,
            maintenance_on=self.maintenance() is not None,
            auth=self.tokens is not None,
            path=request.path_qs,
            **context,
        )
        response = web.Response(text=text, status=code, content_type="text/html")
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data:; style-src 'self'; "
            "script-src 'self'; frame-ancestors 'none'; form-action 'self'"
        )
        return response

    def signed_in(
        self, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """The page only with a live session (else a redirect to the sign-in); a view's
        error as an error page."""

        async def wrapped(request: web.Request) -> web.StreamResponse:
            if self.tokens is not None:
                session = self.sessions.get(request.cookies.get(COOKIE))
                if session is None:
                    target = f"{PREFIX}signin?next={quote(request.path_qs, safe='')}"
                    raise web.HTTPSeeOther(target)
                request[_SESSION] = session
            try:
                return await handler(request)
            except views.ViewError as exc:
                return self.page(request, "error.html", exc.status, message=exc.message)

        return wrapped

    @staticmethod
    def _foreign_origin(request: web.Request) -> bool:
        origin = request.headers.get("Origin")
        if origin is None or origin == "null":
            return origin == "null"
        return urlsplit(origin).netloc != request.host

    async def check_change(self, request: web.Request) -> Mapping[str, str]:
        """The form of a change: 403 without the session's CSRF token or from another
        origin."""
        form = await request.post()
        session: Session | None = request.get(_SESSION)
        given = form.get("csrf")
        if self._foreign_origin(request) or (
            self.tokens is not None
            and (
                session is None
                or not isinstance(given, str)
                or not hmac.compare_digest(given.encode(), session.csrf.encode())
            )
        ):
            raise views.ViewError(403, _STALE)
        return {k: v for k, v in form.items() if isinstance(v, str)}

    # ---- sign-in ----------------------------------------------------------------------------

    async def signin_form(self, request: web.Request) -> web.Response:
        target = _safe_next(request.query.get("next"))
        return self.page(request, "signin.html", next=target, error=None)

    async def signin(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        target = _safe_next(str(form.get("next") or ""))
        token = form.get("token")
        if self.tokens is None:
            raise web.HTTPSeeOther(target)
        if self._foreign_origin(request):
            error = "Sign-in from another site refused."
            return self.page(request, "signin.html", 403, next=target, error=error)
        if not isinstance(token, str) or not self.token_matches(token.strip(), self.tokens):
            error = "That token is not one of this simwatch's API tokens."
            return self.page(request, "signin.html", 401, next=target, error=error)
        session_id, _ = self.sessions.start()
        response = web.HTTPSeeOther(target)
        response.set_cookie(
            COOKIE,
            session_id,
            max_age=round(self.sessions.ttl_s),
            path=PREFIX,
            httponly=True,
            samesite="Strict",
            secure=request.secure,
        )
        raise response

    async def signout(self, request: web.Request) -> web.StreamResponse:
        await self.check_change(request)
        self.sessions.end(request.cookies.get(COOKIE))
        response = web.HTTPSeeOther(f"{PREFIX}signin")
        response.del_cookie(COOKIE, path=PREFIX)
        raise response

    # ---- fleet ------------------------------------------------------------------------------

    async def fleet(self, request: web.Request) -> web.Response:
        engine = self.engine()
        now = self.now()
        status = views.status_view(engine, now)
        dims = [d for d in console_views.LEVEL_DIMS if d in engine.state.dims]
        levels = {dim: console_views.dimension_levels(engine, dim) for dim in dims}
        everything = engine.incidents.all()
        opened = [i for i in everything if i.resolved_at is None]
        opened.sort(key=lambda i: (i.kind != "group", -i.affected))
        resolved = [i for i in reversed(everything) if i.resolved_at is not None]
        shown = [*opened, *resolved[:_RESOLVED_SHOWN]]
        incidents = [self._incident_line(engine, i) for i in shown]
        return self.page(
            request,
            "fleet.html",
            status=status,
            levels=levels,
            incidents=incidents,
            open_count=len(opened),
            title="Fleet",
        )

    @staticmethod
    def _where(engine: Engine, dims: Mapping[str, str]) -> str:
        if not dims:
            return "whole fleet"
        parts = []
        for k, v in sorted(dims.items()):
            parts.append(f"{k} {engine.partner_label(v) if k == 'partner' else v}")
        return ", ".join(parts)

    def _incident_line(self, engine: Engine, incident: Incident) -> dict[str, object]:
        data = incident.to_json()
        sim = incident.kind == "sim"
        data["where"] = f"SIM {incident.iccid}" if sim else self._where(engine, incident.dims)
        data["evidence_text"] = incident.evidence_text()
        return data

    # ---- incident ---------------------------------------------------------------------------

    async def incident(self, request: web.Request) -> web.Response:
        engine = self.engine()
        now = self.now()
        incident = views.known_incident(engine, request.match_info["id"])
        data = self._incident_line(engine, incident)
        rows = views.failing_rows(engine, incident)
        sims = views.incident_sims(
            engine, rows, now, limit=SIMS_PAGE, cursor=request.query.get("cursor") or None
        )
        until = now if incident.resolved_at is None else min(now, incident.resolved_at + 3600)
        since = incident.opened_at - CHART_BEFORE_S
        chart = None
        if self.history is not None and incident.kind == "group":
            key = series_key(incident.dims)
            series = await asyncio.to_thread(self.history.series, key, since, until)
            chart = incident_chart(
                series,
                since,
                until,
                incident.opened_at,
                incident.resolved_at,
                maintenance=self._maintenance_spans(incident.maintenance, now),
            )
        return self.page(
            request,
            "incident.html",
            incident=data,
            evidence=incident.evidence_text(),
            sims=sims,
            customers=top_customers(engine.state, rows, TOP_CUSTOMERS),
            chart=chart,
            history=self.history is not None,
            maintenance=data.get("maintenance"),
            request_cursor=request.query.get("cursor"),
            page_size=SIMS_PAGE,
            title=f"Incident {incident.id}",
        )

    def _maintenance_spans(
        self, marks: Sequence[Mapping[str, object]], now: float
    ) -> list[tuple[float, float]]:
        """(start, end) of the occurrences under way of the windows marking an incident."""
        store = self.maintenance()
        if store is None or not marks:
            return []
        ids = {str(m.get("id")) for m in marks}
        spans = []
        for window in store.windows():
            if window.id in ids:
                span = window.occurrence_at(now)
                if span is not None:
                    spans.append((float(span[0]), float(span[1])))
        return spans

    # ---- SIM ----------------------------------------------------------------------------------

    async def search(self, request: web.Request) -> web.Response:
        text = request.query.get("q", "")
        if not text.strip():
            return self.page(request, "search.html", query="", message=None, title="Find a SIM")
        engine = self.engine()
        find = self.history.find_id if self.history is not None else None

        def resolve() -> str | None:
            return console_views.resolve_sim(engine, text, find)

        iccid = await asyncio.to_thread(resolve) if find is not None else resolve()
        if iccid is None:
            message = (
                f"No SIM has the ICCID, IMSI or MSISDN {text.strip()[:40]!r}. An ICCID has "
                "18 to 22 digits (with or without its check digit)."
            )
            return self.page(
                request, "search.html", 404, query=text, message=message, title="Find a SIM"
            )
        raise web.HTTPSeeOther(f"{PREFIX}sims/{iccid}")

    async def sim(self, request: web.Request) -> web.Response:
        engine = self.engine()
        now = self.now()
        sim = views.sim_view(engine, request.match_info["iccid"], now)
        iccid = str(sim["iccid"])
        records: list[HistoryRecord] = []
        if self.history is not None:
            forms = [iccid, *filter(None, [alternate_form(iccid)])]
            records = await asyncio.to_thread(self.history.records, forms, now - STRIP_S, now)
        sessions = [r for r in records if r.kind == "session"][-_RECENT:][::-1]
        refused = [r for r in records if r.kind == "event" and r.what in _REJECT_TYPES]
        rejects = refused[-_RECENT:][::-1]
        diagnosis = sim.get("diagnosis")
        findings = diagnosis if isinstance(diagnosis, list) else []
        sentence = " ".join(str(f["hint"]) for f in findings if isinstance(f, dict))
        return self.page(
            request,
            "sim.html",
            sim=sim,
            sentence=sentence,
            findings=findings,
            strip=sim_strip(records, sim, now),
            sessions=sessions,
            rejects=rejects,
            history=self.history is not None,
            record_count=len(records),
            title=f"SIM {iccid}",
        )

    # ---- maintenance windows (issue 13, part 2) ---------------------------------------------

    def _windows(self) -> MaintenanceWindows:
        store = self.maintenance()
        if store is None:
            raise views.not_found("maintenance windows are not available in this daemon")
        return store

    async def maintenance_page(
        self,
        request: web.Request,
        *,
        error: str | None = None,
        form: Mapping[str, str] | None = None,
    ) -> web.Response:
        store = self._windows()
        now = self.now()
        windows = [w.to_json(now) for w in store.windows()]
        return self.page(
            request,
            "maintenance.html",
            400 if error else 200,
            windows=windows,
            error=error,
            form=form or {},
            dims=[d for d in (*self.engine().state.dims, "customer", "plan") if d],
            title="Maintenance windows",
        )

    async def add_window(self, request: web.Request) -> web.StreamResponse:
        form = await self.check_change(request)
        store = self._windows()
        try:
            data = window_of_form(form)
            await store.add_async(data)
        except ValueError as exc:  # MaintenanceError: names the field
            return await self.maintenance_page(request, error=str(exc), form=form)
        except OSError as exc:
            error = f"could not keep the window on disk ({exc}); try again"
            return await self.maintenance_page(request, error=error, form=form)
        raise web.HTTPSeeOther(f"{PREFIX}maintenance")

    async def delete_window(self, request: web.Request) -> web.StreamResponse:
        await self.check_change(request)
        store = self._windows()
        try:
            await store.delete_async(request.match_info["id"])
        except KeyError:
            raise views.not_found("no such maintenance window") from None
        except PermissionError:
            message = "this window is defined in the config file: change it there"
            raise views.ViewError(409, message) from None
        raise web.HTTPSeeOther(f"{PREFIX}maintenance")


_REPEATS: Final = {"none": None, "daily": "FREQ=DAILY", "monthly": "FREQ=MONTHLY"}
_WEEKDAYS: Final = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")


def window_of_form(form: Mapping[str, str]) -> dict[str, object]:
    """The maintenance API's JSON body from the console's form (``ValueError`` naming
    the field when the form cannot be one)."""
    repeat = form.get("repeat", "none")
    if repeat == "weekly":
        day = form.get("weekday", "")
        if day not in _WEEKDAYS:
            raise ValueError(f"weekday: expected one of {', '.join(_WEEKDAYS)}")
        rule: str | None = f"FREQ=WEEKLY;BYDAY={day}"
    elif repeat == "custom":
        rule = form.get("rrule", "").strip() or None
        if rule is None:
            raise ValueError("rrule: give a rule such as FREQ=WEEKLY;BYDAY=SU")
    elif repeat in _REPEATS:
        rule = _REPEATS[repeat]
    else:
        raise ValueError(f"repeat: unknown {repeat[:20]!r}")
    try:
        hours = float(form.get("duration_h", ""))
    except ValueError:
        raise ValueError("duration_h: give the duration in hours, e.g. 2 or 0.5") from None
    if not math.isfinite(hours):
        raise ValueError("duration_h: give the duration in hours, e.g. 2 or 0.5")
    scope: dict[str, list[str]] = {}
    dim = form.get("scope_dim", "").strip()
    values = [v.strip() for v in form.get("scope_values", "").split(",") if v.strip()]
    if dim and values:
        scope[dim] = values
    data: dict[str, object] = {
        "name": form.get("name", "").strip(),
        "start": form.get("start", "").strip(),
        "timezone": form.get("timezone", "").strip() or "UTC",
        "duration_s": round(hours * 3600.0, 3),
        "scope": scope,
    }
    if rule is not None:
        data["rrule"] = rule
    return data


def add_console(
    app: web.Application,
    engine: Callable[[], Engine],
    *,
    now: Callable[[], float],
    tokens: frozenset[str] | None,
    sessions: Sessions,
    history: HistoryStore | None,
    token_matches: Callable[[str, frozenset[str]], bool],
    maintenance: Callable[[], MaintenanceWindows | None] = lambda: None,
) -> Console:
    """Add the console's routes to ``app``; ``tokens`` None: no sign-in (auth off)."""
    console = Console(
        engine,
        now=now,
        tokens=tokens,
        sessions=sessions,
        history=history,
        token_matches=token_matches,
        maintenance=maintenance,
    )
    guard = console.signed_in

    async def to_fleet(_request: web.Request) -> web.StreamResponse:
        raise web.HTTPSeeOther(PREFIX)

    app.router.add_get("/ui", to_fleet)
    app.router.add_get(PREFIX, guard(console.fleet))
    app.router.add_get(f"{PREFIX}signin", console.signin_form)
    app.router.add_post(f"{PREFIX}signin", console.signin)
    app.router.add_post(f"{PREFIX}signout", guard(console.signout))
    app.router.add_get(f"{PREFIX}incidents/{{id}}", guard(console.incident))
    app.router.add_get(f"{PREFIX}sims", guard(console.search))
    app.router.add_get(f"{PREFIX}sims/{{iccid}}", guard(console.sim))
    app.router.add_get(f"{PREFIX}maintenance", guard(console.maintenance_page))
    app.router.add_post(f"{PREFIX}maintenance", guard(console.add_window))
    app.router.add_post(f"{PREFIX}maintenance/{{id}}/delete", guard(console.delete_window))
    app.router.add_static(f"{PREFIX}static/", _HERE / "static", append_version=False)
    return console


__all__ = ["COOKIE", "PREFIX", "Console", "Sessions", "add_console", "incident_chart", "sim_strip"]
