"""``simwatch demo``: a simulated fleet with an injected fault, replayed — no setup needed.

Generates a scenario (default ``two_faults``: a partner outage and an unrelated APN
outage on 2,000 SIMs over five days) into a temporary folder, replays it on event time
exactly as ``simwatch replay`` does, and prints what was injected next to what simwatch
found: the incidents, and for faults of single SIMs (which page no one) what support
reads of each of those SIMs in the middle of its fault, as the per-SIM view says it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from simwatch.core.engine import Engine
from simwatch.shell.replay import incident_table, replay_files, summary, text_summary, tune_gc
from simwatch.sim.scenarios import SCENARIOS, write_scenario
from simwatch.sim.scoring import due_probes, probe_times

if TYPE_CHECKING:
    from collections.abc import Sequence

    from simwatch.core.diagnosis import Finding
    from simwatch.core.engine import CycleResult


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
        probes = probe_times(truth)
        read: dict[str, list[Finding]] = {}
        engine = Engine()

        def on_cycle(result: CycleResult) -> None:
            read.update(due_probes(probes, engine, result.evaluation.now))

        engine, stats = replay_files(
            paths["inventory"], paths["records"], on_cycle=on_cycle, engine=engine
        )
        print(incident_table(engine, engine.incidents.all()))
        if read:
            print()
            print(per_sim_text(truth, read))
        print()
        print(text_summary(summary(engine, stats)))
    sys.stdout.flush()
    return 0


def per_sim_text(truth: dict[str, Any], read: dict[str, list[Finding]]) -> str:
    """Per fault of single SIMs, each SIM's finding codes in the middle of the fault, and
    the first SIM's hints in full (what a support agent reads out)."""
    lines = ["per-SIM faults, what support reads of each SIM in the middle of its fault:"]
    for fault in truth["faults"]:
        iccids = [i for i in fault.get("iccids") or [] if i in read]
        if fault["dims"] or not iccids:
            continue
        lines.append(f"  {fault['kind']}:")
        for iccid in iccids:
            codes = ", ".join(f.code for f in read[iccid]) or "nothing found"
            lines.append(f"    {iccid}  {codes}")
        lines.extend(f"      {f.code}: {f.hint}" for f in read[iccids[0]])
    return "\n".join(lines)
