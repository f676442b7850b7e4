"""Throughput of RecordDecoder.decode_line on realistic FORMATS.md lines.

Run: ``python bench/bench_decode.py [N]``. Prints records/s for usage, session and event
lines and for a realistic mix (80 % usage, 15 % session, 5 % event), plus decode_payload
on 100-record JSON arrays and the Deduplicator.
"""

from __future__ import annotations

import random
import sys
import time

import orjson

from simwatch.core.dedup import Deduplicator
from simwatch.core.records import Record, RecordDecoder
from simwatch.core.timeutil import format_rfc3339

NOW = 1795083300.0  # 2026-11-20T10:15:00Z
PARTNERS = [("262", "02"), ("262", "01"), ("234", "15"), ("310", "410"), ("208", "10")]
APNS = ["meters.acme", "iot.fleet", "internet"]


def _iccid(rng: random.Random) -> str:
    return "8931440" + f"{rng.randrange(10**12):012d}"


def make_lines(n: int, mix: str, seed: int = 1) -> list[bytes]:
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        kind = mix if mix != "mix" else rng.choices(["usage", "session", "event"], [80, 15, 5])[0]
        mcc, mnc = rng.choice(PARTNERS)
        end = NOW - 900 * rng.randrange(0, 96)  # 15-minute windows over a day
        obj: dict[str, object]
        if kind == "usage":
            obj = {
                "kind": "usage",
                "record_id": f"u-{i}",
                "iccid": _iccid(rng),
                "start": format_rfc3339(end - 900),
                "end": format_rfc3339(end),
                "bytes_up": rng.randrange(5000),
                "bytes_down": rng.randrange(5000),
                "apn": rng.choice(APNS),
                "mcc": mcc,
                "mnc": mnc,
                "rat": "LTE-M",
            }
        elif kind == "session":
            obj = {
                "kind": "session",
                "record_id": f"s-{i}",
                "iccid": _iccid(rng),
                "session_id": f"{rng.getrandbits(32):08x}",
                "status": rng.choice(["started", "interim", "ended"]),
                "ts": format_rfc3339(end - rng.randrange(900)),
                "apn": rng.choice(APNS),
                "mcc": mcc,
                "mnc": mnc,
                "rat": "LTE-M",
                "bytes_up": rng.randrange(90000),
                "bytes_down": rng.randrange(90000),
            }
        else:
            obj = {
                "kind": "event",
                "record_id": f"e-{i}",
                "iccid": _iccid(rng),
                "ts": format_rfc3339(end - rng.randrange(900)),
                "type": rng.choice(["attach", "auth_failure", "location_update"]),
                "apn": "internet",
                "mcc": mcc,
                "mnc": mnc,
                "cause": "apn_not_allowed",
            }
        lines.append(orjson.dumps(obj) + b"\n")
    return lines


def bench_lines(name: str, lines: list[bytes], rounds: int = 3) -> None:
    best = best_cpu = float("inf")
    for _ in range(rounds):
        decoder = RecordDecoder()
        decode = decoder.decode_line
        t0, c0 = time.perf_counter(), time.process_time()
        good = 0
        for line in lines:  # decode and drop, as a source feeding the tracker does
            if type(decode(line, NOW)) is Record:
                good += 1
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
        assert good == len(lines), "benchmark lines must all decode"
    avg = sum(map(len, lines)) / len(lines)
    print(
        f"decode_line {name:8s} {len(lines) / best:>12,.0f} records/s wall, "
        f"{len(lines) / best_cpu:>10,.0f} records/s CPU  (avg {avg:.0f} B/line)"
    )


def bench_payload(lines: list[bytes], batch: int = 100, rounds: int = 3) -> None:
    payloads = [
        b"[" + b",".join(x.rstrip() for x in lines[i : i + batch]) + b"]"
        for i in range(0, len(lines), batch)
    ]
    best = float("inf")
    for _ in range(rounds):
        decoder = RecordDecoder()
        t0 = time.perf_counter()
        n = sum(len(decoder.decode_payload(p, NOW)) for p in payloads)
        best = min(best, time.perf_counter() - t0)
    print(f"decode_payload (arrays of {batch}) {n / best:>12,.0f} records/s")


def bench_dedup(n: int) -> None:
    ids = [f"u-{i}" for i in range(n)]
    dedup = Deduplicator(capacity=n)
    t0 = time.perf_counter()
    for rid in ids:
        dedup.seen(rid)
    elapsed = time.perf_counter() - t0
    print(f"Deduplicator.seen                {n / elapsed:>12,.0f} ids/s")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    for mix in ("usage", "session", "event", "mix"):
        bench_lines(mix, make_lines(n, mix))
    bench_payload(make_lines(n, "mix"))
    bench_dedup(n)


if __name__ == "__main__":
    main()
