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

import numpy as np

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

    from simwatch.core.columnar import RecordColumns
    from simwatch.core.operators import OperatorTable
    from simwatch.core.records import Record
    from simwatch.core.state import FleetState

_KIND_NAMES = ("usage", "session", "event")  # columnar.KIND_CODES, in code order
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
        row = self._row(record.iccid)
        r = record
        self._apply_row(
            row, r.kind, r.ts, r.bytes_up, r.bytes_down, r.apn, r.mcc, r.mnc, r.rat,
            r.operator, r.status, r.end_cause, r.event_type, r.cause,
        )  # fmt: skip
        self.stats.applied += 1
        self.stats.by_kind[r.kind] += 1
        return True

    def apply_columns(self, cols: RecordColumns) -> np.ndarray:
        """Apply a batch of decoded records in order: the same state as ``apply`` on each
        (``tests/test_ingest_batch.py``). Returns per record whether it was applied
        (False: a duplicate delivery).

        Per batch: the duplicate filter on all record ids at once (``seen_many``), the
        ICCID index on all ICCIDs at once (``get_many``), the columns read into Python
        lists once; then each fresh record goes through the one per-record apply."""
        n = len(cols)
        applied = ~self.dedup.seen_many(cols.record_id)
        fresh = np.flatnonzero(applied)
        self.stats.duplicates += n - fresh.size
        if fresh.size == 0:
            return applied
        pick = fresh.tolist()
        whole = fresh.size == n

        def column(values: list[str | None]) -> list[str | None]:
            return values if whole else [values[i] for i in pick]

        iccids = cols.iccid if whole else [cols.iccid[i] for i in pick]
        rows = self.state.index.get_many(iccids)
        for j in np.flatnonzero(rows < 0).tolist():
            rows[j] = self._row(iccids[j])
        kinds = cols.kind[fresh]
        by_kind = np.bincount(kinds, minlength=3)
        apply_row = self._apply_row
        for row, kind, ts, up, down, apn, mcc, mnc, rat, op, status, end_cause, ev, cause in zip(
            rows.tolist(),
            [_KIND_NAMES[k] for k in kinds.tolist()],
            cols.ts[fresh].tolist(),
            cols.bytes_up[fresh].tolist(),
            cols.bytes_down[fresh].tolist(),
            column(cols.apn),
            column(cols.mcc),
            column(cols.mnc),
            column(cols.rat),
            column(cols.operator),
            column(cols.status),
            column(cols.end_cause),
            column(cols.event_type),
            column(cols.cause),
            strict=True,
        ):
            apply_row(row, kind, ts, up, down, apn, mcc, mnc, rat, op, status, end_cause, ev, cause)
        stats = self.stats
        stats.applied += fresh.size
        for code, count in enumerate(by_kind.tolist()):
            if count:
                stats.by_kind[_KIND_NAMES[code]] += count
        return applied

    def _row(self, iccid: str) -> int:
        state = self.state
        row = state.index.get(iccid)
        if row < 0:  # a new SIM, or one known by the other form of its ICCID
            known = len(state)
            row = state.ensure_row(iccid)
            if len(state) > known:
                self.stats.unknown_sims += 1
        return row

    def _apply_row(  # noqa: PLR0917 - per record on the hot path: plain positional values
        self,
        row: int,
        kind: str,
        ts: float,
        bytes_up: int,
        bytes_down: int,
        apn: str | None,
        mcc: str | None,
        mnc: str | None,
        rat: str | None,
        operator: str | None,
        status: str | None,
        end_cause: str | None,
        event_type: str | None,
        cause: str | None,
    ) -> None:
        """The one per-record apply (after dedup and the row lookup)."""
        state = self.state
        t = int(ts) - EPOCH_BASE
        if mcc is not None or apn is not None or rat is not None:
            self._attributes(row, t, apn, mcc, mnc, rat, operator)
        elif state.mv["attrs_at"][row] == NEVER and state.cols.leaf[row] < 0:
            # no network attributes yet (usage-only feeds: KORE, Cisco): grouped by its
            # inventory values (customer, plan...), the record dimensions unknown
            state.refresh_leaf(row)
        if kind == "usage":
            total = bytes_up + bytes_down
            if total > 0:
                state.rhythm.observe(row, ts)
                flags = state.mv["flags"]
                flags[row] |= HAS_USAGE
                self._add_month_bytes(row, ts, total)
        elif kind == "session":
            self._session(row, t, ts, status, bytes_up + bytes_down, end_cause)
        else:
            self._event(row, t, event_type, apn, cause)

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

    def _attributes(  # noqa: PLR0917 - per record on the hot path: plain positional values
        self,
        row: int,
        t: int,
        apn: str | None,
        mcc: str | None,
        mnc: str | None,
        rat: str | None,
        operator: str | None,
    ) -> None:
        state = self.state
        mv = state.mv
        attrs_at = mv["attrs_at"]
        seen_at = attrs_at[row]
        if t < seen_at:
            return  # a late record: newer attributes are already known
        changed = seen_at == NEVER
        attrs_at[row] = t
        moved = False
        if apn is not None:
            code = state.apns.code(apn)
            column = mv["apn"]
            if code != column[row]:
                column[row] = code
                changed = True
        if mcc is not None and mnc is not None:
            partner = mcc + mnc
            code = state.partners.code(partner)
            column = mv["partner"]
            if code != column[row]:
                moved = column[row] != 0  # it left a known partner (steering, roaming)
                column[row] = code
                mv["country"][row] = self._country_code(code, mcc)
                changed = True
            if operator:
                self.partner_names[partner] = operator
        if rat is not None:
            code = state.rats.code(rat)
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

    def _session(  # noqa: PLR0917 - per record on the hot path: plain positional values
        self, row: int, t: int, ts: float, status: str | None, total: int, end_cause: str | None
    ) -> None:
        state = self.state
        mv = state.mv
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
        if status == "ended" and end_cause in FAILURE_END_CAUSES:
            cols = state.cols
            if t >= cols.fail_at[row]:
                cols.fail_at[row] = t
                cols.fail_cause[row] = state.causes.code(end_cause)

    def _event(
        self, row: int, t: int, kind: str | None, apn: str | None, cause: str | None
    ) -> None:
        cols = self.state.cols
        if kind in ("auth_failure", "pdp_reject") or kind in POLICY_REJECTS:
            if t < cols.reject_at[row]:
                return  # a late reject: the newer one already describes the SIM
            if cols.reject_at[row] == NEVER or t - cols.reject_at[row] > REJECT_MEMORY_S:
                cols.reject_count[row] = 0
            cols.reject_count[row] = min(int(cols.reject_count[row]) + 1, 65535)
            cols.reject_at[row] = t
            cols.reject_kind[row] = AUTH_FAILURE if kind == "auth_failure" else PDP_REJECT
            cols.reject_apn[row] = self.state.apns.code(apn)
            if kind in POLICY_REJECTS:
                cause = f"{kind}: {cause}" if cause else kind
            cols.reject_cause[row] = self.state.causes.code(cause)
        elif kind in ("detach", "purge", "throttled") and t >= cols.session_start[row]:
            cols.session_open[row] = 0


def _int(value: object) -> int:
    if isinstance(value, int | float):
        return int(value)
    raise ValueError(f"not a count: {value!r}")


__all__ = ["IngestStats", "Ingestor"]
