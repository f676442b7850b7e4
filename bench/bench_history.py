"""The console's per-SIM history (``simwatch.shell.history``): disk cost, write rate, reads.

    python bench/bench_history.py --sims 20000 --days 2 --interval 900

Writes ``days`` of usage records for ``sims`` SIMs, one every ``interval`` seconds each
(FORMATS.md fields as the daemon keeps them: 19-digit ICCID, APN, partner, bytes), in
batches of 50,000 rows as the history writer does once a second, into a fresh sqlite file
in a temp directory. Prints the write rate, the file's bytes per record and per SIM (for
this rhythm and for others, linear in records), the time to read one SIM's last 48 h
(median and p99 over 300 random SIMs: what the SIM page waits for) and to prune a day.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from benchfleet import APNS, PARTNERS, iccid

from simwatch.shell.history import DAY_S, HistoryStore, Row

BATCH = 50_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sims", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--interval", type=float, default=900.0, help="seconds between reports")
    args = parser.parse_args()
    start = 20_000 * DAY_S  # a fixed UTC midnight (2024-10-04): the same run on any date
    per_sim = int(args.days * DAY_S / args.interval)
    rng = random.Random(1)
    sims = [iccid(i) for i in range(args.sims)]
    attrs = [(APNS[i % len(APNS)], "".join(PARTNERS[i % len(PARTNERS)])) for i in range(args.sims)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "history.sqlite"
        store = HistoryStore(path, days=args.days + 1)
        written = 0
        write_s = 0.0
        batch: list[Row] = []
        for k in range(per_sim):
            t = start + k * args.interval
            for i, sim in enumerate(sims):
                apn, partner = attrs[i]
                batch.append((sim, int(t + i % 600), 0, 1540, None, None, apn, partner))
                if len(batch) >= BATCH:
                    began = time.perf_counter()
                    store.write(batch)
                    write_s += time.perf_counter() - began
                    written += len(batch)
                    batch = []
        if batch:
            began = time.perf_counter()
            store.write(batch)
            write_s += time.perf_counter() - began
            written += len(batch)
        store._write.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # noqa: SLF001 - all in the file
        size = sum(p.stat().st_size for p in Path(tmp).iterdir())
        end = start + per_sim * args.interval
        reads = []
        for _ in range(300):
            sim = rng.choice(sims)
            began = time.perf_counter()
            found = store.records([sim], end - 48 * 3600, end)
            reads.append(time.perf_counter() - began)
            assert found, sim
        began = time.perf_counter()
        store.prune(end + DAY_S)
        prune_s = time.perf_counter() - began
        store.close()
    per_record = size / written
    print(f"{args.sims} SIMs x {per_sim} records ({args.days} d every {args.interval:.0f} s)")
    print(f"write: {written} records in {write_s:.1f} s = {written / write_s:,.0f} records/s")
    print(f"disk: {size / 1e6:.1f} MB = {per_record:.1f} bytes per record")
    for interval in (60.0, 300.0, 900.0, 3600.0, 86_400.0):
        records = args.days * DAY_S / interval
        print(
            f"  per SIM reporting every {interval:>6.0f} s for {args.days} d: "
            f"{records:>6.0f} records, {records * per_record / 1e3:>8.1f} kB"
        )
    reads.sort()
    print(
        f"read one SIM's 48 h: median {statistics.median(reads) * 1e3:.2f} ms, "
        f"p99 {reads[int(len(reads) * 0.99)] * 1e3:.2f} ms"
    )
    print(f"prune (drop a day): {prune_s * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
