"""Secrets: given inline (``SecretStr``, never printed) or, better, in a file read at load."""

from pathlib import Path
from typing import Annotated, ClassVar, Self

from pydantic import BeforeValidator, ConfigDict, PrivateAttr, SecretStr, model_validator
from pydantic_core import PydanticCustomError

from simwatch.shell.settings.base import (
    FIELD_KEY,
    Model,
    OptionalPath,
    OptionalSecret,
    field_error,
)


def read_secret(path: Path) -> SecretStr:
    """The stripped content of a secret file; ``OSError``/``ValueError`` when unusable."""
    text = path.read_text(encoding="utf-8").strip()
    if not text:
        raise ValueError(f"{path} is empty")
    return SecretStr(text)


def secret_value(
    value: SecretStr | None, from_file: SecretStr | None, path: Path | None
) -> str | None:
    """A secret given inline, else the content of its file (read by ``load_secrets``,
    or now when the settings were built directly)."""
    if value is not None:
        return value.get_secret_value()
    if path is None:
        return None
    return (from_file or read_secret(path)).get_secret_value()


class PasswordSettings(Model):
    """A password given inline or, better, in a file (MQTT brokers, webhook Basic auth)."""

    password: OptionalSecret = None
    password_file: OptionalPath = None

    _password_from_file: SecretStr | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _one_password(self) -> Self:
        if self.password is not None and self.password_file is not None:
            raise field_error("password_file", "give either password or password_file, not both")
        return self

    def load_secrets(self) -> None:
        """Read ``password_file`` now (``load_settings`` does; errors name no field)."""
        if self.password_file is not None:
            self._password_from_file = read_secret(self.password_file)

    def resolved_password(self) -> str | None:
        """The password, from ``password`` or the content of ``password_file``."""
        return secret_value(self.password, self._password_from_file, self.password_file)


class TokenSettings(Model):
    """An API token given inline or, better, in a file (shared by HTTP clients)."""

    token: OptionalSecret = None
    token_file: OptionalPath = None

    _token_from_file: SecretStr | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _one_token(self) -> Self:
        if self.token is not None and self.token_file is not None:
            raise field_error("token_file", "give either token or token_file, not both")
        return self

    def load_secrets(self) -> None:
        """Read ``token_file`` now (``load_settings`` does; errors name no field)."""
        if self.token_file is not None:
            self._token_from_file = read_secret(self.token_file)

    def resolved_token(self) -> str | None:
        """The API token, from ``token`` or the content of ``token_file``."""
        return secret_value(self.token, self._token_from_file, self.token_file)


def _secret_text(value: object) -> object:
    """``""`` is "not set"; anything but text is refused without showing the value (the
    ``simwatch_field`` error type is the one ``load_settings`` never prints the input of)."""
    if value is None or value == "" or isinstance(value, SecretStr | str):
        return value or None
    raise PydanticCustomError(FIELD_KEY, "Input should be a valid string")


# An optional secret whose bad value is never echoed, whatever the option's name.
SecretText = Annotated[SecretStr | None, BeforeValidator(_secret_text)]


class SecretFiles(Model):
    """A section whose secrets are each given inline (``<name>``) or in a file
    (``<name>_file``), for the names in ``SECRETS`` (``(name, required)``).

    The files are read when the section is validated, so a missing, unreadable or empty
    file is an error naming its ``*_file`` option; ``secret(name)`` gives the value.
    Inputs are hidden from pydantic's own error text too.
    """

    model_config = ConfigDict(hide_input_in_errors=True)
    SECRETS: ClassVar[tuple[tuple[str, bool], ...]] = ()

    _from_files: dict[str, SecretStr] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _read_secret_files(self) -> Self:
        for name, required in self.SECRETS:
            value: SecretStr | None = getattr(self, name)
            path: Path | None = getattr(self, f"{name}_file")
            if value is not None and path is not None:
                raise field_error(f"{name}_file", f"give either {name} or {name}_file, not both")
            if path is not None:
                try:
                    self._from_files[name] = read_secret(path)
                except OSError as exc:
                    why = exc.strerror or type(exc).__name__
                    raise field_error(f"{name}_file", f"cannot read {path}: {why}") from None
                except ValueError as exc:  # empty, or not UTF-8 text
                    why = "file is empty" if not isinstance(exc, UnicodeError) else "not text"
                    raise field_error(f"{name}_file", f"cannot read {path}: {why}") from None
            elif value is None and required:
                raise field_error(name, f"required (give {name}_file, or {name})")
        return self

    def secret(self, name: str) -> str | None:
        """The secret ``name``: inline, else the content of its file."""
        value: SecretStr | None = getattr(self, name)
        if value is None:
            value = self._from_files.get(name)
        return None if value is None else value.get_secret_value()
