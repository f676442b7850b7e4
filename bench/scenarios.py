"""Scenario scores with figures: detection and resolution delay per injected fault.

    python bench/scenarios.py [--seeds 7 8 9] [SCENARIO ...]

Runs each named scenario (default: all presets) per seed through simulate -> replay ->
score, and prints a row per fault: incident, detection delay and its bound, resolution
delay, and any false pages. This is the same scoring the test suite asserts on.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from simwatch.sim.scenarios import SCENARIOS
from simwatch.sim.scoring import run_scenario


def minutes(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 60:.0f} min"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("scenarios", nargs="*", default=sorted(SCENARIOS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[7])
    args = parser.parse_args()
    failures = 0
    for name in args.scenarios:
        for seed in args.seeds:
            with tempfile.TemporaryDirectory() as tmp:
                result, _ = run_scenario(name, seed, Path(tmp))
            failures += not result.ok
            print(f"{name} seed={seed}: {'OK' if result.ok else 'FAIL'}")
            for f in result.faults:
                dims = f.dims or "(per SIM)"
                if f.missing_findings or f.kind in ("wrong_apn", "data_cap", "session_flapping"):
                    print(f"  {f.kind:<18} {dims}  missing findings: {len(f.missing_findings)}")
                    continue
                print(
                    f"  {f.kind:<18} {dims}  {f.incident_id or 'NOT FOUND'}  "
                    f"detect {minutes(f.detect_s)} (bound {minutes(f.detect_bound_s)})  "
                    f"resolve {minutes(f.resolve_s)} after the end"
                )
            for page in result.false_pages:
                print(f"  FALSE PAGE {page['dims']} opened {page['opened_at']}")
    print(f"{failures} failing scenario runs")


if __name__ == "__main__":
    main()
