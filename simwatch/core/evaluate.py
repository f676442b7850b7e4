"""One evaluation cycle: per-SIM states and explanations, per-leaf counts, localization.

A SIM counts as failing in its group when it is overdue by its own rhythm, or when the
network's own evidence says so (:class:`Evidence`: a failure end, a reject, churn,
leaving its partner) within ``evidence_window_s`` and neither data nor a new session
has come since: a group fault the network reports is seen in minutes, not after the
SIMs' rhythms run out.

Pure analysis over the fleet state at a given ``now`` (time is an argument): vectorized
over all SIMs with numpy, then over the leaf groups. Nothing here changes the state; the
engine decides what to learn and which incidents to open from the result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Final, TypeAlias

import numpy as np

from simwatch.core import regime
from simwatch.core.hourmask import DAY
from simwatch.core.localize import Cause, LeafTable, LocalizeParams, dims_within, localize
from simwatch.core.rhythm import SimState
from simwatch.core.schedule import SOURCES, Schedule
from simwatch.core.state import EPOCH_BASE, NEVER, Flag, RejectKind, Status, rel
from simwatch.core.timeutil import month_of

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping

    from simwatch.core.state import FleetState

INACTIVE = 4
STATE_NAMES = ("ok", "late", "silent", "never_seen", "inactive")


class Why:
    """Bit flags of per-SIM explanations computed each cycle (plain ints: numpy-friendly)."""

    WRONG_APN: Final = 1
    AUTH_FAILURE: Final = 2
    PDP_REJECT: Final = 4
    DATA_CAP: Final = 8
    CHURN: Final = 16
    # re-opened its session ``churn_group_starts`` times in the churn window with no data
    # (or dropped): too few for the SIM's own finding, group evidence (``Evidence.CHURN``)
    RESTARTING: Final = 32


class Evidence:
    """Bit flags of the network's own failure evidence per SIM (plain ints: numpy-friendly).

    What the network says before a SIM is overdue by its rhythm: the SIM's session ended
    with a failure cause, or its attach / PDP request was refused, with no data since;
    it re-opened sessions again and again (churn); it left its partner for another.
    """

    FAILURE_END: Final = 1
    REJECT: Final = 2
    CHURN: Final = 4
    MOVED: Final = 8
    DARK: Final = 16


EVIDENCE_NAMES: Final = (
    (Evidence.FAILURE_END, "failure_end"),
    (Evidence.REJECT, "reject"),
    (Evidence.CHURN, "churn"),
    (Evidence.MOVED, "moved"),
    (Evidence.DARK, "dark"),
)
# kinds of evidence whose leading value an incident's evidence names, and its key there:
# the leading cause of failure ends and refusals, the partner most SIMs that left went to
NAMED_EVIDENCE: Final = {
    "failure_end": "failure_end_cause",
    "reject": "reject_cause",
    "moved": "moved_to",
}
# the row of the ``moved`` kind in per-kind tables (``Evaluation.leaf_kinds``)
_MOVED: Final = [name for _, name in EVIDENCE_NAMES].index("moved")
# dimensions a session-level fleet's darkness is looked for in (``dark_rows``)
_DARK_DIMS: Final = ("country", "partner", "apn")
# per-SIM policy refusals (the diagnosis names them), never a group's network evidence
_POLICY_CAUSES: Final = ("quota_exhausted", "blocked")
# session starts since a recovery's onset that show a churner still churning
_CHURN_AGAIN: Final = 2
# ``EvalParams.evidence_window_s`` by default (a merged table is judged as a shard's)
_EVIDENCE_WINDOW_S: Final = 3600.0

# What other nodes of a cluster heard of each group a session-level fleet's darkness is
# looked for in: per dimension, per value, (the summed record rate of its session-level
# SIMs, per second; the last time any of its SIMs was heard, epoch s). The leader sums
# the nodes' rates and keeps the latest time (``core.merge``); every node judges its own
# SIMs' groups on the fleet's figures (``dark_rows``), as one node holding them all would.
HeardElsewhere: TypeAlias = "Mapping[str, Mapping[str, tuple[float, float]]]"


@dataclass(frozen=True, slots=True)
class EvalParams:
    reject_window_s: float = 6 * 3600.0  # rejects older than this no longer explain silence
    # A SIM whose data sessions are refused with at least this share of its monthly cap
    # seen has reached its cap: the platform counts bytes simwatch never saw (before it
    # watched, or still in an open session's next record).
    cap_refused_share: float = 0.9
    # Session churn: this many session starts within the window. A scheduled reset is one
    # a day; "four drops in an hour" is an outage — and so is the same count over two
    # hours, which also catches devices that flap every 20-30 minutes.
    churn_window_s: float = 7200.0
    churn_starts: int = 4
    # ... and as group evidence, judged against the group's usual level of it: this many
    # (a black hole shows in the group before each device has churned four times)
    churn_group_starts: int = 3
    # churn is group evidence while it goes on: the last start at most 1.5 times the recent
    # time between starts ago, or this long
    churn_quiet_min_s: float = 600.0
    # How long the network's failure evidence makes a SIM count as failing in its group:
    # a failure end or a reject while no data has come and no session was accepted since,
    # leaving a partner while it has not come back. An hour bridges the time until the
    # SIMs that stayed silent are overdue by their rhythm, so an incident opened on
    # evidence does not flap.
    evidence_window_s: float = _EVIDENCE_WINDOW_S
    # A session-level SIM (one usage record per session) whose last session has been
    # closed this long without a new one is late, then silent. A scheduled reset or a
    # detach re-opens within minutes; a coverage gap or a dead device does not.
    session_closed_late_s: float = 1800.0
    session_closed_silent_s: float = 7200.0
    # A windowed SIM (usage summed per clock window, delivered after it closes) that was
    # overdue and is back on the network (a new session after its old one died without
    # an end record, or after a failure end or reject) shows its data only when the
    # window closes: for this long after the new session it does not count as failing.
    windowed_recovery_s: float = 4500.0
    # A SIM that left its partner stays evidence against it beyond ``evidence_window_s``,
    # up to this long, while that partner stays dark (``_left_dark_partner``).
    moved_dark_hold_s: float = 6 * 3600.0
    # A group (one country, partner or APN) with session-level SIMs is dark when no
    # record came from any SIM in it for ``dark_rate_s`` over its session-level SIMs'
    # summed record rate (a Poisson count that low has probability e^-10, and their
    # usage records alone understate their rate) and at least ``dark_min_s``: its
    # session-level SIMs count as failing (a session-level fleet shows nothing else of
    # a silent outage while it lasts).
    dark_rate_s: float = 6.0
    dark_min_s: float = 1200.0
    # The end of a fault that SIMs show only by reporting again (a black hole, a country
    # outage) shows first where the fastest reporters are. Once, within
    # ``recovery_window_s``, at least ``recovery_min`` and ``recovery_share`` of an open
    # incident's peak of failing SIMs sent data again, its recovery has begun (the
    # incident's ``recovery_onset``): from then on a SIM of its group without data since
    # counts as failing only once it is late again counted from the onset (its own late
    # threshold), not by a silence the fault's end cannot have ended yet.
    recovery_window_s: float = 900.0
    recovery_min: int = 5
    recovery_share: float = 0.1
    # An onset is void once the incident's failing count grows past this many times its
    # peak at the onset, plus ``recovery_min``: the fault was still spreading (5 SIMs of
    # a 5,000-SIM partner reporting again beside the first 11 silent ones of its black
    # hole is the group's usual turnover, not the fault's end)
    recovery_regrowth: float = 2.0
    # ... and after the incident resolved, for this long (beyond any late threshold)
    recovery_hold_s: float = 2 * 86400.0
    # A black hole's end shows on session-level SIMs only as their churn stopping
    # (``churn_stopped``): once no churning SIM of an incident re-opened a session for so
    # long that their rhythms make it this unlikely (Poisson, in nats), and for longer
    # than ``churn_stop_slack`` times the longest quiet between their starts in the
    # window; or once more of them went ``churn_stop_slack`` times their own longest
    # recent gap without a new start than ``churn_stop_share`` of them (the usual while
    # they churn), by a Poisson count this unlikely, and at least ``recovery_min``.
    churn_stop_slack: float = 1.25
    churn_stop_share: float = 0.1
    churn_stop_nats: float = 9.2  # e^-9.2 = 1e-4


@dataclass(slots=True)
class Evaluation:
    now: float
    n: int
    states: np.ndarray  # int8 per SIM: SimState values, or INACTIVE
    why: np.ndarray  # uint8 per SIM: Why bit flags
    counted: np.ndarray  # bool per SIM: active, seen, judged (rhythm learned, or dropped)
    overdue: np.ndarray  # bool per SIM: counted, late or silent, and not explained per SIM
    evidence: np.ndarray  # uint8 per SIM: Evidence bit flags (counted SIMs only)
    # bool per SIM: overdue, but in a group whose recovery has begun and not late again
    # counted from its onset (``awaiting_report``): neither failing nor overdue this cycle
    awaiting: np.ndarray
    member_leaf: np.ndarray  # int32 per SIM: its leaf in this cycle's group counts
    leaf_total: np.ndarray  # float64 per leaf
    leaf_affected: np.ndarray
    leaf_expected: np.ndarray
    # (len(EVIDENCE_NAMES), n_leaves) float64: per kind of evidence, the SIMs of each
    # leaf showing it (counted where they count: a SIM that moved, in the leaf it left)
    leaf_kinds: np.ndarray
    # float64 per leaf: SIMs that moved into it within ``evidence_window_s`` (their
    # departures count as ``moved`` in the leaf they left): ``net_moves``
    leaf_arrived: np.ndarray
    # float64 per leaf: of ``leaf_affected``, the SIMs failing only because they left it
    # (not overdue, no other evidence): what ``net_moves`` takes back
    leaf_only_moved: np.ndarray
    causes: list[Cause]
    # the per-leaf counts ``causes`` were localized on (moves netted); None: not localized
    table: LeafTable | None = None
    # a cluster node's: what it heard of each group (``groups_heard``) at this cycle, for
    # its report (``core.merge.shard_report``); None on one node
    heard: HeardElsewhere | None = None

    def state_counts(self) -> dict[str, int]:
        counts = np.bincount(self.states.astype(np.int64), minlength=len(STATE_NAMES))
        return {name: int(counts[i]) for i, name in enumerate(STATE_NAMES)}

    @property
    def failing(self) -> np.ndarray:
        """Bool per SIM: failing in its group this cycle (overdue, or by the network's
        evidence): what ``leaf_affected`` counts."""
        failing: np.ndarray = self.overdue[: self.n] | (self.evidence[: self.n] != 0)
        return failing

    def members(self, leaves: np.ndarray) -> np.ndarray:
        """Bool per SIM: counted in this cycle's group counts, in one of ``leaves`` (a
        bool mask per leaf; a SIM that moved counts in the leaf it left)."""
        leaf = self.member_leaf[: self.n]
        inside = self.counted[: self.n] & (leaf >= 0)
        inside[inside] = leaves[leaf[inside]]
        return inside


def sim_states(
    state: FleetState,
    now: float,
    params: EvalParams | None = None,
    *,
    session_rows: np.ndarray | None = None,
) -> np.ndarray:
    """Per-SIM state codes: the rhythm model's, with non-active inventory SIMs INACTIVE
    (and, in a cluster, the SIMs of partitions another node reads: ``Flag.AWAY``).

    A session-level SIM (``core.regime``) is judged by its sessions instead: OK while a
    session is open, LATE once its last session has been closed for
    ``session_closed_late_s`` without a new one, SILENT after ``session_closed_silent_s``.
    Where a SIM has an expectation the user set (``set_expectations``), that judges it.
    ``session_rows``: ``session_level_rows(state)`` when the caller has them.
    """
    n = len(state)
    states = state.rhythm.classify(now, n).astype(np.int8, copy=True)
    rows = session_level_rows(state) if session_rows is None else session_rows
    if rows.size:
        p = params or EvalParams()
        c = state.cols
        closed_for = rel(now) - np.maximum(c.session_end[rows], c.session_start[rows])
        shut = (c.session_open[rows] == 0) & (c.session_start[rows] != NEVER)
        by_session = np.where(
            shut & (closed_for >= p.session_closed_silent_s),
            np.int8(SimState.SILENT),
            np.where(shut & (closed_for >= p.session_closed_late_s), SimState.LATE, SimState.OK),
        ).astype(np.int8)
        states[rows] = by_session
    rows = np.flatnonzero((state.cols.expect_interval[:n] > 0) | (state.cols.expect_hours[:n] > 0))
    if rows.size:
        judged = set_expectations(state, now, rows)
        states[judged.rows] = judged.states
    away = (state.cols.flags[:n] & Flag.AWAY) != 0
    states[(state.cols.status[:n] != Status.ACTIVE) | away] = INACTIVE
    return states


def session_level_rows(state: FleetState) -> np.ndarray:
    """Rows of SIMs whose data regime is session level and that have shown a session."""
    n = len(state)
    c = state.cols
    rows = np.flatnonzero(regime.regime_of(c.regime[:n]) == regime.SESSION)
    if rows.size:
        rows = rows[c.session_start[rows] != NEVER]
    return rows


@dataclass(frozen=True, slots=True)
class Judged:
    """SIMs judged by a set expectation: parallel arrays (seen SIMs only)."""

    rows: np.ndarray
    states: np.ndarray  # int8 SimState
    elapsed: np.ndarray  # seconds that count (in active hours where they are set)
    late: np.ndarray  # thresholds (float32)
    silent: np.ndarray


_CHUNK = 16384  # rows per pass: the temporaries stay in cache (as in the rhythm model)


def set_expectations(state: FleetState, now: float, rows: np.ndarray) -> Judged:
    """Judge ``rows`` (SIMs with a set expectation) at ``now``: an expected interval
    gives the thresholds (``RhythmModel.interval_thresholds``) instead of the learned
    ones; active hours make only the time inside them count, so a SIM is never late
    because of the time outside them (one already late stays late until it reports)."""
    last = state.rhythm.last_data[rows]
    seen = ~np.isnan(last)
    if not seen.all():
        rows, last = rows[seen], last[seen]
    size = len(rows)
    states = np.empty(size, np.int8)
    elapsed = np.empty(size, np.float64)
    late = np.empty(size, np.float32)
    silent = np.empty(size, np.float32)
    clocks: dict[int, tuple[Schedule, float]] = {}
    for lo in range(0, size, _CHUNK):
        hi = min(lo + _CHUNK, size)
        chunk = rows[lo:hi]
        out = (elapsed, late, silent)
        _judge(state, now, rows=chunk, last=last[lo:hi], clocks=clocks, out=out, at=lo)
        cut = slice(lo, hi)
        np.greater_equal(elapsed[cut], late[cut], out=states[cut].view(np.bool_))
        states[cut] += elapsed[cut] >= silent[cut]
    return Judged(rows, states, elapsed, late, silent)


def _judge(
    state: FleetState,
    now: float,
    *,
    rows: np.ndarray,
    last: np.ndarray,
    clocks: dict[int, tuple[Schedule, float]],
    out: tuple[np.ndarray, np.ndarray, np.ndarray],
    at: int,
) -> None:
    """``set_expectations`` over one chunk: elapsed time that counts, thresholds, into
    ``out`` from index ``at``."""
    c = state.cols
    elapsed, late, silent = (a[at : at + len(rows)] for a in out)
    interval = c.expect_interval[rows]
    has = interval > 0
    if has.all():  # a set interval for every one: the learned thresholds are not needed
        late[:], silent[:] = state.rhythm.interval_thresholds(interval)
    else:
        late[:], silent[:] = state.rhythm.thresholds_of(rows)
        if has.any():
            late[has], silent[has] = state.rhythm.interval_thresholds(interval[has])
    np.subtract(now, last, out=elapsed)
    codes = c.expect_hours[rows]
    first = int(codes[0])
    used = [first] if (codes == first).all() else np.unique(codes).tolist()
    for code in used:
        if code == 0:
            continue
        if code not in clocks:
            schedule = state.schedule(code)
            clocks[code] = (schedule, float(schedule.active_clock(np.array([now]), now)[0]))
        schedule, at_now = clocks[code]
        if len(used) == 1:  # one schedule for the whole chunk: no selection
            np.subtract(at_now, schedule.active_clock(last, now), out=elapsed)
            continue
        sel = codes == code
        elapsed[sel] = at_now - schedule.active_clock(last[sel], now)


def expectation_of(state: FleetState, row: int, now: float) -> dict[str, object]:
    """Which expectation judges a SIM, for the per-SIM view: the interval (set, and from
    where: ``inventory``, ``plan``, ``customer``; or ``learned``), the active hours (set,
    or ``learned`` when the rhythm found a daytime pattern, see ``rhythm``) and, where
    something is set, the thresholds and the time that counts now."""
    c = state.cols
    interval = float(c.expect_interval[row])
    code = int(c.expect_hours[row])
    source = int(c.expect_from[row])
    schedule = state.schedule(code) if code else None
    out: dict[str, object] = {
        "interval_s": interval or None,
        "interval_from": SOURCES[source & 3],
        "active_hours": None if schedule is None else schedule.text,
        "timezone": None if schedule is None else schedule.timezone,
        "hours_from": SOURCES[(source >> 2) & 3],
        "in_active_hours": None if schedule is None else schedule.is_active(now),
    }
    if interval or schedule is not None:
        judged = set_expectations(state, now, np.array([row], np.int64))
        if judged.rows.size:
            out["late_after_s"] = float(judged.late[0])
            out["silent_after_s"] = float(judged.silent[0])
            out["elapsed_s"] = float(judged.elapsed[0])
    return out


def explanations(state: FleetState, now: float, params: EvalParams) -> np.ndarray:
    """Per-SIM ``Why`` flags: what, for this SIM alone, explains that it has no data."""
    n = len(state)
    c = state.cols
    now_rel = rel(now)
    why = np.zeros(n, np.uint8)
    last = state.rhythm.last_data[:n]
    last_rel = np.where(np.isnan(last), float(NEVER), last - EPOCH_BASE)
    reject_at = c.reject_at[:n]
    recent = (reject_at != NEVER) & (reject_at > now_rel - params.reject_window_s)
    rows = np.flatnonzero(recent)
    recent[rows[sent_after(state, rows, reject_at[rows])]] = False  # data since the reject
    kinds = c.reject_kind[:n]
    why[recent & (kinds == RejectKind.PDP_REJECT)] |= Why.PDP_REJECT
    for row in np.flatnonzero(recent & (kinds == RejectKind.AUTH_FAILURE)):
        allowed = state.allowed_apns(int(row))
        if allowed and int(c.reject_apn[row]) not in allowed:
            why[row] |= Why.WRONG_APN
        else:
            why[row] |= Why.AUTH_FAILURE
    cap = c.data_cap[:n]
    this_month = (cap >= 0) & (c.month[:n] == month_of(now))
    capped = this_month & (c.month_bytes[:n] >= cap)
    capped |= (
        this_month
        & ((why & Why.PDP_REJECT) != 0)
        & (c.month_bytes[:n] >= params.cap_refused_share * cap)
    )
    why[capped] |= Why.DATA_CAP
    ring = c.session_starts[:n]
    starts = recent_start_counts(ring, now_rel, params.churn_window_s)
    # Re-opened sessions are churn when the network dropped them (a failure end in the
    # window) or when they carry no data: a device that opens a session for each report
    # and sends data in it (session-level platforms) is not churning.
    rows = np.flatnonzero(starts >= min(params.churn_starts, params.churn_group_starts))
    if rows.size:
        dropped = c.fail_at[rows] > now_rel - params.churn_window_s
        no_data = last_rel[rows] < _first_recent_start(ring[rows], now_rel, params)
        rows = rows[dropped | no_data]
        why[rows[starts[rows] >= params.churn_starts]] |= Why.CHURN
        why[rows[starts[rows] >= params.churn_group_starts]] |= Why.RESTARTING
    return why


def recent_start_counts(ring: np.ndarray, now_rel: int, window_s: float) -> np.ndarray:
    """Per row of session-start rings (``cols.session_starts``), its starts within
    ``window_s`` before ``now_rel``: ``((ring != NEVER) & (ring > now_rel - window_s) &
    (ring <= now_rel)).sum(axis=1)``, found from one pass over the flat ring (few SIMs
    started a session lately; a sum along rows of six is slow in numpy)."""
    n, width = ring.shape
    flat = ring.reshape(-1)
    slots = np.flatnonzero(flat > now_rel - window_s)
    values = flat[slots]
    slots = slots[(values <= now_rel) & (values != NEVER)]
    counts: np.ndarray = np.bincount(slots // width, minlength=n)
    return counts


def _recent_starts(
    state: FleetState, rows: np.ndarray, now_rel: int, params: EvalParams
) -> np.ndarray:
    """Per SIM of ``rows``, its session starts within ``churn_window_s`` (relative
    seconds, float) and NaN in the other slots of its ring."""
    ring: np.ndarray = state.cols.session_starts[rows].astype(np.float64)
    ring[(ring <= now_rel - params.churn_window_s) | (ring > now_rel)] = np.nan
    return ring


def churn_rhythm(
    state: FleetState, rows: np.ndarray, now_rel: int, params: EvalParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per SIM of ``rows`` with at least one start within ``churn_window_s``: its first
    and latest start there and the mean time between its starts (its rhythm of
    re-opening)."""
    ring = _recent_starts(state, rows, now_rel, params)
    first = np.nanmin(ring, axis=1)
    latest = np.nanmax(ring, axis=1)
    count = np.count_nonzero(~np.isnan(ring), axis=1)
    cadence = (latest - first) / np.maximum(count - 1, 1)
    return first, latest, cadence


