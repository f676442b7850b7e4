"""``simwatch replay`` against a plain pure-Python reader of the same file (issue 12).

    python bench/bench_replay.py [--scenario partner_outage] [--scalar]

Simulates a fleet (``simwatch simulate``: 2,000 SIMs, 5 days, ~650k records) into a
temporary folder, then in the same run times, on that file:

* the baseline: a 20-line pure-Python reader that parses each line with ``json.loads``
  and keeps each SIM's last-seen time in a dict (no validation, no state, no evaluation);
* ``simwatch replay`` in process (``replay_files``: columnar decode, batch apply, every
  evaluation cycle on event time), its ratio to the baseline printed;
* with ``--scalar``, the replay of before issue 12 (one record at a time through
  ``RecordDecoder.decode_line`` and ``Engine.ingest_record``, the same cycles).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from simwatch.core.clock import EvaluationClock
from simwatch.core.engine import Engine
from simwatch.core.records import Record, RecordDecoder
from simwatch.shell.inventory import iter_inventory
from simwatch.shell.replay import replay_files, tune_gc


def plain_reader(path: Path) -> int:
    """The baseline: last-seen time per SIM, nothing else."""
    last_seen: dict[str, str] = {}
    count = 0
    with path.open("rb") as handle:
        for line in handle:
            if not line.strip():
                continue
            obj = json.loads(line)
            when = obj.get("end") or obj.get("ts")
            iccid = obj.get("iccid")
            if isinstance(iccid, str) and isinstance(when, str) and when > last_seen.get(iccid, ""):
                last_seen[iccid] = when
            count += 1
    return count


def scalar_replay(inventory: Path, records: Path, wall_now: float) -> int:
    """The replay loop of before issue 12: one record at a time."""
    engine = Engine()
    engine.load_inventory(x for x in iter_inventory(inventory) if not hasattr(x, "reason"))
    decoder = RecordDecoder()
    clock = EvaluationClock(engine.config.eval_interval_s)
    cycles = 0
    with records.open("rb") as handle:
        for line in handle:
            if not line.strip():
                continue
            result = decoder.decode_line(line, wall_now)
            if type(result) is not Record:
                continue
            ts = result.ts
            if clock.passes(ts):
                clock.start_after(ts)
                for boundary in clock.due(ts):
                    engine.evaluate(boundary)
                    cycles += 1
            clock.observe(ts)
            engine.ingest_record(result)
    return cycles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenario", default="partner_outage")
    parser.add_argument("--scalar", action="store_true", help="also the replay of before")
    args = parser.parse_args()
    tune_gc()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        subprocess.run(  # noqa: S603 - our own CLI with fixed arguments
            [sys.executable, "-m", "simwatch.cli", "simulate", "--scenario", args.scenario,
             "--out", str(out)],
            check=True,
            capture_output=True,
        )  # fmt: skip
        records = out / "records.ndjson"
        inventory = out / "inventory.csv"
        lines = sum(1 for _ in records.open("rb"))
        started = time.perf_counter()
        plain_reader(records)
        plain_s = time.perf_counter() - started
        started = time.perf_counter()
        _, stats = replay_files(inventory, records, wall_now=time.time() + 10 * 86400)
        replay_s = time.perf_counter() - started
        print(f"{lines:,} lines ({args.scenario}, {records.stat().st_size / 1e6:.0f} MB)")
        print(f"plain pure-Python reader (baseline) {plain_s:7.2f} s  {lines / plain_s:>10,.0f}/s")
        print(
            f"simwatch replay (batched)           {replay_s:7.2f} s  {lines / replay_s:>10,.0f}/s"
            f"  ({stats.cycles:,} cycles)  ratio {plain_s / replay_s:.2f}x the baseline's speed"
        )
        if args.scalar:
            started = time.perf_counter()
            cycles = scalar_replay(inventory, records, time.time() + 10 * 86400)
            scalar_s = time.perf_counter() - started
            print(
                f"replay one record at a time (before) {scalar_s:6.2f} s  "
                f"{lines / scalar_s:>10,.0f}/s  ({cycles:,} cycles)  "
                f"batched is {scalar_s / replay_s:.1f}x faster"
            )


if __name__ == "__main__":
    main()
