"""Authentication per platform (issue 10.1): the ``auth`` settings and ``CmpSource``
against fake platforms (``cmp_fakes``) that enforce the documented authentication,
expiry and limits of PLATFORMS.md 1.1 (emnify), 2.1 (1NCE), 3.1 (Cisco), 4.1 (KORE),
5.1 (Soracom) and 6 (Hologram)."""

from __future__ import annotations

import asyncio
import base64
import logging
import subprocess
import sys
from typing import TYPE_CHECKING

import orjson
import pytest
from cmp_fakes import (
    AuthChecker,
    BasicAuth,
    BearerAuth,
    Clock,
    EmnifyAuth,
    FakePlatform,
    KoreOAuth,
    OnceOAuth,
    SoracomAuth,
    json_response,
    make_jwt,
)

from simwatch.core.timeutil import parse_rfc3339
from simwatch.shell.settings import ConfigError, HttpSourceSettings, load_settings
from simwatch.sources.cmp import auth as cmp_auth
from simwatch.sources.cmp.auth import (
    AUTH_BACKOFF_MAX_S,
    EMNIFY_ASSUMED_LIFETIME_S,
    REFRESH_MARGIN_S,
    jwt_expiry,
)
from simwatch.sources.cmp.source import CmpError, CmpSource

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping
    from pathlib import Path

    from aiohttp import web

T0 = parse_rfc3339("2026-11-20T12:00:00Z")
SECRET = "S3CR3T-value-9f8e"
DATA = "/api/v1/data"


# --- helpers ------------------------------------------------------------------------------


async def _no_sleep(delay: float) -> None:
    del delay
    await asyncio.sleep(0)


def make_source(platform: FakePlatform, adapter: str, auth: Mapping[str, object]) -> CmpSource:
    settings = HttpSourceSettings.model_validate(
        {
            "name": f"p-{adapter}",
            "adapter": adapter,
            "base_url": platform.url,
            "rate_limit_per_s": 1000.0,
            "auth": auth,
        }
    )
    return CmpSource(settings, clock=platform.clock, sleep=_no_sleep)


async def fetch(src: CmpSource, n: int = 1) -> list[object]:
    """``n`` concurrent GETs of the protected endpoint through the source's request path."""
    async with src._session() as http:
        src._http = http
        try:
            got = await asyncio.gather(*(src.get_json(DATA, {}) for _ in range(n)))
        finally:
            src._http = None
    return [body for body, _ in got]


async def _ok(request: web.Request) -> web.StreamResponse:
    del request
    return json_response({"ok": True})


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


async def serve(checker: AuthChecker, clock: Clock) -> AsyncIterator[FakePlatform]:
    platform = FakePlatform(checker, clock)
    platform.get(DATA, _ok)
    async with platform:
        yield platform


def refused(platform: FakePlatform) -> int:
    """Requests of the protected endpoint that the platform did not authenticate."""
    return sum(1 for r in platform.requests if r.path == DATA) - platform.served


# --- emnify (1.1) -------------------------------------------------------------------------


@pytest.fixture
async def emnify(clock: Clock) -> AsyncIterator[FakePlatform]:
    async for platform in serve(EmnifyAuth(application_token=SECRET), clock):
        yield platform


def emnify_checker(platform: FakePlatform) -> EmnifyAuth:
    assert isinstance(platform.auth, EmnifyAuth)
    return platform.auth


EMNIFY_AUTH = {"kind": "emnify", "application_token": SECRET}


async def test_emnify_jwt_is_reused_then_renewed_before_exp(
    emnify: FakePlatform, clock: Clock
) -> None:
    fake = emnify_checker(emnify)
    src = make_source(emnify, "emnify", EMNIFY_AUTH)
    assert await fetch(src, 3) == [{"ok": True}] * 3
    assert fake.authentications == 1  # three concurrent requests, one authentication
    clock.now += fake.lifetime_s - REFRESH_MARGIN_S - 1
    await fetch(src)
    assert fake.authentications == 1  # still valid: reused
    clock.now += 2  # within the margin before exp: renewed before use
    await fetch(src)
    assert fake.authentications == 2
    clock.now += fake.lifetime_s + 10  # long past exp
    await fetch(src)
    assert fake.authentications == 3
    assert refused(emnify) == 0  # never sent an expired JWT


