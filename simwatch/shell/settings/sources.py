"""``[[sources.KIND]]``: where records come from (simulator, files, MQTT, platform APIs)."""

import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Final, Literal, Self, get_args

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    model_validator,
)
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError
from pydantic_core.core_schema import ErrorType

from simwatch.shell.settings.base import (
    FIELD_KEY,
    HttpUrl,
    Model,
    OptionalPath,
    OptionalSecret,
    OptionalStr,
    OptionalUrl,
    field_error,
)
from simwatch.shell.settings.mqtt import MqttConnectionSettings
from simwatch.shell.settings.nats import NatsSourceSettings
from simwatch.shell.settings.secrets import (
    PasswordSettings,
    SecretFiles,
    SecretText,
    TokenSettings,
    secret_value,
)

log = logging.getLogger(__name__)


class SimulatorSourceSettings(Model):
    name: str = Field("simulator", min_length=1)
    sims: int = Field(3000, ge=10, le=2_000_000)
    seed: int = 1
    # a random group fault (partner, APN, country...) starts about this often
    fault_every_s: float = Field(6 * 3600.0, gt=0)
    fault_duration_s: float = Field(2 * 3600.0, gt=0)
    # the first live fault starts this long after start (0: only random ones; negative:
    # it began that long before start, so an incident is open at once); the history
    # also holds one that ended an hour before start
    first_fault_after_s: float = Field(120.0, ge=-86400.0)
    # history generated before "now" at start so rhythms and baselines are learned at once
    history_s: float = Field(3 * 86400.0, ge=0)
    tick_s: float = Field(1.0, gt=0, le=60)
    # play the fleet as of this instant, not the wall clock: it is simulated at the date
    # and hour of day of as_of (up to an hour after it), its records moved by whole hours
    # to now, so it produces the same records whatever day it runs (the tests pin it);
    # unset: the fleet lives on the wall clock
    as_of: AwareDatetime | None = None


class FileSourceSettings(Model):
    name: str = Field(min_length=1)
    path: Path  # an NDJSON file, or a folder of them
    pattern: str = "*.ndjson"  # for a folder
    poll_interval_s: float = Field(1.0, gt=0)
    start_at: Literal["beginning", "end"] = "beginning"  # where to start a file never seen
    state_file: OptionalPath = None  # offsets, so a restart neither loses nor repeats


class MqttSourceSettings(MqttConnectionSettings):
    name: str = Field(min_length=1)
    topics: list[str] = Field(min_length=1)
    qos: Literal[0, 1, 2] = 1
    clean_session: bool = False  # persistent session: QoS 1 messages survive a reconnect
    # messages held in memory while ingest (without journal) or the journal is behind;
    # beyond this, new ones are dropped and counted (without the journal the broker has
    # already been told they arrived; with it, it sends them again after a reconnect)
    max_queued_messages: int = Field(10_000, ge=10, le=10_000_000)
    # a local journal of received messages, acknowledged to the broker once on disk and
    # replayed after a crash (sources/mqtt.py): in journal_dir, else in
    # <state_dir>/mqtt-journal/<name> when checkpoints are on; false: at most once
    journal: bool = True
    journal_dir: OptionalPath = None
    journal_max_bytes: int = Field(1 << 30, ge=1 << 20)  # beyond, oldest segments dropped
    journal_segment_bytes: int = Field(16 << 20, ge=1 << 12, le=1 << 30)

    @model_validator(mode="after")
    def _journal_fits(self) -> Self:
        if self.journal and self.qos == 2:
            raise field_error(
                "qos",
                "2 is not supported with the journal (journal = true): use qos = 1 (a "
                "record delivered twice is counted once) or set journal = false",
            )
        if self.journal_max_bytes < 2 * self.journal_segment_bytes:
            raise field_error(
                "journal_max_bytes",
                f"must be at least twice journal_segment_bytes "
                f"(got {self.journal_max_bytes} < 2 * {self.journal_segment_bytes})",
            )
        return self


# --- [[sources.http]] auth: how a platform's requests authenticate --------------------------

AuthKind = Literal["bearer", "basic", "emnify", "client_credentials", "soracom"]
AUTH_KINDS: Final[tuple[str, ...]] = get_args(AuthKind)

