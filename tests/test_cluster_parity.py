"""A cluster decides as one node does on the same records (docs/scaling.md).

The same records go to one engine for the whole fleet (the reference) and, split by
``shard_of``, to the engines of a two-node cluster run as ``service.cluster`` runs them:
every node evaluates, publishes its ``shard_report`` (through its JSON wire form), the
leader (the first node) merges them (``core.cluster.merge_cycle``) and applies the merge
(``Engine.apply_merge``), and the other node follows the leader's ``incidents`` entry
(``core.cluster.leader_groups``). The cluster's group incidents lag one evaluation step
behind the reference's (the leader applies a merge at its next cycle); apart from that
step they must open, recover and resolve alike, and say the same.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import orjson
import pytest
from fleet import (
    DAY,
    T0,
    Feed,
    daily_sessions,
    iccid,
    inventory_row,
    new_engine,
    two_partner_history,
    two_partner_run,
)

from simwatch.core.cluster import fleet_heard, leader_entry, leader_groups, leader_merge
from simwatch.core.evaluate import (
    ChurnPart,
    EvalParams,
    Evidence,
    churn_parts,
    churn_stop,
    churn_stopped,
)
from simwatch.core.incidents import evidence_text
from simwatch.core.localize import Cause
from simwatch.core.merge import (
    LeafCounts,
    Merger,
    ShardReport,
    merge_reports,
    shard_of,
    shard_report,
)
from simwatch.http.views import sim_view

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from simwatch.core.engine import CycleResult, Engine
    from simwatch.core.incidents import Incident
    from simwatch.core.records import Record

HOUR = 3600.0
NODES = ("n1", "n2")  # n1 leads


def _never(node: str, now: float) -> bool:
    del node, now
    return False


class Twin:
    """The reference engine and the cluster's node engines, fed the same records."""

    def __init__(
        self, sims: Sequence[str], apns: Mapping[str, str] | None = None, **config: object
    ) -> None:
        self.ref = new_engine((), **config)
        self.nodes = [new_engine((), **config) for _ in NODES]
        for sim in sims:
            row = inventory_row(sim, apns=((apns or {}).get(sim, "meters.acme"),))
            self.ref.load_inventory([row])
            self.nodes[shard_of(sim, len(NODES))].load_inventory([row])
        for engine in self.nodes:
            engine.groups_local = False  # service.cluster sets it on every node
        self.leader = self.nodes[0]
        # the by-hand path (docs/scaling.md): one merger process fed the same reports
        self.merger = Merger(len(NODES), interval_s=self.leader.config.eval_interval_s)
        # (node, instant) -> True: that node's report never reaches the merge (down)
        self.lost: Callable[[str, float], bool] = _never

    def ingest(self, record: Record) -> None:
        self.ref.ingest_record(record)
        self.nodes[shard_of(record.iccid, len(NODES))].ingest_record(record)

    def evaluate(self, now: float) -> tuple[CycleResult, CycleResult]:
        """One cycle everywhere; the reference's result and the leader's."""
        ref = self.ref.evaluate(now)
        results = [engine.evaluate(now) for engine in self.nodes]
        reports = {}
        for name, engine in zip(NODES, self.nodes, strict=True):
            report = shard_report(engine, 0, 1)
            assert report is not None
            wire = orjson.loads(orjson.dumps(report.to_json()))
            if not self.lost(name, now):
                reports[name] = ShardReport.from_json(wire)
        self.merger.cycle(
            [replace(r, shard=NODES.index(name), shards=len(NODES)) for name, r in reports.items()],
            at=now,
        )
        merge = leader_merge(self.leader, reports, NODES, now)  # as service.cluster
        self.leader.heard_elsewhere = merge.merged.heard
        self.leader.apply_merge(merge.merged, merge.causes)
        entry = orjson.loads(orjson.dumps(leader_entry(self.leader, now)))
        interval = self.leader.config.eval_interval_s
        for engine in self.nodes[1:]:
            engine.leader_groups = leader_groups(entry)
            engine.heard_elsewhere = fleet_heard(entry, now, 3 * interval)
        return ref, results[0]


class TwinFeed(Feed):
    def __init__(self, twin: Twin) -> None:
        super().__init__(twin.ref)
        self.twin = twin

    def send(self, obj: dict[str, object], at: float) -> Record:
        self.n += 1
        obj.setdefault("record_id", f"r-{self.n}")
        result = self.decoder.decode_line(orjson.dumps(obj), at + 60.0)
        assert not isinstance(result, str | type(None)), result
        self.twin.ingest(result)  # type: ignore[arg-type]
        return result  # type: ignore[return-value]


