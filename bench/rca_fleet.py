"""Generate a fleet-shaped multi-cause root-cause benchmark in the RS layout.

Usage::

    python bench/rca_fleet.py --out DIR [--cases 150] [--seed 1] [--size-scale 1]

Each case is a synthetic IoT SIM fleet with dimensions ``apn``, ``country``,
``partner`` (an MCC+MNC such as ``26201``; a partner belongs to one country)
and ``rat``. A leaf is one observed ``(apn, country, partner, rat)``
combination; its SIM count is heavy-tailed (lognormal leaf noise times a
lognormal APN scale: many tiny leaves, a few with thousands of SIMs).

Per minute (``HISTORY`` minutes of history, then the anomalous minute) a leaf
reports ``cnt`` ~ Poisson(size) (at least 1) and ``value`` ~ Binomial(cnt,
share): the share is a per-leaf base rate, log-uniform in 0.2 %-3 %, except
for ``OVERDISPERSED`` of the leaves whose share is drawn each minute from a
beta with the same mean and concentration ``BURST_CONCENTRATION`` (bursty).

At the anomalous minute 1-3 simultaneous causes are injected; each is a group
fixing 1, 2 or 3 attributes (see ``TEMPLATES``) in which a fault fraction
(uniform in 20 %-100 %) of the SIMs that did not already fail fail on top.
Case types, in turn: ``single`` (one cause), ``multiple`` (2-3 independent
causes), ``siblings`` (one APN in two of its countries, or on two of its RATs,
while the rest of the APN, at least one more country or RAT with
``MIN_GROUP_SIMS`` SIMs or more in all, stays healthy).

A draw is rejected (and redrawn) when a cause group has fewer than
``MIN_GROUP_SIMS`` SIMs, when two causes share a leaf, or when the answer is
ambiguous: a cause's leaves are exactly those of another group fixing no more
attributes (e.g. the only partner of a country), or the union of the causes is
exactly one group. The files follow the RS layout (one CSV per case with
``min``, the attribute columns, ``value``, ``cnt``; ``anomaly.yaml`` with
``data``, ``timestamp``, ``cause``) plus a ``type`` key per case. Everything is
deterministic from ``--seed``; case ``i`` depends only on ``(seed, i)``.
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import yaml

if TYPE_CHECKING:
    from collections.abc import Sequence

DIMS = ("apn", "country", "partner", "rat")
RATS = ("2G", "3G", "4G", "LTE-M", "NB-IoT")
# Probability that a country's networks offer a RAT (4G always).
RAT_AVAILABILITY = {"2G": 0.7, "3G": 0.5, "4G": 1.0, "LTE-M": 0.6, "NB-IoT": 0.5}
# Country -> real MCC+MNC codes of its networks.
NETWORKS: dict[str, tuple[str, ...]] = {
    "DE": ("26201", "26202", "26203", "26207"),
    "FR": ("20801", "20810", "20815", "20820"),
    "GB": ("23410", "23415", "23420", "23430"),
    "ES": ("21401", "21403", "21404", "21407"),
    "IT": ("22201", "22210", "22250", "22288"),
    "NL": ("20404", "20408", "20416"),
    "PL": ("26001", "26002", "26003", "26006"),
    "SE": ("24001", "24002", "24007", "24008"),
    "AT": ("23201", "23203", "23205", "23210"),
    "BE": ("20601", "20610", "20620"),
    "CH": ("22801", "22802", "22803"),
    "DK": ("23801", "23802", "23820"),
    "NO": ("24201", "24202", "24214"),
    "FI": ("24405", "24412", "24491"),
    "US": ("310260", "310410", "311480"),
    "BR": ("72405", "72406", "72411", "72431"),
    "MX": ("334020", "334030", "334050"),
    "JP": ("44010", "44020", "44050"),
    "AU": ("50501", "50502", "50503"),
    "ZA": ("65501", "65507", "65510"),
    "TR": ("28601", "28602", "28603"),
    "IN": ("40410", "40420", "40445"),
}
PRODUCTS = (
    "meters", "trackers", "pos", "telematics", "alarms", "scooters", "lockers",
    "chargers", "vending", "health", "agri", "lighting",
)  # fmt: skip
CUSTOMERS = ("acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "tyrell")

N_COUNTRIES = (8, 15)  # inclusive range
PARTNERS_PER_COUNTRY = (1, 4)
N_APNS = (5, 20)
APN_RATS = (1, 4)  # RATs an APN's devices use
PARTNER_USE = 0.8  # probability an APN uses a given partner of one of its countries
SIZE_MEDIAN = 8.0  # SIMs in a typical leaf
SIZE_SIGMA = 1.6  # lognormal sigma of the leaf noise
APN_SIGMA = 1.0  # lognormal sigma of the per-APN scale
MAX_SIZE = 20_000
BASE_SHARE = (0.002, 0.03)  # log-uniform per leaf
OVERDISPERSED = 0.12
BURST_CONCENTRATION = 5.0  # beta a + b: share sd = sqrt(m (1 - m) / 6), ~0.4 sqrt(m)
FAULT_FRACTION = (0.2, 1.0)
HISTORY = 10
MIN_GROUP_SIMS = 10
T0 = 1_700_000_040  # a whole minute
CASE_SPACING_S = 3600

# Cause shapes by number of fixed attributes.
TEMPLATES: dict[int, tuple[tuple[str, ...], ...]] = {
    1: (("partner",), ("apn",), ("country",), ("rat",)),
    2: (
        ("apn", "country"),
        ("apn", "partner"),
        ("apn", "rat"),
        ("country", "rat"),
        ("partner", "rat"),
    ),
    3: (("apn", "country", "rat"), ("apn", "partner", "rat")),
}
TYPES = ("single", "multiple", "siblings")

Element = tuple[tuple[str, str], ...]  # sorted (attr, value) pairs


@dataclass(frozen=True, slots=True)
class Fleet:
    leaves: list[tuple[str, str, str, str]]  # values in DIMS order
    size: np.ndarray  # mean SIM count per leaf
    share: np.ndarray  # base failing share per leaf
    bursty: np.ndarray  # bool per leaf: over-dispersed
    groups: dict[Element, frozenset[int]]  # every group fixing 1..3 attributes
    by_leaves: dict[frozenset[int], list[Element]]


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    kind: str
    timestamp: int
    causes: list[Element]
    fractions: list[float]
    rows: list[tuple[int, tuple[str, str, str, str], int, int]]  # min, leaf, value, cnt


def _randint(rng: np.random.Generator, bounds: tuple[int, int]) -> int:
    return int(rng.integers(bounds[0], bounds[1] + 1))


def make_fleet(rng: np.random.Generator, size_scale: float = 1.0) -> Fleet:
    countries = sorted(
        rng.choice(sorted(NETWORKS), size=_randint(rng, N_COUNTRIES), replace=False).tolist()
    )
    partners: dict[str, list[str]] = {}
    rats_of: dict[str, list[str]] = {}
    for c in countries:
        nets = NETWORKS[c]
        k = min(_randint(rng, PARTNERS_PER_COUNTRY), len(nets))
        partners[c] = sorted(rng.choice(nets, size=k, replace=False).tolist())
        rats_of[c] = [r for r in RATS if rng.random() < RAT_AVAILABILITY[r]]
    n_apns = _randint(rng, N_APNS)
    names = [f"{p}.{c}" for p in PRODUCTS for c in CUSTOMERS]
    apns = sorted(rng.choice(names, size=n_apns, replace=False).tolist())
    leaves: list[tuple[str, str, str, str]] = []
    scale: list[float] = []
    for apn in apns:
        apn_scale = float(rng.lognormal(0.0, APN_SIGMA))
        n_c = _randint(rng, (1, len(countries)))
        apn_countries = sorted(rng.choice(countries, size=n_c, replace=False).tolist())
        n_r = _randint(rng, APN_RATS)
        apn_rats = set(rng.choice(RATS, size=n_r, replace=False).tolist())
        for c in apn_countries:
            rats = [r for r in rats_of[c] if r in apn_rats]
            if not rats:
                continue
            used = [p for p in partners[c] if rng.random() < PARTNER_USE]
            if not used:
                used = [partners[c][int(rng.integers(len(partners[c])))]]
            for p in used:
                for r in rats:
                    leaves.append((apn, c, p, r))
                    scale.append(apn_scale)
    n = len(leaves)
    median = SIZE_MEDIAN * size_scale
    size = np.asarray(scale) * rng.lognormal(np.log(median), SIZE_SIGMA, size=n)
    size = np.clip(size, 1.0, MAX_SIZE * size_scale)
    lo, hi = np.log(BASE_SHARE[0]), np.log(BASE_SHARE[1])
    share = np.exp(rng.uniform(lo, hi, size=n))
    bursty = rng.random(n) < OVERDISPERSED
    groups: dict[Element, set[int]] = {}
    for i, leaf in enumerate(leaves):
        pairs = tuple(zip(DIMS, leaf, strict=True))
        for depth in (1, 2, 3):
            for combo in combinations(pairs, depth):
                groups.setdefault(tuple(sorted(combo)), set()).add(i)
    frozen = {el: frozenset(ix) for el, ix in groups.items()}
    by_leaves: dict[frozenset[int], list[Element]] = {}
    for el, ix in frozen.items():
        by_leaves.setdefault(ix, []).append(el)
    return Fleet(leaves, size, share, bursty, frozen, by_leaves)


def _sims(fleet: Fleet, ix: frozenset[int]) -> float:
    return float(fleet.size[list(ix)].sum())


def _identifiable(fleet: Fleet, causes: Sequence[Element]) -> bool:
    seen: set[int] = set()
    for el in causes:
        ix = fleet.groups[el]
        if _sims(fleet, ix) < MIN_GROUP_SIMS or seen & ix:
            return False
        seen |= ix
        if any(o != el and len(o) <= len(el) for o in fleet.by_leaves[ix]):
            return False
    return len(causes) < 2 or frozenset(seen) not in fleet.by_leaves


def _draw_group(rng: np.random.Generator, fleet: Fleet) -> Element:
    depth = int(rng.integers(1, 4))
    shapes = TEMPLATES[depth]
    shape = shapes[int(rng.integers(len(shapes)))]
    leaf = fleet.leaves[int(rng.integers(len(fleet.leaves)))]
    return tuple(sorted((d, leaf[DIMS.index(d)]) for d in shape))


def _draw_siblings(rng: np.random.Generator, fleet: Fleet) -> list[Element]:
    apn = fleet.leaves[int(rng.integers(len(fleet.leaves)))][0]
    dim = "country" if rng.random() < 0.5 else "rat"
    values = sorted({leaf[DIMS.index(dim)] for leaf in fleet.leaves if leaf[0] == apn})
    if len(values) < 3:  # the APN must keep at least one healthy country / RAT
        return []
    pick = sorted(rng.choice(values, size=2, replace=False).tolist())
    causes: list[Element] = [tuple(sorted((("apn", apn), (dim, v)))) for v in pick]
    rest = fleet.groups[(("apn", apn),)] - fleet.groups[causes[0]] - fleet.groups[causes[1]]
    return causes if _sims(fleet, rest) >= MIN_GROUP_SIMS else []


def draw_causes(rng: np.random.Generator, fleet: Fleet, kind: str) -> list[Element] | None:
    for _ in range(500):
        if kind == "siblings":
            causes = _draw_siblings(rng, fleet)
        else:
            k = 1 if kind == "single" else int(rng.integers(2, 4))
            causes = [_draw_group(rng, fleet) for _ in range(k)]
        if causes and _identifiable(fleet, causes):
            return causes
    return None


def make_case(seed: int, index: int, size_scale: float = 1.0) -> Case:
    rng = np.random.default_rng([seed, index])
    kind = TYPES[index % len(TYPES)]
    while True:
        fleet = make_fleet(rng, size_scale)
        causes = draw_causes(rng, fleet, kind)
        if causes is not None:
            break
    fractions = [float(rng.uniform(*FAULT_FRACTION)) for _ in causes]
    fault = np.zeros(len(fleet.leaves))
    for el, frac in zip(causes, fractions, strict=True):
        fault[list(fleet.groups[el])] = frac
    a = fleet.share * BURST_CONCENTRATION
    b = (1.0 - fleet.share) * BURST_CONCENTRATION
    base = T0 + index * CASE_SPACING_S
    rows: list[tuple[int, tuple[str, str, str, str], int, int]] = []
    for m in range(HISTORY + 1):
        cnt = np.maximum(rng.poisson(fleet.size), 1)
        share = np.where(fleet.bursty, rng.beta(a, b), fleet.share)
        value = rng.binomial(cnt, share)
        if m == HISTORY:
            value = value + rng.binomial(cnt - value, fault)
        minute = base + 60 * m
        rows.extend(
            (minute, leaf, int(v), int(c))
            for leaf, v, c in zip(fleet.leaves, value, cnt, strict=True)
        )
    return Case(
        name=f"fleet{index:03d}_{kind}",
        kind=kind,
        timestamp=base + 60 * HISTORY,
        causes=causes,
        fractions=fractions,
        rows=rows,
    )


def write_cases(out: Path, n_cases: int, seed: int, size_scale: float = 1.0) -> list[Case]:
    out.mkdir(parents=True, exist_ok=True)
    cases = [make_case(seed, i, size_scale) for i in range(n_cases)]
    entries = []
    for case in cases:
        with (out / f"{case.name}.csv").open("w", encoding="utf-8", newline="") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(["min", *DIMS, "value", "cnt"])
            w.writerows([m, *leaf, v, c] for m, leaf, v, c in case.rows)
        elements = [dict(el) for el in case.causes]
        entries.append(
            {
                "data": case.name,
                "timestamp": case.timestamp,
                "cause": elements[0] if len(elements) == 1 else elements,
                "type": case.kind,
            }
        )
    with (out / "anomaly.yaml").open("w", encoding="utf-8") as fh:
        yaml.safe_dump(entries, fh, sort_keys=False, default_flow_style=None, allow_unicode=True)
    return cases


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--cases", type=int, default=150)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--size-scale",
        type=float,
        default=1.0,
        help="leaf sizes times this (10: most leaves expect several failures)",
    )
    args = ap.parse_args(argv)
    cases = write_cases(args.out, args.cases, args.seed, args.size_scale)
    n_leaves = sum(len(c.rows) for c in cases) // (HISTORY + 1)
    kinds = {k: sum(c.kind == k for c in cases) for k in TYPES}
    print(f"wrote {len(cases)} cases ({kinds}), {n_leaves} leaves in all, to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
