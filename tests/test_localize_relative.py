"""Tests for simwatch.core.localize: scatter that grows with the square of a count.

Large leaves whose failing share itself varies (shocks shared by a leaf's members)
scatter by a share of their count, not by its square root: a quasi-Poisson
over-dispersion fitted to the leaves of every size cannot hold that, and the largest
leaves' scatter reads as causes.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_localize_moves import RATS, table

from simwatch.core.localize import (
    LeafTable,
    LocalizeParams,
    dispersion,
    localize,
    relative_dispersion,
)

SEEDS = [1, 2, 3, 4, 5]
NO_RELATIVE = LocalizeParams(relative_min_expected=float("inf"))


def large_fleet(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Leaf codes (apn, country, rat), SIMs per leaf (hundreds to tens of thousands: most
    leaves expect several failures) and baseline failing share per leaf."""
    rng = np.random.default_rng(seed)
    codes = np.array([(a, c, r) for a in range(6) for c in range(8) for r in range(len(RATS))])
    total = np.round(rng.lognormal(mean=7.0, sigma=1.2, size=len(codes)))
    share = rng.uniform(0.005, 0.03, size=len(codes))
    return codes, total, share


def drawn(seed: int, relative_sd: float, fault: np.ndarray | None = None) -> LeafTable:
    """Failing counts at each leaf's share times a lognormal factor of ``relative_sd``
    (0: counting noise only), plus ``fault``'s share of the SIMs where given."""
    codes, total, share = large_fleet(seed)
    rng = np.random.default_rng(seed + 1_000)
    p = share * rng.lognormal(-0.5 * relative_sd**2, relative_sd, size=len(share))
    if fault is not None:
        p = p + fault * (1.0 - p)
    actual = rng.binomial(total.astype(np.int64), np.minimum(p, 1.0)).astype(np.float64)
    return table(codes, actual, total, share)


@pytest.mark.parametrize("relative_sd", [0.3, 0.4, 0.5])
@pytest.mark.parametrize("seed", [3, 4])
def test_relative_scatter_raises_no_cause(seed: int, relative_sd: float) -> None:
    # every leaf's share is off by a lognormal factor this minute; nothing fails: the
    # largest leaves' scatter passes a threshold scaled by the quasi-Poisson
    # over-dispersion alone (in these draws), not one that carries the relative scatter
    noisy = drawn(seed, relative_sd)
    assert localize(noisy, NO_RELATIVE) != []
    assert relative_dispersion(noisy, LocalizeParams(), dispersion(noisy, LocalizeParams())) > 0.0
    assert localize(noisy) == []


@pytest.mark.parametrize("relative_sd", [0.3, 0.4, 0.5])
@pytest.mark.parametrize("seed", SEEDS)
def test_relative_scatter_names_no_more_causes(seed: int, relative_sd: float) -> None:
    # every draw: the causes named are among those of the quasi-Poisson threshold alone
    noisy = drawn(seed, relative_sd)
    causes = [dict(c.dims) for c in localize(noisy)]
    assert all(c in [dict(x.dims) for x in localize(noisy, NO_RELATIVE)] for c in causes)


@pytest.mark.parametrize("seed", SEEDS)
def test_relative_scatter_keeps_a_real_fault(seed: int) -> None:
    # the same scatter (sd 0.5), and APN 2 in country 3 loses 30 % of its SIMs: named
    # first, and no cause is named that the quasi-Poisson threshold alone would not name
    codes, _, _ = large_fleet(seed)
    fault = np.where((codes[:, 0] == 2) & (codes[:, 1] == 3), 0.3, 0.0)
    noisy = drawn(seed, 0.5, fault)
    causes = [dict(c.dims) for c in localize(noisy)]
    assert causes[0] == {"apn": "apn2", "country": "C3"}
    assert all(c in [dict(x.dims) for x in localize(noisy, NO_RELATIVE)] for c in causes)


@pytest.mark.parametrize("seed", SEEDS)
def test_counting_noise_has_no_relative_scatter(seed: int) -> None:
    # large leaves failing by counting noise alone: next to no relative scatter is
    # learned (its median is about 0); with an APN losing 5 % of its SIMs, the causes
    # are those of the quasi-Poisson threshold alone
    params = LocalizeParams()
    plain = drawn(seed, 0.0)
    assert relative_dispersion(plain, params, dispersion(plain, params)) < 0.01
    codes, _, _ = large_fleet(seed)
    apn = drawn(seed, 0.0, np.where(codes[:, 0] == 4, 0.05, 0.0))
    assert [dict(c.dims) for c in localize(apn)] == [{"apn": "apn4"}]
    assert localize(apn) == localize(apn, NO_RELATIVE)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("rate", [0.05, 1.0])
def test_a_fault_on_most_large_leaves_is_named(seed: int, rate: float) -> None:
    # four of the six APNs lose a share of their SIMs: two thirds of the leaves that
    # estimate the relative scatter are the fault's, their median is the fault, and
    # unbounded it would hide the fault itself; bounded as the over-dispersion is
    # (dispersion_cap), the four APNs are named
    codes, _, _ = large_fleet(seed)
    causes = localize(drawn(seed, 0.0, np.where(codes[:, 0] < 4, rate, 0.0)))
    assert sorted(c.dims["apn"] for c in causes) == ["apn0", "apn1", "apn2", "apn3"]
