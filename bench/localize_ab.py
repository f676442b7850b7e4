"""Compare another version of ``simwatch/core/localize.py`` with this tree's, case by case.

Usage::

    git archive main simwatch/core/localize.py | tar -x -C /tmp/old
    python bench/localize_ab.py --old /tmp/old/simwatch/core/localize.py
        [--sets bench,rs,fleet] [--fleet DIR] [--repeat 7] [--no-time]

Loads the other ``localize.py`` as a separate module beside this tree's (it imports
only numpy and the standard library), builds the cases once (``bench``: the 30
tables of ``bench/bench_localize.py``, about 3,000 leaves each; ``rs``: the RS
benchmark as ``bench/rca.py`` loads it, with the mean and the engine's expectation;
``fleet``: a ``bench/rca_fleet.py`` folder, the same two ways) and checks that both
versions return the same causes (dims, counts and score, exactly) for every case,
with the defaults and with the greedy pick only. Then it times both on the ``bench``
cases, alternately in one process (thread CPU time, best of ``--repeat`` per case),
so the load of a shared machine weighs on both alike, and prints median / p90 / max
per version and the ratio of the sums.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).parent))  # rca, rca_fleet, bench_localize

import bench_localize
import rca
import rca_fleet

from simwatch.core import localize as new_mod
from simwatch.core.localize import LeafTable, LocalizeParams


def load_module(path: Path) -> Any:  # noqa: ANN401 - a module loaded from a file
    spec = importlib.util.spec_from_file_location("localize_other", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["localize_other"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def bench_tables(n_cases: int, seed: int) -> list[tuple[str, LeafTable]]:
    rca_fleet.N_APNS = (90, 90)
    rca_fleet.N_COUNTRIES = (22, 22)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        rca_fleet.write_cases(out, n_cases, seed)
        return folder_tables(out, "bench", ("mean",))


def folder_tables(
    folder: Path, tag: str, expected: tuple[str, ...] = ("mean", "engine")
) -> list[tuple[str, LeafTable]]:
    with (folder / "anomaly.yaml").open(encoding="utf-8") as fh:
        cases = yaml.safe_load(fh)
    out = []
    for how in expected:
        for c in cases:
            table = rca.load_case(folder / f"{c['data']}.csv", int(c["timestamp"]), how)
            out.append((f"{tag}/{how}/{c['data']}", table))
    return out


def outcome(mod: Any, table: LeafTable, params: LocalizeParams) -> list[tuple[Any, ...]]:  # noqa: ANN401
    p = mod.LocalizeParams(**dataclasses.asdict(params))
    return [
        (tuple(sorted(c.dims.items())), c.affected, c.total, c.expected, c.score)
        for c in mod.localize(table, p)
    ]


def summary(ms: list[float]) -> str:
    return (
        f"median {statistics.median(ms):.2f} ms, p90 {statistics.quantiles(ms, n=10)[-1]:.2f} ms,"
        f" max {max(ms):.2f} ms"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--old", type=Path, required=True, help="the other localize.py")
    ap.add_argument("--sets", default="bench,rs,fleet")
    ap.add_argument("--fleet", type=Path, help="a bench/rca_fleet.py folder (set fleet)")
    ap.add_argument("--cases", type=int, default=30)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--no-time", action="store_true")
    args = ap.parse_args(argv)
    old_mod = load_module(args.old)
    sets = set(args.sets.split(","))
    bench = bench_tables(args.cases, args.seed) if "bench" in sets or not args.no_time else []
    tables = list(bench) if "bench" in sets else []
    if "rs" in sets:
        tables += folder_tables(rca.DEFAULT_DATA, "rs")
    if "fleet" in sets:
        if args.fleet is None:
            ap.error("--fleet DIR is needed for the fleet set")
        tables += folder_tables(args.fleet, "fleet")
    diffs = 0
    for params in (LocalizeParams(), bench_localize.GREEDY_ONLY):
        for name, table in tables:
            old, new = outcome(old_mod, table, params), outcome(new_mod, table, params)
            if old != new:
                diffs += 1
                print(f"DIFFERENT {name}: old {old} new {new}")
    print(f"{len(tables)} cases x 2 presets compared, {diffs} different")
    if args.no_time:
        return 1 if diffs else 0
    old_ms: list[float] = []
    new_ms: list[float] = []
    params = LocalizeParams()
    old_params = old_mod.LocalizeParams()
    for _, table in bench:
        best_old = best_new = float("inf")
        for _ in range(args.repeat):
            t0 = time.thread_time()
            old_mod.localize(table, old_params)
            t1 = time.thread_time()
            new_mod.localize(table, params)
            t2 = time.thread_time()
            best_old, best_new = min(best_old, t1 - t0), min(best_new, t2 - t1)
        old_ms.append(1000.0 * best_old)
        new_ms.append(1000.0 * best_new)
    print(f"old: {summary(old_ms)}")
    print(f"new: {summary(new_ms)}")
    ratios = [n / o for n, o in zip(new_ms, old_ms, strict=True)]
    print(
        f"new / old: sum {sum(new_ms) / sum(old_ms):.3f}, "
        f"median of per-case ratios {statistics.median(ratios):.3f}, max {max(ratios):.3f}"
    )
    return 1 if diffs else 0


if __name__ == "__main__":
    raise SystemExit(main())
