"""``simwatch run``: settings -> sources -> daemon -> HTTP server. Wiring only."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import secrets
import socket
import sqlite3
import sys
from typing import TYPE_CHECKING

import orjson
from aiohttp import web

from simwatch import __version__
from simwatch.http.app import make_app
from simwatch.http.console import Sessions
from simwatch.http.console_views import normalize_query, series_points
from simwatch.http.metrics import CachedMetrics, EngineCollector, HistoryCollector
from simwatch.service.cluster import cluster_node
from simwatch.service.daemon import Daemon
from simwatch.shell.files import write_atomically
from simwatch.shell.health import DaemonHealth
from simwatch.shell.history import HistoryStore, HistoryWriter
from simwatch.shell.maintenance import FILE_NAME as MAINTENANCE_FILE
from simwatch.shell.maintenance import MaintenanceStore
from simwatch.shell.push import PushReceiver
from simwatch.shell.settings import (
    ConfigError,
    MetricsSettings,
    SimulatorSourceSettings,
    api_token_file,
    config_windows,
    load_settings,
    read_tokens,
)
from simwatch.sinks.alertmanager import AlertmanagerSink
from simwatch.sinks.influx.sink import InfluxSink
from simwatch.sinks.mqtt import MqttSink
from simwatch.sources.cmp.source import CmpSource
from simwatch.sources.file import FileSource
from simwatch.sources.mqtt import MqttSource
from simwatch.sources.nats import NatsSource
from simwatch.sources.simulator import SimulatorSource
from simwatch.sources.webhook import WebhookSource

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

    from simwatch.core.engine import CycleResult
    from simwatch.core.inventory import InventoryRow
    from simwatch.core.maintenance import Window
    from simwatch.core.records import Rejection
    from simwatch.http.app import SimForward
    from simwatch.shell.health import ClusterStats
    from simwatch.shell.push import RejectionWriter
    from simwatch.shell.settings import ConsoleSettings, HttpSettings, LogSettings, Settings
    from simwatch.shell.sink_contract import Sink
    from simwatch.shell.source_contract import Source

log = logging.getLogger("simwatch")


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out).decode()


def setup_logging(settings: LogSettings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.format == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level.upper())


def build_sources(settings: Settings) -> tuple[list[Source], list[InventoryRow]]:
    """The configured sources (the built-in simulator when none is configured)."""
    cfg = settings.sources
    simulators = list(cfg.simulator) or ([] if cfg.any() else [SimulatorSourceSettings()])
    sources: list[Source] = []
    inventory: list[InventoryRow] = []
    for sim in simulators:
        source = SimulatorSource(sim)
        inventory.extend(source.inventory_rows())
        sources.append(source)
    sources.extend(FileSource(f) for f in cfg.file)
    # The MQTT journal keeps its position in the checkpoints: off without them (as in
    # checkpoints_wanted: none with a simulator source). Its default place: state_dir.
    journals = settings.checkpoint.enabled and not simulators
    for m in cfg.mqtt:
        mqtt = m if journals else m.model_copy(update={"journal": False})
        sources.append(
            MqttSource(mqtt, password=m.resolved_password(), state_dir=settings.state_dir)
        )
    sources.extend(CmpSource(h, token=h.resolved_token()) for h in cfg.http)
    # JetStream: acknowledged once a checkpoint covers a message (wire_nats turns that
    # off when the daemon runs without checkpoints)
    sources.extend(NatsSource(n) for n in cfg.nats)
    for i, w in enumerate(cfg.webhook):
        where = f"sources.webhook[{i}]"
        try:
            password = w.resolved_password()
        except (OSError, ValueError) as exc:
            message = f"{where}.password_file: cannot read {w.password_file}: {exc}"
            raise ConfigError([message]) from exc
        try:
            secret = w.resolved_signature_secret()
        except (OSError, ValueError) as exc:
            message = f"{where}.signature_secret_file: cannot read {w.signature_secret_file}: {exc}"
            raise ConfigError([message]) from exc
        sources.append(
            WebhookSource(
                w, state_dir=settings.state_dir, password=password, signature_secret=secret
            )
        )
    return sources, inventory


def dead_letter_writer(daemon: Daemon) -> RejectionWriter:
    """How a webhook source keeps what it refuses: counted by the engine and appended to
    the daemon's dead-letter file, as ingest does with its own rejections."""

    async def write(rejections: Sequence[Rejection], source: str) -> None:
        now = daemon.clock()
        for rejection in rejections:
            daemon.engine.count_rejection(rejection)

        def append() -> None:
            for rejection in rejections:
                daemon.dead_letter.write(rejection, source=source, at=now)
            daemon.dead_letter.flush()

        await asyncio.to_thread(append)

    return write


def wire_webhooks(daemon: Daemon) -> None:
    """Give the webhook sources the daemon's dead letters and checkpoint mode."""
    for source in daemon.sources:
        if isinstance(source, WebhookSource):
            source.rejections = dead_letter_writer(daemon)
            source.checkpoints = daemon.checkpoints is not None


