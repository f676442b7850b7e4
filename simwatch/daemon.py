"""``simwatch run``: the long-running service around the engine (the imperative shell).

One asyncio TaskGroup with named tasks:

- ``source:<name>`` per configured source: outside feed -> ``Batch`` on a bounded queue
  (backpressure: a source waits when ingest is behind). A source that crashes is logged
  and restarted with backoff; it never takes the others down.
- ``ingest``: the only writer of the engine. Decodes, deduplicates, dead-letters and
  applies each batch, then commits the source's cursor (``Batch.on_applied``).
- ``clock``: evaluation cycles every ``engine.eval_interval_s`` of the wall clock.
- ``http``: the API, /metrics and health endpoints.
- ``shutdown``: waits for SIGTERM/SIGINT and ends the group.

The evaluation clock: a backlog (history from the simulator, a file's backlog, a REST
platform catching up) is evaluated on its own event time exactly like ``simwatch
replay``, cycle by cycle as the watermark passes each boundary; once the records are
live, cycles run on the wall clock. ``_advance_to`` is the one place that runs cycles,
so a boundary is never evaluated twice or skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import signal
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from simwatch.deadletter import DeadLetterFile
from simwatch.engine import CycleResult, Engine
from simwatch.inventory import iter_inventory
from simwatch.operators import OperatorTable
from simwatch.records import RecordDecoder, Rejection

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from simwatch.config import Settings
    from simwatch.inventory import InventoryRow
    from simwatch.records import Record
    from simwatch.sources.base import Batch, Source, SourceStats

log = logging.getLogger("simwatch")

QUEUE_BATCHES = 64  # bounded: with 5k-line batches at most ~320k records wait
CHUNK = 500  # records applied between yields to the event loop
RESTART_MIN_S = 1.0
RESTART_MAX_S = 60.0


class _Stop(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised by the shutdown task to end the TaskGroup."""


@dataclass(slots=True)
class Health:
    """What the daemon knows about itself (read by /metrics and /-/ready)."""

    started_at: float = 0.0
    evaluations: int = 0
    evaluation_failures: int = 0
    last_evaluation_s: float = 0.0
    last_evaluation_at: float | None = None
    inventory_loaded: bool = False
    sink_errors: dict[str, int] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return self.inventory_loaded and self.evaluations > 0