# the credential kinds each adapter can use (PLATFORMS.md 1.1 ... 6), the preferred first
ADAPTER_AUTH: Final[Mapping[str, tuple[str, ...]]] = {
    "generic": ("bearer", "basic", "client_credentials"),
    "emnify": ("emnify", "bearer"),  # bearer: a JWT auth_token obtained elsewhere
    "1nce": ("client_credentials", "bearer"),
    "cisco": ("basic",),  # user name + API key on every call, no token exchange
    "kore": ("client_credentials", "bearer", "basic"),  # basic: Twilio AccountSid:AuthToken
    "soracom": ("soracom",),
    "hologram": ("basic",),  # user "apikey", the API key as password
}
# how the token request of kind = "client_credentials" is sent, per adapter (None: say so)
CLIENT_CREDENTIALS_STYLE: Final[Mapping[str, str]] = {"1nce": "basic_json", "kore": "form"}


class BearerAuthSettings(SecretFiles):
    """``Authorization: Bearer <token>`` on every request (the generic adapter's)."""

    SECRETS = (("token", True),)
    kind: Literal["bearer"]
    token: SecretText = None
    token_file: OptionalPath = None


class BasicAuthSettings(SecretFiles):
    """HTTP Basic on every request: Cisco (user name + API key), Hologram (``apikey``)."""

    SECRETS = (("password", True),)
    kind: Literal["basic"]
    username: str = Field(min_length=1)
    password: SecretText = None
    password_file: OptionalPath = None


class EmnifyAuthSettings(SecretFiles):
    """An emnify application token, exchanged for a JWT at ``/api/v1/authenticate``."""

    SECRETS = (("application_token", True),)
    kind: Literal["emnify"]
    application_token: SecretText = None
    application_token_file: OptionalPath = None


class ClientCredentialsAuthSettings(SecretFiles):
    """OAuth2 client credentials: 1NCE (``basic_json``), KORE (``form``)."""

    SECRETS = (("client_secret", True),)
    kind: Literal["client_credentials"]
    client_id: str = Field(min_length=1)
    client_secret: SecretText = None
    client_secret_file: OptionalPath = None
    # default: {base_url}/oauth/token (1NCE), KORE's token endpoint (kore); required (generic)
    token_url: OptionalUrl = None
    # basic_json: HTTP Basic client_id:client_secret and {"grant_type": "client_credentials"}
    # (1NCE); form: a form body with grant_type, client_id, client_secret (KORE)
    style: Literal["basic_json", "form"] | None = None


class SoracomAuthSettings(SecretFiles):
    """A Soracom AuthKey, exchanged at ``POST /v1/auth`` for an API key and token."""

    SECRETS = (("auth_key", True),)
    kind: Literal["soracom"]
    auth_key_id: str = Field(min_length=1)
    auth_key: SecretText = None
    auth_key_file: OptionalPath = None
    token_timeout_s: int = Field(86_400, ge=180, le=172_800)  # the token's asked lifetime


AuthSettings = (
    BearerAuthSettings
    | BasicAuthSettings
    | EmnifyAuthSettings
    | ClientCredentialsAuthSettings
    | SoracomAuthSettings
)
_KNOWN_ERRORS: Final = frozenset(get_args(ErrorType))


def _untagged(error: ErrorDetails) -> InitErrorDetails:
    """An error inside the ``auth`` union located by option, not by pydantic's union tag."""
    loc, kind, ctx = error["loc"], error["type"], error.get("ctx")
    if loc and loc[0] in AUTH_KINDS:
        loc = loc[1:]
    if kind == "union_tag_invalid":
        expected = ", ".join(repr(k) for k in AUTH_KINDS)
        return {
            "type": PydanticCustomError("literal_error", f"Input should be one of {expected}"),
            "loc": ("kind",),
            "input": (ctx or {}).get("tag"),
        }
    if kind == "union_tag_not_found":
        return {"type": "missing", "loc": ("kind",), "input": error["input"]}
    if not loc and kind != FIELD_KEY:  # not a table: maybe a secret put in the wrong place
        return {"type": PydanticCustomError(FIELD_KEY, error["msg"]), "loc": (), "input": None}
    known = kind in _KNOWN_ERRORS and kind != "value_error"
    custom = PydanticCustomError(kind, error["msg"], ctx)
    out: InitErrorDetails = {"type": kind if known else custom, "loc": loc, "input": error["input"]}
    if ctx is not None:
        out["ctx"] = ctx
    return out


