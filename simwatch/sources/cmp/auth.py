"""How a platform's requests authenticate (PLATFORMS.md 1.1, 2.1, 3.1, 4.1, 5.1, 6).

``build_auth(settings, ...)`` makes one ``Auth`` per source from ``settings.auth``:

* ``StaticAuth``: the same header on every request: ``Authorization: Bearer <token>``
  (kind ``bearer``, and the deprecated top-level ``token``) or HTTP Basic (kind
  ``basic``: Cisco user name + API key, Hologram ``apikey`` + API key).
* ``EmnifyAuth``: the application token is exchanged at ``POST {base_url}/api/v1/
  authenticate`` (``{"application_token"}`` -> ``{"auth_token": <JWT>}``), sent as
  ``Bearer``. The JWT's payload ``exp`` (read without verifying) says when to renew;
  without one, ``EMNIFY_ASSUMED_LIFETIME_S`` (the shorter of the two recorded lifetimes).
* ``ClientCredentialsAuth``: OAuth2 client credentials; ``basic_json`` (1NCE: HTTP Basic
  ``client_id:client_secret``, body ``{"grant_type": "client_credentials"}``, default URL
  ``{base_url}/oauth/token``) or ``form`` (KORE: ``grant_type``, ``client_id``,
  ``client_secret`` form-encoded, default URL ``KORE_TOKEN_URL``); renewed before
  ``expires_in`` ends.
* ``SoracomAuth``: ``POST {base_url}/v1/auth`` with ``{authKeyId, authKey,
  tokenTimeoutSeconds}`` -> ``{apiKey, token}``, sent as ``X-Soracom-API-Key`` and
  ``X-Soracom-Token``; renewed before the asked lifetime ends.

The exchanging kinds share ``TokenExchange``: a credential is renewed ``REFRESH_MARGIN_S``
before it expires, and when a request is answered 401 (``invalidate``: the poller then
retries that request once). Concurrent requests share one authentication (a lock), and a
failed authentication is logged once (``FailureLog``) and not tried again before a
backoff (``shell.backoff``, ``AUTH_BACKOFF_MIN_S`` doubling to ``AUTH_BACKOFF_MAX_S``):
emnify allows 100 authentications per IP per 5 minutes and locks the account for five
minutes after three failures, so there is never a re-authentication loop. Secrets never
appear in a message: errors name the endpoint, the HTTP status and, at most, the
platform's error code.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import math
import random
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Protocol

import aiohttp
import orjson

from simwatch.shell.backoff import backoff_delay
from simwatch.shell.logs import FailureLog
from simwatch.shell.settings.sources import (
    CLIENT_CREDENTIALS_STYLE,
    BasicAuthSettings,
    BearerAuthSettings,
    ClientCredentialsAuthSettings,
    EmnifyAuthSettings,
    SoracomAuthSettings,
)
from simwatch.sources.cmp.onence import BASE_PATH as ONCE_BASE_PATH

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from simwatch.shell.settings import HttpSourceSettings

__all__ = [
    "AUTH_BACKOFF_MAX_S",
    "AUTH_BACKOFF_MIN_S",
    "EMNIFY_ASSUMED_LIFETIME_S",
    "KORE_TOKEN_URL",
    "REFRESH_MARGIN_S",
    "Auth",
    "AuthError",
    "ClientCredentialsAuth",
    "Context",
    "EmnifyAuth",
    "NoAuth",
    "SoracomAuth",
    "StaticAuth",
    "TokenExchange",
    "build_auth",
    "jwt_expiry",
]

log = logging.getLogger(__name__)

REFRESH_MARGIN_S: Final = 60.0  # renew this long before a credential expires
MIN_REUSE_S: Final = 30.0  # a fresh credential is used at least this long (clock skew)
AUTH_BACKOFF_MIN_S: Final = 30.0
AUTH_BACKOFF_MAX_S: Final = 900.0
# emnify publishes no lifetime; the SDK's recorded tokens lived 168 h and 4 h (1.1)
EMNIFY_ASSUMED_LIFETIME_S: Final = 4 * 3600.0
OAUTH_DEFAULT_LIFETIME_S: Final = 3600.0  # 1NCE's documented default; KORE's shortest
_KORE_AUTH: Final = "https://api.korewireless.com/api-services"
KORE_TOKEN_URL: Final = f"{_KORE_AUTH}/v1/auth/token"
_ERROR_CODE: Final = re.compile(r"[A-Za-z][A-Za-z0-9_.]{0,47}")


class AuthError(Exception):
    """Authentication failed; the message names no secret."""


class Auth(Protocol):
    """Credentials of one source's requests."""

    async def apply(self, http: aiohttp.ClientSession, headers: dict[str, str]) -> int:
        """Add the credentials to ``headers`` (authenticating first when needed);
        returns the generation of the credentials used. Raises ``AuthError``."""
        ...

    def invalidate(self, generation: int) -> bool:
        """A request with credentials of ``generation`` was answered 401. True when new
        credentials can be had (retry the request once), False when they cannot."""
        ...


