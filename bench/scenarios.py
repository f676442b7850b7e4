"""Scenario scores with figures: detection and resolution delay per injected fault.

    python bench/scenarios.py [--seeds 7 8 9] [--regimes r1 r2 r3 mixed] [--sims 2000]
                              [--jobs 2] [--markdown] [--per-seed]
                              [--results FILE [--also FILE ...] [--report]] [SCENARIO ...]

Runs each named scenario (default: all presets) per data regime and seed through
simulate -> replay -> score, and prints a row per fault: incident, detection delay and
its bound, resolution delay, and any false pages; then a table per regime and fault kind
over every seed (median and worst detection and resolution, false pages, and the seeds
that missed the detection issue's target: 5 min for a fault the network reports, 2 record
intervals for a silent one (R3: the churn window), resolved 0-15 min after the end).
The bound the test suite asserts on is printed beside it, and beside the resolution the
"data back" delay: when a tenth of the fault's SIMs had sent data again after its end,
the earliest the data could tell anyone that it ended, and (runs that kept it) "recovery
seen": the incident's recovery onset (``recovered_at``) against the end.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import orjson

from simwatch.sim.config import REGIMES
from simwatch.sim.scenarios import SCENARIOS
from simwatch.sim.scoring import EVIDENCE_SIMS, FaultScore, ScenarioScore, run_scenario

PER_SIM = ("wrong_apn", "data_cap", "session_flapping")


def minutes(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 60:.0f} min"


def _cell(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values) / 60:.0f} / {max(values) / 60:.0f}"


def _signed_cell(values: list[float]) -> str:
    """Median / the one farthest from zero, signed (a recovery seen before the end is
    negative)."""
    if not values:
        return "-"
    far = max(values, key=abs)
    return f"{statistics.median(values) / 60:+.0f} / {far / 60:+.0f}"


def _run(job: tuple[str, str, int, int | None]) -> tuple[ScenarioScore, float]:
    """One run and its wall time (s): simulating, replaying and scoring."""
    regime, name, seed, sims = job
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result, _ = run_scenario(name, seed, Path(tmp), regime=regime, sims=sims)
    return result, time.perf_counter() - started


def _load(
    paths: list[Path], sims: int | None
) -> tuple[dict[tuple[str, str, int], ScenarioScore], list[float]]:
    """Runs kept in results files (JSON lines) by earlier, possibly stopped, sweeps at
    the same fleet size (the last line of a run wins, files in order), and the wall
    times the runs recorded (``seconds``; rows of older sweeps have none)."""
    kept: dict[tuple[str, str, int], ScenarioScore] = {}
    seconds: list[float] = []
    for path in paths:
        if not path.exists():
            continue
        for line in path.read_bytes().splitlines():
            row = orjson.loads(line)
            if row.get("sims") != sims:
                continue
            result = ScenarioScore(
                faults=[FaultScore(**f) for f in row["faults"]], false_pages=row["false_pages"]
            )
            kept[row["regime"], row["scenario"], int(row["seed"])] = result
            if row.get("seconds") is not None:
                seconds.append(float(row["seconds"]))
    return kept, seconds


def _commit() -> str:
    """The checkout's commit, stamped on each kept run."""
    git = shutil.which("git")
    if git is None:
        return ""
    try:
        out = subprocess.run(  # noqa: S603 - git with fixed arguments
            [git, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
            cwd=Path(__file__).resolve().parent,
        )
    except OSError:
        return ""
    return out.stdout.strip()


class Sweep:
    """The runs of a sweep, aggregated per regime, scenario and fault kind."""

    def __init__(self) -> None:
        # (regime, scenario, kind) -> detect delays, resolve delays, misses, runs
        self.detect: dict[tuple[str, str, str], list[float]] = defaultdict(list)
        self.resolve: dict[tuple[str, str, str], list[float]] = defaultdict(list)
        self.back: dict[tuple[str, str, str], list[float]] = defaultdict(list)
        self.evidence: dict[tuple[str, str, str], list[float]] = defaultdict(list)
        self.seen: dict[tuple[str, str, str], list[float]] = defaultdict(list)
        self.named: dict[tuple[str, str, str], list[float]] = defaultdict(list)
        self.missed: dict[tuple[str, str, str], list[int]] = defaultdict(list)
        self.false_pages: dict[tuple[str, str], list[int]] = defaultdict(list)
        # (regime, scenario, kind) -> seed -> one cell of the per-seed table
        self.cells: dict[tuple[str, str, str], dict[int, str]] = defaultdict(dict)
        self.failures = 0

    def add(self, regime: str, name: str, seed: int, result: ScenarioScore) -> None:
        self.failures += not result.ok
        print(f"{regime} {name} seed={seed}: {'OK' if result.ok else 'FAIL'}", flush=True)
        self.false_pages[regime, name].append(len(result.false_pages))
        fp = f" +{len(result.false_pages)} FP" if result.false_pages else ""
        if not result.faults:
            self.cells[regime, name, ""][seed] = f"ok{fp}" if not fp else fp.strip()
        for f in result.faults:
            key = (regime, name, f.kind)
            dims = f.dims or "(per SIM)"
            if f.missing_findings or f.kind in PER_SIM:
                print(f"  {f.kind:<18} {dims}  missing findings: {len(f.missing_findings)}")
                if f.missing_findings:
                    self.missed[key].append(seed)
                miss = f"{len(f.missing_findings)} missed" if f.missing_findings else "ok"
                self.cells[key][seed] = miss + fp
                continue
            if not f.meets_target:
                self.missed[key].append(seed)
            if f.detect_s is not None:
                self.detect[key].append(f.detect_s)
            if f.resolve_s is not None:
                self.resolve[key].append(f.resolve_s)
            if f.data_back_s is not None:
                self.back[key].append(f.data_back_s)
            if f.evidence_s is not None:
                self.evidence[key].append(f.evidence_s)
            if f.recovery_seen_s is not None:
                self.seen[key].append(f.recovery_seen_s)
            if f.named_s is not None:
                self.named[key].append(f.named_s)
            mark = "" if f.meets_target else "*"
            shown = "" if f.evidence_s is None else f"({_mins(f.evidence_s)})"
            if _renamed(f):
                shown += f"[{_mins(f.named_s)}]"
            cell = (
                f"{_mins(f.detect_s)}{shown}/{_mins(f.resolve_s)}{mark}{fp}"
                if f.incident_id
                else f"not found{fp}"
            )
            # two faults of one kind in a run (shared_value): both, in order
            before = self.cells[key].get(seed)
            self.cells[key][seed] = cell if before is None else f"{before}, {cell}"
            seen = f.recovery_seen_s
            named = f", exact dims at {minutes(f.named_s)}" if _renamed(f) else ""
            print(
                f"  {f.kind:<18} {dims}  {f.incident_id or 'NOT FOUND'}  "
                f"detect {minutes(f.detect_s)}{named} (bound {minutes(f.detect_bound_s)}, "
                f"target {minutes(f.target_s)}, "
                f"{EVIDENCE_SIMS} SIMs showed it {minutes(f.evidence_s)})  "
                f"resolve {minutes(f.resolve_s)} after the end "
                f"(data back {minutes(f.data_back_s)}"
                f"{'' if seen is None else f', recovery seen {seen / 60:+.0f} min'})"
                f"{'' if f.meets_target else '  MISSES TARGET'}"
            )
        for page in result.false_pages:
            print(f"  FALSE PAGE {page['dims']} opened {page['opened_at']}")

    def keys(self) -> list[tuple[str, str, str]]:
        keys = sorted(
            {
                *self.detect,
                *self.resolve,
                *self.missed,
                *self.cells,
                *[(r, n, "") for r, n in self.false_pages],
            }
        )
        # a scenario with faults carries its false pages on its fault rows
        return [
            (r, n, k) for r, n, k in keys if k or not any(x[:2] == (r, n) and x[2] for x in keys)
        ]

    def summary(self, markdown: bool) -> None:
        # when the incidents saw their faults' ends (runs of older sweeps did not keep it)
        seen = bool(self.seen)
        named = bool(self.named)  # likewise, when the page got the exact dims
        head = (
            "| regime | scenario | fault | detect median / worst (min) | "
            + ("exact dims median / worst (min) | " if named else "")
            + f"{EVIDENCE_SIMS} SIMs showed it (min) | "
            "resolve median / worst (min) | data back median / worst (min) | "
            + ("recovery seen median / worst (min) | " if seen else "")
            + "seeds missing the target | false pages |"
        )
        if markdown:
            print(head)
            print("|" + "---|" * (9 + seen + named))
        for regime, name, kind in self.keys():
            key = (regime, name, kind)
            cells = [
                regime,
                name,
                kind or "(none)",
                _cell(self.detect.get(key, [])),
                *([_cell(self.named.get(key, []))] if named else []),
                _cell(self.evidence.get(key, [])),
                _cell(self.resolve.get(key, [])),
                _cell(self.back.get(key, [])),
                *([_signed_cell(self.seen.get(key, []))] if seen else []),
                ",".join(str(s) for s in self.missed.get(key, [])) or "none",
                str(sum(self.false_pages.get((regime, name), []))),
            ]
            _row(cells, markdown)

    def per_seed(self, seeds: list[int], markdown: bool) -> None:
        """One row per regime, scenario and fault, one column per seed: detection
        (when EVIDENCE_SIMS of its SIMs had shown a fault the network reports) [when the
        page got the fault's exact dims, where that was later than its opening] /
        resolution in minutes, * when the run missed the issue's target, +N FP for false
        pages in that run."""
        cells = ["regime", "scenario", "fault", *[f"seed {s}" for s in seeds]]
        _row(cells, markdown)
        if markdown:
            print("|" + "---|" * len(cells))
        for regime, name, kind in self.keys():
            got = self.cells.get((regime, name, kind), {})
            _row([regime, name, kind or "(none)", *[got.get(s, "") for s in seeds]], markdown)


def _renamed(fault: FaultScore) -> bool:
    """The page opened on other dims and got the fault's exact ones a minute or more
    later (a part of the group first: the fault's known extent grew)."""
    return (
        fault.named_s is not None
        and fault.detect_s is not None
        and fault.named_s - fault.detect_s >= 60.0
    )


def _mins(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 60:.0f}"


def _row(cells: list[str], markdown: bool) -> None:
    if markdown:
        print("| " + " | ".join(cells) + " |")
    else:
        print("  ".join(f"{c:<18}" for c in cells))


def _named(f: FaultScore) -> float | None:
    """When the fault's page named it exactly (a run of a sweep older than ``named_s``:
    its opening, as ``FaultScore.meets_target`` reads it)."""
    return f.detect_s if f.named_s is None else f.named_s


def _fault_outcome(f: FaultScore) -> tuple[object, ...]:
    """What a run-for-run comparison looks at of a fault: its page, dimensions,
    detection, when it named the fault exactly, and resolution."""
    return (
        f.kind,
        sorted(f.dims.items()),
        f.incident_id is not None,
        f.detect_s,
        _named(f),
        f.resolve_s,
    )


def _outcome(result: ScenarioScore) -> list[tuple[object, ...]]:
    """... and of a run: each fault's, and the false pages."""
    faults = [_fault_outcome(f) for f in result.faults]
    return [*faults, *(("false page", str(p)) for p in result.false_pages)]


def compare(old_path: Path, new_path: Path, sims: int | None) -> None:
    """Print, run for run, the runs two results files both have that differ, and how
    many are equal (a detection change's effect on the same simulated fleets)."""
    old, _ = _load([old_path], sims)
    new, _ = _load([new_path], sims)
    common = sorted(old.keys() & new.keys())
    differ = 0
    for key in common:
        before, after = old[key], new[key]
        if _outcome(before) == _outcome(after):
            continue
        differ += 1
        print(" ".join(str(k) for k in key))
        for a, b in zip(before.faults, after.faults, strict=False):
            if _fault_outcome(a) != _fault_outcome(b):
                dims = str(a.dims) if a.dims == b.dims else f"{a.dims} -> {b.dims}"
                renamed = _named(a) != a.detect_s or _named(b) != b.detect_s
                named = (
                    f"  exact dims {minutes(_named(a))} -> {minutes(_named(b))}"
                    if renamed and _named(a) != _named(b)
                    else ""
                )
                print(
                    f"  {a.kind:<18} {dims}  detect {minutes(a.detect_s)} -> "
                    f"{minutes(b.detect_s)}  resolve {minutes(a.resolve_s)} -> "
                    f"{minutes(b.resolve_s)}{named}"
                )
        if before.false_pages != after.false_pages:
            print(f"  false pages {before.false_pages} -> {after.false_pages}")
    old_pages = sum(len(old[k].false_pages) for k in common)
    new_pages = sum(len(new[k].false_pages) for k in common)
    print(
        f"{len(common)} runs in both: {len(common) - differ} equal, {differ} different; "
        f"false pages {old_pages} -> {new_pages}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("scenarios", nargs="*", default=sorted(SCENARIOS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[7])
    parser.add_argument("--regimes", nargs="+", default=["r1"], choices=REGIMES)
    parser.add_argument("--sims", type=int, default=None, help="fleet size (preset: 2000)")
    parser.add_argument("--markdown", action="store_true", help="summary as a Markdown table")
    parser.add_argument("--per-seed", action="store_true", help="also a table per seed")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel (processes)")
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help="JSON lines file: each finished run is appended (with its wall time); runs "
        "already in it are not run again (a long sweep can be stopped and resumed)",
    )
    parser.add_argument(
        "--also",
        type=Path,
        nargs="+",
        default=[],
        help="more results files, read before --results and never written: runs of "
        "earlier commits that count (and are not run again)",
    )
    parser.add_argument(
        "--report",
        action="store_true",
        help="with --results: print the tables of the runs kept there, run nothing",
    )
    parser.add_argument(
        "--against",
        type=Path,
        default=None,
        help="with --results: compare its runs, run for run, with this older results "
        "file (the runs both have; detection, resolution, dimensions and false pages)",
    )
    args = parser.parse_args()
    if args.against is not None:
        if args.results is None:
            parser.error("--against needs --results")
        compare(args.against, args.results, args.sims)
        return
    sweep = Sweep()
    sources = [*args.also, *([args.results] if args.results is not None else [])]
    kept, seconds = _load(sources, args.sims)
    commit = _commit()
    started = time.perf_counter()
    # seed by seed: a sweep stopped early still has every regime and scenario of the
    # seeds it finished
    runs = [
        (regime, name, seed, args.sims)
        for seed in args.seeds
        for regime in args.regimes
        for name in args.scenarios
    ]
    jobs = [] if args.report else [job for job in runs if job[:3] not in kept]
    for regime, name, seed, _ in runs:
        if (regime, name, seed) in kept:
            sweep.add(regime, name, seed, kept[regime, name, seed])
    pool = ProcessPoolExecutor(max_workers=max(args.jobs, 1))
    done = 0
    try:
        for (regime, name, seed, _), (result, wall) in zip(
            jobs, pool.map(_run, jobs), strict=False
        ):
            done += 1
            seconds.append(wall)
            if args.results is not None:
                row = {"regime": regime, "scenario": name, "seed": seed, "sims": args.sims}
                row |= {"commit": commit, "seconds": round(wall, 1), **asdict(result)}
                with args.results.open("ab") as fh:
                    fh.write(orjson.dumps(row) + b"\n")
            sweep.add(regime, name, seed, result)
    except KeyboardInterrupt:  # Ctrl-C: the table of the runs that finished
        pool.shutdown(wait=False, cancel_futures=True)
        print(f"\ninterrupted after {done} of {len(jobs)} runs")
    else:
        pool.shutdown()
    elapsed = time.perf_counter() - started
    seeds = " ".join(str(s) for s in args.seeds)
    print()
    from_files = ", ".join(str(p) for p in sources)
    print(
        f"seeds {seeds}; fleet {args.sims or 'preset (2000)'} SIMs; {elapsed:.0f} s"
        + (f" ({len(kept)} runs from {from_files})" if kept else "")
        + (
            f"; a run took {statistics.median(seconds):.0f} s median, "
            f"{max(seconds):.0f} s at most ({len(seconds)} runs timed)"
            if seconds
            else ""
        )
    )
    sweep.summary(args.markdown)
    if args.per_seed:
        print()
        sweep.per_seed(args.seeds, args.markdown)
    print(f"{sweep.failures} failing scenario runs")


if __name__ == "__main__":
    main()
