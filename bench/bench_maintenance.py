"""Cost of maintenance windows per evaluation cycle: ``active_windows`` over N recurring
windows (weekly and daily RRULEs in several time zones, started a year ago).

Run: ``python bench/bench_maintenance.py --windows 10 100 1000``.
"""

from __future__ import annotations

import argparse
import statistics
import time

from simwatch.core.maintenance import Window, active_windows, window_from_json

NOW = 1_795_000_000.0
ZONES = ("Europe/Paris", "America/New_York", "Asia/Tokyo", "UTC")
RULES = ("FREQ=WEEKLY;BYDAY=SU", "FREQ=DAILY", "FREQ=MONTHLY;BYDAY=1SA", "FREQ=HOURLY;INTERVAL=6")


def windows(count: int) -> list[Window]:
    return [
        window_from_json(
            {
                "name": f"w{k}",
                "start": "2025-11-01T02:00",
                "timezone": ZONES[k % len(ZONES)],
                "duration_s": 7200,
                "rrule": RULES[k % len(RULES)],
                "scope": {"partner": [f"208{k % 100:02d}"]},
            },
            window_id=f"w{k}",
        )
        for k in range(count)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--windows", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    print(f"active_windows per cycle, median of {args.repeat} (a cycle a minute apart)")
    for count in args.windows:
        listed = windows(count)
        times = []
        for k in range(args.repeat):
            started = time.perf_counter()
            active_windows(listed, NOW + 60 * k)
            times.append(time.perf_counter() - started)
        print(f"  {count:5d} windows  {statistics.median(times) * 1000:8.2f} ms")


if __name__ == "__main__":
    main()