class NoAuth:
    """No credentials (a platform reached through an authenticating proxy, tests)."""

    async def apply(self, http: aiohttp.ClientSession, headers: dict[str, str]) -> int:
        del http, headers
        return 0

    def invalidate(self, generation: int) -> bool:
        del generation
        return False


class StaticAuth:
    """The same header on every request: Bearer token or HTTP Basic."""

    def __init__(self, value: str) -> None:
        self._value = value

    @classmethod
    def bearer(cls, token: str) -> StaticAuth:
        return cls(f"Bearer {token}")

    @classmethod
    def basic(cls, username: str, password: str) -> StaticAuth:
        return cls(aiohttp.encode_basic_auth(username, password))

    def __repr__(self) -> str:
        return "StaticAuth(***)"

    async def apply(self, http: aiohttp.ClientSession, headers: dict[str, str]) -> int:
        del http
        headers["Authorization"] = self._value
        return 0

    def invalidate(self, generation: int) -> bool:
        del generation
        return False  # the same credentials again would be refused again


@dataclass(frozen=True, slots=True)
class Context:
    """What every exchanging auth of a source shares: its clock, name and jitter."""

    clock: Callable[[], float]
    source: str  # the source's name, for the log
    rng: random.Random = field(default_factory=random.Random)  # jitter, not cryptography


@dataclass(frozen=True, slots=True)
class _Credential:
    headers: Mapping[str, str]
    refresh_at: float  # renew from this clock() time on
    generation: int


