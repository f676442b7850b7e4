from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from simwatch.core.incidents import (
    IncidentParams,
    IncidentTracker,
    Rest,
    SimAlarm,
    incident_from_state,
    incident_state,
)
from simwatch.core.localize import Cause

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

PARTNER = Cause(dims={"partner": "26202"}, affected=120, total=300, expected=6, score=50.0)


def cycle(tracker: IncidentTracker, minute: int, causes: list[Cause]) -> list[str]:
    return [f"{c.kind}:{c.incident.id}" for c in tracker.update_groups(minute * 60.0, causes)]


def test_opens_only_after_consecutive_sightings() -> None:
    tracker = IncidentTracker(IncidentParams(open_after=2, close_after=3))
    assert cycle(tracker, 0, [PARTNER]) == []
    assert cycle(tracker, 1, []) == []  # the streak is broken: one noisy cycle never pages
    assert cycle(tracker, 2, [PARTNER]) == []
    assert cycle(tracker, 3, [PARTNER]) == ["opened:inc-0001"]
    incident = tracker.open[(("partner", "26202"),)]
    assert incident.opened_at == 180.0
    assert incident.severity == "page"
    assert incident.state == "open"


@pytest.mark.parametrize(
    ("reported", "opens_at"),
    [
        (120.0, 0),  # every failing SIM's session ended with a failure cause: at once
        (60.0, 0),  # half of them
        (59.0, 1),  # mostly silence, which one noisy cycle can show: wait for the second
        (4.0, 1),  # too few (``open_on_reported`` 5), however small the group
        (None, 1),  # no count given (a table built by hand)
    ],
)
def test_a_cause_the_network_reported_opens_at_its_first_sighting(
    reported: float | None, opens_at: int
) -> None:
    tracker = IncidentTracker(IncidentParams(open_after=2, open_on_reported=5))
    calls: list[Mapping[str, str]] = []

    def count(dims: Mapping[str, str]) -> float:
        calls.append(dims)
        return 0.0 if reported is None else reported

    opened = None
    for minute in range(3):
        changes = tracker.update_groups(
            minute * 60.0, [PARTNER], reported=None if reported is None else count
        )
        if changes:
            opened = minute
            break
    assert opened == opens_at
    if reported is not None:
        assert calls[0] == PARTNER.dims
    small = Cause(dims={"partner": "26203"}, affected=5, total=5, expected=0.1, score=20.0)
    off = IncidentTracker(IncidentParams(open_after=2, open_on_reported=0))
    assert off.update_groups(0.0, [small], reported=lambda _dims: 5.0) == []


def test_a_first_sighting_too_wide_narrows_to_the_cause_the_next_cycle_names() -> None:
    # At a partner outage's third minute 8 of its SIMs and 3 other German ones had
    # failure ends: the first cause was the country. The next cycle names the partner.
    country = Cause(dims={"country": "DE"}, affected=11, total=600, expected=2.6, score=22.7)
    partner = Cause(dims={"partner": "26201"}, affected=15, total=193, expected=2.6, score=50.5)

    def within(narrow: Mapping[str, str], wide: Mapping[str, str]) -> bool:
        return dict(wide) == {"country": "DE"} and dict(narrow) == {"partner": "26201"}

    def run(second: list[Cause], *, at_once: bool = True) -> IncidentTracker:
        tracker = IncidentTracker(IncidentParams(open_after=2, open_on_reported=5))
        first = tracker.update_groups(
            0.0, [country], within=within, reported=lambda _dims: 11.0 if at_once else 0.0
        )
        if not at_once:
            assert first == []
            tracker.update_groups(60.0, [country], within=within)
        assert [
            c.kind
            for c in tracker.update_groups(
                60.0 * (1 + (not at_once)), second, within=within, reported=lambda _dims: 15.0
            )
        ] == (["updated"] if at_once and second == [partner] else [])
        for minute in range(3, 6):
            tracker.update_groups(60.0 * minute, [partner], within=within)
        return tracker

    tracker = run([partner])
    (incident,) = tracker.open.values()
    assert incident.id == "inc-0001"  # the one page, now on the partner
    assert incident.dims == {"partner": "26201"}
    assert incident.affected == 15
    # the country seen again beside it: it stays the country's (the partner inside it)
    (incident,) = run([country, partner]).open.values()
    assert incident.dims == {"country": "DE"}
    # an incident confirmed by two sightings keeps its extent as before
    (incident,) = run([partner], at_once=False).open.values()
    assert incident.dims == {"country": "DE"}


