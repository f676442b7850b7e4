"""Applying decoded records to the fleet state.

One job: turn a valid ``Record`` into column updates. Deduplication happens here too
(a repeated ``record_id`` counts once), so every caller — replay, the file and MQTT
sources, the REST pollers — gets the same semantics.

Out-of-order records (minutes late) are applied correctly: data times only ever move a
SIM's last-data time forward, attributes are taken from the newest record that carries
them, and session bookkeeping compares event times rather than arrival order.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter
from typing import TYPE_CHECKING

import numpy as np

from simwatch.core import regime
from simwatch.core.arrays import unique_first_inverse
from simwatch.core.dedup import Deduplicator
from simwatch.core.iccid import alternate_form
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
    from simwatch.core.state import FleetState, Interner

_KIND_NAMES = ("usage", "session", "event")  # columnar.KIND_CODES, in code order
# sessions and events over arrays (Ingestor._kind_codes)
_STARTED, _INTERIM, _ENDED = 0, 1, 2
_SESSION_STATUS = {"started": _STARTED, "interim": _INTERIM, "ended": _ENDED}
_EVENT_NONE, _EVENT_AUTH, _EVENT_PDP, _EVENT_CLOSE = 0, 1, 2, 3
SMALL_BATCH = 128  # crossover ~96 records on bench_api's live feed (docs/performance.md)
MIN_ROUND = 32
# the codes (Ingestor._vectorizable) each part of Ingestor._apply_vector reads
_ATTRIBUTE_CODES = ("apn", "partner", "country", "rat", "t", "at", "seen", "leaf")
_SESSION_CODES = ("t", "status", "cause")
_EVENT_CODES = ("t", "event", "cause", "reject_apn")
_ABSENT = -2  # vectorized apply: the record has no such attribute
_UNKNOWN = -1  # vectorized apply: a value not registered yet (Interner.find)
_MONTHS_1970_TO_2020 = 50 * 12  # month_of counts months from January 2020
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
_EVENT_ACTION = {
    "auth_failure": _EVENT_AUTH,
    "pdp_reject": _EVENT_PDP,
    **dict.fromkeys(POLICY_REJECTS, _EVENT_PDP),
    **dict.fromkeys(("detach", "purge", "throttled"), _EVENT_CLOSE),
}


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
        # apply_columns: batches smaller than this go one record at a time (a replay
        # between two evaluation boundaries is often a few dozen records)
        self.small_batch = SMALL_BATCH
        # a SIM's second, third... records of a batch go over arrays (a round per rank)
        # while a round has at least this many records; the rest one at a time
        self.min_round = MIN_ROUND

    def apply(self, record: Record) -> bool:
        """Apply one record. Returns False when it was a duplicate delivery."""
        if self.dedup.seen(record.record_id):
            self.stats.duplicates += 1
            return False
        row = self._row(record.iccid)
        r = record
        self._apply_row(
            row, r.kind, r.ts, r.bytes_up, r.bytes_down, r.apn, r.mcc, r.mnc, r.rat,
            r.operator, r.status, r.end_cause, r.event_type, r.cause, r.start,
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
        if n < self.small_batch:  # the arrays' fixed costs outweigh the records'
            return np.fromiter(map(self.apply, cols.records()), np.bool_, n)
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
        missing = np.flatnonzero(rows < 0)
        if missing.size:
            rows[missing] = self._rows_of_new([iccids[j] for j in missing.tolist()])
        kinds = cols.kind[fresh]
        by_kind = np.bincount(kinds, minlength=3)
        ts_all = cols.ts[fresh]
        start_all = cols.start[fresh]
        up_all = cols.bytes_up[fresh]
        down_all = cols.bytes_down[fresh]
        apn_all, mcc_all, mnc_all = column(cols.apn), column(cols.mcc), column(cols.mnc)
        rat_all, op_all = column(cols.rat), column(cols.operator)
        status_all, end_cause_all = column(cols.status), column(cols.end_cause)
        event_all, cause_all = column(cols.event_type), column(cols.cause)
        extra = self._kind_codes(kinds, status_all, end_cause_all, event_all, cause_all, apn_all)
        static = self._static_codes(
            ts_all, start_all, apn_all, mcc_all, mnc_all, rat_all, op_all, extra
        )
        done = np.zeros(fresh.size, np.bool_)
        alive = static["ok"]
        if alive.any():
            rank, group = _ranks(rows)
            # a SIM's records go over arrays only while every one of them can
            bad = np.zeros(int(group.max()) + 1, np.bool_)
            bad[group[~alive]] = True
            alive = alive & ~bad[group]
            total_all = up_all + down_all
            for r in range(int(rank.max()) + 1):
                pos = np.flatnonzero(alive & (rank == r))
                if pos.size == 0 or (r and pos.size < self.min_round):
                    break  # the rest of these SIMs' records: one at a time, below
                vector, codes = self._vectorizable(rows, pos, static)
                if vector.size:
                    kv = kinds[vector]
                    self._apply_vector(rows[vector], kv, ts_all[vector], total_all[vector], codes)
                    usage = vector[kv == 0]
                    self._regime_vector(rows[usage], codes["t"][kv == 0], start_all[usage])
                    done[vector] = True
                if vector.size < pos.size:  # a new leaf: that SIM's next records one at a time
                    bad[group[np.setdiff1d(pos, vector, assume_unique=True)]] = True
                    alive &= ~bad[group]
        others = np.flatnonzero(~done).tolist()
        if others:  # one at a time, in order: their values as Python scalars
            at = np.asarray(others, np.intp)
            apply_row = self._apply_row
            row_l, kind_l, ts_l = rows[at].tolist(), kinds[at].tolist(), ts_all[at].tolist()
            up_l, down_l = up_all[at].tolist(), down_all[at].tolist()
            start_l = [None if math.isnan(x) else x for x in start_all[at].tolist()]
            for k, i in enumerate(others):
                apply_row(
                    row_l[k], _KIND_NAMES[kind_l[k]], ts_l[k], up_l[k], down_l[k],
                    apn_all[i], mcc_all[i], mnc_all[i], rat_all[i], op_all[i],
                    status_all[i], end_cause_all[i], event_all[i], cause_all[i], start_l[k],
                )  # fmt: skip
        stats = self.stats
        stats.applied += fresh.size
        for code, count in enumerate(by_kind.tolist()):
            if count:
                stats.by_kind[_KIND_NAMES[code]] += count
        return applied

    # ---- vectorized usage records (issue 12) --------------------------------------------

    def _codes(self, table: Interner, values: list[str | None]) -> np.ndarray:
        """Codes of ``values`` in ``table`` without registering: ABSENT for None,
        UNKNOWN for a value not registered yet (a lookup per distinct value)."""
        lut: dict[str | None, int] = {v: (table.find(v) if v else 0) for v in set(values)}
        lut[None] = _ABSENT
        return np.fromiter(map(lut.__getitem__, values), np.int64, len(values))

    def _partner_codes(
        self, mcc: list[str | None], mnc: list[str | None]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Partner codes (ABSENT without MCC or MNC, UNKNOWN when not registered), their
        country codes (UNKNOWN when not cached yet) and whether the MCC is given: MCC
        and MNC factorized apart, then one lookup per distinct pair."""
        mcc_f, mcc_values = _factorize(mcc)
        mnc_f, mnc_values = _factorize(mnc)
        pair = mcc_f * len(mnc_values) + mnc_f
        size = len(mcc_values) * len(mnc_values)
        if size <= 4 * pair.size:  # the pairs present by a mark per possible pair (no sort)
            present = np.zeros(size, np.bool_)
            present[pair] = True
            uniq = np.flatnonzero(present)
            back = np.zeros(size, np.intp)
            back[uniq] = np.arange(uniq.size)
            back = back[pair]
        else:
            uniq, _, back = unique_first_inverse(pair)
        state = self.state
        partner = np.empty(uniq.size, np.int64)
        country = np.empty(uniq.size, np.int64)
        for k, code in enumerate(uniq.tolist()):
            m, n = mcc_values[code // len(mnc_values)], mnc_values[code % len(mnc_values)]
            if m is None or n is None:
                partner[k] = country[k] = _ABSENT
                continue
            found_partner = state.partners.find(m + n)
            partner[k] = found_partner
            found = self._country_of_partner.get(found_partner) if found_partner >= 0 else None
            country[k] = _UNKNOWN if found is None else found
        given = np.array([v is not None for v in mcc_values], np.bool_)
        return partner[back], country[back], given[mcc_f]

    def _static_codes(  # noqa: PLR0917 - the batch's columns, positional
        self,
        ts: np.ndarray,
        start: np.ndarray,
        apn: list[str | None],
        mcc: list[str | None],
        mnc: list[str | None],
        rat: list[str | None],
        operator: list[str | None],
        extra: dict[str, np.ndarray],
    ) -> dict[str, np.ndarray]:
        """Per record of the batch, what does not depend on the state the batch changes:
        ``ok`` (the arrays can apply it: whole-second time, no operator name, nothing
        new to register: every APN, partner, RAT and country it names exists; for
        sessions and events every cause and reject APN, ``_kind_codes``), the codes
        ``apn``, ``partner``, ``country``, ``rat`` (ABSENT: not in the record),
        ``has_attr``, ``t`` (relative time), ``at`` (when the attributes were seen: a usage
        window's start, else the record's time) and the kind's own (``_kind_codes``)."""
        state = self.state
        ok = extra["eligible"] & (ts == np.floor(ts))
        if operator.count(None) != len(operator):
            ok &= np.array([o is None for o in operator], np.bool_)
        apn_c = self._codes(state.apns, apn)
        rat_c = self._codes(state.rats, rat)
        partner_c, country_c, mcc_given = self._partner_codes(mcc, mnc)
        has_attr = (apn_c != _ABSENT) | (rat_c != _ABSENT) | mcc_given
        unknown = (apn_c == _UNKNOWN) | (rat_c == _UNKNOWN) | (partner_c == _UNKNOWN)
        unknown |= country_c == _UNKNOWN
        ok &= ~(has_attr & unknown)
        t = np.where(ok, ts, 0.0).astype(np.int64) - EPOCH_BASE
        windowed = ok & ~np.isnan(start)
        at = t.copy()
        opened = np.floor(start[windowed]).astype(np.int64) - EPOCH_BASE
        at[windowed] = np.minimum(opened, t[windowed])
        return {
            **extra,
            "ok": ok,
            "apn": apn_c,
            "partner": partner_c,
            "country": country_c,
            "rat": rat_c,
            "has_attr": has_attr,
            "t": t,
            "at": at,
        }

    def _vectorizable(
        self, rows: np.ndarray, pos: np.ndarray, static: dict[str, np.ndarray]
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Of the records at ``pos`` (``static["ok"]``, of distinct SIMs), those applied
        over arrays now, and their codes: the leaf each leads to must exist already.

        Such records touch only their own rows and register nothing, so applying them
        before the others (one by one, in order) gives the state of one record at a
        time. The codes: ``_static_codes``'s, ``seen`` (the SIM's attribute time),
        ``applies`` (the record's attributes are newer), ``bare`` (a SIM without
        attributes or leaf yet) and ``leaf`` (the leaf the record leads to, when it
        changes the SIM's dimensions or the SIM is bare; -1 otherwise)."""
        state = self.state
        cols = state.cols
        r = rows[pos]
        apn_c, rat_c = static["apn"][pos], static["rat"][pos]
        partner_c, country_c = static["partner"][pos], static["country"][pos]
        has_attr = static["has_attr"][pos]
        t = static["t"][pos]
        attr_t = static["at"][pos]
        seen = cols.attrs_at[r]
        applies = has_attr & (attr_t >= seen)
        keep = np.ones(pos.size, np.bool_)
        # the leaf each record leads to must exist already
        dims = state.dims
        key = np.stack([state.dim_column(d)[r] for d in dims], axis=1).astype(np.int64)
        changed = applies & (seen == NEVER)
        for name, given, column in (
            ("apn", apn_c, cols.apn),
            ("partner", partner_c, cols.partner),
            ("rat", rat_c, cols.rat),
        ):
            differs = applies & (given >= 0) & (given != column[r])
            changed |= differs
            if name in dims:
                at = dims.index(name)
                key[:, at] = np.where(differs, given, key[:, at])
            if name == "partner" and "country" in dims:
                at = dims.index("country")
                key[:, at] = np.where(differs, country_c, key[:, at])
        bare = ~has_attr & (seen == NEVER) & (cols.leaf[r] < 0)
        check = np.flatnonzero(changed | bare)
        leaf = np.full(pos.size, -1, np.int64)  # the leaf of a record that moves its SIM
        if check.size:
            keys, back = _distinct_rows(key[check])
            find_leaf = state.find_leaf
            leaf[check] = np.array([find_leaf(k) for k in keys], np.int64)[back]
            keep[check] = leaf[check] >= 0
        sel = np.flatnonzero(keep)
        final = pos[sel]
        codes = {
            "apn": apn_c[sel],
            "partner": partner_c[sel],
            "country": country_c[sel],
            "rat": rat_c[sel],
            "t": t[sel],
            "at": attr_t[sel],
            "seen": seen[sel],
            "applies": applies[sel],
            "bare": bare[sel],
            "leaf": leaf[sel],
        }
        for name in ("status", "cause", "event", "reject_apn"):
            codes[name] = static[name][final]
        return final, codes

    def _kind_codes(  # noqa: PLR0917 - the batch's columns, positional
        self,
        kinds: np.ndarray,
        status: list[str | None],
        end_cause: list[str | None],
        event_type: list[str | None],
        cause: list[str | None],
        apn: list[str | None],
    ) -> dict[str, np.ndarray]:
        """Which records the arrays can apply as far as their kind goes (``eligible``),
        and the codes sessions and events need (nothing registered: a cause or a
        reject's APN not known yet leaves the record to ``_apply_row``).

        ``status``: a session's ``_SESSION_STATUS`` code (-1 for other kinds);
        ``event``: an event's ``_EVENT_ACTION`` (-1 for other kinds); ``cause``: the
        failure cause code of an ended session, the reject cause code of a reject
        event (0: none); ``reject_apn``: a reject's APN code."""
        n = kinds.size
        eligible = kinds == 0
        status_c = np.full(n, -1, np.int64)
        event_c = np.full(n, -1, np.int64)
        cause_c = np.zeros(n, np.int64)
        reject_apn = np.zeros(n, np.int64)
        causes = self.state.causes
        apns = self.state.apns
        sessions = np.flatnonzero(kinds == 1)
        if sessions.size:  # one lookup per distinct status and end cause
            picked = sessions.tolist()
            statuses = _pick(status, picked)
            status_c[sessions] = _lookup(
                {v: _SESSION_STATUS.get(v or "", -1) for v in set(statuses)}, statuses
            )
            ends = _pick(end_cause, picked)
            failure = _lookup(
                {c: causes.find(c) if c in FAILURE_END_CAUSES else 0 for c in set(ends)}, ends
            )
            cause_c[sessions] = failure
            eligible[sessions] = (status_c[sessions] >= 0) & (failure >= 0)
        events = np.flatnonzero(kinds == 2)
        if events.size:  # one lookup per distinct (type, cause, APN)
            picked = events.tolist()
            types, texts = _pick(event_type, picked), _pick(cause, picked)
            triples = list(zip(types, texts, _pick(apn, picked), strict=True))
            found: dict[tuple[str | None, str | None, str | None], tuple[int, int, int]] = {}
            for triple in set(triples):
                kind, text, reject_apn_text = triple
                action = _EVENT_ACTION.get(kind, _EVENT_NONE)  # type: ignore[arg-type]
                cause_code = apn_code = 0
                if action in (_EVENT_AUTH, _EVENT_PDP):
                    if kind in POLICY_REJECTS:
                        text = f"{kind}: {text}" if text else kind
                    cause_code = causes.find(text) if text else 0
                    apn_code = apns.find(reject_apn_text) if reject_apn_text else 0
                found[triple] = (action, cause_code, apn_code)
            codes = np.array(list(map(found.__getitem__, triples)), np.int64).reshape(-1, 3)
            event_c[events] = codes[:, 0]
            cause_c[events] = codes[:, 1]
            reject_apn[events] = codes[:, 2]
            eligible[events] = (codes[:, 1] >= 0) & (codes[:, 2] >= 0)
        return {
            "eligible": eligible,
            "status": status_c,
            "event": event_c,
            "cause": cause_c,
            "reject_apn": reject_apn,
        }

    def _apply_vector(
        self,
        rows: np.ndarray,
        kinds: np.ndarray,
        ts: np.ndarray,
        total: np.ndarray,
        codes: dict[str, np.ndarray],
    ) -> None:
        """Records of distinct rows, with everything they refer to registered
        (``_vectorizable``): ``_apply_row`` over arrays (attributes, then the kind's
        own part; the regime of usage records is ``_regime_vector``)."""
        state = self.state
        bare = codes["bare"]
        if bare.any():  # the leaf of their inventory values (refresh_leaf), found already
            state.cols.leaf[rows[bare]] = codes["leaf"][bare]

        def picked(at: np.ndarray, names: tuple[str, ...]) -> dict[str, np.ndarray]:
            return {name: codes[name][at] for name in names}

        applies = np.flatnonzero(codes["applies"])
        if applies.size:
            self._attributes_vector(rows[applies], picked(applies, _ATTRIBUTE_CODES))
        at = np.flatnonzero(kinds == 0)
        if at.size:  # the attributes are applied already: no codes needed
            self._usage_vector(rows[at], ts[at], total[at], codes["at"][at])
        at = np.flatnonzero(kinds == 1)
        if at.size:
            self._sessions_vector(rows[at], ts[at], total[at], picked(at, _SESSION_CODES))
        at = np.flatnonzero(kinds == 2)
        if at.size:
            self._events_vector(rows[at], picked(at, _EVENT_CODES))

    def _sessions_vector(
        self, r: np.ndarray, ts: np.ndarray, total: np.ndarray, codes: dict[str, np.ndarray]
    ) -> None:
        """``_session`` for session records of distinct rows. A running total that grew
        is the data evidence of a SIM without usage records (``HAS_USAGE``): the rhythm
        and the month's bytes, as usage records are for the others."""
        cols = self.state.cols
        t = codes["t"]
        status = codes["status"]
        started = status == _STARTED
        if started.any():
            rs, ts_ = r[started], t[started]
            ring = cols.session_starts[rs]
            fresh = ~(ring == ts_[:, None]).any(axis=1)
            if fresh.any():
                rr, tt = rs[fresh], ts_[fresh]
                oldest = ring[fresh].argmin(axis=1)
                cols.session_starts[rr, oldest] = np.maximum(cols.session_starts[rr, oldest], tt)
            newer = ts_ >= cols.session_start[rs]
            rn = rs[newer]
            cols.session_open[rn] = 1
            cols.session_start[rn] = ts_[newer]
            cols.session_bytes[rn] = 0
        other = ~started
        if not other.any():
            return
        r, t, status, ts = r[other], t[other], status[other], ts[other]
        amount = np.minimum(total[other], MAX_COUNT)
        cause = codes["cause"][other]
        current = t >= cols.session_start[r]
        previous = cols.session_bytes[r].astype(np.int64)
        grown = current & (amount > previous)
        evidence = np.flatnonzero(grown & ((cols.flags[r] & HAS_USAGE) == 0))
        if evidence.size:
            er = r[evidence]
            self.state.rhythm.observe_distinct(er, ts[evidence])
            self._month_bytes_vector(er, ts[evidence], amount[evidence] - previous[evidence])
        cols.session_bytes[r[grown]] = amount[grown]
        ended = status == _ENDED
        cols.session_open[r[current & ended]] = 0
        later = ended & (t > cols.session_end[r])
        cols.session_end[r[later]] = t[later]
        failed = ended & (cause > 0) & (t >= cols.fail_at[r])
        cols.fail_at[r[failed]] = t[failed]
        cols.fail_cause[r[failed]] = cause[failed]

    def _events_vector(self, r: np.ndarray, codes: dict[str, np.ndarray]) -> None:
        """``_event`` for event records of distinct rows (their codes known)."""
        cols = self.state.cols
        t = codes["t"]
        action = codes["event"]
        reject = ((action == _EVENT_AUTH) | (action == _EVENT_PDP)) & (t >= cols.reject_at[r])
        if reject.any():
            rr, tt = r[reject], t[reject]
            at = cols.reject_at[rr].astype(np.int64)
            count = cols.reject_count[rr].astype(np.int64)
            count[(at == NEVER) | (tt - at > REJECT_MEMORY_S)] = 0
            cols.reject_count[rr] = np.minimum(count + 1, 65535)
            cols.reject_at[rr] = tt
            cols.reject_kind[rr] = np.where(action[reject] == _EVENT_AUTH, AUTH_FAILURE, PDP_REJECT)
            cols.reject_apn[rr] = codes["reject_apn"][reject]
            cols.reject_cause[rr] = codes["cause"][reject]
        close = (action == _EVENT_CLOSE) & (t >= cols.session_start[r])
        if close.any():
            rc, tc = r[close], t[close]
            cols.session_open[rc] = 0
            cols.session_end[rc] = np.maximum(cols.session_end[rc], tc)

    def _usage_vector(
        self, rows: np.ndarray, ts: np.ndarray, total: np.ndarray, began: np.ndarray
    ) -> None:
        """The usage part of ``_apply_row`` for usage records of distinct rows (``began``:
        each window's start, else its time; relative s)."""
        state = self.state
        cols = state.cols
        data = np.flatnonzero(total > 0)
        if data.size:
            dr = rows[data]
            latest = state.rhythm.advances_many(dr, ts[data])
            cols.data_from[dr[latest]] = began[data][latest]
            state.rhythm.observe_distinct(dr, ts[data])
            cols.flags[dr] |= np.uint8(HAS_USAGE)
            self._month_bytes_vector(dr, ts[data], np.minimum(total[data], MAX_COUNT))

    def _month_bytes_vector(self, rows: np.ndarray, ts: np.ndarray, amount: np.ndarray) -> None:
        """``_add_month_bytes`` for distinct rows (``amount`` at most MAX_COUNT)."""
        cols = self.state.cols
        months = ts.astype("datetime64[s]").astype("datetime64[M]").astype(np.int64)
        month = months - _MONTHS_1970_TO_2020
        current = cols.month[rows].astype(np.int64)
        newer = month > current
        same = month == current
        cols.month[rows[newer]] = month[newer]
        cols.month_bytes[rows[newer]] = amount[newer]
        sr = rows[same]
        cols.month_bytes[sr] = np.minimum(cols.month_bytes[sr] + amount[same], MAX_COUNT)

    def _attributes_vector(self, r: np.ndarray, codes: dict[str, np.ndarray]) -> None:
        """``_attributes`` for distinct rows whose attributes are newer (codes exist)."""
        state = self.state
        cols = state.cols
        t = codes["t"]
        changed = codes["seen"] == NEVER
        cols.attrs_at[r] = codes["at"]
        apn = codes["apn"]
        differs = (apn >= 0) & (apn != cols.apn[r])
        cols.apn[r[differs]] = apn[differs]
        changed |= differs
        partner = codes["partner"]
        old = cols.partner[r]
        differs = (partner >= 0) & (partner != old)
        moved = differs & (old != 0)  # it left a known partner (steering, roaming)
        cols.partner[r[differs]] = partner[differs]
        cols.country[r[differs]] = codes["country"][differs]
        changed |= differs
        rat = codes["rat"]
        differs = (rat >= 0) & (rat != cols.rat[r])
        cols.rat[r[differs]] = rat[differs]
        changed |= differs
        idx = np.flatnonzero(changed)
        if idx.size:
            cr = r[idx]
            left = cols.leaf[cr].copy()
            cols.leaf[cr] = codes["leaf"][idx]  # existing leaves, found by _vectorizable
            went = moved[idx] & (left >= 0)
            if went.any():
                state.note_moves(cr[went], left[went], t[idx][went])

    def _rows_of_new(self, iccids: list[str]) -> np.ndarray:
        """``_row`` of each ICCID not in the index, in order: found by the other form of
        its ICCID, else new rows in order of first appearance (``IccidIndex.add_many``),
        the columns grown once. A batch holding both forms of a new SIM's ICCID goes one
        at a time (the first form seen makes the row)."""
        state = self.state
        others = [alternate_form(c) for c in iccids]
        new = set(iccids)
        if not new.isdisjoint(others):
            return np.array([self._row(c) for c in iccids], np.int64)
        rows = state.index.get_many([o or c for o, c in zip(others, iccids, strict=True)])
        fresh = np.flatnonzero(rows < 0)
        if fresh.size:
            known = len(state)
            rows[fresh] = state.index.add_many([iccids[j] for j in fresh.tolist()])
            state.ensure_capacity(len(state))
            self.stats.unknown_sims += len(state) - known
        return rows

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
        start: float | None,
    ) -> None:
        """The one per-record apply (after dedup and the row lookup)."""
        state = self.state
        t = int(ts) - EPOCH_BASE
        # when the record's data and attributes began: a usage window's start, else its time
        at = t if start is None else min(t, math.floor(start) - EPOCH_BASE)
        if mcc is not None or apn is not None or rat is not None:
            self._attributes(row, t, at, apn, mcc, mnc, rat, operator)
        elif state.mv["attrs_at"][row] == NEVER and state.cols.leaf[row] < 0:
            # no network attributes yet (usage-only feeds: KORE, Cisco): grouped by its
            # inventory values (customer, plan...), the record dimensions unknown
            state.refresh_leaf(row)
        if kind == "usage":
            total = bytes_up + bytes_down
            if start is not None:
                self._regime(row, t, start)
            if total > 0:
                if state.rhythm.advances(row, ts):
                    state.mv["data_from"][row] = at
                state.rhythm.observe(row, ts)
                flags = state.mv["flags"]
                flags[row] |= HAS_USAGE
                self._add_month_bytes(row, ts, total)
        elif kind == "session":
            self._session(row, t, ts, status, bytes_up + bytes_down, end_cause)
        else:
            self._event(row, t, event_type, apn, cause)

    # ---- checkpoint -------------------------------------------------------------------

    def export(self) -> tuple[dict[str, np.ndarray], dict[str, object]]:
        """The dedup memory (int64 arrays: its generations' live keys, a numpy copy),
        counters and partner names (for a checkpoint)."""
        current, old = self.dedup.export()
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
        at: int,
        apn: str | None,
        mcc: str | None,
        mnc: str | None,
        rat: str | None,
        operator: str | None,
    ) -> None:
        """A record's attributes, seen at ``at``, the record's time ``t``. A usage window's
        attributes hold somewhere in the window, so they are seen at its start: a session
        or event inside the window is the later word (a device that moved within an
        hour's window is not moved back by that window's record)."""
        state = self.state
        mv = state.mv
        attrs_at = mv["attrs_at"]
        seen_at = attrs_at[row]
        if at < seen_at:
            return  # a late record: newer attributes are already known
        changed = seen_at == NEVER
        attrs_at[row] = at
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
                state.note_moves(np.array([row]), np.array([left], np.int32), t)

    def _regime_vector(self, rows: np.ndarray, t: np.ndarray, start: np.ndarray) -> None:
        """``_regime`` over usage records of distinct rows (NaN start: no window)."""
        given = ~np.isnan(start)
        if not given.any():
            return
        rows, t = rows[given], t[given]
        cols = self.state.cols
        start_rel = start[given].astype(np.int64) - EPOCH_BASE
        seen = regime.classify_usage_many(start_rel, t, cols.session_starts[rows])
        cols.regime[rows] = regime.updated_many(cols.regime[rows], seen)

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
                    if state.rhythm.advances(row, ts):  # sent within this session
                        mv["data_from"][row] = session_start[row]
                    state.rhythm.observe(row, ts)
                    self._add_month_bytes(row, ts, total - previous)
                session_bytes[row] = total
            if status == "ended":
                mv["session_open"][row] = 0
        if status == "ended" and t > state.cols.session_end[row]:
            state.cols.session_end[row] = t
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
            cols.session_end[row] = max(int(cols.session_end[row]), t)


