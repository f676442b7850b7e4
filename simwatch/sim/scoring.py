"""Scoring a replay against a simulator's ground truth (``truth.json``).

Shared by the scored scenario tests and ``bench/scenarios.py``. For every group fault:
the page incident with exactly its dims, the detection delay (fault start → incident
opened) against a bound that respects the affected devices' own rhythm, and the
resolution delay (fault end → resolved). Any other page incident is a false page. Per-SIM
faults are checked through the SIMs' findings sampled mid-fault (see ``probe_times``).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from simwatch.core.engine import CycleResult, Engine
from simwatch.core.state import rel
from simwatch.core.timeutil import parse_rfc3339
from simwatch.shell.replay import replay_files
from simwatch.sim.scenarios import SCENARIOS, write_scenario

if TYPE_CHECKING:
    from pathlib import Path

    from simwatch.core.diagnosis import Finding
    from simwatch.core.incidents import Incident

DETECT_FLOOR_S = 45 * 60.0
DETECT_INTERVALS = 2.0  # ... or this many reporting intervals of the affected devices
RESOLVE_BOUND_S = 60 * 60.0

# The detection issue's targets, reported beside the bounds the suite asserts:
# a fault the network reports (failure ends, rejects, devices steering away) pages within
# 5 minutes; a silent one (black hole, no network left to report) within 2 of the
# affected devices' record intervals, and in the session-level regime from churn, which
# needs the churn window; every page resolves within 15 minutes of the fault's end.
NETWORK_REPORTED = frozenset({"partner_outage", "apn_outage", "apn_country", "apn_partner"})
TARGET_NETWORK_S = 5 * 60.0
TARGET_CHURN_S = 2 * 3600.0
TARGET_RESOLVE_S = 15 * 60.0
# What the records allow, printed beside the resolution: when this share of a fault's
# SIMs had sent data again after its end (no method can see the end earlier from data;
# a windowed feed delivers it after the window closes, a session-level one when the
# session does).
DATA_BACK_SHARE = 0.1
# ... and beside the detection of a fault the network reports: when this many of its SIMs
# had a session ended with a failure cause, a reject or a move to another partner since
# its start (a page resting on fewer is one no method could justify; the localization's
# ``min_affected``).
EVIDENCE_SIMS = 5

# The finding a per-SIM fault must produce for each of its SIMs.
FINDING_OF_FAULT = {
    "wrong_apn": "wrong_apn",
    "data_cap": "data_cap",
    "session_flapping": "session_churn",
}


@dataclass(slots=True)
class FaultScore:
    kind: str
    dims: dict[str, str]
    incident_id: str | None = None
    detect_s: float | None = None
    detect_bound_s: float = DETECT_FLOOR_S
    resolve_s: float | None = None
    missing_findings: list[str] = field(default_factory=list)
    target_s: float | None = None  # the detection issue's target for this fault
    # fault end -> the first cycle at which DATA_BACK_SHARE of its SIMs had sent data
    # sent after the end (None: not within the replay)
    data_back_s: float | None = None
    # fault start -> the first cycle at which EVIDENCE_SIMS of its SIMs had shown it in
    # the network's records (network-reported kinds only; None: never)
    evidence_s: float | None = None
    # fault end -> the matched incident's recovery onset (``recovered_at``: when its SIMs
    # were seen coming back; None: resolved without a recovery seen, or not resolved)
    recovery_seen_s: float | None = None
    # fault start -> when the matched page got the fault's exact dims: its opening, or
    # the later widening (``Incident.named_at``) of a page that opened on a part of the
    # group (None: runs of older sweeps did not keep it)
    named_s: float | None = None

    @property
    def meets_target(self) -> bool:
        """Paged with the fault's exact dims within the target (a page that opened on a
        part of the group counts from when it named the whole: ``named_s``), resolved
        within 15 min of the end (never before)."""
        if self.kind in FINDING_OF_FAULT:
            return not self.missing_findings
        named = self.detect_s if self.named_s is None else self.named_s
        return (
            self.detect_s is not None
            and named is not None
            and self.target_s is not None
            and 0 <= self.detect_s <= named <= self.target_s
            and self.resolve_s is not None
            and 0 <= self.resolve_s <= TARGET_RESOLVE_S
        )

    @property
    def ok(self) -> bool:
        if self.kind in FINDING_OF_FAULT:
            return not self.missing_findings
        return (
            self.incident_id is not None
            and self.detect_s is not None
            and 0 <= self.detect_s <= self.detect_bound_s
            and self.resolve_s is not None
            and self.resolve_s <= RESOLVE_BOUND_S
        )


@dataclass(slots=True)
class ScenarioScore:
    faults: list[FaultScore]
    false_pages: list[dict[str, Any]]

    @property
    def ok(self) -> bool:
        return not self.false_pages and all(f.ok for f in self.faults)


def _key(dims: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(dims.items()))


def probe_times(truth: dict[str, Any]) -> list[tuple[float, list[str]]]:
    """When to sample per-SIM findings: the middle of each per-SIM fault, with its SIMs."""
    probes = []
    for fault in truth["faults"]:
        if fault["kind"] in FINDING_OF_FAULT:
            start, end = parse_rfc3339(fault["start"]), parse_rfc3339(fault["end"])
            probes.append((start + (end - start) / 2, list(fault["iccids"])))
    return sorted(probes)


def due_probes(
    probes: list[tuple[float, list[str]]], engine: Engine, now: float
) -> list[tuple[str, list[Finding]]]:
    """The probes of ``probe_times`` due by ``now``, taken off the list: each of their SIMs
    with what the engine diagnoses of it now."""
    out: list[tuple[str, list[Finding]]] = []
    while probes and probes[0][0] <= now:
        out.extend((iccid, engine.diagnose(iccid, now) or []) for iccid in probes.pop(0)[1])
    return out


def typical_interval(engine: Engine, iccids: list[str], at: float) -> float:
    """Median learned reporting interval of the given SIMs (0 when none is learned)."""
    gaps = []
    for iccid in iccids:
        row = engine.state.row(iccid)
        if row >= 0:
            gap = engine.state.rhythm.describe(row, at).get("typical_gap_s")
            if isinstance(gap, float | int):
                gaps.append(float(gap))
    return statistics.median(gaps) if gaps else 0.0


def target_s(kind: str, regime: str, interval: float) -> float:
    """The detection issue's target delay for a fault of ``kind`` in a ``regime`` fleet,
    whose affected devices record every ``interval`` seconds (median)."""
    if kind in NETWORK_REPORTED:
        return TARGET_NETWORK_S
    if regime == "r3":
        return TARGET_CHURN_S
    return DETECT_INTERVALS * interval


def known_rows(engine: Engine, iccids: list[str]) -> np.ndarray:
    """The engine's rows of those of ``iccids`` it knows."""
    rows = np.array([engine.state.row(x) for x in iccids], np.int64)
    known: np.ndarray = rows[rows >= 0]
    return known


