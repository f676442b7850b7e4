"""Group localization across shards: merge per-leaf counts from several replicas.

When the fleet is split over N simwatch replicas by ICCID (``shard_of``), each replica
("shard") holds every per-SIM state of its SIMs, but only a random part of every group.
A group decision needs the whole fleet: this module sums the shards' per-leaf counts
into one ``LeafTable`` and runs ``localize`` on it once (docs/scaling.md).

- ``shard_report(engine, shard, shards)``: what one shard contributes after a cycle —
  per leaf (one combination of dimension values) the SIMs counted, overdue and
  expected overdue. ``ShardReport.to_json``/``from_json`` is its wire form.
- ``merge_reports(reports, shards)``: the sum over the shards that reported for the
  same evaluation instant. It says which shards are missing, which sent a report for
  another instant (stale), which are still in their warm-up, and which are *outliers*:
  a shard whose overdue share is far above the other shards' is a pipeline fault of
  that shard (its feed stalled, its partitions moved away), never a group fault — a
  hash of the ICCID picks a random sample of every group, so a real group fault shows
  in every shard alike. All of these are left out of the sum, so a dead feed never
  looks like a fleet-wide outage.
- ``Merger``: one merged localization per cycle plus the incident tracker, so incident
  ids come from one place (the merger), not from each shard.

Who calls it: the cluster (``service.cluster``): every node publishes its
``shard_report`` after each cycle and the leader, elected with a key-value lease, merges
them (``core.cluster.merge_cycle`` over ``merge_reports``); also the tests
(``tests/test_merge.py``, ``tests/test_replicas.py``) and docs/scaling.md.

Pure: no I/O, no clock, no global state. Summing is exact for ``total`` and
``overdue`` (per-SIM facts); ``expected`` is the sum of each shard's learned baseline
for its part of the leaf, which is the expected count of the whole leaf under the same
Poisson model ``localize`` uses.
"""

from __future__ import annotations

import math
import zlib
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Final

import numpy as np

from simwatch.core.baseline import BaselineParams, GroupBaseline
from simwatch.core.evaluate import (
    EVIDENCE_NAMES,
    NAMED_EVIDENCE,
    ChurnPart,
    EvalParams,
    HeardElsewhere,
    churn_stop,
    evidence_causes,
    named_evidence_columns,
    net_moves,
)
from simwatch.core.exposure import (
    EXPOSURE_BINS,
    LeafExposure,
    reported_by_leaf,
    rest_verdict_counts,
    sim_bins,
    widen_silent,
)
from simwatch.core.iccid import alternate_form
from simwatch.core.incidents import IncidentParams, IncidentTracker, Rest
from simwatch.core.localize import Cause, LeafTable, LocalizeParams, llr_threshold, localize
from simwatch.core.recovery import advance_recovery

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from simwatch.core.engine import Engine
    from simwatch.core.evaluate import Evaluation
    from simwatch.core.incidents import Incident, IncidentChange

REPORT_VERSION: Final = 1  # later fields are optional: a report without them still merges
# what a report carries beyond the counts (``ShardReport.carries``)
CARRIES_RECOVERY: Final = "recovery"  # LeafCounts.recovered and .churn
# LeafCounts.late, .awaiting, .kinds, .usual, .causes, .arrived, .only_moved
CARRIES_EVIDENCE: Final = "evidence"
CARRIES_EXPOSURE: Final = "exposure"  # LeafCounts.reported, .exposure, .failing_exposure, ...
# ... and .silence_exposure, .open_exposure (optional within it: absent from an older
# version)
CARRIES_HEARD: Final = "heard"  # ShardReport.heard
KIND_NAMES: Final = tuple(name for _, name in EVIDENCE_NAMES)
_DEFAULT_LOCALIZE: Final = LocalizeParams()

Json = dict[str, object]


def shard_of(iccid: str, shards: int) -> int:
    """The shard of a SIM: CRC-32 (IEEE 802.3, as zlib) of the ICCID's bytes, mod ``shards``.

    The ICCID's digits without the Luhn check digit when it carries one (20 digits whose
    last is the check digit of the first 19: ``core.iccid``), so both forms of one SIM
    land on the same shard. Every publisher, router and replica must use this same
    function: ``crc32("8949020000000000017") % 2``.
    """
    if shards < 1:
        raise ValueError(f"shards must be at least 1, got {shards}")
    if len(iccid) == 20:
        other = alternate_form(iccid)
        if other is not None:
            iccid = other
    return zlib.crc32(iccid.encode()) % shards


@dataclass(frozen=True, slots=True)
class LeafCounts:
    """One leaf's counts on one shard.

    ``values``: one per dimension, ``""`` where the SIMs have no value yet. ``total``:
    SIMs counted (active, seen, rhythm learned, or dropped or refused by the network).
    ``overdue``: of those, late or silent and not explained per SIM
    (``LeafTable.affected``). ``expected``: overdue SIMs expected now from the shard's
    learned baseline.
    """

    values: tuple[str, ...]
    total: float
    overdue: float
    expected: float
    # --- optional (reports of older versions have none; ``ShardReport.carries``) ---
    # SIMs failing at the shard's previous cycle that sent data since (recovery onset)
    recovered: float = 0.0
    churn: ChurnPart | None = None  # its churners' part of ``evaluate.churn_stop``
    late: float = 0.0  # of ``overdue``, those overdue by their rhythm (the rest: evidence)
    awaiting: float = 0.0  # overdue, but awaited after their group's recovery began
    kinds: tuple[float, ...] = ()  # per ``KIND_NAMES``, SIMs showing that evidence
    usual: tuple[float, ...] = ()  # per ``KIND_NAMES``, the shard's learned usual count
    # per kind of ``NAMED_EVIDENCE``, how many of its SIMs showed each cause
    causes: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    # of ``overdue``, those showing evidence the network reports (``exposure.REPORTED``)
    reported: float = 0.0
    # counted and failing SIMs per bin of late threshold (``exposure.exposure_bins``):
    # (the first bin with any, its count, the next bin's, ... up to the last with any)
    exposure: tuple[int, ...] = ()
    failing_exposure: tuple[int, ...] = ()
    # SIMs overdue by their report rhythm per bin of silence (``exposure.silence_of``):
    # the age of a silent fault
    silence_exposure: tuple[int, ...] = ()
    # healthy session-level SIMs in open sessions per bin (``exposure.open_sessions``)
    open_exposure: tuple[int, ...] = ()
    # SIMs that moved into this leaf from another within the evidence window, and of
    # ``overdue`` those whose move from it is all they show: a partner's moves are judged
    # on its net loss (``evaluate.net_moves``)
    arrived: float = 0.0
    only_moved: float = 0.0

    def __post_init__(self) -> None:
        counts = (self.total, self.overdue, self.expected)
        if not all(math.isfinite(c) and c >= 0 for c in counts):
            raise ValueError(f"leaf {self.values}: counts must be finite and >= 0, got {counts}")
        if self.overdue > self.total:
            raise ValueError(
                f"leaf {self.values}: overdue {self.overdue:g} exceeds total {self.total:g}"
            )


