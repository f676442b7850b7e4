"""``simwatch replay``: run the engine over a records file on the records' own clock.

Records are read in file order (= arrival order) and applied as they come; the clock is
the newest event time seen so far (the watermark). Each time the watermark crosses an
evaluation boundary, the cycle for that boundary runs before the newer record is
applied — exactly what the live daemon, evaluating every ``eval_interval_s`` on the wall
clock, would have seen. Late records are applied when they arrive, not earlier.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import orjson

from simwatch.core.clock import EvaluationClock
from simwatch.core.columnar import ColumnarDecoder
from simwatch.core.diagnosis import human_duration
from simwatch.core.engine import Engine, EngineConfig
from simwatch.core.inventory import InventoryError
from simwatch.core.operators import OperatorTable
from simwatch.core.records import Rejection
from simwatch.core.timeutil import format_rfc3339
from simwatch.shell.deadletter import DeadLetterFile
from simwatch.shell.inventory import iter_inventory

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence

    from simwatch.core.engine import CycleResult
    from simwatch.core.incidents import Incident


@dataclass(slots=True)
class ReplayStats:
    lines: int = 0
    applied: int = 0
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    inventory_rows: int = 0
    inventory_rejected: int = 0
    cycles: int = 0
    cycle_seconds: list[float] = field(default_factory=list)
    first_ts: float | None = None
    last_ts: float | None = None
    wall_seconds: float = 0.0


def replay_lines(
    engine: Engine,
    lines: Iterable[bytes],
    *,
    wall_now: float,
    dead_letter: DeadLetterFile | None = None,
    on_cycle: Callable[[CycleResult], None] | None = None,
    stats: ReplayStats | None = None,
    source: str = "replay",
) -> ReplayStats:
    """Feed NDJSON lines (an iterable of bytes) through the engine on event time."""
    stats = stats or ReplayStats()
    decoder = ColumnarDecoder()
    clock = EvaluationClock(engine.config.eval_interval_s)
    started = time.perf_counter()
    for chunk in _chunks(lines, REPLAY_BATCH):
        batch = decoder.decode_lines(chunk, wall_now)
        stats.lines += len(chunk)
        for rejection in batch.rejections:
            engine.count_rejection(rejection)
            stats.rejected[str(rejection.reason)] += 1
            if dead_letter is not None:
                dead_letter.write(rejection, source=source, at=wall_now)
        records = batch.records
        ts = records.ts
        start = 0
        while start < len(records):
            first = float(ts[start])
            if clock.passes(first):
                if not clock.started:
                    clock.start_after(first)
                    stats.first_ts = first
                for boundary in clock.due(first):
                    _cycle(engine, boundary, stats, on_cycle)
            end = clock.segment_end(ts, start, len(records))
            clock.observe(float(ts[start:end].max()))
            whole = (start, end) == (0, len(records))
            applied = int(np.count_nonzero(
                engine.ingest_batch(records if whole else records.slice(start, end))
            ))  # fmt: skip
            stats.applied += applied
            stats.duplicates += end - start - applied
            start = end
    closing = clock.tick()  # the boundary after the last record
    if closing is not None:
        _cycle(engine, closing, stats, on_cycle)
        stats.last_ts = clock.watermark
    stats.wall_seconds += time.perf_counter() - started
    return stats


REPLAY_BATCH = 5000  # lines decoded and applied together


def _chunks(lines: Iterable[bytes], size: int) -> Iterator[list[bytes]]:
    """Non-blank lines in lists of ``size`` (blank: empty or ASCII whitespace only, what
    ``bytes.strip`` removes; ``isspace`` tells it without a copy of the line)."""
    chunk: list[bytes] = []
    for line in lines:
        if line and not line.isspace():
            chunk.append(line)
            if len(chunk) == size:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


def _cycle(
    engine: Engine,
    now: float,
    stats: ReplayStats,
    on_cycle: Callable[[CycleResult], None] | None,
) -> None:
    result = engine.evaluate(now)
    stats.cycles += 1
    stats.cycle_seconds.append(result.duration_s)
    if on_cycle is not None:
        on_cycle(result)


def replay_files(
    inventory: Path | None,
    records: Path,
    *,
    config: EngineConfig | None = None,
    operators: OperatorTable | None = None,
    dead_letter_path: Path | None = None,
    wall_now: float | None = None,
    on_cycle: Callable[[CycleResult], None] | None = None,
    engine: Engine | None = None,
) -> tuple[Engine, ReplayStats]:
    """Replay an inventory and a records file; ``engine`` defaults to a new one."""
    engine = engine or Engine(config, operators)
    stats = ReplayStats()
    now = time.time() if wall_now is None else wall_now
    with DeadLetterFile(dead_letter_path) as dead_letter:
        if inventory is not None:
            good = []
            for item in iter_inventory(inventory):
                if isinstance(item, Rejection):
                    stats.inventory_rejected += 1
                    dead_letter.write(item, source=f"inventory:{inventory.name}", at=now)
                else:
                    good.append(item)
            stats.inventory_rows = engine.load_inventory(good)
        with records.open("rb") as handle:
            replay_lines(
                engine,
                handle,
                wall_now=now,
                dead_letter=dead_letter,
                on_cycle=on_cycle,
                stats=stats,
                source=f"file:{records.name}",
            )
    return engine, stats


# ---- output -----------------------------------------------------------------------------


def summary(engine: Engine, stats: ReplayStats) -> dict[str, object]:
    cycle = sorted(stats.cycle_seconds)
    evaluation = engine.last_evaluation
    counts = evaluation.state_counts() if evaluation is not None else {}
    incidents = engine.incidents.all()
    return {
        "records": {
            "lines": stats.lines,
            "applied": stats.applied,
            "duplicates": stats.duplicates,
            "rejected": dict(sorted(stats.rejected.items())),
            "unknown_sims": engine.ingestor.stats.unknown_sims,
        },
        "inventory": {"sims": stats.inventory_rows, "rejected": stats.inventory_rejected},
        "sims": {"total": len(engine.state), **counts},
        "incidents": {
            "total": len(incidents),
            "page": sum(1 for i in incidents if i.severity == "page"),
            "ticket": sum(1 for i in incidents if i.severity == "ticket"),
            "open": sum(1 for i in incidents if i.resolved_at is None),
        },
        "clock": {
            "first_record": None if stats.first_ts is None else format_rfc3339(stats.first_ts),
            "last_record": None if stats.last_ts is None else format_rfc3339(stats.last_ts),
            "cycles": stats.cycles,
            "eval_interval_s": engine.config.eval_interval_s,
        },
        "performance": {
            "wall_seconds": round(stats.wall_seconds, 3),
            "records_per_second": round(stats.lines / stats.wall_seconds)
            if stats.wall_seconds
            else None,
            "cycle_p50_ms": round(cycle[len(cycle) // 2] * 1000, 3) if cycle else None,
            "cycle_max_ms": round(cycle[-1] * 1000, 3) if cycle else None,
        },
    }


def incident_table(engine: Engine, incidents: Sequence[Incident]) -> str:
    header = (
        "ID", "SEVERITY", "STATE", "OPENED", "RESOLVED", "LASTED", "GROUP",
        "PEAK", "RATIO", "NORMAL", "SCORE",
    )  # fmt: skip
    rows = [header]
    for inc in incidents:
        group = ", ".join(
            f"{k}={engine.partner_label(v) if k == 'partner' else v}"
            for k, v in sorted(inc.dims.items())
        )
        if inc.kind == "sim":
            group = f"sim {inc.iccid}: {', '.join(inc.reasons) or 'silent'}"
        end = inc.resolved_at if inc.resolved_at is not None else inc.updated_at
        rows.append(
            (
                inc.id,
                inc.severity,
                inc.state,
                format_rfc3339(inc.opened_at),
                "-" if inc.resolved_at is None else format_rfc3339(inc.resolved_at),
                human_duration(end - inc.opened_at),
                group or "(fleet-wide)",
                f"{round(inc.peak_affected)}/{round(inc.peak_total)}",
                f"{inc.peak_affected / inc.peak_total:.0%}" if inc.peak_total else "-",
                f"{inc.baseline_ratio:.1%}",
                f"{inc.score:.1f}",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    ]
    if not incidents:
        lines.append("(no incidents)")
    return "\n".join(lines)


def text_summary(data: dict[str, object]) -> str:
    out = []
    for section, values in data.items():
        if isinstance(values, dict):
            parts = ", ".join(f"{k}={v}" for k, v in values.items())
            out.append(f"{section}: {parts}")
    return "\n".join(out)


# ---- CLI --------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="simwatch replay",
        description="Replay NDJSON records on their own clock and print the incidents found.",
    )
    parser.add_argument("records", type=Path, help="NDJSON records file (FORMATS.md)")
    parser.add_argument("--inventory", type=Path, help="inventory CSV (FORMATS.md)")
    parser.add_argument("--json", action="store_true", help="print FORMATS.md JSON")
    parser.add_argument("--dead-letter", type=Path, help="write rejected lines here (NDJSON)")
    parser.add_argument("--operators", type=Path, help="CSV overriding MCC/MNC names")
    parser.add_argument(
        "--dims",
        default="apn,country,partner",
        help="comma-separated grouping dimensions (default: apn,country,partner)",
    )
    parser.add_argument("--eval-interval", type=float, default=60.0, help="seconds (default 60)")
    parser.add_argument(
        "--warmup",
        type=float,
        default=EngineConfig().warmup_s,
        help="seconds of records before group incidents (default 48 h)",
    )
    parser.add_argument(
        "--include-tickets", action="store_true", help="also list per-SIM ticket incidents"
    )
    return parser


def tune_gc() -> None:
    """Process policy for bulk ingest: records make no reference cycles, so the cyclic
    collector's frequent young-generation passes are pure overhead (about a quarter of
    decode time). Collect less often; reference counting still frees everything."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 50)


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    tune_gc()
    if not args.records.is_file():
        print(f"simwatch replay: records file not found: {args.records}", file=sys.stderr)
        return 2
    dims = tuple(d.strip() for d in args.dims.split(",") if d.strip())
    config = replace(
        EngineConfig(), dims=dims, eval_interval_s=args.eval_interval, warmup_s=args.warmup
    )
    try:
        operators = OperatorTable.load(args.operators)
        engine, stats = replay_files(
            args.inventory,
            args.records,
            config=config,
            operators=operators,
            dead_letter_path=args.dead_letter,
        )
    except (InventoryError, OSError, ValueError) as exc:
        print(f"simwatch replay: {exc}", file=sys.stderr)
        return 2
    incidents = engine.incidents.all()
    data = summary(engine, stats)
    if args.json:
        payload = {"incidents": [i.to_json() for i in incidents], "summary": data}
        sys.stdout.buffer.write(orjson.dumps(payload, option=orjson.OPT_INDENT_2) + b"\n")
        return 0
    shown = incidents if args.include_tickets else [i for i in incidents if i.kind == "group"]
    print(incident_table(engine, shown))
    tickets = sum(1 for i in incidents if i.kind == "sim")
    if tickets and not args.include_tickets:
        print(f"(+{tickets} per-SIM ticket incidents; --include-tickets lists them)")
    print()
    print(text_summary(data))
    return 0
