"""Failure and recovery, each logged once.

A retry loop that fails every few seconds for an hour must not write a line per
attempt: the operator wants one line when the failure starts (with its reason) and
one when it ends (with how long it lasted and how many attempts failed). A failure
whose reason changes while it lasts is logged again, once per new reason, so a
different problem is never hidden behind the first one.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable


@dataclass(slots=True)
class FailureLog:
    """One thing that can fail and recover (a source, a sink, a replica, evaluation)."""

    log: logging.Logger
    what: str  # "source mqtt-main", "alertmanager http://am:9093", "evaluation"
    clock: Callable[[], float] = field(default=time.monotonic)
    failures: int = 0  # consecutive failures since the last success
    reason: str | None = None  # the current failure's reason; None while healthy
    since: float | None = None  # clock() at the first failure of the current run

    @property
    def failing(self) -> bool:
        return self.reason is not None

    def failed(
        self,
        reason: str,
        *,
        level: int = logging.WARNING,
        exc_info: BaseException | bool = False,
        hint: str = "",
    ) -> bool:
        """Count a failure; logs it only when it starts or its reason changes.

        Returns True when this call wrote a line."""
        self.failures += 1
        if self.reason == reason:
            return False
        if self.reason is None:
            self.since = self.clock()
        self.reason = reason
        suffix = f"; {hint}" if hint else ""
        self.log.log(level, "%s: %s%s", self.what, reason, suffix, exc_info=exc_info)
        return True

    def recovered(self, *, level: int = logging.INFO) -> bool:
        """The thing works again; logs the recovery once (returns True when it did)."""
        if self.reason is None:
            self.failures = 0
            return False
        lasted = self.clock() - (self.since if self.since is not None else self.clock())
        self.log.log(
            level,
            "%s: recovered after %d failed attempt%s over %.0f s",
            self.what,
            self.failures,
            "" if self.failures == 1 else "s",
            lasted,
        )
        self.failures = 0
        self.reason = None
        self.since = None
        return True