def groups(engine: Engine) -> list[Incident]:
    return [i for i in engine.incidents.all() if i.kind == "group"]


# ---- a black hole ends: the recovery onset -------------------------------------------

SIMS = 80


def learned_twin() -> tuple[Twin, TwinFeed, float, np.ndarray]:
    """Two days of reports (tests/test_recovery.py's fleet), evaluated every 10 minutes."""
    twin = Twin([iccid(k) for k in range(SIMS)], warmup_s=DAY)
    feed = TwinFeed(twin)
    end, nxt = two_partner_history(twin, feed, SIMS, 2 * DAY)
    return twin, feed, end, nxt


def run(
    twin: Twin,
    feed: TwinFeed,
    nxt: np.ndarray,
    start: float,
    end: float,
    *,
    up: Callable[[int, float], bool],
) -> None:
    two_partner_run(twin, feed, nxt, start, end, up=up)


def test_a_black_hole_recovers_and_resolves_in_a_cluster_as_on_one_node() -> None:
    twin, feed, end, nxt = learned_twin()
    fault_end = end + 3 * HOUR

    def up(k: int, t: float) -> bool:
        return k % 2 == 1 or not end <= t < fault_end

    run(twin, feed, nxt, end, fault_end + 3 * HOUR, up=up)
    (ref,) = groups(twin.ref)
    (led,) = groups(twin.leader)
    assert ref.dims == led.dims == {"partner": "26202"}
    step = led.opened_at - ref.opened_at
    assert step == 60.0  # the cluster's one evaluation step
    # the same recovery onset: the leader counts every node's SIMs that came back
    assert ref.recovery_onset is not None
    assert led.recovery_onset == ref.recovery_onset
    (merger,) = [i for i in twin.merger.incidents.all() if i.kind == "group"]
    assert merger.recovery_onset == ref.recovery_onset  # a merger process's too
    # resolved the same number of cycles after: the other node's hourly SIMs waited
    # for their report (the onset reached it) instead of staying overdue
    assert ref.resolved_at is not None
    assert led.resolved_at == ref.resolved_at + step
    assert led.resolved_at - fault_end <= 15 * 60
    # ... and nothing paged again on either
    assert [i.id for i in groups(twin.leader)] == [i.id for i in groups(twin.ref)]


def test_a_fault_s_end_while_a_node_is_down_still_counts_its_recovery() -> None:
    # The second node's reports are lost for the ten minutes after the black hole's
    # end, when the five-minute devices came back. Each node counts a SIM once, in the
    # cycle it came back, so the leader, deciding nothing without every node, never
    # counted them: its onset came from the hourly devices trickling back after the
    # gap, and the page resolved later than on one node. Now the SIMs the usable node
    # saw come back count in a merge without a decision.
    twin, feed, end, nxt = learned_twin()
    fault_end = end + 3 * HOUR
    twin.lost = lambda node, now: node == "n2" and fault_end < now <= fault_end + 600.0

    def up(k: int, t: float) -> bool:
        return k % 2 == 1 or not end <= t < fault_end

    run(twin, feed, nxt, end, fault_end + 3 * HOUR, up=up)
    (ref,) = groups(twin.ref)
    (led,) = groups(twin.leader)
    (merger,) = [i for i in twin.merger.incidents.all() if i.kind == "group"]
    assert ref.recovery_onset is not None
    assert led.recovery_onset is not None
    assert merger.recovery_onset is not None
    # the first node's half of the five-minute devices sets it, as one node's all do
    assert led.recovery_onset - ref.recovery_onset <= 60.0
    assert merger.recovery_onset - ref.recovery_onset <= 60.0
    assert ref.resolved_at is not None
    assert led.resolved_at is not None
    assert led.resolved_at - fault_end <= 15 * 60
    assert [i.id for i in groups(twin.leader)] == [i.id for i in groups(twin.ref)]


# ---- evidence per kind: failure ends open the incident and say so ----------------------


