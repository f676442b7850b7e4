"""The cluster's pure decisions (simwatch/core/cluster.py) and the group-incident handover
of the incident tracker (export_groups / adopt_groups / drop_groups)."""

from __future__ import annotations

from pathlib import Path

import orjson
import yaml
from fleet import DAY, ICCIDS, T0, new_engine

from simwatch.core.cluster import (
    assign,
    fleet_heard,
    foreign_rows,
    leader_entry,
    leader_groups,
    members,
    merge_cycle,
    owned_by,
)
from simwatch.core.evaluate import INACTIVE, sim_states
from simwatch.core.incidents import IncidentTracker
from simwatch.core.localize import Cause
from simwatch.core.merge import LeafCounts, ShardReport, shard_of
from simwatch.shell.settings import load_settings


def test_a_listing_that_misses_a_live_node_does_not_drop_it() -> None:
    # leases live 3 s after their last renewal; the leader lists them every second
    listed = members({}, ["node.n1", "node.n2", "other"], 100.0, 3.0)
    assert sorted(listed) == ["n1", "n2"]
    # one listing with n1 twice and no n2 (a key renewed while the bucket was listed)
    listed = members(listed, ["node.n1", "node.n1"], 101.0, 3.0)
    assert sorted(listed) == ["n1", "n2"]  # n2 stays: listed 1 s ago
    # n2 really stopped: gone once its lease is older than lease_s
    listed = members(listed, ["node.n1"], 103.0, 3.0)
    assert sorted(listed) == ["n1", "n2"]
    listed = members(listed, ["node.n1"], 103.5, 3.0)
    assert sorted(listed) == ["n1"]
    # and back when it renews
    assert sorted(members(listed, ["node.n2", "node.n1"], 104.0, 3.0)) == ["n1", "n2"]


def test_assignment_is_balanced_and_sticky() -> None:
    first = assign(12, ["b", "a", "c"], {})
    assert sorted(first) == list(range(12))
    assert [len(owned_by(first, n)) for n in "abc"] == [4, 4, 4]
    # c leaves: only its partitions move, shared by the others
    second = assign(12, ["a", "b"], first)
    assert all(second[p] == first[p] for p in owned_by(first, "a") + owned_by(first, "b"))
    assert [len(owned_by(second, n)) for n in "ab"] == [6, 6]
    # a node joins: it gets a fair share, each partition it takes moved from one node
    third = assign(12, ["a", "b", "d"], second)
    assert [len(owned_by(third, n)) for n in "abd"] == [4, 4, 4]
    assert all(third[p] in (second[p], "d") for p in range(12))
    assert assign(12, ["a", "b", "d"], third) == third  # stable once balanced
    assert assign(4, [], first) == {}


def test_sims_of_other_partitions_are_away_and_come_back() -> None:
    engine = new_engine(ICCIDS)
    state = engine.state
    iccids = state.index.iccids()
    away = foreign_rows(iccids, 4, [0, 1])
    assert sorted(iccids[r] for r in away) == sorted(i for i in ICCIDS if shard_of(i, 4) in (2, 3))
    assert state.set_away(away) == len(away) > 0
    now = T0 + DAY
    states = sim_states(state, now)
    assert all(states[r] == INACTIVE for r in away)  # never counted in a group here
    # partitions 2 and 3 come back: their SIMs are this node's again
    assert state.set_away(foreign_rows(iccids, 4, [0, 1, 2, 3])) == len(away)
    assert not any(sim_states(state, now) == INACTIVE)


def report(overdue: float, at: float = 600.0, warm: bool = True) -> ShardReport:
    leaves = (
        LeafCounts(("m", "DE", "26201"), total=100, overdue=overdue, expected=1.0),
        LeafCounts(("m", "DE", "26202"), total=100, overdue=1, expected=1.0),
    )
    return ShardReport(0, 1, at, warm, ("apn", "country", "partner"), leaves)


def test_leader_merges_every_node_or_decides_nothing() -> None:
    nodes = ["n1", "n2", "n3"]
    reports = {n: report(40) for n in nodes}
    merged = merge_cycle(reports, nodes, 600.0)
    assert merged.causes is not None
    assert [c.dims for c in merged.causes] == [{"partner": "26201"}]
    assert merged.causes[0].affected == 120
    assert merged.causes[0].total == 300
    # a node missing or a report of another instant: no decision
    assert merge_cycle({n: reports[n] for n in nodes[:2]}, nodes, 600.0).causes is None
    stale = {**reports, "n3": report(40, at=540.0)}
    assert merge_cycle(stale, nodes, 600.0).causes is None
    # a report of a node owning nothing now is ignored
    assert merge_cycle({**reports, "old": report(90)}, nodes, 600.0).causes is not None


