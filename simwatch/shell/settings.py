"""The daemon's configuration: one pydantic model tree, from TOML plus ``SIMWATCH_`` env.

Every option has a default, so ``simwatch run`` works with no file at all (the built-in
simulator source on loopback). Secrets are ``SecretStr`` (never printed) and can come
from a file (``*_file``) or the environment. Unknown keys are errors: a typo must fail
at start with the field's name, not be silently ignored.

``load_settings`` reads the TOML file, lays the ``SIMWATCH_`` environment over it (a small
explicit merge, so every error can name the variable it came from), validates the tree,
then does the file-system checks (secret files read, TLS/inventory/token files present).
Every problem becomes a ``ConfigError`` whose message names the field by its dotted path,
e.g. ``http.port: Input should be less than or equal to 65535 (got 70000)``.
"""

from __future__ import annotations

import argparse
import difflib
import ipaddress
import json
import os
import re
import sys
import tomllib
import types
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self, Union, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from simwatch.core.baseline import BaselineParams
from simwatch.core.engine import EngineConfig
from simwatch.core.incidents import IncidentParams
from simwatch.core.localize import LocalizeParams
from simwatch.core.state import INVENTORY_DIMS, RECORD_DIMS

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

ENV_PREFIX = "SIMWATCH_"
ENV_NESTING = "__"
# the ``ctx`` key a cross-field error uses to name the field inside the failing model
_FIELD_KEY = "simwatch_field"
_SECRET_FIELDS = frozenset({"password", "token"})
_MAX_SHOWN = 60
_CLASS_REPR = re.compile(r" for <class '[^']*'>")

KNOWN_DIMS = RECORD_DIMS + INVENTORY_DIMS


class ConfigError(Exception):
    """A configuration problem; ``str()`` is one line naming each bad field by dotted path."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems: tuple[str, ...] = tuple(problems)
        super().__init__("; ".join(self.problems))


def _empty_to_none(value: object) -> object:
    """``""`` means "not set" for optional paths: TOML has no null, env values are strings."""
    return None if value == "" else value


# An optional file or folder; "" (in TOML or env) turns it off.
OptionalPath = Annotated[Path | None, BeforeValidator(_empty_to_none)]


def _field_error(field: str, message: str) -> PydanticCustomError:
    """A validation error about ``field`` of the model being validated."""
    return PydanticCustomError("simwatch_field", message, {_FIELD_KEY: field})


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EngineSettings(_Model):
    dims: list[str] = Field(default_factory=lambda: ["apn", "country", "partner"], min_length=1)
    eval_interval_s: float = Field(60.0, gt=0, le=3600)
    warmup_s: float = Field(48 * 3600.0, ge=0)
    dedup_capacity: int = Field(2_000_000, ge=1000)
    inventory_file: OptionalPath = None
    operators_file: OptionalPath = None
    dead_letter_file: OptionalPath = Path("var/simwatch-deadletter.ndjson")
    min_affected: float = Field(5.0, ge=1)
    alpha: float = Field(1e-3, gt=0, lt=1)
    open_after: int = Field(2, ge=1)
    close_after: int = Field(5, ge=1)
    baseline_memory_days: float = Field(3.0, gt=0)

    @field_validator("dims")
    @classmethod
    def _dims_valid(cls, dims: list[str]) -> list[str]:
        # Any name outside KNOWN_DIMS is an inventory extra column: allowed.
        seen: set[str] = set()
        for dim in dims:
            if not dim.strip():
                raise PydanticCustomError("dims", "empty dimension name")
            if dim in seen:
                raise PydanticCustomError("dims", f"duplicate dimension {dim!r}")
            seen.add(dim)
        return dims

    def engine_config(self) -> EngineConfig:
        return EngineConfig(
            dims=tuple(self.dims),
            eval_interval_s=self.eval_interval_s,
            warmup_s=self.warmup_s,
            dedup_capacity=self.dedup_capacity,
            localize=LocalizeParams(min_affected=self.min_affected, alpha=self.alpha),
            incidents=IncidentParams(open_after=self.open_after, close_after=self.close_after),
            baseline=BaselineParams(memory_days=self.baseline_memory_days),
        )


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (``127.0.0.0/8``, ``::1``)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class HttpSettings(_Model):
    host: str = "127.0.0.1"
    port: int = Field(39153, ge=1, le=65535)
    # "on": a bearer token is required for /api/ (without tokens_file, one is generated in
    # <state_dir>/api-token); "off": no token, only allowed on a loopback host
    auth: Literal["on", "off"] = "on"
    tokens_file: OptionalPath = None  # one token per line; '#' comments
    max_page_size: int = Field(1000, ge=1, le=100_000)
    max_body_bytes: int = Field(1 << 20, ge=1024)

    def auth_required(self) -> bool:
        """Whether requests to /api/ need a bearer token."""
        return self.auth == "on"

    @model_validator(mode="after")
    def _no_open_api_off_loopback(self) -> Self:
        if self.auth == "off" and not is_loopback(self.host):
            raise ValueError(
                f"auth: 'off' is only allowed on a loopback host, not {self.host!r}: per-SIM "
                "data must not be open to the network (leave auth on; the token is generated "
                "in <state_dir>/api-token unless tokens_file is set)"
            )
        return self


class LogSettings(_Model):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["text", "json"] = "text"


class SimulatorSourceSettings(_Model):
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


class FileSourceSettings(_Model):
    name: str = Field(min_length=1)
    path: Path  # an NDJSON file, or a folder of them
    pattern: str = "*.ndjson"  # for a folder
    poll_interval_s: float = Field(1.0, gt=0)
    start_at: Literal["beginning", "end"] = "beginning"  # where to start a file never seen
    state_file: OptionalPath = None  # offsets, so a restart neither loses nor repeats


def _secret_value(
    value: SecretStr | None, from_file: SecretStr | None, path: Path | None
) -> str | None:
    """A secret given inline, else the content of its file (read by ``load_secrets``,
    or now when the settings were built directly)."""
    if value is not None:
        return value.get_secret_value()
    if path is None:
        return None
    return (from_file or _read_secret(path)).get_secret_value()


def api_token_file(settings: Settings) -> Path:
    """Where the API token lives when auth is on and no ``http.tokens_file`` is set."""
    return settings.http.tokens_file or settings.state_dir / "api-token"


def read_tokens(path: Path) -> frozenset[str]:
    """The bearer tokens in a tokens file: one per line, blank lines and ``#`` comments
    skipped (blocking)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return frozenset(t.strip() for t in lines if t.strip() and not t.lstrip().startswith("#"))


