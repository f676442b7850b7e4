"""Incident lifecycle: open -> updated -> resolved, with hysteresis and stable ids.

Group incidents come from localization causes; SIM incidents (severity ``ticket``) from
single SIMs that matter (tagged ``vip``) going silent. A candidate must be seen in
``open_after`` consecutive evaluation cycles before it opens (one noisy cycle never
pages), and an open incident resolves after ``close_after`` consecutive cycles without
it, or ``close_after_recovering`` once its SIMs are seen coming back (its
``recovery_onset``: data again, or the churn stopped). Ids are sequential (``inc-0001``)
and never reused; the counter is part of the state that is checkpointed, so a restart
keeps them.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Final, Literal

from simwatch.core.evaluate import NAMED_EVIDENCE
from simwatch.core.localize import dims_within
from simwatch.core.timeutil import format_rfc3339

if TYPE_CHECKING:
    from collections.abc import Iterable

    from simwatch.core.localize import Cause

ChangeKind = Literal["opened", "updated", "resolved"]
_HOLD: Final = (("", ""),)  # _merge_sibling's "not yet": a key no group has


class Rest(enum.Enum):
    """What the part of a parent group outside two sibling causes shows (``core.exposure``)."""

    FAILING = "failing"  # it fails like them: one fault of the parent
    HEALTHY = "healthy"  # healthy, seen by the network's own evidence: two faults, at once
    QUIET = "quiet"  # healthy as far as it could show a silent fault (or too small to tell)
    UNKNOWN = "unknown"  # too few of its SIMs could have shown a silent fault yet


# (parent dims, children dims) -> what the parent's part outside the children shows
RestHealthy = Callable[[Mapping[str, str], Sequence[Mapping[str, str]]], Rest]
# within(narrow, wide): whether group ``narrow`` lies inside group ``wide`` (see update_groups)
Within = Callable[[Mapping[str, str], Mapping[str, str]], bool]


@dataclass(frozen=True, slots=True)
class IncidentParams:
    open_after: int = 2  # consecutive cycles a cause must be seen before it opens
    # ... except a cause at least this many of whose failing SIMs, and at least half,
    # the network reported failing (failure ends, rejects, moves away: ``reported`` in
    # ``update_groups``); it opens at its first sighting. That evidence stays until each
    # SIM is heard from again, so a second cycle would only see it again: no noisy
    # cycle to wait out, one minute lost. 0: off.
    open_on_reported: int = 5
    close_after: int = 5  # consecutive cycles without it before it resolves
    # ... once its recovery is seen (``Incident.recovery_onset``): the cause is gone
    # because the SIMs came back, not because of one quiet cycle
    close_after_recovering: int = 2
    # ... but not while its group still fails as when it was last named: failing SIMs
    # beyond the usual count at least this share of the incident's, and none seen coming
    # back. Localization can lose a fault it named for a few cycles (the hour of day
    # turns, the usual share of late SIMs rises, 8 silent SIMs of 75 are no longer
    # significant); resolving then pages again minutes later. 0: off
    hold_while_failing: float = 0.8
    update_change: float = 0.2  # relative change of `affected` that counts as an update
    sibling_window_s: float = 3600.0  # a sibling group failing this soon after: same fault
    # ... unless the parent's other children are healthy: then the sibling waits this long
    # (a fault shows first where the fastest reporters are: the parent may still follow)
    # before it opens as an incident of its own
    sibling_hold_s: float = 1800.0
    # ... and up to this long while too few of the parent's other SIMs could have shown
    # a silent fault yet (slow reporters: ``core.exposure``)
    sibling_hold_max_s: float = 7200.0
    keep_resolved: int = 1000  # resolved incidents kept in memory for the API


@dataclass(slots=True)
class Incident:
    id: str
    kind: Literal["group", "sim"]
    dims: dict[str, str]
    severity: Literal["page", "ticket"]
    opened_at: float
    updated_at: float
    affected: float
    total: float
    expected: float
    score: float
    resolved_at: float | None = None
    iccid: str | None = None
    peak_affected: float = 0.0
    # ``total`` at the cycle of ``peak_affected``: a group's total changes while it is
    # open (a partner's devices leave for a sibling), and the peak against the total at
    # the end read "172 of 133"
    peak_total: float = 0.0
    reasons: list[str] = field(default_factory=list)
    missing_cycles: int = 0
    reported_affected: float = 0.0  # `affected` at the last opened/updated change
    # what the failing count rests on, per kind (``overdue``, ``failure_end``, ``reject``,
    # ``churn``, ``moved``), with the leading causes: see ``evidence_summary``
    evidence: dict[str, object] = field(default_factory=dict)
    # ``evidence`` at the cycle the most SIMs failed (``note_evidence``): what a resolved
    # incident rested on, where its last ``evidence`` is the few SIMs left at its end
    peak_evidence: dict[str, object] = field(default_factory=dict)
    # the maintenance windows covering it at the last evaluation: {"id", "name", "ends_at"
    # (epoch seconds, the end of the window's current occurrence)}; see core.maintenance
    maintenance: list[dict[str, object]] = field(default_factory=list)
    # group incidents: when SIMs of its group began to send data again (the engine's
    # recovery tracking, ``EvalParams.recovery_*``), and the recent recoveries counted
    # toward it as [cycle time, SIMs] pairs
    recovery_onset: float | None = None
    recoveries: list[list[float]] = field(default_factory=list)
    recovery_peak: float = 0.0  # ``peak_affected`` when the onset was set
    # group incidents: when it was last given other dims (``_rekey``: a fault's known
    # extent grew, or a provisional name settled); None: its dims are those it opened on
    named_at: float | None = None

    @property
    def state(self) -> str:
        return "open" if self.resolved_at is None else "resolved"

    @property
    def ratio(self) -> float:
        return self.affected / self.total if self.total else 0.0

    @property
    def baseline_ratio(self) -> float:
        return self.expected / self.total if self.total else 0.0

    @property
    def key(self) -> tuple[tuple[str, str], ...]:
        return tuple(sorted(self.dims.items()))

    def to_json(self) -> dict[str, object]:
        """The FORMATS.md incident object (plus optional extension fields)."""
        out: dict[str, object] = {
            "id": self.id,
            "dims": dict(self.dims),
            "state": self.state,
            "severity": self.severity,
            "opened_at": format_rfc3339(self.opened_at),
            "resolved_at": None if self.resolved_at is None else format_rfc3339(self.resolved_at),
            "affected": round(self.affected),
            "total": round(self.total),
            "ratio": round(self.ratio, 4),
            "baseline_ratio": round(self.baseline_ratio, 4),
            "score": round(self.score, 1),
            "kind": self.kind,
            "updated_at": format_rfc3339(self.updated_at),
            "peak_affected": round(self.peak_affected),
            "peak_total": round(self.peak_total),
        }
        if self.iccid is not None:
            out["iccid"] = self.iccid
            out["reasons"] = list(self.reasons)
        if self.evidence:
            out["evidence"] = dict(self.evidence)
        if self.peak_evidence:
            out["peak_evidence"] = dict(self.peak_evidence)
        if self.named_at is not None:
            out["named_at"] = format_rfc3339(self.named_at)
        if self.recovery_onset is not None:
            # open: the SIMs are coming back; resolved: when they were seen to (before
            # the resolution, which waited to be sure)
            key = "recovering_since" if self.resolved_at is None else "recovered_at"
            out[key] = format_rfc3339(self.recovery_onset)
        out["maintenance"] = bool(self.maintenance)
        out["maintenance_windows"] = [
            {
                "id": mark.get("id"),
                "name": mark.get("name"),
                "ends_at": _time_or_none(mark.get("ends_at")),
            }
            for mark in self.maintenance
        ]
        return out

    def evidence_text(self) -> str:
        """The evidence as one sentence ("41 of 101 SIMs failing: 30 had sessions ended
        by the network (network_failure), 11 left for another partner"), or ``""``; an
        open incident whose recovery began says so ("...; recovering since ..."); a
        resolved one says what it rested on at its worst (``peak_evidence``), not the
        few SIMs left at its end."""
        if self.resolved_at is not None:
            # (an incident from a checkpoint before the field has none: its last)
            return evidence_text(self.peak_evidence or self.evidence, self.total)
        return evidence_text(self.evidence, self.total, recovering_since=self.recovery_onset)

    def note_evidence(self, evidence: dict[str, object]) -> None:
        """This cycle's evidence; kept as ``peak_evidence`` too when no earlier cycle had
        more SIMs failing."""
        self.evidence = evidence
        failing = evidence.get("failing")
        peak = self.peak_evidence.get("failing")
        if isinstance(failing, int | float) and (
            not isinstance(peak, int | float) or failing >= peak
        ):
            self.peak_evidence = evidence

    def headline(self) -> str:
        """The group, affected of total and the evidence, for a log line:
        ``partner=26202 affected 41/101; 41 of 101 SIMs failing: 30 had sessions ...``;
        a resolved incident's evidence is its worst, and says so (its affected count is
        the few SIMs left at its end)."""
        evidence = self.evidence_text()
        if evidence and self.resolved_at is not None:
            evidence = f"at its worst {evidence}"
        return f"{dims_text(self.dims)} affected {round(self.affected)}/{round(self.total)}" + (
            f"; {evidence}" if evidence else ""
        )


def dims_text(dims: Mapping[str, str]) -> str:
    """A group as ``apn=meters.acme, partner=26202``; ``fleet-wide`` without dimensions."""
    return ", ".join(f"{dim}={value}" for dim, value in dims.items()) or "fleet-wide"


# per kind: its phrase, and how the value ``NAMED_EVIDENCE`` names for it is said
_EVIDENCE_PHRASES: Final = (
    ("overdue", "overdue by their own rhythm", ""),
    ("failure_end", "had sessions ended by the network", " ({})"),
    ("reject", "were refused", " ({})"),
    ("churn", "re-opened sessions again and again", ""),
    ("moved", "left for another partner", " (most to {})"),
    (
        "dark",
        "sent nothing while no device of their group sent anything for far longer than usual",
        "",
    ),
)


def evidence_text(
    evidence: Mapping[str, object], total: float, *, recovering_since: float | None = None
) -> str:
    """One sentence from an ``evidence`` mapping (see ``Incident.evidence``). With
    ``recovering_since`` (an open incident's recovery onset) it also says that the group's
    SIMs are coming back and how many are awaited: between the fault's end and the
    incident's resolution the failing count falls to a few or none, and without it the
    page would read as a fault that lost its evidence."""
    failing = evidence.get("failing")
    if not isinstance(failing, int | float) or failing <= 0:
        failing = 0
    recovery = ""
    if recovering_since is not None:
        awaiting = evidence.get("awaiting")
        recovery = f"recovering since {format_rfc3339(recovering_since)}" + (
            f", {round(awaiting)} SIMs awaited (quiet since before then, not due yet)"
            if isinstance(awaiting, int | float) and awaiting > 0
            else ""
        )
    if not failing:
        return f"{recovery}; none failing" if recovery else ""
    parts = []
    usual = evidence.get("usual")
    for key, phrase, said in _EVIDENCE_PHRASES:
        count = evidence.get(key)
        if not isinstance(count, int | float) or count <= 0:
            continue
        named = evidence.get(NAMED_EVIDENCE[key]) if key in NAMED_EVIDENCE else None
        normal = usual.get(key) if isinstance(usual, Mapping) else None
        parts.append(
            f"{round(count)} {phrase}"
            + (said.format(named) if isinstance(named, str) else "")
            + (f" (usually {normal:g})" if isinstance(normal, int | float) else "")
        )
    text = f"{round(failing)} of {round(total)} SIMs failing: " + ", ".join(parts)
    return f"{text}; {recovery}" if recovery else text


def _time_or_none(value: object) -> str | None:
    return format_rfc3339(value) if isinstance(value, int | float) else None


def _json_number(value: float) -> float | str:
    """A float JSON can carry: non-finite values as their name ("inf", "nan")."""
    return value if math.isfinite(value) else str(value)


def _number(value: object) -> float:
    if isinstance(value, int | float | str):
        return float(value)
    raise ValueError(f"not a number: {value!r}")


def incident_state(incident: Incident) -> dict[str, object]:
    """Every field of an incident, JSON-able (for a checkpoint; not the API shape)."""
    out: dict[str, object] = {}
    for f in fields(Incident):
        value = getattr(incident, f.name)
        if isinstance(value, float):
            value = _json_number(value)
        elif isinstance(value, dict):
            value = value.copy()
        elif isinstance(value, list):
            value = [v.copy() if isinstance(v, dict | list) else v for v in value]
        out[f.name] = value
    return out


def incident_from_state(data: Mapping[str, object]) -> Incident:
    """The incident ``incident_state`` described; ``ValueError`` when malformed."""
    try:
        dims = _mapping(data["dims"])
        reasons = _list(data.get("reasons", []))
        kind = data["kind"]
        severity = data["severity"]
        _check_kind(kind, severity)
        resolved = data.get("resolved_at")
        iccid = data.get("iccid")
        onset = data.get("recovery_onset")
        return Incident(
            id=str(data["id"]),
            kind="group" if kind == "group" else "sim",
            dims={str(k): str(v) for k, v in dims.items()},
            severity="page" if severity == "page" else "ticket",
            opened_at=_number(data["opened_at"]),
            updated_at=_number(data["updated_at"]),
            affected=_number(data["affected"]),
            total=_number(data["total"]),
            expected=_number(data["expected"]),
            score=_number(data["score"]),
            resolved_at=None if resolved is None else _number(resolved),
            iccid=None if iccid is None else str(iccid),
            peak_affected=_number(data.get("peak_affected", 0.0)),
            # a checkpoint from before the field: the total then (the best it knew)
            peak_total=_number(data.get("peak_total", data["total"])),
            reasons=[str(r) for r in reasons],
            missing_cycles=int(_number(data.get("missing_cycles", 0))),
            reported_affected=_number(data.get("reported_affected", 0.0)),
            evidence=dict(_mapping(data.get("evidence", {}))),
            peak_evidence=dict(_mapping(data.get("peak_evidence", {}))),
            maintenance=[dict(_mapping(m)) for m in _list(data.get("maintenance", []))],
            recovery_onset=None if onset is None else _number(onset),
            recoveries=[
                [_number(at), _number(count)] for at, count in _pairs(data.get("recoveries", []))
            ],
            # a checkpoint from before the field: the peak so far, so that a restored
            # onset is not voided by the first cycle
            recovery_peak=_number(data.get("recovery_peak", data.get("peak_affected", 0.0))),
            named_at=None if data.get("named_at") is None else _number(data["named_at"]),
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"malformed incident in checkpoint: {exc}") from exc


@dataclass(frozen=True, slots=True)
class IncidentChange:
    kind: ChangeKind
    incident: Incident
    at: float


@dataclass(frozen=True, slots=True)
class SimAlarm:
    """A single SIM that matters and is silent now."""

    iccid: str
    reasons: tuple[str, ...]


Key = tuple[tuple[str, str], ...]


class IncidentTracker:
    def __init__(self, params: IncidentParams | None = None, *, next_id: int = 1) -> None:
        self.params = params or IncidentParams()
        self.next_id = next_id
        self.open: dict[Key, Incident] = {}
        self.resolved: list[Incident] = []
        # candidate key -> consecutive cycles seen, for group causes and SIM alarms
        self._pending_groups: dict[Key, int] = {}
        self._pending_sims: dict[Key, int] = {}
        self._rest_healthy: RestHealthy | None = None  # this cycle's, see update_groups
        self._within: Within = dims_within  # this cycle's, see update_groups
        self._excess: Callable[[Mapping[str, str]], float] | None = None  # this cycle's
        self._held: dict[Key, float] = {}  # sibling causes held back: since when
        # opened at their first sighting (``open_on_reported``) in the last cycle
        self._provisional: set[Key] = set()

    def export(self) -> dict[str, object]:
        """The whole tracker, JSON-able: open incidents with their keys, the resolved ones
        kept, the pending (not yet confirmed) candidates and the id counter."""
        return {
            "next_id": self.next_id,
            "open": [[list(map(list, k)), incident_state(i)] for k, i in self.open.items()],
            "resolved": [incident_state(i) for i in self.resolved],
            "pending_groups": [[list(map(list, k)), n] for k, n in self._pending_groups.items()],
            "pending_sims": [[list(map(list, k)), n] for k, n in self._pending_sims.items()],
        }

    def restore(self, data: Mapping[str, object]) -> None:
        """Load ``export()``'s output; ``ValueError`` when malformed."""
        try:
            next_id = int(_number(data["next_id"]))
            opened = {
                _key(key): incident_from_state(_mapping(state))
                for key, state in _pairs(data.get("open", []))
            }
            resolved = [
                incident_from_state(_mapping(state)) for state in _list(data.get("resolved", []))
            ]
            groups = {_key(k): int(_number(n)) for k, n in _pairs(data.get("pending_groups", []))}
            sims = {_key(k): int(_number(n)) for k, n in _pairs(data.get("pending_sims", []))}
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed incident tracker in checkpoint: {exc}") from exc
        self.next_id = next_id
        self.open = opened
        self.resolved = resolved
        self._pending_groups = groups
        self._pending_sims = sims

    # ---- a cluster's group incidents: kept by its leader, carried over on fail-over ----

    def export_groups(self) -> dict[str, object]:
        """The group half of ``export()`` (open and resolved group incidents, pending
        group candidates, the id counter): what a cluster leader shares so that the next
        leader continues the same incidents and ids (``adopt_groups``)."""
        resolved = [incident_state(i) for i in self.resolved if i.kind == "group"]
        return {
            "next_id": self.next_id,
            "open": [
                [list(map(list, k)), incident_state(i)]
                for k, i in self.open.items()
                if i.kind == "group"
            ],
            "resolved": resolved[-self.params.keep_resolved :],
            "pending_groups": [[list(map(list, k)), n] for k, n in self._pending_groups.items()],
        }

    def adopt_groups(self, data: Mapping[str, object]) -> None:
        """Replace this tracker's group incidents by ``export_groups()``'s (SIM incidents
        stay); the id counter becomes the larger of both, so no id is given twice.
        ``ValueError`` when malformed."""
        other = IncidentTracker(self.params)
        other.restore({"pending_sims": [], **data})
        self.drop_groups()
        self.open.update(other.open)
        self.resolved = sorted([*self.resolved, *other.resolved], key=lambda i: i.id)
        self._pending_groups = dict(other._pending_groups)
        self.next_id = max(self.next_id, other.next_id)

    def drop_groups(self) -> None:
        """Forget every group incident and candidate without resolving them (a node that
        is no longer the cluster's leader: the new leader carries them on)."""
        self.open = {k: i for k, i in self.open.items() if i.kind != "group"}
        self.resolved = [i for i in self.resolved if i.kind != "group"]
        self._pending_groups = {}
        self._held = {}
        self._provisional = set()

    def all(self) -> list[Incident]:
        """Every incident known, oldest first."""
        return sorted([*self.resolved, *self.open.values()], key=lambda i: i.id)

    def get(self, incident_id: str) -> Incident | None:
        for incident in self.all():
            if incident.id == incident_id:
                return incident
        return None

    def _new_id(self) -> str:
        incident_id = f"inc-{self.next_id:04d}"
        self.next_id += 1
        return incident_id

    def update_groups(
        self,
        now: float,
        causes: Iterable[Cause],
        rest_healthy: RestHealthy | None = None,
        within: Within | None = None,
        reported: Callable[[Mapping[str, str]], float] | None = None,
        *,
        excess: Callable[[Mapping[str, str]], float] | None = None,
    ) -> list[IncidentChange]:
        """Feed one cycle's localization result; returns what changed.

        ``rest_healthy(parent, children)``: whether the part of group ``parent`` outside
        the groups ``children`` is healthy this cycle; given, two sibling causes are never
        widened to their parent over its healthy rest (see ``_merge_sibling``).

        ``within(narrow, wide)``: whether every SIM of group ``narrow`` lies in group
        ``wide``. Without it, only by the dims (``{apn, partner}`` lies in ``{partner}``);
        the engine also knows the fleet's nesting: a partner's SIMs are all in its
        country, so ``{apn, partner=20801}`` lies in ``{apn, country=FR}``. An open
        incident inside a new cause's group is widened to it (``_rescope``), and a cause
        inside an open incident's group is covered by it (``_open_ancestor``).

        ``reported(dims)``: of the group's failing SIMs, those the network reported
        failing; a cause mostly so reported opens at once
        (``IncidentParams.open_on_reported``).

        ``excess(dims)``: the group's failing SIMs beyond its expected count this cycle;
        an open incident whose cause is not named stays open while it holds
        (``IncidentParams.hold_while_failing``).
        """
        self._rest_healthy = rest_healthy
        self._within = within or dims_within
        self._excess = excess
        seen: dict[Key, Cause] = {tuple(sorted(c.dims.items())): c for c in causes}
        changes: list[IncidentChange] = []
        self._settle_provisional(seen, now, changes)
        self._drop_explained_by_inner(seen)
        for key in sorted(seen, key=len):  # widest groups first: they cover their parts
            cause = seen[key]
            incident = self.open.get(key)
            rescoped = False
            if incident is None and self._tail_of_recovering(key):
                del seen[key]  # the last failing SIMs of faults on their way back
                continue
            if incident is None:
                inner = self._explained_inner(key)
                if inner is not None:  # the fault did not spread: it is that incident's
                    seen.setdefault(inner, cause)
                    del seen[key]
                    continue
                incident = self._rescope(key, now, changes)
                rescoped = incident is not None
            if incident is not None:
                self._refresh(incident, now, cause.affected, cause.total, cause.expected)
                incident.score = max(incident.score, cause.score)
                if rescoped:
                    incident.reported_affected = incident.affected
                elif self._is_update(incident):
                    changes.append(IncidentChange("updated", incident, now))
                continue
            parent = self._open_ancestor(key)
            if parent is None and self._explained_by_open(key):
                del seen[key]  # its failing SIMs are those of open incidents
                continue
            if parent is None:
                parent = self._merge_sibling(key, now, changes)
                if parent is _HOLD:
                    continue  # a sibling of an open incident over a healthy parent: wait
            if parent is not None:
                # A part of an open incident's group: the open incident covers it.
                seen[parent] = seen.get(parent, cause)
                del seen[key]
                continue
            at_once = self._reported(cause, reported)
            if at_once and self._pending_groups.get(key, 0) + 1 < self.params.open_after:
                self._provisional.add(key)
            if self._confirmed(self._pending_groups, key, at_once):
                if self._take_first_sighting(key, cause, seen, now, changes):
                    continue
                incident = Incident(
                    id=self._new_id(),
                    kind="group",
                    dims=dict(cause.dims),
                    severity="page",
                    opened_at=now,
                    updated_at=now,
                    affected=cause.affected,
                    total=cause.total,
                    expected=cause.expected,
                    score=cause.score,
                    peak_affected=cause.affected,
                    peak_total=cause.total,
                    reported_affected=cause.affected,
                )
                self.open[key] = incident
                changes.append(IncidentChange("opened", incident, now))
        self._held = {k: t for k, t in self._held.items() if k in seen}
        self._forget_unseen(self._pending_groups, seen.keys())
        changes.extend(self._age_missing(now, seen.keys(), kind="group", excess=excess))
        return changes

    def _open_inside(self, key: Key) -> list[tuple[Key, Incident]]:
        """The open group incidents whose groups lie inside group ``key``."""
        return [
            (old_key, incident)
            for old_key, incident in self.open.items()
            if incident.kind == "group" and self._inside(old_key, key)
        ]

    def _rest_clear(self, parent: Mapping[str, str], children: Sequence[Mapping[str, str]]) -> bool:
        """Whether the part of ``parent`` outside ``children`` is healthy this cycle
        (``rest_healthy``: ``Rest.HEALTHY`` or ``Rest.QUIET``); False without a verdict."""
        if self._rest_healthy is None or not children:
            return False
        return self._rest_healthy(parent, children) in (Rest.HEALTHY, Rest.QUIET)

    def _settle_provisional(
        self, seen: Mapping[Key, Cause], now: float, changes: list[IncidentChange]
    ) -> None:
        """An incident opened at its first sighting (``open_on_reported``) takes its
        extent from the next cycle, the one that would have confirmed it: when its own
        cause is gone and causes inside its group are seen, a few unrelated failing SIMs
        beside the fault had widened the first sighting (``{country: DE}`` for a
        partner's outage, with 8 of its SIMs and 3 other German ones failing). It
        narrows to the strongest of them (same id, one page); were that too narrow, the
        wider cause widens it again (``_rescope``)."""
        provisional, self._provisional = self._provisional, set()
        for key in provisional:
            incident = self.open.get(key)
            if incident is None or incident.kind != "group" or key in seen:
                continue
            inner = [k for k in seen if k not in self.open and self._inside(k, key)]
            if not inner:
                continue
            best = max(inner, key=lambda k: (seen[k].score, k))
            self._rekey(key, best, now, changes)
            cause = seen[best]
            self._refresh(incident, now, cause.affected, cause.total, cause.expected)
            incident.reported_affected = cause.affected

    def _drop_explained_by_inner(self, seen: dict[Key, Cause]) -> None:
        """Drop each new cause (no incident open on it) whose part outside the causes
        seen inside it this cycle is healthy (``rest_healthy``: ``Rest.HEALTHY`` or
        ``Rest.QUIET``): those causes are the fault, the wider group only adds a few
        unrelated failing SIMs (``{country: DE}`` named beside ``{partner: 26201}``,
        14 failing SIMs of which 10 are the partner's). Without that test the wider
        cause opened first and covered the partner. Where the rest cannot tell yet
        (``Rest.UNKNOWN``: session-level SIMs in open sessions show no black hole), the
        wider cause is dropped when an inner one scores higher: its rest only dilutes
        the evidence (R3, ``{country: DE}`` at 12.7 nats beside ``{partner: 26201}`` at
        21.1)."""
        for key in [k for k in seen if k not in self.open]:
            inner = [k for k in seen if self._inside(k, key)]
            if not inner or self._rest_healthy is None:
                continue
            verdict = self._rest_healthy(dict(key), [dict(k) for k in inner])
            if verdict in (Rest.HEALTHY, Rest.QUIET):
                del seen[key]
            elif verdict is Rest.UNKNOWN and max(seen[k].score for k in inner) > seen[key].score:
                # the rest cannot show the fault yet, and taking it in weakens the
                # evidence: the inner cause explains it better
                del seen[key]

    def _explained_inner(self, key: Key) -> Key | None:
        """The key of the open group incident a new wider cause ``key`` belongs to,
        when the part of ``key`` outside the open incidents inside it is healthy
        (``rest_healthy``: ``Rest.HEALTHY`` or ``Rest.QUIET``): the wider group was
        named for a few unrelated failing SIMs beside the fault, which did not spread
        (a partner's black hole named once as its country, with 4 silent SIMs of the
        country's other partners). Otherwise None, and ``_rescope`` widens the
        incident: its rest fails too, the fault's known extent grew."""
        inner = self._open_inside(key)
        if not self._rest_clear(dict(key), [incident.dims for _, incident in inner]):
            return None
        return max(inner, key=lambda pair: (pair[1].affected, pair[0]))[0]

    def _explained_by_open(self, key: Key) -> bool:
        """Whether a new cause overlapping open group incidents is healthy outside them
        (``rest_healthy``: ``Rest.HEALTHY`` or ``Rest.QUIET``), so that its failing SIMs
        are theirs. A partner's outage fails the SIMs of each APN on it, and an APN
        with half its German SIMs on that partner can be named as
        ``{apn: lift.watch, country: DE}`` beside the open ``{partner: 26201}``: one
        fault, not a second page. Groups overlap unless they give one dimension two
        values; the verdict judges the SIMs, so a group only seeming to overlap has
        its whole failing rest."""
        mine = dict(key)
        overlapping = [
            incident.dims
            for incident in self.open.values()
            if incident.kind == "group"
            and all(mine.get(d, v) == v for d, v in incident.dims.items())
        ]
        return self._rest_clear(mine, overlapping)

    def _tail_of_recovering(self, key: Key) -> bool:
        """Whether every open group incident inside group ``key`` (at least one) has
        begun its recovery (``recovery_onset``). While a fault's SIMs come back, its
        last failing SIMs, with a few of a sibling fault's, can add up to a wider
        group for a cycle (two APN-and-country faults ending together:
        ``{apn: internet.iot}`` with 4 SIMs left in each country). That is no fault
        spreading: it neither widens them nor opens as a fault of its own."""
        inner = self._open_inside(key)
        return bool(inner) and all(i.recovery_onset is not None for _, i in inner)

    def _rescope(self, key: Key, now: float, changes: list[IncidentChange]) -> Incident | None:
        """Widen an open incident of a subgroup of ``key`` to ``key`` (same id, one page).

        At the start of a partner outage the devices that report every minute are
        overdue first, so the first cause can be {apn, partner} and a few cycles later
        {partner}: that is one fault whose known extent grew, not a second incident.
        """
        for old_key, incident in list(self.open.items()):
            if incident.kind == "group" and self._inside(old_key, key):
                self._rekey(old_key, key, now, changes)
                for other_key, other in list(self.open.items()):  # merge further subgroups
                    if (
                        other is not incident
                        and other.kind == "group"
                        and self._inside(other_key, key)
                    ):
                        del self.open[other_key]
                        other.resolved_at = now
                        other.updated_at = now
                        self.resolved.append(other)
                        changes.append(IncidentChange("resolved", other, now))
                return incident
        return None

    def _merge_sibling(self, key: Key, now: float, changes: list[IncidentChange]) -> Key | None:
        """Widen an open incident of a sibling group to the parent both share.

        An APN outage shows first where that APN's fastest reporters are (one country),
        then in the next country: {apn, country=PL}, then {apn, country=NL}. Two
        subgroups of one parent failing within ``sibling_window_s`` of each other are
        one fault of the parent. The shared part must not be empty: two partners'
        outages are never merged into one fleet-wide incident. Nor are two siblings
        merged while the parent's other children are healthy (``rest_healthy``): an APN
        failing in one country and, for another reason, in a second one is two faults.
        Such a sibling is held back (``_HOLD``) for ``sibling_hold_s`` first: when its
        parent's fault is still spreading, the parent becomes the cause meanwhile and
        re-scopes the open incident (one page); else it opens as its own incident. While
        the parent's other SIMs could not show the fault yet (``Rest.UNKNOWN``: a silent
        fault's slow reporters, ``core.exposure``), the hold lasts up to
        ``sibling_hold_max_s``; when the network's own evidence shows the rest healthy
        (``Rest.HEALTHY``: failure ends and rejects come from every SIM at once) there
        is no hold. ``sibling_window_s`` counts from when the sibling was first seen.
        """
        new = dict(key)
        seen_since = self._held.get(key, now)
        for old_key, incident in list(self.open.items()):
            if (
                incident.kind != "group"
                or seen_since - incident.opened_at > self.params.sibling_window_s
            ):
                continue
            old = dict(old_key)
            lifted = self._lift(new, old)
            if lifted is None:
                continue
            common = {k: v for k, v in old.items() if lifted[k] == v}
            if not common or len(common) != len(old) - 1:
                continue
            check = self._rest_healthy
            verdict = Rest.FAILING if check is None else check(common, [old, lifted])
            if verdict is not Rest.FAILING:
                # two faults that share a value, or the parent's fault still spreading
                first = self._held.setdefault(key, now)
                hold = {
                    Rest.HEALTHY: 0.0,
                    Rest.QUIET: self.params.sibling_hold_s,
                    Rest.UNKNOWN: self.params.sibling_hold_max_s,
                }[verdict]
                if now - first < hold:
                    return _HOLD
                continue
            wider: Key = tuple(sorted(common.items()))
            if wider in self.open:
                return wider
            self._rekey(old_key, wider, now, changes)
            return wider
        return None

    def _take_first_sighting(
        self,
        key: Key,
        cause: Cause,
        seen: Mapping[Key, Cause],
        now: float,
        changes: list[IncidentChange],
    ) -> bool:
        """Re-scope to a cause about to open the open incident that was its first sighting.

        A partner's black hole in session-level data shows first on the few SIMs whose
        churn shows it; five of them on one APN named ``{apn: fleet.link}`` (5 of its 63
        SIMs) minutes before the partner's 232 SIMs had enough failing to be named. The
        APN's group is not inside the partner's (``_rescope``), but its failing SIMs
        are: such an incident, no longer named itself this cycle and not recovering,
        with at least ``hold_while_failing`` of its failing SIMs beyond their expected
        count inside the new cause's group (``excess``), becomes the new cause's
        incident: same id, one page, its dimensions corrected (an "updated" change).
        Without ``excess`` (no counts) nothing is re-scoped."""
        excess = self._excess
        share = self.params.hold_while_failing
        if excess is None or share <= 0:
            return False
        mine = dict(key)
        best: tuple[float, Key] | None = None
        for old_key, incident in self.open.items():
            old = incident.dims
            if (
                incident.kind != "group"
                or old_key in seen
                or incident.recovery_onset is not None
                or any(mine.get(d, v) != v for d, v in old.items())  # disjoint groups
            ):
                continue
            whole = excess(old)
            inside = excess({**old, **mine})
            if whole > 0 and inside >= share * whole and (best is None or inside > best[0]):
                best = (inside, old_key)
        if best is None:
            return False
        incident = self._rekey(best[1], key, now, changes)
        self._refresh(incident, now, cause.affected, cause.total, cause.expected)
        incident.score = max(incident.score, cause.score)
        incident.reported_affected = incident.affected
        return True

    def _rekey(self, old: Key, new: Key, now: float, changes: list[IncidentChange]) -> Incident:
        """Move the open incident of ``old`` to group ``new`` (same id: an "updated")."""
        incident = self.open.pop(old)
        incident.dims = dict(new)
        incident.updated_at = now
        incident.named_at = now
        self.open[new] = incident
        changes.append(IncidentChange("updated", incident, now))
        return incident

    def _lift(self, new: Mapping[str, str], old: Mapping[str, str]) -> dict[str, str] | None:
        """Group ``new`` named on ``old``'s dimensions, or None when it has no such name.

        Same dimensions: ``new`` itself. Otherwise the group on ``old``'s dimensions that
        takes ``new``'s values where ``new`` has them and ``old``'s elsewhere, when
        ``new`` lies in it by the fleet's nesting: a cause found on a partner of France,
        ``{apn: y, partner: 20820}``, is ``{apn: y, country: FR}`` beside an open
        ``{apn: x, country: FR}``, so a country outage seen APN by APN is recognized as
        siblings whichever level each APN's failure was first named at.
        """
        if old.keys() == new.keys():
            return dict(new)
        lifted = {k: new.get(k, v) for k, v in old.items()}
        return lifted if self._within(new, lifted) else None

    def _open_ancestor(self, key: Key) -> Key | None:
        """The key of an open group incident whose group contains the group of ``key``."""
        for old_key, incident in self.open.items():
            if incident.kind == "group" and self._inside(key, old_key):
                return old_key
        return None

    def _inside(self, narrow: Key, wide: Key) -> bool:
        """Group ``narrow`` lies inside group ``wide`` and is not the same key."""
        return narrow != wide and self._within(dict(narrow), dict(wide))

    def update_sims(self, now: float, alarms: Iterable[SimAlarm]) -> list[IncidentChange]:
        """Feed the single SIMs that warrant a ticket now; returns what changed."""
        seen = {(("iccid", a.iccid),): a for a in alarms}
        changes: list[IncidentChange] = []
        for key, alarm in seen.items():
            incident = self.open.get(key)
            if incident is not None:
                incident.missing_cycles = 0
                if tuple(incident.reasons) != alarm.reasons:
                    incident.reasons = list(alarm.reasons)
                    incident.updated_at = now
                    changes.append(IncidentChange("updated", incident, now))
                continue
            if self._confirmed(self._pending_sims, key):
                incident = Incident(
                    id=self._new_id(),
                    kind="sim",
                    dims={"iccid": alarm.iccid},
                    severity="ticket",
                    opened_at=now,
                    updated_at=now,
                    affected=1,
                    total=1,
                    expected=0,
                    score=0,
                    iccid=alarm.iccid,
                    peak_affected=1,
                    peak_total=1,
                    reasons=list(alarm.reasons),
                    reported_affected=1,
                )
                self.open[key] = incident
                changes.append(IncidentChange("opened", incident, now))
        self._forget_unseen(self._pending_sims, seen.keys())
        changes.extend(self._age_missing(now, seen.keys(), kind="sim"))
        return changes

    def _reported(
        self, cause: Cause, reported: Callable[[Mapping[str, str]], float] | None
    ) -> bool:
        """Whether ``cause`` rests on what the network reported (``open_on_reported``)."""
        least = self.params.open_on_reported
        if reported is None or least <= 0:
            return False
        count = reported(cause.dims)
        return count >= least and 2.0 * count >= cause.affected

    def _confirmed(self, pending: dict[Key, int], key: Key, at_once: bool = False) -> bool:
        """Count one more consecutive sighting; True once it is enough to open
        (``at_once``: now)."""
        count = pending.get(key, 0) + 1
        if at_once or count >= self.params.open_after:
            pending.pop(key, None)
            return True
        pending[key] = count
        return False

    @staticmethod
    def _forget_unseen(pending: dict[Key, int], seen: Iterable[Key]) -> None:
        keep = set(seen)
        for key in [k for k in pending if k not in keep]:
            del pending[key]

    def _refresh(
        self, incident: Incident, now: float, affected: float, total: float, expected: float
    ) -> None:
        incident.missing_cycles = 0
        incident.affected = affected
        incident.total = total
        incident.expected = expected
        if affected >= incident.peak_affected:
            incident.peak_affected = affected
            incident.peak_total = total
        incident.updated_at = now

    def _is_update(self, incident: Incident) -> bool:
        before = incident.reported_affected
        if abs(incident.affected - before) > self.params.update_change * max(before, 1.0):
            incident.reported_affected = incident.affected
            return True
        return False

    def _age_missing(
        self,
        now: float,
        seen: Iterable[Key],
        kind: str,
        excess: Callable[[Mapping[str, str]], float] | None = None,
    ) -> list[IncidentChange]:
        seen_keys = set(seen)
        changes = []
        p = self.params
        for key, incident in list(self.open.items()):
            if incident.kind != kind or key in seen_keys:
                continue
            recovering = incident.recovery_onset is not None
            if not recovering and excess is not None and p.hold_while_failing > 0:
                named = max(incident.affected - incident.expected, 1.0)
                if excess(incident.dims) >= p.hold_while_failing * named:
                    continue  # its SIMs still fail as they did: not over, not counted
            incident.missing_cycles += 1
            if incident.missing_cycles >= (
                p.close_after_recovering if recovering else p.close_after
            ):
                incident.resolved_at = now
                incident.updated_at = now
                del self.open[key]
                self.resolved.append(incident)
                changes.append(IncidentChange("resolved", incident, now))
        overflow = len(self.resolved) - self.params.keep_resolved
        if overflow > 0:
            del self.resolved[:overflow]
        return changes


def _mapping(value: object) -> Mapping[str, object]:
    if not isinstance(value, dict):
        raise TypeError(f"expected an object, got {value!r}")
    return value


def _list(value: object) -> list[object]:
    if not isinstance(value, list):
        raise TypeError(f"expected a list, got {value!r}")
    return value


def _check_kind(kind: object, severity: object) -> None:
    if kind not in ("group", "sim") or severity not in ("page", "ticket"):
        raise TypeError(f"kind {kind!r} / severity {severity!r}")


def _pairs(value: object) -> list[tuple[object, object]]:
    if not isinstance(value, list) or not all(isinstance(p, list) and len(p) == 2 for p in value):
        raise TypeError("expected a list of [key, value] pairs")
    return [(p[0], p[1]) for p in value]


def _key(value: object) -> Key:
    if not isinstance(value, list):
        raise TypeError(f"bad incident key {value!r}")
    out = []
    for pair in value:
        if not isinstance(pair, list) or len(pair) != 2:
            raise TypeError(f"bad incident key {value!r}")
        out.append((str(pair[0]), str(pair[1])))
    return tuple(out)