def _auth_by_option(value: object, handler: ValidatorFunctionWrapHandler) -> object:
    try:
        return handler(value)
    except ValidationError as exc:
        errors = [_untagged(e) for e in exc.errors(include_url=False)]
        raise ValidationError.from_exception_data(exc.title, errors, hide_input=True) from None


# the auth table by its ``kind``; errors name the option (``auth.kind``, ``auth.token``)
HttpAuthSettings = Annotated[
    AuthSettings, Field(discriminator="kind"), WrapValidator(_auth_by_option)
]


class HttpSourceSettings(TokenSettings):
    """A platform polled over REST. ``auth`` says how its requests authenticate; the
    top-level ``token`` / ``token_file`` are the deprecated form of ``kind = "bearer"``."""

    name: str = Field(min_length=1)
    adapter: Literal["generic", "emnify", "1nce", "cisco", "kore", "soracom", "hologram"]
    base_url: HttpUrl
    poll_interval_s: float = Field(60.0, gt=0)
    page_size: int = Field(500, ge=1, le=10_000)
    max_concurrency: int = Field(4, ge=1, le=64)
    rate_limit_per_s: float = Field(10.0, gt=0)
    timeout_s: float = Field(30.0, gt=0)
    cursor_file: OptionalPath = None
    # the SIMs of per-SIM platforms (1NCE, Cisco, Soracom, KORE); left out: the SIM list
    # comes from the platform (discovery); given, it must name at least one SIM
    iccids: list[str] = Field(default_factory=list)
    # how far back the first poll reads (every platform's history: emnify and 1NCE events,
    # KORE hours, Soracom sessions and air stats, Hologram sessions); later polls go on from
    # the cursor. Days here give the engine a baseline from the first cycle.
    initial_lookback_s: float = Field(3600.0, gt=0, le=30 * 86_400)
    auth: HttpAuthSettings | None = None  # a table with a ``kind`` (ADAPTER_AUTH)

    @model_validator(mode="after")
    def _iccids_not_empty(self) -> Self:
        if "iccids" in self.model_fields_set and not self.iccids:
            raise field_error(
                "iccids",
                "is empty: list at least one ICCID, or leave iccids out to take the SIM "
                "list from the platform",
            )
        return self

    @model_validator(mode="after")
    def _auth_fits_adapter(self) -> Self:
        kinds = ADAPTER_AUTH[self.adapter]
        legacy = "token" if self.token is not None else "token_file" if self.token_file else None
        if legacy is not None:
            if self.auth is not None:
                raise field_error(legacy, "give either auth or the deprecated token/token_file")
            if "bearer" not in kinds:
                raise field_error(
                    legacy,
                    f"adapter {self.adapter!r} cannot use a bearer token: give auth = "
                    f"{{ kind = {kinds[0]!r}, ... }}",
                )
            log.warning(
                "sources.http %r: the top-level %s is deprecated: use auth = { kind = "
                '"bearer", token_file = ... }%s (docs/configuration.md)',
                self.name,
                legacy,
                "" if kinds[0] == "bearer" else f", or better kind = {kinds[0]!r}",
            )
            return self
        auth = self.auth
        if auth is None:
            return self
        if auth.kind not in kinds:
            raise field_error(
                "auth.kind",
                f"adapter {self.adapter!r} cannot use {auth.kind!r} credentials "
                f"(it takes {' or '.join(repr(k) for k in kinds)})",
            )
        if isinstance(auth, ClientCredentialsAuthSettings):
            if auth.token_url is None and self.adapter not in ("1nce", "kore"):
                raise field_error("auth.token_url", f"required with adapter {self.adapter!r}")
            if auth.style is None and self.adapter not in CLIENT_CREDENTIALS_STYLE:
                raise field_error("auth.style", f"required with adapter {self.adapter!r}")
        return self

    def resolved_token(self) -> str | None:
        """The bearer token: ``auth`` of kind ``bearer``, else the deprecated top level."""
        if isinstance(self.auth, BearerAuthSettings):
            return self.auth.secret("token")
        return super().resolved_token()


