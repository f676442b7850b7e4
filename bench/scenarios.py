"""Scenario scores with figures: detection and resolution delay per injected fault.

    python bench/scenarios.py [--seeds 7 8 9] [--regimes r1 r2 r3 mixed] [--sims 2000]
                              [--jobs 2] [--markdown] [SCENARIO ...]

Runs each named scenario (default: all presets) per data regime and seed through
simulate -> replay -> score, and prints a row per fault: incident, detection delay and
its bound, resolution delay, and any false pages; then a table per regime and fault kind
over every seed (median and worst detection and resolution, false pages, and the seeds
that missed the detection issue's target: 5 min for a fault the network reports, 2 record
intervals for a silent one (R3: the churn window), resolved 0-15 min after the end).
The bound the test suite asserts on is printed beside it, and beside the resolution the
"data back" delay: when a tenth of the fault's SIMs had sent data again after its end,
the earliest the data could tell anyone that it ended.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from simwatch.sim.config import REGIMES
from simwatch.sim.scenarios import SCENARIOS
from simwatch.sim.scoring import ScenarioScore, run_scenario

PER_SIM = ("wrong_apn", "data_cap", "session_flapping")


def minutes(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 60:.0f} min"


def _cell(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values) / 60:.0f} / {max(values) / 60:.0f}"


def _run(job: tuple[str, str, int, int | None]) -> ScenarioScore:
    regime, name, seed, sims = job
    with tempfile.TemporaryDirectory() as tmp:
        result, _ = run_scenario(name, seed, Path(tmp), regime=regime, sims=sims)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("scenarios", nargs="*", default=sorted(SCENARIOS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[7])
    parser.add_argument("--regimes", nargs="+", default=["r1"], choices=REGIMES)
    parser.add_argument("--sims", type=int, default=None, help="fleet size (preset: 2000)")
    parser.add_argument("--markdown", action="store_true", help="summary as a Markdown table")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel (processes)")
    args = parser.parse_args()
    failures = 0
    # (regime, scenario, kind) -> detect delays, resolve delays, misses, runs
    detect: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    resolve: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    back: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    missed: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    false_pages: dict[tuple[str, str], list[int]] = defaultdict(list)
    started = time.perf_counter()
    # seed by seed: a sweep stopped early still has every regime and scenario of the
    # seeds it finished
    jobs = [
        (regime, name, seed, args.sims)
        for seed in args.seeds
        for regime in args.regimes
        for name in args.scenarios
    ]
    pool = ProcessPoolExecutor(max_workers=max(args.jobs, 1))
    done = 0
    try:
        for (regime, name, seed, _), result in zip(jobs, pool.map(_run, jobs), strict=False):
            done += 1
            failures += not result.ok
            print(f"{regime} {name} seed={seed}: {'OK' if result.ok else 'FAIL'}", flush=True)
            false_pages[regime, name].append(len(result.false_pages))
            for f in result.faults:
                key = (regime, name, f.kind)
                dims = f.dims or "(per SIM)"
                if f.missing_findings or f.kind in PER_SIM:
                    print(f"  {f.kind:<18} {dims}  missing findings: {len(f.missing_findings)}")
                    if f.missing_findings:
                        missed[key].append(seed)
                    continue
                if not f.meets_target:
                    missed[key].append(seed)
                if f.detect_s is not None:
                    detect[key].append(f.detect_s)
                if f.resolve_s is not None:
                    resolve[key].append(f.resolve_s)
                if f.data_back_s is not None:
                    back[key].append(f.data_back_s)
                print(
                    f"  {f.kind:<18} {dims}  {f.incident_id or 'NOT FOUND'}  "
                    f"detect {minutes(f.detect_s)} (bound {minutes(f.detect_bound_s)}, "
                    f"target {minutes(f.target_s)})  "
                    f"resolve {minutes(f.resolve_s)} after the end "
                    f"(data back {minutes(f.data_back_s)})"
                    f"{'' if f.meets_target else '  MISSES TARGET'}"
                )
            for page in result.false_pages:
                print(f"  FALSE PAGE {page['dims']} opened {page['opened_at']}")
    except KeyboardInterrupt:  # Ctrl-C: the table of the runs that finished
        pool.shutdown(wait=False, cancel_futures=True)
        print(f"\ninterrupted after {done} of {len(jobs)} runs")
    else:
        pool.shutdown()
    elapsed = time.perf_counter() - started
    seeds = " ".join(str(s) for s in args.seeds)
    print()
    print(f"seeds {seeds}; fleet {args.sims or 'preset (2000)'} SIMs; {elapsed:.0f} s")
    head = (
        "| regime | scenario | fault | detect median / worst (min) | "
        "resolve median / worst (min) | data back median / worst (min) | "
        "seeds missing the target | false pages |"
    )
    rule = "|---|---|---|---|---|---|---|---|"
    if args.markdown:
        print(head)
        print(rule)
    keys = sorted({*detect, *resolve, *missed, *[(r, n, "") for r, n in false_pages]})
    for regime, name, kind in keys:
        if not kind and any(k[:2] == (regime, name) and k[2] for k in keys):
            continue  # the scenario's faults carry its false pages
        fp = sum(false_pages.get((regime, name), []))
        miss = ",".join(str(s) for s in missed.get((regime, name, kind), [])) or "none"
        cells = [
            regime,
            name,
            kind or "(none)",
            _cell(detect.get((regime, name, kind), [])),
            _cell(resolve.get((regime, name, kind), [])),
            _cell(back.get((regime, name, kind), [])),
            miss,
            str(fp),
        ]
        if args.markdown:
            print("| " + " | ".join(cells) + " |")
        else:
            print("  ".join(f"{c:<18}" for c in cells))
    print(f"{failures} failing scenario runs")


if __name__ == "__main__":
    main()