@pytest.mark.parametrize("recovering", [True, False])
def test_the_last_failing_sims_of_recovering_faults_do_not_widen_them(recovering: bool) -> None:
    # Two faults of one APN, in FR and in NL, end together. Two minutes later 4 SIMs
    # are left failing in each country, which localize as the APN fleet-wide.
    fr = Cause(dims={"apn": "i", "country": "FR"}, affected=26, total=40, expected=1, score=130)
    nl = Cause(dims={"apn": "i", "country": "NL"}, affected=26, total=40, expected=1, score=126)
    tail = Cause(dims={"apn": "i"}, affected=10, total=491, expected=1.4, score=14.8)
    tracker = IncidentTracker(IncidentParams(open_after=2, close_after=5, close_after_recovering=2))
    for minute in range(2):  # two faults: the APN's other countries are healthy
        tracker.update_groups(60.0 * minute, [fr, nl], lambda _parent, _children: Rest.HEALTHY)
    assert len(tracker.open) == 2
    if recovering:
        for incident in tracker.open.values():
            incident.recovery_onset = 60.0
    changes = tracker.update_groups(120.0, [tail], reported=lambda _dims: 10.0)
    if not recovering:  # a fault spreading: widened, one page
        assert [dict(i.dims) for i in tracker.open.values()] == [{"apn": "i"}]
        return
    assert changes == []  # neither widened nor opened on its own, at once or later
    tracker.update_groups(180.0, [tail], reported=lambda _dims: 10.0)
    assert tracker.open == {}  # resolved as recovering faults do, after 2 cycles
    assert sorted(i.id for i in tracker.resolved) == ["inc-0001", "inc-0002"]
    assert all(i.resolved_at == 180.0 for i in tracker.resolved)
    assert {dict(i.dims)["country"] for i in tracker.resolved} == {"FR", "NL"}


@pytest.mark.parametrize(("rest", "pages"), [(Rest.HEALTHY, 1), (Rest.QUIET, 1), (Rest.FAILING, 2)])
def test_a_cause_whose_failing_sims_are_an_open_incident_s_is_no_second_page(
    rest: Rest, pages: int
) -> None:
    # partner 26201 is down; half of lift.watch's German SIMs are on it, and the APN in
    # Germany is named beside the partner. Outside the partner that group is healthy.
    partner = Cause(dims={"partner": "26201"}, affected=17, total=193, expected=2.6, score=49)
    lift = Cause(
        dims={"apn": "lift.watch", "country": "DE"}, affected=6, total=49, expected=0.2, score=14.4
    )
    asked: list[tuple[dict[str, str], list[dict[str, str]]]] = []

    def verdict(parent: Mapping[str, str], children: Sequence[Mapping[str, str]]) -> Rest:
        asked.append((dict(parent), [dict(c) for c in children]))
        return rest

    tracker = IncidentTracker(IncidentParams(open_after=2))
    for minute in range(5):
        tracker.update_groups(60.0 * minute, [partner, lift] if minute >= 2 else [partner], verdict)
    assert len(tracker.open) == pages
    assert ({"apn": "lift.watch", "country": "DE"}, [{"partner": "26201"}]) in asked
    # a group giving a dimension another value cannot overlap: never among the children
    asked.clear()
    other = Cause(dims={"partner": "26202"}, affected=9, total=90, expected=0.5, score=20)
    tracker.update_groups(300.0, [partner, other], verdict)
    assert all(
        {"partner": "26201"} not in children
        for parent, children in asked
        if parent == {"partner": "26202"}
    )


