"""Tests for simwatch.core.localize: a group reached by a move obeys the rules a greedy
pick obeys.

Deterministic tables, every count chosen by hand (no sampling), so each test pins one
rule (docs/localization.md, steps 5 and 6).
"""

from __future__ import annotations

from simwatch.core.localize import LeafTable, localize

DIMS = ("apn", "country", "rat")


def dims(t: LeafTable) -> list[list[tuple[str, str]]]:
    return sorted(sorted(dict(c.dims).items()) for c in localize(t))


def healthy_apns() -> list[tuple[tuple[str, str, str], float, float, float]]:
    """Five other APNs in the same countries on four RATs: 100 SIMs a leaf, 1 expected
    failing and 1 failing."""
    return [
        ((f"apn{k}", c, r), 1.0, 100.0, 1.0)
        for k in range(1, 6)
        for c in ("AT", "GB", "SE")
        for r in ("2G", "3G", "4G", "LTE-M")
    ]


def test_a_parent_reached_by_a_move_splits_into_its_failing_children() -> None:
    # APN 0 fails on 2G and 4G in every country (a third to all of their SIMs, none of
    # which failed before), while its 84 SIMs on 3G and 9 on LTE-M are healthy (1
    # silent against 1.3 expected). Most of the failing SIMs are in AT, so the greedy
    # pick is APN 0 in AT; the move climbs from it to APN 0, whose other leaves fail
    # too (the rest of 2G and 4G). APN 0 holds two failing children on one attribute
    # and healthy others: the causes are its two RATs, as when the greedy pick is the
    # APN itself (step 5), not the APN.
    apn0 = {
        ("AT", "2G"): (28.0, 72.0, 0.0),
        ("AT", "4G"): (6.0, 6.0, 0.0),
        ("AT", "LTE-M"): (0.0, 5.0, 0.0),
        ("GB", "2G"): (2.0, 9.0, 0.0),
        ("GB", "4G"): (2.0, 2.0, 0.0),
        ("GB", "LTE-M"): (0.0, 4.0, 0.0),
        ("SE", "2G"): (5.0, 18.0, 0.5),
        ("SE", "3G"): (1.0, 84.0, 1.3),
        ("SE", "4G"): (17.0, 17.0, 0.0),
    }
    rows = [(("apn0", c, r), a, n, e) for (c, r), (a, n, e) in apn0.items()]
    rows += healthy_apns()
    t = LeafTable.from_rows(DIMS, rows)
    assert dims(t) == [[("apn", "apn0"), ("rat", "2G")], [("apn", "apn0"), ("rat", "4G")]]


FLEET_DIMS = ("apn", "country", "partner", "rat")
Leaf = tuple[int, int, int, str]


def fleet(special: dict[Leaf, tuple[float, float, float]]) -> LeafTable:
    """Four APNs in three countries of two partners each (a partner belongs to one
    country), on 4G and LTE-M: 50 SIMs a leaf, 0.5 expected failing and 0.5 failing;
    ``special`` gives a leaf's (failing, SIMs, expected) instead."""
    rows = []
    for a in range(4):
        for c in range(3):
            for p in range(2):
                for r in ("4G", "LTE-M"):
                    act, n, e = special.get((a, c, p, r), (0.5, 50.0, 0.5))
                    rows.append(((f"apn{a}", f"C{c}", f"P{c}{p}", r), act, n, e))
    return LeafTable.from_rows(FLEET_DIMS, rows)


def test_a_three_attribute_cause_moves_to_the_country_when_its_other_partner_fails_too() -> None:
    # APN 1 on 4G in country C1 fails on both partners: 30 of 50 SIMs on P10 (which never
    # failed before) and 4 of 8 on P10's neighbour P11 (0.2 expected). The greedy pick is
    # the partner P10 (the larger lift); P11's 4 are too few for a cause of their own,
    # yet at the baseline they would be most unlikely, at P10's share they are what it
    # predicts. Three attributes are the most a cause has (the move through
    # {apn, country, partner, rat} is out of reach): the country replaces the partner,
    # the attribute swapped, as a parent does (step 6).
    t = fleet({(1, 1, 0, "4G"): (30.0, 50.0, 0.0), (1, 1, 1, "4G"): (4.0, 8.0, 0.2)})
    assert dims(t) == [[("apn", "apn1"), ("country", "C1"), ("rat", "4G")]]


def test_a_three_attribute_cause_moves_to_the_partner_when_its_countrys_other_is_healthy() -> None:
    # APN 1 on 4G fails on partner P10 only (30 of 50); the country's other partner P11
    # has 20 SIMs on 4G that never failed and do not now. The group {apn1, C1, 4G} holds
    # the same failing and expected counts as the partner's, so the greedy pick is the
    # country (a tie goes to the earlier dimension). P11's 20 healthy SIMs would show
    # about 12 failing under the fault: the partner replaces the country, the attribute
    # swapped, as a child does (step 6).
    t = fleet({(1, 1, 0, "4G"): (30.0, 50.0, 0.5), (1, 1, 1, "4G"): (0.0, 20.0, 0.0)})
    assert dims(t) == [[("apn", "apn1"), ("partner", "P10"), ("rat", "4G")]]
