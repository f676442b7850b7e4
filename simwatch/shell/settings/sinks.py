"""``[sinks.KIND]``: where incidents and history go (Alertmanager, InfluxDB, MQTT)."""

from typing import Literal, Self

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from simwatch.shell.settings.base import HttpUrl, Model, OptionalUrl, field_error
from simwatch.shell.settings.mqtt import MqttConnectionSettings
from simwatch.shell.settings.secrets import TokenSettings


class AlertmanagerSinkSettings(Model):
    """Incidents sent to Alertmanager's v2 API (every replica gets every alert)."""

    urls: list[HttpUrl] = Field(min_length=1)  # each replica's base URL
    resend_interval_s: float = Field(60.0, gt=0)  # firing alerts are re-sent this often
    # each send says the alert ends this far ahead unless re-sent (must exceed the interval)
    ends_at_after_s: float = Field(300.0, gt=0)
    timeout_s: float = Field(10.0, gt=0)
    retry_min_s: float = Field(1.0, gt=0)
    retry_max_s: float = Field(60.0, gt=0)
    # simwatch's base URL as people reach it (generatorURL); default: from http.host/port
    external_url: OptionalUrl = None
    grafana_url: HttpUrl = "http://127.0.0.1:3000"  # dashboard links in alerts
    runbook_url: HttpUrl = (
        "https://github.com/simwatch/simwatch/blob/main/docs/operations.md#runbook"
    )
    labels: dict[str, str] = Field(default_factory=dict)  # static labels, e.g. env
    tickets: bool = True  # also send severity=ticket alerts for single tagged SIMs

    @model_validator(mode="after")
    def _cross_fields(self) -> Self:
        if self.ends_at_after_s <= self.resend_interval_s:
            raise field_error(
                "ends_at_after_s",
                f"must exceed resend_interval_s, or alerts flap between re-sends "
                f"(got {self.ends_at_after_s:g} <= {self.resend_interval_s:g})",
            )
        if self.retry_min_s > self.retry_max_s:
            raise field_error("retry_min_s", "must not exceed retry_max_s")
        return self


class InfluxSinkSettings(TokenSettings):
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
            raise field_error("retry_min_s", "must not exceed retry_max_s")
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


class SinksSettings(Model):
    alertmanager: AlertmanagerSinkSettings | None = None
    influxdb: InfluxSinkSettings | None = None
    mqtt: MqttSinkSettings | None = None
