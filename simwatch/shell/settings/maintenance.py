"""``[[maintenance]]``: maintenance windows from the config file (read-only in the API).

Each item is checked by ``simwatch.core.maintenance.window_from_json``, so a bad window
fails at start naming its field: ``maintenance[0].timezone: unknown time zone ...``.
"""

from typing import Annotated, Self

from pydantic import BeforeValidator, Field, model_validator

from simwatch.core.maintenance import MaintenanceError, Window, window_from_json
from simwatch.shell.settings.base import Model, OptionalStr, field_error


def _one_value_as_list(value: object) -> object:
    """``{customer = "acme"}`` as ``{customer = ["acme"]}``."""
    if isinstance(value, dict):
        return {k: [v] if isinstance(v, str) else v for k, v in value.items()}
    return value


class MaintenanceSettings(Model):
    # a stable id (letters, digits, '_', '.', ':', '-'); unset: cfg-<position from 1>
    id: OptionalStr = None
    name: str
    # local wall time in ``timezone``: "2026-12-06T02:00"
    start: str
    timezone: str = "UTC"
    duration_s: float = Field(gt=0)
    # RFC 5545 RRULE body: "FREQ=WEEKLY;BYDAY=SU"; unset: a one-off window
    rrule: OptionalStr = None
    # instead of rrule: a 5-field cron schedule of the starts, "0 2 * * SUN"
    cron: OptionalStr = None
    # dimension -> value or values: {partner = ["20801"], customer = "acme"}; {} = the fleet
    scope: Annotated[dict[str, list[str]], BeforeValidator(_one_value_as_list)] = Field(
        default_factory=dict
    )

    @model_validator(mode="after")
    def _valid_window(self) -> Self:
        try:
            self.window("cfg-1")
        except MaintenanceError as exc:
            raise field_error(exc.field, exc.message) from None
        return self

    def window(self, default_id: str) -> Window:
        """The core window (``MaintenanceError`` when it is not one)."""
        data: dict[str, object] = {
            "name": self.name,
            "start": self.start,
            "timezone": self.timezone,
            "duration_s": self.duration_s,
            "scope": dict(self.scope),
        }
        if self.rrule is not None:
            data["rrule"] = self.rrule
        if self.cron is not None:
            data["cron"] = self.cron
        return window_from_json(data, source="config", window_id=self.id or default_id)


def config_windows(items: list[MaintenanceSettings]) -> list[Window]:
    """The configured windows with their ids (``cfg-1``, ... where none is given)."""
    return [item.window(f"cfg-{i + 1}") for i, item in enumerate(items)]
