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
