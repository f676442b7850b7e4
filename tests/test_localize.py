"""Tests for simwatch.core.localize on synthetic SIM fleets."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from simwatch.core.localize import Cause, LeafTable, LocalizeParams, localize, quick_check

DIMS = ("apn", "country", "partner")
BASELINE = 0.02


@dataclass
class Fleet:
    apn: np.ndarray  # per leaf: apn index
    country: np.ndarray
    partner: np.ndarray
    total: np.ndarray
    ratio: np.ndarray  # baseline silent ratio per leaf
    partners_of: list[list[int]]  # per country, its partner ids


def make_fleet(seed: int, n_apn: int = 8, n_country: int = 10) -> Fleet:
    """~8 APNs x 10 countries with 1-4 partners each; country 0 has exactly 1 partner."""
    rng = np.random.default_rng(seed)
    partners_of: list[list[int]] = []
    next_p = 0
    for c in range(n_country):
        k = 1 if c == 0 else (4 if c == 1 else int(rng.integers(2, 5)))
        partners_of.append(list(range(next_p, next_p + k)))
        next_p += k
    apn, country, partner, total = [], [], [], []
    for c, ps in enumerate(partners_of):
        for p in ps:
            for a in range(n_apn):
                # APN 0 everywhere, others in ~70 % of partners
                if a != 0 and rng.random() > 0.7:
                    continue
                apn.append(a)
                country.append(c)
                partner.append(p)
                # uneven sizes: a few big leaves, many small ones
                total.append(max(1, int(rng.lognormal(mean=3.0, sigma=1.2))))
    ratio = rng.uniform(0.01, 0.03, size=len(total))
    return Fleet(
        np.asarray(apn),
        np.asarray(country),
        np.asarray(partner),
        np.asarray(total, dtype=np.float64),
        ratio,
        partners_of,
    )


def table_of(fleet: Fleet, actual: np.ndarray) -> LeafTable:
    rows = [
        (
            (f"apn{a}", f"C{c}", f"P{p}"),
            float(x),
            float(n),
            float(r * n),
        )
        for a, c, p, x, n, r in zip(
            fleet.apn,
            fleet.country,
            fleet.partner,
            actual,
            fleet.total,
            fleet.ratio,
            strict=True,
        )
    ]
    return LeafTable.from_rows(DIMS, rows)


def simulate(
    fleet: Fleet, seed: int, faulty: np.ndarray | None = None, rate: float = 1.0
) -> np.ndarray:
    rng = np.random.default_rng(seed + 10_000)
    p = fleet.ratio.copy()
    if faulty is not None:
        p[faulty] = np.maximum(p[faulty], rate)
    return rng.binomial(fleet.total.astype(np.int64), p).astype(np.float64)


def dims_of(causes: list[Cause]) -> list[dict[str, str]]:
    return [dict(c.dims) for c in causes]


def big_partner(fleet: Fleet, multi: bool = True) -> int:
    """The partner with most SIMs in a country with at least 2 partners."""
    best, best_n = -1, -1.0
    for ps in fleet.partners_of:
        if multi and len(ps) < 2:
            continue
        for p in ps:
            n = float(fleet.total[fleet.partner == p].sum())
            if n > best_n:
                best, best_n = p, n
    return best


SEEDS = [1, 2, 3, 4, 5]


@pytest.mark.parametrize("seed", SEEDS)
def test_partner_outage(seed: int) -> None:
    fleet = make_fleet(seed)
    p = big_partner(fleet)
    actual = simulate(fleet, seed, fleet.partner == p)
    assert dims_of(localize(table_of(fleet, actual))) == [{"partner": f"P{p}"}]


@pytest.mark.parametrize("seed", SEEDS)
def test_partner_black_hole_30_percent(seed: int) -> None:
    fleet = make_fleet(seed)
    p = big_partner(fleet)
    actual = simulate(fleet, seed, fleet.partner == p, rate=0.3)
    causes = localize(table_of(fleet, actual))
    assert dims_of(causes) == [{"partner": f"P{p}"}]
    c = causes[0]
    assert c.affected == actual[fleet.partner == p].sum()
    assert c.total == fleet.total[fleet.partner == p].sum()
    assert c.expected == pytest.approx((fleet.ratio * fleet.total)[fleet.partner == p].sum())
    assert c.score > 0


@pytest.mark.parametrize("seed", SEEDS)
def test_apn_outage_across_countries(seed: int) -> None:
    fleet = make_fleet(seed)
    actual = simulate(fleet, seed, fleet.apn == 0)
    assert dims_of(localize(table_of(fleet, actual))) == [{"apn": "apn0"}]


@pytest.mark.parametrize("seed", SEEDS)
def test_country_outage(seed: int) -> None:
    fleet = make_fleet(seed)
    actual = simulate(fleet, seed, fleet.country == 1)  # country 1 has 4 partners
    assert dims_of(localize(table_of(fleet, actual))) == [{"country": "C1"}]


@pytest.mark.parametrize("seed", SEEDS)
def test_apn_in_one_country(seed: int) -> None:
    fleet = make_fleet(seed)
    actual = simulate(fleet, seed, (fleet.apn == 0) & (fleet.country == 1))
    assert dims_of(localize(table_of(fleet, actual))) == [{"apn": "apn0", "country": "C1"}]


@pytest.mark.parametrize("seed", SEEDS)
def test_two_independent_faults(seed: int) -> None:
    fleet = make_fleet(seed)
    p = fleet.partners_of[2][0]  # a partner in country 2 (which has >= 2 partners)
    faulty = (fleet.partner == p) | ((fleet.apn == 0) & (fleet.country == 1))
    actual = simulate(fleet, seed, faulty)
    got = sorted(dims_of(localize(table_of(fleet, actual))), key=lambda d: sorted(d.items()))
    want = sorted(
        [{"partner": f"P{p}"}, {"apn": "apn0", "country": "C1"}], key=lambda d: sorted(d.items())
    )
    assert got == want


def ordered(causes: list[dict[str, str]]) -> list[dict[str, str]]:
    return sorted(causes, key=lambda d: sorted(d.items()))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("rates", [(1.0, 1.0), (1.0, 0.4)])
def test_sibling_causes_stay_apart(seed: int, rates: tuple[float, float]) -> None:
    # one APN failing in two countries, its eight other countries healthy: two causes,
    # never the APN fleet-wide (the on-call team would look at the wrong thing)
    fleet = make_fleet(seed)
    p = fleet.ratio.copy()
    for country, rate in zip((1, 2), rates, strict=True):
        cell = (fleet.apn == 0) & (fleet.country == country)
        p[cell] = np.maximum(p[cell], rate)
    rng = np.random.default_rng(seed + 20_000)
    actual = rng.binomial(fleet.total.astype(np.int64), p).astype(np.float64)
    got = ordered(dims_of(localize(table_of(fleet, actual))))
    assert got == [{"apn": "apn0", "country": "C1"}, {"apn": "apn0", "country": "C2"}]


@pytest.mark.parametrize("seed", SEEDS)
def test_parent_with_a_small_healthy_exception_is_the_parent(seed: int) -> None:
    # the APN fails in all its countries but the smallest one, which holds less than
    # split_min_share of its SIMs: the APN is the cause, not its nine countries
    fleet = make_fleet(seed)
    apn0 = fleet.apn == 0
    sizes = {c: float(fleet.total[apn0 & (fleet.country == c)].sum()) for c in range(10)}
    spared = min(sizes, key=lambda c: sizes[c])
    assert sizes[spared] < LocalizeParams().split_min_share * sum(sizes.values())
    actual = simulate(fleet, seed, apn0 & (fleet.country != spared), rate=0.8)
    assert dims_of(localize(table_of(fleet, actual))) == [{"apn": "apn0"}]


@pytest.mark.parametrize("seed", SEEDS)
def test_single_partner_country_prefers_country(seed: int) -> None:
    # country 0 has one partner: {country} and {partner} are the same leaves;
    # the tie goes to fewer attributes, then to the earlier dimension (country).
    fleet = make_fleet(seed)
    (p,) = fleet.partners_of[0]
    actual = simulate(fleet, seed, fleet.partner == p)
    assert dims_of(localize(table_of(fleet, actual))) == [{"country": "C0"}]


@pytest.mark.parametrize("seed", SEEDS)
def test_partner_among_normal_siblings_not_country(seed: int) -> None:
    # partner elevated, country's other partners normal -> partner;
    # all partners of the country elevated -> country.
    fleet = make_fleet(seed)
    ps = fleet.partners_of[1]
    actual = simulate(fleet, seed, fleet.partner == ps[0], rate=0.5)
    assert dims_of(localize(table_of(fleet, actual))) == [{"partner": f"P{ps[0]}"}]
    actual = simulate(fleet, seed, np.isin(fleet.partner, ps), rate=0.5)
    assert dims_of(localize(table_of(fleet, actual))) == [{"country": "C1"}]


@pytest.mark.parametrize("seed", SEEDS)
def test_fleet_wide(seed: int) -> None:
    fleet = make_fleet(seed)
    actual = simulate(fleet, seed, np.ones(len(fleet.total), dtype=bool), rate=0.3)
    causes = localize(table_of(fleet, actual))
    assert dims_of(causes) == [{}]
    assert causes[0].total == fleet.total.sum()


def test_normal_fleets_never_alert() -> None:
    hits = []
    for seed in range(200):
        fleet = make_fleet(seed)
        actual = simulate(fleet, seed)
        # a few isolated dead devices in random leaves
        rng = np.random.default_rng(seed)
        for i in rng.choice(len(actual), size=3, replace=False):
            actual[i] = min(actual[i] + 1, fleet.total[i])
        causes = localize(table_of(fleet, actual))
        if causes:
            hits.append((seed, dims_of(causes)))
    assert hits == []


def test_tiny_leaves_one_of_one_failing() -> None:
    rows = []
    for i in range(300):
        a, c, p = f"apn{i % 7}", f"C{i % 11}", f"P{i % 23}"
        failing = 1.0 if i % 40 == 0 else 0.0  # 8 isolated 1-of-1 leaves
        rows.append(((a, c, p), failing, 1.0, BASELINE))
    table = LeafTable.from_rows(DIMS, rows)
    assert localize(table) == []


def test_quick_check_and_early_exit_on_normal_data() -> None:
    fleet = make_fleet(7)
    table = table_of(fleet, fleet.ratio * fleet.total)  # actual == expected exactly
    assert not quick_check(table)
    assert localize(table) == []
    noisy = table_of(fleet, simulate(fleet, 7))
    assert quick_check(noisy)  # noise passes the cheap check ...
    assert localize(noisy) == []  # ... but nothing is significant


def test_min_affected_blocks_small_groups() -> None:
    # 4 of 4 failing against a tiny baseline is significant but below min_affected
    rows = [(("a", "DE", "26201"), 0.0, 1000.0, 20.0), (("b", "DE", "26202"), 4.0, 4.0, 0.08)]
    table = LeafTable.from_rows(DIMS, rows)
    assert localize(table) == []
    assert dims_of(localize(table, LocalizeParams(min_affected=3.0, min_excess=1.0))) == [
        {"apn": "b"}
    ]


def test_from_rows_sums_duplicates_and_labels() -> None:
    rows = [
        (("x", "DE", "26202"), 1.0, 10.0, 0.5),
        (("y", "FR", "20801"), 2.0, 20.0, 0.4),
        (("x", "DE", "26202"), 3.0, 5.0, 0.25),
    ]
    t = LeafTable.from_rows(DIMS, rows)
    assert t.codes.shape == (2, 3)
    assert t.codes.dtype == np.int32
    assert t.labels == (("x", "y"), ("DE", "FR"), ("26202", "20801"))
    np.testing.assert_allclose(t.affected, [4.0, 2.0])
    np.testing.assert_allclose(t.total, [15.0, 20.0])
    np.testing.assert_allclose(t.expected, [0.75, 0.4])


def test_empty_table() -> None:
    assert localize(LeafTable.from_rows(DIMS, [])) == []


def test_max_depth_limits_causes() -> None:
    fleet = make_fleet(3)
    actual = simulate(fleet, 3, (fleet.apn == 0) & (fleet.country == 1))
    causes = localize(table_of(fleet, actual), LocalizeParams(max_depth=1))
    assert causes  # the fault is still found, named by one dimension at most
    assert all(len(c.dims) <= 1 for c in causes)