class TokenExchange:
    """A credential obtained from the platform and renewed before it expires or on 401.

    Subclasses implement ``_authenticate`` (one request) returning the headers to send
    and the clock() time the credential expires at.
    """

    def __init__(self, url: str, *, secrets: tuple[str, ...], context: Context) -> None:
        self.url = url
        self.what = f"POST {url}"
        self.authentications = 0  # requests to the authentication endpoint
        self._secrets = tuple(s for s in secrets if s)
        self._clock = context.clock
        self._rng = context.rng
        self._lock = asyncio.Lock()
        self._credential: _Credential | None = None
        self._generation = 0
        self._failures = 0
        self._retry_at = -math.inf
        self._last_error = ""
        self._failure = FailureLog(log, f"source {context.source}", clock=context.clock)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.what})"

    async def apply(self, http: aiohttp.ClientSession, headers: dict[str, str]) -> int:
        credential = self._valid()
        if credential is None:
            async with self._lock:  # one authentication in flight; the others wait for it
                credential = self._valid() or await self._renew(http)
        headers.update(credential.headers)
        return credential.generation

    def invalidate(self, generation: int) -> bool:
        current = self._credential
        if current is not None and current.generation == generation:
            self._credential = None
        return True  # renewed on the next apply (or already renewed by another request)

    def _valid(self) -> _Credential | None:
        current = self._credential
        if current is not None and self._clock() < current.refresh_at:
            return current
        return None

    async def _renew(self, http: aiohttp.ClientSession) -> _Credential:
        now = self._clock()
        if now < self._retry_at:
            raise AuthError(
                f"{self.what}: {self._last_error}; next attempt in {self._retry_at - now:.0f} s"
            )
        self.authentications += 1
        try:
            headers, expires_at = await self._authenticate(http, now)
        except AuthError as exc:
            self._failures += 1
            delay = backoff_delay(self._failures, AUTH_BACKOFF_MIN_S, AUTH_BACKOFF_MAX_S, self._rng)
            self._retry_at = now + delay
            self._last_error = str(exc)
            self._failure.failed(
                "authentication failed",
                detail=f"{self.what}: {exc}",
                hint=f"next attempt in {delay:.0f} s at the earliest",
            )
            raise AuthError(f"{self.what}: {exc}") from None
        self._failures = 0
        self._retry_at = -math.inf
        self._failure.recovered("authenticated")
        self._generation += 1
        margin = min(REFRESH_MARGIN_S, max(expires_at - now, 0.0) / 4)
        refresh_at = max(expires_at - margin, now + MIN_REUSE_S)
        self._credential = _Credential(headers, refresh_at, self._generation)
        return self._credential

    async def _authenticate(
        self, http: aiohttp.ClientSession, now: float
    ) -> tuple[dict[str, str], float]:
        raise NotImplementedError

    async def _post(
        self,
        http: aiohttp.ClientSession,
        *,
        json: object = None,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, object]:
        """POST to the authentication endpoint; the JSON object it answers."""
        try:
            async with http.post(self.url, json=json, data=data, headers=headers) as resp:
                status = resp.status
                body = await resp.read()
        except TimeoutError:
            raise AuthError("timed out") from None
        except aiohttp.ClientError as exc:
            raise AuthError(f"failed: {type(exc).__name__}") from None
        try:
            answer = orjson.loads(body) if body.strip() else None
        except orjson.JSONDecodeError:
            answer = None
        if not 200 <= status < 300:
            code = self._error_code(answer, body)
            raise AuthError(f"HTTP {status}" + (f" ({code})" if code else ""))
        if not isinstance(answer, dict):
            raise AuthError(f"HTTP {status} without a JSON object")
        return answer

    def _error_code(self, data: object, body: bytes) -> str | None:
        """The platform's error code (``unauthorized_client``, ``TooManyRequests`` ...)."""
        candidates: list[object] = []
        if isinstance(data, dict):
            candidates += [data.get(k) for k in ("error", "errorCode", "message", "code")]
        else:
            candidates.append(body.decode("utf-8", "replace").strip())
        for value in candidates:
            if (
                isinstance(value, str)
                and _ERROR_CODE.fullmatch(value)
                and not any(s in value for s in self._secrets)
            ):
                return value
        return None


