"""Batch decoders side by side, and decode + dedup + apply at scale, with baselines.

    python bench/bench_columnar.py decoders [--records 200000] [--batch 5000]
    python bench/bench_columnar.py ingest --sims 1000000 [--reports 2]

``decoders``: the same mixed NDJSON lines (80 % usage, 15 % session, 5 % event, roaming
partners; bench_decode.make_lines) turned into per-field columns by each candidate, in
batches of ``--batch`` lines. "to columns" is bytes -> one list/array per field without
the FORMATS.md rules; "validated" is the whole decoder (every rule, rejections). The
baseline is today's per-record ``RecordDecoder.decode_line`` in the same run.
pyarrow and polars are measured only when installed (they are not dependencies).
``ColumnarDecoder`` is measured with its optional C extension (when built) and without.

``ingest``: an inventory of N SIMs, then ``--reports`` rounds of one record per SIM
(usage, session and event records mixed, partners changing: roaming), decoded, deduplicated
and applied; the baseline (scalar decode + ``Engine.ingest_record`` per record) runs on
the same lines in a second engine in the same run.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import io
import time
from dataclasses import replace
from operator import attrgetter
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np
import orjson
from bench_decode import NOW, make_lines
from benchfleet import PARTNERS, iccid, inventory

from simwatch.core.columnar import COMPILED, ColumnarDecoder, _Raw
from simwatch.core.engine import Engine, EngineConfig
from simwatch.core.records import Record, RecordDecoder
from simwatch.core.timeutil import format_rfc3339

if TYPE_CHECKING:
    from collections.abc import Callable

FIELDS = _Raw.__struct_fields__


def best_rate(fn: Callable[[], int], rounds: int = 3) -> float:
    best = float("inf")
    count = 0
    for _ in range(rounds):
        gc.collect()
        started = time.perf_counter()
        count = fn()
        best = min(best, time.perf_counter() - started)
    return count / best


def batches(lines: list[bytes], size: int) -> list[list[bytes]]:
    return [lines[i : i + size] for i in range(0, len(lines), size)]


def scalar(chunks: list[list[bytes]]) -> int:
    decode = RecordDecoder().decode_line
    return sum(1 for chunk in chunks for x in chunk if type(decode(x, NOW)) is Record)


def msgspec_columns(chunks: list[list[bytes]]) -> int:
    decode = msgspec.json.Decoder(_Raw).decode
    getters = [attrgetter(f) for f in FIELDS]
    n = 0
    for chunk in chunks:
        structs = list(map(decode, chunk))
        columns = [list(map(g, structs)) for g in getters]
        n += len(columns[0])
    return n


def orjson_columns(chunks: list[list[bytes]]) -> int:
    n = 0
    for chunk in chunks:
        objs = orjson.loads(b"[" + b",".join(chunk) + b"]")
        columns = [[o.get(f) for o in objs] for f in FIELDS]
        n += len(columns[0])
    return n


def orjson_numpy_columns(chunks: list[list[bytes]]) -> int:
    """orjson, then numpy arrays for the numbers (object arrays for strings)."""
    n = 0
    for chunk in chunks:
        objs = orjson.loads(b"[" + b",".join(chunk) + b"]")
        columns: list[Any] = []
        for f in FIELDS:
            values = [o.get(f) for o in objs]
            if f.startswith("bytes"):
                columns.append(np.array([v or 0 for v in values], np.int64))
            else:
                columns.append(np.array(values, dtype=object))
        n += len(columns[0])
    return n


def arrow_columns(chunks: list[list[bytes]]) -> int:
    pj = importlib.import_module("pyarrow.json")
    n = 0
    for chunk in chunks:
        table = pj.read_json(io.BytesIO(b"\n".join(chunk)))
        columns = [table.column(f).to_pylist() for f in table.column_names]
        n += len(columns[0])
    return n


def polars_columns(chunks: list[list[bytes]]) -> int:
    pl = importlib.import_module("polars")
    n = 0
    for chunk in chunks:
        frame = pl.read_ndjson(io.BytesIO(b"\n".join(chunk)), infer_schema_length=None)
        columns = [frame.get_column(f).to_list() for f in frame.columns]
        n += len(columns[0])
    return n


def columnar_validated(chunks: list[list[bytes]]) -> int:
    decoder = ColumnarDecoder()
    return sum(len(decoder.decode_lines(chunk, NOW).records) for chunk in chunks)


def columnar_python(chunks: list[list[bytes]]) -> int:
    """The decoder without its optional C extension (what runs where it is not built)."""
    decoder = ColumnarDecoder(compiled=False)
    return sum(len(decoder.decode_lines(chunk, NOW).records) for chunk in chunks)


def decoders(n: int, size: int) -> None:
    lines = make_lines(n, "mix")
    chunks = batches(lines, size)
    base = best_rate(lambda: scalar(chunks))
    rows: list[tuple[str, float]] = [("scalar decode_line (baseline, validated)", base)]
    candidates: list[tuple[str, Callable[[list[list[bytes]]], int]]] = [
        ("msgspec structs -> columns", msgspec_columns),
        ("orjson dicts -> columns", orjson_columns),
        ("orjson + numpy arrays", orjson_numpy_columns),
        ("pyarrow.json.read_json -> columns", arrow_columns),
        ("polars.read_ndjson -> columns", polars_columns),
        ("ColumnarDecoder, pure-Python path", columnar_python),
        (f"ColumnarDecoder ({'C extension' if COMPILED else 'not built'})", columnar_validated),
    ]
    for name, fn in candidates:
        try:
            rate = best_rate(lambda fn=fn: fn(chunks))  # type: ignore[misc]
        except ImportError:
            print(f"{name:42s} not installed")
            continue
        rows.append((name, rate))
    avg = sum(map(len, lines)) / len(lines)
    print(f"{n:,} mixed records, batches of {size}, {avg:.0f} B/line")
    for name, rate in rows:
        print(f"{name:42s} {rate:>12,.0f} records/s  {rate / base:5.1f}x")


# ---- ingest at scale ----------------------------------------------------------------------

T0 = 1_794_960_000.0  # 2026-11-18T00:00:00Z


def mixed_round(n: int, k: int, rng: np.random.Generator) -> list[bytes]:
    """Round ``k``: one record per SIM, 70 % usage, 25 % session, 5 % event; 10 % of the
    SIMs roam to another partner each round."""
    end = T0 + k * 900.0
    start_text = format_rfc3339(end - 900)
    offsets = rng.integers(0, 600, n)
    kinds = rng.choice(3, n, p=[0.70, 0.25, 0.05])
    home = np.arange(n) % len(PARTNERS)
    roam = rng.random(n) < 0.10
    partner = np.where(roam, rng.integers(0, len(PARTNERS), n), home)
    stamps = {o: format_rfc3339(end + o) for o in range(600)}
    statuses = ("started", "interim", "ended")
    out = []
    for i in range(n):
        mcc, mnc = PARTNERS[partner[i]]
        when = stamps[int(offsets[i])]
        kind = int(kinds[i])
        obj: dict[str, object]
        if kind == 0:
            obj = {"kind": "usage", "record_id": f"u-{k}-{i}", "iccid": iccid(i),
                   "start": start_text, "end": when, "bytes_up": 1200, "bytes_down": 340,
                   "apn": "apn1.iot", "mcc": mcc, "mnc": mnc, "rat": "LTE-M"}  # fmt: skip
        elif kind == 1:
            obj = {"kind": "session", "record_id": f"s-{k}-{i}", "iccid": iccid(i),
                   "ts": when, "session_id": f"{i:x}-{k // 3}", "status": statuses[k % 3],
                   "bytes_up": 900 * (k % 3), "bytes_down": 100,
                   "apn": "apn1.iot", "mcc": mcc, "mnc": mnc}  # fmt: skip
        else:
            obj = {"kind": "event", "record_id": f"e-{k}-{i}", "iccid": iccid(i), "ts": when,
                   "type": "pdp_reject", "cause": "apn_not_allowed",
                   "mcc": mcc, "mnc": mnc}  # fmt: skip
        out.append(orjson.dumps(obj))
    return out


def ingest(n: int, reports: int, size: int, baseline: bool) -> None:
    config = replace(EngineConfig(), warmup_s=0.0, initial_capacity=n)
    wall = T0 + 30 * 86400
    engines = {"batch": Engine(config)}
    if baseline:
        engines["scalar"] = Engine(config)
    for engine in engines.values():
        engine.load_inventory(inventory(n))
    rng = np.random.default_rng(1)
    spent = dict.fromkeys(engines, 0.0)
    cpu_decode = cpu_apply = 0.0
    records = 0
    for k in range(reports):
        lines = mixed_round(n, k, rng)
        chunks = batches(lines, size)
        records += len(lines)
        if "scalar" in engines:
            engine = engines["scalar"]
            decode = RecordDecoder().decode_line
            started = time.perf_counter()
            for line in lines:
                rec = decode(line, wall)
                if type(rec) is Record:
                    engine.ingest_record(rec)
            spent["scalar"] += time.perf_counter() - started
        engine = engines["batch"]
        decoder = ColumnarDecoder()
        started = time.perf_counter()
        for chunk in chunks:
            cpu = time.process_time()
            decoded = decoder.decode_lines(chunk, wall).records
            cpu_decode += time.process_time() - cpu
            cpu = time.process_time()
            engine.ingest_batch(decoded)
            cpu_apply += time.process_time() - cpu
        spent["batch"] += time.perf_counter() - started
        del lines, chunks
    for name, seconds in spent.items():
        print(
            f"{name:7s} decode + dedup + apply at {n:,} SIMs: {records / seconds:>10,.0f} records/s"
        )
    print(
        f"batch CPU per record: decode {cpu_decode / records * 1e6:.2f} us, dedup + apply "
        f"{cpu_apply / records * 1e6:.2f} us (process CPU time: less sensitive to other load)"
    )
    if "scalar" in spent:
        print(f"speed-up {spent['scalar'] / spent['batch']:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    dec = sub.add_parser("decoders")
    dec.add_argument("--records", type=int, default=200_000)
    dec.add_argument("--batch", type=int, default=5000)
    ing = sub.add_parser("ingest")
    ing.add_argument("--sims", type=int, default=1_000_000)
    ing.add_argument("--reports", type=int, default=2)
    ing.add_argument("--batch", type=int, default=5000)
    ing.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args()
    if args.what == "decoders":
        decoders(args.records, args.batch)
    else:
        ingest(args.sims, args.reports, args.batch, not args.no_baseline)


if __name__ == "__main__":
    main()
