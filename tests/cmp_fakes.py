"""Fake connectivity platforms for the tests: small pieces that compose.

``FakePlatform`` runs an ``aiohttp.web`` app on 127.0.0.1 (a free port) on a test clock;
an *auth checker* installs the platform's authentication endpoint and says whether a
request's credentials are good; endpoints (``platform.get(path, handler)``) are served
only to authenticated requests, else answered the way the platform documents.
Each checker enforces what PLATFORMS.md documents, with the payloads of
``tests/data/cmp`` (README-auth.md):

* ``EmnifyAuth`` (1.1): ``POST /api/v1/authenticate`` ``{"application_token"}`` ->
  ``{"auth_token": <JWT with exp>}``; a wrong token -> 401 with an empty body, three
  failures in a row lock the account for five minutes (401 ``TooManyRequests``); more than
  100 calls in five minutes -> 429. A request without a valid, unexpired JWT -> 401
  ``emnify-error-401-invalid-token.json``.
* ``OnceOAuth`` (2.1): ``POST /management-api/oauth/token`` with HTTP Basic
  ``client_id:client_secret`` and the JSON body of ``1nce-oauth-token-request.json``
  -> ``1nce-oauth-token-response.json`` with a fresh ``access_token`` and
  ``expires_in``; 400 with the documented ``errorCode`` otherwise. An expired or
  unknown Bearer -> 401.
* ``KoreOAuth`` (4.1): a form post of ``grant_type``, ``client_id``, ``client_secret``
  -> ``kore-auth-token-response.json`` (``expires_in`` in seconds); bad credentials -> 401
  ``kore-auth-token-error-401.json``.
* ``SoracomAuth`` (5.1): ``POST /v1/auth`` ``{authKeyId, authKey, tokenTimeoutSeconds?}``
  -> ``{apiKey, token, operatorId}``; calls need ``X-Soracom-API-Key`` and
  ``X-Soracom-Token`` of a pair not expired (default 24 h).
* ``BasicAuth`` (3.1, 6): HTTP Basic user name and API key on every call, else 401.
* ``BearerAuth``: one fixed ``Authorization: Bearer`` token.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Self

import orjson
from aiohttp import web

from simwatch.core.records import Record, RecordDecoder

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

    from simwatch.shell.source_contract import Batch

DATA = Path(__file__).parent / "data" / "cmp"


def example(name: str) -> Any:
    """A documented example payload (``tests/data/cmp/<name>``), as the platform's docs
    give it (an object, or a list for the Data Streamer's batches)."""
    return orjson.loads((DATA / name).read_bytes())


async def drain(
    sink: asyncio.Queue[Batch], valid_at: float | None = None
) -> list[dict[str, object]]:
    """Every object a CMP source handed over, in order, each batch's cursor committed;
    with ``valid_at``, each object is checked to decode as a FORMATS.md record then."""
    out: list[dict[str, object]] = []
    decoder = RecordDecoder()
    while not sink.empty():
        batch = sink.get_nowait()
        for obj in batch.objects:
            if valid_at is not None:
                assert isinstance(decoder.decode_obj(obj, valid_at), Record), obj
            out.append(dict(obj))
        if batch.on_applied is not None:
            await batch.on_applied()
    return out


def json_response(
    obj: object, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(obj), status=status, content_type="application/json", headers=headers
    )


@contextlib.asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    """Serve ``app`` on 127.0.0.1 (a free port); yields its base URL."""
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def serve_handler(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> AsyncIterator[str]:
    """Serve ``handler`` for every method and path (``serve``); yields the base URL."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    async with serve(app) as url:
        yield url


class FakeTime:
    """A fake clock for a client under test; sleeping advances it (and yields to the loop)."""

    def __init__(self, start: float) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        self.now += delay
        await asyncio.sleep(0)


class Clock:
    """The test's clock, shared by the fake platform and the client under test."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class AuthChecker(Protocol):
    def install(self, platform: FakePlatform) -> None:
        """Add the authentication endpoint(s) to the platform's app."""
        ...

    def refuse(self, request: web.Request) -> web.StreamResponse | None:
        """The platform's answer to a request without good credentials; None: good."""
        ...


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    at: float


class FakePlatform:
    """An aiohttp app on 127.0.0.1:<free port>; ``async with`` starts and stops it."""

    def __init__(self, auth: AuthChecker, clock: Clock) -> None:
        self.auth = auth
        self.clock = clock
        self.app = web.Application()
        self.url = ""
        self.requests: list[Seen] = []  # every request, authentication calls included
        self.served = 0  # requests of ``get`` endpoints that were authenticated
        self._served = contextlib.AsyncExitStack()
        auth.install(self)

    def get(
        self, path: str, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> None:
        """Serve ``GET path`` to authenticated requests only."""

        async def guarded(request: web.Request) -> web.StreamResponse:
            refused = self.auth.refuse(request)
            if refused is not None:
                return refused
            self.served += 1
            return await handler(request)

        self.app.router.add_get(path, self.seen(guarded))

    def post(
        self, path: str, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> None:
        """Serve ``POST path`` (an authentication endpoint: no credentials asked)."""
        self.app.router.add_post(path, self.seen(handler))

    def seen(
        self, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def wrapper(request: web.Request) -> web.StreamResponse:
            self.requests.append(
                Seen(request.method, request.path, dict(request.headers), self.clock())
            )
            return await handler(request)

        return wrapper

    def calls(self, path: str) -> int:
        return sum(1 for r in self.requests if r.path == path)

    async def __aenter__(self) -> Self:
        self.url = await self._served.enter_async_context(serve(self.app))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._served.aclose()


def _basic(request: web.Request) -> tuple[str, str] | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


def _bearer(request: web.Request) -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value if scheme.lower() == "bearer" and value else None


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(claims: dict[str, object]) -> str:
    """An (unsigned-for-real) JWT: header.payload.signature, base64url."""
    header = _b64url(orjson.dumps({"alg": "HS512", "typ": "JWT"}))
    return f"{header}.{_b64url(orjson.dumps(claims))}.{_b64url(b'signature')}"


# --- emnify (PLATFORMS.md 1.1) ------------------------------------------------------------


@dataclass
class EmnifyAuth:
    application_token: str
    lifetime_s: float = 14_400.0  # a recorded exp - iat (1.1)
    with_exp: bool = True  # False: a JWT without exp (the lifetime is not published)
    deny_all: bool = False  # True: every JWT is refused (revoked access, IP not allowed)
    authentications: int = 0  # calls of /api/v1/authenticate
    issued: dict[str, float] = field(default_factory=dict)  # JWT -> its exp
    _platform: FakePlatform | None = None
    _failures: int = 0
    _locked_until: float = -1.0
    _calls: list[float] = field(default_factory=list)
    _serial: itertools.count[int] = field(default_factory=itertools.count)

    PATH = "/api/v1/authenticate"

    def install(self, platform: FakePlatform) -> None:
        self._platform = platform
        platform.post(self.PATH, self.authenticate)

    async def authenticate(self, request: web.Request) -> web.StreamResponse:
        assert self._platform is not None
        now = self._platform.clock()
        self.authentications += 1
        self._calls = [t for t in self._calls if t > now - 300] + [now]
        if len(self._calls) > 100:  # 100 per IP per 5 minutes
            return web.Response(status=429)
        if now < self._locked_until:
            return web.Response(status=401, text="TooManyRequests")
        body = await request.json()
        assert set(body) == set(example("emnify-auth-request.json"))  # the documented shape
        if body.get("application_token") != self.application_token:
            self._failures += 1
            if self._failures >= 3:  # three in a row lock the account for five minutes
                self._locked_until = now + 300
                self._failures = 0
            return web.Response(status=401)  # "the 401 body is empty for most failures"
        self._failures = 0
        exp = now + self.lifetime_s
        claims: dict[str, object] = {"iat": int(now), "jti": next(self._serial)}
        if self.with_exp:
            claims["exp"] = int(exp)
        jwt = make_jwt(claims)
        self.issued[jwt] = exp
        answer = example("emnify-auth-response.json")
        answer["auth_token"] = jwt
        return json_response(answer)

    def refuse(self, request: web.Request) -> web.StreamResponse | None:
        assert self._platform is not None
        token = _bearer(request)
        exp = self.issued.get(token or "")
        if self.deny_all or exp is None or self._platform.clock() >= exp:
            return json_response(example("emnify-error-401-invalid-token.json"), status=401)
        return None


# --- OAuth2 client credentials: 1NCE (2.1), KORE (4.1) ------------------------------------


@dataclass
class _OAuth:
    client_id: str
    client_secret: str
    expires_in: int = 3600
    path: str = "/oauth/token"
    authentications: int = 0
    issued: dict[str, float] = field(default_factory=dict)  # access token -> expiry
    _platform: FakePlatform | None = None
    _serial: itertools.count[int] = field(default_factory=itertools.count)

    def install(self, platform: FakePlatform) -> None:
        self._platform = platform
        platform.post(self.path, self.token)

    async def token(self, request: web.Request) -> web.StreamResponse:
        raise NotImplementedError

    def _issue(self) -> str:
        assert self._platform is not None
        token = f"access-{next(self._serial)}"
        self.issued[token] = self._platform.clock() + self.expires_in
        return token

    def refuse(self, request: web.Request) -> web.StreamResponse | None:
        assert self._platform is not None
        expiry = self.issued.get(_bearer(request) or "")
        if expiry is None or self._platform.clock() >= expiry:
            return web.Response(status=401)
        return None


@dataclass
class OnceOAuth(_OAuth):
    """1NCE: HTTP Basic client credentials and a JSON body, at the documented
    ``POST /management-api/oauth/token`` (PLATFORMS.md 2.1)."""

    path: str = "/management-api/oauth/token"

    async def token(self, request: web.Request) -> web.StreamResponse:
        self.authentications += 1
        if request.content_type != "application/json":
            return self._error("UnsupportedContentTypeError")
        if await request.json() != example("1nce-oauth-token-request.json"):
            return self._error("BodyValidationError")
        if _basic(request) != (self.client_id, self.client_secret):
            return self._error("AuthValidationError")
        answer = example("1nce-oauth-token-response.json")
        answer.update(access_token=self._issue(), expires_in=self.expires_in)
        return json_response(answer)

    @staticmethod
    def _error(code: str) -> web.Response:
        return json_response({"statusCode": 400, "errorCode": code, "message": code}, 400)


@dataclass
class KoreOAuth(_OAuth):
    """KORE: a form post of grant_type, client_id, client_secret."""

    path: str = "/api-services/v1/auth/token"

    async def token(self, request: web.Request) -> web.StreamResponse:
        self.authentications += 1
        if request.content_type != "application/x-www-form-urlencoded":
            return web.Response(status=415)
        form = await request.post()
        given = (form.get("grant_type"), form.get("client_id"), form.get("client_secret"))
        if given != ("client_credentials", self.client_id, self.client_secret):
            return json_response(example("kore-auth-token-error-401.json"), status=401)
        answer = example("kore-auth-token-response.json")
        answer.update(access_token=self._issue(), expires_in=self.expires_in)
        return json_response(answer)


# --- Soracom (5.1) ------------------------------------------------------------------------


@dataclass
class SoracomAuth:
    auth_key_id: str
    auth_key: str
    authentications: int = 0
    timeouts: list[int] = field(default_factory=list)  # tokenTimeoutSeconds asked
    issued: dict[tuple[str, str], float] = field(default_factory=dict)  # pair -> expiry
    _platform: FakePlatform | None = None
    _serial: itertools.count[int] = field(default_factory=itertools.count)

    def install(self, platform: FakePlatform) -> None:
        self._platform = platform
        platform.post("/v1/auth", self.authenticate)

    async def authenticate(self, request: web.Request) -> web.StreamResponse:
        assert self._platform is not None
        self.authentications += 1
        body = await request.json()
        documented = set(example("soracom-auth-request-authkey.json"))
        assert documented <= set(body) <= documented | {"tokenTimeoutSeconds"}
        if (body.get("authKeyId"), body.get("authKey")) != (self.auth_key_id, self.auth_key):
            return web.Response(status=401)
        timeout = int(body.get("tokenTimeoutSeconds", 86_400))
        assert 180 <= timeout <= 172_800  # minimum 3 minutes, maximum 48 h
        self.timeouts.append(timeout)
        n = next(self._serial)
        pair = (f"api-key-{n}", f"api-token-{n}")
        self.issued[pair] = self._platform.clock() + timeout
        answer = example("soracom-auth-response.json")
        answer.update(apiKey=pair[0], token=pair[1])
        return json_response(answer)

    def refuse(self, request: web.Request) -> web.StreamResponse | None:
        assert self._platform is not None
        pair = (
            request.headers.get("X-Soracom-API-Key", ""),
            request.headers.get("X-Soracom-Token", ""),
        )
        expiry = self.issued.get(pair)
        if expiry is None or self._platform.clock() >= expiry:
            return web.Response(status=401)
        return None


# --- fixed credentials: HTTP Basic (Cisco 3.1, Hologram 6), Bearer -------------------------


@dataclass
class BasicAuth:
    username: str
    password: str  # Cisco: the API key; Hologram: the API key, user "apikey"

    def install(self, platform: FakePlatform) -> None:
        del platform  # nothing to exchange

    def refuse(self, request: web.Request) -> web.StreamResponse | None:
        if _basic(request) != (self.username, self.password):
            return web.Response(status=401)  # Cisco 10000001 "Invalid credentials"
        return None


@dataclass
class BearerAuth:
    token: str

    def install(self, platform: FakePlatform) -> None:
        del platform

    def refuse(self, request: web.Request) -> web.StreamResponse | None:
        return None if _bearer(request) == self.token else web.Response(status=401)