class Daemon:
    def __init__(
        self,
        settings: Settings,
        sources: Sequence[Source],
        *,
        inventory: Iterable[InventoryRow] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.sources = list(sources)
        operators = OperatorTable.load(settings.engine.operators_file)
        self.engine = Engine(settings.engine.engine_config(), operators)
        self.health = Health(started_at=clock())
        self.queue: asyncio.Queue[Batch] = asyncio.Queue(QUEUE_BATCHES)
        self.decoder = RecordDecoder()
        self.dead_letter = DeadLetterFile(settings.engine.dead_letter_file)
        self._inventory = list(inventory)
        self._interval = settings.engine.eval_interval_s
        self._next_eval: float | None = None  # the next evaluation boundary
        self._watermark = -math.inf  # newest event time applied
        self._stop = asyncio.Event()
        self._failing = False  # the last evaluation failed (logged once until recovery)
        self.on_cycle: list[Callable[[CycleResult], None]] = [self._log_changes]

    # ---- lifecycle ----------------------------------------------------------------------

    def request_stop(self) -> None:
        self._stop.set()

    def source_stats(self) -> list[SourceStats]:
        return [s.stats for s in self.sources]

    async def run(self, *, extra_tasks: Sequence[tuple[str, Callable[[], object]]] = ()) -> None:
        """Run until ``request_stop`` (or a signal); returns after a clean shutdown."""
        await self._load_inventory()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.request_stop)
        try:
            async with asyncio.TaskGroup() as tg:
                for source in self.sources:
                    tg.create_task(self._supervise(source), name=f"source:{source.stats.name}")
                tg.create_task(self._ingest(), name="ingest")
                tg.create_task(self._clock(), name="clock")
                for name, factory in extra_tasks:
                    tg.create_task(factory(), name=name)  # type: ignore[arg-type]
                tg.create_task(self._wait_stop(), name="shutdown")
        except* _Stop:
            pass
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)
            await asyncio.to_thread(self.dead_letter.close)
            log.info("simwatch stopped")

    async def _wait_stop(self) -> None:
        await self._stop.wait()
        log.info("shutting down")
        raise _Stop

    async def _load_inventory(self) -> None:
        path = self.settings.engine.inventory_file
        rows = list(self._inventory)
        if path is not None:
            items = await asyncio.to_thread(lambda: list(iter_inventory(path)))
            for item in items:
                if isinstance(item, Rejection):
                    await asyncio.to_thread(
                        self.dead_letter.write, item, source="inventory", at=self.clock()
                    )
                else:
                    rows.append(item)
        count = self.engine.load_inventory(rows)
        self.health.inventory_loaded = True
        log.info("inventory loaded: %d SIMs", count)

    async def _supervise(self, source: Source) -> None:
        """Run a source; if it crashes, log it and restart it with capped backoff."""
        delay = RESTART_MIN_S
        while True:
            try:
                await source.run(self.queue)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # one failing source never stops the others
                source.stats.errors += 1
                source.stats.last_error = str(exc)
                log.exception("source %s crashed; restarting in %.0f s", source.stats.name, delay)
                await asyncio.sleep(delay * (0.5 + random.random() / 2))  # noqa: S311 - jitter
                delay = min(delay * 2, RESTART_MAX_S)
            else:
                return

    # ---- ingest ---------------------------------------------------------------------------

    async def _ingest(self) -> None:
        while True:
            batch = await self.queue.get()
            try:
                await self.apply_batch(batch)
            finally:
                self.queue.task_done()

    async def apply_batch(self, batch: Batch) -> None:
        """Decode and apply one batch, evaluating backlog boundaries as they pass."""
        stats = next((s.stats for s in self.sources if s.stats.name == batch.source), None)
        now = self.clock()
        rejected: list[Rejection] = []
        items: list[Record | Rejection] = [self.decoder.decode_line(x, now) for x in batch.lines]
        for payload in batch.payloads:
            items.extend(self.decoder.decode_payload(payload, now))
        items.extend(self.decoder.decode_obj(obj, now) for obj in batch.objects)
        applied = duplicates = 0
        for start in range(0, len(items), CHUNK):
            for item in items[start : start + CHUNK]:
                if isinstance(item, Rejection):
                    rejected.append(item)
                    self.engine.count_rejection(item)
                    continue
                ts = item.ts
                if ts > self._watermark:
                    if self._next_eval is None or ts >= self._next_eval:
                        await self._catch_up(ts)
                    self._watermark = ts
                if self.engine.ingest_record(item):
                    applied += 1
                else:
                    duplicates += 1
            await asyncio.sleep(0)  # let the API answer between chunks
        if stats is not None:
            stats.received += len(items)
            stats.duplicates += duplicates
            for rejection in rejected:
                stats.rejected[str(rejection.reason)] += 1
        if rejected:
            await asyncio.to_thread(self._dead_letter, rejected, batch.source, now)
        if batch.on_applied is not None:
            await batch.on_applied()

    def _dead_letter(self, rejected: list[Rejection], source: str, now: float) -> None:
        for rejection in rejected:
            self.dead_letter.write(rejection, source=source, at=now)
        self.dead_letter.flush()

    # ---- the evaluation clock ---------------------------------------------------------------

    async def _catch_up(self, event_time: float) -> None:
        """Backlog: evaluate the boundaries an older record passes, on event time."""
        if self._next_eval is None:  # the first record starts the clock, as in replay
            self._next_eval = math.floor(event_time / self._interval) * self._interval
            self._next_eval += self._interval
        live_from = self.clock() - self._interval
        await self._advance_to(min(event_time, live_from))

    async def _clock(self) -> None:
        """Live: a cycle at every wall-clock boundary."""
        while True:
            now = self.clock()
            if self._next_eval is None and now - self.health.started_at >= self._interval:
                # no record yet: evaluate the (empty or inventory-only) fleet anyway, so
                # the daemon becomes ready and shows never_seen SIMs
                self._next_eval = math.floor(now / self._interval) * self._interval
            await self._advance_to(now)
            boundary = self._next_eval if self._next_eval is not None else now + self._interval
            await asyncio.sleep(min(self._interval, max(0.05, boundary - self.clock())))

    async def _advance_to(self, target: float) -> None:
        """Run every cycle up to ``target``, yielding to the loop between cycles."""
        while self._next_eval is not None and self._next_eval <= target:
            boundary = self._next_eval
            self._next_eval += self._interval
            self._evaluate(boundary)
            await asyncio.sleep(0)

    def _evaluate(self, now: float) -> None:
        try:
            result = self.engine.evaluate(now)
        except Exception:
            self.health.evaluation_failures += 1
            if not self._failing:  # log a failure when it starts, not every cycle
                log.exception("evaluation at %s failed; retrying every cycle", now)
            self._failing = True
            return
        if self._failing:
            log.info("evaluation recovered")
            self._failing = False
        self.health.evaluations += 1
        self.health.last_evaluation_s = result.duration_s
        self.health.last_evaluation_at = now
        for hook in self.on_cycle:
            hook(result)

    @staticmethod
    def _log_changes(result: CycleResult) -> None:
        for change in result.changes:
            incident = change.incident
            if incident.kind != "group":
                continue
            log.warning(
                "incident %s %s: %s affected %d/%d",
                incident.id,
                change.kind,
                incident.dims or "fleet-wide",
                round(incident.affected),
                round(incident.total),
            )