def test_failure_ends_open_the_incident_with_the_same_evidence_as_on_one_node() -> None:
    twin, feed, end, _ = learned_twin()
    failing = [k for k in range(SIMS) if k % 2 == 0]
    for n, k in enumerate(failing):  # the network tears 26202's sessions down
        feed.session(iccid(k), end + 5.0 + n, "ended", end_cause="network_failure")
    for n, k in enumerate(failing[:12]):  # ... and some devices steer to 26203
        feed.event(iccid(k), end + 30.0 + n, "location_update", mcc="262", mnc="03")
    seen: dict[str, dict[float, dict[str, object]]] = {"ref": {}, "led": {}}
    t = end
    for _ in range(8):
        t += 60.0
        twin.evaluate(t)
        for name, engine in (("ref", twin.ref), ("led", twin.leader)):
            for incident in groups(engine):
                seen[name][t] = {**incident.evidence, "_dims": incident.dims}
                # the usual counts are each node's learned baselines summed: close to
                # the reference's, not equal
                plain = {k: v for k, v in incident.evidence.items() if k != "usual"}
                seen[name][t]["_text"] = evidence_text(plain, incident.total)
    opened = {name: min(by_time) for name, by_time in seen.items()}
    assert opened["led"] == opened["ref"] + 60.0
    assert opened["ref"] - end <= 5 * 60
    # each cycle, the leader's incident says what the reference's said a step before
    # (what every node's SIMs showed, summed; not the leader's own part)
    compared = 0
    for at, ref in seen["ref"].items():
        led = seen["led"].get(at + 60.0)
        if led is None:
            continue
        assert led["_dims"] == ref["_dims"] == {"partner": "26202"}
        for key in (
            "failing",
            "overdue",
            "failure_end",
            "failure_end_cause",
            "reject",
            "moved",
            "moved_to",
        ):
            assert led.get(key) == ref.get(key), (at, key)
        assert led["_text"] == ref["_text"]
        led_usual, ref_usual = led["usual"], ref["usual"]
        assert isinstance(led_usual, dict)
        assert isinstance(ref_usual, dict)
        assert led_usual.keys() == ref_usual.keys()
        # (the reference opens at the first sighting of failure ends; the cluster's
        # nodes follow the leader's incident a step later, so their baselines may have
        # learned one cycle of the fault more, up to one SIM's worth here)
        for kind, value in ref_usual.items():
            assert abs(led_usual[kind] - value) <= max(1.0, 0.2 * value), kind
        compared += 1
    assert compared >= 4
    last = seen["led"][max(seen["led"])]
    assert last["failure_end"] == len(failing)
    assert last["moved_to"] == "26203"  # where the steered devices went, summed


def test_a_sim_of_another_node_names_the_leader_s_incident_as_on_one_node() -> None:
    # Only the leader holds group incidents. A SIM read by another node must still say
    # it is part of one (its view, its diagnosis, its ticket's group_incident label, the
    # inhibit rule's key: all through Engine.incident_of), or every ticket of an outage
    # on that node pages on its own.
    twin, feed, end, nxt = learned_twin()
    other = twin.nodes[1]
    failing = [k for k in range(SIMS) if k % 2 == 0]
    mine = [k for k in failing if shard_of(iccid(k), len(NODES)) == 1]
    assert mine
    for n, k in enumerate(failing):
        feed.session(iccid(k), end + 5.0 + n, "ended", end_cause="network_failure")
    t = end
    for _ in range(8):
        t += 60.0
        twin.evaluate(t)
    (led,) = [i for i in twin.leader.incidents.open.values() if i.kind == "group"]
    (ref,) = [i for i in twin.ref.incidents.open.values() if i.kind == "group"]
    assert led.dims == ref.dims == {"partner": "26202"}
    assert not [i for i in other.incidents.open.values() if i.kind == "group"]
    for k in mine:
        row = other.state.row(iccid(k))
        named = other.incident_of(row)
        assert named is not None
        assert (named.id, named.dims) == (led.id, led.dims)
        ref_named = twin.ref.incident_of(twin.ref.state.row(iccid(k)))
        assert ref_named is not None
        assert ref_named.dims == named.dims
        view = sim_view(other, iccid(k), t)["incident"]
        assert isinstance(view, dict)
        assert view["id"] == led.id
        findings = other.diagnose(iccid(k), t) or []
        (group,) = [f for f in findings if f.code == "group_incident"]
        assert group.hint.startswith(f"Part of incident {led.id}: ")
    # a SIM of that node outside the group: none
    healthy = next(k for k in range(1, SIMS, 2) if shard_of(iccid(k), len(NODES)) == 1)
    assert other.incident_of(other.state.row(iccid(healthy))) is None
    # the partner comes back: once the leader resolves it, no SIM names it any more
    run(twin, feed, nxt, t, t + 3 * HOUR, up=lambda _k, _ts: True)
    assert not [i for i in twin.leader.incidents.open.values() if i.kind == "group"]
    assert all(other.incident_of(other.state.row(iccid(k))) is None for k in mine)


# ---- how groups nest: the leader widens an incident as one node does -------------------