@pytest.mark.parametrize("rest", [Rest.HEALTHY, Rest.QUIET, Rest.UNKNOWN, Rest.FAILING])
@pytest.mark.parametrize("order", ["together", "partner first", "then the country alone"])
def test_a_wider_group_named_beside_a_fault_takes_it_only_where_its_rest_fails(
    rest: Rest, order: str
) -> None:
    # A partner's black hole: 10 of its SIMs silent, and 4 silent SIMs of the
    # country's other partners make the country a cause too, beside the partner.
    country = Cause(dims={"country": "DE"}, affected=14, total=600, expected=2.5, score=14.5)
    partner = Cause(dims={"partner": "26201"}, affected=10, total=70, expected=0.4, score=24.2)

    def within(narrow: Mapping[str, str], wide: Mapping[str, str]) -> bool:
        return dict(wide) == {"country": "DE"} and dict(narrow) == {"partner": "26201"}

    tracker = IncidentTracker(IncidentParams(open_after=2))
    for minute in range(6):
        if order == "together":
            causes = [country, partner]
        elif minute < 2:
            causes = [partner]
        else:
            causes = [country, partner] if order == "partner first" else [country]
        tracker.update_groups(60.0 * minute, causes, lambda _p, _c: rest, within)
    (incident,) = tracker.open.values()
    # the country's rest fails; or it may (it cannot show the fault yet) and the country
    # is named alone; named beside the partner, which scores higher, the partner
    # explains the fault better
    spread = rest is Rest.FAILING or (rest is Rest.UNKNOWN and order == "then the country alone")
    assert incident.dims == ({"country": "DE"} if spread else {"partner": "26201"})
    assert incident.id == "inc-0001"


@pytest.mark.parametrize(("country_score", "named"), [(14.5, "partner"), (30.0, "country")])
def test_a_rest_that_cannot_tell_leaves_the_choice_to_the_stronger_cause(
    country_score: float, named: str
) -> None:
    # R3: the country's other partners sit in open sessions (``Rest.UNKNOWN``)
    country = Cause(
        dims={"country": "DE"}, affected=14, total=600, expected=2.5, score=country_score
    )
    partner = Cause(dims={"partner": "26201"}, affected=10, total=70, expected=0.4, score=24.2)

    def within(narrow: Mapping[str, str], wide: Mapping[str, str]) -> bool:
        return dict(wide) == {"country": "DE"} and dict(narrow) == {"partner": "26201"}

    tracker = IncidentTracker(IncidentParams(open_after=2))
    for minute in range(4):
        tracker.update_groups(60.0 * minute, [country, partner], lambda *_: Rest.UNKNOWN, within)
    (incident,) = tracker.open.values()
    assert incident.dims == {"country": {"country": "DE"}, "partner": {"partner": "26201"}}[named]


def test_resolves_after_close_after_missing_cycles_and_ids_are_not_reused() -> None:
    tracker = IncidentTracker(IncidentParams(open_after=1, close_after=3))
    assert cycle(tracker, 0, [PARTNER]) == ["opened:inc-0001"]
    assert cycle(tracker, 1, []) == []
    assert cycle(tracker, 2, [PARTNER]) == []  # back: the missing count restarts
    assert cycle(tracker, 3, []) == []
    assert cycle(tracker, 4, []) == []
    assert cycle(tracker, 5, []) == ["resolved:inc-0001"]
    resolved = tracker.get("inc-0001")
    assert resolved is not None
    assert resolved.resolved_at == 300.0
    assert resolved.to_json()["resolved_at"] == "1970-01-01T00:05:00Z"
    assert cycle(tracker, 6, [PARTNER]) == ["opened:inc-0002"]