async def test_emnify_jwt_without_exp_assumes_the_documented_lifetime(
    emnify: FakePlatform, clock: Clock
) -> None:
    fake = emnify_checker(emnify)
    fake.with_exp = False
    fake.lifetime_s = EMNIFY_ASSUMED_LIFETIME_S + 3600  # the server accepts it for longer
    src = make_source(emnify, "emnify", EMNIFY_AUTH)
    await fetch(src)
    clock.now += EMNIFY_ASSUMED_LIFETIME_S - REFRESH_MARGIN_S - 1
    await fetch(src)
    assert fake.authentications == 1
    clock.now += REFRESH_MARGIN_S + 2
    await fetch(src)
    assert fake.authentications == 2


async def test_emnify_401_reauthenticates_once_and_retries(emnify: FakePlatform) -> None:
    fake = emnify_checker(emnify)
    src = make_source(emnify, "emnify", EMNIFY_AUTH)
    await fetch(src)
    fake.issued.clear()  # the platform no longer accepts the JWT (revoked, clock skew)
    assert await fetch(src, 4) == [{"ok": True}] * 4
    assert fake.authentications == 2  # one re-authentication shared by the four requests
    assert refused(emnify) == 4


async def test_emnify_second_401_fails_the_poll_without_a_loop(
    emnify: FakePlatform, caplog: pytest.LogCaptureFixture
) -> None:
    fake = emnify_checker(emnify)
    src = make_source(emnify, "emnify", EMNIFY_AUTH)
    fake.deny_all = True
    with pytest.raises(CmpError, match=r"HTTP 401 \(credentials refused again after re-auth"):
        await fetch(src)
    assert fake.authentications == 2  # the first, and one re-authentication
    assert emnify.calls(DATA) == 2  # the request, and its one retry
    for _ in range(3):  # each later request: at most one re-authentication
        with pytest.raises(CmpError):
            await fetch(src)
    assert fake.authentications == 5
    assert emnify.calls(DATA) == 8
    assert SECRET not in caplog.text


async def test_emnify_wrong_token_backs_off_and_logs_once(
    emnify: FakePlatform, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=cmp_auth.__name__)
    fake = emnify_checker(emnify)
    src = make_source(emnify, "emnify", {"kind": "emnify", "application_token": "wrong-" + SECRET})
    with pytest.raises(CmpError) as info:
        await fetch(src)
    message = str(info.value)
    assert "/api/v1/authenticate: HTTP 401" in message
    assert SECRET not in message
    for _ in range(5):  # polls retried soon do not reach the endpoint during the backoff
        clock.now += 2  # 10 s in all: within the first backoff (at least AUTH_BACKOFF_MIN_S / 2)
        with pytest.raises(CmpError, match="next attempt in"):
            await fetch(src)
    assert fake.authentications == 1
    assert emnify.calls(DATA) == 0
    failures = 0
    while fake.authentications < 3:  # each later attempt only after a longer backoff
        clock.now += AUTH_BACKOFF_MAX_S
        with pytest.raises(CmpError):
            await fetch(src)
        failures += 1
    assert failures == 2  # never more than one attempt per backoff
    lines = [r for r in caplog.records if "authentication failed" in r.getMessage()]
    assert len(lines) == 1  # logged once, not per attempt
    assert SECRET not in caplog.text
    # the account is fixed (same token as configured now valid): recovery is logged once
    fake.application_token = "wrong-" + SECRET
    clock.now += 301 + AUTH_BACKOFF_MAX_S  # past the platform's lockout and our backoff
    assert await fetch(src) == [{"ok": True}]
    assert any("authenticated after" in r.getMessage() for r in caplog.records)


async def test_emnify_authenticate_rate_limit_is_never_reached(
    emnify: FakePlatform, clock: Clock
) -> None:
    """100 authentications per IP per 5 minutes: a source refused at every request
    authenticates at most once per request, and its polls back off (CmpSource)."""
    fake = emnify_checker(emnify)
    fake.deny_all = True
    src = make_source(emnify, "emnify", EMNIFY_AUTH)
    for failures in range(1, 30):
        with pytest.raises(CmpError):
            await fetch(src)
        clock.now += src.backoff_delay(failures)
    assert fake.authentications <= 2 * 29
    in_window = [r for r in emnify.requests if r.path == fake.PATH and r.at > clock.now - 300]
    assert len(in_window) < 100


# --- 1NCE (2.1) ---------------------------------------------------------------------------


@pytest.fixture
async def once(clock: Clock) -> AsyncIterator[FakePlatform]:
    async for platform in serve(OnceOAuth("12345_user", SECRET, expires_in=3600), clock):
        yield platform


ONCE_AUTH = {"kind": "client_credentials", "client_id": "12345_user", "client_secret": SECRET}