@dataclass(frozen=True, slots=True)
class ShardReport:
    """What one shard contributes to a merged evaluation at ``evaluated_at`` (epoch s)."""

    shard: int
    shards: int
    evaluated_at: float
    warmed_up: bool
    dims: tuple[str, ...]
    leaves: tuple[LeafCounts, ...]
    carries: tuple[str, ...] = ()  # CARRIES_RECOVERY, CARRIES_EVIDENCE
    # per dimension and value, the shard's session-level record rate and when it last
    # heard of the group (``evaluate.groups_heard``): a session-level group's darkness is
    # judged on the fleet's (``Merged.heard``)
    heard: HeardElsewhere = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0 <= self.shard < self.shards:
            raise ValueError(f"shard must be within 0..{self.shards - 1}, got {self.shard}")
        if not math.isfinite(self.evaluated_at):
            raise ValueError("evaluated_at must be a finite epoch time")
        for leaf in self.leaves:
            if len(leaf.values) != len(self.dims):
                raise ValueError(
                    f"leaf {leaf.values} has {len(leaf.values)} values for {len(self.dims)} dims"
                )

    @property
    def total(self) -> float:
        return sum(leaf.total for leaf in self.leaves)

    @property
    def overdue(self) -> float:
        return sum(leaf.overdue for leaf in self.leaves)

    def to_json(self) -> Json:
        """The wire form (what a shard would publish or serve each cycle)."""
        return {
            "version": REPORT_VERSION,
            "shard": self.shard,
            "shards": self.shards,
            "evaluated_at": self.evaluated_at,
            "warmed_up": self.warmed_up,
            "dims": list(self.dims),
            "carries": list(self.carries),
            "kinds": list(KIND_NAMES),  # the order of each leaf's "usual"
            "leaves": [_leaf_json(leaf) for leaf in self.leaves],
            "heard": heard_json(self.heard),
        }

    @classmethod
    def from_json(cls, data: object) -> ShardReport:
        """Parse ``to_json``'s output.

        Raises ``TypeError`` (a field of the wrong JSON type) or ``ValueError`` (a bad
        value), naming the first bad field.
        """
        obj = _object(data, "report")
        if obj.get("version") != REPORT_VERSION:
            raise ValueError(f"version: expected {REPORT_VERSION}, got {obj.get('version')!r}")
        dims = tuple(_strings(obj.get("dims"), "dims"))
        raw_leaves = obj.get("leaves")
        if not isinstance(raw_leaves, list):
            raise TypeError("leaves: expected a list")
        kind_names = tuple(_strings(obj.get("kinds", list(KIND_NAMES)), "kinds"))
        leaves = []
        for i, raw in enumerate(raw_leaves):
            leaf = _object(raw, f"leaves[{i}]")
            where = f"leaves[{i}]"
            leaves.append(
                LeafCounts(
                    values=tuple(_strings(leaf.get("values"), f"{where}.values")),
                    total=_number(leaf.get("total"), f"{where}.total"),
                    overdue=_number(leaf.get("overdue"), f"{where}.overdue"),
                    expected=_number(leaf.get("expected"), f"{where}.expected"),
                    recovered=_number(leaf.get("recovered", 0.0), f"{where}.recovered"),
                    churn=_churn(leaf.get("churn"), f"{where}.churn"),
                    late=_number(leaf.get("late", 0.0), f"{where}.late"),
                    awaiting=_number(leaf.get("awaiting", 0.0), f"{where}.awaiting"),
                    kinds=_per_kind(leaf.get("kinds"), f"{where}.kinds"),
                    usual=_usual(leaf.get("usual"), kind_names, f"{where}.usual"),
                    causes={
                        kind: _counts(c, f"{where}.causes.{kind}")
                        for kind, c in _object(leaf.get("causes", {}), f"{where}.causes").items()
                        if kind in NAMED_EVIDENCE
                    },
                    reported=_number(leaf.get("reported", 0.0), f"{where}.reported"),
                    exposure=_bins(leaf.get("exposure"), f"{where}.exposure"),
                    failing_exposure=_bins(
                        leaf.get("failing_exposure"), f"{where}.failing_exposure"
                    ),
                    silence_exposure=_bins(
                        leaf.get("silence_exposure"), f"{where}.silence_exposure"
                    ),
                    open_exposure=_bins(leaf.get("open_exposure"), f"{where}.open_exposure"),
                    arrived=_number(leaf.get("arrived", 0.0), f"{where}.arrived"),
                    only_moved=_number(leaf.get("only_moved", 0.0), f"{where}.only_moved"),
                )
            )
        warmed_up = obj.get("warmed_up")
        if not isinstance(warmed_up, bool):
            raise TypeError("warmed_up: expected true or false")
        return cls(
            shard=_integer(obj.get("shard"), "shard"),
            shards=_integer(obj.get("shards"), "shards"),
            evaluated_at=_number(obj.get("evaluated_at"), "evaluated_at"),
            warmed_up=warmed_up,
            dims=dims,
            leaves=tuple(leaves),
            carries=tuple(_strings(obj.get("carries", []), "carries")),
            heard=parse_heard(obj.get("heard", {})),
        )