def jwt_expiry(token: str) -> float | None:
    """The ``exp`` of a JWT's payload, read without verifying; None when absent."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = orjson.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        return None
    exp = payload.get("exp") if isinstance(payload, dict) else None
    if isinstance(exp, int | float) and not isinstance(exp, bool) and math.isfinite(exp):
        return float(exp)
    return None


def _lifetime(value: object, default: float) -> float:
    """``expires_in`` (seconds, a number or numeric text); ``default`` when unusable."""
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return default
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value) if value > 0 else default
    return default


def _text(data: Mapping[str, object], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise AuthError(f"answer without {key!r}")
    return value


class EmnifyAuth(TokenExchange):
    """emnify: application token -> JWT ``auth_token`` (PLATFORMS.md 1.1)."""

    def __init__(self, base_url: str, application_token: str, context: Context) -> None:
        url = f"{base_url}/api/v1/authenticate"
        super().__init__(url, secrets=(application_token,), context=context)
        self._application_token = application_token

    async def _authenticate(
        self, http: aiohttp.ClientSession, now: float
    ) -> tuple[dict[str, str], float]:
        data = await self._post(http, json={"application_token": self._application_token})
        jwt = _text(data, "auth_token")
        expires_at = jwt_expiry(jwt)
        if expires_at is None:
            expires_at = now + EMNIFY_ASSUMED_LIFETIME_S
        return {"Authorization": f"Bearer {jwt}"}, expires_at


class ClientCredentialsAuth(TokenExchange):
    """OAuth2 client credentials: 1NCE (``basic_json``, 2.1), KORE (``form``, 4.1)."""

    def __init__(
        self, token_url: str, client_id: str, client_secret: str, style: str, context: Context
    ) -> None:
        super().__init__(token_url, secrets=(client_secret,), context=context)
        self._client_id = client_id
        self._client_secret = client_secret
        self._style = style

    async def _authenticate(
        self, http: aiohttp.ClientSession, now: float
    ) -> tuple[dict[str, str], float]:
        if self._style == "basic_json":
            basic = {
                "Authorization": aiohttp.encode_basic_auth(self._client_id, self._client_secret)
            }
            body = {"grant_type": "client_credentials"}
            data = await self._post(http, json=body, headers=basic)
        else:
            form = {
                "grant_type": "client_credentials",
                "client_id": self._client_id,
                "client_secret": self._client_secret,
            }
            data = await self._post(http, data=form)
        token = _text(data, "access_token")
        lifetime = _lifetime(data.get("expires_in"), OAUTH_DEFAULT_LIFETIME_S)
        return {"Authorization": f"Bearer {token}"}, now + lifetime


class SoracomAuth(TokenExchange):
    """Soracom: AuthKey -> ``apiKey`` + ``token`` headers (PLATFORMS.md 5.1)."""

    def __init__(
        self, base_url: str, auth_key_id: str, auth_key: str, timeout_s: int, context: Context
    ) -> None:
        super().__init__(f"{base_url}/v1/auth", secrets=(auth_key,), context=context)
        self._body = {
            "authKeyId": auth_key_id,
            "authKey": auth_key,
            "tokenTimeoutSeconds": timeout_s,
        }
        self._timeout_s = float(timeout_s)

    async def _authenticate(
        self, http: aiohttp.ClientSession, now: float
    ) -> tuple[dict[str, str], float]:
        data = await self._post(http, json=self._body)
        headers = {
            "X-Soracom-API-Key": _text(data, "apiKey"),
            "X-Soracom-Token": _text(data, "token"),
        }
        return headers, now + self._timeout_s


def build_auth(
    settings: HttpSourceSettings,
    *,
    token: str | None = None,
    clock: Callable[[], float],
    rng: random.Random | None = None,
) -> Auth:
    """The ``Auth`` of a source: ``token`` (a bearer token given in code) wins, then
    ``settings.auth``, then the deprecated top-level token; else ``NoAuth``."""
    if token:
        return StaticAuth.bearer(token)
    auth = settings.auth
    base = settings.base_url.rstrip("/")
    ctx = Context(clock, settings.name, rng or random.Random())  # noqa: S311 - jitter
    if isinstance(auth, BasicAuthSettings):
        return StaticAuth.basic(auth.username, _required(auth.secret("password")))
    if isinstance(auth, EmnifyAuthSettings):
        return EmnifyAuth(base, _required(auth.secret("application_token")), ctx)
    if isinstance(auth, ClientCredentialsAuthSettings):
        if settings.adapter == "1nce":  # base_url with or without the API's server path
            root = base if base.endswith(ONCE_BASE_PATH) else base + ONCE_BASE_PATH
            default_url = f"{root}/oauth/token"
        else:
            default_url = KORE_TOKEN_URL
        style = auth.style or CLIENT_CREDENTIALS_STYLE.get(settings.adapter, "form")
        secret = _required(auth.secret("client_secret"))
        return ClientCredentialsAuth(
            auth.token_url or default_url, auth.client_id, secret, style, ctx
        )
    if isinstance(auth, SoracomAuthSettings):
        key = _required(auth.secret("auth_key"))
        return SoracomAuth(base, auth.auth_key_id, key, auth.token_timeout_s, ctx)
    if isinstance(auth, BearerAuthSettings) or auth is None:
        legacy = settings.resolved_token()
        return StaticAuth.bearer(legacy) if legacy else NoAuth()
    raise AssertionError(auth)  # pragma: no cover - every kind is handled above


def _required(value: str | None) -> str:
    if value is None:  # pragma: no cover - the settings require every secret
        raise AuthError("credentials missing")
    return value