def test_the_leader_widens_an_incident_to_the_country_its_partner_lies_in() -> None:
    # {apn, partner=20801} lies inside {apn, country=FR}: the merged leaves say so (a
    # partner's SIMs are all in its country), the dims alone do not
    fr = ("meters.acme", "FR", "20801")
    leaves = [fr, ("meters.acme", "FR", "20810"), ("meters.acme", "DE", "26201")]
    counts = tuple(LeafCounts(v, 20.0, 0.0, 0.2) for v in leaves)
    dims = ("apn", "country", "partner")
    reports = [ShardReport(i, 2, T0, warmed_up=True, dims=dims, leaves=counts) for i in range(2)]
    merged = merge_reports(reports, 2)
    narrow = {"apn": "meters.acme", "partner": "20801"}
    wide = {"apn": "meters.acme", "country": "FR"}
    leader = new_engine()
    leader.groups_local = False
    opened = []
    for n, group in enumerate([narrow, narrow, wide, wide, wide]):
        cause = Cause(dims=group, affected=20.0, total=40.0, expected=0.4, score=50.0)
        leader.apply_merge(merged, [cause])
        result = leader.evaluate(T0 + 60.0 * (n + 1))
        opened += [c.incident.id for c in result.changes if c.kind == "opened"]
    assert opened == ["inc-0001"]  # one page: the same incident, widened
    assert [i.dims for i in leader.incidents.open.values()] == [wide]


# ---- two faults that share a value: the rest of their parent is healthy -----------------

APNS = ("meters.acme", "iot.trackr")