def _leaf_json(leaf: LeafCounts) -> Json:
    out: Json = {
        "values": list(leaf.values),
        "total": leaf.total,
        "overdue": leaf.overdue,
        "expected": leaf.expected,
    }
    # the optional fields only where they say something (a report stays small)
    if leaf.recovered:
        out["recovered"] = leaf.recovered
    if leaf.churn is not None and leaf.churn.sims:
        c = leaf.churn
        out["churn"] = {
            "sims": c.sims,
            "rate": c.rate,
            "starts": list(c.starts),
            "stopped": c.stopped,
            "stopped_last": None if math.isnan(c.stopped_last) else c.stopped_last,
        }
    if leaf.late:
        out["late"] = leaf.late
    if leaf.awaiting:
        out["awaiting"] = leaf.awaiting
    if any(leaf.kinds):
        out["kinds"] = {n: v for n, v in zip(KIND_NAMES, leaf.kinds, strict=True) if v}
    if leaf.usual:  # 4 significant digits: a learned level, not a count
        out["usual"] = [float(f"{v:.4g}") for v in leaf.usual]
    if leaf.causes:
        out["causes"] = {kind: dict(counts) for kind, counts in leaf.causes.items()}
    if leaf.reported:
        out["reported"] = leaf.reported
    if leaf.exposure:
        out["exposure"] = list(leaf.exposure)
    if leaf.failing_exposure:
        out["failing_exposure"] = list(leaf.failing_exposure)
    if leaf.silence_exposure:
        out["silence_exposure"] = list(leaf.silence_exposure)
    if leaf.open_exposure:
        out["open_exposure"] = list(leaf.open_exposure)
    if leaf.arrived:
        out["arrived"] = leaf.arrived
    if leaf.only_moved:
        out["only_moved"] = leaf.only_moved
    return out


def heard_json(heard: HeardElsewhere) -> Json:
    """The wire form of ``ShardReport.heard`` (and of ``Merged.heard``): per dimension,
    per value, ``[rate, last heard]`` (null: never heard)."""
    out: Json = {}
    for dim, values in heard.items():
        out[dim] = {v: [r, at if math.isfinite(at) else None] for v, (r, at) in values.items()}
    return out


def parse_heard(value: object) -> dict[str, dict[str, tuple[float, float]]]:
    """Parse ``heard_json``'s output; ``TypeError`` or ``ValueError`` naming the first bad
    field."""
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for dim, values in _object(value, "heard").items():
        group: dict[str, tuple[float, float]] = {}
        for name, pair in _object(values, f"heard.{dim}").items():
            where = f"heard.{dim}.{name}"
            if not isinstance(pair, list) or len(pair) != 2:
                raise TypeError(f"{where}: expected [rate, last heard]")
            rate = _number(pair[0], where)
            if rate < 0:
                raise ValueError(f"{where}: rate must be >= 0, got {rate}")
            at = -math.inf if pair[1] is None else _number(pair[1], where)
            group[name] = (rate, at)
        out[dim] = group
    return out


