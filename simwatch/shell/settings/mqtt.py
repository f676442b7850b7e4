"""How to reach an MQTT broker: shared by the MQTT source and the MQTT sink."""

from typing import Self

from pydantic import Field, model_validator

from simwatch.shell.settings.base import (
    OptionalPath,
    OptionalStr,
    field_error,
)
from simwatch.shell.settings.secrets import PasswordSettings


class MqttConnectionSettings(PasswordSettings):
    """How to reach an MQTT broker: shared by the MQTT source and the MQTT sink."""

    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    client_id: str = "simwatch"
    username: OptionalStr = None
    tls: bool = False
    ca_file: OptionalPath = None
    cert_file: OptionalPath = None
    key_file: OptionalPath = None
    reconnect_min_s: float = Field(0.5, gt=0)
    reconnect_max_s: float = Field(30.0, gt=0)

    @model_validator(mode="after")
    def _cross_fields(self) -> Self:
        if self.reconnect_min_s > self.reconnect_max_s:
            raise field_error(
                "reconnect_min_s",
                f"must not exceed reconnect_max_s "
                f"(got {self.reconnect_min_s:g} > {self.reconnect_max_s:g})",
            )
        if (self.cert_file is None) != (self.key_file is None):
            missing = "key_file" if self.key_file is None else "cert_file"
            other = "cert_file" if missing == "key_file" else "key_file"
            raise field_error(missing, f"required when {other} is given")
        if not self.tls:
            for name in ("ca_file", "cert_file", "key_file"):
                if getattr(self, name) is not None:
                    raise field_error(name, "given but tls is false (set tls = true)")
        return self