@pytest.mark.parametrize(
    ("excess", "resolves_at"),
    [
        (114.0, None),  # as many failing beyond the usual as when it was named: still on
        (92.0, None),  # 80 % of it (``hold_while_failing``)
        (91.0, 4),  # fewer: the fault is shrinking, it resolves as without the count
        (0.0, 4),
    ],
)
def test_an_unnamed_cause_whose_sims_still_fail_stays_open(
    excess: float, resolves_at: int | None
) -> None:
    # the hour of day turns, the usual share of late SIMs rises, and localization stops
    # naming the fault for a few cycles: its SIMs did not come back, so it is not over
    # (resolving would page again minutes later, as a new incident)
    tracker = IncidentTracker(IncidentParams(open_after=1, close_after=3))
    seen: list[Mapping[str, str]] = []

    def count(dims: Mapping[str, str]) -> float:
        seen.append(dims)
        return excess

    resolved = None
    for minute in range(12):
        changes = tracker.update_groups(
            minute * 60.0, [PARTNER] if minute < 2 else [], excess=count
        )
        if any(c.kind == "resolved" for c in changes):
            resolved = minute
            break
    assert resolved == resolves_at
    assert seen[0] == PARTNER.dims
    # once its SIMs are seen coming back, it resolves whatever the count says
    incident = tracker.open.get((("partner", "26202"),))
    if incident is not None:
        incident.recovery_onset = 700.0
        kinds = [
            [c.kind for c in tracker.update_groups(60.0 * m, [], excess=count)] for m in (12, 13)
        ]
        assert kinds == [[], ["resolved"]]


def test_updates_when_affected_changes_materially() -> None:
    tracker = IncidentTracker(IncidentParams(open_after=1, update_change=0.2))
    cycle(tracker, 0, [PARTNER])
    small = Cause(dims=PARTNER.dims, affected=130, total=300, expected=6, score=40.0)
    big = Cause(dims=PARTNER.dims, affected=200, total=300, expected=6, score=90.0)
    assert cycle(tracker, 1, [small]) == []
    assert cycle(tracker, 2, [big]) == ["updated:inc-0001"]
    incident = tracker.open[(("partner", "26202"),)]
    assert incident.peak_affected == 200
    assert incident.score == 90.0


def test_the_peak_is_told_against_the_total_it_had_then() -> None:
    # A partner's devices leave for a sibling while it fails: its total falls, and the
    # peak against the last total read "172 of 133" (the demo's table: 129 %).
    tracker = IncidentTracker(IncidentParams(open_after=1))
    cycle(tracker, 0, [PARTNER])
    worst = Cause(dims=PARTNER.dims, affected=172, total=280, expected=6, score=90.0)
    after = Cause(dims=PARTNER.dims, affected=110, total=133, expected=3, score=60.0)
    cycle(tracker, 1, [worst])
    cycle(tracker, 2, [after])
    incident = tracker.open[(("partner", "26202"),)]
    assert (incident.affected, incident.total) == (110, 133)
    assert (incident.peak_affected, incident.peak_total) == (172, 280)
    doc = incident.to_json()
    assert (doc["peak_affected"], doc["peak_total"]) == (172, 280)
    restored = incident_from_state(incident_state(incident))
    assert restored.peak_total == 280
    # a checkpoint from before the field: the total it kept
    older = {k: v for k, v in incident_state(incident).items() if k != "peak_total"}
    assert incident_from_state(older).peak_total == 133


def test_two_causes_are_two_incidents_and_json_matches_formats() -> None:
    tracker = IncidentTracker(IncidentParams(open_after=1))
    apn = Cause(dims={"apn": "meters.acme"}, affected=40, total=80, expected=1.6, score=30.0)
    assert cycle(tracker, 0, [PARTNER, apn]) == ["opened:inc-0001", "opened:inc-0002"]
    doc = tracker.open[(("partner", "26202"),)].to_json()
    for key in ("id", "dims", "state", "severity", "opened_at", "resolved_at", "affected",
                "total", "ratio", "baseline_ratio", "score"):  # fmt: skip
        assert key in doc
    assert doc["dims"] == {"partner": "26202"}
    assert doc["ratio"] == 0.4
    assert doc["baseline_ratio"] == 0.02
    assert doc["resolved_at"] is None