def network(k: int) -> tuple[str, str]:
    """Per APN, of each 60 SIMs: 5 on 26201 and 5 on 26202 (DE), 10 on 20801 (FR), 40 on
    20404 (NL)."""
    j = (k // 2) % 60
    if j < 10:
        return ("262", "01") if j < 5 else ("262", "02")
    return ("208", "01") if j < 20 else ("204", "04")


def test_two_faults_sharing_an_apn_stay_two_incidents_as_on_one_node() -> None:
    # 120 SIMs reporting every 30 minutes. meters.acme fails in DE, and ten minutes
    # later, for another reason, in FR: its SIMs in NL are fine, so these are two faults
    # (not one of meters.acme): the rest of the parent shows it (core.exposure)
    sims = {iccid(k): (APNS[k % 2], network(k)) for k in range(120)}
    twin = Twin(list(sims), {s: apn for s, (apn, _) in sims.items()}, warmup_s=DAY)
    feed = TwinFeed(twin)
    offsets = np.random.default_rng(7).uniform(0, 1800.0, len(sims))
    events = sorted(
        (T0 + off + j * 1800.0, sim)
        for off, sim in zip(offsets, sims, strict=True)
        for j in range(int(2 * DAY // 1800.0))
    )
    at = T0 + 600.0
    for ts, sim in events:
        while at <= ts:
            twin.evaluate(at)
            at += 600.0
        apn, (mcc, net) = sims[sim]
        feed.usage(sim, ts, apn=apn, mcc=mcc, mnc=net)
    end = T0 + 2 * DAY

    def tear_down(country: str, at: float) -> None:
        for n, (sim, (apn, (mcc, _))) in enumerate(sims.items()):
            if apn == "meters.acme" and mcc == country:
                feed.session(sim, at + n, "ended", end_cause="network_failure")

    tear_down("262", end + 5.0)
    t = end
    while t < end + 30 * 60:
        if t == end + 10 * 60:
            tear_down("208", t + 5.0)
        t += 60.0
        twin.evaluate(t)
    ref = sorted(str(sorted(i.dims.items())) for i in twin.ref.incidents.open.values())
    led = sorted(str(sorted(i.dims.items())) for i in twin.leader.incidents.open.values())
    assert len(ref) == 2
    assert led == ref


# ---- a session-level black hole ends: the churners stop, on every node -----------------


def bursts(k: int, j: int) -> float | None:
    """300 devices re-opening every 30 min on clock ticks, 5 times: the group's silence
    (longer than its longest quiet between bursts) ends it."""
    return 1800.0 * j + (k % 2) * 900.0 + (k // 2) * 2.0 if k < 300 and j < 5 else None


def staggered(k: int, j: int) -> float | None:
    """8 devices every 20 min, a minute apart, 6 times: their rates make the silence
    unlikely only after a while."""
    return 1200.0 * j + 60.0 * k if k < 8 and j < 6 else None


def some_go_on(k: int, j: int) -> float | None:
    """40 devices every 20 min that stop after 6 starts, 5 that go on: never a group
    silence, but many more stopped by their own rhythm than while they churn."""
    if k >= 45 or (k < 40 and j >= 6) or j >= 12:
        return None
    return 1200.0 * j + 20.0 * k


@pytest.mark.parametrize("plan", [bursts, staggered, some_go_on])
def test_the_churn_stop_of_every_nodes_churners_summed_is_one_nodes(
    plan: Callable[[int, int], float | None],
) -> None:
    # session-level devices re-opening sessions again and again (a black hole), on two
    # partners, split over two nodes: each node sends per leaf the ChurnPart of its
    # churners; the leader merges them and decides as one node on all of them would
    sims = [iccid(k) for k in range(300)]
    engine = new_engine(sims)
    nodes = [new_engine([s for s in sims if shard_of(s, 2) == i]) for i in range(2)]
    feeds = [Feed(engine), Feed(nodes[0]), Feed(nodes[1])]
    start = T0 + DAY
    starts = sorted(
        (start + at, k) for k in range(300) for j in range(12) if (at := plan(k, j)) is not None
    )
    for at, k in starts:
        net = "01" if k % 3 else "02"
        for feed in (feeds[0], feeds[1 + shard_of(iccid(k), 2)]):
            feed.session(iccid(k), at, "started", apn="meters.acme", mcc="262", mnc=net)
    last = starts[-1][0]
    params = EvalParams()
    rows = np.array([engine.state.row(s) for s in sims])
    decided = 0
    for quiet in np.arange(-3600.0, 3600.0, 30.0).tolist():  # across the moment it ends
        now = last + quiet
        parts: list[ChurnPart] = []
        for node in nodes:
            mine = np.arange(len(node.state))
            leaves = node.state.cols.leaf[mine]
            parts += churn_parts(node.state, mine, leaves, now, params).values()
        one = churn_stopped(engine.state, rows, now, params)
        merged = churn_stop(ChurnPart.merge(parts), now, params)
        assert (np.isnan(one) and np.isnan(merged)) or one == merged, quiet
        decided += not np.isnan(one)
    assert 0 < decided < 240  # both answers occur


# ---- a session-level country goes dark: judged on the fleet's record rate ----------


def dark_of(engine: Engine, sims: Sequence[str]) -> list[bool]:
    """Of ``sims`` the engine holds and counts, whether each shows ``dark`` evidence."""
    evaluation = engine.last_evaluation
    assert evaluation is not None
    rows = [engine.state.row(s) for s in sims]
    return [
        bool(evaluation.evidence[r] & Evidence.DARK)
        for r in rows
        if r >= 0 and evaluation.counted[r]
    ]


def test_a_session_level_country_goes_dark_in_a_cluster_when_it_does_on_one_node() -> None:
    # 40 session-level SIMs in DE and 40 in FR, a session a day each; then FR sends
    # nothing (its sessions stay open: nothing closes them when the network goes away)
    # while DE keeps its resets. One node holding them all finds FR dark once no FR
    # record came for 6 times its SIMs' summed record rate; a node holding half of them
    # judged its half on its own rate, half of the fleet's, and took twice as long
    sims = [iccid(k) for k in range(80)]
    twin = Twin(sims, warmup_s=DAY, eval_interval_s=600.0)
    feed = TwinFeed(twin)
    last = daily_sessions(feed, sims)
    de, fr = sims[:40], sims[40:]
    engines = [twin.ref, *twin.nodes]
    first_dark: list[float | None] = [None] * len(engines)
    start = last + 60.0
    de_next = start
    for step in range(1, 16 * 6 + 1):
        now = start + 600.0 * step
        while de_next <= now:  # DE: a reset every 40 min somewhere
            k = int((de_next - start) // 2400) % 40
            feed.session(iccid(k), de_next, "started", apn="meters.acme", mcc="262", mnc="02")
            de_next += 2400.0
        twin.evaluate(now)
        for i, engine in enumerate(engines):
            dark_fr = dark_of(engine, fr)
            assert not any(dark_of(engine, de))  # DE is never dark
            if first_dark[i] is None and dark_fr and all(dark_fr):
                first_dark[i] = now - last
    ref, *nodes = first_dark
    print(f"FR dark after {first_dark} s of silence (one node, then the cluster's nodes)")
    assert ref is not None
    assert 4 * HOUR <= ref <= 10 * HOUR, ref
    # every node finds its FR SIMs dark a cycle after one node does at most (the leader
    # shares what the fleet heard after its merge, the others read it for their next)
    for node in nodes:
        assert node is not None
        assert ref <= node <= ref + 2 * 600.0, (ref, nodes)
