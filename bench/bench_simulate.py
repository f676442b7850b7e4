"""Benchmark ``simwatch simulate``: records generated and seconds taken per scenario.

Usage: python bench/bench_simulate.py [SCENARIO ...] [--sims N] [--days D] [--seed S]
(default: the plain default config, 2,000 SIMs over 5 days, written to a temp dir).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import orjson

from simwatch.sim.config import SimConfig
from simwatch.sim.scenarios import SCENARIOS, write_scenario


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenarios", nargs="*", default=["default"])
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    for name in args.scenarios:
        config = SimConfig(seed=args.seed) if name == "default" else SCENARIOS[name](args.seed)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            paths = write_scenario(config, Path(tmp))
            secs = time.perf_counter() - t0
            truth = orjson.loads(paths["truth"].read_bytes())
            size = paths["records"].stat().st_size
        stats = truth["stats"]
        affected = ", ".join(
            f"{f['kind']}{f['dims'] or ''}: {len(f['iccids'])} SIMs" for f in truth["faults"]
        )
        print(
            f"{name}: {config.sims} SIMs x {config.days:g} d -> {stats['records']} records "
            f"(+{stats['duplicates']} dup, {stats['late']} late), {size / 1e6:.0f} MB, "
            f"{secs:.2f} s, {stats['records'] / secs:,.0f} rec/s"
            + (f"; {affected}" if affected else "")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
