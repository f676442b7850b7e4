"""``[http]``: the HTTP API's listen address, authentication and limits."""

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, model_validator

from simwatch.shell.settings.base import Model, OptionalPath, is_loopback


class HttpSettings(Model):
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


def read_tokens(path: Path) -> frozenset[str]:
    """The bearer tokens in a tokens file: one per line, blank lines and ``#`` comments
    skipped (blocking)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return frozenset(t.strip() for t in lines if t.strip() and not t.lstrip().startswith("#"))
