"""``simwatch simulate``: a realistic IoT SIM fleet generator.

Draws an inventory of SIMs (customers, APNs, plans, caps, statuses) and plays their devices'
traffic as FORMATS.md records: ``usage`` per report window, ``session`` lifecycles with
daily scheduled resets per partner, and ``event`` signalling (attach, location updates,
detaches, rejects). It adds the noise of a real fleet (late and duplicated deliveries,
single device deaths, coverage gaps) and injectable faults with their ground truth.

Time advances in fixed chunks of event time: :meth:`FleetSimulator.advance` generates
every chunk that can hold a record arrived by ``until`` and returns the arrived lines in
arrival order, so the output does not depend on how ``advance`` is stepped. Report times
and payloads are drawn with numpy per chunk; each SIM's state machine then runs through
its chunk in time order.

The work is split by job: ``faults`` (fault kinds, FaultSpec, the ``--fault`` syntax),
``config`` (SimConfig), ``device`` (one device's state), ``records`` (record lines and
their delivery noise), ``machine`` (the devices' state machine), ``fleet``
(FleetSimulator), ``scenarios`` (presets, writing a run). This module is the command
line and re-exports the public names.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from simwatch.core.timeutil import format_rfc3339, parse_rfc3339
from simwatch.sim.config import DEFAULT_START, SimConfig
from simwatch.sim.faults import (
    FAULT_KINDS,
    GROUP_KINDS,
    REQUIRED_DIMS,
    SIM_KINDS,
    FaultSpec,
    parse_duration,
    parse_fault,
)
from simwatch.sim.fleet import CHUNK, INTERIM_PERIOD, FleetSimulator
from simwatch.sim.scenarios import SCENARIOS, write_scenario

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "CHUNK",
    "DEFAULT_START",
    "FAULT_KINDS",
    "GROUP_KINDS",
    "INTERIM_PERIOD",
    "REQUIRED_DIMS",
    "SCENARIOS",
    "SIM_KINDS",
    "FaultSpec",
    "FleetSimulator",
    "SimConfig",
    "main",
    "parse_duration",
    "parse_fault",
    "write_scenario",
]


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="simwatch simulate", description="Generate a synthetic IoT SIM fleet scenario."
    )
    p.add_argument("--out", type=Path, help="output directory")
    p.add_argument("--scenario", help="named preset (see --list-scenarios)")
    p.add_argument("--sims", type=int, help="number of SIMs (default 2000)")
    p.add_argument("--days", type=float, help="days to simulate (default 5)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--start", help="RFC 3339 start (default 2026-11-02T00:00:00Z)")
    p.add_argument(
        "--fault",
        action="append",
        default=[],
        help='extra fault "kind:key=value,...", e.g. '
        '"partner_outage:partner=26202,start=2026-11-04T10:00:00Z,duration=3h"',
    )
    p.add_argument("--list-scenarios", action="store_true", help="list presets and exit")
    return p


def main(argv: Sequence[str]) -> int:
    """The ``simwatch simulate`` command line."""
    parser = _build_parser()
    args = parser.parse_args(list(argv))
    if args.list_scenarios:
        for name, make in SCENARIOS.items():
            cfg = make(args.seed)
            kinds = ", ".join(f.kind for f in cfg.faults) or "no faults"
            print(f"{name:20s} {cfg.days:g} days, {kinds}")
        return 0
    if args.out is None:
        parser.print_usage(sys.stderr)
        print("simwatch simulate: --out is required", file=sys.stderr)
        return 2
    if args.scenario is not None and args.scenario not in SCENARIOS:
        print(
            f"simwatch simulate: unknown scenario {args.scenario!r}; known: {', '.join(SCENARIOS)}",
            file=sys.stderr,
        )
        return 2
    try:
        if args.scenario is not None:
            config = SCENARIOS[args.scenario](args.seed)
        else:
            config = SimConfig(seed=args.seed)
        if args.start is not None:
            start = parse_rfc3339(args.start)
            shift = start - config.start
            moved = tuple(
                replace(f, start=f.start + shift, end=f.end + shift) for f in config.faults
            )
            config = replace(config, start=start, faults=moved)
        if args.sims is not None:
            config = replace(config, sims=args.sims)
        if args.days is not None:
            config = replace(config, days=args.days)
        extra = tuple(parse_fault(text) for text in args.fault)
        config = replace(config, faults=config.faults + extra)
    except ValueError as exc:
        print(f"simwatch simulate: {exc}", file=sys.stderr)
        return 2
    paths = write_scenario(config, args.out)
    truth = orjson.loads(paths["truth"].read_bytes())
    stats = truth["stats"]
    print(
        f"{config.sims} SIMs, {config.days:g} days from {format_rfc3339(config.start)}: "
        f"{stats['records']} records ({stats['late']} late, {stats['duplicates']} duplicated)"
    )
    for f in truth["faults"]:
        print(f"  fault {f['kind']} {f['dims']} {f['start']}..{f['end']}: {len(f['iccids'])} SIMs")
    for key, path in paths.items():
        print(f"  {key}: {path}")
    return 0
