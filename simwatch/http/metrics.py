"""The /metrics exposition: metric families built at scrape time from the engine's state.

Nothing here is updated per event. ``EngineCollector.collect`` reads the engine's last
evaluation, its fleet columns, the incident tracker, the sources' ``SourceStats`` and the
daemon's ``DaemonHealth`` when Prometheus scrapes, and builds fresh metric families from
them (a prometheus-client custom collector). In the daemon (``CachedMetrics``) the
fleet's and the incidents' families are collected once per evaluation cycle in a worker
thread holding the daemon's batch lock, the rest at each scrape on the event loop;
the per-group figures are ``simwatch.core.groups``
(the aggregation the InfluxDB sink and the API's groups view use too): one
``np.bincount`` per dimension, a few milliseconds for a million SIMs.

Labels stay bounded: by default there is never a label per SIM. Group metrics carry one
series per configured dimension value, capped at the ``top_n`` largest values per
dimension (the rest summed into ``value="_other"``); incident series exist only for open
group incidents. The one exception is opt-in (``sim_series``, off by default): per-SIM
series with an ``iccid`` label for at most ``sim_series`` SIMs tagged ``vip``.
docs/metrics.md lists every metric and its cardinality.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import math
import platform
import re
from collections import Counter
from typing import TYPE_CHECKING, Final

import numpy as np
from aiohttp import web
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.aiohttp import make_aiohttp_handler
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
)
from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.registry import Collector

from simwatch.core.evaluate import STATE_NAMES
from simwatch.core.groups import DEFAULT_TOP_N, OTHER, by_dimension, cycle_figures
from simwatch.core.records import RejectReason
from simwatch.core.state import Flag

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence

    from aiohttp.typedefs import Handler
    from prometheus_client.metrics_core import Metric

    from simwatch.core.engine import Engine
    from simwatch.shell.health import CheckpointStats, ClusterStats, DaemonHealth
    from simwatch.shell.history import HistoryWriter
    from simwatch.shell.sink_contract import SinkStats
    from simwatch.shell.source_contract import SourceStats

log = logging.getLogger(__name__)

SEVERITIES: Final = ("page", "ticket")
OPENMETRICS_ACCEPT: Final = "application/openmetrics-text; version=1.0.0; charset=utf-8"
_LABEL_RE: Final = re.compile(r"[^a-zA-Z0-9_]")


def _label_name(dim: str) -> str:
    """A dimension name as a valid Prometheus label name (inventory columns may be anything)."""
    name = _LABEL_RE.sub("_", dim)
    if not name or name[0].isdigit() or name.startswith("__") or name in {"id", "severity"}:
        name = f"dim_{name}"
    return name


class EngineCollector:
    """A prometheus-client collector over an engine, its sources and the daemon's health."""

    def __init__(
        self,
        engine: Engine,
        health: DaemonHealth,
        source_stats: Callable[[], Sequence[SourceStats]],
        *,
        version: str,
        top_n: int = DEFAULT_TOP_N,
        sink_stats: Callable[[], Sequence[SinkStats]] = tuple,
        sim_series: int = 0,
        checkpoint_stats: Callable[[], CheckpointStats | None] = lambda: None,
        cluster_stats: Callable[[], ClusterStats | None] = lambda: None,
    ) -> None:
        """``sim_series``: per-SIM series for at most this many SIMs tagged vip; 0 (the
        default) exports none, and then no label value is ever an ICCID.
        ``checkpoint_stats``: the daemon's checkpoint figures (None: checkpoints off, no
        ``simwatch_checkpoint_*`` series)."""
        if top_n < 1:
            raise ValueError("top_n must be at least 1")
        if sim_series < 0:
            raise ValueError("sim_series must be 0 (off) or a positive cap")
        self.engine = engine
        self.health = health
        self.source_stats = source_stats
        self.sink_stats = sink_stats
        self.version = version
        self.top_n = top_n
        self.sim_series = sim_series
        self.checkpoint_stats = checkpoint_stats
        self.cluster_stats = cluster_stats  # [cluster]: series labelled shard=<node name>

    def collect(self) -> Iterator[Metric]:
        yield self._tracked()
        yield from self._fleet()
        yield from self._incidents()
        yield from self._live()

    def collect_cycle(self) -> Iterator[Metric]:
        """The families that change only with an evaluation cycle (the fleet's and the
        incidents'): ``CachedMetrics`` renders them once per cycle, off the loop."""
        yield from self._fleet()
        yield from self._incidents()

    def collect_live(self) -> Iterator[Metric]:
        """The rest: cheap, read at every scrape (sources, sinks, the daemon)."""
        yield self._tracked()
        yield from self._live()

    def _live(self) -> Iterator[Metric]:
        yield from self._sources()
        yield from self._sinks()
        yield from self._daemon()
        yield from self._checkpoint()
        yield from self._cluster()
        if self.sim_series:
            yield from self._tagged_sims()

    # ---- fleet and groups ---------------------------------------------------------------

    def _tracked(self) -> Metric:
        return GaugeMetricFamily(
            "simwatch_tracked_sims",
            "SIMs the engine tracks now (inventory and SIMs seen in records).",
            value=len(self.engine.state),
        )

    def _fleet(self) -> Iterator[Metric]:
        engine = self.engine
        state = engine.state
        evaluation = engine.last_evaluation
        sims = GaugeMetricFamily(
            "simwatch_sims", "SIMs per state at the last evaluation.", labels=["state"]
        )
        group_sims = GaugeMetricFamily(
            "simwatch_group_sims",
            "SIMs per state at the last evaluation, per value of one dimension"
            f" (top {self.top_n} values per dimension, the rest in value={OTHER!r}).",
            labels=["dim", "value", "state"],
        )
        total = GaugeMetricFamily(
            "simwatch_group_total_sims",
            "SIMs counted (active, seen, rhythm learned, or dropped or refused by the network),"
            " per dimension value,"
            " at the last evaluation.",
            labels=["dim", "value"],
        )
        affected = GaugeMetricFamily(
            "simwatch_group_affected_sims",
            "Of the SIMs expected to report, those late or silent and unexplained by a"
            " per-SIM cause, per dimension value, at the last evaluation.",
            labels=["dim", "value"],
        )
        affected_ratio = GaugeMetricFamily(
            "simwatch_group_affected_ratio",
            "Affected SIMs over the SIMs expected to report, per dimension value, at the"
            " last evaluation.",
            labels=["dim", "value"],
        )
        month_bytes = GaugeMetricFamily(
            "simwatch_group_month_bytes",
            "Bytes (up + down) used in the calendar month (UTC) of the last evaluation,"
            " per dimension value.",
            labels=["dim", "value"],
            unit="bytes",
        )
        if evaluation is not None:
            for name, count in evaluation.state_counts().items():
                sims.add_metric([name], count)
            figures = cycle_figures(state, evaluation)
            for dim in state.dims:
                for group in by_dimension(state, figures, dim, self.top_n):
                    labels = [dim, group.dims[dim]]
                    for state_name, count in group.state_counts().items():
                        group_sims.add_metric([*labels, state_name], count)
                    total.add_metric(labels, group.total)
                    affected.add_metric(labels, group.affected)
                    ratio = group.affected_ratio
                    if ratio is not None:
                        affected_ratio.add_metric(labels, ratio)
                    month_bytes.add_metric(labels, group.month_bytes)
        yield sims
        yield group_sims
        yield total
        yield affected
        yield affected_ratio
        yield month_bytes

    # ---- incidents ----------------------------------------------------------------------

    def _incidents(self) -> Iterator[Metric]:
        tracker = self.engine.incidents
        dims = self.engine.state.dims
        label_names = [_label_name(d) for d in dims]
        by_severity = Counter(i.severity for i in tracker.open.values())
        open_count = GaugeMetricFamily(
            "simwatch_incidents_open", "Open incidents per severity.", labels=["severity"]
        )
        for severity in SEVERITIES:
            open_count.add_metric([severity], by_severity[severity])
        info = InfoMetricFamily(
            "simwatch_incident",
            "One series per open group incident: its id, severity and group"
            " (an empty dimension label: the group spans all its values).",
            labels=["id", "severity", *label_names],
        )
        affected = GaugeMetricFamily(
            "simwatch_incident_affected_sims",
            "SIMs of an open group incident's group that are overdue now.",
            labels=["id"],
        )
        group_total = GaugeMetricFamily(
            "simwatch_incident_group_sims",
            "SIMs of an open group incident's group that are expected to report.",
            labels=["id"],
        )
        opened_at = GaugeMetricFamily(
            "simwatch_incident_opened_timestamp_seconds",
            "When an open group incident was opened (epoch seconds).",
            labels=["id"],
            unit="seconds",
        )
        for incident in sorted(tracker.open.values(), key=lambda i: i.id):
            if incident.kind != "group":
                continue  # SIM incidents are per ICCID: counted above, never a label
            values = [incident.dims.get(d, "") for d in dims]
            info.add_metric([incident.id, incident.severity, *values], {})
            affected.add_metric([incident.id], round(incident.affected))
            group_total.add_metric([incident.id], round(incident.total))
            opened_at.add_metric([incident.id], incident.opened_at)
        yield open_count
        yield info
        yield affected
        yield group_total
        yield opened_at
        yield CounterMetricFamily(
            "simwatch_incidents_opened",
            "Incidents opened since the state began (group and SIM incidents).",
            value=tracker.next_id - 1,
        )

    # ---- self-metrics ---------------------------------------------------------------------

    def _sources(self) -> Iterator[Metric]:
        received = CounterMetricFamily(
            "simwatch_source_records_received",
            "Records a source handed to ingest.",
            labels=["source"],
        )
        rejected = CounterMetricFamily(
            "simwatch_source_records_rejected",
            "Records of a source rejected by validation, per reason.",
            labels=["source", "reason"],
        )
        shed = CounterMetricFamily(
            "simwatch_source_messages_shed",
            "Messages a source dropped unread because its bounded queue was full.",
            labels=["source"],
        )
        duplicates = CounterMetricFamily(
            "simwatch_source_duplicates",
            "Duplicate deliveries of a source (same record id), applied once.",
            labels=["source"],
        )
        errors = CounterMetricFamily(
            "simwatch_source_errors",
            "Failures of a source talking to the outside (connection, HTTP status, I/O).",
            labels=["source"],
        )
        last_success = GaugeMetricFamily(
            "simwatch_source_last_success_timestamp_seconds",
            "When a source last read or polled successfully (epoch seconds).",
            labels=["source"],
            unit="seconds",
        )
        up = GaugeMetricFamily(
            "simwatch_source_up",
            "1 while a source is connected to its feed, else 0.",
            labels=["source"],
        )
        reasons = [str(r) for r in RejectReason]
        for stats in self.source_stats():
            name = stats.name
            received.add_metric([name], stats.received)
            for reason in [*reasons, *sorted(set(stats.rejected) - set(reasons))]:
                rejected.add_metric([name, reason], stats.rejected[reason])
            duplicates.add_metric([name], stats.duplicates)
            shed.add_metric([name], stats.shed)
            errors.add_metric([name], stats.errors)
            if stats.last_success is not None:
                last_success.add_metric([name], stats.last_success)
            up.add_metric([name], 1 if stats.connected else 0)
        yield from (received, rejected, duplicates, shed, errors, last_success, up)

    def _sinks(self) -> Iterator[Metric]:
        sent = CounterMetricFamily(
            "simwatch_sink_sent",
            "Items a sink delivered (alerts posted, points written, messages published).",
            labels=["sink"],
        )
        errors = CounterMetricFamily(
            "simwatch_sink_errors",
            "Failed delivery attempts of a sink (connection, HTTP status, timeout).",
            labels=["sink"],
        )
        dropped = CounterMetricFamily(
            "simwatch_sink_dropped",
            "Items a sink gave up because its bounded buffer was full.",
            labels=["sink"],
        )
        buffered = GaugeMetricFamily(
            "simwatch_sink_buffered",
            "Items waiting in a sink's buffer for delivery.",
            labels=["sink"],
        )
        last_success = GaugeMetricFamily(
            "simwatch_sink_last_success_timestamp_seconds",
            "When a sink last delivered successfully (epoch seconds).",
            labels=["sink"],
            unit="seconds",
        )
        up = GaugeMetricFamily(
            "simwatch_sink_up",
            "1 while a sink's last delivery attempt succeeded (to at least one replica).",
            labels=["sink"],
        )
        replicas = GaugeMetricFamily(
            "simwatch_sink_replicas",
            "Servers a sink delivers to (Alertmanager: every replica; 1 for the others).",
            labels=["sink"],
        )
        replicas_up = GaugeMetricFamily(
            "simwatch_sink_replicas_up",
            "Of a sink's servers, those whose last delivery attempt succeeded.",
            labels=["sink"],
        )
        for stats in self.sink_stats():
            name = stats.name
            replicas.add_metric([name], stats.replicas)
            replicas_up.add_metric(
                [name], stats.replicas_up if stats.replicas > 1 else (1 if stats.up else 0)
            )
            sent.add_metric([name], stats.sent)
            errors.add_metric([name], stats.errors)
            dropped.add_metric([name], stats.dropped)
            buffered.add_metric([name], stats.buffered)
            if stats.last_success is not None:
                last_success.add_metric([name], stats.last_success)
            up.add_metric([name], 1 if stats.up else 0)
        yield from (sent, errors, dropped, buffered, last_success, up, replicas, replicas_up)

    # ---- opt-in per-SIM series ---------------------------------------------------------------

    def _tagged_sims(self) -> Iterator[Metric]:
        """Series labelled by ICCID for the first ``sim_series`` SIMs tagged vip.

        The first in row order, that is in the order the SIMs became known (the inventory's
        order), so the set is stable from scrape to scrape; the rest are only counted.
        """
        state = self.engine.state
        evaluation = self.engine.last_evaluation
        n = len(state)
        tagged = np.flatnonzero((state.cols.flags[:n] & Flag.VIP) != 0)
        rows = tagged[: self.sim_series]
        iccids = state.index.iccids(rows)
        last_data = state.rhythm.last_data[rows].tolist()
        sim_state = GaugeMetricFamily(
            "simwatch_sim_state",
            "1 for the state of a SIM tagged vip at the last evaluation, 0 for the others"
            " (opt-in per-SIM series).",
            labels=["iccid", "state"],
        )
        last = GaugeMetricFamily(
            "simwatch_sim_last_data_timestamp_seconds",
            "When a SIM tagged vip last sent data (epoch seconds; opt-in per-SIM series).",
            labels=["iccid"],
            unit="seconds",
        )
        n_eval = evaluation.n if evaluation is not None else 0
        for row, iccid, seen in zip(rows.tolist(), iccids, last_data, strict=True):
            if evaluation is not None and row < n_eval:
                code = int(evaluation.states[row])
                for i, state_name in enumerate(STATE_NAMES):
                    sim_state.add_metric([iccid, state_name], 1 if i == code else 0)
            if not math.isnan(seen):  # NaN: no data yet
                last.add_metric([iccid], seen)
        yield sim_state
        yield last
        yield GaugeMetricFamily(
            "simwatch_sim_series_omitted_sims",
            "SIMs tagged vip without per-SIM series: beyond metrics.sim_series_max.",
            value=len(tagged) - len(rows),
        )

    def _daemon(self) -> Iterator[Metric]:
        health = self.health
        yield CounterMetricFamily(
            "simwatch_evaluations",
            "Evaluation cycles completed.",
            value=health.evaluations_total,
        )
        yield CounterMetricFamily(
            "simwatch_evaluation_failures",
            "Evaluation cycles that raised.",
            value=health.evaluation_failures_total,
        )
        yield GaugeMetricFamily(
            "simwatch_evaluation_duration_seconds",
            "How long the last evaluation cycle took.",
            value=health.last_evaluation_duration_s,
            unit="seconds",
        )
        last = GaugeMetricFamily(
            "simwatch_last_evaluation_timestamp_seconds",
            "When the last evaluation cycle ran (epoch seconds, the engine's clock).",
            unit="seconds",
        )
        if health.last_evaluation_timestamp is not None:
            last.add_metric([], health.last_evaluation_timestamp)
        yield last
        if health.queue_depth is not None:
            yield GaugeMetricFamily(
                "simwatch_ingest_queue_depth",
                "Batches waiting in the ingest queue.",
                value=health.queue_depth(),
            )
        yield InfoMetricFamily(
            "simwatch_build",
            "The simwatch version and the Python it runs on.",
            value={"version": self.version, "python": platform.python_version()},
        )
        yield GaugeMetricFamily(
            "simwatch_start_time_seconds",
            "When the daemon started (epoch seconds).",
            value=health.started_at,
            unit="seconds",
        )

    def _cluster(self) -> Iterator[Metric]:
        stats = self.cluster_stats()
        if stats is None:
            return
        shard = [stats.node]
        leader = GaugeMetricFamily(
            "simwatch_cluster_leader",
            "1 on the cluster's leader (it merges every node's counts and pages), else 0.",
            labels=["shard"],
        )
        leader.add_metric(shard, 1.0 if stats.leader else 0.0)
        partitions = GaugeMetricFamily(
            "simwatch_cluster_partitions",
            "Partitions this node reads.",
            labels=["shard"],
        )
        partitions.add_metric(shard, len(stats.partitions))
        nodes = GaugeMetricFamily(
            "simwatch_cluster_nodes",
            "Nodes whose lease this node sees alive.",
            labels=["shard"],
        )
        nodes.add_metric(shard, len(stats.nodes))
        merges = CounterMetricFamily(
            "simwatch_cluster_merges",
            "The leader's merges of every node's counts, by outcome (undecided: a node's "
            "report missing, stale, warming or an outlier).",
            labels=["shard", "outcome"],
        )
        merges.add_metric([stats.node, "decided"], stats.merges)
        merges.add_metric([stats.node, "undecided"], stats.merges_incomplete)
        merge_s = GaugeMetricFamily(
            "simwatch_cluster_merge_seconds",
            "How long the leader's last merge and localization took.",
            labels=["shard"],
        )
        merge_s.add_metric(shard, stats.last_merge_s)
        snapshot = GaugeMetricFamily(
            "simwatch_cluster_snapshot_bytes",
            "Size of the last partition snapshot this node put in the object store.",
            labels=["shard"],
        )
        snapshot.add_metric(shard, stats.snapshot_bytes)
        takeovers = CounterMetricFamily(
            "simwatch_cluster_takeovers",
            "Partitions this node took over from their snapshot (only the stream after it "
            "replayed).",
            labels=["shard"],
        )
        takeovers.add_metric(shard, stats.snapshots_loaded)
        yield from (leader, partitions, nodes, merges, merge_s, snapshot, takeovers)

    def _checkpoint(self) -> Iterator[Metric]:
        stats = self.checkpoint_stats()
        if stats is None:
            return
        last = GaugeMetricFamily(
            "simwatch_checkpoint_last_success_timestamp_seconds",
            "When the last checkpoint was written (epoch seconds; absent until the first).",
            unit="seconds",
        )
        duration = GaugeMetricFamily(
            "simwatch_checkpoint_duration_seconds",
            "How long the last written checkpoint took (state copy on the loop + file write).",
            unit="seconds",
        )
        size = GaugeMetricFamily(
            "simwatch_checkpoint_size_bytes",
            "Size of the last written checkpoint file.",
            unit="bytes",
        )
        if stats.last_success is not None:
            last.add_metric([], stats.last_success)
        if stats.last_duration_s is not None:
            duration.add_metric([], stats.last_duration_s)
        if stats.size_bytes is not None:
            size.add_metric([], stats.size_bytes)
        yield last
        yield duration
        yield size
        yield CounterMetricFamily(
            "simwatch_checkpoint_failures",
            "Checkpoints that could not be copied or written (the previous one stays).",
            value=stats.failures,
        )