def churn_stopped(state: FleetState, rows: np.ndarray, now: float, params: EvalParams) -> float:
    """When the churning SIMs ``rows`` (of one incident) stopped re-opening sessions;
    NaN while they may still be churning. Two tests, either suffices:

    - the group's silence: no start from any of them for so long that their rhythms of
      re-opening make it a Poisson chance of ``EvalParams.churn_stop_nats``, and longer
      than ``churn_stop_slack`` times the group's longest quiet between starts in the
      window. A fleet's devices report on the same clock ticks, so a large group's
      starts come in bursts with quiet minutes between them, which the Poisson count
      alone takes for the end once the group has a few hundred churners;
    - each SIM on its own clock: so many of them went ``churn_stop_slack`` times their
      own rhythm without a new start that a group still churning (``churn_stop_share``
      of its churners that late) shows that count with a chance of ``churn_stop_nats``.
      Many churners reach this soon after the end, however their starts bunch.

    The same as ``churn_stop(churn_part(...))``: a cluster's shards send the part of
    their churners and the leader merges them (``ChurnPart.merge``).
    """
    return churn_stop(churn_part(state, rows, now, params), now, params)


@dataclass(frozen=True, slots=True)
class ChurnPart:
    """What ``churn_stopped`` needs of a set of churning SIMs, summable over sets (a
    cluster's shards): those with a rhythm of re-opening (``churn_group_starts`` starts
    in the window), the sum of their rates (1 / rhythm), the distinct times of their
    starts in the window (epoch s, sorted), how many of them are stopped at the
    instant it was taken (``churn_stop_slack`` of their own rhythm without a start),
    and the latest start of those (epoch s; NaN: none)."""

    sims: int = 0
    rate: float = 0.0
    starts: tuple[float, ...] = ()
    stopped: int = 0
    stopped_last: float = math.nan

    @staticmethod
    def merge(parts: Iterable[ChurnPart]) -> ChurnPart:
        parts = [p for p in parts if p.sims]
        if not parts:
            return ChurnPart()
        if len(parts) == 1:
            return parts[0]
        lasts = [p.stopped_last for p in parts if not math.isnan(p.stopped_last)]
        return ChurnPart(
            sims=sum(p.sims for p in parts),
            rate=math.fsum(p.rate for p in parts),
            starts=tuple(sorted({t for p in parts for t in p.starts})),
            stopped=sum(p.stopped for p in parts),
            stopped_last=max(lasts) if lasts else math.nan,
        )