def test_sim_tickets_have_their_own_lifecycle() -> None:
    tracker = IncidentTracker(IncidentParams(open_after=2, close_after=2))
    alarm = SimAlarm(iccid="8931440000000000011", reasons=("silent",))
    assert tracker.update_sims(0, [alarm]) == []
    changes = tracker.update_sims(60, [alarm])
    assert [c.kind for c in changes] == ["opened"]
    ticket = changes[0].incident
    assert ticket.severity == "ticket"
    assert ticket.dims == {"iccid": "8931440000000000011"}
    # group updates do not age SIM tickets
    cycle(tracker, 2, [])
    cycle(tracker, 3, [])
    assert ticket.state == "open"
    reasons = SimAlarm(iccid=alarm.iccid, reasons=("wrong_apn",))
    assert [c.kind for c in tracker.update_sims(120, [reasons])] == ["updated"]
    tracker.update_sims(180, [])
    assert [c.kind for c in tracker.update_sims(240, [])] == ["resolved"]


def test_resolved_history_is_bounded() -> None:
    tracker = IncidentTracker(IncidentParams(open_after=1, close_after=1, keep_resolved=3))
    for minute in range(0, 20, 2):
        cause = Cause(dims={"apn": f"a{minute}"}, affected=9, total=9, expected=0.1, score=9.0)
        cycle(tracker, minute, [cause])
        cycle(tracker, minute + 1, [])
    assert len(tracker.resolved) == 3
    assert tracker.next_id == 11


def test_a_widening_cause_rescopes_the_open_incident() -> None:
    tracker = IncidentTracker(IncidentParams(open_after=1, close_after=2))
    trackers = Cause(dims={"apn": "fleet.link", "partner": "26201"}, affected=11, total=11,
                     expected=0.1, score=50.0)  # fmt: skip
    assert cycle(tracker, 0, [trackers]) == ["opened:inc-0001"]
    whole = Cause(dims={"partner": "26201"}, affected=120, total=160, expected=2, score=400.0)
    assert cycle(tracker, 1, [whole]) == ["updated:inc-0001"]
    incident = tracker.open[(("partner", "26201"),)]
    assert incident.id == "inc-0001"
    assert incident.dims == {"partner": "26201"}
    # when it got these dims (a scenario's score: when the page named the fault exactly),
    # kept across a restart; an incident never widened has none
    assert incident.named_at == 60.0
    assert incident_from_state(incident_state(incident)).named_at == 60.0
    assert tracker.open[(("partner", "26201"),)].opened_at == 0.0
    older = {k: v for k, v in incident_state(incident).items() if k != "named_at"}
    assert incident_from_state(older).named_at is None
    # the API says so (an extension field of FORMATS.md's incident); never-renamed: absent
    assert incident.to_json()["named_at"] == "1970-01-01T00:01:00Z"
    assert "named_at" not in incident_from_state(older).to_json()
    # the subgroup again, while the partner incident is open: covered, nothing new
    assert cycle(tracker, 2, [trackers]) == []
    assert len(tracker.open) == 1
    assert cycle(tracker, 3, []) == []
    assert cycle(tracker, 4, []) == ["resolved:inc-0001"]
    assert tracker.next_id == 2


COUNTRY_OF_PARTNER = {"20801": "FR", "20810": "FR", "20404": "NL"}


def nested(narrow: Mapping[str, str], wide: Mapping[str, str]) -> bool:
    """The fleet's nesting as the engine knows it: a partner's SIMs are in its country."""
    dims = dict(narrow)
    if "partner" in dims:
        dims.setdefault("country", COUNTRY_OF_PARTNER[dims["partner"]])
    return all(dims.get(d) == v for d, v in wide.items())