async def test_1nce_oauth_basic_json_renewed_before_expires_in(
    once: FakePlatform, clock: Clock
) -> None:
    fake = once.auth
    assert isinstance(fake, OnceOAuth)
    src = make_source(once, "1nce", ONCE_AUTH)
    assert await fetch(src, 2) == [{"ok": True}] * 2
    assert fake.authentications == 1
    clock.now += 3600 - REFRESH_MARGIN_S - 1
    await fetch(src)
    assert fake.authentications == 1
    clock.now += 2
    await fetch(src)
    assert fake.authentications == 2
    assert refused(once) == 0


async def test_1nce_401_after_expiry_renews_once(once: FakePlatform) -> None:
    fake = once.auth
    assert isinstance(fake, OnceOAuth)
    src = make_source(once, "1nce", ONCE_AUTH)
    await fetch(src)
    fake.issued.clear()  # the platform answers 401 to the token from now on
    assert await fetch(src) == [{"ok": True}]
    assert (fake.authentications, refused(once)) == (2, 1)


async def test_1nce_wrong_secret_names_the_error_code_not_the_secret(once: FakePlatform) -> None:
    src = make_source(once, "1nce", {**ONCE_AUTH, "client_secret": "x" + SECRET})
    with pytest.raises(CmpError) as info:
        await fetch(src)
    assert "oauth/token: HTTP 400 (AuthValidationError)" in str(info.value)
    assert SECRET not in str(info.value)


# --- KORE (4.1) ---------------------------------------------------------------------------


async def test_kore_form_oauth(clock: Clock) -> None:
    checker = KoreOAuth("kore-client", SECRET, expires_in=86_400)
    async for platform in serve(checker, clock):
        auth = {**ONCE_AUTH, "client_id": "kore-client", "token_url": platform.url + checker.path}
        src = make_source(platform, "kore", auth)
        assert await fetch(src) == [{"ok": True}]
        clock.now += 86_400 - REFRESH_MARGIN_S + 1
        await fetch(src)
        assert (checker.authentications, refused(platform)) == (2, 0)
        bad = make_source(platform, "kore", {**auth, "client_secret": "y" + SECRET})
        with pytest.raises(CmpError) as info:
            await fetch(bad)
        assert "HTTP 401 (unauthorized_client)" in str(info.value)
        assert SECRET not in str(info.value)


async def test_client_credentials_style_can_be_chosen(clock: Clock) -> None:
    """A generic gateway behind 1NCE-style OAuth: style and token_url given."""
    checker = OnceOAuth("gw", SECRET)
    async for platform in serve(checker, clock):
        auth = {**ONCE_AUTH, "client_id": "gw", "style": "basic_json"}
        auth["token_url"] = platform.url + checker.path
        assert await fetch(make_source(platform, "generic", auth)) == [{"ok": True}]


# --- Soracom (5.1) ------------------------------------------------------------------------


async def test_soracom_auth_key_headers_and_renewal(clock: Clock) -> None:
    checker = SoracomAuth("keyId-abc", SECRET)
    async for platform in serve(checker, clock):
        auth = {
            "kind": "soracom",
            "auth_key_id": "keyId-abc",
            "auth_key": SECRET,
            "token_timeout_s": 3600,
        }
        src = make_source(platform, "soracom", auth)
        assert await fetch(src, 3) == [{"ok": True}] * 3
        assert checker.timeouts == [3600]
        seen = next(r for r in platform.requests if r.path == DATA)
        assert (seen.headers["X-Soracom-API-Key"], seen.headers["X-Soracom-Token"]) == (
            "api-key-0",
            "api-token-0",
        )
        clock.now += 3600
        await fetch(src)
        assert (checker.authentications, refused(platform)) == (2, 0)


# --- fixed credentials: Basic (3.1, 6), Bearer ------------------------------------------


async def test_cisco_basic_on_every_request_and_401_is_not_retried(clock: Clock) -> None:
    async for platform in serve(BasicAuth("jdoe", SECRET), clock):
        src = make_source(
            platform, "cisco", {"kind": "basic", "username": "jdoe", "password": SECRET}
        )
        assert await fetch(src, 2) == [{"ok": True}] * 2
        header = platform.requests[0].headers["Authorization"]
        assert base64.b64decode(header.removeprefix("Basic ")) == f"jdoe:{SECRET}".encode()
        bad = make_source(
            platform, "hologram", {"kind": "basic", "username": "apikey", "password": "x"}
        )
        with pytest.raises(CmpError, match=r"HTTP 401 \(credentials refused\)$"):
            await fetch(bad)
        assert platform.calls(DATA) == 3  # the same credentials are not sent twice


