"""Tests for simwatch.core.localize: when a part of a group counts as failing, and a
whole fleet picked after a cause.

Deterministic tables: ``n_apn`` APNs in ``n_country`` countries on two RATs, 100 SIMs
per leaf, every count chosen by hand (no sampling), so each test pins one rule.
"""

from __future__ import annotations

import numpy as np

from simwatch.core.localize import LeafTable, LocalizeParams, above_baseline, localize

DIMS = ("apn", "country", "rat")
RATS = ("4G", "LTE-M")
SIMS = 100.0


def grid(n_apn: int, n_country: int) -> list[tuple[int, int, int]]:
    return [(a, c, r) for a in range(n_apn) for c in range(n_country) for r in range(len(RATS))]


def table(
    leaves: list[tuple[int, int, int]],
    actual: dict[tuple[int, int, int], float],
    expected: float = 1.0,
    quiet: frozenset[tuple[int, int, int]] = frozenset(),
) -> LeafTable:
    """Every leaf ``SIMS`` SIMs expecting ``expected`` failing (the ``quiet`` leaves: none,
    they never failed before), failing ``actual[leaf]`` (default: its expected count)."""
    rows = [
        (
            (f"apn{a}", f"C{c}", RATS[r]),
            actual.get((a, c, r), expected),
            SIMS,
            0.0 if (a, c, r) in quiet else expected,
        )
        for a, c, r in leaves
    ]
    return LeafTable.from_rows(DIMS, rows)


def dims(t: LeafTable) -> list[dict[str, str]]:
    return sorted((dict(c.dims) for c in localize(t)), key=lambda d: sorted(d.items()))


def test_a_few_failing_are_not_above_the_baseline_however_small_it_is() -> None:
    params = LocalizeParams()
    # 4 failing against 0.2 expected: 10 nats above, but fewer than min_affected (5)
    assert not above_baseline(4.0, 0.2, 200.0, params)
    # 5 failing against 2.5: an excess under min_excess (3)
    assert not above_baseline(5.0, 2.5, 200.0, params)
    # 8 failing against 0.2: above
    assert above_baseline(8.0, 0.2, 200.0, params)
    # the margin still applies: 40 against 30 is within counting noise
    assert not above_baseline(40.0, 30.0, 2000.0, params)


def test_siblings_apart_when_the_rest_has_a_few_failing_on_a_quiet_baseline() -> None:
    # APN 0 is used in countries 1, 2 and 3 only. It fails (60 of 100 SIMs) in 1 and 2;
    # in country 3, whose SIMs never failed (expected: none, floored at 0.1 per leaf),
    # 3 SIMs are silent. Three scattered SIMs are no fault: the two countries are the
    # causes, not the APN.
    leaves = [leaf for leaf in grid(6, 6) if leaf[0] != 0 or leaf[1] in {1, 2, 3}]
    actual = {(0, c, r): 60.0 for c in (1, 2) for r in range(2)}
    actual[0, 3, 0] = 2.0
    actual[0, 3, 1] = 1.0
    t = table(leaves, actual, quiet=frozenset({(0, 3, 0), (0, 3, 1)}))
    assert dims(t) == [{"apn": "apn0", "country": "C1"}, {"apn": "apn0", "country": "C2"}]


def test_three_attributes_kept_when_the_rest_has_a_few_failing_on_a_quiet_baseline() -> None:
    # APN 1 in country 1 fails on 4G only (60 of 100); its LTE-M leaf never failed
    # before (expected none) and has 3 silent SIMs: the cause keeps its third attribute.
    leaves = grid(6, 6)
    actual = {(1, 1, 0): 60.0, (1, 1, 1): 3.0}
    t = table(leaves, actual, quiet=frozenset({(1, 1, 1)}))
    assert dims(t) == [{"apn": "apn1", "country": "C1", "rat": "4G"}]


def test_a_fleet_picked_after_a_cause_it_does_not_explain_is_named_beside_it() -> None:
    # APN 0 in country 1 loses 90 of 100 SIMs per leaf; every other leaf fails at twice
    # its baseline (1 of 100 against 0.5). That mild elevation of everything else is
    # significant over 198 leaves, so the greedy explanation picks the whole fleet after
    # the APN's country; the fleet's other leaves are far from failing like it, so the
    # fleet must not swallow it.
    leaves = grid(10, 10)
    actual = dict.fromkeys(leaves, 1.0)
    for r in range(2):
        actual[0, 1, r] = 90.0
    t = table(leaves, actual, expected=0.5)
    assert dims(t) == [{}, {"apn": "apn0", "country": "C1"}]


def test_a_fleet_wide_fault_worse_in_one_place_is_the_fleet() -> None:
    # everything fails at 60 %, APN 0 in country 1 at 90 %: one fleet-wide fault
    leaves = grid(10, 10)
    actual = dict.fromkeys(leaves, 60.0)
    for r in range(2):
        actual[0, 1, r] = 90.0
    t = table(leaves, actual, expected=0.5)
    assert dims(t) == [{}]
    assert np.isclose(localize(t)[0].total, SIMS * len(leaves))


def test_children_inside_one_child_on_another_attribute_are_that_child() -> None:
    # dims apn, country, partner (a partner belongs to one country). APN 0 fails in
    # country C1 (partners P0, P1 and the tiny P2: 60 of 100, 21 of 40, 3 of 5); its
    # 101 SIMs elsewhere (partner P3 in C2) have 1 silent SIM, none expected. The greedy
    # pick is the whole APN, whose failing partners P0 and P1 both lie in one country:
    # the cause is the APN in C1, not two partners.
    dims_ = ("apn", "country", "partner")
    partners = {"P0": "C1", "P1": "C1", "P2": "C1", "P3": "C2", "P4": "C2", "P5": "C3"}
    apn0 = {"P0": (60.0, 100.0, 1.1), "P1": (21.0, 40.0, 0.4), "P2": (3.0, 5.0, 0.1)}
    apn0["P3"] = (1.0, 101.0, 0.0)
    rows = [(("apn0", partners[p], p), a, n, e) for p, (a, n, e) in apn0.items()] + [
        ((f"apn{k}", c, p), 1.0, SIMS, 1.0) for k in range(1, 6) for p, c in partners.items()
    ]
    t = LeafTable.from_rows(dims_, rows)
    assert [dict(c.dims) for c in localize(t)] == [{"apn": "apn0", "country": "C1"}]