def wire_nats(daemon: Daemon) -> None:
    """Without checkpoints a JetStream source acknowledges what ingest applied."""
    for source in daemon.sources:
        if isinstance(source, NatsSource):
            source.ack_on_checkpoint = daemon.checkpoints is not None


def checkpoints_wanted(settings: Settings, sources: Sequence[Source]) -> bool:
    """``checkpoint.enabled``, except with a simulator source: it regenerates its history
    from "now" at every start, which would be applied on top of a restored state."""
    if not settings.checkpoint.enabled:
        log.info("checkpoints off (checkpoint.enabled = false): the state lives in memory only")
        return False
    if any(isinstance(s, SimulatorSource) for s in sources):
        log.info("checkpoints off: the simulator source regenerates its history at every start")
        return False
    return True


def api_url(http: HttpSettings) -> str:
    """simwatch's own base URL for links (an unspecified listen address: this host)."""
    host = http.host
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - recognising the wildcard, not binding
        host = socket.getfqdn()
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{http.port}"


def build_sinks(settings: Settings) -> list[Sink]:
    """The configured output sinks (none by default)."""
    cfg = settings.sinks
    sinks: list[Sink] = []
    if cfg.alertmanager is not None:
        sinks.append(
            AlertmanagerSink(
                cfg.alertmanager,
                simwatch_url=api_url(settings.http),
                console=settings.console.enabled,
            )
        )
    if cfg.influxdb is not None:
        sinks.append(InfluxSink(cfg.influxdb, token=cfg.influxdb.resolved_token()))
    if cfg.mqtt is not None:
        sinks.append(MqttSink(cfg.mqtt, password=cfg.mqtt.resolved_password()))
    return sinks


def api_tokens(settings: Settings) -> frozenset[str]:
    """The bearer tokens the API accepts (blocking; at start, before the loop runs).

    Auth off: none. ``http.tokens_file`` set: its tokens. Otherwise one token kept in
    ``<state_dir>/api-token``, generated (256 random bits, mode 0600) when missing, so the
    API is never open and a restart keeps the token its clients already have.
    """
    http = settings.http
    if not http.auth_required():
        return frozenset()
    if http.tokens_file is not None:
        return read_tokens(http.tokens_file)
    path = api_token_file(settings)
    tokens = read_tokens(path) if path.is_file() else frozenset()
    if not tokens:
        token = secrets.token_urlsafe(32)
        # atomically: a reader (a client, ``tail -n1``) never sees the file empty
        text = f"# the simwatch API token: 'Authorization: Bearer <token>'\n{token}\n"
        write_atomically(path, text.encode(), mode=0o600)
        tokens = frozenset({token})
        log.warning("http: generated an API token in %s (set http.tokens_file to choose)", path)
    else:
        log.info("http: API token from %s", path)
    return tokens


def build_history(settings: Settings, daemon: Daemon) -> HistoryWriter | None:
    """The console's per-SIM history (blocking: opens the sqlite file at start), fed by the
    daemon's applied records, inventory and cycles; None with the console off."""
    console = settings.console
    if not console.enabled:
        return None
    path = console.history_file or settings.state_dir / "history.sqlite"
    store = HistoryStore(path, days=console.history_days)
    writer = HistoryWriter(store, max_pending=console.history_max_pending, clock=daemon.clock)
    daemon.on_records.append(writer.add_records)

    def ids(rows: Sequence[InventoryRow]) -> None:
        for row in rows:
            if row.imsi:
                writer.add_ids([("imsi", row.imsi, row.iccid)])
            # an extra column keeps its header's case; stored as the search box reads it
            key = next((k for k in row.extra if k.lower() == "msisdn"), "")
            msisdn = normalize_query(row.extra.get(key, ""))
            if msisdn:
                writer.add_ids([("msisdn", msisdn, row.iccid)])

    daemon.on_inventory.append(ids)
    daemon.on_cycle.append(lambda _result: writer.add_series(series_points(daemon.engine)))
    log.info("console history in %s (%d days)", path, console.history_days)
    return writer


