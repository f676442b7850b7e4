"""Tests for simwatch.core.localize: every leaf expects at least its floor of failures."""

from __future__ import annotations

from simwatch.core.localize import LeafTable, localize


def table(fault: float) -> LeafTable:
    """4 APNs x 4 countries x 2 RATs, 50 SIMs a leaf expecting 1 failing, failing 1;
    in country C1 on 4G, APN 0's leaf fails ``fault`` of 50 and the other APNs' leaves
    hold one SIM each, which never failed (expected 0)."""
    rows = []
    for a in range(4):
        for c in range(4):
            for rat in ("2G", "4G"):
                key = (f"apn{a}", f"C{c}", rat)
                if (c, rat) == (1, "4G"):
                    rows.append((key, fault, 50.0, 1.0) if a == 0 else (key, 0.0, 1.0, 0.0))
                else:
                    rows.append((key, 1.0, 50.0, 1.0))
    return LeafTable.from_rows(("apn", "country", "rat"), rows)


def test_a_member_that_never_failed_still_counts() -> None:
    # {country C1, 4G} holds APN 0's failing leaf and three SIMs that never failed: with
    # no floor per leaf they add nothing to its expected count, it ties with APN 0's own
    # group and the tie goes to fewer attributes; floored, the three SIMs cost the larger
    # group a little and the failing leaf's group is named
    causes = localize(table(45.0))
    assert [dict(c.dims) for c in causes] == [{"apn": "apn0", "country": "C1", "rat": "4G"}]
    assert causes[0].expected == 1.0


def test_floor_never_names_a_leaf_that_expects_nothing_and_fails_little() -> None:
    # the floor only adds expectation: a fault the size of the floors is still no cause
    assert localize(table(2.0)) == []