class DataBack:
    """Per group fault, the first cycle after its end at which ``DATA_BACK_SHARE`` of its
    SIMs had sent data after the end (their last data time past it): the earliest a
    watcher of the data could know the fault ended."""

    def __init__(self, truth: dict[str, Any]) -> None:
        self._faults = [
            (i, parse_rfc3339(f["end"]), list(f["iccids"]))
            for i, f in enumerate(truth["faults"])
            if f["group"] and f["iccids"]
        ]
        self.at: dict[int, float] = {}
        self._rows: dict[int, np.ndarray] = {}

    def observe(self, engine: Engine, now: float) -> None:
        for i, end, iccids in self._faults:
            if i in self.at or now <= end:
                continue
            if i not in self._rows:
                self._rows[i] = known_rows(engine, iccids)
            last = engine.state.rhythm.last_data[self._rows[i]]
            back = int((last > end).sum())
            if back and back >= DATA_BACK_SHARE * len(iccids):
                self.at[i] = now


class FirstEvidence:
    """Per fault the network reports, the first cycle at which ``EVIDENCE_SIMS`` of its
    SIMs had a failure end, a reject or a partner change recorded since its start: the
    earliest the records let anyone page on it."""

    def __init__(self, truth: dict[str, Any]) -> None:
        self._faults = [
            (i, parse_rfc3339(f["start"]), list(f["iccids"]))
            for i, f in enumerate(truth["faults"])
            if f["group"] and f["iccids"] and f["kind"] in NETWORK_REPORTED
        ]
        self.at: dict[int, float] = {}
        self._rows: dict[int, np.ndarray] = {}

    def observe(self, engine: Engine, now: float) -> None:
        c = engine.state.cols
        for i, start, iccids in self._faults:
            if i in self.at or now < start:
                continue
            if i not in self._rows:
                self._rows[i] = known_rows(engine, iccids)
            rows = self._rows[i]
            since = rel(start)
            shown = (c.fail_at[rows] >= since) | (c.reject_at[rows] >= since)
            shown |= c.moved_at[rows] >= since
            if int(shown.sum()) >= EVIDENCE_SIMS:
                self.at[i] = now


