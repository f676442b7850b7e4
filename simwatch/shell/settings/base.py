"""What every settings module shares: the error, the base model, ``""`` as "not set",
URL and loopback checks, and finding a field's annotation by its path in the tree."""

import ipaddress
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Union, get_args, get_origin

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, SecretStr
from pydantic_core import PydanticCustomError

# the ``ctx`` key a cross-field error uses to name the field inside the failing model
FIELD_KEY = "simwatch_field"

Loc = tuple[int | str, ...]


class ConfigError(Exception):
    """A configuration problem; ``str()`` is one line naming each bad field by dotted path."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems: tuple[str, ...] = tuple(problems)
        super().__init__("; ".join(self.problems))


def _empty_to_none(value: object) -> object:
    """``""`` means "not set" for optional options: TOML has no null, env values are text."""
    return None if value == "" else value


# Optional options; "" (in TOML or env) means not set.
OptionalPath = Annotated[Path | None, BeforeValidator(_empty_to_none)]
OptionalStr = Annotated[str | None, BeforeValidator(_empty_to_none)]
OptionalSecret = Annotated[SecretStr | None, BeforeValidator(_empty_to_none)]


def _check_url(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("http", "https") or not rest:
        raise PydanticCustomError("url", "must start with http:// or https:// and a host")
    return url.rstrip("/")


HttpUrl = Annotated[str, AfterValidator(_check_url)]
OptionalUrl = Annotated[HttpUrl | None, BeforeValidator(_empty_to_none)]


def field_error(field: str, message: str) -> PydanticCustomError:
    """A validation error about ``field`` of the model being validated."""
    return PydanticCustomError("simwatch_field", message, {FIELD_KEY: field})


class Model(BaseModel):
    """A settings section: unknown keys are errors, values never change once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (``127.0.0.0/8``, ``::1``)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# --- the model tree ---------------------------------------------------------------------


def model_class(ann: object) -> type[BaseModel] | None:
    """``ann`` when it is a model class, else None."""
    return ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None


def bare(ann: object) -> object:
    """The annotation without ``| None`` and without ``Annotated`` metadata."""
    while True:
        if get_origin(ann) is Annotated:
            ann = get_args(ann)[0]
        elif get_origin(ann) in (Union, types.UnionType):
            args = [a for a in get_args(ann) if a is not type(None)]
            if len(args) != 1:
                return ann
            ann = args[0]
        else:
            return ann


def is_structured(ann: object) -> bool:
    """Whether a value of this annotation is a section or a list or table (JSON in env)."""
    ann = bare(ann)
    return model_class(ann) is not None or get_origin(ann) in (list, dict)


def annotation_at(root: type[BaseModel], loc: Sequence[int | str]) -> object | None:
    """The annotation of the option at ``loc`` (list items by index), None off the tree."""
    ann: object = root
    for part in loc:
        node = bare(ann)
        model = model_class(node)
        if get_origin(node) is list and isinstance(part, int):
            ann = get_args(node)[0]
        elif model is not None and isinstance(part, str) and part in model.model_fields:
            ann = model.model_fields[part].annotation
        else:
            return None
    return ann


def dotted(loc: Sequence[int | str]) -> str:
    """``("sources", "mqtt", 0, "port")`` as ``sources.mqtt[0].port``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out
