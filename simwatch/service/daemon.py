"""``simwatch run``: the long-running service around the engine (the imperative shell).

One asyncio TaskGroup with named tasks:

- ``source:<name>`` per configured source: outside feed -> ``Batch`` on a bounded queue
  (backpressure: a source waits when ingest is behind). A source that crashes is logged
  and restarted with backoff; it never takes the others down.
- ``ingest``: the only writer of the engine. Decodes, deduplicates, dead-letters and
  applies each batch, then commits the source's cursor (``Batch.on_applied``).
- ``clock``: evaluation cycles every ``engine.eval_interval_s`` of the wall clock.
- ``sink:<name>`` per configured sink: delivers what the sink buffered at each cycle
  (Alertmanager, InfluxDB, MQTT). ``Sink.on_cycle`` runs right after every cycle, on
  the loop; delivery, retries and backoff happen in the sink's own task, so a slow or
  absent outside system never holds up ingest or evaluation.
- ``http``: the API, /metrics and health endpoints.
- ``checkpoint`` (with ``checkpoints=True``): every ``checkpoint.interval_s`` the whole
  state is copied between two batches and written atomically to
  ``<state_dir>/checkpoint.npz`` in a worker thread (``simwatch.service.checkpoint``); one more
  after the sources stopped at shutdown. At start, before inventory and sources, the
  last checkpoint is restored: engine, evaluation clock and source cursors.
- ``shutdown``: waits for SIGTERM/SIGINT and ends the group.

The evaluation clock: a backlog (history from the simulator, a file's backlog, a REST
platform catching up) is evaluated on its own event time exactly like ``simwatch
replay``, cycle by cycle as the watermark passes each boundary; once the records are
live, cycles run on the wall clock. ``_advance_to`` is the one place that runs cycles,
so a boundary is never evaluated twice or skipped. Ingest runs a backlog's cycles up to
an interval before now; the ``clock`` task runs those after, and until the first record
starts the evaluation clock it looks again every second (a backlog whose newest record
is a little over two intervals old leaves it the first live cycle, at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np

from simwatch.core.clock import EvaluationClock
from simwatch.core.columnar import ColumnarDecoder
from simwatch.core.engine import CycleResult, Engine
from simwatch.core.operators import OperatorTable
from simwatch.core.records import Record, RecordDecoder, Rejection
from simwatch.core.state import RECORD_DIMS
from simwatch.service import checkpoint as ckpt
from simwatch.shell.backoff import Backoff
from simwatch.shell.deadletter import DeadLetterFile
from simwatch.shell.inventory import iter_inventory
from simwatch.shell.logs import FailureLog
from simwatch.shell.sink_contract import Cycle
from simwatch.shell.source_contract import Checkpointed, Closable, Resumable
from simwatch.shell.tasks import raise_if_cancelled

if TYPE_CHECKING:
    from collections.abc import (
        AsyncIterator,
        Callable,
        Coroutine,
        Iterable,
        Mapping,
        Sequence,
    )

    from simwatch.core.inventory import InventoryRow
    from simwatch.shell.settings import Settings
    from simwatch.shell.sink_contract import Sink, SinkStats
    from simwatch.shell.source_contract import Batch, Source, SourceStats

log = logging.getLogger("simwatch")

QUEUE_BATCHES = 64  # bounded: with 5k-line batches at most ~320k records wait
CHUNK = 100  # records decoded (and applied) in the first chunk, between two yields
# Then the chunks adapt so that one takes about CHUNK_S on the loop (records of new SIMs
# apply one at a time, those of known SIMs over arrays: ten times faster), growing at
# most twofold from one chunk to the next.
CHUNK_S = 0.0015
CHUNK_MIN, CHUNK_MAX = 20, 500
RESTART_MIN_S = 1.0
RESTART_MAX_S = 60.0
CLOSE_S = 5.0  # at shutdown, each sink's last flush gets at most this long (a source's close twice)
# a shutdown still going after this long logs what it waits for, once (systemd's
# TimeoutStopSec in deploy/ is 30 s: the log says why before the SIGKILL)
SLOW_STOP_S = 10.0


def _adapt(size: int, spent: float) -> int:
    """The next chunk's size: about CHUNK_S of work at the rate of the last one."""
    target = size * CHUNK_S / max(spent, 1e-6)
    return int(min(max(target, CHUNK_MIN), 2 * size, CHUNK_MAX))