def _churn_rings(
    state: FleetState, rows: np.ndarray, now_rel: int, params: EvalParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Of ``rows``, those with a rhythm of re-opening: their positions in ``rows``, their
    sorted start rings (NaN last), rhythms and last starts (relative seconds)."""
    ring = _recent_starts(state, rows, now_rel, params)
    # a rhythm needs three starts; a pair of starts close together (a reset, a re-attach)
    # is no rhythm of re-opening. Each SIM's rhythm is taken as its longest gap between
    # starts in the window (a device whose gaps vary must not look stopped in its long
    # ones) and never shorter than ``churn_quiet_min_s``.
    keep = np.flatnonzero(np.count_nonzero(~np.isnan(ring), axis=1) >= params.churn_group_starts)
    ring = ring[keep]
    ring.sort(axis=1)  # NaN last: the gaps between consecutive starts
    if not len(ring):
        empty = np.zeros(0)
        return keep, ring, empty, empty
    rhythm = np.maximum(np.nanmax(np.diff(ring, axis=1), axis=1), params.churn_quiet_min_s)
    return keep, ring, rhythm, np.nanmax(ring, axis=1)


def _part_of(
    ring: np.ndarray, rhythm: np.ndarray, own_last: np.ndarray, now_rel: int, params: EvalParams
) -> ChurnPart:
    if not len(ring):
        return ChurnPart()
    stopped = now_rel - own_last >= params.churn_stop_slack * rhythm
    starts = np.unique(ring[~np.isnan(ring)]) + EPOCH_BASE
    return ChurnPart(
        sims=len(ring),
        rate=math.fsum((1.0 / rhythm).tolist()),
        starts=tuple(starts.tolist()),
        stopped=int(np.count_nonzero(stopped)),
        stopped_last=float(own_last[stopped].max()) + EPOCH_BASE if stopped.any() else math.nan,
    )


def churn_part(state: FleetState, rows: np.ndarray, now: float, params: EvalParams) -> ChurnPart:
    """The ``ChurnPart`` of the churning SIMs ``rows`` at ``now``."""
    now_rel = rel(now)
    _, ring, rhythm, own_last = _churn_rings(state, rows, now_rel, params)
    return _part_of(ring, rhythm, own_last, now_rel, params)


def churn_parts(
    state: FleetState, rows: np.ndarray, leaves: np.ndarray, now: float, params: EvalParams
) -> dict[int, ChurnPart]:
    """Per leaf (``leaves``: the leaf of each of ``rows``), the ``ChurnPart`` of the
    churning SIMs ``rows`` in it; leaves without a SIM with a rhythm of re-opening are
    left out."""
    now_rel = rel(now)
    keep, ring, rhythm, own_last = _churn_rings(state, rows, now_rel, params)
    leaf = leaves[keep]
    out: dict[int, ChurnPart] = {}
    for code in np.unique(leaf).tolist():
        mine = leaf == code
        out[int(code)] = _part_of(ring[mine], rhythm[mine], own_last[mine], now_rel, params)
    return out


def churn_stop(part: ChurnPart, now: float, params: EvalParams) -> float:
    """``churn_stopped``'s decision on the summary of the churners (see there)."""
    if part.sims < params.recovery_min:
        return math.nan
    now_rel = rel(now)
    last = part.starts[-1] - EPOCH_BASE
    quiet = now_rel - last
    unlikely = quiet * part.rate >= params.churn_stop_nats
    # the longest quiet between the starts: the same over distinct times
    gap = float(np.diff(part.starts).max()) if len(part.starts) > 1 else 0.0
    if unlikely and quiet > params.churn_stop_slack * gap:
        return last + EPOCH_BASE
    count = part.stopped
    usual = params.churn_stop_share * part.sims
    if count < params.recovery_min or count <= usual:
        return math.nan
    if count * math.log(count / usual) - (count - usual) < params.churn_stop_nats:
        return math.nan
    return part.stopped_last


def _first_recent_start(ring: np.ndarray, now_rel: int, params: EvalParams) -> np.ndarray:
    """Per row of session-start rings, the first start within ``churn_window_s``."""
    recent = (ring > now_rel - params.churn_window_s) & (ring <= now_rel)
    first: np.ndarray = np.where(recent, ring, np.iinfo(np.int32).max).min(axis=1)
    return first


def windowed_recovering(
    state: FleetState, now: float, overdue: np.ndarray, why: np.ndarray, params: EvalParams
) -> np.ndarray:
    """Bool per SIM: an overdue windowed SIM that is back on the network
    (``back_on_network``) and whose data cannot show before its window closes
    (``EvalParams.windowed_recovery_s``); not while it churns.
    """
    n = len(state)
    c = state.cols
    out = np.zeros(n, bool)
    rows = np.flatnonzero(overdue & (regime.regime_of(c.regime[:n]) == regime.WINDOWED))
    if not rows.size:
        return out
    fresh = (rel(now) - c.session_start[rows] <= params.windowed_recovery_s) & (
        (why[rows] & Why.CHURN) == 0
    )
    out[rows[fresh & back_on_network(state, rows)]] = True
    return out


def sent_after(state: FleetState, rows: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Bool per row: the SIM's latest data was sent after ``at`` (relative s). A
    per-report record is sent at its time (its start is when the device began to
    measure); a usage window or a session's record holds data sent anywhere in it, so
    its start must be after ``at``. A window that began before ``at`` may hold only data
    sent before: at 2,000 SIMs (R2 ``apn_country`` seed 1) the 08:00-08:15 windows of
    SIMs the network refused at 08:02-08:10 arrived at 08:17-08:20 and took 14 of them
    out of the fault as if back (and, once its recovery was dated by them, every SIM).
    Data stamped ``at`` itself is none since: a session-level feed reports a session's
    volume when it closes, at its end's very second."""
    c = state.cols
    last = state.rhythm.last_data[rows]
    began = c.data_from[rows]
    known = np.where(np.isnan(last), float(NEVER), last - EPOCH_BASE)
    # a per-report SIM, or a state restored from a checkpoint without ``data_from``:
    # the data's time
    per_report = regime.regime_of(c.regime[rows]) == regime.PER_REPORT
    began = np.where(per_report | (began == NEVER), known, began)
    out: np.ndarray = ~np.isnan(last) & (began > at)
    return out


def last_refusal(state: FleetState, rows: np.ndarray) -> np.ndarray:
    """Per row, when the network last ended the SIM's session with a failure cause or
    refused it (relative s; ``NEVER``: never)."""
    c = state.cols
    refused: np.ndarray = np.maximum(c.fail_at[rows], c.reject_at[rows])
    return refused


def back_on_network(state: FleetState, rows: np.ndarray) -> np.ndarray:
    """Bool per row: the SIM's open session started after its last data, replacing one
    that died without an end record (the network it was on went away) or following a
    failure end or a reject after its last data (the network refused it): the network
    takes it again. Not a session its own firmware tore down and re-opened, which a
    black hole causes (those end with a record)."""
    c = state.cols
    start = c.session_start[rows]
    last = state.rhythm.last_data[rows]
    last_rel = np.where(np.isnan(last), float(NEVER), last - EPOCH_BASE)
    ring = c.session_starts[rows]
    previous = np.where(ring < start[:, None], ring, NEVER).max(axis=1)
    died = c.session_end[rows] < previous  # the session before had no end record
    refused_at = last_refusal(state, rows)
    # after the last data was sent (``sent_after``)
    refused = (refused_at != NEVER) & ~sent_after(state, rows, refused_at) & (refused_at <= start)
    back: np.ndarray = (c.session_open[rows] == 1) & (start > last_rel) & (died | refused)
    return back


def awaiting_report(
    state: FleetState,
    now: float,
    *,
    overdue: np.ndarray,
    churning: np.ndarray,
    onset_by_leaf: np.ndarray,
    params: EvalParams,
    refused: np.ndarray | None = None,
) -> np.ndarray:
    """Bool per SIM: overdue, churning or (``refused``) dropped or refused by the
    network, in a leaf whose group's recovery began at ``onset_by_leaf[leaf]`` (epoch s;
    NaN: none), with no data since the onset (nor, for a churning SIM, a second session
    start: a black hole's churn goes on while it lasts, but one start is how a churner
    comes back, its data due at its next report), not refused since the onset (the
    fault goes on for it), and not yet late counted from the onset: its own late
    threshold (``session_closed_late_s`` for a session-level SIM, the set interval's
    where one is set); a churning SIM that is not overdue, until it re-opens a session.

    A SIM the network refused before the onset awaits its next attempt as a silent one
    awaits its next report: devices retry at their own pace, and at 50,000 SIMs the tail
    of late retriers (46 of 12,446 SIMs refused through an APN's outage, 9 min after its
    end) held the page on their refusals from before the end."""
    n = len(state)
    out = np.zeros(n, bool)
    leaf = state.cols.leaf[:n]
    candidates = overdue | churning
    if refused is not None:
        candidates = candidates | refused
    rows = np.flatnonzero(candidates & (leaf >= 0))
    if not rows.size or not onset_by_leaf.size:
        return out
    member = leaf[rows]
    away = overdue[rows] & left_silent(state, rows, now, params)
    member[away] = state.cols.prev_leaf[rows[away]]  # where it counts (``left_silent``)
    at = onset_by_leaf[member]
    keep = ~np.isnan(at)
    rows, at = rows[keep], at[keep]
    last = state.rhythm.last_data[rows]
    keep = np.isnan(last) | (last < at)
    # refused again since the onset (at its second too: the network's word after the
    # recovery began): the fault goes on for this SIM
    keep &= last_refusal(state, rows) < at - EPOCH_BASE
    # a churner re-opens a session once when the fault ends (the data path works again,
    # its next report is due at its own rhythm): only a second start since the onset is
    # churn going on (at 50,000 SIMs, 31 meters of a black hole's partner that re-opened
    # once after its end held the incident 16 min after it)
    starts = state.cols.session_starts[rows]
    again = (starts > (at - EPOCH_BASE)[:, None]).sum(axis=1) >= _CHURN_AGAIN
    keep &= ~churning[rows] | ~again
    rows, at = rows[keep], at[keep]
    if not rows.size:
        return out
    late = state.rhythm.thresholds_of(rows)[0].astype(np.float64)
    interval = state.cols.expect_interval[rows]
    if (interval > 0).any():
        set_late = state.rhythm.interval_thresholds(interval)[0]
        late = np.where(interval > 0, set_late, late)
    session = regime.regime_of(state.cols.regime[rows]) == regime.SESSION
    late[session] = params.session_closed_late_s
    out[rows[now - at < late]] = True
    # a churning SIM that is not overdue stays awaited until it re-opens a session: its
    # churn evidence outlives the churn by up to 1.5 of its rhythms of re-opening
    out[rows[churning[rows] & ~overdue[rows]]] = True
    return out


def left_silent(state: FleetState, rows: np.ndarray, now: float, params: EvalParams) -> np.ndarray:
    """Bool per row: the SIM left its leaf (its partner changed, ``prev_leaf``) within
    ``evidence_window_s`` plus ``moved_dark_hold_s`` before ``now`` and sent no data
    since. Such a SIM, when overdue, counts in the leaf it left: it fell silent there.
    Steered away by a partner's outage, its silence is that outage's, after the partner
    shows life again too (a session-level device's data on its new partner shows only
    when that session closes). Counted in its new leaf, at 50,000 SIMs (R3 partner
    outage, seed 6) 7 trackers steered to the partner's siblings joined 5 late ones of
    their APN at the outage's end and paged ``{apn: iot.trackr, country: DE}`` (12 of
    91) for 3 minutes."""
    c = state.cols
    prev = c.prev_leaf[rows]
    moved_at = c.moved_at[rows]
    since = rel(now) - params.evidence_window_s - params.moved_dark_hold_s
    last = state.rhythm.last_data[rows]
    silent = np.isnan(last) | (last - EPOCH_BASE < moved_at)
    out: np.ndarray = (prev >= 0) & (prev != c.leaf[rows]) & (moved_at > since) & silent
    return out


def network_evidence(
    state: FleetState,
    now: float,
    why: np.ndarray,
    params: EvalParams,
    *,
    session_rows: np.ndarray | None = None,
    elsewhere: HeardElsewhere | None = None,
) -> np.ndarray:
    """Per-SIM ``Evidence`` flags at ``now`` (before the counted / explained filters);
    ``elsewhere``: as in ``dark_rows``.

    Evidence is sparse: one comparison over a column finds the few candidate SIMs, and
    only those are checked further (a few ms at a million SIMs).
    """
    n = len(state)
    c = state.cols
    now_rel = rel(now)
    since = now_rel - params.evidence_window_s  # > NEVER: "never" is never recent
    last = state.rhythm.last_data[:n]
    ev = np.zeros(n, np.uint8)

    def quiet_since(rows: np.ndarray, at: np.ndarray) -> np.ndarray:
        """No data sent (``sent_after``) and no session accepted since ``at``: a new
        session means the network is back."""
        quiet: np.ndarray = ~sent_after(state, rows, at) & (c.session_start[rows] <= at)
        return quiet

    rows = np.flatnonzero(c.fail_at[:n] > since)
    if rows.size:
        rows = rows[quiet_since(rows, c.fail_at[rows])]
        ev[rows] |= Evidence.FAILURE_END
    rows = np.flatnonzero(c.reject_at[:n] > since)
    if rows.size:
        rows = rows[quiet_since(rows, c.reject_at[rows])]
        policy = [
            code
            for code, cause in enumerate(state.causes.values)
            if cause.startswith(_POLICY_CAUSES)
        ]
        if policy:
            rows = rows[~np.isin(c.reject_cause[rows], policy)]
        ev[rows] |= Evidence.REJECT
    # churn is evidence only while the re-opened sessions carry no data: devices that
    # open a session per report (session-level feeds) churn by design and send data
    # and while it goes on: a device whose last session has outlasted 1.5 times its recent
    # rhythm of re-opening stopped churning (a session-level feed shows the data of that
    # session only when it closes, maybe a day later)
    rows = np.flatnonzero(why & (Why.CHURN | Why.RESTARTING))
    if rows.size:  # each has starts in the window (explanations)
        first, latest, cadence = churn_rhythm(state, rows, now_rel, params)
        data = last[rows]
        no_data = np.isnan(data) | (data - EPOCH_BASE < first)
        going_on = now_rel - latest <= np.maximum(1.5 * cadence, params.churn_quiet_min_s)
        ev[rows[no_data & going_on]] |= Evidence.CHURN
    rows = np.flatnonzero(c.moved_at[:n] > since)
    if rows.size:
        prev = c.prev_leaf[rows]
        ev[rows[(prev >= 0) & (prev != c.leaf[rows])]] |= Evidence.MOVED
    rows = _left_dark_partner(state, now, params)
    ev[rows] |= Evidence.MOVED
    ev[dark_rows(state, now, params, session_rows=session_rows, elsewhere=elsewhere)] |= (
        Evidence.DARK
    )
    return ev


def _heard_and_rate(state: FleetState, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per SIM, when it was last heard (relative s; NaN: never): its last record of any
    kind; per row of ``rows`` (session-level SIMs), its record rate (1/s; 0: not learned)."""
    n = len(state)
    c = state.cols
    # each SIM's late threshold (about two of its usual gaps, the spread of its gaps
    # included) stands for its gap: a rate on the low side, never one a burst inflates
    gap = state.rhythm.thresholds_of(rows)[0].astype(np.float64)
    known = state.rhythm.learned(n)[rows]
    rate = np.zeros(len(rows))
    rate[known] = 1.0 / np.clip(gap[known], 60.0, 7 * 86400.0)
    # the last record of any kind per SIM (a feed may leave out the attributes)
    last = state.rhythm.last_data[:n] - EPOCH_BASE
    heard = np.fmax(last, c.attrs_at[:n])
    for column in (c.session_start, c.session_end, c.reject_at, c.fail_at):
        np.fmax(heard, column[:n], out=heard)
    return heard, rate


def _group_rates(
    state: FleetState, rows: np.ndarray, rate: np.ndarray
) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Per dimension a session-level fleet's darkness is looked for in: the dimension,
    every SIM's code in it, and per code the summed ``rate`` of ``rows``."""
    n = len(state)
    for dim in _DARK_DIMS:
        if dim in state.dims:
            column = getattr(state.cols, dim)[:n]
            size = int(column.max(initial=0)) + 1
            yield dim, column, np.bincount(column[rows], weights=rate, minlength=size)


def groups_heard(
    state: FleetState, *, session_rows: np.ndarray | None = None
) -> dict[str, dict[str, tuple[float, float]]]:
    """This fleet's part of ``HeardElsewhere``: per dimension ``dark_rows`` looks in, per
    value any SIM has, its session-level SIMs' summed record rate and when any of its
    SIMs was last heard (epoch s; -inf: never)."""
    rows = session_level_rows(state) if session_rows is None else session_rows
    n = len(state)
    out: dict[str, dict[str, tuple[float, float]]] = {}
    if not n:
        return out
    heard, rate = _heard_and_rate(state, rows)
    heard = np.where(np.isnan(heard), -np.inf, heard)
    for dim, column, group_rate in _group_rates(state, rows, rate):
        size = len(group_rate)
        latest = np.full(size, -np.inf)
        np.maximum.at(latest, column, heard)
        present = np.bincount(column, minlength=size) > 0
        present[0] = False  # no value: not a group
        values = state.dim_values(dim)
        out[dim] = {
            values[code]: (float(group_rate[code]), float(latest[code]) + EPOCH_BASE)
            for code in np.flatnonzero(present).tolist()
        }
    return out


def dark_rows(
    state: FleetState,
    now: float,
    params: EvalParams,
    *,
    session_rows: np.ndarray | None = None,
    elsewhere: HeardElsewhere | None = None,
) -> np.ndarray:
    """Rows of session-level SIMs in a dark group (``EvalParams.dark_rate_s``): a
    country, partner or APN from which no SIM sent any record for far longer than its
    session-level SIMs' record rate makes likely (``session_rows``: as in ``sim_states``).
    ``elsewhere``: what the cluster's other nodes heard of each group (``HeardElsewhere``,
    this node's part included): the group's rate is the fleet's, and a SIM heard on
    another node keeps it alive."""
    rows = session_level_rows(state) if session_rows is None else session_rows
    if not rows.size:
        return rows
    heard, rate = _heard_and_rate(state, rows)
    # A group is alive when a SIM of it was heard within its span. Every span is at
    # least dark_min_s: a SIM heard within that makes its group alive in every dimension,
    # and only the SIMs heard before need their group's own span.
    now_rel = rel(now)
    recent = heard > now_rel - params.dark_min_s
    heard_rows = np.flatnonzero(recent)
    stale_rows = np.flatnonzero(~recent)
    out = []
    for dim, column, group_rate in _group_rates(state, rows, rate):
        heard_there = _heard_elsewhere(state, dim, len(group_rate), elsewhere, group_rate)
        with np.errstate(divide="ignore"):
            span = np.maximum(params.dark_rate_s / group_rate, params.dark_min_s)
        span[0] = np.inf  # no value: not a group
        alive = alive_groups(
            column,
            span,
            heard=heard,
            now_rel=now_rel,
            min_span=params.dark_min_s,
            split=(heard_rows, stale_rows),
        )
        if heard_there is not None:
            alive |= heard_there > now_rel - span
        dark = ~alive & np.isfinite(span)
        if dark.any():
            out.append(rows[dark[column[rows]]])
    if not out:
        return np.zeros(0, np.int64)
    found: np.ndarray = np.unique(np.concatenate(out))
    return found


def _heard_elsewhere(
    state: FleetState,
    dim: str,
    size: int,
    elsewhere: HeardElsewhere | None,
    group_rate: np.ndarray,
) -> np.ndarray | None:
    """Per code of ``dim`` (up to ``size``), when the cluster last heard of the group
    (relative s; -inf: not known); ``group_rate`` raised to the fleet's rate in place."""
    values = elsewhere.get(dim) if elsewhere is not None else None
    if not values:
        return None
    heard = np.full(size, -np.inf)
    for value, (rate, at) in values.items():
        code = state.find_code(dim, value)
        if 0 < code < size:
            group_rate[code] = max(group_rate[code], rate)
            heard[code] = at - EPOCH_BASE
    return heard


def alive_groups(
    column: np.ndarray,
    span: np.ndarray,
    *,
    heard: np.ndarray,
    now_rel: int,
    min_span: float,
    split: tuple[np.ndarray, np.ndarray],
) -> np.ndarray:
    """Bool per group code: a SIM of it (``column``: the SIMs' codes) was heard within
    the group's ``span`` (at least ``min_span``) before ``now_rel``; ``split``: the rows
    heard within ``min_span`` and the others. Where the span is finite, the same as
    ``np.bincount(column[heard > (now_rel - span)[column]], minlength=len(span)) > 0``
    (a group with infinite or NaN span is never dark: its value here is left open)."""
    recent, stale = split
    alive: np.ndarray = np.bincount(column[recent], minlength=len(span)) > 0
    wider = ~alive & np.isfinite(span) & (span > min_span)
    if wider.any():
        stale = stale[wider[column[stale]]]
        group = column[stale]
        alive[group[heard[stale] > (now_rel - span)[group]]] = True
    return alive


def _left_dark_partner(state: FleetState, now: float, params: EvalParams) -> np.ndarray:
    """Rows of SIMs that left their partner before ``evidence_window_s`` but within
    ``moved_dark_hold_s``, while that partner has stayed dark: no record from any SIM
    on it within ``evidence_window_s``. A partner that went down keeps its steered
    devices as evidence until it shows life again (a session-level fleet shows nothing
    else of it); a partner that merely lost a few devices to reselection is not dark."""
    n = len(state)
    c = state.cols
    if "partner" not in state.dims or not n:
        return np.zeros(0, np.int64)
    now_rel = rel(now)
    since = now_rel - params.evidence_window_s
    moved_at = c.moved_at[:n]
    rows = np.flatnonzero((moved_at <= since) & (moved_at > since - params.moved_dark_hold_s))
    if not rows.size:
        return rows
    prev = c.prev_leaf[rows]
    away = (prev >= 0) & (prev != c.leaf[rows])
    rows, prev = rows[away], prev[away]
    if not rows.size:
        return np.zeros(0, np.int64)
    left = state.leaf_codes()[prev, state.dims.index("partner")]
    partner = c.partner[:n]
    # heard: attributes seen, or data received (a usage window's attributes are seen at
    # its start, an hour before it arrives)
    last = state.rhythm.last_data[:n] - EPOCH_BASE
    recent = (c.attrs_at[:n] > since) | (last > since)
    heard = np.bincount(partner[recent], minlength=len(state.partners.values) + 1)
    alive = heard > 0
    out: np.ndarray = rows[~alive[left]]
    return out


def leaf_mask(state: FleetState, dims: Mapping[str, str]) -> np.ndarray:
    """Bool per leaf: the leaf lies inside the group described by ``dims``."""
    codes = state.leaf_codes()
    mask = np.ones(codes.shape[0], bool)
    for dim, value in dims.items():
        if dim not in state.dims:
            return np.zeros(codes.shape[0], bool)
        code = state.find_code(dim, value)
        mask &= codes[:, state.dims.index(dim)] == code
    return mask


def group_failing(state: FleetState, evaluation: Evaluation, dims: Mapping[str, str]) -> np.ndarray:
    """Bool per SIM of ``evaluation``: counted in the group ``dims`` and failing there (a
    SIM that moved, in the group it left): the SIMs a group incident's ``affected`` counts."""
    failing: np.ndarray = evaluation.members(leaf_mask(state, dims)) & evaluation.failing
    return failing


def named_evidence_columns(
    state: FleetState,
) -> tuple[tuple[str, int, np.ndarray, list[str]], ...]:
    """Per kind of ``NAMED_EVIDENCE``: its evidence bit, the per-SIM column that names it
    (codes) and the values of those codes."""
    c = state.cols
    return (
        ("failure_end", Evidence.FAILURE_END, c.fail_cause, state.causes.values),
        ("reject", Evidence.REJECT, c.reject_cause, state.causes.values),
        ("moved", Evidence.MOVED, c.partner, state.partners.values),
    )


def evidence_summary(
    state: FleetState,
    evaluation: Evaluation,
    dims: Mapping[str, str],
    usual_ratio: np.ndarray | None = None,
) -> dict[str, object]:
    """What the failing SIMs of the group ``dims`` show this cycle: counts per kind of
    evidence (a SIM may show several), the leading cause of failure ends and rejects and
    the partner most of the SIMs that left went to (``moved_to``);
    with ``usual_ratio`` (per kind and leaf, the learned share of SIMs showing it at
    this hour of day), ``usual``: how many of the group's SIMs show each kind on a
    normal day at this hour."""
    leaves = leaf_mask(state, dims)
    n = evaluation.n
    inside = evaluation.members(leaves)
    ev = evaluation.evidence[:n]
    failing = inside & evaluation.failing
    out: dict[str, object] = {
        "failing": int(failing.sum()),
        "overdue": int((inside & evaluation.overdue[:n]).sum()),
    }
    awaiting = int((inside & evaluation.awaiting[:n]).sum())
    if awaiting:
        out["awaiting"] = awaiting
    for bit, name in EVIDENCE_NAMES:
        out[name] = int((inside & ((ev & bit) != 0)).sum())
    if usual_ratio is not None:
        counted = leaves[: len(evaluation.leaf_total)]  # leaves added since: none counted
        usual = usual_ratio[:, counted] @ evaluation.leaf_total[counted]
        out["usual"] = {
            name: round(float(value), 1)
            for (_, name), value in zip(EVIDENCE_NAMES, usual, strict=True)
        }
    for name, bit, column, values in named_evidence_columns(state):
        rows = inside & ((ev & bit) != 0)
        if rows.any():
            codes = np.bincount(column[:n][rows])
            top = int(codes.argmax())
            if top > 0:
                out[NAMED_EVIDENCE[name]] = values[top]
    return out


def evaluate(
    state: FleetState,
    now: float,
    expected_ratio: np.ndarray,
    *,
    params: EvalParams,
    localize_params: LocalizeParams,
    localize_groups: bool = True,
    recovery_onset: np.ndarray | None = None,
    kind_ratio: Callable[[int], np.ndarray] | None = None,
    dispersion: np.ndarray | None = None,
    peak_share: np.ndarray | None = None,
    heard_elsewhere: HeardElsewhere | None = None,
) -> Evaluation:
    """Run one cycle at ``now``; ``expected_ratio`` is the learned overdue ratio per leaf,
    ``dispersion`` its learned over-dispersion (``GroupBaseline.dispersion``; None: the
    localization estimates one for the whole fleet only) and ``peak_share`` its history's
    peak failing share (``GroupBaseline.peak_share``; None: none); ``recovery_onset``: per leaf,
    when its open incident's recovery began (NaN: none; see ``awaiting_report``);
    ``kind_ratio(n_leaves)``: per kind of evidence and leaf, its learned usual share
    (``evidence_causes``); ``heard_elsewhere``: in a cluster, what the fleet heard of each
    group (``dark_rows``)."""
    n = len(state)
    c = state.cols
    session_rows = session_level_rows(state)  # nothing changes the state during a cycle
    states = sim_states(state, now, params, session_rows=session_rows)
    why = explanations(state, now, params)
    learned = state.rhythm.learned(n) | (c.expect_interval[:n] > 0)  # set: known rhythm
    if session_rows.size:  # judged by its sessions: known once one was seen
        learned[session_rows] = True
    leaf = c.leaf[:n]
    evidence = network_evidence(
        state, now, why, params, session_rows=session_rows, elsewhere=heard_elsewhere
    )
    # A SIM is in its group's counts when it can be judged: by its learned rhythm, or by
    # the network dropping or refusing its session, whatever the device's rhythm (a daily
    # reporter with one gap seen is never overdue, but its session dropped with a failure
    # cause is evidence like any other). Counting every unlearned SIM with a session open
    # turned a session-level fleet's APN-in-one-country fault into an APN-wide page.
    dropped_or_refused = (evidence & (Evidence.FAILURE_END | Evidence.REJECT)) != 0
    judged = learned | dropped_or_refused
    counted = (states != INACTIVE) & (states != SimState.NEVER_SEEN) & judged & (leaf >= 0)
    explained = (why & (Why.WRONG_APN | Why.DATA_CAP)) != 0
    late = (states == SimState.LATE) | (states == SimState.SILENT)
    overdue = counted & learned & late & ~explained
    overdue &= ~windowed_recovering(state, now, overdue, why, params)
    if recovery_onset is not None:
        churning = (evidence & Evidence.CHURN) != 0
        awaiting = awaiting_report(
            state,
            now,
            overdue=overdue,
            churning=churning,
            onset_by_leaf=recovery_onset,
            params=params,
            refused=dropped_or_refused,
        )
        overdue &= ~awaiting
        evidence[awaiting & churning] &= ~np.uint8(Evidence.CHURN)
        evidence[awaiting & dropped_or_refused] &= ~np.uint8(Evidence.FAILURE_END | Evidence.REJECT)
    else:
        awaiting = np.zeros(n, bool)
    shown = np.flatnonzero(evidence)  # few SIMs: the rest of the work is on them alone
    dropped = ~counted[shown] | explained[shown]
    evidence[shown[dropped]] = 0
    shown = shown[~dropped]
    # a SIM that just left its partner counts, failing, where it left (the evidence is
    # against the partner it left, never the one it went to)
    moved = shown[(evidence[shown] & Evidence.MOVED) != 0]
    # and so does an overdue SIM silent since it left (``left_silent``)
    silent = np.flatnonzero(overdue & (c.moved_at[:n] > NEVER))
    away = np.union1d(moved, silent[left_silent(state, silent, now, params)])
    member_leaf = leaf
    if away.size:
        member_leaf = leaf.copy()
        member_leaf[away] = c.prev_leaf[away]
    failing = overdue
    if shown.size:
        failing = overdue.copy()
        failing[shown] = True
    n_leaves = state.n_leaves
    total = np.bincount(member_leaf[counted], minlength=n_leaves).astype(np.float64)
    affected = np.bincount(member_leaf[failing], minlength=n_leaves).astype(np.float64)
    expected = expected_ratio[:n_leaves] * total
    kinds = np.zeros((len(EVIDENCE_NAMES), n_leaves))
    for k, (bit, _) in enumerate(EVIDENCE_NAMES):
        rows = shown[(evidence[shown] & bit) != 0]
        if rows.size:
            kinds[k] = np.bincount(member_leaf[rows], minlength=n_leaves)
    arrived = np.bincount(leaf[moved], minlength=n_leaves).astype(np.float64)
    only = moved[(evidence[moved] == Evidence.MOVED) & ~overdue[moved]]
    only_moved = np.bincount(member_leaf[only], minlength=n_leaves).astype(np.float64)
    causes: list[Cause] = []
    table = None
    if localize_groups and n_leaves:
        table = LeafTable(
            dims=state.dims,
            codes=state.leaf_codes(),
            labels=state.leaf_labels(),
            affected=affected,
            total=total,
            expected=expected,
            dispersion=None if dispersion is None else dispersion[:n_leaves],
            peak=None if peak_share is None else peak_share[:n_leaves] * total,
        )
        table, net_kinds = net_moves(table, kinds, only_moved=only_moved, arrived=arrived)
        causes = localize(table, localize_params)
        if kind_ratio is not None and (kinds.sum(axis=1) >= localize_params.min_affected).any():
            causes = evidence_causes(
                table,
                causes,
                net_kinds,
                kind_ratio(n_leaves),
                localize_params,
                window_s=params.evidence_window_s,
            )
    return Evaluation(
        now=now,
        n=n,
        states=states,
        why=why,
        counted=counted,
        overdue=overdue,
        evidence=evidence,
        awaiting=awaiting,
        member_leaf=member_leaf,
        leaf_total=total,
        leaf_affected=affected,
        leaf_expected=expected,
        leaf_kinds=kinds,
        leaf_arrived=arrived,
        leaf_only_moved=only_moved,
        causes=causes,
        table=table,
    )


def evidence_causes(
    table: LeafTable,
    causes: list[Cause],
    kinds: np.ndarray,
    ratio: np.ndarray,
    params: LocalizeParams,
    *,
    window_s: float = _EVIDENCE_WINDOW_S,
) -> list[Cause]:
    """``causes`` (localized on the combined failing count) and the causes of each kind
    of the network's evidence against its own usual level.

    The combined count mixes a steady part (a few SIMs of any group are overdue at any
    time) with rare kinds: 13 SIMs leaving a partner in 3 minutes, where half a SIM
    does in an hour, is a fault, but 15 failing where 3.6 are usual is not significant
    yet. Each kind is localized on its own table (its counts per leaf against its
    learned usual share; the false-alarm rate split over the kinds), and a cause found
    there and not already covered by a combined cause is added with the combined
    counts of its group (the incident shows every failing SIM) and its own score. A
    cause of a kind that holds causes of the combined count replaces them: a minute into
    an APN's outage at 50,000 SIMs, the combined count named its five largest countries
    apart (the others had not shown it yet) while the failure ends named the APN, and
    two pages opened for one fault. Nesting here is by dimensions (``dims_within``), not by
    the leaves the fleet has: a kind's partner inside a combined country cause stays a
    cause, for the incidents to judge (the combined count names the country when a few
    SIMs of its other partners happen to be overdue beside a partner's churners; by
    leaves, the exact partner was dropped and the country paged: at 2,000 SIMs, R3
    ``partial_blackhole`` seed 6).

    The false-alarm rate ``alpha`` holds per kind and per day, not per cycle: a kind's
    count is over a sliding window of ``window_s`` (``EvalParams.evidence_window_s``)
    tested every cycle, and each of the day's ``DAY / window_s`` disjoint windows is a
    chance for a clump of a rare kind that means nothing (at 50,000 SIMs: 6 of a leaf's
    107 SIMs reselecting to the sibling partner within 47 minutes, where 0.2 do in an
    hour, paged once in a 5-day run). Bonferroni over the kinds and the day's windows.
    """
    windows = max(1.0, DAY / window_s)
    params_k = replace(params, alpha=params.alpha / (len(EVIDENCE_NAMES) * windows))
    out = list(causes)
    known = [dict(c.dims) for c in causes]
    for k in range(len(EVIDENCE_NAMES)):
        if kinds[k].sum() < params.min_affected:
            continue
        kind_table = LeafTable(
            dims=table.dims,
            codes=table.codes,
            labels=table.labels,
            affected=kinds[k],
            total=table.total,
            expected=ratio[k][: len(table.total)] * table.total,
        )
        for cause in localize(kind_table, params_k):
            dims = dict(cause.dims)
            if any(dims_within(dims, other) for other in known):
                continue  # the same group or one inside a cause already found
            # causes inside this one are parts of it the combined count saw first (a
            # minute into an APN's outage, its largest countries): one cause, the wider
            held = [i for i, other in enumerate(known) if dims_within(other, dims)]
            for i in reversed(held):
                del known[i], out[i]
            inside = table.leaves_of(dims)
            known.append(dims)
            out.append(
                Cause(
                    dims=dims,
                    affected=float(table.affected[inside].sum()),
                    total=float(table.total[inside].sum()),
                    expected=float(table.expected[inside].sum()),
                    score=cause.score,
                )
            )
    return out


def net_moves(
    table: LeafTable, kinds: np.ndarray, *, only_moved: np.ndarray, arrived: np.ndarray
) -> tuple[LeafTable, np.ndarray]:
    """The counts localization judges, with each partner's moves netted: a SIM that left
    a partner counts against it (``Evidence.MOVED``, in the leaf it left) only as far as
    that partner lost more SIMs than it gained in the window.

    Per leaf of ``table`` (``Evaluation``): ``kinds`` per kind of evidence,
    ``only_moved`` the failing SIMs whose move is all they show, ``arrived`` the SIMs
    that moved into it. Each
    partner keeps the share ``max(lost - gained, 0) / lost`` of its departures, on every
    leaf of it; the departures it does not keep leave the ``moved`` count and, where the
    move was all a SIM showed, the failing count. Sums of leaves, so a cluster's leader
    nets the shards' summed counts as one node nets its own (``core.merge``).

    Devices reselect between a country's partners both ways all the time; a burst of it
    is no partner's failure. A partner that fails loses its devices to its siblings and
    gains none (nothing attaches to a network that is down), so its departures stand
    whole, and the sibling they went to is never the one blamed. At 50,000 SIMs (R1
    ``fault_free_week`` seed 4) 10 SIMs left Austria's 23201 for 23203 and 6 went the
    other way within the hour, where 1.7 leave at that hour: the country paged on 16
    departures, a net loss of 4.
    """
    departed = kinds[_MOVED]
    if "partner" not in table.dims or not arrived.any() or not departed.any():
        return table, kinds
    partner = table.codes[:, table.dims.index("partner")].astype(np.int64)
    width = int(partner.max(initial=0)) + 1
    lost = np.bincount(partner, weights=departed, minlength=width)
    gained = np.bincount(partner, weights=arrived, minlength=width)
    share = np.divide(np.maximum(lost - gained, 0.0), lost, out=np.ones(width), where=lost > 0)
    keep = share[partner]
    kinds = kinds.copy()
    kinds[_MOVED] = departed * keep
    affected = np.maximum(table.affected - only_moved * (1.0 - keep), 0.0)
    return replace(table, affected=affected), kinds


_WHY_CODES = (
    (Why.WRONG_APN, "wrong_apn"),
    (Why.AUTH_FAILURE, "auth_failure"),
    (Why.PDP_REJECT, "pdp_reject"),
    (Why.DATA_CAP, "data_cap"),
    (Why.CHURN, "session_churn"),
)


def reason_codes(evaluation: Evaluation, row: int) -> tuple[str, ...]:
    """Finding codes of one SIM from the cycle's vectors (the cheap form of diagnosis)."""
    why = int(evaluation.why[row])
    codes = [code for bit, code in _WHY_CODES if why & bit]
    state = int(evaluation.states[row])
    if state in (SimState.LATE, SimState.SILENT, SimState.NEVER_SEEN):
        codes.append(STATE_NAMES[state])
    return tuple(codes)


def vip_rows(state: FleetState, evaluation: Evaluation) -> np.ndarray:
    """Rows of SIMs tagged vip that are silent (or blocked by a per-SIM cause) now."""
    n = evaluation.n
    vip = (state.cols.flags[:n] & Flag.VIP) != 0
    bad = (evaluation.states == SimState.SILENT) | (
        (evaluation.why & (Why.WRONG_APN | Why.DATA_CAP)) != 0
    )
    return np.flatnonzero(vip & bad & (evaluation.states != INACTIVE))
