"""Failure and recovery, each logged once.

A retry loop that fails every few seconds for an hour must not write a line per
attempt: the operator wants one line when the failure starts (with its reason) and
one when it ends (with how long it lasted and how many attempts failed). A failure
whose reason changes while it lasts is logged again, once per new reason, so a
different problem is never hidden behind the first one. The reason is what is
compared: keep it stable (``"localhost:1883 unavailable"``) and put what varies from
one attempt to the next (an errno text, a status code, a time) in ``detail``.

The same shape serves a run of losses that ends (messages shed while ingest is
behind): ``failed(reason, count=n)`` counts ``n`` at once and ``noun`` names what is
counted in the recovery line (``"shed message"``).
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
    """One thing that can fail and recover (a source, a sink, a replica, evaluation).

    Lines read ``<what>: <reason> (<detail>); <hint>`` when a failure starts (or its
    reason changes) and ``<what>: <how> after <n> <noun>s over <t> s`` on recovery.
    """

    log: logging.Logger
    what: str  # "mqtt source main", "alertmanager http://am:9093", "evaluation"
    clock: Callable[[], float] = field(default=time.monotonic)
    noun: str = "failure"  # what ``failures`` counts, in the recovery line
    failures: int = 0  # failures (or ``count``s) since the last recovery
    reason: str | None = None  # the current failure's reason; None while healthy
    since: float | None = None  # clock() at the first failure of the current run

    @property
    def failing(self) -> bool:
        return self.reason is not None

    def failed(
        self,
        reason: str,
        *,
        detail: str = "",
        hint: str = "",
        count: int = 1,
        level: int = logging.WARNING,
        exc_info: bool = False,
    ) -> bool:
        """Count a failure; logs it only when it starts or its reason changes.

        ``exc_info``: add the exception being handled (call it in an ``except`` block).
        Returns True when this call wrote a line."""
        self.failures += count
        if self.reason == reason:
            return False
        if self.reason is None:
            self.since = self.clock()
        self.reason = reason
        text = f"{reason} ({detail})" if detail else reason
        if hint:
            text = f"{text}; {hint}"
        self.log.log(level, "%s: %s", self.what, text, exc_info=exc_info)
        return True

    def recovered(self, how: str = "recovered", *, level: int = logging.INFO) -> bool:
        """The thing works again; logs the recovery once (returns True when it did)."""
        if self.reason is None:
            self.failures = 0
            return False
        lasted = self.clock() - (self.since if self.since is not None else self.clock())
        self.log.log(
            level,
            "%s: %s after %d %s%s over %.0f s",
            self.what,
            how,
            self.failures,
            self.noun,
            "" if self.failures == 1 else "s",
            lasted,
        )
        self.failures = 0
        self.reason = None
        self.since = None
        return True