def score(
    engine: Engine,
    truth: dict[str, Any],
    findings: dict[str, set[str]],
    data_back: DataBack | None = None,
    evidence: FirstEvidence | None = None,
) -> ScenarioScore:
    """Compare the engine's incidents (after a full replay) with the ground truth."""
    pages: list[Incident] = [i for i in engine.incidents.all() if i.severity == "page"]
    by_key = {_key(i.dims): i for i in pages}
    matched: set[str] = set()
    faults = []
    for index, fault in enumerate(truth["faults"]):
        result = FaultScore(kind=fault["kind"], dims=dict(fault["dims"]))
        faults.append(result)
        if fault["kind"] in FINDING_OF_FAULT:
            want = FINDING_OF_FAULT[fault["kind"]]
            result.missing_findings = [
                i for i in fault["iccids"] if want not in findings.get(i, set())
            ]
            continue
        if not fault["group"]:
            continue
        start, end = parse_rfc3339(fault["start"]), parse_rfc3339(fault["end"])
        interval = typical_interval(engine, fault["iccids"], start)
        result.detect_bound_s = max(DETECT_FLOOR_S, DETECT_INTERVALS * interval)
        result.target_s = target_s(fault["kind"], truth["config"].get("regime", "r1"), interval)
        if data_back is not None and index in data_back.at:
            result.data_back_s = data_back.at[index] - end
        if evidence is not None and index in evidence.at:
            result.evidence_s = evidence.at[index] - start
        incident = by_key.get(_key(fault["dims"]))
        if incident is None:
            continue
        matched.add(incident.id)
        result.incident_id = incident.id
        result.detect_s = incident.opened_at - start
        named = incident.opened_at if incident.named_at is None else incident.named_at
        result.named_s = named - start
        if incident.resolved_at is not None:
            result.resolve_s = incident.resolved_at - end
            if incident.recovery_onset is not None:
                result.recovery_seen_s = incident.recovery_onset - end
    false_pages = [i.to_json() for i in pages if i.id not in matched]
    return ScenarioScore(faults=faults, false_pages=false_pages)


def run_scenario(
    name: str,
    seed: int,
    out: Path,
    *,
    wall_now: float | None = None,
    regime: str | None = None,
    sims: int | None = None,
) -> tuple[ScenarioScore, dict[str, Any]]:
    """Simulate a named scenario into ``out``, replay it with mid-fault probes, score it.

    ``regime`` and ``sims`` override the preset's data regime and fleet size."""
    config = SCENARIOS[name](seed)
    if regime is not None:
        config = replace(config, regime=regime)
    if sims is not None:
        config = replace(config, sims=sims)
    paths = write_scenario(config, out)
    truth = orjson.loads(paths["truth"].read_bytes())
    engine = Engine()
    probes = probe_times(truth)
    findings: dict[str, set[str]] = {}
    data_back = DataBack(truth)
    evidence = FirstEvidence(truth)

    def on_cycle(result: CycleResult) -> None:
        now = result.evaluation.now
        data_back.observe(engine, now)
        evidence.observe(engine, now)
        for iccid, found in due_probes(probes, engine, now):
            findings.setdefault(iccid, set()).update(f.code for f in found)

    replay_files(
        paths["inventory"], paths["records"], wall_now=wall_now, on_cycle=on_cycle, engine=engine
    )
    return score(engine, truth, findings, data_back, evidence), truth