def test_an_open_partner_incident_inside_a_new_country_cause_is_widened_to_it() -> None:
    # An APN failing in France shows first on France's main partner's SIMs; once the
    # whole country is the cause, that is the same fault grown: one incident, one page.
    tracker = IncidentTracker(IncidentParams(open_after=1, close_after=2))
    partner = Cause(dims={"apn": "internet.iot", "partner": "20801"}, affected=10, total=11,
                    expected=0.1, score=30.0)  # fmt: skip
    country = Cause(dims={"apn": "internet.iot", "country": "FR"}, affected=15, total=17,
                    expected=0.2, score=45.0)  # fmt: skip

    def step(minute: int, causes: list[Cause]) -> list[str]:
        changes = tracker.update_groups(minute * 60.0, causes, within=nested)
        return [f"{c.kind}:{c.incident.id}" for c in changes]

    assert step(0, [partner]) == ["opened:inc-0001"]
    assert step(1, [partner, country]) == ["updated:inc-0001"]
    assert list(tracker.open) == [(("apn", "internet.iot"), ("country", "FR"))]
    assert tracker.open[(("apn", "internet.iot"), ("country", "FR"))].opened_at == 0.0
    # the partner's part again while the country incident is open: covered by it
    assert step(2, [country, partner]) == []
    # another country's partner is not inside FR: its own incident
    nl = Cause(dims={"apn": "internet.iot", "partner": "20404"}, affected=9, total=9,
               expected=0.1, score=30.0)  # fmt: skip
    assert step(3, [country, nl]) == ["opened:inc-0002"]
    # without the nesting (dims alone) the partner's incident stays a second page
    plain = IncidentTracker(IncidentParams(open_after=1))
    plain.update_groups(0.0, [partner])
    opened = [c.kind for c in plain.update_groups(60.0, [partner, country])]
    assert opened == ["opened"]
    assert len(plain.open) == 2


def test_unrelated_causes_are_not_merged() -> None:
    tracker = IncidentTracker(IncidentParams(open_after=1))
    cycle(tracker, 0, [Cause(dims={"apn": "a", "country": "DE"}, affected=9, total=9,
                             expected=0.1, score=9.0)])  # fmt: skip
    assert cycle(tracker, 1, [PARTNER]) == ["opened:inc-0002"]
    assert len(tracker.open) == 2


def test_a_failing_sibling_widens_the_incident_to_the_shared_parent() -> None:
    tracker = IncidentTracker(IncidentParams(open_after=1, sibling_window_s=3600))
    pl = Cause(dims={"apn": "internet.iot", "country": "PL"}, affected=5, total=8,
               expected=0.1, score=16.0)  # fmt: skip
    nl = Cause(dims={"apn": "internet.iot", "country": "NL"}, affected=6, total=17,
               expected=0.3, score=12.0)  # fmt: skip
    assert cycle(tracker, 0, [pl]) == ["opened:inc-0001"]
    assert cycle(tracker, 10, [pl, nl]) == ["updated:inc-0001"]
    assert list(tracker.open) == [(("apn", "internet.iot"),)]
    assert tracker.next_id == 2


def test_siblings_stay_two_incidents_while_the_parents_rest_is_healthy() -> None:
    # an APN failing in PL and, for another reason, in NL, its other countries fine
    asked: list[tuple[dict[str, str], list[dict[str, str]]]] = []

    def healthy(parent: Mapping[str, str], children: Sequence[Mapping[str, str]]) -> Rest:
        asked.append((dict(parent), [dict(c) for c in children]))
        return Rest.QUIET

    tracker = IncidentTracker(IncidentParams(open_after=1, sibling_window_s=3600))
    pl = Cause(dims={"apn": "internet.iot", "country": "PL"}, affected=5, total=8,
               expected=0.1, score=16.0)  # fmt: skip
    nl = Cause(dims={"apn": "internet.iot", "country": "NL"}, affected=6, total=17,
               expected=0.3, score=12.0)  # fmt: skip
    assert tracker.update_groups(0, [pl], healthy) != []
    # held back first: the parent's fault may still be spreading (sibling_hold_s)
    for minute in range(10, 40):
        assert tracker.update_groups(minute * 60.0, [pl, nl], healthy) == []
    changes = tracker.update_groups(40 * 60.0, [pl, nl], healthy)
    assert [(c.kind, c.incident.id) for c in changes] == [("opened", "inc-0002")]
    assert sorted(tracker.open) == [
        (("apn", "internet.iot"), ("country", "NL")),
        (("apn", "internet.iot"), ("country", "PL")),
    ]
    assert asked[-1] == (
        {"apn": "internet.iot"},
        [{"apn": "internet.iot", "country": "PL"}, {"apn": "internet.iot", "country": "NL"}],
    )