async def test_bearer_and_legacy_token(clock: Clock, tmp_path: Path) -> None:
    async for platform in serve(BearerAuth(SECRET), clock):
        (tmp_path / "tok").write_text(f"{SECRET}\n", encoding="utf-8")
        src = make_source(platform, "generic", {"kind": "bearer", "token_file": tmp_path / "tok"})
        assert await fetch(src) == [{"ok": True}]
        legacy = HttpSourceSettings.model_validate(
            {"name": "g", "adapter": "generic", "base_url": platform.url, "token": SECRET}
        )
        assert await fetch(CmpSource(legacy, clock=clock, sleep=_no_sleep)) == [{"ok": True}]
        assert all(r.headers["Authorization"] == f"Bearer {SECRET}" for r in platform.requests)


def test_jwt_expiry_reads_exp_without_verifying() -> None:
    assert jwt_expiry(make_jwt({"exp": 1_700_000_000, "iat": 1})) == 1_700_000_000.0
    assert jwt_expiry(make_jwt({"iat": 1})) is None
    assert jwt_expiry("token contains an invalid number of segments") is None
    assert jwt_expiry("a.!!!.c") is None


# --- settings -----------------------------------------------------------------------------

HTTP = "[[sources.http]]\nname = 'p'\nadapter = '{adapter}'\nbase_url = 'https://x.test'\n"


def load(tmp_path: Path, adapter: str, extra: str) -> HttpSourceSettings:
    path = tmp_path / "simwatch.toml"
    text = HTTP.format(adapter=adapter) + extra.replace("{tmp}", str(tmp_path))
    path.write_text(text, encoding="utf-8")
    return load_settings(path, {}).sources.http[0]


def load_error(tmp_path: Path, adapter: str, extra: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, adapter, extra)
    return str(info.value)


@pytest.mark.parametrize(
    ("adapter", "table", "secret"),
    [
        ("generic", "kind = 'bearer'\ntoken", "token"),
        ("cisco", "kind = 'basic'\nusername = 'jdoe'\npassword", "password"),
        ("hologram", "kind = 'basic'\nusername = 'apikey'\npassword", "password"),
        ("emnify", "kind = 'emnify'\napplication_token", "application_token"),
        ("1nce", "kind = 'client_credentials'\nclient_id = 'c'\nclient_secret", "client_secret"),
        ("kore", "kind = 'client_credentials'\nclient_id = 'c'\nclient_secret", "client_secret"),
        ("soracom", "kind = 'soracom'\nauth_key_id = 'k'\nauth_key", "auth_key"),
    ],
)
def test_each_kind_loads_inline_or_from_file(
    tmp_path: Path, adapter: str, table: str, secret: str
) -> None:
    inline = load(tmp_path, adapter, f"[sources.http.auth]\n{table} = '{SECRET}'\n")
    assert inline.auth is not None
    assert inline.auth.secret(secret) == SECRET
    (tmp_path / "secret").write_text(f"  {SECRET}\n", encoding="utf-8")
    text = f"[sources.http.auth]\n{table}_file = '{{tmp}}/secret'\n"
    from_file = load(tmp_path, adapter, text)
    (tmp_path / "secret").unlink()  # read at load
    assert from_file.auth is not None
    assert from_file.auth.secret(secret) == SECRET
    for shown in (repr(from_file), str(inline), inline.model_dump_json()):
        assert SECRET not in shown


