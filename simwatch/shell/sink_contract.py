"""What every sink shares: the cycle it is handed, its statistics, its contract.

A sink turns evaluation cycles into deliveries to an outside system. It has two halves:

- ``on_cycle(cycle)`` is called synchronously on the event loop right after every
  evaluation cycle (backlog cycles on event time as well as live ones). It must be cheap
  and must not block: it reads what it needs from the engine (which is consistent only
  during this call) and puts it in the sink's own **bounded** buffer or desired state.
  When the buffer is full it drops and counts (``stats.dropped``), never grows without
  bound. It must not raise; if it does anyway the daemon logs it once and counts an
  error.
- ``run()`` is the sink's long-lived delivery task (``sink:<name>`` in the daemon's
  TaskGroup): it sends what is buffered, retries with capped jittered backoff while the
  outside system is away, and counts errors. It returns only when cancelled.
- ``close()`` is awaited once at shutdown, after the TaskGroup ended, with a deadline:
  a last best-effort flush.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from simwatch.core.engine import CycleResult, Engine


@dataclass(frozen=True, slots=True)
class Cycle:
    """One evaluation cycle as a sink sees it."""

    engine: Engine  # the engine right after the cycle (read it now, not later)
    result: CycleResult  # the evaluation, incident changes and per-SIM state changes
    now: float  # the cycle's time (epoch s): event time in a backlog, else wall clock
    live: bool  # False while a backlog is evaluated on its event time


@dataclass(slots=True)
class SinkStats:
    """Per-sink counters, read by the API and the /metrics collector."""

    name: str  # the sink's configured name, e.g. "alertmanager" (a metric label)
    kind: str  # "alertmanager" | "influxdb" | "mqtt"
    sent: int = 0  # items delivered (alerts posted, points written, messages published)
    errors: int = 0  # failed delivery attempts (connection, HTTP status, timeout)
    dropped: int = 0  # items given up: the bounded buffer was full
    buffered: int = 0  # items waiting for delivery now
    last_success: float | None = None  # epoch s of the last successful delivery
    last_error: str | None = None  # the current failure, None once recovered
    up: bool = False  # the last delivery attempt succeeded (with replicas: to at least one)
    replicas: int = 1  # servers the sink delivers to (Alertmanager: every replica)
    replicas_up: int = 0  # of those, the ones whose last delivery attempt succeeded


class Sink(Protocol):
    """The contract of an output sink (see the module docstring)."""

    stats: SinkStats

    def on_cycle(self, cycle: Cycle) -> None: ...

    async def run(self) -> None: ...

    async def close(self) -> None: ...