@pytest.mark.parametrize(
    ("verdict", "opens_after_min"),
    [
        (Rest.HEALTHY, 1),  # the network's evidence shows the rest fine: two faults, now
        (Rest.QUIET, 31),  # a silent fault may still spread to the rest (sibling_hold_s)
        (Rest.UNKNOWN, 121),  # the rest could not show it yet (sibling_hold_max_s)
    ],
)
def test_a_sibling_is_held_by_what_the_rest_can_show(verdict: Rest, opens_after_min: int) -> None:
    tracker = IncidentTracker(IncidentParams(open_after=1, sibling_window_s=3600))
    pl = Cause(dims={"apn": "internet.iot", "country": "PL"}, affected=5, total=8,
               expected=0.1, score=16.0)  # fmt: skip
    nl = Cause(dims={"apn": "internet.iot", "country": "NL"}, affected=6, total=17,
               expected=0.3, score=12.0)  # fmt: skip
    assert tracker.update_groups(0, [pl], lambda _p, _c: verdict) != []
    opened = None
    for minute in range(1, 130):
        changes = tracker.update_groups(minute * 60.0, [pl, nl], lambda _p, _c: verdict)
        if changes:
            assert [(c.kind, c.incident.dims) for c in changes] == [("opened", nl.dims)]
            opened = minute
            break
    assert opened == opens_after_min


def test_a_held_sibling_joins_its_parent_when_the_parent_fails() -> None:
    # a country outage seen first on one APN, then a second: held, then the country
    tracker = IncidentTracker(IncidentParams(open_after=1))
    a = Cause(dims={"apn": "x", "country": "FR"}, affected=9, total=9, expected=0.1, score=9.0)
    b = Cause(dims={"apn": "y", "country": "FR"}, affected=9, total=9, expected=0.1, score=9.0)
    fr = Cause(dims={"country": "FR"}, affected=30, total=40, expected=0.4, score=60.0)
    assert cycle(tracker, 0, [a]) == ["opened:inc-0001"]
    assert tracker.update_groups(600.0, [a, b], lambda _p, _c: Rest.QUIET) == []
    assert cycle(tracker, 20, [fr]) == ["updated:inc-0001"]  # re-scoped: one page
    assert list(tracker.open) == [(("country", "FR"),)]
    assert tracker.next_id == 2


def test_a_sibling_named_on_a_partner_of_the_country_is_still_a_sibling() -> None:
    # France goes dark: {apn: x, country: FR} is named first; the next APN's failure is
    # first named on France's partner 20810. By the fleet's nesting it is {apn: y,
    # country: FR}, a sibling: held while France's rest is quiet, the country's incident
    # (one page) once the rest fails; in another country it is a fault of its own.
    a = Cause(dims={"apn": "x", "country": "FR"}, affected=9, total=9, expected=0.1, score=9.0)
    b = Cause(dims={"apn": "y", "partner": "20810"}, affected=8, total=8, expected=0.1,
              score=8.0)  # fmt: skip
    verdicts: list[Rest] = [Rest.QUIET]
    asked: list[tuple[dict[str, str], list[dict[str, str]]]] = []

    def rest(parent: Mapping[str, str], children: Sequence[Mapping[str, str]]) -> Rest:
        asked.append((dict(parent), [dict(c) for c in children]))
        return verdicts[-1]

    tracker = IncidentTracker(IncidentParams(open_after=1))
    assert tracker.update_groups(0.0, [a], rest, within=nested) != []
    assert tracker.update_groups(60.0, [a, b], rest, within=nested) == []  # held
    assert asked[-1] == ({"country": "FR"}, [dict(a.dims), {"apn": "y", "country": "FR"}])
    verdicts.append(Rest.FAILING)
    changes = tracker.update_groups(120.0, [a, b], rest, within=nested)
    assert [(c.kind, c.incident.id) for c in changes] == [("updated", "inc-0001")]
    assert list(tracker.open) == [(("country", "FR"),)]
    assert tracker.next_id == 2
    # a partner of another country is no sibling of France's APN: its own incident
    other = IncidentTracker(IncidentParams(open_after=1))
    nl = Cause(dims={"apn": "y", "partner": "20404"}, affected=8, total=8, expected=0.1,
               score=8.0)  # fmt: skip
    other.update_groups(0.0, [a], rest, within=nested)
    opened = other.update_groups(60.0, [a, nl], rest, within=nested)
    assert [(c.kind, c.incident.id) for c in opened] == [("opened", "inc-0002")]


