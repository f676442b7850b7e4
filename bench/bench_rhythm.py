"""Benchmark of the rhythm model: classify() over 1M SIMs with mixed learned histories.

Run: ``python bench/bench_rhythm.py [--sims 1000000] [--runs 9]``.

Prototype SIMs of six profiles (1-min, 15-min, hourly, daily, 07-19 daytime 15-min,
4-h heartbeat with events) learn 6 days of jittered arrivals through ``observe``; their
columns are then tiled to the requested fleet size, with 3 % never-seen rows. Prints the
median classify / overdue_ratio time, the state mix, bytes per SIM and the cost of
``observe`` / ``observe_many`` per record.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from simwatch.core.rhythm import RhythmModel, SimState

T0 = 1795132800.0
HOUR = 3600.0
DAY = 86400.0
COLUMNS = ("_last", "_mu", "_var", "_gmax", "_mask_cur", "_mask_prev", "_first", "_n")


def _streams(rng: np.random.Generator, per_profile: int) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    days = 6.0
    for _ in range(per_profile):
        for period in (60.0, 900.0, HOUR, DAY):
            base = T0 + rng.uniform(0, period) + np.arange(0.0, days * DAY, period)
            out.append(np.sort(base + rng.uniform(-0.05, 0.05, base.size) * period))
        day_parts = [
            T0 + d * DAY + 7 * HOUR + np.arange(0.0, 12 * HOUR + 1, 900.0) for d in range(6)
        ]
        out.append(np.concatenate(day_parts) + rng.uniform(-20, 20, 49 * 6))
        beats = T0 + np.arange(0.0, days * DAY, 4 * HOUR)
        events = T0 + rng.uniform(0, days * DAY, rng.poisson(days * 24))
        out.append(np.sort(np.concatenate([beats, events])))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sims", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    rng = np.random.default_rng(42)

    streams = _streams(rng, 40)
    proto = RhythmModel(len(streams))
    t_obs = time.perf_counter()
    records = 0
    for row, ts in enumerate(streams):
        for t in ts.tolist():
            proto.observe(row, t)
        records += ts.size
    observe_ns = (time.perf_counter() - t_obs) / records * 1e9

    rows = np.concatenate([np.full(s.size, i) for i, s in enumerate(streams)])
    flat = np.concatenate(streams)
    batch = RhythmModel(len(streams))
    t_many = time.perf_counter()
    batch.observe_many(rows, flat)
    many_ns = (time.perf_counter() - t_many) / flat.size * 1e9

    n = args.sims
    model = RhythmModel(n)
    pick = rng.integers(0, len(streams), n)
    for name in COLUMNS:
        getattr(model, name)[:] = getattr(proto, name)[pick]
    model._last += rng.uniform(-600.0, 0.0, n)  # noqa: SLF001 - bench fill, spread a little
    never = rng.random(n) < 0.03
    for name in COLUMNS:
        getattr(model, name)[never] = 0
    model._last[never] = np.nan  # noqa: SLF001 - bench fill
    now = T0 + 6 * DAY + 300.0

    timings = []
    for _ in range(args.runs):
        t = time.perf_counter()
        states = model.classify(now, n)
        timings.append(time.perf_counter() - t)
    ratio_t = []
    for _ in range(args.runs):
        t = time.perf_counter()
        model.overdue_ratio(now, n)
        ratio_t.append(time.perf_counter() - t)

    diurnal = int(np.count_nonzero(model._mask_prev >= (1 << 31)))  # noqa: SLF001 - stats
    mix = {s.name: int(np.count_nonzero(states == s)) for s in SimState}
    print(f"sims                      {n}")
    print(f"diurnal rows              {diurnal} ({diurnal / n:.1%})")
    print(f"state mix                 {mix}")
    print(f"classify median           {statistics.median(timings) * 1e3:.1f} ms")
    print(f"classify min              {min(timings) * 1e3:.1f} ms")
    print(f"overdue_ratio median      {statistics.median(ratio_t) * 1e3:.1f} ms")
    print(f"bytes per SIM (nbytes)    {model.nbytes() / n:.1f}")
    print(f"observe per record        {observe_ns:.0f} ns ({records} records)")
    print(f"observe_many per record   {many_ns:.0f} ns")


if __name__ == "__main__":
    main()