_ASYNCIO_DIR = f"{Path(asyncio.__file__).parent}{os.sep}"


def _waits_at(task: asyncio.Task[object]) -> str:
    """Where a task waits: the innermost line of its chain of awaited coroutines that is
    not asyncio's own (``asyncio.sleep`` names its caller)."""
    where = "?"
    coro: object = task.get_coro()
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            break
        code = frame.f_code
        if not code.co_filename.startswith(_ASYNCIO_DIR):
            where = f"{code.co_filename}:{frame.f_lineno} {code.co_name}"
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return where


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

    @property
    def ready(self) -> bool:
        return self.inventory_loaded and self.evaluations > 0


class Daemon:
    def __init__(
        self,
        settings: Settings,
        sources: Sequence[Source],
        *,
        sinks: Sequence[Sink] = (),
        inventory: Iterable[InventoryRow] = (),
        clock: Callable[[], float] = time.time,
        checkpoints: bool = False,
    ) -> None:
        """``checkpoints``: restore ``<state_dir>/checkpoint.npz`` at start and write one
        every ``settings.checkpoint.interval_s`` and at shutdown (``simwatch run`` turns
        it on per ``checkpoint.enabled``; off, the daemon keeps its state in memory only)."""
        self.settings = settings
        self.clock = clock
        self.sources = list(sources)
        self.sinks = list(sinks)
        self.close_s = CLOSE_S
        self.slow_stop_s = SLOW_STOP_S
        self._stopping = ""  # the shutdown's step, for the slow-stop report
        self._slow_stop: asyncio.TimerHandle | None = None
        self._tasks: list[asyncio.Task[object]] = []  # the task group's, for that report
        operators = OperatorTable.load(settings.engine.operators_file)
        self.engine = Engine(settings.engine.engine_config(), operators)
        self.health = Health(started_at=clock())
        self.queue: asyncio.Queue[Batch] = asyncio.Queue(QUEUE_BATCHES)
        self.decoder = RecordDecoder()
        self.columnar = ColumnarDecoder(self.decoder)
        self._chunk = CHUNK  # records applied between two yields (adapted to CHUNK_S)
        self._decode_chunk = CHUNK  # lines decoded between two yields (the same)
        self.dead_letter = DeadLetterFile(settings.engine.dead_letter_file)
        self._inventory = list(inventory)
        self._interval = settings.engine.eval_interval_s
        self.evaluation_clock = EvaluationClock(self._interval)  # the one replay uses too
        self._stop = asyncio.Event()
        self._evaluation = FailureLog(log, "evaluation")  # logged once until recovery
        self._live = False  # a cycle on the wall clock ran (the backlog is behind us)
        self._applying = False  # ingest is inside apply_batch
        self._last_batch_at = -math.inf  # when ingest last finished a batch (daemon clock)
        # sinks whose on_cycle raises: logged once until they take a cycle again
        self._sink_failures: dict[str, FailureLog] = {}
        self.on_cycle: list[Callable[[CycleResult], None]] = [self._log_changes]
        # the console's history (issue 13): each batch's applied records, the inventory
        self.on_records: list[Callable[[list[Record]], None]] = []
        self.on_inventory: list[Callable[[Sequence[InventoryRow]], None]] = []
        # Held by ingest for a whole batch (apply, cycles it passes, cursor commit): a
        # checkpoint copies the state between two batches, never in the middle of one.
        self._batch_lock = asyncio.Lock()
        self.checkpoints = (
            ckpt.Checkpointer(settings.state_dir, clock=clock) if checkpoints else None
        )
        self._checkpoint_interval = settings.checkpoint.interval_s

    # ---- lifecycle ----------------------------------------------------------------------

    def request_stop(self) -> None:
        self._stop.set()

    @property
    def batch_lock(self) -> asyncio.Lock:
        """Held by every writer of the engine (a batch, the cycles, a checkpoint): a
        reader in a worker thread holds it to see a consistent state."""
        return self._batch_lock

    def source_stats(self) -> list[SourceStats]:
        return [s.stats for s in self.sources]

    def sink_stats(self) -> list[SinkStats]:
        return [s.stats for s in self.sinks]

    def checkpoint_stats(self) -> ckpt.CheckpointStats | None:
        return None if self.checkpoints is None else self.checkpoints.stats

    async def run(self, *, extra_tasks: Sequence[tuple[str, Callable[[], object]]] = ()) -> None:
        """Run until ``request_stop`` (or a signal); returns after a clean shutdown."""
        restored = await self._restore()
        await self._load_inventory(merge=restored)
        started = False
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.request_stop)
        try:
            async with asyncio.TaskGroup() as tg:
                started = True
                spawn = self._spawner(tg)
                for source in self.sources:
                    spawn(self._supervise(source), f"source:{source.stats.name}")
                spawn(self._ingest(), "ingest")
                spawn(self._clock(), "clock")
                for sink in self.sinks:
                    spawn(sink.run(), f"sink:{sink.stats.name}")
                for name, factory in extra_tasks:
                    spawn(cast("Coroutine[object, object, object]", factory()), name)
                if self.checkpoints is not None:
                    spawn(self._checkpoint_loop(), "checkpoint")
                spawn(self._wait_stop(), "shutdown")
        except* _Stop:
            pass
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)
            # The sources and ingest have stopped: the last state goes to disk. A batch cut
            # short by the shutdown is in the dedup memory, so re-reading it from the
            # cursor (which is before it) applies only what it had not applied.
            try:
                if started and self.checkpoints is not None:
                    self._stopping = "writing the last checkpoint"
                    if await self.checkpoint():
                        log.info("checkpoint written at shutdown")
                await self._close_sources()
                await self._close_sinks()
                self._stopping = "closing the dead-letter file"
                await asyncio.to_thread(self.dead_letter.close)
            finally:
                if self._slow_stop is not None:
                    self._slow_stop.cancel()
            log.info("simwatch stopped")

    def _spawner(
        self, tg: asyncio.TaskGroup
    ) -> Callable[[Coroutine[object, object, object], str], None]:
        """Start a named task in ``tg`` and keep it for the slow-stop report."""
        self._tasks = []

        def spawn(coro: Coroutine[object, object, object], name: str) -> None:
            self._tasks.append(tg.create_task(coro, name=name))

        return spawn

    async def _close_sources(self) -> None:
        """After the last checkpoint (acknowledged by ``checkpointed``): what the sources
        kept open for it."""
        for source in self.sources:
            if not isinstance(source, Closable):
                continue
            self._stopping = f"closing source {source.stats.name}"
            try:  # its own close is bounded (NATS: 5 s): this is the daemon's backstop
                async with asyncio.timeout(2 * self.close_s):
                    await source.close()
            except TimeoutError:
                log.warning("source %s: closing timed out at shutdown", source.stats.name)
            except Exception:  # shutdown goes on whatever one source does
                log.exception("source %s: closing failed at shutdown", source.stats.name)

    async def _close_sinks(self) -> None:
        for sink in self.sinks:
            self._stopping = f"the last flush of sink {sink.stats.name}"
            try:
                async with asyncio.timeout(self.close_s):
                    await sink.close()
            except TimeoutError:
                log.warning("sink %s: last flush timed out at shutdown", sink.stats.name)
            except Exception:  # shutdown goes on whatever one sink does
                log.exception("sink %s: last flush failed at shutdown", sink.stats.name)

    async def _wait_stop(self) -> None:
        await self._stop.wait()
        log.info("shutting down")
        self._stopping = "stopping the sources, ingest and sinks"
        loop = asyncio.get_running_loop()
        self._slow_stop = loop.call_later(self.slow_stop_s, self._report_slow_stop)
        raise _Stop

    def _report_slow_stop(self) -> None:
        """Log, once, which step of the shutdown is still going and what each task left
        waits at (its name and innermost line): a hang at stop names itself. A task of
        the group still running is cancelled again: one that lost its cancellation in a
        library (``shell.tasks``) and went on gets a second one at its next ``await``."""
        waiting = [f"{task.get_name()} at {_waits_at(task)}" for task in asyncio.all_tasks()]
        again = [task for task in self._tasks if not task.done()]
        log.warning(
            "shutdown still going after %.0f s, at: %s; tasks waiting: %s%s",
            self.slow_stop_s,
            self._stopping or "starting",
            "; ".join(sorted(waiting)),
            f"; cancelled again: {', '.join(t.get_name() for t in again)}" if again else "",
        )
        for task in again:
            task.cancel()

    async def _load_inventory(self, *, merge: bool = False) -> None:
        """Load the inventory; ``merge``: onto a restored state (the file may have changed
        since the checkpoint: SIMs no longer listed lose their inventory facts)."""
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
        state = self.engine.state
        if merge:
            state.forget_inventory()
        count = self.engine.load_inventory(rows)
        for hook in self.on_inventory:
            hook(rows)
        if merge and any(d not in RECORD_DIMS for d in state.dims):
            await asyncio.to_thread(state.refresh_all_leaves)  # leaves over inventory dims
        self.health.inventory_loaded = True
        log.info("inventory loaded: %d SIMs", count)

    async def _supervise(self, source: Source) -> None:
        """Run a source; if it crashes, log it and restart it with capped backoff."""
        backoff = Backoff(RESTART_MIN_S, RESTART_MAX_S)
        while True:
            try:
                await source.run(self.queue)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # one failing source never stops the others
                source.stats.errors += 1
                source.stats.last_error = str(exc)
                delay = backoff.failed()
                log.exception("source %s crashed; restarting in %.1f s", source.stats.name, delay)
                await asyncio.sleep(delay)
            else:
                return

    # ---- ingest ---------------------------------------------------------------------------

    async def _ingest(self) -> None:
        while True:
            raise_if_cancelled()  # a source's on_applied (a NATS ack) may have swallowed one
            batch = await self.queue.get()
            try:
                await self.apply_batch(batch)
            finally:
                self.queue.task_done()

    async def apply_batch(self, batch: Batch) -> None:
        """Decode and apply one batch, evaluating backlog boundaries as they pass."""
        async with self._batch_lock:
            self._applying = True
            try:
                await self._apply_batch(batch)
            finally:
                self._applying = False
                if batch.lines or batch.payloads or batch.objects:
                    # an empty batch only commits a position (a poll that found nothing
                    # new): it is no backlog, or a quiet polled fleet stops the cycles
                    self._last_batch_at = self.clock()

    async def _apply_batch(self, batch: Batch) -> None:
        stats = next((s.stats for s in self.sources if s.stats.name == batch.source), None)
        now = self.clock()
        # issue 12: the whole batch decoded into columns, applied in chunks
        decoder = self.columnar
        parts = []
        lines = batch.lines
        start = 0
        while start < len(lines):  # chunks of about CHUNK_S each, then the API
            size = self._decode_chunk
            began = time.perf_counter()
            parts.append(decoder.decode_lines(lines[start : start + size], now))
            self._decode_chunk = _adapt(min(size, len(lines) - start), time.perf_counter() - began)
            start += size
            await asyncio.sleep(0)
        for payload in batch.payloads:
            parts.append(decoder.decode_payload(payload, now))
            await asyncio.sleep(0)
        for start in range(0, len(batch.objects), CHUNK):
            parts.append(decoder.decode_objects(batch.objects[start : start + CHUNK], now))
            await asyncio.sleep(0)
        rejected = [r for p in parts for r in p.rejections]
        for rejection in rejected:
            self.engine.count_rejection(rejection)
        received = len(rejected)
        applied = duplicates = 0
        kept: list[Record] | None = [] if self.on_records else None
        for part in parts:  # each decoded chunk in turn (no copy into one batch)
            records = part.records
            received += len(records)
            async for start, end in self._catch_up_segments(records.ts):
                whole = (start, end) == (0, len(records))
                chunk = records if whole else records.slice(start, end)
                began = time.perf_counter()
                fresh = self.engine.ingest_batch(chunk)
                done = int(np.count_nonzero(fresh))
                if kept is not None and done:  # the console's history of what applied
                    kept.extend(
                        r for r, ok in zip(chunk.records(), fresh.tolist(), strict=True) if ok
                    )
                self._chunk = _adapt(end - start, time.perf_counter() - began)
                applied += done
                duplicates += end - start - done
                await asyncio.sleep(0)  # let the API answer between chunks
        if kept:
            for hook in self.on_records:
                hook(kept)
        if stats is not None:
            stats.received += received
            stats.duplicates += duplicates
            for rejection in rejected:
                stats.rejected[str(rejection.reason)] += 1
        if rejected:
            await asyncio.to_thread(self._dead_letter, rejected, batch.source, now)
        if batch.on_applied is not None:
            await batch.on_applied()

    async def _catch_up_segments(self, ts: np.ndarray) -> AsyncIterator[tuple[int, int]]:
        """Chunks ``[start, end)`` of records (``_chunk`` at most) to apply in turn, running the
        backlog cycles a record passes before it (as one record at a time would:
        ``EvaluationClock.passes``, then ``observe``, then apply)."""
        clock = self.evaluation_clock
        n = ts.size
        start = 0
        while start < n:
            first = float(ts[start])
            if clock.passes(first):
                await self._catch_up(first)
            end = clock.segment_end(ts, start, min(start + self._chunk, n))
            clock.observe(float(ts[start:end].max()))
            yield start, end
            start = end

    def _dead_letter(self, rejected: list[Rejection], source: str, now: float) -> None:
        for rejection in rejected:
            self.dead_letter.write(rejection, source=source, at=now)
        self.dead_letter.flush()

    # ---- checkpoints ----------------------------------------------------------------------

    async def _checkpoint_loop(self) -> None:
        while True:
            await asyncio.sleep(self._checkpoint_interval)
            await self.checkpoint()

    def _positions(self) -> tuple[dict[str, object], dict[str, object]]:
        """The sources' applied cursors and the evaluation clock, now (on the loop)."""
        cursors: dict[str, object] = {}
        for source in self.sources:
            if isinstance(source, Resumable):
                cursor = source.cursor()
                if cursor is not None:
                    cursors[source.stats.name] = cursor
        daemon: dict[str, object] = {
            "watermark": ckpt.json_float(self.evaluation_clock.watermark),
            "next_eval": ckpt.json_float(self.evaluation_clock.next_boundary),
            "evaluations": self.health.evaluations,
        }
        return cursors, daemon

    async def checkpoint(self) -> bool:
        """Copy the state between two batches and write it; True when it is on disk.

        The copy runs in a worker thread while this holds the batch lock: ingest and the
        evaluation clock (the only writers of the engine) wait for it, and the loop goes
        on answering the API and /metrics, which only read (at 1M SIMs the copy takes a
        few hundred milliseconds; most of it, numpy copies, releases the GIL)."""
        if self.checkpoints is None:
            return False
        async with self._batch_lock:
            started = time.perf_counter()
            cursors, daemon = self._positions()
            at = self.clock()
            try:
                snapshot = await asyncio.to_thread(
                    ckpt.capture, self.engine, at=at, daemon=daemon, sources=cursors
                )
            except Exception as exc:  # a bug in a part's export must not stop the daemon
                log.exception("checkpoint: copying the state failed")
                self.checkpoints.failed(f"copying the state: {exc!r}")
                return False
            copy_s = time.perf_counter() - started
        saved = await self.checkpoints.save(snapshot, copy_s)
        if saved:
            await self._checkpointed(snapshot.sources)
        return saved

    async def _checkpointed(self, cursors: Mapping[str, object]) -> None:
        """Tell each source which of its cursors a checkpoint on disk holds now."""
        for source in self.sources:
            name = source.stats.name
            if isinstance(source, Checkpointed) and name in cursors:
                try:
                    await source.checkpointed(cursors[name])
                except Exception:  # freeing a source's space must not fail the checkpoint
                    log.exception("source %s: freeing what the checkpoint covers failed", name)

    async def _restore(self) -> bool:
        """Restore the last checkpoint, if any: engine, evaluation clock, source cursors."""
        if self.checkpoints is None:
            return False
        snapshot = await self.checkpoints.load()
        if snapshot is None:
            log.info("no checkpoint in %s: starting with an empty state", self.settings.state_dir)
            return False
        engine = Engine(self.engine.config, self.engine.operators)
        try:
            await asyncio.to_thread(ckpt.restore_engine, engine, snapshot)
        except ckpt.CheckpointError as exc:
            await self.checkpoints.reject(str(exc))
            return False
        engine.maintenance = self.engine.maintenance  # the windows are not in checkpoints
        self.engine = engine
        clock = snapshot.daemon
        self.evaluation_clock.watermark = ckpt.float_of(clock.get("watermark"), -math.inf)
        next_eval = ckpt.float_of(clock.get("next_eval"), math.nan)
        self.evaluation_clock.next_boundary = None if math.isnan(next_eval) else next_eval
        # The sources first catch up from their cursors (on event time): the wall clock
        # waits, as in a backlog, instead of evaluating the downtime against old data.
        self._last_batch_at = self.clock()
        cursors = snapshot.sources
        for source in self.sources:
            name = source.stats.name
            if isinstance(source, Resumable) and name in cursors:
                source.restore(cursors[name])
        self.checkpoints.stats.restored_from = snapshot.written_at
        written = snapshot.written_at
        log.info(
            "checkpoint restored (written %.0f s ago): %d SIMs, %d incidents open, "
            "next evaluation at %s, %d source cursors",
            self.clock() - written if written is not None else math.nan,
            len(engine.state),
            len(engine.incidents.open),
            self.evaluation_clock.next_boundary,
            sum(1 for s in self.sources if s.stats.name in cursors),
        )
        return True

    # ---- the evaluation clock ---------------------------------------------------------------

    async def _catch_up(self, event_time: float) -> None:
        """Backlog: evaluate the boundaries an older record passes, on event time."""
        self.evaluation_clock.start_after(event_time)  # the first record starts it, as in replay
        live_from = self.clock() - self._interval
        await self._advance_to(min(event_time, live_from))

    async def _clock(self) -> None:
        """Live: a cycle at every wall-clock boundary."""
        while True:
            now = self.clock()
            if self._in_backlog(now):  # ingest runs the backlog's cycles on event time
                await asyncio.sleep(min(self._interval, 1.0))
                continue
            async with self._batch_lock:  # never in the middle of a batch or a checkpoint
                now = self.clock()
                if self._in_backlog(now):
                    continue
                clock = self.evaluation_clock
                if not clock.started and now - self.health.started_at >= self._interval:
                    # no record yet: evaluate the (empty or inventory-only) fleet anyway,
                    # so the daemon becomes ready and shows never_seen SIMs
                    clock.start_at(clock.boundary_at_or_before(now))
                await self._advance_to(now)
            upcoming = self.evaluation_clock.next_boundary
            if upcoming is None:
                # not started (no record yet): look again soon, a backlog may start it
                # and leave the cycles near the present to this task
                await asyncio.sleep(min(self._interval, 1.0))
            else:
                await asyncio.sleep(min(self._interval, max(0.05, upcoming - self.clock())))

    def _in_backlog(self, now: float) -> bool:
        """Whether ingest is working through old records (then it runs the cycles).

        The wall clock must not run ahead of a backlog: cycles up to now against a fleet
        only partly caught up would see every SIM silent. A backlog is under way while
        the newest applied record is older than two intervals and ingest is busy or
        handled a batch within the last two intervals (a source between two chunks).
        """
        if self.evaluation_clock.watermark >= now - 2 * self._interval:
            return False  # live records
        busy = self._applying or not self.queue.empty()
        return busy or now - self._last_batch_at < 2 * self._interval

    async def _advance_to(self, target: float) -> None:
        """Run every cycle up to ``target``, yielding to the loop between cycles.

        The callers hold the batch lock: nothing writes the engine meanwhile, so the
        heavy part of a cycle (``Engine.assess``) runs in a worker thread on a
        consistent state while the loop answers the API (issue 12); incidents and
        baselines are updated back on the loop (``Engine.finish_cycle``)."""
        for boundary in self.evaluation_clock.due(target):
            started = time.perf_counter()
            try:
                evaluation = await asyncio.to_thread(self.engine.assess, boundary)
                result = self.engine.finish_cycle(boundary, evaluation, started)
            except Exception as exc:  # noqa: BLE001 - logged with its traceback by FailureLog
                self._evaluation_failed(boundary, exc)
            else:
                self._cycle_done(boundary, result)
            await asyncio.sleep(0)

    def _evaluate(self, now: float) -> None:
        """One whole cycle on the caller's thread."""
        try:
            result = self.engine.evaluate(now)
        except Exception as exc:  # noqa: BLE001 - logged with its traceback by FailureLog
            self._evaluation_failed(now, exc)
            return
        self._cycle_done(now, result)

    def _evaluation_failed(self, now: float, exc: Exception) -> None:
        """Called in the except block of a cycle."""
        self.health.evaluation_failures += 1
        self._evaluation.failed(  # when it starts (or fails otherwise), not every cycle
            f"failed with {type(exc).__name__}",
            detail=f"the cycle at {now}",
            hint="retrying every cycle",
            level=logging.ERROR,
            exc_info=True,  # called in the except block
        )

    def _cycle_done(self, now: float, result: CycleResult) -> None:
        self._evaluation.recovered()
        self.health.evaluations += 1
        self.health.last_evaluation_s = result.duration_s
        self.health.last_evaluation_at = now
        for hook in self.on_cycle:
            hook(result)
        live = now >= self.clock() - 2 * self._interval
        if live and not self._live:
            self._live = True
            log.info(
                "ready: evaluating live (%d cycles so far, %d SIMs, %d incidents open)",
                self.health.evaluations,
                len(self.engine.state),
                len(self.engine.incidents.open),
            )
        if self.sinks:
            self._feed_sinks(Cycle(self.engine, result, now, live))

    def _feed_sinks(self, cycle: Cycle) -> None:
        for sink in self.sinks:
            name = sink.stats.name
            failure = self._sink_failures.setdefault(name, FailureLog(log, f"sink {name}"))
            try:
                sink.on_cycle(cycle)
            # a sink's bug must not stop evaluation or the other sinks (logged with its
            # traceback by FailureLog)
            except Exception as exc:  # noqa: BLE001
                sink.stats.errors += 1
                failure.failed(
                    f"failed to take a cycle ({type(exc).__name__})",
                    hint="retrying every cycle",
                    level=logging.ERROR,
                    exc_info=True,
                )
            else:
                failure.recovered("takes cycles again")

    @staticmethod
    def _log_changes(result: CycleResult) -> None:
        for change in result.changes:
            incident = change.incident
            if incident.kind != "group":
                continue
            log.warning("incident %s %s: %s", incident.id, change.kind, incident.headline())