class HistoryCollector:
    """The console history writer's figures (``simwatch.shell.history``, issue 13)."""

    def __init__(self, writer: HistoryWriter) -> None:
        self.writer = writer

    def collect(self) -> Iterator[Metric]:
        stats = self.writer.stats
        yield CounterMetricFamily(
            "simwatch_history_records_written",
            "Records written to the console's per-SIM history.",
            value=stats.written,
        )
        yield CounterMetricFamily(
            "simwatch_history_records_dropped",
            "Records the history did not keep: its writer was behind (buffer full) or"
            " writing failed. Evaluation is not affected; the console misses them.",
            value=stats.dropped,
        )
        yield CounterMetricFamily(
            "simwatch_history_write_failures",
            "History writes or prunes that failed (disk full, file broken).",
            value=stats.failures,
        )
        yield GaugeMetricFamily(
            "simwatch_history_pending_records",
            "Records waiting to be written to the history (bounded by"
            " console.history_max_pending).",
            value=self.writer.pending,
        )


def make_registry(collector: EngineCollector, *, process: bool = True) -> CollectorRegistry:
    """A fresh registry with the collector (and the standard ``process_*`` metrics)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    if process:
        ProcessCollector(registry=registry)
    return registry


class _Families(Collector):
    """Metric families already collected, as a collector the encoders take."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