def _read_secret(path: Path) -> SecretStr:
    """The stripped content of a secret file; ``OSError``/``ValueError`` when unusable."""
    text = path.read_text(encoding="utf-8").strip()
    if not text:
        raise ValueError(f"{path} is empty")
    return SecretStr(text)


class MqttConnectionSettings(_Model):
    """How to reach an MQTT broker: shared by the MQTT source and the MQTT sink."""

    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    client_id: str = "simwatch"
    username: str | None = None
    password: SecretStr | None = None
    password_file: OptionalPath = None
    tls: bool = False
    ca_file: OptionalPath = None
    cert_file: OptionalPath = None
    key_file: OptionalPath = None
    reconnect_min_s: float = Field(0.5, gt=0)
    reconnect_max_s: float = Field(30.0, gt=0)

    _password_from_file: SecretStr | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _cross_fields(self) -> Self:
        if self.password is not None and self.password_file is not None:
            raise _field_error("password_file", "give either password or password_file, not both")
        if self.reconnect_min_s > self.reconnect_max_s:
            raise _field_error(
                "reconnect_min_s",
                f"must not exceed reconnect_max_s "
                f"(got {self.reconnect_min_s:g} > {self.reconnect_max_s:g})",
            )
        if (self.cert_file is None) != (self.key_file is None):
            missing = "key_file" if self.key_file is None else "cert_file"
            other = "cert_file" if missing == "key_file" else "key_file"
            raise _field_error(missing, f"required when {other} is given")
        if not self.tls:
            for name in ("ca_file", "cert_file", "key_file"):
                if getattr(self, name) is not None:
                    raise _field_error(name, "given but tls is false (set tls = true)")
        return self

    def load_secrets(self) -> None:
        """Read ``password_file`` now (``load_settings`` does; errors name no field)."""
        if self.password_file is not None:
            self._password_from_file = _read_secret(self.password_file)

    def resolved_password(self) -> str | None:
        """The password, from ``password`` or the content of ``password_file``."""
        return _secret_value(self.password, self._password_from_file, self.password_file)


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
            raise _field_error(
                "qos",
                "2 is not supported with the journal (journal = true): use qos = 1 (a "
                "record delivered twice is counted once) or set journal = false",
            )
        if self.journal_max_bytes < 2 * self.journal_segment_bytes:
            raise _field_error(
                "journal_max_bytes",
                f"must be at least twice journal_segment_bytes "
                f"(got {self.journal_max_bytes} < 2 * {self.journal_segment_bytes})",
            )
        return self


