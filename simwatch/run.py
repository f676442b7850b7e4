"""``simwatch run``: settings -> sources -> daemon -> HTTP server. Wiring only."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections import Counter
from typing import TYPE_CHECKING

import orjson
from aiohttp import web

from simwatch import __version__
from simwatch.api import make_app
from simwatch.config import ConfigError, SimulatorSourceSettings, load_settings
from simwatch.daemon import Daemon
from simwatch.metrics import DaemonHealth, EngineCollector, make_registry, metrics_handler
from simwatch.sources.cmp import CmpSource
from simwatch.sources.file import FileSource
from simwatch.sources.mqtt import MqttSource
from simwatch.sources.simulator import SimulatorSource

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from simwatch.config import HttpSettings, LogSettings, Settings
    from simwatch.inventory import InventoryRow
    from simwatch.sources.base import Source

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
    sources.extend(MqttSource(m, password=m.resolved_password()) for m in cfg.mqtt)
    sources.extend(CmpSource(h, token=h.resolved_token()) for h in cfg.http)
    return sources, inventory


def load_tokens(path: Path | None) -> frozenset[str]:
    if path is None:
        return frozenset()
    lines = path.read_text(encoding="utf-8").splitlines()
    return frozenset(t.strip() for t in lines if t.strip() and not t.lstrip().startswith("#"))


async def serve(daemon: Daemon, http: HttpSettings, tokens: frozenset[str]) -> None:
    health = DaemonHealth(started_at=daemon.health.started_at, queue_depth=daemon.queue.qsize)
    collector = EngineCollector(daemon.engine, health, daemon.source_stats, version=__version__)

    def sync_health(_result: object) -> None:
        health.evaluations_total = daemon.health.evaluations
        health.evaluation_failures_total = daemon.health.evaluation_failures
        health.last_evaluation_duration_s = daemon.health.last_evaluation_s
        health.last_evaluation_timestamp = daemon.health.last_evaluation_at
        health.sink_errors_total = Counter(daemon.health.sink_errors)

    daemon.on_cycle.append(sync_health)
    app = make_app(
        daemon.engine,
        now=daemon.clock,
        settings=http,
        tokens=tokens,
        ready=lambda: daemon.health.ready,
        metrics_handler=metrics_handler(make_registry(collector)),
        source_stats=daemon.source_stats,
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, http.host, http.port)
    await site.start()
    log.info("HTTP API on http://%s:%d/", http.host, http.port)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="simwatch run", description="Run the simwatch daemon.")
    parser.add_argument("--config.file", dest="config_file", help="TOML configuration file")
    parser.add_argument(
        "--config.check", dest="check", action="store_true", help="check the config and exit"
    )
    args = parser.parse_args(argv)
    if args.check:
        from simwatch.config import check_config_main  # noqa: PLC0415 - only for the check

        return check_config_main(["--config.file", args.config_file] if args.config_file else [])
    try:
        settings = load_settings(None if args.config_file is None else _path(args.config_file))
    except ConfigError as exc:
        print(f"simwatch: bad config: {exc}", file=sys.stderr)
        return 1
    setup_logging(settings.log)
    http = settings.http
    tokens = load_tokens(http.tokens_file)
    sources, inventory = build_sources(settings)
    daemon = Daemon(settings, sources, inventory=inventory)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(daemon.run(extra_tasks=[("http", lambda: serve(daemon, http, tokens))]))
    return 0


def _path(text: str) -> Path:
    from pathlib import Path  # noqa: PLC0415 - keeps the type-only import above honest

    return Path(text)
