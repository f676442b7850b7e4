"""Applying decoded records to the fleet state.

One job: turn a valid ``Record`` into column updates. Deduplication happens here too
(a repeated ``record_id`` counts once), so every caller — replay, the file and MQTT
sources, the REST pollers — gets the same semantics.

Out-of-order records (minutes late) are applied correctly: data times only ever move a
SIM's last-data time forward, attributes are taken from the newest record that carries
them, and session bookkeeping compares event times rather than arrival order.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from simwatch.core import regime
from simwatch.core.dedup import Deduplicator
from simwatch.core.records import MAX_COUNT
from simwatch.core.state import (
    EPOCH_BASE,
    NEVER,
    Flag,
    RejectKind,
)
from simwatch.core.timeutil import month_of

if TYPE_CHECKING:
    from collections.abc import Mapping

    import numpy as np

    from simwatch.core.operators import OperatorTable
    from simwatch.core.records import Record
    from simwatch.core.state import FleetState

REJECT_MEMORY_S = 86_400  # a reject run is forgotten after a day without rejects

# Plain ints for the hot path: attribute access on an Enum class is slow in 3.11.
HAS_USAGE = int(Flag.HAS_USAGE)
AUTH_FAILURE = int(RejectKind.AUTH_FAILURE)
PDP_REJECT = int(RejectKind.PDP_REJECT)
# The platforms' refusals (FORMATS.md attach_reject, blocked, quota_exhausted) refuse data
# like a pdp_reject; the cause keeps the type as a prefix ("quota_exhausted: <cause>") so
# the diagnosis names it (core.diagnosis.POLICY_REJECTS).
POLICY_REJECTS = frozenset({"attach_reject", "blocked", "quota_exhausted"})
# Session end causes that are the network's failure evidence (FORMATS.md ``end_cause``);
# ``unknown`` is not: platforms without a cause (Cisco's missed sessions) write it.
FAILURE_END_CAUSES = frozenset({"network_failure"})


@dataclass(slots=True)
class IngestStats:
    applied: int = 0
    duplicates: int = 0
    unknown_sims: int = 0  # records for SIMs not in the inventory (they are tracked anyway)
    by_kind: Counter[str] = field(default_factory=Counter)


class Ingestor:
    """Applies records to a ``FleetState``; keeps the partner names given by records."""

    def __init__(
        self,
        state: FleetState,
        operators: OperatorTable,
        *,
        dedup_capacity: int = 2_000_000,
    ) -> None:
        self.state = state
        self.operators = operators
        self.dedup = Deduplicator(dedup_capacity)
        self.stats = IngestStats()
        self.partner_names: dict[str, str] = {}  # names given in records win over the table
        self._country_of_partner: dict[int, int] = {0: 0}
        self._month_cache: tuple[int, int, int] = (0, 0, -1)  # (start, end, month) of last lookup

    def apply(self, record: Record) -> bool:
        """Apply one record. Returns False when it was a duplicate delivery."""
        if self.dedup.seen(record.record_id):
            self.stats.duplicates += 1
            return False
        state = self.state
        row = state.index.get(record.iccid)
        if row < 0:  # a new SIM, or one known by the other form of its ICCID
            known = len(state)
            row = state.ensure_row(record.iccid)
            if len(state) > known:
                self.stats.unknown_sims += 1
        ts = record.ts
        t = int(ts) - EPOCH_BASE
        if record.mcc is not None or record.apn is not None or record.rat is not None:
            self._attributes(row, t, record)
        elif state.mv["attrs_at"][row] == NEVER and state.cols.leaf[row] < 0:
            # no network attributes yet (usage-only feeds: KORE, Cisco): grouped by its
            # inventory values (customer, plan...), the record dimensions unknown
            state.refresh_leaf(row)
        kind = record.kind
        if kind == "usage":
            total = record.bytes_up + record.bytes_down
            if record.start is not None:
                self._regime(row, t, record.start)
            if total > 0:
                state.rhythm.observe(row, ts)
                flags = state.mv["flags"]
                flags[row] |= HAS_USAGE
                self._add_month_bytes(row, ts, total)
        elif kind == "session":
            self._session(row, t, ts, record)
        else:
            self._event(row, t, record)
        self.stats.applied += 1
        self.stats.by_kind[kind] += 1
        return True

    # ---- checkpoint -------------------------------------------------------------------

    def export(
        self, *, lists: bool = False
    ) -> tuple[dict[str, np.ndarray | list[int]], dict[str, object]]:
        """The dedup memory (int64 arrays, or with ``lists`` plain lists of ints, a faster
        copy to convert later), counters and partner names (for a checkpoint)."""
        current: np.ndarray | list[int]
        old: np.ndarray | list[int]
        current, old = self.dedup.key_lists() if lists else self.dedup.export()
        stats = self.stats
        meta: dict[str, object] = {
            "applied": stats.applied,
            "duplicates": stats.duplicates,
            "unknown_sims": stats.unknown_sims,
            "by_kind": dict(stats.by_kind),
            "partner_names": dict(self.partner_names),
        }
        return {"dedup.current": current, "dedup.old": old}, meta

    def restore(self, arrays: Mapping[str, np.ndarray], meta: Mapping[str, object]) -> None:
        """Load ``export()``'s output; ``ValueError`` when malformed."""
        self.dedup.restore(arrays["dedup.current"], arrays["dedup.old"])
        by_kind = meta.get("by_kind", {})
        names = meta.get("partner_names", {})
        if not isinstance(by_kind, dict) or not isinstance(names, dict):
            raise TypeError("malformed ingest counters in checkpoint")
        self.stats = IngestStats(
            applied=_int(meta.get("applied", 0)),
            duplicates=_int(meta.get("duplicates", 0)),
            unknown_sims=_int(meta.get("unknown_sims", 0)),
            by_kind=Counter({str(k): _int(v) for k, v in by_kind.items()}),
        )
        self.partner_names = {str(k): str(v) for k, v in names.items()}
        self._country_of_partner = {0: 0}

    # ---- parts ------------------------------------------------------------------------

    def _attributes(self, row: int, t: int, record: Record) -> None:
        state = self.state
        mv = state.mv
        attrs_at = mv["attrs_at"]
        seen_at = attrs_at[row]
        if t < seen_at:
            return  # a late record: newer attributes are already known
        changed = seen_at == NEVER
        attrs_at[row] = t
        moved = False
        if record.apn is not None:
            code = state.apns.code(record.apn)
            column = mv["apn"]
            if code != column[row]:
                column[row] = code
                changed = True
        mcc = record.mcc
        if mcc is not None and record.mnc is not None:
            partner = mcc + record.mnc
            code = state.partners.code(partner)
            column = mv["partner"]
            if code != column[row]:
                moved = column[row] != 0  # it left a known partner (steering, roaming)
                column[row] = code
                mv["country"][row] = self._country_code(code, mcc)
                changed = True
            if record.operator:
                self.partner_names[partner] = record.operator
        if record.rat is not None:
            code = state.rats.code(record.rat)
            column = mv["rat"]
            if code != column[row]:
                column[row] = code
                changed = True
        if changed:
            cols = state.cols
            left = int(cols.leaf[row])
            state.refresh_leaf(row)
            if moved and left >= 0:
                cols.prev_leaf[row] = left
                cols.moved_at[row] = t

    def _regime(self, row: int, t: int, start: float) -> None:
        cols = self.state.cols
        start_rel = int(start) - EPOCH_BASE
        seen = regime.classify_usage(start_rel, t, cols.session_starts[row])
        cols.regime[row] = regime.updated(int(cols.regime[row]), seen)

    def _country_code(self, partner_code: int, mcc: str) -> int:
        found = self._country_of_partner.get(partner_code)
        if found is None:
            country = self.operators.country(mcc) or f"MCC{mcc}"
            found = self.state.countries.code(country)
            self._country_of_partner[partner_code] = found
        return found

    def _add_month_bytes(self, row: int, ts: float, total: int) -> None:
        t = int(ts)
        start, end, month = self._month_cache
        if not start <= t < end:
            month = month_of(ts)
            d = datetime.fromtimestamp(ts, tz=UTC)
            first = datetime(d.year, d.month, 1, tzinfo=UTC)
            nxt = datetime(d.year + d.month // 12, d.month % 12 + 1, 1, tzinfo=UTC)
            start, end = int(first.timestamp()), int(nxt.timestamp())
            self._month_cache = (start, end, month)
        mv = self.state.mv
        months = mv["month"]
        current = months[row]
        if month > current:
            months[row] = month
            mv["month_bytes"][row] = min(total, MAX_COUNT)
        elif month == current:
            column = mv["month_bytes"]
            column[row] = min(column[row] + total, MAX_COUNT)  # saturate, never overflow
        # older months: a very late record; this month's usage is unaffected

    def _session(self, row: int, t: int, ts: float, record: Record) -> None:
        state = self.state
        mv = state.mv
        status = record.status
        session_start = mv["session_start"]
        if status == "started":
            ring = state.cols.session_starts[row]
            if t not in ring:
                oldest = int(ring.argmin())
                ring[oldest] = max(ring[oldest], t)
            if t >= session_start[row]:
                mv["session_open"][row] = 1
                session_start[row] = t
                mv["session_bytes"][row] = 0
            return
        total = record.bytes_up + record.bytes_down
        if t >= session_start[row]:
            session_bytes = mv["session_bytes"]
            previous = session_bytes[row]
            total = min(total, MAX_COUNT)
            if total > previous:
                # A grown running total proves data *somewhere* since the last report,
                # not at `ts`; usage records say when. So session totals are the data
                # evidence only of SIMs whose feed has no usage records.
                if not mv["flags"][row] & HAS_USAGE:
                    state.rhythm.observe(row, ts)
                    self._add_month_bytes(row, ts, total - previous)
                session_bytes[row] = total
            if status == "ended":
                mv["session_open"][row] = 0
        if status == "ended" and t > state.cols.session_end[row]:
            state.cols.session_end[row] = t
        if status == "ended" and record.end_cause in FAILURE_END_CAUSES:
            cols = state.cols
            if t >= cols.fail_at[row]:
                cols.fail_at[row] = t
                cols.fail_cause[row] = state.causes.code(record.end_cause)

    def _event(self, row: int, t: int, record: Record) -> None:
        cols = self.state.cols
        kind = record.event_type
        if kind in ("auth_failure", "pdp_reject") or kind in POLICY_REJECTS:
            if t < cols.reject_at[row]:
                return  # a late reject: the newer one already describes the SIM
            if cols.reject_at[row] == NEVER or t - cols.reject_at[row] > REJECT_MEMORY_S:
                cols.reject_count[row] = 0
            cols.reject_count[row] = min(int(cols.reject_count[row]) + 1, 65535)
            cols.reject_at[row] = t
            cols.reject_kind[row] = AUTH_FAILURE if kind == "auth_failure" else PDP_REJECT
            cols.reject_apn[row] = self.state.apns.code(record.apn)
            cause = record.cause
            if kind in POLICY_REJECTS:
                cause = f"{kind}: {cause}" if cause else kind
            cols.reject_cause[row] = self.state.causes.code(cause)
        elif kind in ("detach", "purge", "throttled") and t >= cols.session_start[row]:
            cols.session_open[row] = 0
            cols.session_end[row] = max(int(cols.session_end[row]), t)


def _int(value: object) -> int:
    if isinstance(value, int | float):
        return int(value)
    raise ValueError(f"not a count: {value!r}")


__all__ = ["IngestStats", "Ingestor"]
