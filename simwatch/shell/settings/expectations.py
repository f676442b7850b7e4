"""``[engine.expectations]``: expectations per plan and per customer (docs/configuration.md).

A SIM's own inventory columns (``expected_interval_s``, ``active_hours``, ``timezone``)
win over its plan's table, which wins over its customer's; what is set overrides what
is learned.
"""

from typing import Self

from pydantic import Field, model_validator

from simwatch.core.inventory import MAX_INTERVAL_S
from simwatch.core.schedule import (
    Expectation,
    ExpectationTables,
    ScheduleError,
    parse_active_hours,
    parse_zone,
)
from simwatch.shell.settings.base import Model, OptionalStr, field_error


class ExpectationSettings(Model):
    # seconds between two reports; late/silent thresholds follow from it
    expected_interval_s: float | None = Field(None, ge=60, le=MAX_INTERVAL_S)
    # OpenStreetMap opening_hours subset: "Mo-Fr 07:00-19:00"; outside them nothing is late
    active_hours: OptionalStr = None
    timezone: OptionalStr = None  # of active_hours (IANA); default UTC

    @model_validator(mode="after")
    def _readable(self) -> Self:
        try:
            if self.active_hours is not None:
                parse_active_hours(self.active_hours)
        except ScheduleError as exc:
            raise field_error("active_hours", str(exc)) from None
        try:
            if self.timezone is not None:
                parse_zone(self.timezone)
        except ScheduleError as exc:
            raise field_error("timezone", str(exc)) from None
        return self

    def expectation(self) -> Expectation:
        return Expectation(self.expected_interval_s, self.active_hours, self.timezone)


class ExpectationsSettings(Model):
    plans: dict[str, ExpectationSettings] = Field(default_factory=dict)
    customers: dict[str, ExpectationSettings] = Field(default_factory=dict)

    def tables(self) -> ExpectationTables:
        return ExpectationTables(
            plans={k: v.expectation() for k, v in self.plans.items()},
            customers={k: v.expectation() for k, v in self.customers.items()},
        )