def cause(partner: str, affected: float) -> Cause:
    return Cause(
        dims={"partner": partner},
        affected=affected,
        total=100.0,
        expected=1.0,
        score=50.0,
    )


def test_group_incidents_carry_over_to_a_new_leader() -> None:
    old = IncidentTracker()
    for t in (0.0, 60.0):
        old.update_groups(t, [cause("26201", 40)])
    assert [i.id for i in old.open.values()] == ["inc-0001"]
    new = IncidentTracker(next_id=7)  # a node with its own tickets numbered up to inc-0006
    new.adopt_groups(old.export_groups())
    assert [i.id for i in new.open.values()] == ["inc-0001"]
    # the same fault next cycle: the same incident, no new one
    changes = new.update_groups(120.0, [cause("26201", 42)])
    assert [c.kind for c in changes if c.kind == "opened"] == []
    assert [i.id for i in new.open.values()] == ["inc-0001"]
    # a new fault gets an id neither node gave
    for t in (180.0, 240.0):
        new.update_groups(t, [cause("26201", 42), cause("20404", 30)])
    assert sorted(i.id for i in new.open.values()) == ["inc-0001", "inc-0007"]
    # stepping down: forgotten, not resolved
    new.drop_groups()
    assert new.open == {}
    assert new.resolved == []


def test_the_deploy_node_config_loads_with_the_node_name_from_the_environment(
    tmp_path: Path,
) -> None:
    root = Path(__file__).resolve().parent.parent
    text = (root / "deploy/cluster/simwatch-node.toml").read_text(encoding="utf-8")
    for name in ("inventory.csv", "tokens"):
        (tmp_path / name).write_text("iccid\n" if name.endswith("csv") else "t0k3n\n")
        text = text.replace(f"/etc/simwatch/{name}", str(tmp_path / name))
    config = tmp_path / "node.toml"
    config.write_text(text, encoding="utf-8")
    settings = load_settings(config, {"SIMWATCH_CLUSTER__NODE": "simwatch-2"})
    assert settings.cluster.enabled
    assert settings.cluster.node == "simwatch-2"
    assert settings.cluster.partitions == settings.sources.nats[0].partitions
    # every service of the compose file mounts that config and names its node
    compose = yaml.safe_load((root / "deploy/cluster/docker-compose.yml").read_text())
    nodes = {k: v for k, v in compose["services"].items() if k.startswith("simwatch-")}
    assert sorted(v["environment"]["SIMWATCH_CLUSTER__NODE"] for v in nodes.values()) == [
        "simwatch-1",
        "simwatch-2",
        "simwatch-3",
    ]


def test_other_nodes_read_the_leaders_group_incidents_leniently() -> None:
    leader = IncidentTracker()
    for t in (0.0, 60.0):
        leader.update_groups(t, [cause("26201", 40), cause("20404", 30)])
    first, second = leader.open.values()
    first.recovery_onset = 30.0
    groups = leader_groups(orjson.loads(orjson.dumps(leader.export_groups())))
    assert [(dict(g.dims), g.open, g.recovery_onset) for g in groups] == [
        ({"partner": "26201"}, True, 30.0),
        ({"partner": "20404"}, True, None),
    ]
    del second
    # an entry of another shape, or a malformed incident in it, is skipped
    assert leader_groups(None) == ()
    assert leader_groups({"open": "x"}) == ()
    assert leader_groups({"open": [[[], {"kind": "group", "dims": "x"}]]}) == ()


def test_other_nodes_read_what_the_fleet_heard_while_the_leader_merges() -> None:
    engine = new_engine()
    engine.heard_elsewhere = {"country": {"FR": (0.002, 1000.0)}}
    entry = orjson.loads(orjson.dumps(leader_entry(engine, 5000.0)))
    assert fleet_heard(entry, 5600.0, 1800.0) == {"country": {"FR": (0.002, 1000.0)}}
    # the leader stopped merging (no entry for three intervals): each node alone again
    assert fleet_heard(entry, 7000.0, 1800.0) is None
    # a merge without every node's report, an older leader's entry, junk: none
    engine.heard_elsewhere = None
    assert fleet_heard(orjson.loads(orjson.dumps(leader_entry(engine, 5000.0))), 5000.0, 60) is None
    assert fleet_heard(engine.incidents.export_groups(), 5000.0, 60.0) is None
    assert fleet_heard({"heard": {"country": "x"}, "heard_at": 5000.0}, 5000.0, 60.0) is None
    assert fleet_heard({"heard": {}, "heard_at": True}, 5000.0, 60.0) is None
    # the entry is still the leader's group incidents for the new leader to carry on
    assert leader_groups(entry) == ()
