"""The daemon's own sections: ``[engine]``, ``[log]``, ``[metrics]``, ``[checkpoint]``."""

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from simwatch.core.baseline import BaselineParams
from simwatch.core.engine import EngineConfig
from simwatch.core.incidents import IncidentParams
from simwatch.core.localize import LocalizeParams
from simwatch.shell.settings.base import Model, OptionalPath
from simwatch.shell.settings.expectations import ExpectationsSettings


class EngineSettings(Model):
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
    open_on_reported: int = Field(5, ge=0)
    close_after: int = Field(5, ge=1)
    close_after_recovering: int = Field(2, ge=1)
    hold_while_failing: float = Field(0.8, ge=0, le=1)
    baseline_memory_days: float = Field(3.0, gt=0)
    # per-plan and per-customer expectations: [engine.expectations.plans."<plan>"] ...
    expectations: ExpectationsSettings = Field(default_factory=ExpectationsSettings)

    @field_validator("dims")
    @classmethod
    def _dims_valid(cls, dims: list[str]) -> list[str]:
        # Any name other than the record and inventory attributes is an inventory extra
        # column: allowed.
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
            incidents=IncidentParams(
                open_after=self.open_after,
                open_on_reported=self.open_on_reported,
                close_after=self.close_after,
                close_after_recovering=self.close_after_recovering,
                hold_while_failing=self.hold_while_failing,
            ),
            baseline=BaselineParams(memory_days=self.baseline_memory_days),
            expectations=self.expectations.tables(),
        )


class LogSettings(Model):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["text", "json"] = "text"


class MetricsSettings(Model):
    top_n: int = Field(200, ge=1, le=10_000)  # values per dimension; the rest is "_other"
    # opt-in per-SIM series (a label per SIM!) for at most sim_series_max tagged SIMs
    sim_series: bool = False
    sim_series_max: int = Field(100, ge=1, le=10_000)


class CheckpointSettings(Model):
    """Checkpoints of the whole state in ``state_dir`` (docs/persistence.md)."""

    enabled: bool = True
    # seconds between two checkpoints (and one more at shutdown): at most this much state
    # is lost on a crash (re-read from file/HTTP sources and the MQTT journal)
    interval_s: float = Field(60.0, ge=1, le=86400)
