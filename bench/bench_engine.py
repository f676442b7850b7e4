"""Engine benchmark: ingest records/s, evaluation-cycle time and memory per SIM.

    python bench/bench_engine.py --sims 100000 1000000 --reports 8

For each fleet size: an inventory of N SIMs is loaded, then `reports` usage records
per SIM (15-minute rhythm, 40 partners in 16 countries, 12 APNs) are decoded from NDJSON
bytes and applied one by one exactly as replay does (decode + dedup + ingest), then
evaluation cycles run (median of several). Memory: the state's own arrays (nbytes) and
the process's resident-set growth (after malloc_trim), both per SIM; the RSS includes
the duplicate filter's memory of recent record ids, which is bounded by its capacity
(2M ids by default), not by the fleet. One process, one core.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import statistics
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from benchfleet import inventory, usage_lines

from simwatch.core.engine import Engine, EngineConfig
from simwatch.core.records import Record, RecordDecoder

T0 = 1_794_960_000.0  # 2026-11-18T00:00:00Z


def rss_bytes() -> int:
    """Resident set size after handing freed heap back to the OS (glibc malloc_trim):
    without the trim, RSS counts the benchmark's own freed line buffers."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def run(n: int, reports: int, cycles: int) -> dict[str, float]:
    gc.collect()
    rss0 = rss_bytes()
    engine = Engine(replace(EngineConfig(), warmup_s=0.0, initial_capacity=n))
    engine.load_inventory(inventory(n))
    decoder = RecordDecoder()
    wall = T0 + 30 * 86400
    rng = np.random.default_rng(1)
    ingest_s = 0.0
    records = 0
    for k in range(reports):
        lines = usage_lines(n, T0 + k * 900.0, k, rng)
        started = time.perf_counter()
        for line in lines:
            rec = decoder.decode_line(line, wall)
            if isinstance(rec, Record):
                engine.ingest_record(rec)
        ingest_s += time.perf_counter() - started
        records += len(lines)
        del lines
    now = T0 + reports * 900.0 + 1800
    times = []
    for c in range(cycles):
        started = time.perf_counter()
        engine.evaluate(now + c * 60)
        times.append(time.perf_counter() - started)
    gc.collect()
    rss1 = rss_bytes()
    dedup = len(engine.ingestor.dedup)
    return {
        "sims": n,
        "records": records,
        "ingest_records_per_s": records / ingest_s,
        "eval_ms_median": statistics.median(times) * 1000,
        "eval_ms_max": max(times) * 1000,
        "state_bytes_per_sim": engine.state.nbytes() / n,
        "rss_bytes_per_sim": (rss1 - rss0) / n,
        "dedup_ids": dedup,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sims", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--reports", type=int, default=8, help="usage records per SIM")
    parser.add_argument("--cycles", type=int, default=7)
    args = parser.parse_args()
    for n in args.sims:
        result = run(n, args.reports, args.cycles)
        print(
            f"{result['sims']:>9,} SIMs  {result['records']:>10,} records  "
            f"ingest {result['ingest_records_per_s']:>9,.0f} rec/s  "
            f"eval median {result['eval_ms_median']:7.1f} ms (max {result['eval_ms_max']:.1f})  "
            f"state {result['state_bytes_per_sim']:6.1f} B/SIM  "
            f"RSS {result['rss_bytes_per_sim']:6.1f} B/SIM "
            f"(incl. {result['dedup_ids']:,} remembered record ids)"
        )


if __name__ == "__main__":
    main()
