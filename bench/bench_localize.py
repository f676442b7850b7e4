"""Time ``localize`` on large fleet-shaped cases (3,000 leaves and more).

Usage::

    python bench/bench_localize.py [--cases 30] [--apns 90] [--countries 22] [--seed 1] [--repeat 5]
        [--clock wall|cpu]

Builds cases with ``bench/rca_fleet.py``'s generator, widened to ``--apns`` APNs
in ``--countries`` countries (90 and 22, the most it can name: about 3,000 leaves a
case), loads them as ``bench/rca.py`` does, and times
``localize`` (the best of ``--repeat`` runs per case; CSV loading not counted). The
baseline in the same run is the greedy pick alone (``generalize_margin``
infinite, ``split_min_share`` above 1: no move to a parent or child and no
split), so the figure shows what the steps after the greedy pick cost.
``--clock cpu`` times with the thread's CPU time instead of the wall clock: on a
shared machine it leaves out the time the process waits for a core.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).parent))  # rca, rca_fleet

import rca
import rca_fleet

from simwatch.core.localize import LeafTable, LocalizeParams, localize

GREEDY_ONLY = dataclasses.replace(
    LocalizeParams(),
    generalize_margin=float("inf"),
    split_min_share=2.0,
)


def timed(table: LeafTable, params: LocalizeParams, repeat: int, clock: str = "wall") -> float:
    now = time.thread_time if clock == "cpu" else time.perf_counter
    best = float("inf")
    for _ in range(repeat):
        t0 = now()
        localize(table, params)
        best = min(best, now() - t0)
    return best * 1000.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--cases", type=int, default=30)
    ap.add_argument("--apns", type=int, default=90)
    ap.add_argument("--countries", type=int, default=22)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    args = ap.parse_args(argv)
    rca_fleet.N_APNS = (args.apns, args.apns)  # the generator's bounds, widened
    rca_fleet.N_COUNTRIES = (args.countries, args.countries)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        rca_fleet.write_cases(out, args.cases, args.seed)
        with (out / "anomaly.yaml").open(encoding="utf-8") as fh:
            cases = yaml.safe_load(fh)
        tables = [rca.load_case(out / f"{c['data']}.csv", int(c["timestamp"])) for c in cases]
    leaves = [len(t.affected) for t in tables]
    print(
        f"{len(tables)} cases, leaves per case: median {statistics.median(leaves):.0f}, "
        f"min {min(leaves)}, max {max(leaves)}"
    )
    for name, params in (("greedy pick only (baseline)", GREEDY_ONLY), ("default", None)):
        ms = [timed(t, params or LocalizeParams(), args.repeat, args.clock) for t in tables]
        print(
            f"{name:<28} per case: median {statistics.median(ms):.2f} ms, "
            f"p90 {statistics.quantiles(ms, n=10)[-1]:.2f} ms, max {max(ms):.2f} ms"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
