"""``load_settings``: the TOML file and the ``SIMWATCH_`` environment through
pydantic-settings, then the file-system checks; every problem a ``ConfigError`` whose
message names the field by its dotted path (``sources.http[0].token_file: ...``) and, when
the value came from the environment, the variable."""

import difflib
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_settings import SettingsError, TomlConfigSettingsSource
from pydantic_settings.sources import ConfigFileSourceType, PydanticBaseSettingsSource

from simwatch.shell.settings.base import (
    FIELD_KEY,
    ConfigError,
    Loc,
    annotation_at,
    bare,
    dotted,
    model_class,
)
from simwatch.shell.settings.env import EnvSource, env_origins
from simwatch.shell.settings.http import read_tokens
from simwatch.shell.settings.mqtt import MqttConnectionSettings
from simwatch.shell.settings.root import ENV_NESTING, ENV_PREFIX, Settings
from simwatch.shell.settings.secrets import TokenSettings

_SECRET_FIELDS = frozenset({"password", "token"})
_MAX_SHOWN = 60
_CLASS_REPR = re.compile(r" for <class '[^']*'>")
_HasSecrets = MqttConnectionSettings | TokenSettings


# --- the file ---------------------------------------------------------------------------


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


class _TomlSource(TomlConfigSettingsSource):
    """pydantic-settings' TOML source for the one file ``load_settings`` is given.

    Adapter: reading the file is ``_read_toml``, so a missing or unreadable file and bad
    TOML are ``ConfigError``s naming the file (the stock source skips a missing file
    silently and lets the parser's errors through).
    """

    def _read_files(
        self, files: ConfigFileSourceType | None, deep_merge: bool = False
    ) -> dict[str, Any]:
        del deep_merge  # one file: nothing to merge
        if not isinstance(files, str | Path):  # pragma: no cover - load_settings gives a Path
            raise TypeError(f"one TOML file expected, not {files!r}")
        return _read_toml(Path(files))


# --- error messages ---------------------------------------------------------------------


def _shown(value: object) -> str | None:
    """A short repr of a bad input, or None when it is structured (may hold secrets)."""
    scalars = (str, int, float, bool, type(None))
    if isinstance(value, scalars) or (
        isinstance(value, list) and all(isinstance(v, scalars) for v in value)
    ):
        text = repr(value)
        return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."
    return None


def _env_origin(loc: Loc, origins: Mapping[Loc, str]) -> str:
    """`` (from SIMWATCH_...)`` when the option at ``loc`` (or its section, or a part of
    it) was set by a variable: the most specific one."""
    best: Loc | None = None
    for env_loc in origins:
        n = min(len(loc), len(env_loc))
        if loc[:n] == env_loc[:n] and (best is None or len(env_loc) > len(best)):
            best = env_loc
    return "" if best is None else f" (from {origins[best]})"


def _suggest(loc: Sequence[int | str]) -> str | None:
    """The known option closest to the unknown one at ``loc``, if one is close."""
    if not loc or not isinstance(loc[-1], str):
        return None
    model = model_class(bare(annotation_at(Settings, loc[:-1])))
    if model is None:
        return None
    close = difflib.get_close_matches(loc[-1], list(model.model_fields), n=1, cutoff=0.75)
    return close[0] if close else None


def _problems(error: ValidationError, origins: Mapping[Loc, str]) -> list[str]:
    problems = []
    for err in error.errors(include_url=False):
        loc = tuple(err["loc"])
        ctx = err.get("ctx") or {}
        path = dotted(loc)
        if FIELD_KEY in ctx:  # a cross-field error naming the field inside the model
            field = str(ctx[FIELD_KEY])
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
        problems.append(f"{path or '(top level)'}{_env_origin(loc, origins)}: {msg}")
    return problems


# --- the file system --------------------------------------------------------------------


def _why(exc: Exception) -> str:
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)


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


# --- loading ----------------------------------------------------------------------------


def load_settings(path: Path | None, environ: Mapping[str, str] | None = None) -> Settings:
    """The settings from the TOML file at ``path`` (None: built-in defaults), then env.

    ``environ`` defaults to ``os.environ``; only ``SIMWATCH_*`` variables are used, and
    they win over the file. Raises ``ConfigError`` for every problem (all fields'
    problems, in one message).
    """
    environ = os.environ if environ is None else environ
    toml = None if path is None else _TomlSource(Settings, toml_file=path)
    env = EnvSource(Settings, environ, {} if toml is None else toml.toml_data)
    # highest priority first: the environment over the file
    sources: tuple[PydanticBaseSettingsSource, ...] = (env,) if toml is None else (env, toml)
    try:
        settings = Settings(_build_sources=(sources, {}))
    except ValidationError as exc:
        raise ConfigError(_problems(exc, env_origins(environ, ENV_PREFIX, ENV_NESTING))) from None
    except SettingsError as exc:  # pragma: no cover - EnvSource checks what could raise it
        raise ConfigError([f"(top level): {exc}"]) from None
    problems = _check_files(settings)
    if problems:
        raise ConfigError(problems)
    return settings
