"""Score simwatch.core.localize on the RS root-cause benchmark.

Usage::

    python bench/rca.py [--data DIR] [--min-affected X] ... [-v]

For each case: the leaves at the anomalous minute; a leaf's expected failing
count is the mean of its failure share (value / cnt) over the 4 minutes before
the anomaly (only the minutes where the leaf exists) times its current ``cnt``;
a leaf with no history gets the share of all leaves over those minutes. With
``--expected engine`` the share is the engine's instead (``GroupBaseline``): the
leaf's failing over its members in those minutes, pulled towards the share of all
leaves by ``BaselineParams.shrink`` (30) members at it and floored at
``BaselineParams.min_ratio`` (0.2 %), so a small leaf with no failure in 4
minutes does not expect none. A leaf's over-dispersion is learned over the same
minutes (its Pearson residuals around its expected share, shrunk towards 1 as
``GroupBaseline.dispersion`` does), and so is its peak share (its largest failing
share in those minutes, each minute's count at most ``skip_z`` standard deviations of
its over-dispersion so far above expected, as ``GroupBaseline.peak_share``);
``--no-peak`` leaves the peak out. The
prediction is compared with ``anomaly.yaml`` element by element (``attr=value``
pairs sorted and joined by ``&``, exact match only); TP, FP, FN are summed over
the cases and F1 = 2·TP / (2·TP + FP + FN).

After the totals, a table per case type (``type`` in ``anomaly.yaml`` when
present, e.g. from ``bench/rca_fleet.py``; else ``single`` for one true element
and ``multiple`` for more) with TP, FP, FN, precision, recall and F1, and per
number of attributes a true element fixes (1, 2, 3+) with TP, FN and recall
(a false positive belongs to no true element, so it is counted per case type
only).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import math
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from simwatch.core.baseline import BaselineParams
from simwatch.core.localize import LeafTable, LocalizeParams, localize

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "rca" / "RS"
HISTORY = 4


def element_key(dims: dict[str, Any]) -> str:
    return "&".join(sorted(f"{k}={v}" for k, v in dims.items()))


def load_case(path: Path, ts: int, expected: str = "mean", *, use_peak: bool = True) -> LeafTable:
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        fields = reader.fieldnames or []
        dims = tuple(f for f in fields if f not in {"min", "value", "cnt"})
        now: dict[tuple[str, ...], list[float]] = defaultdict(lambda: [0.0, 0.0])
        hist: dict[int, dict[tuple[str, ...], list[float]]] = defaultdict(
            lambda: defaultdict(lambda: [0.0, 0.0])
        )
        for row in reader:
            minute = int(float(row["min"]))
            if minute > ts:
                continue
            key = tuple(row[d] for d in dims)
            acc = now[key] if minute == ts else hist[minute][key]
            acc[0] += float(row["value"])
            acc[1] += float(row["cnt"])
    minutes = sorted(m for m in hist if m < ts)[-HISTORY:]
    share_sum: dict[tuple[str, ...], float] = defaultdict(float)
    share_n: dict[tuple[str, ...], int] = defaultdict(int)
    all_v = all_c = 0.0
    for m in minutes:
        for key, (v, c) in hist[m].items():
            all_v += v
            all_c += c
            if c > 0:
                share_sum[key] += v / c
                share_n[key] += 1
    fallback = all_v / all_c if all_c > 0 else 0.0
    base = BaselineParams()
    pooled: dict[tuple[str, ...], list[float]] = defaultdict(lambda: [0.0, 0.0])
    for m in minutes:
        for key, (v, c) in hist[m].items():
            pooled[key][0] += v
            pooled[key][1] += c

    def share_of(key: tuple[str, ...]) -> float:
        if expected == "engine":  # GroupBaseline: shrunk towards the fleet's share, floored
            v, c = pooled.get(key, (0.0, 0.0))
            return max((v + base.shrink * fallback) / (c + base.shrink), base.min_ratio)
        k = share_n.get(key, 0)
        return share_sum[key] / k if k else fallback

    rows = [(key, v, c, share_of(key) * c) for key, (v, c) in now.items()]
    table = LeafTable.from_rows(dims, rows)
    # per leaf: its over-dispersion over the same minutes, as the engine's baseline learns
    # it (GroupBaseline.dispersion): Pearson residuals around its expected share, each at
    # most skip_z², shrunk towards counting noise by dispersion_prior minutes at 1
    prior, cap = base.dispersion_prior, base.skip_z * base.skip_z
    scatter, peaks = [], []
    for key, (_, c_now) in now.items():  # from_rows keeps the rows' order (no duplicates)
        k = share_n.get(key, 0)
        share = share_of(key)
        resid, seen, peak = 0.0, 0, 0.0
        for m in minutes:
            v, c = hist[m].get(key, (0.0, 0.0))
            if c > 0 and share > 0:
                e = share * c
                phi = max(1.0, (prior + resid) / (prior + seen))  # before this minute
                peak = max(peak, min(v, e + base.skip_z * math.sqrt(phi * e)) / c)
                resid += min((v - e) ** 2 / e, cap)
                seen += 1
        scatter.append(max(1.0, (prior + resid) / (prior + max(k - 1, 0))))
        peaks.append(peak * c_now)
    return dataclasses.replace(
        table,
        dispersion=np.asarray(scatter, dtype=np.float64),
        peak=np.asarray(peaks, dtype=np.float64) if use_peak else None,
    )


def truth_elements(cause: Any) -> set[str]:  # noqa: ANN401 - raw YAML value
    items = cause if isinstance(cause, list) else [cause]
    return {element_key(dict(el)) for el in items}


def case_type(case: dict[str, Any], truth: set[str]) -> str:
    kind = case.get("type")
    if kind is not None:
        return str(kind)
    return "single" if len(truth) == 1 else "multiple"


def dims_row(element: str) -> str:
    n = element.count("&") + 1
    return "3+" if n >= 3 else str(n)


def leaves_of(table: LeafTable, element: str) -> np.ndarray:
    """The leaves of the group named ``element`` (``attr=value`` pairs joined by ``&``;
    ``""`` is the whole table); none when a value is not in the table."""
    mask = np.ones(len(table.affected), dtype=bool)
    for pair in filter(None, element.split("&")):
        attr, value = pair.split("=", 1)
        d = table.dims.index(attr)
        if value not in table.labels[d]:
            return np.zeros_like(mask)
        mask &= table.codes[:, d] == table.labels[d].index(value)
    return mask


def false_cause_kind(table: LeafTable, element: str, truth: set[str], right: bool) -> str:
    """How a false cause relates to the true ones, by their leaves: ``child`` (inside one),
    ``parent`` (holding one), ``overlap`` (sharing leaves otherwise), ``beside`` (no
    shared leaf, in a case where a true cause was named too) or ``elsewhere`` (no shared
    leaf, no true cause named)."""
    mine = leaves_of(table, element)
    kinds = set()
    for t in truth:
        theirs = leaves_of(table, t)
        if not (mine & theirs).any():
            continue
        if not (mine & ~theirs).any():
            kinds.add("child")
        elif not (theirs & ~mine).any():
            kinds.add("parent")
        else:
            kinds.add("overlap")
    if not kinds:
        return "beside" if right else "elsewhere"
    return "/".join(sorted(kinds))


def _ratio(num: int, den: int) -> str:
    return f"{num / den:.3f}" if den else "-"


def print_breakdown(
    by_type: dict[str, list[int]], by_dims: dict[str, list[int]], n_by_type: dict[str, int]
) -> None:
    """Print the per-type (cases, TP, FP, FN, P, R, F1) and per-dims (TP, FN, R) tables."""
    print(
        f"{'case type':<12}{'cases':>6}{'TP':>6}{'FP':>6}{'FN':>6}"
        f"{'precision':>11}{'recall':>8}{'F1':>7}"
    )
    order = ["single", "multiple", "siblings"]
    kinds = [k for k in order if k in by_type] + sorted(k for k in by_type if k not in order)
    for kind in kinds:
        tp, fp, fn = by_type[kind]
        prec, rec, f1 = _ratio(tp, tp + fp), _ratio(tp, tp + fn), _ratio(2 * tp, 2 * tp + fp + fn)
        print(f"{kind:<12}{n_by_type[kind]:>6}{tp:>6}{fp:>6}{fn:>6}{prec:>11}{rec:>8}{f1:>7}")
    print(f"{'fixed dims':<12}{'elems':>6}{'TP':>6}{'FP':>6}{'FN':>6}{'':>11}{'recall':>8}")
    for row in ("1", "2", "3+"):
        tp, fn = by_dims.get(row, [0, 0])
        print(f"{row:<12}{tp + fn:>6}{tp:>6}{'-':>6}{fn:>6}{'':>11}{_ratio(tp, tp + fn):>8}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument(
        "--expected",
        choices=("mean", "engine"),
        default="mean",
        help="a leaf's expected share: the mean of its 4 minutes (customary) or as the"
        " engine's baseline learns it (shrunk towards the fleet's share, floored)",
    )
    ap.add_argument(
        "--no-peak",
        action="store_true",
        help="leave the leaves' peak shares out (over-dispersion alone raises thresholds)",
    )
    for f in dataclasses.fields(LocalizeParams):
        flag = "--" + f.name.replace("_", "-")
        kind = int if f.name in {"max_depth", "max_causes", "dispersion_min_leaves"} else float
        ap.add_argument(flag, type=kind, default=None, help=f"override {f.name}")
    ap.add_argument("-v", "--verbose", action="store_true", help="print one line per case")
    ap.add_argument(
        "--false-causes",
        action="store_true",
        help="print each false cause (its relation to the true ones, counts and score) and"
        " a count per relation",
    )
    args = ap.parse_args(argv)

    params = LocalizeParams()  # the product's defaults: one preset for every dataset
    overrides = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(LocalizeParams)
        if getattr(args, f.name) is not None
    }
    params = dataclasses.replace(params, **overrides)

    with (args.data / "anomaly.yaml").open(encoding="utf-8") as fh:
        cases = yaml.safe_load(fh)
    tp = fp = fn = 0
    elapsed = 0.0
    slowest = 0.0
    n_cases = 0
    by_type: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    n_by_type: dict[str, int] = defaultdict(int)
    by_dims: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    by_kind: dict[str, int] = defaultdict(int)
    for case in cases:
        path = args.data / f"{case['data']}.csv"
        table = load_case(path, int(case["timestamp"]), args.expected, use_peak=not args.no_peak)
        t0 = time.perf_counter()
        causes = localize(table, params)
        took = time.perf_counter() - t0
        elapsed += took
        slowest = max(slowest, took)
        n_cases += 1
        truth = truth_elements(case["cause"])
        pred = {element_key(dict(c.dims)) for c in causes}
        c_tp = len(truth & pred)
        tp += c_tp
        fp += len(pred - truth)
        fn += len(truth - pred)
        ctype = case_type(case, truth)
        n_by_type[ctype] += 1
        counts = by_type[ctype]
        counts[0] += c_tp
        counts[1] += len(pred - truth)
        counts[2] += len(truth - pred)
        for element in truth:
            by_dims[dims_row(element)][0 if element in pred else 1] += 1
        if args.false_causes:
            n_children = sum(
                false_cause_kind(table, element_key(dict(c.dims)), truth, c_tp > 0) == "child"
                for c in causes
                if element_key(dict(c.dims)) not in truth
            )
            for c in causes:
                key = element_key(dict(c.dims))
                if key in truth:
                    continue
                relation = false_cause_kind(table, key, truth, c_tp > 0)
                if relation == "child":
                    relation = "child (one of several)" if n_children > 1 else "child (alone)"
                by_kind[relation] += 1
                print(
                    f"FP {relation:<24} {case['data']}: {key or '{}'} A={c.affected:.0f}"
                    f" E={c.expected:.1f} N={c.total:.0f} score={c.score:.1f}"
                    f" truth={sorted(truth)}"
                )
        if args.verbose:
            mark = "ok " if pred == truth else "   "
            print(
                f"{mark}{case['data']}: leaves={len(table.affected)} "
                f"truth={sorted(truth)} pred={sorted(pred)}"
            )
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    print(f"params: {params}")
    print(f"cases={n_cases} TP={tp} FP={fp} FN={fn}")
    print(f"precision={prec:.3f} recall={rec:.3f} F1={f1:.3f}")
    print(
        f"localize time: total={elapsed:.3f}s mean={1000 * elapsed / max(n_cases, 1):.2f}ms/case"
        f" max={1000 * slowest:.2f}ms/case"
    )
    print_breakdown(by_type, by_dims, n_by_type)
    if args.false_causes:
        print("false causes by relation to the true ones:")
        for relation, count in sorted(by_kind.items(), key=lambda kv: -kv[1]):
            print(f"  {relation:<24}{count:>5}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
