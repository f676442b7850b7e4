"""The fleet-shaped root-cause benchmark generator (bench/rca_fleet.py) and its scoring
by bench/rca.py: RS layout, injected causes, determinism, and the per-type table."""

from __future__ import annotations

import csv
import sys
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

sys.path.append(str(Path(__file__).resolve().parent.parent / "bench"))

import rca  # a bench script, importable once bench/ is on the path
import rca_fleet

SEED = 5
N_CASES = 6


@pytest.fixture(scope="module")
def cases_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rcafleet")
    assert rca_fleet.main(["--out", str(out), "--cases", str(N_CASES), "--seed", str(SEED)]) == 0
    return out


def read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def test_rs_layout_and_injected_causes(cases_dir: Path) -> None:
    with (cases_dir / "anomaly.yaml").open(encoding="utf-8") as fh:
        cases = yaml.safe_load(fh)
    assert len(cases) == N_CASES
    assert {c["type"] for c in cases} == {"single", "multiple", "siblings"}
    assert sorted(p.name for p in cases_dir.glob("*.csv")) == sorted(
        f"{c['data']}.csv" for c in cases
    )
    for case in cases:
        assert set(case) == {"data", "timestamp", "cause", "type"}
        fields, rows = read_rows(cases_dir / f"{case['data']}.csv")
        assert fields == ["min", "apn", "country", "partner", "rat", "value", "cnt"]
        ts = int(case["timestamp"])
        minutes = sorted({int(r["min"]) for r in rows})
        assert minutes == [ts - 60 * k for k in range(rca_fleet.HISTORY, -1, -1)]
        for r in rows:
            assert 0 <= int(r["value"]) <= int(r["cnt"])
            assert int(r["cnt"]) >= 1
        # a partner belongs to one country
        country_of = defaultdict(set)
        for r in rows:
            country_of[r["partner"]].add(r["country"])
        assert all(len(v) == 1 for v in country_of.values())

        elements = case["cause"] if isinstance(case["cause"], list) else [case["cause"]]
        n_causes = {"single": (1,), "multiple": (2, 3), "siblings": (2,)}[case["type"]]
        assert len(elements) in n_causes
        seen: set[tuple[str, ...]] = set()
        for el in elements:
            assert 1 <= len(el) <= 3
            assert set(el) <= {"apn", "country", "partner", "rat"}
            want = {k: str(v) for k, v in el.items()}

            def member(r: dict[str, str], want: dict[str, str] = want) -> bool:
                return all(r[k] == v for k, v in want.items())

            hist_leaves = {
                tuple(r[d] for d in rca_fleet.DIMS)
                for r in rows
                if int(r["min"]) < ts and member(r)
            }
            now = [r for r in rows if int(r["min"]) == ts and member(r)]
            now_leaves = {tuple(r[d] for d in rca_fleet.DIMS) for r in now}
            assert hist_leaves
            assert now_leaves == hist_leaves  # every leaf of the cause is present
            assert not (now_leaves & seen)  # causes do not overlap
            seen |= now_leaves
            assert sum(int(r["cnt"]) for r in now) >= rca_fleet.MIN_GROUP_SIMS
            hist = [r for r in rows if int(r["min"]) < ts and member(r)]
            base = sum(int(r["value"]) for r in hist) / sum(int(r["cnt"]) for r in hist)
            share = sum(int(r["value"]) for r in now) / sum(int(r["cnt"]) for r in now)
            assert share > max(2 * base, 0.1)  # failing raised well above the history
        if case["type"] == "siblings":
            (dim,) = set(elements[0]) - {"apn"}
            assert elements[0]["apn"] == elements[1]["apn"]
            values = {r[dim] for r in rows if r["apn"] == elements[0]["apn"]}
            assert len(values) >= 3  # the APN keeps a healthy country / RAT


def test_deterministic_from_seed(cases_dir: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    rca_fleet.main(["--out", str(again), "--cases", str(N_CASES), "--seed", str(SEED)])
    files = sorted(p.name for p in cases_dir.iterdir())
    assert files == sorted(p.name for p in again.iterdir())
    for name in files:
        assert (cases_dir / name).read_bytes() == (again / name).read_bytes()
    other = tmp_path / "other"
    rca_fleet.main(["--out", str(other), "--cases", "1", "--seed", str(SEED + 1)])
    first = min(cases_dir.glob("*.csv")).name
    assert (other / first).read_bytes() != (cases_dir / first).read_bytes()


def test_rca_scores_the_cases(cases_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert rca.main(["--data", str(cases_dir)]) == 0
    out = capsys.readouterr().out
    assert f"cases={N_CASES} " in out
    lines = out.splitlines()
    assert any(line.startswith("precision=") and " F1=" in line for line in lines)
    assert any("ms/case max=" in line for line in lines)
    header = next(i for i, line in enumerate(lines) if line.startswith("case type"))
    assert lines[header].split()[-6:] == ["TP", "FP", "FN", "precision", "recall", "F1"]
    kinds = [line.split()[0] for line in lines[header + 1 : header + 4]]
    assert kinds == ["single", "multiple", "siblings"]
    dims = next(i for i, line in enumerate(lines) if line.startswith("fixed dims"))
    assert [line.split()[0] for line in lines[dims + 1 : dims + 4]] == ["1", "2", "3+"]
    # per-type rows add up to the totals
    total = [0, 0, 0]
    for line in lines[header + 1 : header + 4]:
        for i, v in enumerate(line.split()[2:5]):
            total[i] += int(v)
    assert f"TP={total[0]} FP={total[1]} FN={total[2]}" in out


def test_rca_types_without_type_key() -> None:
    assert rca.case_type({"data": "x"}, {"a=1"}) == "single"
    assert rca.case_type({"data": "x"}, {"a=1", "b=2"}) == "multiple"
    assert rca.case_type({"type": "siblings"}, {"a=1", "b=2"}) == "siblings"
    assert rca.dims_row("a=1&b=2&c=3&d=4") == "3+"
    assert rca.dims_row("a=1") == "1"