class WebhookSourceSettings(PasswordSettings):
    """``[[sources.webhook]]``: records pushed to ``POST /api/v1/ingest/{name}``."""

    model_config = ConfigDict(hide_input_in_errors=True)  # never echo the password

    # the {name} of the ingest path: letters, digits and . _ ~ : - only
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._~:-]+$")
    # the body's shape: FORMATS.md records, a platform's Data Streamer (emnify, 1nce),
    # KORE Event Streams (CloudEvents) or the Cisco Control Center Push API
    format: Literal["records", "emnify", "1nce", "kore", "cisco"] = "records"
    # HTTP Basic credentials accepted besides the API bearer tokens (for platforms that
    # can only send static headers or URL credentials)
    username: OptionalStr = None
    max_body_bytes: int = Field(10 << 20, ge=1024, le=16 << 20)  # beyond: 413
    # received bodies are journaled (fsynced) before the 200: in journal_dir, else in
    # <state_dir>/webhook-journal/<name>; when it holds journal_max_bytes not yet covered
    # by a checkpoint, pushes are refused with 503 and Retry-After: retry_after_s
    journal_dir: OptionalPath = None
    journal_max_bytes: int = Field(1 << 30, ge=1 << 16)
    journal_segment_bytes: int = Field(16 << 20, ge=1 << 12, le=1 << 30)
    retry_after_s: int = Field(30, ge=1, le=3600)
    # platform formats: bulk bodies (64 KiB and more) are mapped in this many worker
    # processes, started at the first one, so mapping runs beside ingest (0: on the loop)
    decode_workers: int = Field(1, ge=0, le=16)
    # format "cisco": the account's Push API secret; a push whose signature2 (Base64
    # HMAC-SHA256 of its timestamp) does not check is refused with 401
    signature_secret: OptionalSecret = None
    signature_secret_file: OptionalPath = None

    @model_validator(mode="after")
    def _cross_fields(self) -> Self:
        signature = self.signature_secret is not None or self.signature_secret_file is not None
        if signature and self.format != "cisco":
            raise field_error("signature_secret", 'only for format = "cisco" (Push API)')
        if self.signature_secret is not None and self.signature_secret_file is not None:
            raise field_error(
                "signature_secret_file",
                "give either signature_secret or signature_secret_file, not both",
            )
        has_password = self.password is not None or self.password_file is not None
        if self.username is not None and not has_password:
            raise field_error("password", "required when username is given (or password_file)")
        if has_password and self.username is None:
            raise field_error("username", "required when a password is given")
        if self.journal_max_bytes < 2 * self.journal_segment_bytes:
            raise field_error(
                "journal_max_bytes",
                f"must be at least twice journal_segment_bytes "
                f"(got {self.journal_max_bytes} < 2 * {self.journal_segment_bytes})",
            )
        if self.journal_max_bytes < 2 * self.max_body_bytes:
            raise field_error(
                "journal_max_bytes",
                f"must be at least twice max_body_bytes "
                f"(got {self.journal_max_bytes} < 2 * {self.max_body_bytes})",
            )
        return self

    def resolved_signature_secret(self) -> str | None:
        """Cisco's Push API secret, from ``signature_secret`` or its file (read now)."""
        return secret_value(self.signature_secret, None, self.signature_secret_file)


class SourcesSettings(Model):
    # With no source configured at all, the daemon runs the built-in simulator.
    simulator: list[SimulatorSourceSettings] = Field(default_factory=list)
    file: list[FileSourceSettings] = Field(default_factory=list)
    mqtt: list[MqttSourceSettings] = Field(default_factory=list)
    http: list[HttpSourceSettings] = Field(default_factory=list)
    webhook: list[WebhookSourceSettings] = Field(default_factory=list)
    nats: list[NatsSourceSettings] = Field(default_factory=list)  # JetStream (settings/nats.py)

    def any(self) -> bool:
        return bool(
            self.simulator or self.file or self.mqtt or self.http or self.webhook or self.nats
        )

    def items(self) -> Iterator[tuple[str, int, BaseModel]]:
        """Every configured source as (kind, index within its kind, settings)."""
        for kind in ("simulator", "file", "mqtt", "http", "webhook", "nats"):
            for i, source in enumerate(getattr(self, kind)):
                yield kind, i, source

    @model_validator(mode="after")
    def _names_unique(self) -> Self:
        first: dict[str, str] = {}
        for kind, i, source in self.items():
            name: str = getattr(source, "name")  # noqa: B009 - every source kind has a name
            where = f"{kind}[{i}]"
            if name in first:
                raise field_error(
                    f"{where}.name", f"duplicate source name {name!r} (also sources.{first[name]})"
                )
            first[name] = where
        return self
