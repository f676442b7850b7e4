"""``simwatch check-config``: load the configuration as ``simwatch run`` would, and report."""

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel

from simwatch.shell.settings.base import ConfigError
from simwatch.shell.settings.loading import load_settings
from simwatch.shell.settings.maintenance import config_windows
from simwatch.shell.settings.nats import NatsSourceSettings
from simwatch.shell.settings.root import Settings, api_token_file
from simwatch.shell.settings.sources import (
    FileSourceSettings,
    HttpSourceSettings,
    MqttSourceSettings,
    SimulatorSourceSettings,
)


def _describe_source(kind: str, source: BaseModel) -> str:
    if isinstance(source, SimulatorSourceSettings):
        detail = f"{source.sims} simulated SIMs, seed {source.seed}"
    elif isinstance(source, FileSourceSettings):
        detail = str(source.path)
    elif isinstance(source, MqttSourceSettings):
        scheme = "mqtts" if source.tls else "mqtt"
        detail = f"{scheme}://{source.host}:{source.port}, topics {', '.join(source.topics)}"
    elif isinstance(source, HttpSourceSettings):
        detail = f"{source.adapter} adapter, {source.base_url}"
    elif isinstance(source, NatsSourceSettings):
        detail = f"JetStream {source.stream} on {', '.join(source.servers)}"
    else:  # pragma: no cover - every kind is listed above
        detail = ""
    return f"  {kind} {getattr(source, 'name', '?')!r}: {detail}"


def summary(settings: Settings) -> list[str]:
    """Short human lines: sources by kind and name, the HTTP listen address and auth."""
    lines = ["sources:"]
    if settings.sources.any():
        lines += [_describe_source(kind, s) for kind, _i, s in settings.sources.items()]
    else:
        sim = SimulatorSourceSettings()
        lines.append(_describe_source("simulator", sim) + " (built-in: no source configured)")
    http = settings.http
    auth = "off"
    if http.auth_required():
        where = http.tokens_file or f"{api_token_file(settings)}, generated when missing"
        auth = f"on (tokens: {where})"
    lines.append(f"http: listening on {http.host}:{http.port}, auth {auth}")
    if settings.maintenance:  # only when there are some: the usual output is unchanged
        lines.append("maintenance windows (more through POST /api/v1/maintenance):")
        for window in config_windows(settings.maintenance):
            repeat = window.rrule or (f"cron {window.cron}" if window.cron else "once")
            scope = ", ".join(f"{k}={'|'.join(v)}" for k, v in window.scope.items())
            lines.append(
                f"  {window.id} {window.name!r}: {repeat} from {window.start.isoformat()} "
                f"{window.timezone}, {window.duration_s:g} s, scope {scope or 'the whole fleet'}"
            )
    tables = settings.engine.expectations
    if tables.plans or tables.customers:
        lines.append(
            f"expectations: {len(tables.plans)} plan(s), {len(tables.customers)} customer(s)"
        )
    return lines


def check_config_main(argv: Sequence[str]) -> int:
    """``simwatch check-config [--config.file PATH]``: 0 when the config loads, else 1."""
    parser = argparse.ArgumentParser(
        prog="simwatch check-config",
        description="Load the configuration (file, then SIMWATCH_ environment) and report.",
    )
    parser.add_argument(
        "--config.file",
        dest="config_file",
        type=Path,
        default=None,
        metavar="PATH",
        help="TOML configuration file (default: built-in defaults)",
    )
    args = parser.parse_args(list(argv))
    config_file: Path | None = args.config_file
    try:
        settings = load_settings(config_file)
    except ConfigError as exc:
        print(f"simwatch: bad config: {exc}", file=sys.stderr)
        return 1
    print(f"config OK: {config_file if config_file is not None else 'built-in defaults'}")
    for line in summary(settings):
        print(line)
    return 0