async def serve(
    daemon: Daemon,
    http: HttpSettings,
    tokens: frozenset[str],
    metrics: MetricsSettings | None = None,
    *,
    sim_forward: SimForward | None = None,
    cluster_stats: ClusterStats | None = None,
    console: ConsoleSettings | None = None,
    history: HistoryWriter | None = None,
    maintenance: MaintenanceStore | None = None,
) -> None:
    metrics = metrics or MetricsSettings()
    health = DaemonHealth(started_at=daemon.health.started_at, queue_depth=daemon.queue.qsize)
    collector = EngineCollector(
        daemon.engine,
        health,
        daemon.source_stats,
        version=__version__,
        top_n=metrics.top_n,
        sink_stats=daemon.sink_stats,
        sim_series=metrics.sim_series_max if metrics.sim_series else 0,
        checkpoint_stats=daemon.checkpoint_stats,
        cluster_stats=lambda: cluster_stats,
    )

    def sync_health(_result: object) -> None:
        health.evaluations_total = daemon.health.evaluations
        health.evaluation_failures_total = daemon.health.evaluation_failures
        health.last_evaluation_duration_s = daemon.health.last_evaluation_s
        health.last_evaluation_timestamp = daemon.health.last_evaluation_at

    daemon.on_cycle.append(sync_health)
    # the per-cycle families rendered off the loop once per cycle (issue 12)
    cached = CachedMetrics(
        collector,
        lock=daemon.batch_lock,
        extra=() if history is None else (HistoryCollector(history),),  # console history
    )

    def refresh_metrics(result: CycleResult) -> None:
        if result.evaluation.now >= daemon.clock() - 2 * daemon.settings.engine.eval_interval_s:
            cached.refresh_soon()  # a live cycle (a backlog's are rendered when scraped)

    daemon.on_cycle.append(refresh_metrics)
    sessions = None
    if console is not None and console.enabled:
        sessions = Sessions(console.session_ttl_s, console.max_sessions, daemon.clock)
    app = make_app(
        daemon.engine,
        now=daemon.clock,
        settings=http,
        tokens=tokens,
        ready=lambda: daemon.health.ready,
        metrics_handler=cached.handle,
        source_stats=daemon.source_stats,
        receivers=[s for s in daemon.sources if isinstance(s, PushReceiver)],
        sim_forward=sim_forward,
        console=sessions,
        history=None if history is None else history.store,
        maintenance=maintenance,
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, http.host, http.port)
    await site.start()
    log.info("HTTP API on http://%s:%d/", http.host, http.port)
    if sessions is not None:
        log.info("console on %s/ui/ (sign in with the API token)", api_url(http))
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(argv: Sequence[str]) -> int:  # noqa: PLR0911 - one exit per start-up failure
    parser = argparse.ArgumentParser(prog="simwatch run", description="Run the simwatch daemon.")
    parser.add_argument("--config.file", dest="config_file", help="TOML configuration file")
    parser.add_argument(
        "--config.check", dest="check", action="store_true", help="check the config and exit"
    )
    args = parser.parse_args(argv)
    if args.check:
        from simwatch.shell.settings import check_config_main  # noqa: PLC0415 - only for the check

        return check_config_main(["--config.file", args.config_file] if args.config_file else [])
    try:
        settings = load_settings(None if args.config_file is None else _path(args.config_file))
    except ConfigError as exc:
        print(f"simwatch: bad config: {exc}", file=sys.stderr)
        return 1
    setup_logging(settings.log)
    http = settings.http
    try:
        tokens = api_tokens(settings)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"simwatch: http: cannot read or create the API token: {exc}", file=sys.stderr)
        return 1
    try:
        sources, inventory = build_sources(settings)
    except ConfigError as exc:
        print(f"simwatch: bad config: {exc}", file=sys.stderr)
        return 1
    daemon = Daemon(
        settings,
        sources,
        sinks=build_sinks(settings),
        inventory=inventory,
        checkpoints=checkpoints_wanted(settings, sources),
    )
    wire_webhooks(daemon)
    wire_nats(daemon)
    try:
        history = build_history(settings, daemon)
    except (OSError, sqlite3.Error) as exc:
        print(f"simwatch: console.history_file: cannot open the history: {exc}", file=sys.stderr)
        return 1
    try:
        maintenance = build_maintenance(settings, daemon)
    except ValueError as exc:
        print(f"simwatch: {exc}", file=sys.stderr)
        return 1
    with contextlib.suppress(KeyboardInterrupt):
        # [cluster]: leases, partition assignment, reports, the leader's merge
        node = cluster_node(daemon, api_url(http))
        forward = node.forward_sim if node is not None else None
        stats = node.stats if node is not None else None
        tasks: list[tuple[str, Callable[[], object]]] = [
            (
                "http",
                lambda: serve(
                    daemon,
                    http,
                    tokens,
                    settings.metrics,
                    sim_forward=forward,
                    cluster_stats=stats,
                    console=settings.console,
                    history=history,
                    maintenance=maintenance,
                ),
            )
        ]
        if node is not None:
            tasks.append(("cluster", node.run))
        if history is not None:
            tasks.append(("history", history.run))
        with asyncio.Runner(loop_factory=loop_factory(settings.event_loop)) as runner:
            runner.run(daemon.run(extra_tasks=tasks))
    if history is not None:
        history.store.close()
    return 0


def build_maintenance(settings: Settings, daemon: Daemon) -> MaintenanceStore:
    """The maintenance windows: the config's and those the API made, kept in
    ``<state_dir>/maintenance.json``; every change goes to the daemon's engine (blocking
    read at start; ``ValueError`` naming the file when it cannot be read)."""

    def to_engine(windows: tuple[Window, ...]) -> None:
        daemon.engine.maintenance = windows

    store = MaintenanceStore(
        config_windows(settings.maintenance),
        settings.state_dir / MAINTENANCE_FILE,
        on_change=to_engine,
        clock=daemon.clock,
    )
    store.load()
    return store


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """The event loop constructor for ``settings.event_loop``."""
    if name == "uvloop":
        import uvloop  # noqa: PLC0415 - imported only when chosen

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def _path(text: str) -> Path:
    from pathlib import Path  # noqa: PLC0415 - keeps the type-only import above honest

    return Path(text)
