"""Tests for simwatch.core.localize: every cause named explains a significant part of the
anomaly of its own (docs/localization.md, step 6: forward selection by score, then
backward elimination).

Deterministic tables, every count chosen by hand (no sampling).
"""

from __future__ import annotations

from simwatch.core.localize import LeafTable, localize

DIMS = ("apn", "country", "partner", "rat")
PARTNERS = {"NO": ("24201", "24214"), "IT": ("22201", "22210"), "DE": ("26201", "26202")}


def table(special: dict[tuple[str, str, str], tuple[float, float, float]]) -> LeafTable:
    """Three APNs in three countries of two partners each, on 4G and NB-IoT: 40 SIMs a
    leaf, 0.2 expected failing and none failing; ``special`` gives a leaf's (failing,
    SIMs, expected) instead, by (apn, partner, rat)."""
    rows = []
    for apn in ("A", "B", "C"):
        for country, partners in PARTNERS.items():
            for partner in partners:
                for rat in ("4G", "NB-IoT"):
                    a, n, e = special.get((apn, partner, rat), (0.0, 40.0, 0.2))
                    rows.append(((apn, country, partner, rat), a, n, e))
    return LeafTable.from_rows(DIMS, rows)


def test_a_split_names_no_child_whose_failures_another_cause_explains() -> None:
    # APN A's NB-IoT SIMs in Norway fail, half of them on both Norwegian partners (the
    # cause), and 6 of A's 80 SIMs on the Italian partner 22201 are silent (0.4 expected:
    # a small fault of its own). The second greedy pick, A on 22201, climbs to A (A's
    # other leaves, the Norwegian cause among them, fail like it), and A splits by
    # partner into 22201 and the two Norwegian partners. Those two hold no failure the
    # Norwegian cause does not explain (their 4G SIMs are healthy): not named.
    t = table(
        {
            ("A", "24201", "NB-IoT"): (20.0, 40.0, 0.2),
            ("A", "24214", "NB-IoT"): (20.0, 40.0, 0.2),
            ("A", "22201", "4G"): (3.0, 40.0, 0.2),
            ("A", "22201", "NB-IoT"): (3.0, 40.0, 0.2),
        }
    )
    named = [dict(c.dims) for c in localize(t)]
    assert named == [
        {"apn": "A", "country": "NO", "rat": "NB-IoT"},
        {"apn": "A", "partner": "22201"},
    ]