def _ranks(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per element: how many equal rows come before it, and a group number per distinct
    row."""
    n = rows.size
    order = np.argsort(rows * n + np.arange(n))  # distinct keys: batch order within a row
    ordered = rows[order]
    starts = np.ones(n, np.bool_)
    starts[1:] = ordered[1:] != ordered[:-1]
    group_sorted = np.cumsum(starts) - 1
    rank = np.empty(n, np.int64)
    group = np.empty(n, np.int64)
    rank[order] = np.arange(n) - np.flatnonzero(starts)[group_sorted]
    group[order] = group_sorted
    return rank, group


def _pick(values: list[str | None], at: list[int]) -> tuple[str | None, ...]:
    """``values`` at the indexes ``at`` (one C call)."""
    if len(at) == 1:
        return (values[at[0]],)
    picked: tuple[str | None, ...] = itemgetter(*at)(values)
    return picked


def _lookup(lut: dict[str | None, int], values: tuple[str | None, ...]) -> np.ndarray:
    """``lut[v]`` for each of ``values``, as an int64 array."""
    return np.fromiter(map(lut.__getitem__, values), np.int64, len(values))


def _factorize(values: list[str | None]) -> tuple[np.ndarray, list[str | None]]:
    """Per element the index of its value in the returned list of distinct values."""
    distinct = list(set(values))
    lut = {v: i for i, v in enumerate(distinct)}
    return np.fromiter(map(lut.__getitem__, values), np.int64, len(values)), distinct


def _distinct_rows(key: np.ndarray) -> tuple[list[tuple[int, ...]], np.ndarray]:
    """The distinct rows of a 2-D int64 array (as tuples) and each row's index among
    them: the columns combined into one int64 (mixed radix) when it fits, so one 1-D
    ``np.unique`` instead of the slow ``axis=0`` one."""
    if key.shape[0] == 0:
        return [], np.zeros(0, np.intp)
    low = key.min(axis=0)
    span = key.max(axis=0) - low + 1
    if float(np.prod(span.astype(np.float64))) >= 2.0**62:
        keys, back = np.unique(key, axis=0, return_inverse=True)
        return [tuple(k) for k in keys.tolist()], back.ravel()
    combined = np.zeros(key.shape[0], np.int64)
    for j in range(key.shape[1]):
        combined = combined * int(span[j]) + (key[:, j] - low[j])
    _, first, back = unique_first_inverse(combined)
    return [tuple(k) for k in key[first].tolist()], back.ravel()


def _int(value: object) -> int:
    if isinstance(value, int | float):
        return int(value)
    raise ValueError(f"not a count: {value!r}")


__all__ = ["IngestStats", "Ingestor"]