class _Live(Collector):
    def __init__(self, collector: EngineCollector) -> None:
        self.collector = collector

    def collect(self) -> Iterator[Metric]:
        return self.collector.collect_live()


_EOF: Final = b"# EOF\n"
_PRERENDERED: Final = ("", OPENMETRICS_ACCEPT)  # Accept headers rendered at each refresh


class CachedMetrics:
    """``GET /metrics`` with the per-cycle families rendered off the event loop (issue 12).

    The fleet's and the incidents' families (``EngineCollector.collect_cycle``: they change
    only with an evaluation cycle, and they are the whole cost, 30-90 ms at 1M SIMs) are
    collected in a worker thread while ``lock`` keeps the engine's writers out (the
    daemon's batch lock: ingest and cycles wait, the loop does not), once per cycle, and
    rendered once per format. A scrape then serves those bytes followed by the cheap
    families read at the scrape (sources, sinks, the daemon, ``process_*``), so the loop
    spends well under a millisecond on it. The daemon starts the refresh right after each
    live cycle (``refresh_soon``); a scrape that comes while that refresh is under way
    gets the last rendered cycle's families at once (one cycle older for the tens of
    milliseconds the refresh takes) instead of waiting for it. A scrape that finds a
    cycle not rendered otherwise (a backlog's cycles are rendered when scraped) starts
    a refresh or joins the one under way and waits for it (off the loop), unless a
    writer holds the lock (a backlog's batch can hold it for seconds): then it too gets
    the last rendered cycle's families. Before the first render every scrape waits for
    it. ``?name[]=`` filters take the whole registry on the loop, as before.
    """

    def __init__(
        self,
        collector: EngineCollector,
        *,
        lock: asyncio.Lock | None = None,
        process: bool = True,
        extra: Sequence[Collector] = (),
    ) -> None:
        self.collector = collector
        self.lock = lock if lock is not None else asyncio.Lock()
        self.registry = make_registry(collector, process=process)  # everything, at once
        self.live = CollectorRegistry(auto_describe=False)
        self.live.register(_Live(collector))
        if process:
            ProcessCollector(registry=self.live)
        for other in extra:
            self.registry.register(other)
            self.live.register(other)
        self._filtered = make_aiohttp_handler(self.registry)
        self._cycle: tuple[int, int] | None = None  # the cycle of ``_families``
        self._families: _Families | None = None
        self._bodies: dict[str, bytes] = {}  # per content type, of ``_families``
        self._refreshing: asyncio.Task[None] | None = None
        self._ahead: asyncio.Task[None] | None = None  # the last refresh_soon's refresh
        self._collecting = False  # a refresh holds the lock
        self.renders = 0  # collections of the per-cycle families (for tests)

    def _key(self) -> tuple[int, int]:
        engine = self.collector.engine
        return engine.cycles, id(engine.last_evaluation)

    def stale(self) -> bool:
        return self._cycle != self._key()

    async def refresh(self) -> None:
        """Collect the per-cycle families (if a cycle ran since) and render the usual
        formats, in a worker thread, holding the lock while it reads the engine."""
        async with self.lock:
            key = self._key()
            if key == self._cycle:
                return
            self._collecting = True  # the lock is held for this refresh: worth waiting
            try:
                families = await asyncio.to_thread(
                    lambda: _Families(self.collector.collect_cycle())
                )
            finally:
                self._collecting = False
        self.renders += 1
        bodies = await asyncio.to_thread(
            lambda: {ctype: render(families) for render, ctype in map(choose_encoder, _PRERENDERED)}
        )
        self._cycle, self._families, self._bodies = key, families, bodies

    def refresh_soon(self) -> asyncio.Task[None]:
        """Start a refresh unless one is under way (after a live cycle: ``Daemon.on_cycle``).
        Scrapes do not wait for it: they get the last rendered cycle's families meanwhile."""
        task = self._start_refresh()
        self._ahead = task
        return task

    def _start_refresh(self) -> asyncio.Task[None]:
        task = self._refreshing
        if task is None or task.done():
            task = self._refreshing = asyncio.get_running_loop().create_task(self.refresh())
            task.add_done_callback(_log_failure)
        return task

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if "name[]" in request.query:
            return await self._filtered(request)
        encoder, content_type = choose_encoder(",".join(request.headers.getall("Accept", [])))
        if self.stale():  # a cycle ran since
            ahead = self._ahead is not None and not self._ahead.done()
            refreshing = self._start_refresh()
            # The refresh the daemon started after a live cycle is under way: the last
            # rendered cycle's families now, not a wait of the whole collection (30-90 ms
            # at 1M SIMs, more under load). Else wait for the refresh, unless a writer
            # holds the engine (a backlog's batch can hold it for seconds): then the last
            # rendered cycle's as well.
            if self._families is None or (
                not ahead and (self._collecting or not self.lock.locked())
            ):
                await asyncio.shield(refreshing)
        families = self._families
        assert families is not None
        cycle = self._bodies.get(content_type)
        if cycle is None:  # an unusual format: rendered once per cycle, off the loop
            cycle = await asyncio.to_thread(encoder, families)
            if families is self._families:
                self._bodies[content_type] = cycle
        live = encoder(self.live)
        # OpenMetrics: one end marker, after the live part's
        body = cycle.removesuffix(_EOF) + live
        headers = {"Content-Type": content_type}
        if gzip_accepted(",".join(request.headers.getall("Accept-Encoding", []))):
            body = gzip.compress(body, compresslevel=_GZIP_LEVEL)
            headers["Content-Encoding"] = "gzip"
        return web.Response(body=body, headers=headers)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("rendering /metrics failed", exc_info=task.exception())


_GZIP_LEVEL: Final = 1  # 41 kB at 1M SIMs: ~0.3 ms, 10x smaller on the wire


def metrics_handler(registry: CollectorRegistry) -> Handler:
    """The aiohttp handler of ``GET /metrics``.

    prometheus-client's own aiohttp handler: it negotiates the format from the Accept
    header (OpenMetrics for a Prometheus that asks for it, else the text format), honours
    ``?name[]=`` filters, and compresses when the client accepts it. The collection runs
    on the event loop: it must read the engine without racing the ingest task.
    """
    return make_aiohttp_handler(registry)