def _bins(value: object, where: str) -> tuple[int, ...]:
    """``LeafCounts.exposure`` from its wire form, the same list (absent: ())."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
    ):
        raise TypeError(f"{where}: expected a list of counts")
    if len(value) < 2 or value[0] + len(value) - 1 > EXPOSURE_BINS:
        raise ValueError(f"{where}: bins outside 0..{EXPOSURE_BINS - 1}")
    return tuple(value)


def _usual(value: object, names: Sequence[str], where: str) -> tuple[float, ...]:
    """A leaf's usual counts in the report's ``kinds`` order, as ``KIND_NAMES``."""
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) != len(names):
        raise TypeError(f"{where}: expected a list of {len(names)} numbers")
    by_name = {
        n: _number(v, f"{where}[{i}]") for i, (n, v) in enumerate(zip(names, value, strict=True))
    }
    return tuple(by_name.get(name, 0.0) for name in KIND_NAMES)


def _churn(value: object, where: str) -> ChurnPart | None:
    if value is None:
        return None
    obj = _object(value, where)
    starts = obj.get("starts")
    if not isinstance(starts, list):
        raise TypeError(f"{where}.starts: expected a list")
    last = obj.get("stopped_last")
    return ChurnPart(
        sims=_integer(obj.get("sims"), f"{where}.sims"),
        rate=_number(obj.get("rate"), f"{where}.rate"),
        starts=tuple(sorted(_number(t, f"{where}.starts") for t in starts)),
        stopped=_integer(obj.get("stopped"), f"{where}.stopped"),
        stopped_last=math.nan if last is None else _number(last, f"{where}.stopped_last"),
    )


def _per_kind(value: object, where: str) -> tuple[float, ...]:
    """A {kind name: count} object as a tuple in ``KIND_NAMES`` order (absent: ())."""
    if value is None:
        return ()
    counts = _counts(value, where)
    return tuple(counts.get(name, 0.0) for name in KIND_NAMES)


def _counts(value: object, where: str) -> dict[str, float]:
    obj = _object(value, where)
    return {str(k): _number(v, f"{where}.{k}") for k, v in obj.items()}


def _object(value: object, where: str) -> Mapping[str, object]:
    if not isinstance(value, dict):
        raise TypeError(f"{where}: expected an object")
    return value


def _strings(value: object, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError(f"{where}: expected a list of strings")
    return list(value)


def _number(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{where}: expected a number")
    return float(value)


def _integer(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{where}: expected an integer")
    return value


def shard_report(engine: Engine, shard: int, shards: int) -> ShardReport | None:
    """The engine's last evaluation as shard ``shard`` of ``shards`` (None before one).

    Leaves without counted SIMs are left out: they add nothing to any group (unless SIMs
    of theirs sent data again: recovery counts). Beyond the counts, the report carries
    each leaf's recoveries and churners (the recovery onset of the leader's incidents)
    and its evidence per kind, with their usual counts and causes (the leader's evidence
    causes and incident evidence).
    """
    evaluation = engine.last_evaluation
    if evaluation is None:
        return None
    state = engine.state
    n_leaves = len(evaluation.leaf_total)
    recovered = engine.leaf_recovered.tolist()
    n_all = max(n_leaves, len(recovered))
    codes = state.leaf_codes()[:n_all].tolist()
    labels = state.leaf_labels()
    totals = evaluation.leaf_total.tolist() + [0.0] * (n_all - n_leaves)
    recovered += [0.0] * (n_all - len(recovered))
    overdue = evaluation.leaf_affected.tolist()
    expected = evaluation.leaf_expected.tolist()
    n = evaluation.n
    member = evaluation.member_leaf[:n]
    counted = evaluation.counted[:n] & (member >= 0)

    def per_leaf(mask: np.ndarray) -> list[float]:
        out: list[float] = np.bincount(member[counted & mask], minlength=n_leaves).tolist()
        return out

    late = per_leaf(evaluation.overdue[:n])
    awaiting = per_leaf(evaluation.awaiting[:n])
    kinds = evaluation.leaf_kinds.T.tolist()
    arrived = evaluation.leaf_arrived.tolist()
    only_moved = evaluation.leaf_only_moved.tolist()
    usual = (engine.kind_ratio(evaluation.now, n_leaves) * evaluation.leaf_total).T.tolist()
    causes = _leaf_causes(engine, evaluation)
    churn = engine.leaf_churn
    reported, exposure, failing_exposure, silence, open_ = _leaf_exposure(engine, evaluation)
    leaves = tuple(
        LeafCounts(
            values=tuple(labels[d][c] for d, c in enumerate(codes[i])),
            total=totals[i],
            overdue=overdue[i] if i < n_leaves else 0.0,
            expected=expected[i] if i < n_leaves else 0.0,
            recovered=recovered[i],
            churn=churn.get(i),
            late=late[i] if i < n_leaves else 0.0,
            awaiting=awaiting[i] if i < n_leaves else 0.0,
            kinds=tuple(kinds[i]) if i < n_leaves else (),
            usual=tuple(usual[i]) if i < n_leaves else (),
            causes=causes.get(i, {}),
            reported=reported[i] if i < n_leaves else 0.0,
            exposure=exposure.get(i, ()),
            failing_exposure=failing_exposure.get(i, ()),
            silence_exposure=silence.get(i, ()),
            open_exposure=open_.get(i, ()),
            arrived=arrived[i] if i < n_leaves else 0.0,
            only_moved=only_moved[i] if i < n_leaves else 0.0,
        )
        for i in range(n_all)
        if totals[i] > 0 or recovered[i] > 0 or (i < n_leaves and arrived[i] > 0)
    )
    return ShardReport(
        shard=shard,
        shards=shards,
        evaluated_at=evaluation.now,
        warmed_up=engine.warmed_up(evaluation.now),
        dims=state.dims,
        leaves=leaves,
        # what it heard of each group: a cluster node's cycle has it (``Engine.assess``)
        carries=(CARRIES_RECOVERY, CARRIES_EVIDENCE, CARRIES_EXPOSURE)
        + ((CARRIES_HEARD,) if evaluation.heard is not None else ()),
        heard=evaluation.heard if evaluation.heard is not None else {},
    )


def _leaf_exposure(
    engine: Engine, evaluation: Evaluation
) -> tuple[
    list[float],
    dict[int, tuple[int, ...]],
    dict[int, tuple[int, ...]],
    dict[int, tuple[int, ...]],
    dict[int, tuple[int, ...]],
]:
    """Per leaf: its failing SIMs showing reported evidence, its counted and failing SIMs
    per bin of late threshold, its SIMs overdue by their rhythm per bin of silence, and
    its healthy open sessions per bin (``exposure.LeafExposure``, in the report's sparse
    form)."""
    n_leaves = len(evaluation.leaf_total)
    sims = sim_bins(engine.state, evaluation, engine.config.evaluation)
    leaf = sims.leaf
    reported: list[float] = reported_by_leaf(evaluation).tolist()
    known = sims.threshold >= 0

    def per_leaf(mask: np.ndarray, bins: np.ndarray) -> dict[int, tuple[int, ...]]:
        keys = leaf[mask] * EXPOSURE_BINS + bins[mask]
        if n_leaves * EXPOSURE_BINS <= 4 * len(keys) + 65_536:  # linear, not a sort
            ids = np.arange(n_leaves)
            matrix = np.bincount(keys, minlength=n_leaves * EXPOSURE_BINS)
            matrix = matrix.reshape(n_leaves, EXPOSURE_BINS)
        else:  # a large table: only the leaves that have SIMs here
            keys, counts = np.unique(keys, return_counts=True)
            ids, where = np.unique(keys // EXPOSURE_BINS, return_inverse=True)
            matrix = np.zeros((len(ids), EXPOSURE_BINS), np.int64)
            matrix[where, keys % EXPOSURE_BINS] = counts
        has = matrix > 0
        some = np.flatnonzero(has.any(axis=1))
        first = has[some].argmax(axis=1)
        last = EXPOSURE_BINS - 1 - has[some, ::-1].argmax(axis=1)
        return {
            leaf_id: (f, *matrix[r, f : end + 1].tolist())
            for r, leaf_id, f, end in zip(
                some.tolist(), ids[some].tolist(), first.tolist(), last.tolist(), strict=True
            )
        }

    return (
        reported,
        per_leaf(known, sims.threshold),
        per_leaf(known & sims.failing, sims.threshold),
        per_leaf(sims.silence >= 0, sims.silence),
        per_leaf(sims.open >= 0, sims.open),
    )


def _leaf_causes(engine: Engine, evaluation: Evaluation) -> dict[int, dict[str, dict[str, float]]]:
    """Per leaf, per kind of ``NAMED_EVIDENCE``, how many of its SIMs showing it had each
    cause, or for SIMs that left, went to each partner (``evaluate.evidence_summary``
    names the leading one)."""
    state = engine.state
    n = evaluation.n
    ev = evaluation.evidence[:n]
    member = evaluation.member_leaf[:n]
    out: dict[int, dict[str, dict[str, float]]] = {}
    for name, bit, column, values in named_evidence_columns(state):
        rows = np.flatnonzero(((ev & bit) != 0) & evaluation.counted[:n] & (member >= 0))
        if not rows.size:
            continue
        pairs = Counter(zip(member[rows].tolist(), column[rows].tolist(), strict=True))
        for (leaf, code), count in pairs.items():
            cause = values[code] if code > 0 else ""  # "": none given
            out.setdefault(leaf, {}).setdefault(name, {})[cause] = float(count)
    return out


@dataclass(frozen=True, slots=True)
class OutlierParams:
    """When a shard's overdue share counts as a pipeline fault of that shard.

    A stalled feed makes nearly all of a shard's SIMs overdue: a huge effect, so the
    test is strict (it runs every cycle, and a false flag holds the merged decision).

    - ``alpha``: family-wise false-flag probability per cycle (Bonferroni over shards).
    - ``min_overdue``: fewer overdue SIMs on the shard never flag it.
    - ``min_lift``: its overdue share must be at least this multiple of the others'.
    - ``min_share``: floor of the others' share in the lift (a fleet with nothing
      overdue elsewhere must not make a handful of late SIMs infinitely unusual).
    """

    alpha: float = 1e-6
    min_overdue: float = 10.0
    min_lift: float = 3.0
    min_share: float = 0.01


_DEFAULT_OUTLIERS: Final = OutlierParams()


@dataclass(frozen=True, slots=True)
class ShardOutlier:
    """A shard whose overdue share is far above the other shards' (left out of the sum).

    ``expected`` is how many of all the overdue SIMs (this shard's and the others') would
    fall on this shard by its share of the counted SIMs; ``score`` the log-likelihood
    ratio (nats) of ``overdue`` against that binomial split.
    """

    shard: int
    overdue: float
    total: float
    expected: float
    score: float


@dataclass(frozen=True, slots=True)
class Merged:
    """The shards' counts summed for one evaluation instant."""

    evaluated_at: float
    shards: int
    table: LeafTable  # summed over ``included``
    included: tuple[int, ...]
    missing: tuple[int, ...]  # no report at all
    stale: tuple[int, ...]  # a report, but for another evaluation instant
    warming: tuple[int, ...]  # reported for this instant, still in its warm-up: left out
    outliers: tuple[ShardOutlier, ...]  # reported for this instant, left out
    # per leaf of ``table``, summed over the included shards that carry them (None: none)
    recovered: np.ndarray | None = None
    churn: Mapping[int, ChurnPart] = field(default_factory=dict)  # leaf -> its churners
    evidence: MergedEvidence | None = None  # None unless every included shard carries it
    exposure: LeafExposure | None = None  # the same
    # what the whole fleet heard of each group (``ShardReport.heard``: rates summed, the
    # latest time), from every shard's report for this instant, warming or outlier too;
    # None unless every shard reported for it and carries it
    heard: HeardElsewhere | None = None

    @property
    def complete(self) -> bool:
        return len(self.included) == self.shards

    def leaves_of(self, dims: Mapping[str, str]) -> np.ndarray:
        """Bool per leaf of ``table``: inside the group ``dims`` (a dimension or value
        no shard has: none)."""
        return self.table.leaves_of(dims)

    def reported_in(self, dims: Mapping[str, str]) -> float:
        """Of group ``dims``' failing SIMs, those the network reported failing
        (``IncidentTracker.update_groups``' ``reported``, as the engine's; 0 without
        ``exposure``)."""
        ex = self.exposure
        return 0.0 if ex is None else float(ex.reported[self.leaves_of(dims)].sum())

    def excess_in(self, dims: Mapping[str, str]) -> float:
        """Group ``dims``' failing SIMs beyond its expected count, over every shard
        (``IncidentTracker.update_groups``' ``excess``, as the engine's)."""
        leaves = self.leaves_of(dims)
        return float(self.table.affected[leaves].sum() - self.table.expected[leaves].sum())

    def within(self, narrow: Mapping[str, str], wide: Mapping[str, str]) -> bool:
        """Whether group ``narrow`` lies inside group ``wide`` by the leaves every
        shard has (``IncidentTracker.update_groups``' ``within``, as the engine's)."""
        return self.table.within(narrow, wide)

    def rest_verdict(
        self,
        parent: Mapping[str, str],
        children: Sequence[Mapping[str, str]],
        params: LocalizeParams = _DEFAULT_LOCALIZE,
    ) -> Rest:
        """What the part of group ``parent`` outside ``children`` shows
        (``IncidentTracker.update_groups``' ``rest_healthy``, as ``exposure.rest_verdict``
        on one node; ``exposure.rest_verdict_counts`` says what is approximated). Without
        ``exposure``: ``Rest.FAILING``, as without a verdict."""
        ex = self.exposure
        if ex is None:
            return Rest.FAILING
        return rest_verdict_counts(
            self.table,
            ex,
            self.leaves_of(parent),
            [self.leaves_of(child) for child in children],
            params,
        )

    def churn_of(self, leaves: np.ndarray) -> ChurnPart:
        """The churners of the leaves ``leaves`` (a bool mask), every shard's."""
        return ChurnPart.merge(part for leaf, part in self.churn.items() if leaves[leaf])

    def evidence_of(self, dims: Mapping[str, str]) -> dict[str, object]:
        """``evaluate.evidence_summary`` of the group ``dims`` from the summed counts
        (``{}`` without ``evidence``). The leading cause: the most frequent summed over
        the shards (a tie may name another of the tied causes than one node would)."""
        ev = self.evidence
        if ev is None:
            return {}
        leaves = self.leaves_of(dims)
        out: dict[str, object] = {
            "failing": round(float(self.table.affected[leaves].sum())),
            "overdue": round(float(ev.late[leaves].sum())),
        }
        awaiting = round(float(ev.awaiting[leaves].sum()))
        if awaiting:
            out["awaiting"] = awaiting
        for k, name in enumerate(KIND_NAMES):
            out[name] = round(float(ev.kinds[k][leaves].sum()))
        out["usual"] = {
            name: round(float(ev.usual[k][leaves].sum()), 1) for k, name in enumerate(KIND_NAMES)
        }
        for kind, key in NAMED_EVIDENCE.items():
            counts: Counter[str] = Counter()
            for leaf in np.flatnonzero(leaves).tolist():
                counts.update(ev.causes.get(leaf, {}).get(kind, {}))
            if counts:
                top = max(counts.items(), key=lambda item: (item[1], item[0] == ""))[0]
                if top:
                    out[key] = top
        return out


