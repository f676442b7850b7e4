"""``simwatch demo``: a simulated fleet with an injected fault, replayed — no setup needed.

Generates a scenario (default ``two_faults``: a partner outage and an unrelated APN
outage on 2,000 SIMs over five days) into a temporary folder, replays it on event time
exactly as ``simwatch replay`` does, and prints what was injected next to what simwatch
found.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from simwatch.shell.replay import incident_table, replay_files, summary, text_summary, tune_gc
from simwatch.sim.scenarios import SCENARIOS, write_scenario

if TYPE_CHECKING:
    from collections.abc import Sequence


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="simwatch demo", description=__doc__.split("\n")[0])
    parser.add_argument("--scenario", default="two_faults", choices=sorted(SCENARIOS))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", type=Path, help="write the scenario files here and keep them")
    args = parser.parse_args(argv)
    tune_gc()
    with tempfile.TemporaryDirectory(prefix="simwatch-demo-") as tmp:
        out = args.keep or Path(tmp)
        print(f"simulating scenario {args.scenario!r} (seed {args.seed}) into {out} ...")
        paths = write_scenario(SCENARIOS[args.scenario](args.seed), out)
        truth = orjson.loads(paths["truth"].read_bytes())
        print("injected:")
        for fault in truth["faults"]:
            what = fault["dims"] or f"{len(fault['iccids'])} SIMs"
            print(f"  {fault['kind']:<18} {what}  {fault['start']} .. {fault['end']}")
        print("replaying ...\n")
        engine, stats = replay_files(paths["inventory"], paths["records"])
        print(incident_table(engine, engine.incidents.all()))
        print()
        print(text_summary(summary(engine, stats)))
    sys.stdout.flush()
    return 0
