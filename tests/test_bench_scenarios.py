"""The sweep's report (bench/scenarios.py --report): the table the detection issue asks
for, printed from results files of earlier sweeps (runs of another commit read with
``--also``), with every seed, the targets missed, the false pages, the runs' wall time
and, where runs kept it, when the recovery was seen."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

BENCH = Path(__file__).resolve().parent.parent / "bench" / "scenarios.py"
SIMS = 50_000


def row(regime: str, scenario: str, seed: int, **fault: object) -> dict[str, object]:
    faults = []
    if fault:
        faults.append(
            {
                "kind": scenario,
                "dims": {"partner": "26201"},
                "incident_id": "inc-0001",
                "detect_s": 120.0,
                "detect_bound_s": 2700.0,
                "resolve_s": 240.0,
                "target_s": 300.0,
                "data_back_s": 180.0,
                "evidence_s": 60.0,
            }
            | fault
        )
    return {
        "regime": regime,
        "scenario": scenario,
        "seed": seed,
        "sims": SIMS,
        "commit": "abc1234",
        "faults": faults,
        "false_pages": [],
    }


def write(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return path


def report(*args: str) -> str:
    out = subprocess.run(
        [sys.executable, str(BENCH), "--report", "--markdown", "--per-seed", *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return out.stdout


def test_the_report_reads_an_earlier_commit_s_runs_and_says_what_missed(tmp_path: Path) -> None:
    older = write(
        tmp_path / "older.jsonl",
        [row("r1", "partner_outage", 1, resolve_s=1200.0)],  # resolved 20 min after
    )
    newer = write(
        tmp_path / "newer.jsonl",
        [
            row("r1", "partner_outage", 2, recovery_seen_s=60.0) | {"seconds": 200.0},
            row("r1", "fault_free_week", 1) | {"seconds": 400.0},
        ],
    )
    text = report(
        "--sims", str(SIMS), "--regimes", "r1", "--seeds", "1", "2",
        "--also", str(older), "--results", str(newer),
        "partner_outage", "fault_free_week",
    )  # fmt: skip
    lines = text.splitlines()
    summary = next(line for line in lines if line.startswith("| r1 | partner_outage |"))
    # both seeds: detection 2 min, resolution 4 and 20 min, seed 1 missed the target
    cells = [c.strip() for c in summary.strip("|").split("|")]
    assert cells[3] == "2 / 2"
    assert cells[5] == "12 / 20"
    assert cells[7] == "+1 / +1"  # recovery seen: only the run that kept it
    assert cells[8] == "1"
    assert "3 runs from" in text
    assert "a run took 300 s median, 400 s at most (2 runs timed)" in text
    # the per-seed table, after the summary: seed 1's cell marks the miss
    per_seed = [line for line in lines if line.startswith("| r1 | partner_outage |")][-1]
    assert [c.strip() for c in per_seed.strip("|").split("|")][3:] == ["2(1)/20*", "2(1)/4"]


def test_a_report_without_recovery_figures_keeps_the_older_columns(tmp_path: Path) -> None:
    older = write(tmp_path / "older.jsonl", [row("r2", "apn_outage", 1, resolve_s=180.0)])
    text = report(
        "--regimes", "r2", "--seeds", "1", "--sims", str(SIMS),
        "--results", str(older), "apn_outage",
    )  # fmt: skip
    head = next(line for line in text.splitlines() if line.startswith("| regime |"))
    assert "recovery seen" not in head
    assert head.count("|") == 10  # nine columns


def test_against_compares_two_commits_runs_run_for_run(tmp_path: Path) -> None:
    # a detection change is judged on the same simulated fleets: which runs differ, how
    older = write(
        tmp_path / "older.jsonl",
        [
            row("r1", "partner_outage", 1, detect_s=120.0),
            row("r1", "partner_outage", 2, detect_s=120.0),
            row("r1", "fault_free_week", 1) | {"false_pages": [{"dims": {"country": "AT"}}]},
            row("r1", "partner_outage", 3, detect_s=120.0),  # only in the older file
            row("r1", "partial_blackhole", 1, detect_s=1260.0, named_s=2220.0),
        ],
    )
    newer = write(
        tmp_path / "newer.jsonl",
        [
            row("r1", "partner_outage", 1, recovery_seen_s=60.0),  # not compared: equal
            row("r1", "partner_outage", 2, detect_s=180.0),
            row("r1", "fault_free_week", 1),
            row("r1", "partial_blackhole", 1, detect_s=1260.0, named_s=1740.0),
        ],
    )
    out = subprocess.run(
        [sys.executable, str(BENCH), "--sims", str(SIMS), "--results", str(newer),
         "--against", str(older)],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    lines = out.splitlines()
    assert lines[-1] == "4 runs in both: 1 equal, 3 different; false pages 1 -> 0"
    at = lines.index("r1 partner_outage 2")
    assert lines[at + 1].endswith("detect 2 min -> 3 min  resolve 4 min -> 4 min")
    # the same detection, its page named the fault exactly sooner (the run of an older
    # sweep without named_s counts from its opening)
    at = lines.index("r1 partial_blackhole 1")
    assert lines[at + 1].endswith(
        "detect 21 min -> 21 min  resolve 4 min -> 4 min  exact dims 37 min -> 29 min"
    )
    assert "false pages [{'dims': {'country': 'AT'}}] -> []" in out
    assert "r1 partner_outage 1" not in lines


SILENT: dict[str, object] = {"evidence_s": None, "target_s": 1800.0}  # a black hole's


def test_a_page_that_named_a_part_of_the_fault_first_says_when_it_was_exact(
    tmp_path: Path,
) -> None:
    # R1's black hole at 2,000 SIMs, seed 5: the page opened at 23 min on
    # {apn: meters.acme, partner: 26201} and named {partner: 26201} only at 135 min
    results = write(
        tmp_path / "named.jsonl",
        [
            row("r1", "partial_blackhole", 1, detect_s=1380.0, named_s=8100.0, **SILENT),
            row("r1", "partial_blackhole", 2, detect_s=1200.0, named_s=1200.0, **SILENT),
        ],
    )
    text = report(
        "--sims", str(SIMS), "--regimes", "r1", "--seeds", "1", "2",
        "--results", str(results), "partial_blackhole",
    )  # fmt: skip
    lines = text.splitlines()
    head = next(line for line in lines if line.startswith("| regime |"))
    assert "| detect median / worst (min) | exact dims median / worst (min) |" in head
    rows = [line for line in lines if line.startswith("| r1 | partial_blackhole |")]
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert cells[3:5] == ["22 / 23", "78 / 135"]
    # found in time, but named exactly past the 30-min target: a miss (the "*")
    assert [c.strip() for c in rows[-1].strip("|").split("|")][3:] == ["23[135]/4*", "20/4"]
    assert "detect 23 min, exact dims at 135 min" in text
    (seed_1,) = [line for line in lines if "exact dims at 135 min" in line]
    assert seed_1.endswith("MISSES TARGET")
