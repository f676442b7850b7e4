"""Cost of set expectations per evaluation: per-SIM states at N SIMs, learned only
(the baseline, measured in the same run) against every SIM with a set interval, with set
active hours in a time zone, and a tenth of the fleet with active hours.

Run: ``python bench/bench_expectations.py --sims 1000000``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import numpy as np
from benchfleet import inventory

from simwatch.core.evaluate import sim_states
from simwatch.core.schedule import Expectation, ExpectationTables
from simwatch.core.state import FleetState

NOW = 1_795_000_000.0  # 2026-11-18T...Z


def fleet(n: int, tables: ExpectationTables, share: float) -> FleetState:
    """``n`` SIMs reporting every 15 min for a day; the first ``share`` of them on plan
    ``set`` (whose expectation ``tables`` gives)."""
    state = FleetState(capacity=n)
    state.expectations = tables
    cut = int(n * share)
    rows = (replace(r, plan="set") if i < cut else r for i, r in enumerate(inventory(n)))
    state.load_inventory(rows)
    rng = np.random.default_rng(1)
    offsets = rng.uniform(0, 900, n)
    for k in range(5):  # arrivals in time order: observe() per arrival, as ingest does
        ts = NOW - 86400 + k * 900 + offsets
        state.rhythm.observe_many(np.arange(n), ts)
    return state


def timed(state: FleetState, repeat: int) -> float:
    times = []
    for k in range(repeat):
        started = time.perf_counter()
        sim_states(state, NOW + k * 60)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sims", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    cases = [
        ("learned only (baseline)", ExpectationTables(), 0.0),
        ("every SIM: expected_interval_s", ExpectationTables(
            plans={"set": Expectation(expected_interval_s=3600)}), 1.0),
        ("every SIM: active_hours Europe/Paris", ExpectationTables(
            plans={"set": Expectation(active_hours="Mo-Fr 07:00-19:00",
                                      timezone="Europe/Paris")}), 1.0),
        ("10% of SIMs: active_hours Europe/Paris", ExpectationTables(
            plans={"set": Expectation(active_hours="Mo-Fr 07:00-19:00",
                                      timezone="Europe/Paris")}), 0.1),
    ]  # fmt: skip
    print(f"per-SIM states (sim_states) at {args.sims:,} SIMs, median of {args.repeat}")
    for name, tables, share in cases:
        state = fleet(args.sims, tables, share)
        columns = sum(
            getattr(state.cols, c).nbytes
            for c in ("expect_interval", "expect_hours", "expect_from")
        )
        print(
            f"  {name:40s} {timed(state, args.repeat):8.1f} ms"
            f"   (expectation columns {columns / args.sims:.0f} B/SIM)"
        )


if __name__ == "__main__":
    main()
