"""``[[sources.KIND]]``: where records come from (simulator, files, MQTT, platform APIs)."""

from collections.abc import Iterator
from pathlib import Path
from typing import Literal, Self

from pydantic import AwareDatetime, BaseModel, Field, model_validator

from simwatch.shell.settings.base import HttpUrl, Model, OptionalPath, field_error
from simwatch.shell.settings.mqtt import MqttConnectionSettings
from simwatch.shell.settings.secrets import TokenSettings


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


class HttpSourceSettings(TokenSettings):
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


class SourcesSettings(Model):
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
