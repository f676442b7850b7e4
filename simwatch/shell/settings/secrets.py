"""Secrets: given inline (``SecretStr``, never printed) or, better, in a file read at load."""

from pathlib import Path
from typing import Self

from pydantic import PrivateAttr, SecretStr, model_validator

from simwatch.shell.settings.base import Model, OptionalPath, OptionalSecret, field_error


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