@pytest.mark.parametrize(
    ("inside", "apn_named", "expected"),
    [
        (5.0, False, ["updated:inc-0001"]),  # its failing SIMs are the partner's: one page
        (3.0, False, ["opened:inc-0002"]),  # 3 of 5 only: a fault of its own beside
        (5.0, True, ["opened:inc-0002"]),  # still named itself: two causes
    ],
)
def test_an_open_incident_that_was_a_new_causes_first_sighting_takes_it(
    inside: float, apn_named: bool, expected: list[str]
) -> None:
    # R3 black hole on partner 26201: 5 churning SIMs of one APN are named first, as
    # {apn: fleet.link}; once the partner has enough failing SIMs to be named, that
    # incident is the partner's fault, seen early: same id, dimensions corrected.
    apn = Cause(dims={"apn": "fleet.link"}, affected=5, total=63, expected=0.2, score=11.9)
    partner = Cause(dims={"partner": "26201"}, affected=8, total=232, expected=0.6,
                    score=13.6)  # fmt: skip
    failing = {
        (("apn", "fleet.link"),): 5.0 - 0.2,
        (("apn", "fleet.link"), ("partner", "26201")): inside - 0.1,
        (("partner", "26201"),): 8.0 - 0.6,
    }

    def excess(dims: Mapping[str, str]) -> float:
        return failing[tuple(sorted(dims.items()))]

    tracker = IncidentTracker(IncidentParams(open_after=1))
    tracker.update_groups(0.0, [apn], excess=excess)
    causes = [apn, partner] if apn_named else [partner]
    changes = tracker.update_groups(60.0, causes, excess=excess)
    assert [f"{c.kind}:{c.incident.id}" for c in changes] == expected
    if expected == ["updated:inc-0001"]:
        assert list(tracker.open) == [(("partner", "26201"),)]
        assert tracker.open[(("partner", "26201"),)].opened_at == 0.0
        assert tracker.open[(("partner", "26201"),)].affected == 8


def test_siblings_without_a_shared_part_are_not_merged() -> None:
    tracker = IncidentTracker(IncidentParams(open_after=1))
    other = Cause(dims={"partner": "20801"}, affected=50, total=90, expected=1, score=80.0)
    cycle(tracker, 0, [PARTNER])
    assert cycle(tracker, 1, [PARTNER, other]) == ["opened:inc-0002"]  # never fleet-wide


def test_a_late_sibling_is_a_new_incident() -> None:
    tracker = IncidentTracker(IncidentParams(open_after=1, sibling_window_s=600))
    a = Cause(dims={"apn": "x", "country": "PL"}, affected=9, total=9, expected=0.1, score=9.0)
    b = Cause(dims={"apn": "x", "country": "NL"}, affected=9, total=9, expected=0.1, score=9.0)
    cycle(tracker, 0, [a])
    assert cycle(tracker, 30, [a, b]) == ["opened:inc-0002"]