@dataclass(frozen=True, slots=True)
class MergedEvidence:
    """Per leaf of a merged table, the evidence counts summed over the shards."""

    late: np.ndarray
    awaiting: np.ndarray
    kinds: np.ndarray  # (len(KIND_NAMES), leaves)
    usual: np.ndarray  # (len(KIND_NAMES), leaves): the usual count per kind
    causes: Mapping[int, Mapping[str, Counter[str]]]  # leaf -> kind -> cause -> SIMs
    arrived: np.ndarray  # SIMs that moved into each leaf (``LeafCounts.arrived``)
    only_moved: np.ndarray  # ... and the failing ones that show only their move from it


def merged_causes(merged: Merged, params: LocalizeParams = _DEFAULT_LOCALIZE) -> list[Cause]:
    """Localization on the merged counts, as the engine's: on the combined failing
    count, and, when the shards carry their evidence per kind, each kind against its
    usual level (``evaluate.evidence_causes``); silent causes named as wide as their
    exposed SIMs show (``exposure.widen_silent``)."""
    table = merged.table
    ev = merged.evidence
    if ev is None or not len(table.total):
        causes = localize(table, params)
    else:
        # each partner's moves netted on the fleet's sums, as one node nets its own
        table, kinds = net_moves(table, ev.kinds, only_moved=ev.only_moved, arrived=ev.arrived)
        causes = localize(table, params)
    if ev is not None and (ev.kinds.sum(axis=1) >= params.min_affected).any():
        ratio = ev.usual / np.maximum(table.total, 1e-12)
        causes = evidence_causes(table, causes, kinds, ratio, params)
    if causes and merged.exposure is not None:
        causes = widen_silent(causes, table, merged.exposure, params)
    return causes