@pytest.mark.parametrize(
    ("adapter", "extra", "expected"),
    [
        (
            "cisco",
            f"auth = {{ kind = 'bearer', token = '{SECRET}' }}\n",
            (
                "sources.http[0].auth.kind: adapter 'cisco' cannot use 'bearer' credentials "
                "(it takes 'basic')"
            ),
        ),
        (
            "soracom",
            f"auth = {{ kind = 'emnify', application_token = '{SECRET}' }}\n",
            (
                "sources.http[0].auth.kind: adapter 'soracom' cannot use 'emnify' credentials "
                "(it takes 'soracom')"
            ),
        ),
        (
            "emnify",
            f"auth = {{ kind = 'jwt', application_token = '{SECRET}' }}\n",
            (
                "sources.http[0].auth.kind: Input should be one of 'bearer', 'basic', 'emnify', "
                "'client_credentials', 'soracom' (got 'jwt')"
            ),
        ),
        (
            "emnify",
            f"auth = {{ application_token = '{SECRET}' }}\n",
            "sources.http[0].auth.kind: Field required",
        ),
        (
            "emnify",
            f"auth = '{SECRET}'\n",
            (
                "sources.http[0].auth: Input should be a valid dictionary or object to extract "
                "fields from"
            ),
        ),
        (
            "emnify",
            "auth = { kind = 'emnify', application_token = 12345 }\n",
            "sources.http[0].auth.application_token: Input should be a valid string",
        ),
        (
            "1nce",
            (
                f"auth = {{ kind = 'client_credentials', client_id = 'c', "
                f"client_secret = '{SECRET}', client_secret_file = '/x' }}\n"
            ),
            (
                "sources.http[0].auth.client_secret_file: give either client_secret or "
                "client_secret_file, not both"
            ),
        ),
        (
            "1nce",
            "auth = { kind = 'client_credentials', client_id = 'c' }\n",
            (
                "sources.http[0].auth.client_secret: required (give client_secret_file, or "
                "client_secret)"
            ),
        ),
        (
            "generic",
            (
                f"auth = {{ kind = 'client_credentials', client_id = 'c', "
                f"client_secret = '{SECRET}' }}\n"
            ),
            "sources.http[0].auth.token_url: required with adapter 'generic'",
        ),
        (
            "cisco",
            f"token = '{SECRET}'\n",
            (
                "sources.http[0].token: adapter 'cisco' cannot use a bearer token: give auth = "
                "{ kind = 'basic', ... }"
            ),
        ),
        (
            "emnify",
            f"token = '{SECRET}'\nauth = {{ kind = 'emnify', application_token = '{SECRET}' }}\n",
            "sources.http[0].token: give either auth or the deprecated token/token_file",
        ),
        (
            "soracom",
            (
                f"auth = {{ kind = 'soracom', auth_key_id = 'k', auth_key = '{SECRET}', "
                "token_timeout_s = 60 }\n"
            ),
            (
                "sources.http[0].auth.token_timeout_s: Input should be greater than or equal "
                "to 180 (got 60)"
            ),
        ),
    ],
)
def test_bad_auth_names_the_field_never_the_secret(
    tmp_path: Path, adapter: str, extra: str, expected: str
) -> None:
    assert load_error(tmp_path, adapter, extra) == expected


def test_unreadable_secret_files_name_the_field(tmp_path: Path) -> None:
    table = "auth = {{ kind = 'emnify', application_token_file = '{path}' }}\n"
    message = load_error(tmp_path, "emnify", table.format(path=tmp_path / "absent"))
    assert message == (
        f"sources.http[0].auth.application_token_file: cannot read {tmp_path}/absent: "
        "No such file or directory"
    )
    (tmp_path / "empty").write_text("\n", encoding="utf-8")
    message = load_error(tmp_path, "emnify", table.format(path=tmp_path / "empty"))
    assert message == (
        f"sources.http[0].auth.application_token_file: cannot read {tmp_path}/empty: file is empty"
    )


def test_auth_from_the_environment() -> None:
    item = {
        "name": "j",
        "adapter": "cisco",
        "base_url": "https://x.test",
        "auth": {"kind": "basic", "username": "u", "password": SECRET},
    }
    env = {"SIMWATCH_SOURCES__HTTP": orjson.dumps([item]).decode()}
    http = load_settings(None, env).sources.http[0]
    assert http.auth is not None
    assert http.auth.secret("password") == SECRET
    item["auth"] = {"kind": "bearer", "token": SECRET}
    with pytest.raises(ConfigError) as info:
        load_settings(None, {"SIMWATCH_SOURCES__HTTP": orjson.dumps([item]).decode()})
    assert str(info.value) == (
        "sources.http[0].auth.kind (from SIMWATCH_SOURCES__HTTP): adapter 'cisco' cannot use "
        "'bearer' credentials (it takes 'basic')"
    )


def test_legacy_token_loads_with_a_logged_deprecation(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "tok").write_text(SECRET, encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        http = load(tmp_path, "emnify", "token_file = '{tmp}/tok'\n")
    assert http.resolved_token() == SECRET
    assert http.auth is None
    (line,) = [r for r in caplog.records if "deprecated" in r.getMessage()]
    assert line.levelno == logging.WARNING
    assert "token_file is deprecated" in line.getMessage()
    assert "kind = 'emnify'" in line.getMessage()
    assert SECRET not in caplog.text


def test_check_config_shows_the_deprecation(tmp_path: Path) -> None:
    path = tmp_path / "simwatch.toml"
    path.write_text(HTTP.format(adapter="generic") + f"token = '{SECRET}'\n", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "simwatch", "check-config", "--config.file", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "token is deprecated" in done.stderr
    assert "config OK" in done.stdout
    assert SECRET not in done.stdout + done.stderr