def _check_url(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("http", "https") or not rest:
        raise PydanticCustomError("url", "must start with http:// or https:// and a host")
    return url.rstrip("/")


HttpUrl = Annotated[str, AfterValidator(_check_url)]


class _TokenSettings(_Model):
    """An API token given inline or, better, in a file (shared by HTTP clients)."""

    token: SecretStr | None = None
    token_file: OptionalPath = None

    _token_from_file: SecretStr | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _one_token(self) -> Self:
        if self.token is not None and self.token_file is not None:
            raise _field_error("token_file", "give either token or token_file, not both")
        return self

    def load_secrets(self) -> None:
        """Read ``token_file`` now (``load_settings`` does; errors name no field)."""
        if self.token_file is not None:
            self._token_from_file = _read_secret(self.token_file)

    def resolved_token(self) -> str | None:
        """The API token, from ``token`` or the content of ``token_file``."""
        return _secret_value(self.token, self._token_from_file, self.token_file)


class HttpSourceSettings(_TokenSettings):
    name: str = Field(min_length=1)
    adapter: Literal["generic", "emnify", "1nce", "cisco"]
    base_url: HttpUrl
    poll_interval_s: float = Field(60.0, gt=0)
    page_size: int = Field(500, ge=1, le=10_000)
    max_concurrency: int = Field(4, ge=1, le=64)
    rate_limit_per_s: float = Field(10.0, gt=0)
    timeout_s: float = Field(30.0, gt=0)
    cursor_file: OptionalPath = None
    iccids: list[str] = Field(default_factory=list)  # per-SIM endpoints (1NCE, Cisco)


class SourcesSettings(_Model):
    # With no source configured at all, the daemon runs the built-in simulator.
    simulator: list[SimulatorSourceSettings] = Field(default_factory=list)
    file: list[FileSourceSettings] = Field(default_factory=list)
    mqtt: list[MqttSourceSettings] = Field(default_factory=list)
    http: list[HttpSourceSettings] = Field(default_factory=list)

    def any(self) -> bool:
        return bool(self.simulator or self.file or self.mqtt or self.http)

    def items(self) -> Iterator[tuple[str, int, BaseModel]]:
        """Every configured source as (kind, index within its kind, settings)."""
        for kind in ("simulator", "file", "mqtt", "http"):
            for i, source in enumerate(getattr(self, kind)):
                yield kind, i, source

    @model_validator(mode="after")
    def _names_unique(self) -> SourcesSettings:
        first: dict[str, str] = {}
        for kind, i, source in self.items():
            name: str = getattr(source, "name")  # noqa: B009 - every source kind has a name
            where = f"{kind}[{i}]"
            if name in first:
                raise _field_error(
                    f"{where}.name", f"duplicate source name {name!r} (also sources.{first[name]})"
                )
            first[name] = where
        return self


class AlertmanagerSinkSettings(_Model):
    """Incidents sent to Alertmanager's v2 API (every replica gets every alert)."""

    urls: list[HttpUrl] = Field(min_length=1)  # each replica's base URL
    resend_interval_s: float = Field(60.0, gt=0)  # firing alerts are re-sent this often
    # each send says the alert ends this far ahead unless re-sent (must exceed the interval)
    ends_at_after_s: float = Field(300.0, gt=0)
    timeout_s: float = Field(10.0, gt=0)
    retry_min_s: float = Field(1.0, gt=0)
    retry_max_s: float = Field(60.0, gt=0)
    # simwatch's base URL as people reach it (generatorURL); default: from http.host/port
    external_url: HttpUrl | None = None
    grafana_url: HttpUrl = "http://127.0.0.1:3000"  # dashboard links in alerts
    runbook_url: HttpUrl = (
        "https://github.com/simwatch/simwatch/blob/main/docs/operations.md#runbook"
    )
    labels: dict[str, str] = Field(default_factory=dict)  # static labels, e.g. env
    tickets: bool = True  # also send severity=ticket alerts for single tagged SIMs

    @model_validator(mode="after")
    def _cross_fields(self) -> Self:
        if self.ends_at_after_s <= self.resend_interval_s:
            raise _field_error(
                "ends_at_after_s",
                f"must exceed resend_interval_s, or alerts flap between re-sends "
                f"(got {self.ends_at_after_s:g} <= {self.resend_interval_s:g})",
            )
        if self.retry_min_s > self.retry_max_s:
            raise _field_error("retry_min_s", "must not exceed retry_max_s")
        return self


class InfluxSinkSettings(_TokenSettings):
    """Per-SIM and per-group history written with the InfluxDB v2 write API."""

    url: HttpUrl
    org: str = "simwatch"
    bucket: str = "simwatch"
    batch_size: int = Field(5000, ge=1, le=100_000)  # points per write request
    flush_interval_s: float = Field(5.0, gt=0)
    max_buffer_points: int = Field(500_000, ge=1000)  # beyond this, points are dropped
    timeout_s: float = Field(10.0, gt=0)
    retry_min_s: float = Field(1.0, gt=0)
    retry_max_s: float = Field(60.0, gt=0)
    sim_points: bool = True  # per-SIM usage and state-change points (ICCID as a tag)

    @model_validator(mode="after")
    def _cross_fields(self) -> Self:
        if self.retry_min_s > self.retry_max_s:
            raise _field_error("retry_min_s", "must not exceed retry_max_s")
        return self


class MqttSinkSettings(MqttConnectionSettings):
    """Incident and SIM state-change events published as JSON."""

    client_id: str = "simwatch-events"
    topic_prefix: str = Field("simwatch", min_length=1)
    qos: Literal[0, 1, 2] = 1
    sim_changes: bool = True  # publish per-SIM state changes too
    # retained per-SIM state topics: a last-known state for new subscribers, but one
    # retained message per SIM stays on the broker
    sim_changes_retain: bool = False
    # per-SIM messages per cycle at most (the first live cycle can carry the whole fleet)
    sim_changes_max_per_cycle: int = Field(1000, ge=1, le=1_000_000)
    max_buffer: int = Field(100_000, ge=100)  # messages waiting; beyond this, dropped

    @field_validator("topic_prefix")
    @classmethod
    def _topic_valid(cls, prefix: str) -> str:
        if any(c in prefix for c in "+#\0") or prefix.startswith("/") or prefix.endswith("/"):
            raise PydanticCustomError(
                "topic", "must not contain + or # or NUL, nor start or end with /"
            )
        return prefix


class SinksSettings(_Model):
    alertmanager: AlertmanagerSinkSettings | None = None
    influxdb: InfluxSinkSettings | None = None
    mqtt: MqttSinkSettings | None = None


class MetricsSettings(_Model):
    top_n: int = Field(200, ge=1, le=10_000)  # values per dimension; the rest is "_other"
    # opt-in per-SIM series (a label per SIM!) for at most sim_series_max tagged SIMs
    sim_series: bool = False
    sim_series_max: int = Field(100, ge=1, le=10_000)


class CheckpointSettings(_Model):
    """Checkpoints of the whole state in ``state_dir`` (docs/persistence.md)."""

    enabled: bool = True
    # seconds between two checkpoints (and one more at shutdown): at most this much state
    # is lost on a crash (re-read from file/HTTP sources and the MQTT journal)
    interval_s: float = Field(60.0, ge=1, le=86400)


class Settings(_Model):
    engine: EngineSettings = Field(default_factory=EngineSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    sources: SourcesSettings = Field(default_factory=SourcesSettings)
    sinks: SinksSettings = Field(default_factory=SinksSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    checkpoint: CheckpointSettings = Field(default_factory=CheckpointSettings)
    state_dir: Path = Path("var")
    # the asyncio event loop implementation: uvloop serves the API ~25 % faster
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"


# --- error messages ---------------------------------------------------------------------


def _dotted(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def _shown(value: object) -> str | None:
    """A short repr of a bad input, or None when it is structured (may hold secrets)."""
    scalars = (str, int, float, bool, type(None))
    if isinstance(value, scalars) or (
        isinstance(value, list) and all(isinstance(v, scalars) for v in value)
    ):
        text = repr(value)
        return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."
    return None


def _env_origin(loc: tuple[int | str, ...], env_locs: Mapping[tuple[int | str, ...], str]) -> str:
    best: tuple[int | str, ...] | None = None
    for env_loc in env_locs:
        n = min(len(loc), len(env_loc))
        if loc[:n] == env_loc[:n] and (best is None or len(env_loc) > len(best)):
            best = env_loc
    return "" if best is None else f" (from {env_locs[best]})"


def _problems(error: ValidationError, env_locs: Mapping[tuple[int | str, ...], str]) -> list[str]:
    problems = []
    for err in error.errors(include_url=False):
        loc = tuple(err["loc"])
        ctx = err.get("ctx") or {}
        path = _dotted(loc)
        if _FIELD_KEY in ctx:
            field = str(ctx[_FIELD_KEY])
            path = f"{path}.{field}" if path else field
            parts = field.replace("[", ".").replace("]", "").split(".")
            loc = (*loc, *(int(p) if p.isdigit() else p for p in parts))
        msg = _CLASS_REPR.sub("", err["msg"].removeprefix("Value error, "))
        if err["type"] == "extra_forbidden":
            msg = "unknown option"
            hint = _suggest(loc)
            if hint:
                msg += f" (did you mean {hint!r}?)"
        elif err["type"] not in ("missing", "simwatch_field"):
            secret = any(part in _SECRET_FIELDS for part in loc if isinstance(part, str))
            shown = None if secret else _shown(err["input"])
            if shown is not None:
                msg += f" (got {shown})"
        problems.append(f"{path or '(top level)'}{_env_origin(loc, env_locs)}: {msg}")
    return problems


def _model_at(loc: Sequence[int | str]) -> type[BaseModel] | None:
    """The model class holding the field at ``loc`` (``loc`` includes the field)."""
    ann: Any = Settings
    for part in loc[:-1]:
        ann = _strip_optional(ann)[0]
        if get_origin(ann) is list and isinstance(part, int):
            ann = get_args(ann)[0]
        elif _is_model(ann) and isinstance(part, str) and part in ann.model_fields:
            ann = ann.model_fields[part].annotation
        else:
            return None
    ann = _strip_optional(ann)[0]
    return ann if _is_model(ann) else None


def _suggest(loc: Sequence[int | str]) -> str | None:
    model = _model_at(loc)
    if model is None or not loc or not isinstance(loc[-1], str):
        return None
    close = difflib.get_close_matches(loc[-1], list(model.model_fields), n=1, cutoff=0.75)
    return close[0] if close else None


# --- environment overrides --------------------------------------------------------------


def _is_model(ann: object) -> bool:
    return isinstance(ann, type) and issubclass(ann, BaseModel)


def _strip_optional(ann: object) -> tuple[object, bool]:
    """(annotation without ``| None``, whether None was allowed)."""
    if get_origin(ann) in (Union, types.UnionType):
        args = [a for a in get_args(ann) if a is not type(None)]
        if len(args) == 1:
            return args[0], len(args) < len(get_args(ann))
    return ann, False


def _env_target(path: Sequence[int | str]) -> tuple[bool, bool] | None:
    """(value is JSON, field is optional) for the option at ``path``; None if unknown."""
    ann: Any = Settings
    for part in path:
        ann = _strip_optional(ann)[0]
        if get_origin(ann) is list and isinstance(part, int):
            ann = get_args(ann)[0]
        elif _is_model(ann) and isinstance(part, str) and part in ann.model_fields:
            ann = ann.model_fields[part].annotation
        else:
            return None
    bare, optional = _strip_optional(ann)
    return (get_origin(bare) in (list, dict) or _is_model(bare)), optional


def _env_path(name: str) -> tuple[int | str, ...]:
    parts = name[len(ENV_PREFIX) :].lower().split(ENV_NESTING)
    return tuple(int(p) if p.isascii() and p.isdigit() else p for p in parts)


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        old = out.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            out[key] = _deep_merge(old, value)
        else:
            out[key] = value
    return out


def _apply_env(
    data: dict[str, Any], environ: Mapping[str, str]
) -> dict[tuple[int | str, ...], str]:
    """Lay ``SIMWATCH_*`` variables over ``data`` in place; returns where each came from."""
    env_locs: dict[tuple[int | str, ...], str] = {}
    names = [n for n in environ if n.upper().startswith(ENV_PREFIX)]
    # whole sections and lists first, so a deeper variable refines them
    for name in sorted(names, key=lambda n: (n.count(ENV_NESTING), n)):
        path = _env_path(name)
        if any(p == "" for p in path):
            raise ConfigError([f"{name}: bad variable name (empty part between '__')"])
        raw = environ[name]
        target = _env_target(path)
        value: Any = raw
        if target is not None:
            is_json, optional = target
            if is_json:
                try:
                    value = json.loads(raw)
                except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
                    where = _dotted(path)
                    raise ConfigError([f"{where} (from {name}): not valid JSON: {exc}"]) from None
            elif optional and raw == "":
                value = None
        node: Any = data
        for depth, part in enumerate(path[:-1]):
            if isinstance(part, int):
                if not isinstance(node, list) or part >= len(node):
                    where = _dotted(path[: depth + 1])
                    raise ConfigError(
                        [
                            f"{where} (from {name}): no such item to override; set the whole "
                            f"list as JSON in {ENV_PREFIX}"
                            + ENV_NESTING.join(str(p).upper() for p in path[:depth])
                        ]
                    )
                node = node[part]
            else:
                if not isinstance(node, dict):
                    where = _dotted(path[:depth])
                    raise ConfigError([f"{where} (from {name}): a list, not a section"])
                if not isinstance(node.get(part), dict | list):
                    node[part] = {}
                node = node[part]
        last = path[-1]
        if not isinstance(node, dict):
            where = _dotted(path[:-1])
            raise ConfigError([f"{where} (from {name}): not a section, so it has no {last!r}"])
        if isinstance(last, int):
            where = _dotted(path)
            raise ConfigError([f"{where} (from {name}): set list items as JSON, not by index"])
        if isinstance(node.get(last), dict) and isinstance(value, dict):
            node[last] = _deep_merge(node[last], value)
        else:
            node[last] = value
        env_locs[path] = name
    return env_locs


# --- loading ----------------------------------------------------------------------------


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError([f"cannot read config file {path}: {reason}"]) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: invalid TOML: {exc}"]) from None
    except (ValueError, RecursionError) as exc:  # a 5000-digit number, arrays nested deep
        raise ConfigError([f"{path}: invalid TOML: {type(exc).__name__}: {exc}"[:300]]) from None


def _why(exc: Exception) -> str:
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)


_HasSecrets = MqttConnectionSettings | _TokenSettings


def _check_files(settings: Settings) -> list[str]:
    """File-system checks and secret files, done at load (not in the pure validators)."""
    problems: list[str] = []

    def must_exist(where: str, path: Path | None) -> None:
        if path is None:
            return
        try:
            found = path.is_file()
        except OSError as exc:  # e.g. a name too long: is_file only swallows "not found"
            problems.append(f"{where}: cannot check {str(path)[:80]!r}: {_why(exc)}")
            return
        if not found:
            problems.append(f"{where}: no such file: {path}")

    must_exist("engine.inventory_file", settings.engine.inventory_file)
    must_exist("engine.operators_file", settings.engine.operators_file)
    http = settings.http
    must_exist("http.tokens_file", http.tokens_file)
    if http.auth_required() and http.tokens_file is not None and http.tokens_file.is_file():
        try:
            if not read_tokens(http.tokens_file):
                problems.append(
                    f"http.tokens_file: no token in {http.tokens_file} (only blank lines or "
                    "comments) while auth is on"
                )
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"http.tokens_file: cannot read {http.tokens_file}: {_why(exc)}")
    for i, mqtt in enumerate(settings.sources.mqtt):
        for name in ("ca_file", "cert_file", "key_file"):
            must_exist(f"sources.mqtt[{i}].{name}", getattr(mqtt, name))
    sinks = settings.sinks
    if sinks.mqtt is not None:
        for name in ("ca_file", "cert_file", "key_file"):
            must_exist(f"sinks.mqtt.{name}", getattr(sinks.mqtt, name))
    secret_sources: list[tuple[str, _HasSecrets, Path | None]] = [
        (f"sources.mqtt[{i}].password_file", s, s.password_file)
        for i, s in enumerate(settings.sources.mqtt)
    ] + [
        (f"sources.http[{i}].token_file", s, s.token_file)
        for i, s in enumerate(settings.sources.http)
    ]
    if sinks.mqtt is not None:
        secret_sources.append(("sinks.mqtt.password_file", sinks.mqtt, sinks.mqtt.password_file))
    if sinks.influxdb is not None:
        secret_sources.append(
            ("sinks.influxdb.token_file", sinks.influxdb, sinks.influxdb.token_file)
        )
    for where, source, path in secret_sources:
        try:
            source.load_secrets()
        except (OSError, ValueError) as exc:
            detail = _why(exc) if isinstance(exc, OSError) else "file is empty"
            problems.append(f"{where}: cannot read {path}: {detail}")
    return problems


def load_settings(path: Path | None, environ: Mapping[str, str] | None = None) -> Settings:
    """The settings from the TOML file at ``path`` (None: built-in defaults), then env.

    ``environ`` defaults to ``os.environ``; only ``SIMWATCH_*`` variables are used.
    Raises ``ConfigError`` for every problem (all fields' problems, in one message).
    """
    data = {} if path is None else _read_toml(path)
    env_locs = _apply_env(data, os.environ if environ is None else environ)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_problems(exc, env_locs)) from None
    problems = _check_files(settings)
    if problems:
        raise ConfigError(problems)
    return settings


# --- simwatch check-config --------------------------------------------------------------


def _describe_source(kind: str, source: BaseModel) -> str:
    if isinstance(source, SimulatorSourceSettings):
        detail = f"{source.sims} simulated SIMs, seed {source.seed}"
    elif isinstance(source, FileSourceSettings):
        detail = str(source.path)
    elif isinstance(source, MqttSourceSettings):
        scheme = "mqtts" if source.tls else "mqtt"
        detail = f"{scheme}://{source.host}:{source.port}, topics {', '.join(source.topics)}"
    elif isinstance(source, HttpSourceSettings):
        detail = f"{source.adapter} adapter, {source.base_url}"
    else:  # pragma: no cover - every kind is listed above
        detail = ""
    return f"  {kind} {getattr(source, 'name', '?')!r}: {detail}"


def summary(settings: Settings) -> list[str]:
    """Short human lines: sources by kind and name, the HTTP listen address and auth."""
    lines = ["sources:"]
    if settings.sources.any():
        lines += [_describe_source(kind, s) for kind, _i, s in settings.sources.items()]
    else:
        sim = SimulatorSourceSettings()
        lines.append(_describe_source("simulator", sim) + " (built-in: no source configured)")
    http = settings.http
    auth = "off"
    if http.auth_required():
        where = http.tokens_file or f"{api_token_file(settings)}, generated when missing"
        auth = f"on (tokens: {where})"
    lines.append(f"http: listening on {http.host}:{http.port}, auth {auth}")
    return lines


def check_config_main(argv: Sequence[str]) -> int:
    """``simwatch check-config [--config.file PATH]``: 0 when the config loads, else 1."""
    parser = argparse.ArgumentParser(
        prog="simwatch check-config",
        description="Load the configuration (file, then SIMWATCH_ environment) and report.",
    )
    parser.add_argument(
        "--config.file",
        dest="config_file",
        type=Path,
        default=None,
        metavar="PATH",
        help="TOML configuration file (default: built-in defaults)",
    )
    args = parser.parse_args(list(argv))
    config_file: Path | None = args.config_file
    try:
        settings = load_settings(config_file)
    except ConfigError as exc:
        print(f"simwatch: bad config: {exc}", file=sys.stderr)
        return 1
    print(f"config OK: {config_file if config_file is not None else 'built-in defaults'}")
    for line in summary(settings):
        print(line)
    return 0