def _xlogy(x: float, ratio: float) -> float:
    return x * math.log(ratio) if x > 0 else 0.0


def _binomial_llr(k: float, n: float, p: float) -> float:
    """One-sided LLR of ``k`` of ``n`` against a success probability ``p`` (0 below it)."""
    if n <= 0 or k <= n * p or not 0 < p < 1:
        return 0.0
    return _xlogy(k, k / (n * p)) + _xlogy(n - k, (n - k) / (n * (1 - p)))


def shard_outliers(
    reports: Sequence[ShardReport], params: OutlierParams = _DEFAULT_OUTLIERS
) -> tuple[ShardOutlier, ...]:
    """Shards whose overdue share is far above the others' pooled share.

    A real group fault falls on every shard alike (the ICCID hash is a random sample
    of every group): given all the overdue SIMs, each lands on a shard with that shard's
    share of the counted SIMs. A shard is flagged when its count is significant against
    that split (conditional binomial test at ``params.alpha``, Bonferroni over the
    shards), with at least ``min_overdue`` overdue and ``min_lift`` times the others'
    share. Needs two shards or more.
    """
    if len(reports) < 2:
        return ()
    sums = [(r.overdue, r.total) for r in reports]
    all_a = sum(a for a, _ in sums)
    all_n = sum(n for _, n in sums)
    threshold = llr_threshold(params.alpha, len(reports))
    out = []
    for report, (a, n) in zip(reports, sums, strict=True):
        rest_a, rest_n = all_a - a, all_n - n
        if rest_n <= 0 or n <= 0:
            continue
        p = n / all_n
        score = _binomial_llr(a, all_a, p)
        lift = (a / n) / max(rest_a / rest_n, params.min_share)
        if a >= params.min_overdue and lift >= params.min_lift and score >= threshold:
            out.append(ShardOutlier(report.shard, a, n, all_a * p, score))
    return tuple(out)


def merge_reports(
    reports: Iterable[ShardReport],
    shards: int,
    *,
    at: float | None = None,
    outlier_params: OutlierParams = _DEFAULT_OUTLIERS,
) -> Merged:
    """Sum the per-leaf counts of the shards that reported for instant ``at``.

    ``at`` defaults to the newest ``evaluated_at`` among the reports. Left out of the
    sum, and named in the result: shards without a report (``missing``), with a report
    for another instant (``stale``), still in their warm-up (``warming``: their rhythms
    and baselines are not learned yet) and ``outliers`` (``shard_outliers``). Raises
    ``ValueError`` when a report is for another shard count or other dimensions, or two
    reports claim the same shard for the same instant (two replicas configured as one
    shard would count its SIMs twice).
    """
    reports = list(reports)
    if shards < 1:
        raise ValueError(f"shards must be at least 1, got {shards}")
    dims: tuple[str, ...] | None = None
    for report in reports:
        if report.shards != shards:
            raise ValueError(
                f"shard {report.shard} reports {report.shards} shards, the merger has {shards}"
            )
        if dims is None:
            dims = report.dims
        elif report.dims != dims:
            raise ValueError(f"shard {report.shard} has dims {report.dims}, others {dims}")
    if at is None:
        at = max((r.evaluated_at for r in reports), default=math.nan)
    current: dict[int, ShardReport] = {}
    for report in reports:
        if report.evaluated_at == at:
            if report.shard in current:
                raise ValueError(f"two reports for shard {report.shard} at {at}")
            current[report.shard] = report
    seen = {r.shard for r in reports}
    stale = tuple(sorted(seen - current.keys()))
    missing = tuple(s for s in range(shards) if s not in seen)
    ordered = [current[s] for s in sorted(current)]
    warming = tuple(r.shard for r in ordered if not r.warmed_up)
    warm = [r for r in ordered if r.warmed_up]
    outliers = shard_outliers(warm, outlier_params)
    left_out = {o.shard for o in outliers}
    included = [r for r in warm if r.shard not in left_out]
    rows = (
        (leaf.values, leaf.overdue, leaf.total, leaf.expected)
        for report in included
        for leaf in report.leaves
    )
    table = LeafTable.from_rows(dims or (), rows)
    index = _leaf_index(table)
    recovered, churn, evidence = _merge_extras(table, index, included)
    exposure = _merge_exposure(table, index, included)
    heard = None
    if len(ordered) == shards and all(CARRIES_HEARD in r.carries for r in ordered):
        heard = merge_heard(r.heard for r in ordered)
    return Merged(
        evaluated_at=at,
        shards=shards,
        table=table,
        included=tuple(r.shard for r in included),
        missing=missing,
        stale=stale,
        warming=warming,
        outliers=outliers,
        recovered=recovered,
        churn=churn,
        evidence=evidence,
        exposure=exposure,
        heard=heard,
    )


def merge_heard(parts: Iterable[HeardElsewhere]) -> dict[str, dict[str, tuple[float, float]]]:
    """The shards' ``heard`` as one: per group, the rates summed and the latest time."""
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for part in parts:
        for dim, values in part.items():
            group = out.setdefault(dim, {})
            for value, (rate, at) in values.items():
                before = group.get(value)
                group[value] = (
                    (rate, at) if before is None else (before[0] + rate, max(before[1], at))
                )
    return out


