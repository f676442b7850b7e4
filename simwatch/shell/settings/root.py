"""The root of the settings tree: a pydantic-settings ``BaseSettings``."""

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from simwatch.shell.settings.base import field_error
from simwatch.shell.settings.console import ConsoleSettings
from simwatch.shell.settings.engine import (
    CheckpointSettings,
    EngineSettings,
    LogSettings,
    MetricsSettings,
)
from simwatch.shell.settings.http import HttpSettings
from simwatch.shell.settings.maintenance import MaintenanceSettings
from simwatch.shell.settings.nats import ClusterSettings
from simwatch.shell.settings.sinks import SinksSettings
from simwatch.shell.settings.sources import SourcesSettings

ENV_PREFIX = "SIMWATCH_"
ENV_NESTING = "__"


class Settings(BaseSettings):
    """The whole configuration.

    ``load_settings`` builds it from its sources: the TOML file, then the ``SIMWATCH_``
    environment over it (``env_prefix``, ``env_nested_delimiter`` below). Built in code,
    ``Settings(...)`` is its arguments and the defaults only: nothing is read.
    """

    model_config = SettingsConfigDict(
        extra="forbid", frozen=True, env_prefix=ENV_PREFIX, env_nested_delimiter=ENV_NESTING
    )

    engine: EngineSettings = Field(default_factory=EngineSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    sources: SourcesSettings = Field(default_factory=SourcesSettings)
    sinks: SinksSettings = Field(default_factory=SinksSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    checkpoint: CheckpointSettings = Field(default_factory=CheckpointSettings)
    # [[maintenance]] windows (docs/alerts.md): incidents in their scope are marked, not paged
    maintenance: list[MaintenanceSettings] = Field(default_factory=list)
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)  # issue 13: /ui/
    state_dir: Path = Path("var")
    # the asyncio event loop implementation: uvloop serves the API ~25 % faster
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)  # settings/nats.py

    @model_validator(mode="after")
    def _nats_acks_outlive_checkpoints(self) -> Self:
        # a JetStream message is acknowledged once a checkpoint covers it: redelivered
        # before that, it would be fetched again for nothing (never applied twice)
        for i, source in enumerate(self.sources.nats):
            if self.checkpoint.enabled and source.ack_wait_s <= self.checkpoint.interval_s:
                raise field_error(
                    f"sources.nats[{i}].ack_wait_s",
                    f"{source.ack_wait_s:g} s must exceed checkpoint.interval_s "
                    f"({self.checkpoint.interval_s:g} s): acks wait for the checkpoint",
                )
        cluster = self.cluster
        if cluster.enabled:
            fed = next((s for s in self.sources.nats if s.name == cluster.source), None)
            if fed is None:
                raise field_error("cluster.source", f"no [[sources.nats]] named {cluster.source!r}")
            if fed.partitions != cluster.partitions:
                raise field_error(
                    "cluster.partitions",
                    f"{cluster.partitions} differs from the source's partitions "
                    f"({fed.partitions}): publishers and nodes must agree",
                )
        return self

    @field_validator("maintenance")
    @classmethod
    def _unique_window_ids(cls, items: list[MaintenanceSettings]) -> list[MaintenanceSettings]:
        ids = [item.id or f"cfg-{i + 1}" for i, item in enumerate(items)]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise PydanticCustomError("maintenance", f"window id {repeated[0]!r} is used twice")
        return items

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only the arguments: ``load_settings`` passes the file and environment sources."""
        del settings_cls, env_settings, dotenv_settings, file_secret_settings
        return (init_settings,)


def api_token_file(settings: Settings) -> Path:
    """Where the API token lives when auth is on and no ``http.tokens_file`` is set."""
    return settings.http.tokens_file or settings.state_dir / "api-token"
