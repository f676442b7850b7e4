"""The evaluation clock: which boundaries to evaluate, shared by replay and the daemon.

Evaluations run at every multiple of ``interval`` (a *boundary*). The first record
starts the clock at the first boundary after its event time. A record newer than every
record before it (it moves the *watermark*) makes every boundary up to its event time
due, and those cycles run before the record is applied: that is exactly what a daemon
evaluating on the wall clock would have seen when the record arrived. Late records
(older than the watermark) never move the clock.

``simwatch replay`` runs the clock on event time alone. The daemon runs it on event
time for a backlog and on the wall clock once live; both ask this one object which
boundaries are due, so no boundary is evaluated twice or skipped, and a checkpoint
stores just ``watermark`` and ``next_boundary``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Iterator


@dataclass(slots=True)
class EvaluationClock:
    interval: float  # seconds between boundaries (``engine.eval_interval_s``)
    next_boundary: float | None = None  # None until the clock starts
    watermark: float = -math.inf  # the newest event time seen

    @property
    def started(self) -> bool:
        return self.next_boundary is not None

    def boundary_at_or_before(self, t: float) -> float:
        return math.floor(t / self.interval) * self.interval

    def start_after(self, t: float) -> None:
        """Start at the first boundary after ``t`` (the first record); no-op once started."""
        if self.next_boundary is None:
            self.next_boundary = self.boundary_at_or_before(t) + self.interval

    def start_at(self, boundary: float) -> None:
        """Start at ``boundary`` (the daemon with no record yet); no-op once started."""
        if self.next_boundary is None:
            self.next_boundary = boundary

    def passes(self, event_time: float) -> bool:
        """Whether a record at ``event_time`` may make boundaries due (it is not late and
        reaches the next boundary, or starts the clock)."""
        if event_time <= self.watermark:
            return False
        return self.next_boundary is None or event_time >= self.next_boundary

    def segment_end(self, ts: np.ndarray, start: int, end: int) -> int:
        """Batched ``passes``: the records ``ts[start:end]`` are applied in order after
        ``ts[start]`` (which the caller has checked with ``passes``); returns the index of
        the first later record that ``passes`` once those before it are observed (its
        cycles are due first), or ``end``. The clock is not changed (issue 12)."""
        rest = ts[start + 1 : end]
        if rest.size == 0:
            return end
        before = np.maximum.accumulate(np.concatenate((ts[start : start + 1], rest[:-1])))
        np.maximum(before, self.watermark, out=before)
        passes = rest > before
        if self.next_boundary is not None:
            passes &= rest >= self.next_boundary
        hits = np.flatnonzero(passes)
        return start + 1 + int(hits[0]) if hits.size else end

    def observe(self, event_time: float) -> None:
        """A record at ``event_time`` was applied: move the watermark."""
        self.watermark = max(self.watermark, event_time)

    def due(self, target: float) -> Iterator[float]:
        """The boundaries up to and including ``target``, in order.

        The clock moves past each boundary before it is yielded, so a consumer that
        stops early (or fails in the cycle) never evaluates that boundary twice."""
        while self.next_boundary is not None and self.next_boundary <= target:
            boundary = self.next_boundary
            self.next_boundary = boundary + self.interval
            yield boundary

    def tick(self) -> float | None:
        """Take the next boundary whatever the target (replay's closing cycle)."""
        if self.next_boundary is None:
            return None
        boundary = self.next_boundary
        self.next_boundary = boundary + self.interval
        return boundary