def _leaf_index(table: LeafTable) -> dict[tuple[str, ...], int]:
    """Each leaf's position in ``table`` by its values (as a report names it)."""
    return {
        tuple(table.labels[d][c] for d, c in enumerate(row)): i
        for i, row in enumerate(table.codes.tolist())
    }


def _merge_exposure(
    table: LeafTable, index: Mapping[tuple[str, ...], int], reports: Sequence[ShardReport]
) -> LeafExposure | None:
    if not reports or any(CARRIES_EXPOSURE not in r.carries for r in reports):
        return None
    n_leaves = len(table.total)
    reported = np.zeros(n_leaves)
    counted = np.zeros((n_leaves, EXPOSURE_BINS))
    failing = np.zeros((n_leaves, EXPOSURE_BINS))
    silence = np.zeros((n_leaves, EXPOSURE_BINS))  # none from a shard of an older version
    open_ = np.zeros((n_leaves, EXPOSURE_BINS))  # likewise
    for report in reports:
        for leaf in report.leaves:
            i = index.get(leaf.values)
            if i is None:
                continue
            reported[i] += leaf.reported
            for out, bins in (
                (counted, leaf.exposure),
                (failing, leaf.failing_exposure),
                (silence, leaf.silence_exposure),
                (open_, leaf.open_exposure),
            ):
                if bins:
                    out[i, bins[0] : bins[0] + len(bins) - 1] += bins[1:]
    return LeafExposure(reported, counted, failing, silence, open_)


def _merge_extras(
    table: LeafTable, index: Mapping[tuple[str, ...], int], reports: Sequence[ShardReport]
) -> tuple[np.ndarray | None, dict[int, ChurnPart], MergedEvidence | None]:
    """The optional counts of ``reports`` summed per leaf of ``table``: recoveries of
    the shards that count them; evidence only when every one carries it (a sum missing a
    shard's part would look like a drop)."""
    n_leaves = len(table.total)
    with_recovery = [r for r in reports if CARRIES_RECOVERY in r.carries]
    recovered = np.zeros(n_leaves) if with_recovery else None
    parts: dict[int, list[ChurnPart]] = {}
    for report in with_recovery:
        for leaf in report.leaves:
            i = index.get(leaf.values)
            if i is None:  # a leaf only SIMs that sent data again are in
                continue
            assert recovered is not None
            recovered[i] += leaf.recovered
            if leaf.churn is not None and leaf.churn.sims:
                parts.setdefault(i, []).append(leaf.churn)
    churn = {i: ChurnPart.merge(p) for i, p in parts.items()}
    if not reports or any(CARRIES_EVIDENCE not in r.carries for r in reports):
        return recovered, churn, None
    k = len(KIND_NAMES)
    late, awaiting = np.zeros(n_leaves), np.zeros(n_leaves)
    arrived, only_moved = np.zeros(n_leaves), np.zeros(n_leaves)
    kinds, usual = np.zeros((k, n_leaves)), np.zeros((k, n_leaves))
    causes: dict[int, dict[str, Counter[str]]] = {}
    for report in reports:
        for leaf in report.leaves:
            i = index.get(leaf.values)
            if i is None:
                continue
            late[i] += leaf.late
            awaiting[i] += leaf.awaiting
            arrived[i] += leaf.arrived
            only_moved[i] += leaf.only_moved
            if leaf.kinds:
                kinds[:, i] += leaf.kinds
            if leaf.usual:
                usual[:, i] += leaf.usual
            for kind, counts in leaf.causes.items():
                causes.setdefault(i, {}).setdefault(kind, Counter()).update(counts)
    return (
        recovered,
        churn,
        MergedEvidence(late, awaiting, kinds, usual, causes, arrived, only_moved),
    )


class MergedNoise:
    """Each leaf's noise learned on the merged counts, as one node learns it on its own
    (``GroupBaseline``: over-dispersion and history peak, from every cycle outside an
    open incident). A shard's own learning does not add up: a node holds a part of each
    leaf, and a small part's counts scatter unlike the whole's (its residuals at a tiny
    expected count are heavy-tailed; its peaks come at other times). So whoever merges
    learns on the sums: its ``localize`` then tests a bursty leaf's count against that
    leaf's noise, as one node's does. Leaves are kept by their values (a merge's table
    orders them as the reports come); another set of dimensions starts afresh."""

    def __init__(self, params: BaselineParams | None = None) -> None:
        self.params = params
        self.baseline = GroupBaseline(params)
        self.dims: tuple[str, ...] = ()
        self.index: dict[tuple[str, ...], int] = {}

    def _rows(self, table: LeafTable) -> np.ndarray:
        """The learner's row of each leaf of ``table`` (new leaves appended)."""
        if table.dims != self.dims:
            self.baseline = GroupBaseline(self.params)
            self.dims = table.dims
            self.index = {}
        index = self.index
        return np.fromiter(
            (index.setdefault(key, len(index)) for key in _leaf_index(table)),
            dtype=np.int64,
            count=len(table.total),
        )

    def apply(self, table: LeafTable) -> LeafTable:
        """``table`` with each leaf's learned over-dispersion and history peak."""
        rows = self._rows(table)
        n = len(self.index)
        dispersion = self.baseline.dispersion(n)[rows]
        peak = self.baseline.peak_share(n)[rows] * table.total
        return replace(table, dispersion=dispersion, peak=peak)

    def learn(
        self,
        now: float,
        interval_s: float,
        table: LeafTable,
        frozen: Iterable[Mapping[str, str]] = (),
    ) -> None:
        """Learn one merged cycle (a complete one: a sum missing a shard is no level),
        except the leaves of the groups ``frozen`` (the open group incidents' dims)."""
        rows = self._rows(table)
        n = len(self.index)
        affected, total, expected = np.zeros(n), np.zeros(n), np.zeros(n)
        affected[rows] = table.affected
        total[rows] = table.total
        expected[rows] = table.expected
        inside = np.zeros(len(rows), bool)
        for dims in frozen:
            inside |= table.leaves_of(dims)
        still = np.zeros(n, bool)
        still[rows] = inside
        self.baseline.update(
            now, interval_s, affected=affected, total=total, expected=expected, frozen=still
        )

    def export(self) -> tuple[dict[str, np.ndarray], dict[str, object]]:
        """Copies of what it learned (a checkpoint of the leader's engine)."""
        arrays, meta = self.baseline.export()
        return arrays, {**meta, "dims": list(self.dims), "leaves": [list(k) for k in self.index]}

    def restore(self, arrays: Mapping[str, np.ndarray], meta: Mapping[str, object]) -> None:
        """Load ``export()``'s output; ``ValueError`` when malformed."""
        dims, leaves = meta.get("dims"), meta.get("leaves")
        if not isinstance(dims, list) or not all(isinstance(d, str) for d in dims):
            raise ValueError("merged noise: dims must be a list of names")
        if not isinstance(leaves, list) or not all(
            isinstance(v, list) and len(v) == len(dims) and all(isinstance(x, str) for x in v)
            for v in leaves
        ):
            raise ValueError("merged noise: leaves must be lists of one value per dim")
        self.baseline.restore(arrays, meta)
        self.dims = tuple(dims)
        self.index = {tuple(v): i for i, v in enumerate(leaves)}


