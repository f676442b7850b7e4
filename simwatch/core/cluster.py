"""A cluster's decisions, pure: which node owns which partition, what the leader merges.

``service.cluster`` is the shell around this (NATS key-value leases, reports, the
leader's loop); docs/scaling.md describes the whole.

- ``assign(partitions, nodes, current)``: the partition -> node map. Sticky: a partition
  stays with its owner while that node is alive, except to even the load out when a
  node joins; a partition of a node that left (its lease expired) goes to the live node
  owning the fewest (ties: by name).
- ``foreign_rows``: the SIMs of partitions a node does not read (any more): the node
  sets them aside (``service.cluster``) so that they never count in its groups.
- ``merge_cycle(reports, nodes, at)``: the leader's localization over every node's
  last report for instant ``at`` (``core.merge``): the causes when every assigned node
  reported for ``at``, warmed up and not an outlier; None otherwise (no decision: the
  incidents stay as they are).
- ``leader_entry`` / ``leader_groups`` / ``fleet_heard``: what the leader writes after
  each merge and what the other nodes read of it (its group incidents, what the fleet
  heard of each group).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from simwatch.core.incidents import Incident, incident_from_state
from simwatch.core.localize import LocalizeParams
from simwatch.core.merge import (
    Merged,
    MergedNoise,
    ShardReport,
    heard_json,
    merge_reports,
    merged_causes,
    parse_heard,
    shard_of,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from simwatch.core.engine import Engine
    from simwatch.core.evaluate import HeardElsewhere
    from simwatch.core.localize import Cause


def assign(partitions: int, nodes: Iterable[str], current: Mapping[int, str]) -> dict[int, str]:
    """Every partition of ``range(partitions)`` to one of ``nodes`` (empty: ``{}``).

    A partition keeps its owner while that node is alive, except to even out the load
    when a node joins: partitions move from the most loaded node to the least loaded one
    (highest partition first) until they differ by one at most. A dead node's partitions
    go to the least loaded (ties by name)."""
    live = sorted(set(nodes))
    if not live:
        return {}
    out = {p: n for p, n in current.items() if 0 <= p < partitions and n in live}
    load = dict.fromkeys(live, 0)
    for owner in out.values():
        load[owner] += 1
    for p in range(partitions):
        if p not in out:
            owner = min(live, key=lambda n: (load[n], n))
            out[p] = owner
            load[owner] += 1
    while True:
        most = max(live, key=lambda n: (load[n], n))
        least = min(live, key=lambda n: (load[n], n))
        if load[most] - load[least] <= 1:
            return out
        moved = max(p for p, n in out.items() if n == most)
        out[moved] = least
        load[most] -= 1
        load[least] += 1


def members(
    listed: Mapping[str, float], keys: Iterable[str], now: float, lease_s: float
) -> dict[str, float]:
    """The cluster's members after one listing of the lease bucket: node -> when its lease
    was last listed, for the nodes listed within the last ``lease_s``.

    ``keys`` are the bucket's keys (``node.<name>`` for a node's lease). A lease key lives
    ``lease_s`` after its last renewal, so a node that stopped leaves the listing within
    ``lease_s`` and the members ``lease_s`` later. One listing that misses a live node (a
    key renewed while the bucket was being listed: seen as "n1, n1" and no n2) no longer
    moves every partition away and back."""
    seen = dict(listed)
    for key in keys:
        if key.startswith("node."):
            seen[key.removeprefix("node.")] = now
    return {node: at for node, at in seen.items() if at >= now - lease_s}


def foreign_rows(iccids: Sequence[str], partitions: int, owned: Iterable[int]) -> np.ndarray:
    """The rows (positions in ``iccids``) of SIMs whose partition is not in ``owned``."""
    mine = set(owned)
    return np.fromiter(
        (row for row, iccid in enumerate(iccids) if shard_of(iccid, partitions) not in mine),
        dtype=np.int64,
    )


def owned_by(assignment: Mapping[int, str], node: str) -> list[int]:
    return sorted(p for p, n in assignment.items() if n == node)


@dataclass(frozen=True, slots=True)
class LeaderMerge:
    """One merge of the leader: the merged counts, and the causes (None: no decision)."""

    merged: Merged
    causes: list[Cause] | None
    nodes: tuple[str, ...]  # the node of each shard index of ``merged``


def merge_cycle(
    reports: Mapping[str, ShardReport],
    nodes: Sequence[str],
    at: float,
    params: LocalizeParams | None = None,
    *,
    noise: MergedNoise | None = None,
    frozen: Iterable[Mapping[str, str]] = (),
    interval_s: float = 60.0,
) -> LeaderMerge:
    """Merge the reports of ``nodes`` (shard index = position in sorted ``nodes``) at
    ``at`` and localize when every one of them is usable; a report of a node not in
    ``nodes`` is ignored (it owns no partition now).

    ``noise``: the leader's learning of each leaf's noise on the sums (``MergedNoise``):
    localization tests each leaf against it, and a complete merge teaches it, except in
    the groups ``frozen`` (the open group incidents' dims), every ``interval_s``."""
    order = tuple(sorted(nodes))
    shards = max(len(order), 1)
    renumbered = [
        replace(reports[n], shard=i, shards=shards) for i, n in enumerate(order) if n in reports
    ]
    merged = merge_reports(renumbered, shards, at=at)
    if not order or not merged.complete:
        return LeaderMerge(merged, None, order)
    if noise is not None:
        merged = replace(merged, table=noise.apply(merged.table))
    causes = merged_causes(merged, params if params is not None else LocalizeParams())
    if noise is not None:
        noise.learn(at, interval_s, merged.table, frozen)
    return LeaderMerge(merged, causes, order)


def leader_merge(
    engine: Engine, reports: Mapping[str, ShardReport], nodes: Sequence[str], at: float
) -> LeaderMerge:
    """``merge_cycle`` as a leader's ``engine`` runs it: with its localization
    parameters, its learning of the leaves' noise on the sums (``Engine.merged_noise``),
    its open group incidents' leaves frozen, at its evaluation interval."""
    return merge_cycle(
        reports,
        nodes,
        at,
        engine.config.localize,
        noise=engine.merged_noise,
        frozen=[i.dims for i in engine.incidents.open.values() if i.kind == "group"],
        interval_s=engine.config.eval_interval_s,
    )


@dataclass(frozen=True, slots=True)
class LeaderGroup:
    """What a node that is not the leader knows of one of the leader's group incidents
    (``Engine.leader_groups``): its group, whether it is open (the group's baselines do
    not learn the fault meanwhile), its recovery onset (SIMs silent since before the
    fault's end wait for their report), and the incident as the leader last wrote it
    (None when unreadable): the node's SIM views, diagnoses and tickets name it
    (``Engine.incident_of``), so the inhibit rule mutes tickets on every node."""

    dims: Mapping[str, str]
    open: bool
    recovery_onset: float | None
    incident: Incident | None = None


def leader_entry(engine: Engine, at: float) -> dict[str, object]:
    """What a leader writes after its merge for instant ``at`` (the ``incidents``
    entry): its group incidents (``IncidentTracker.export_groups``) and what the fleet
    heard of each group at the merge (``Engine.heard_elsewhere``; null when the merge
    lacked a node's report)."""
    heard = engine.heard_elsewhere
    return {
        **engine.incidents.export_groups(),
        "heard": None if heard is None else heard_json(heard),
        "heard_at": at,
    }


def fleet_heard(data: object, now: float, max_age_s: float) -> HeardElsewhere | None:
    """The ``heard`` of a leader's ``incidents`` entry (``leader_entry``) at ``now``;
    None when it has none, is unreadable or is older than ``max_age_s`` (no leader
    merges: a node then judges darkness on its own SIMs, as it did alone)."""
    if not isinstance(data, dict) or data.get("heard") is None:
        return None
    at = data.get("heard_at")
    if not isinstance(at, int | float) or isinstance(at, bool) or now - at > max_age_s:
        return None
    try:
        return parse_heard(data["heard"])
    except (TypeError, ValueError):
        return None


def leader_groups(data: object) -> tuple[LeaderGroup, ...]:
    """The group incidents of a leader's ``incidents`` entry
    (``IncidentTracker.export_groups``), open and resolved, with what the other nodes
    apply so that they count and learn as one node would. Lenient: an unreadable entry or
    incident is skipped."""
    if not isinstance(data, dict):
        return ()
    out = []
    for name in ("open", "resolved"):
        items = data.get(name)
        if not isinstance(items, list):
            continue
        for item in items:
            state = item[1] if isinstance(item, list) and len(item) == 2 else item
            if not isinstance(state, dict) or state.get("kind") != "group":
                continue
            dims, onset = state.get("dims"), state.get("recovery_onset")
            if not isinstance(dims, dict):
                continue
            number = isinstance(onset, int | float) and not isinstance(onset, bool)
            incident: Incident | None = None
            if name == "open":  # what a SIM's view and ticket name (resolved: not read)
                try:
                    incident = incident_from_state(state)
                except ValueError:
                    incident = None
            out.append(
                LeaderGroup(
                    dims={str(k): str(v) for k, v in dims.items()},
                    open=name == "open",
                    recovery_onset=float(onset) if number else None,  # type: ignore[arg-type]
                    incident=incident,
                )
            )
    return tuple(out)


__all__ = [
    "LeaderGroup",
    "LeaderMerge",
    "assign",
    "fleet_heard",
    "foreign_rows",
    "leader_entry",
    "leader_groups",
    "leader_merge",
    "merge_cycle",
    "owned_by",
]
