"""Tests for simwatch.core.localize: granularity of a cause and noise beyond counting.

A fleet of independent dimensions ``apn, country, rat`` (every APN in every
country on every RAT), so a group fixing three attributes is not the same leaves
as any group fixing two.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from simwatch.core.localize import LeafTable, LocalizeParams, localize

DIMS = ("apn", "country", "rat")
RATS = ("2G", "4G", "LTE-M", "NB-IoT")
SEEDS = [1, 2, 3, 4, 5]


def fleet(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Leaf codes (apn, country, rat), SIMs per leaf and baseline failing share per leaf."""
    rng = np.random.default_rng(seed)
    codes = np.array([(a, c, r) for a in range(6) for c in range(8) for r in range(len(RATS))])
    total = np.maximum(1.0, np.round(rng.lognormal(mean=3.5, sigma=1.0, size=len(codes))))
    share = rng.uniform(0.005, 0.03, size=len(codes))
    return codes, total, share


def table(codes: np.ndarray, actual: np.ndarray, total: np.ndarray, share: np.ndarray) -> LeafTable:
    rows = [
        ((f"apn{a}", f"C{c}", RATS[r]), float(x), float(n), float(s * n))
        for (a, c, r), x, n, s in zip(codes, actual, total, share, strict=True)
    ]
    return LeafTable.from_rows(DIMS, rows)


def with_fault(
    seed: int, rate_of: dict[int, float], where: np.ndarray, quiet: np.ndarray | None = None
) -> LeafTable:
    """Leaves in ``where`` lose, on top of their baseline, the share ``rate_of[rat]`` of
    their SIMs (rats not in ``rate_of``: none); leaves in ``quiet`` have a baseline of no
    failures (none in their history)."""
    codes, total, share = fleet(seed)
    if quiet is not None:
        share[quiet] = 0.0
    p = share.copy()
    for rat, rate in rate_of.items():
        cell = where & (codes[:, 2] == rat)
        p[cell] = share[cell] + rate * (1.0 - share[cell])
    rng = np.random.default_rng(seed + 1_000)
    actual = rng.binomial(total.astype(np.int64), p).astype(np.float64)
    return table(codes, actual, total, share)


@pytest.mark.parametrize("seed", SEEDS)
def test_three_attribute_cause_keeps_its_attributes(seed: int) -> None:
    # APN 0 in country 1 loses 60 % of its SIMs on 4G only; its other RATs are healthy
    # and never fail otherwise, so they add nothing to the group's expected or failing
    # count: only the fault model (a share of the members) tells that they would have
    # failed too. The cause names the RAT.
    codes, _, _ = fleet(seed)
    where = (codes[:, 0] == 0) & (codes[:, 1] == 1)
    causes = localize(with_fault(seed, {1: 0.6}, where, quiet=where & (codes[:, 2] != 1)))
    assert [dict(c.dims) for c in causes] == [{"apn": "apn0", "country": "C1", "rat": "4G"}]


@pytest.mark.parametrize("seed", SEEDS)
def test_bursty_leaves_raise_no_cause(seed: int) -> None:
    # every leaf's failing share scatters from minute to minute (beta, concentration
    # 100) far beyond counting noise; nothing fails: no cause, while a test assuming
    # counting noise alone (dispersion_quantile 0) names some
    rng = np.random.default_rng(seed)
    n_leaves = 200
    codes = np.array([(i % 6, (i // 6) % 8, (i // 48) % 4) for i in range(n_leaves)])
    total = np.full(n_leaves, 500.0)
    share = np.full(n_leaves, 0.02)
    drawn = rng.beta(0.02 * 100, 0.98 * 100, size=n_leaves)
    actual = rng.binomial(total.astype(np.int64), drawn).astype(np.float64)
    bursty = table(codes, actual, total, share)
    assert localize(bursty, LocalizeParams(dispersion_quantile=0.0)) != []
    assert localize(bursty) == []


def bursty_leaf(
    seed: int, draw: int, *, size: float, scatter: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``fleet(seed)`` whose leaf 0 holds ``size`` SIMs at 2 % with a history scattering
    ``scatter`` times as much as counting noise; failing counts drawn at the baselines
    with seed ``seed + draw`` (codes, total, share, actual, per-leaf dispersion)."""
    codes, total, share = fleet(seed)
    total[0], share[0] = size, 0.02
    rng = np.random.default_rng(seed + draw)
    actual = rng.binomial(total.astype(np.int64), share).astype(np.float64)
    dispersion = np.ones(len(total))
    dispersion[0] = scatter
    return codes, total, share, actual, dispersion


@pytest.mark.parametrize("seed", SEEDS)
def test_a_leaf_known_bursty_does_not_become_a_cause(seed: int) -> None:
    # one leaf of 200 SIMs jumps from 2 % to 10 % failing; its history says its count
    # scatters 12 times as much as counting noise (GroupBaseline.dispersion): no cause,
    # while the same jump in a leaf of counting noise raises one
    codes, total, share, actual, scatter = bursty_leaf(seed, 2_000, size=200, scatter=12.0)
    actual[0] = 20.0
    plain = table(codes, actual, total, share)
    assert localize(plain) != []
    assert localize(dataclasses.replace(plain, dispersion=scatter)) == []


@pytest.mark.parametrize("seed", SEEDS)
def test_a_total_outage_beyond_a_bursty_leafs_history_is_a_cause(seed: int) -> None:
    # leaf 0: 20 SIMs at 2 %, whose history scatters 9 times as much as counting noise
    # (the most GroupBaseline learns) and peaked at 4 failing (GroupBaseline.peak_share).
    # 7 failing is within its scatter: no cause. All 20 failing is beyond anything its
    # history or counting noise produced: the leaf is the cause, where its
    # over-dispersion alone names a parent (its quiet siblings dilute the parent's
    # over-dispersion) or nothing.
    codes, total, share, actual, scatter = bursty_leaf(seed, 3_000, size=20, scatter=9.0)
    peak = share * total
    peak[0] = 4.0
    actual[0] = 7.0
    burst = dataclasses.replace(table(codes, actual, total, share), dispersion=scatter)
    assert localize(dataclasses.replace(burst, dispersion=None)) != []
    assert localize(dataclasses.replace(burst, peak=peak)) == []
    actual[0] = 20.0
    outage = dataclasses.replace(table(codes, actual, total, share), dispersion=scatter)
    leaf = [{"apn": "apn0", "country": "C0", "rat": "2G"}]
    assert [dict(c.dims) for c in localize(outage)] != leaf
    causes = localize(dataclasses.replace(outage, peak=peak))
    assert [dict(c.dims) for c in causes] == leaf
