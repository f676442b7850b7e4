"""The engine: fleet state + ingest + group baseline + evaluation + incidents.

This is the functional core that the offline replay and the live daemon share. It does
no I/O and never reads the clock: records come in through ``ingest_record``, and time
advances only through ``evaluate(now)``.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from simwatch.core.baseline import BaselineParams, GroupBaseline
from simwatch.core.diagnosis import Finding, diagnose
from simwatch.core.evaluate import (
    EVIDENCE_NAMES,
    ChurnPart,
    EvalParams,
    Evaluation,
    Evidence,
    HeardElsewhere,
    back_on_network,
    churn_parts,
    churn_stopped,
    evaluate,
    evidence_summary,
    groups_heard,
    last_refusal,
    leaf_mask,
    reason_codes,
    sent_after,
    vip_rows,
)
from simwatch.core.exposure import leaf_exposure, reported_by_leaf, rest_verdict, widen_silent
from simwatch.core.incidents import (
    Incident,
    IncidentChange,
    IncidentParams,
    IncidentTracker,
    Rest,
    SimAlarm,
)
from simwatch.core.ingest import Ingestor
from simwatch.core.localize import Cause, LocalizeParams
from simwatch.core.maintenance import Window, active_windows
from simwatch.core.merge import MergedNoise, advance_recoveries
from simwatch.core.operators import OperatorTable
from simwatch.core.recovery import advance_recovery
from simwatch.core.rhythm import RhythmParams, SimState
from simwatch.core.schedule import ExpectationTables
from simwatch.core.state import FleetState, rel

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from simwatch.core.cluster import LeaderGroup
    from simwatch.core.columnar import RecordColumns
    from simwatch.core.inventory import InventoryRow
    from simwatch.core.merge import Merged
    from simwatch.core.records import Record, Rejection

NEVER_SEEN = int(SimState.NEVER_SEEN)


@dataclass(frozen=True, slots=True)
class EngineConfig:
    dims: tuple[str, ...] = ("apn", "country", "partner")
    eval_interval_s: float = 60.0
    # No group incident before this much record time has passed since the first record:
    # rhythms and every hour of the group baselines must be learned first. A daytime-only
    # device is only recognised as such at its second morning (before that its first
    # night looks like silence), which on a fleet spread over time zones takes two days.
    warmup_s: float = 48 * 3600.0
    rhythm: RhythmParams = field(default_factory=RhythmParams)
    baseline: BaselineParams = field(default_factory=BaselineParams)
    localize: LocalizeParams = field(default_factory=LocalizeParams)
    incidents: IncidentParams = field(default_factory=IncidentParams)
    evaluation: EvalParams = field(default_factory=EvalParams)
    dedup_capacity: int = 2_000_000
    initial_capacity: int = 4096
    # per-plan and per-customer expectations (the inventory's own columns win over them)
    expectations: ExpectationTables = field(default_factory=ExpectationTables)


@dataclass(frozen=True, slots=True)
class StateChanges:
    """SIMs whose state differs from the previous cycle's (a SIM new to the fleet since
    then counts as coming from ``never_seen``). Parallel arrays, one entry per SIM."""

    rows: np.ndarray  # int64 row numbers (``engine.state.index.iccid(row)``)
    old: np.ndarray  # int8 previous state codes (``STATE_NAMES``)
    new: np.ndarray  # int8 current state codes

    def __len__(self) -> int:
        return len(self.rows)


_EMPTY_ROWS = np.zeros(0, np.int64)
_EMPTY_STATES = np.zeros(0, np.int8)
_NO_CHANGES = StateChanges(_EMPTY_ROWS, _EMPTY_STATES, _EMPTY_STATES)


@dataclass(slots=True)
class CycleResult:
    evaluation: Evaluation
    changes: list[IncidentChange]
    duration_s: float
    state_changes: StateChanges = field(default_factory=lambda: _NO_CHANGES)


class Engine:
    def __init__(
        self, config: EngineConfig | None = None, operators: OperatorTable | None = None
    ) -> None:
        self.config = config or EngineConfig()
        self.operators = operators or OperatorTable.load()
        self.state = FleetState(
            dims=self.config.dims,
            capacity=self.config.initial_capacity,
            rhythm=self.config.rhythm,
        )
        self.state.expectations = self.config.expectations
        self.ingestor = Ingestor(
            self.state, self.operators, dedup_capacity=self.config.dedup_capacity
        )
        self.baseline = GroupBaseline(self.config.baseline)
        # per kind of the network's evidence (``EVIDENCE_NAMES``), the share of a leaf's
        # SIMs showing it, learned per hour of day as the failing share is: what is usual
        # (incident ``evidence.usual``); the floor keeps a never-seen kind near zero
        evidence_params = replace(self.config.baseline, min_ratio=1e-4)
        self.evidence_baselines = [GroupBaseline(evidence_params) for _ in EVIDENCE_NAMES]
        self.incidents = IncidentTracker(self.config.incidents)
        # Where group incidents come from: this engine's own localization (True), or, in
        # a cluster (service.cluster), ``external_causes``: the leader's localization on
        # the merged counts of every shard, consumed by the next cycle; None there holds
        # the group incidents as they are (a shard, or a leader still without a merge).
        self.groups_local = True
        self.external_causes: list[Cause] | None = None
        # ... and the merged counts of the leader's last merge (``apply_merge``): what
        # the leader's group incidents say (evidence), how groups nest (``within``)
        self.external_merged: Merged | None = None
        # a cluster node that is not the leader: the leader's group incidents
        # (``core.cluster.leader_groups``), so that its groups' baselines do not learn an
        # open one's fault and its SIMs silent since before a fault's end wait for their
        # report, as on one node
        self.leader_groups: tuple[LeaderGroup, ...] = ()
        # a cluster node: what the whole fleet heard of each group at the leader's last
        # complete merge (``evaluate.HeardElsewhere``), so that a session-level group is
        # judged dark on the fleet's record rate, as on one node (None: this node's own)
        self.heard_elsewhere: HeardElsewhere | None = None
        # as a cluster's leader: each leaf's noise learned on the merged counts
        # (``core.merge.MergedNoise``, ``core.cluster.merge_cycle``)
        self.merged_noise = MergedNoise(self.config.baseline)
        # this node's part of the recovery counts, per leaf, after each cycle: SIMs
        # failing at the previous cycle that sent data since (by their leaf now), and,
        # on a cluster node, its churners' ``ChurnPart`` by leaf (``core.merge``)
        self.leaf_recovered = np.zeros(0)
        self.leaf_churn: dict[int, ChurnPart] = {}
        self.rejected: Counter[str] = Counter()
        self.first_record_at: float | None = None
        self.last_evaluation: Evaluation | None = None
        self.cycles = 0
        self._prev_states = _EMPTY_STATES  # per-SIM states of the previous cycle
        # recovery tracking: the SIMs seen failing in their group within the recovery
        # window and not back since, their last data times when last checked and when
        # they were last seen failing (``_count_recovered``)
        self._prev_failing: tuple[np.ndarray, np.ndarray, np.ndarray] = (
            np.zeros(0, np.int64),
            np.zeros(0, np.float64),
            np.zeros(0, np.float64),
        )
        # maintenance windows (config and API); the shell replaces the tuple on a change
        self.maintenance: tuple[Window, ...] = ()

    # ---- input ------------------------------------------------------------------------

    def load_inventory(self, rows: Iterable[InventoryRow]) -> int:
        return self.state.load_inventory(rows)

    def ingest_record(self, record: Record) -> bool:
        """Apply one decoded record; False for a duplicate delivery."""
        if self.first_record_at is None or record.ts < self.first_record_at:
            self.first_record_at = record.ts
        return self.ingestor.apply(record)

    def ingest_batch(self, records: RecordColumns) -> np.ndarray:
        """Apply decoded records in order, as ``ingest_record`` on each (issue 12);
        per record: applied (False: a duplicate delivery)."""
        if len(records):
            first = float(records.ts.min())
            if self.first_record_at is None or first < self.first_record_at:
                self.first_record_at = first
        return self.ingestor.apply_columns(records)

    def count_rejection(self, rejection: Rejection) -> None:
        self.rejected[str(rejection.reason)] += 1

    # ---- evaluation -------------------------------------------------------------------

    def warmed_up(self, now: float) -> bool:
        return (
            self.first_record_at is not None and now - self.first_record_at >= self.config.warmup_s
        )

    def evaluate(self, now: float) -> CycleResult:
        """One evaluation cycle at ``now`` (the records' clock or the wall clock)."""
        started = time.perf_counter()
        return self.finish_cycle(now, self.assess(now), started)

    def assess(self, now: float) -> Evaluation:
        """The heavy, read-only part of a cycle (per-SIM states, per-leaf counts,
        localization): it reads the state and changes nothing another reader sees, so
        the daemon runs it in a worker thread while ingest waits (issue 12);
        ``finish_cycle`` then updates incidents and baselines on the caller's thread."""
        cfg = self.config
        expected_ratio = self.baseline.expected_ratio(now, self.state.n_leaves)
        evaluation = evaluate(
            self.state,
            now,
            expected_ratio,
            params=cfg.evaluation,
            localize_params=cfg.localize,
            localize_groups=self.warmed_up(now),
            recovery_onset=self._recovery_onsets(now),
            kind_ratio=lambda n_leaves: self._kind_ratio(now, n_leaves),
            # each leaf's over-dispersion and history peak, as the baseline learned them
            dispersion=self.baseline.dispersion(self.state.n_leaves),
            peak_share=self.baseline.peak_share(self.state.n_leaves),
            heard_elsewhere=self.heard_elsewhere,
        )
        if evaluation.causes and evaluation.table is not None:
            # a silent cause named as wide as its exposed SIMs show
            exposure = leaf_exposure(self.state, evaluation, cfg.evaluation)
            evaluation.causes = widen_silent(
                evaluation.causes, evaluation.table, exposure, cfg.localize
            )
        if not self.groups_local:  # a cluster node: its part of what the fleet heard
            evaluation.heard = groups_heard(self.state)
        return evaluation

    def kind_ratio(self, now: float, n_leaves: int) -> np.ndarray:
        """Per kind of evidence and leaf, its learned usual share at ``now``."""
        return self._kind_ratio(now, n_leaves)

    def _kind_ratio(self, now: float, n_leaves: int) -> np.ndarray:
        """Per kind of evidence and leaf, its learned usual share at ``now``."""
        return np.stack([b.expected_ratio(now, n_leaves) for b in self.evidence_baselines])

    def _recovery_onsets(self, now: float) -> np.ndarray | None:
        """Per leaf, the latest recovery onset of a group incident holding it (NaN:
        none), open or resolved within ``recovery_hold_s``: a SIM silent since before
        the fault's end keeps waiting for its report after the incident resolved (else it
        would page again); None while there is none."""
        hold = now - self.config.evaluation.recovery_hold_s
        onsets: list[tuple[Mapping[str, str], float]] = [
            (incident.dims, incident.recovery_onset)
            for incident in (*self.incidents.open.values(), *self.incidents.resolved)
            if incident.kind == "group"
            and incident.recovery_onset is not None
            and incident.recovery_onset > hold
        ]
        onsets += [
            (group.dims, group.recovery_onset)
            for group in self.leader_groups
            if group.recovery_onset is not None and group.recovery_onset > hold
        ]
        if not onsets:
            return None
        out = np.full(self.state.n_leaves, np.nan)
        for dims, onset in onsets:
            mask = leaf_mask(self.state, dims)
            out[mask] = np.fmax(out[mask], onset)
        return out

    def _count_recovered(self, now: float, evaluation: Evaluation) -> np.ndarray:
        """Per leaf, the SIMs seen failing within ``recovery_window_s`` (at an earlier
        cycle) that sent data since, in the leaf they are in now (data through a partner
        it moved to is no recovery of the one it left); each counts once, and this
        cycle's failing SIMs are remembered for the next cycles.

        Not the previous cycle's failing SIMs alone: a dark group (``dark_rows``) stops
        failing as a whole the moment its first SIM is heard again, and the rest re-attach
        over the next minutes. Counting only the first of them, a country outage at
        50,000 SIMs resolved without a recovery onset, and its SIMs whose usage the outage
        lost paged again an hour later, overdue by a rhythm the outage had broken."""
        failing = evaluation.counted & (
            evaluation.overdue | evaluation.awaiting | (evaluation.evidence != 0)
        )
        prev_rows, prev_last, prev_seen = self._prev_failing
        last = self.state.rhythm.last_data
        # data since: the last data time moved (a windowed record's time is its window's
        # end, older than the cycle it arrives in)
        now_last = last[prev_rows]
        back = (now_last > prev_last) | (np.isnan(prev_last) & ~np.isnan(now_last))
        # ... sent after the network last dropped or refused the SIM (``sent_after``: its
        # window began after it): the window that closed as a fault began arrives minutes
        # into it, and dated a 3-hour APN outage's recovery at its second minute (50,000
        # SIMs, R2); so did one that began before the refusal and closed after it
        back &= sent_after(self.state, prev_rows, last_refusal(self.state, prev_rows))
        # or back on the network (``back_on_network``) with a session started since the
        # last cycle, while not churning: a windowed or session-level SIM's data shows
        # its recovery only a window or a session later
        churning = (evaluation.evidence[: evaluation.n] & Evidence.CHURN) != 0
        started = self.state.cols.session_start[prev_rows] > rel(now - self.config.eval_interval_s)
        back |= started & back_on_network(self.state, prev_rows) & ~churning[prev_rows]
        member = self.state.cols.leaf[prev_rows[back]]
        member = member[member >= 0]
        # still tracked: not back, seen failing within the window, and not failing now
        # (those are tracked anew, with this cycle's time)
        rows = np.flatnonzero(failing)
        keep = ~back & (prev_seen > now - self.config.evaluation.recovery_window_s)
        keep &= ~failing[prev_rows]
        kept = prev_rows[keep]
        self._prev_failing = (
            np.concatenate([rows, kept]),
            np.concatenate([last[rows], now_last[keep]]),
            np.concatenate([np.full(len(rows), now), prev_seen[keep]]),
        )
        return np.bincount(member, minlength=self.state.n_leaves).astype(np.float64)

    def _track_recovery(self, now: float, evaluation: Evaluation) -> None:
        """Count, per open group incident, its SIMs that were failing at the previous
        cycle and sent data since (or are back on the network), in the group (not
        through a partner it moved to); set the incident's ``recovery_onset`` once enough
        did within ``recovery_window_s`` (``EvalParams``, ``core.recovery``). A cluster
        node only keeps its counts per leaf for its report: the leader sets the onsets
        (``apply_merge``)."""
        p = self.config.evaluation
        recovered = self._count_recovered(now, evaluation)
        self.leaf_recovered = recovered
        churning = (evaluation.evidence[: evaluation.n] & Evidence.CHURN) != 0
        if not self.groups_local:
            rows = np.flatnonzero(churning)
            leaf = evaluation.member_leaf[rows]
            rows, leaf = rows[leaf >= 0], leaf[leaf >= 0]
            self.leaf_churn = churn_parts(self.state, rows, leaf, now, p) if rows.size else {}
            return
        groups = [i for i in self.incidents.open.values() if i.kind == "group"]
        if not groups:
            return
        any_churning = bool(churning.any())
        for incident in groups:
            leaves = leaf_mask(self.state, incident.dims)

            def stop_at(leaves: np.ndarray = leaves) -> float:
                # session-level SIMs show a black hole's end only as their churn stopping
                mine = np.flatnonzero(churning & evaluation.members(leaves))
                return churn_stopped(self.state, mine, now, p) if mine.size else math.nan

            advance_recovery(
                incident,
                now,
                float(recovered[leaves].sum()),
                stop_at if any_churning else None,
                params=p,
                interval_s=self.config.eval_interval_s,
            )

    def apply_merge(self, merged: Merged, causes: list[Cause] | None) -> None:
        """A cluster leader's merge of every shard's report (``core.cluster.merge_cycle``):
        the causes for the next cycle's group incidents, and, at once, the recovery of
        the open ones from the summed recovery counts (as ``_track_recovery`` on one
        node), so that the onsets reach the other nodes before their next cycle.

        A merge without a decision (``causes`` None: a node missing, stale, warming or an
        outlier) leaves the incidents and the last merged counts as they are; the SIMs
        the usable nodes saw come back still count toward the recovery
        (``core.merge.advance_recoveries``, ``churn=False``)."""
        if causes is not None:
            self.external_causes = causes
            self.external_merged = merged
        advance_recoveries(
            self.incidents.open.values(),
            merged,
            self.config.evaluation,
            self.config.eval_interval_s,
            churn=causes is not None,
        )

    def finish_cycle(self, now: float, evaluation: Evaluation, started: float) -> CycleResult:
        """Incidents, tickets, baselines and state changes of ``assess(now)``'s result."""
        cfg = self.config
        state = self.state
        warm = self.warmed_up(now)

        def rest_healthy(parent: Mapping[str, str], children: Sequence[Mapping[str, str]]) -> Rest:
            whole = leaf_mask(state, parent)
            parts = [leaf_mask(state, child) for child in children]
            return rest_verdict(
                state, evaluation, whole, parts, cfg.localize, eval_params=cfg.evaluation
            )

        def within(narrow: Mapping[str, str], wide: Mapping[str, str]) -> bool:
            # by the leaves the fleet has: a partner's leaves all lie in its country
            inner = leaf_mask(state, narrow)
            return bool(inner.any()) and not bool((inner & ~leaf_mask(state, wide)).any())

        by_leaf: list[np.ndarray] = []

        def reported(dims: Mapping[str, str]) -> float:
            # of the group's failing SIMs, those the network reported failing
            if not by_leaf:
                by_leaf.append(reported_by_leaf(evaluation))
            counts = by_leaf[0]
            return float(counts[leaf_mask(state, dims)[: len(counts)]].sum())

        def excess(dims: Mapping[str, str]) -> float:
            # the group's failing SIMs beyond its expected count
            leaves = leaf_mask(state, dims)[: len(evaluation.leaf_total)]
            return float(
                evaluation.leaf_affected[leaves].sum() - evaluation.leaf_expected[leaves].sum()
            )

        merged = self.external_merged
        if self.groups_local:
            changes = self.incidents.update_groups(
                now, evaluation.causes, rest_healthy, within, reported, excess=excess
            )
        elif self.external_causes is not None:
            causes, self.external_causes = self.external_causes, None
            # how groups nest, from the merged leaf table: the whole fleet's leaves
            # and whether two siblings' parent is healthy besides, from the merged counts
            changes = self.incidents.update_groups(
                now,
                causes,
                None if merged is None or merged.exposure is None else self._merged_rest,
                None if merged is None else merged.within,
                None if merged is None or merged.exposure is None else merged.reported_in,
                excess=None if merged is None else merged.excess_in,
            )
        else:
            changes = []
        groups = [i for i in self.incidents.open.values() if i.kind == "group"]
        if groups:
            n_leaves = len(evaluation.leaf_total)
            usual = self._kind_ratio(now, n_leaves)
            for incident in groups:
                if not self.groups_local and merged is not None and merged.evidence is not None:
                    # a cluster leader: what every shard's SIMs show, summed
                    incident.note_evidence(merged.evidence_of(incident.dims))
                else:
                    incident.note_evidence(
                        evidence_summary(state, evaluation, incident.dims, usual)
                    )
        self._track_recovery(now, evaluation)
        # Tickets wait for the warm-up too: before a daytime-only device's second
        # morning its first night cannot be told from silence.
        alarms = self._sim_alarms(evaluation) if warm else []
        changes += self.incidents.update_sims(now, alarms)
        changes += self._mark_maintenance(now, evaluation, changes)
        frozen = np.zeros(state.n_leaves, bool)
        for incident in self.incidents.open.values():
            if incident.kind == "group":
                frozen |= leaf_mask(state, incident.dims)
        for group in self.leader_groups:
            if group.open:
                frozen |= leaf_mask(state, group.dims)
        self.baseline.update(
            now,
            cfg.eval_interval_s,
            affected=evaluation.leaf_affected,
            total=evaluation.leaf_total,
            expected=evaluation.leaf_expected,
            frozen=frozen,
        )
        for kind, baseline in zip(evaluation.leaf_kinds, self.evidence_baselines, strict=True):
            baseline.update(
                now,
                cfg.eval_interval_s,
                affected=kind,
                total=evaluation.leaf_total,
                expected=baseline.expected_ratio(now, len(kind)) * evaluation.leaf_total,
                frozen=frozen,
            )
        self.last_evaluation = evaluation
        self.cycles += 1
        state_changes = self._state_changes(evaluation.states)
        return CycleResult(evaluation, changes, time.perf_counter() - started, state_changes)

    def _merged_rest(
        self, parent: Mapping[str, str], children: Sequence[Mapping[str, str]]
    ) -> Rest:
        merged = self.external_merged
        if merged is None:
            return Rest.FAILING
        return merged.rest_verdict(parent, children, self.config.localize)

    def _mark_maintenance(
        self, now: float, evaluation: Evaluation, changes: Sequence[IncidentChange]
    ) -> list[IncidentChange]:
        """Mark each open incident with the maintenance windows under way whose scope
        holds it (``core.maintenance.in_scope``); a change of the marking is an
        ``updated`` change (a window ending while the fault goes on pages at once)."""
        active = active_windows(self.maintenance, now) if self.maintenance else []
        changed = {c.incident.id for c in changes}
        out: list[IncidentChange] = []
        for incident in self.incidents.open.values():
            before = {str(m.get("id")) for m in incident.maintenance}
            marks: list[dict[str, object]] = []
            if active:
                dims, members = self._scope_facts(incident, evaluation, active)
                for window, ends_at in active:
                    known = {d: v for d, v in members.items() if v}
                    needs = [d for d in window.scope if d not in dims]
                    if any(d not in known for d in needs) and window.id in before:
                        covered = True  # no failing SIM to look at this cycle: as before
                    else:
                        covered = window.covers(dims, known)
                    if covered:
                        marks.append({"id": window.id, "name": window.name, "ends_at": ends_at})
            incident.maintenance = marks
            if {str(m["id"]) for m in marks} != before and incident.id not in changed:
                out.append(IncidentChange("updated", incident, now))
        return out

    def _scope_facts(
        self, incident: Incident, evaluation: Evaluation, active: Sequence[tuple[Window, float]]
    ) -> tuple[dict[str, str], dict[str, frozenset[str]]]:
        """An incident's fixed dims and, for each scope dimension it does not fix, the
        values its failing SIMs have (a SIM ticket: the SIM's own values)."""
        state = self.state
        wanted = {d for window, _ in active for d in window.scope}
        if incident.kind == "sim":
            row = state.row(incident.iccid or "")
            if row < 0:
                return {}, {}
            dims = self.sim_dims(row)
            for dim in ("customer", "plan"):
                code = int(getattr(state.cols, dim)[row])
                if code:
                    dims[dim] = state.dim_values(dim)[code]
            return dims, {}
        dims = dict(incident.dims)
        open_dims = wanted - dims.keys()
        if not open_dims:
            return dims, {}
        n = evaluation.n
        member = evaluation.member_leaf[:n]
        inside = evaluation.counted & (member >= 0)
        inside[inside] = leaf_mask(state, dims)[member[inside]]
        failing = inside & (evaluation.overdue | (evaluation.evidence != 0))
        members: dict[str, frozenset[str]] = {}
        for dim in open_dims:
            column = _dim_column(state, dim)
            if column is None:
                continue
            codes = np.unique(column[:n][failing])
            values = state.dim_values(dim)
            members[dim] = frozenset(values[int(c)] for c in codes.tolist())
        return dims, members

    def _state_changes(self, states: np.ndarray) -> StateChanges:
        prev = self._prev_states
        if len(prev) < len(states):  # SIMs new since the last cycle come from never_seen
            prev = np.concatenate([prev, np.full(len(states) - len(prev), NEVER_SEEN, np.int8)])
        rows = np.flatnonzero(prev[: len(states)] != states)
        self._prev_states = states
        return StateChanges(rows, prev[rows], states[rows])

    def _sim_alarms(self, evaluation: Evaluation) -> list[SimAlarm]:
        return [
            SimAlarm(
                iccid=self.state.index.iccid(int(row)),
                reasons=reason_codes(evaluation, int(row)),
            )
            for row in vip_rows(self.state, evaluation)
        ]

    # ---- checkpoint -------------------------------------------------------------------

    def export_state(self) -> tuple[dict[str, np.ndarray], dict[str, object]]:
        """Everything evaluation needs to go on where it stopped, as copies: numpy arrays
        (per-SIM columns, index, rhythm, leaves, baseline, dedup memory, last states) and
        JSON-able metadata (value tables, incidents, counters). Synchronous and read-only;
        take it between two batches (``simwatch.service.checkpoint``)."""
        state_arrays, state_meta = self.state.export()
        arrays: dict[str, np.ndarray] = dict(state_arrays)
        ingest_arrays, ingest_meta = self.ingestor.export()
        arrays.update(ingest_arrays)
        base_arrays, base_meta = self.baseline.export()
        arrays.update({f"baseline.{k}": v for k, v in base_arrays.items()})
        for (_, name), baseline in zip(EVIDENCE_NAMES, self.evidence_baselines, strict=True):
            kind_arrays, _ = baseline.export()
            arrays.update({f"evidence_baseline.{name}.{k}": v for k, v in kind_arrays.items()})
        noise_arrays, noise_meta = self.merged_noise.export()
        arrays.update({f"merged_noise.{k}": v for k, v in noise_arrays.items()})
        arrays["engine.prev_states"] = self._prev_states.copy()
        arrays["engine.prev_failing_rows"] = self._prev_failing[0].copy()
        arrays["engine.prev_failing_last"] = self._prev_failing[1].copy()
        arrays["engine.prev_failing_seen"] = self._prev_failing[2].copy()
        meta: dict[str, object] = {
            "state": state_meta,
            "ingest": ingest_meta,
            "baseline": base_meta,
            "incidents": self.incidents.export(),
            "merged_noise": noise_meta,
            "rejected": dict(self.rejected),
            "first_record_at": self.first_record_at,
            "cycles": self.cycles,
        }
        return arrays, meta

    def restore_state(self, arrays: Mapping[str, np.ndarray], meta: Mapping[str, object]) -> None:
        """Load ``export_state()``'s output into this fresh engine. Raises ``ValueError``
        (or ``KeyError`` for a missing array) when the checkpoint does not fit the
        configuration (other dims) or is malformed; the engine is then unusable."""
        self.state.restore(arrays, _section(meta, "state"))
        self.ingestor.state = self.state
        self.ingestor.restore(arrays, _section(meta, "ingest"))
        self.baseline.restore(
            {k[len("baseline.") :]: v for k, v in arrays.items() if k.startswith("baseline.")},
            _section(meta, "baseline"),
        )
        # (checkpoints before the per-kind baselines have none: they learn anew)
        for (_, name), baseline in zip(EVIDENCE_NAMES, self.evidence_baselines, strict=True):
            prefix = f"evidence_baseline.{name}."
            kind_arrays = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
            if kind_arrays:
                baseline.restore(kind_arrays, {})
        self.incidents.restore(_section(meta, "incidents"))
        # (checkpoints before the leader learned the noise on the sums: it learns anew)
        if "merged_noise" in meta:
            prefix = "merged_noise."
            self.merged_noise.restore(
                {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)},
                _section(meta, "merged_noise"),
            )
        rejected = meta.get("rejected", {})
        if not isinstance(rejected, dict):
            raise TypeError("malformed rejection counts in checkpoint")
        self.rejected = Counter({str(k): int(v) for k, v in rejected.items()})
        first = meta.get("first_record_at")
        self.first_record_at = float(first) if isinstance(first, int | float) else None
        cycles = meta.get("cycles", 0)
        self.cycles = int(cycles) if isinstance(cycles, int) else 0
        prev = arrays["engine.prev_states"]
        if prev.dtype != np.int8 or prev.ndim != 1 or len(prev) > len(self.state):
            raise ValueError("malformed previous states in checkpoint")
        self._prev_states = prev.copy()
        # (checkpoints before recovery tracking have none: it starts over)
        rows = arrays.get("engine.prev_failing_rows", np.zeros(0, np.int64))
        last = arrays.get("engine.prev_failing_last", np.zeros(0, np.float64))
        # (checkpoints before the recovery window's memory: checked once, then dropped)
        seen = arrays.get("engine.prev_failing_seen", np.full(len(rows), -np.inf))
        shapes = {rows.shape, last.shape, seen.shape}
        if len(shapes) != 1 or rows.ndim != 1 or (len(rows) and rows.max() >= len(prev)):
            raise ValueError("malformed recovery tracking in checkpoint")
        self._prev_failing = (
            rows.astype(np.int64),
            last.astype(np.float64),
            seen.astype(np.float64),
        )
        self.last_evaluation = None

    # ---- queries ----------------------------------------------------------------------

    def sim_dims(self, row: int) -> dict[str, str]:
        state = self.state
        codes = state.dim_codes(row)
        return {
            dim: state.dim_values(dim)[code]
            for dim, code in zip(state.dims, codes, strict=True)
            if code
        }

    def incident_of(self, row: int) -> Incident | None:
        """The open group incident whose group contains the SIM, if any: this engine's,
        or in a cluster (``groups_local`` False) the leader's (``leader_groups``). A SIM
        that left its partner and counts where it left (``Evidence.MOVED``,
        ``evaluate.left_silent``: the last evaluation's ``member_leaf``) is part of the
        incident it counts in: its view and diagnosis name it, and its ticket's
        ``group_incident`` label lets the inhibit rule mute it under that page."""
        groups = [i for i in self.incidents.open.values() if i.kind == "group"]
        if not self.groups_local:
            groups += [g.incident for g in self.leader_groups if g.open and g.incident]
        if not groups:  # the usual case: no need for the SIM's dimensions
            return None
        evaluation = self.last_evaluation
        if evaluation is not None and row < evaluation.n:
            member = int(evaluation.member_leaf[row])
            if member >= 0 and member != int(self.state.cols.leaf[row]):
                for incident in groups:
                    if leaf_mask(self.state, incident.dims)[member]:
                        return incident
        dims = self.sim_dims(row)
        for incident in groups:
            if all(dims.get(k) == v for k, v in incident.dims.items()):
                return incident
        return None

    def partner_label(self, partner: str) -> str:
        """``26202 (Vodafone)``: names given in records win over the packaged table."""
        name = self.ingestor.partner_names.get(partner)
        if name is None and len(partner) >= 5:
            name = self.operators.operator(partner[:3], partner[3:])
        return f"{partner} ({name})" if name else partner

    def diagnose(
        self, iccid: str, now: float, *, row: int | None = None, incident: Incident | None = None
    ) -> list[Finding] | None:
        """Findings for one SIM (None for an unknown ICCID), against the last evaluation.
        A caller that already has the SIM's ``row`` and ``incident_of(row)`` passes them."""
        if row is None:
            row = self.state.row(iccid)
            if row < 0:
                return None
            incident = self.incident_of(row)
        evaluation = self.last_evaluation
        if evaluation is None or row >= evaluation.n:
            evaluation = evaluate(
                self.state,
                now,
                self.baseline.expected_ratio(now, self.state.n_leaves),
                params=self.config.evaluation,
                localize_params=self.config.localize,
                localize_groups=False,
            )
        code = int(self.state.cols.partner[row])
        partner = self.state.partners.values[code] if code else None
        return diagnose(
            self.state,
            row,
            evaluation,
            self.config.evaluation,
            incident=incident,
            partner_label=self.partner_label(partner) if partner else None,
        )


def _dim_column(state: FleetState, dim: str) -> np.ndarray | None:
    """The per-SIM code column of a dimension (None for a name the fleet does not have)."""
    cols = state.cols
    if dim in cols.extra:
        return cols.extra[dim]
    if dim in ("apn", "country", "partner", "rat", "customer", "plan"):
        column: np.ndarray = getattr(cols, dim)
        return column
    return None


def _section(meta: Mapping[str, object], name: str) -> Mapping[str, object]:
    section = meta.get(name)
    if not isinstance(section, dict):
        raise TypeError(f"checkpoint has no {name} section")
    return section