@dataclass(frozen=True, slots=True)
class MergeCycle:
    """One merged cycle: what was merged, the causes, the incident changes.

    ``decided`` is False when fewer than ``min_shards`` shards were usable (reported for
    this instant, warmed up, not an outlier): then no localization ran and the incidents
    were left exactly as they were.
    """

    merged: Merged
    causes: list[Cause]
    changes: list[IncidentChange]
    decided: bool


class Merger:
    """Localization and incidents over the merged counts of ``shards`` shards.

    ``min_shards`` (default: all) usable shards (``Merged.included``) are needed to
    decide; with fewer, the
    cycle changes nothing (an open incident neither resolves nor grows on partial data,
    and nothing opens). The shards being random samples of every group, deciding on
    fewer shards is sound but weaker: lower ``min_shards`` to keep detecting while a
    shard is down, at the cost of counts that cover only part of the fleet.
    """

    def __init__(
        self,
        shards: int,
        *,
        min_shards: int | None = None,
        localize_params: LocalizeParams = _DEFAULT_LOCALIZE,
        incident_params: IncidentParams | None = None,
        outlier_params: OutlierParams = _DEFAULT_OUTLIERS,
        eval_params: EvalParams | None = None,
        interval_s: float = 60.0,
    ) -> None:
        if shards < 1:
            raise ValueError(f"shards must be at least 1, got {shards}")
        min_shards = shards if min_shards is None else min_shards
        if not 1 <= min_shards <= shards:
            raise ValueError(f"min_shards must be within 1..{shards}, got {min_shards}")
        self.shards = shards
        self.min_shards = min_shards
        self.localize_params = localize_params
        self.outlier_params = outlier_params
        self.incidents = IncidentTracker(incident_params)
        # the shards' evaluation parameters and cycle: the incidents' recovery onsets
        self.eval_params = eval_params if eval_params is not None else EvalParams()
        self.interval_s = interval_s
        self.noise = MergedNoise()  # each leaf's noise, learned on the sums

    def cycle(self, reports: Iterable[ShardReport], *, at: float | None = None) -> MergeCycle:
        merged = merge_reports(reports, self.shards, at=at, outlier_params=self.outlier_params)
        if len(merged.included) < self.min_shards:
            # no decision, but the SIMs the usable shards saw come back did come back
            advance_recoveries(
                self.incidents.open.values(),
                merged,
                self.eval_params,
                self.interval_s,
                churn=False,
            )
            return MergeCycle(merged, [], [], decided=False)
        merged = replace(merged, table=self.noise.apply(merged.table))
        causes = merged_causes(merged, self.localize_params)
        if merged.complete:
            frozen = [i.dims for i in self.incidents.open.values()]
            self.noise.learn(merged.evaluated_at, self.interval_s, merged.table, frozen)

        def rest(parent: Mapping[str, str], children: Sequence[Mapping[str, str]]) -> Rest:
            return merged.rest_verdict(parent, children, self.localize_params)

        changes = self.incidents.update_groups(
            merged.evaluated_at,
            causes,
            rest if merged.exposure is not None else None,
            merged.within,
            excess=merged.excess_in,
        )
        advance_recoveries(self.incidents.open.values(), merged, self.eval_params, self.interval_s)
        return MergeCycle(merged, causes, changes, decided=True)


def advance_recoveries(
    incidents: Iterable[Incident],
    merged: Merged,
    params: EvalParams,
    interval_s: float,
    *,
    churn: bool = True,
) -> None:
    """The recovery of the open group ``incidents`` (``core.recovery``) from the shards'
    summed recovery counts and churners, at the merged instant; nothing when no shard
    counts them (an older version).

    A merge without a decision (a shard missing, stale, warming or an outlier) still
    counts the SIMs its usable shards saw come back (``churn=False``): they came back
    whoever else reported, and a fault's end that fell in a shard's outage was otherwise
    never counted (each shard counts a SIM once, in the cycle it came back). Fewer
    shards count fewer SIMs, so such a cycle can only set an onset later than a complete
    one would, never sooner. The churn stop waits for a complete merge: it judges the
    quiet between every churner's restarts, which a part of them would overstate."""
    recovered = merged.recovered
    if recovered is None:
        return
    at = merged.evaluated_at
    for incident in incidents:
        if incident.kind != "group" or incident.resolved_at is not None:
            continue
        leaves = merged.leaves_of(incident.dims)
        part = merged.churn_of(leaves)

        def stop_at(part: ChurnPart = part) -> float:
            return churn_stop(part, at, params)

        advance_recovery(
            incident,
            at,
            float(recovered[leaves].sum()),
            stop_at if churn and part.sims else None,
            params=params,
            interval_s=interval_s,
        )


__all__ = [
    "LeafCounts",
    "MergeCycle",
    "Merged",
    "MergedEvidence",
    "MergedNoise",
    "Merger",
    "OutlierParams",
    "ShardOutlier",
    "ShardReport",
    "advance_recoveries",
    "heard_json",
    "merge_heard",
    "merge_reports",
    "merged_causes",
    "parse_heard",
    "shard_of",
    "shard_outliers",
    "shard_report",
]
