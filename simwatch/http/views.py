"""JSON views of the engine for the HTTP API: pure functions of ``(engine, now, ...)``.

Nothing here does I/O or reads the clock; the API layer passes ``now`` in and turns a
``ViewError`` into a JSON error response. Every function returns plain JSON-ready data
(str, int, float, bool, None, list, dict): no numpy scalars, no NaN or infinity.

A SIM's state is the last evaluation's; before the first evaluation (and for SIMs added
since) it comes from a fresh classification at ``now``, so the views always work.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from dataclasses import replace
from typing import TYPE_CHECKING, Final

import numpy as np

from simwatch.core import regime
from simwatch.core.evaluate import (
    EVIDENCE_NAMES,
    INACTIVE,
    STATE_NAMES,
    expectation_of,
    group_failing,
    sim_states,
)
from simwatch.core.groups import Group, by_dimension, by_leaf, fleet_figures
from simwatch.core.state import NEVER, Flag, RejectKind, Status, absolute
from simwatch.core.timeutil import format_rfc3339, format_rfc3339_many, month_of

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from simwatch.core.engine import Engine
    from simwatch.core.incidents import Incident
    from simwatch.core.maintenance import Window
    from simwatch.shell.source_contract import SourceStats

Json = dict[str, object]

ICCID_RE: Final = re.compile(r"[0-9]{18,22}", re.ASCII)
LIST_FILTERS: Final = ("apn", "country", "partner", "customer")
GROUP_DIMS: Final = ("apn", "country", "partner", "rat", "customer", "plan")
INCIDENT_STATES: Final = ("open", "resolved")
DEFAULT_PAGE_SIZE: Final = 100
_CURSOR_PREFIX: Final = "row:"
_N_STATES: Final = len(STATE_NAMES)


class ViewError(Exception):
    """A request the views cannot answer: ``status`` is the HTTP status to send."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def bad_request(message: str) -> ViewError:
    return ViewError(400, message)


def not_found(message: str) -> ViewError:
    return ViewError(404, message)


# ---- small helpers ---------------------------------------------------------------------


def _time(ts: float | None) -> str | None:
    return None if ts is None else format_rfc3339(ts)


def _finite(value: object, digits: int = 1) -> float | None:
    if not isinstance(value, float | int) or not math.isfinite(value):
        return None
    return round(float(value), digits)


def _text(values: list[str], code: int) -> str | None:
    """The interned string of ``code`` (None for the empty value 0 or a bad code)."""
    return values[code] if 0 < code < len(values) else None


def _column(engine: Engine, dim: str) -> np.ndarray:
    cols = engine.state.cols
    return cols.extra[dim] if dim in cols.extra else np.asarray(getattr(cols, dim))


def group_dims(engine: Engine) -> tuple[str, ...]:
    """Dimensions ``/groups?dim=`` accepts: the engine's, the record and inventory ones."""
    extra = tuple(d for d in engine.state.dims if d not in GROUP_DIMS)
    return GROUP_DIMS + extra


def current_states(engine: Engine, now: float) -> np.ndarray:
    """int8 state code per SIM: the last evaluation's, fresh at ``now`` where it has none."""
    n = len(engine.state)
    evaluation = engine.last_evaluation
    if evaluation is not None and evaluation.n >= n:
        return evaluation.states[:n]
    fresh = sim_states(engine.state, now, engine.config.evaluation)
    if evaluation is not None:
        fresh[: evaluation.n] = evaluation.states
    return fresh


def _state_of(engine: Engine, row: int, now: float) -> str:
    evaluation = engine.last_evaluation
    if evaluation is not None and row < evaluation.n:
        return STATE_NAMES[int(evaluation.states[row])]
    if engine.state.cols.status[row] != Status.ACTIVE:
        return STATE_NAMES[INACTIVE]
    described = engine.state.rhythm.describe(row, now).get("state")
    return described if isinstance(described, str) else "unknown"


def _last_data(engine: Engine, row: int) -> float | None:
    value = float(engine.state.rhythm.last_data[row])
    return None if math.isnan(value) else value


def _silent_for(last: float | None, now: float) -> int | None:
    return None if last is None else max(0, round(now - last))


def check_iccid(iccid: str) -> None:
    if not ICCID_RE.fullmatch(iccid):
        raise bad_request(f"invalid ICCID {iccid[:40]!r}: expected 18 to 22 digits")


def _row_of(engine: Engine, iccid: str) -> int:
    check_iccid(iccid)
    row = engine.state.row(iccid)
    if row < 0:
        raise not_found(f"unknown SIM {iccid}")
    return row


# ---- one SIM ---------------------------------------------------------------------------


def sim_view(engine: Engine, iccid: str, now: float) -> Json:
    """Everything known about one SIM (400 for a malformed ICCID, 404 for an unknown one)."""
    row = _row_of(engine, iccid)
    iccid = engine.state.index.iccid(row)  # the SIM's own form, whichever form was asked
    state = engine.state
    c = state.cols
    last = _last_data(engine, row)
    info = state.rhythm.describe(row, now)
    active_hours = info.get("active_hours")
    gaps_seen = info.get("gaps_seen")
    incident = engine.incident_of(row)
    findings = engine.diagnose(iccid, now, row=row, incident=incident) or []
    flags = int(c.flags[row])
    expectation = expectation_of(state, row, now)
    late = expectation.pop("late_after_s", info.get("late_after_s"))
    silent = expectation.pop("silent_after_s", info.get("silent_after_s"))
    expectation.pop("elapsed_s", None)
    if expectation["hours_from"] == "learned" and not isinstance(active_hours, list):
        expectation["hours_from"] = None  # neither set nor a learned daytime pattern
    return {
        "iccid": iccid,
        "state": _state_of(engine, row, now),
        "status": Status(int(c.status[row])).name.lower(),
        "in_inventory": bool(flags & Flag.IN_INVENTORY),
        "customer": _text(state.customers.values, int(c.customer[row])),
        "plan": _text(state.plans.values, int(c.plan[row])),
        "allowed_apns": state.allowed_apn_names(row),
        "tags": ["vip"] if flags & Flag.VIP else [],
        "last_data": _time(last),
        "silent_for_s": _silent_for(last, now),
        "rhythm": {
            "typical_gap_s": _finite(info.get("typical_gap_s")),
            "late_after_s": _finite(late),
            "silent_after_s": _finite(silent),
            "learned": bool(info.get("learned")),
            "gaps_seen": gaps_seen if isinstance(gaps_seen, int) else 0,
            "active_hours": list(active_hours) if isinstance(active_hours, list) else None,
            "weekdays_only": bool(info.get("weekdays_only")),
            "expectation": expectation,
        },
        "regime": _regime(engine, row),
        "session": _session(engine, row),
        "rejects": _rejects(engine, row),
        "network": _network(engine, row),
        "usage_this_month": _usage(engine, row, now),
        "diagnosis": [f.to_json() for f in findings],
        "incident": None if incident is None else incident.to_json(),
    }


def _regime(engine: Engine, row: int) -> Json:
    """What the SIM's usage records are (learned from them) and so how it is judged."""
    code = int(regime.regime_of(int(engine.state.cols.regime[row])))
    return {"name": regime.NAMES[code], "judged_by": regime.DESCRIPTIONS[code]}


def _session(engine: Engine, row: int) -> Json:
    state = engine.state
    c = state.cols
    partner = _text(state.partners.values, int(c.partner[row]))
    return {
        "open": bool(c.session_open[row]),
        "started": _time(absolute(int(c.session_start[row]))),
        "apn": _text(state.apns.values, int(c.apn[row])),
        "partner": partner,
        "partner_name": None if partner is None else engine.partner_label(partner),
        "country": _text(state.countries.values, int(c.country[row])),
        "rat": _text(state.rats.values, int(c.rat[row])),
    }


def _rejects(engine: Engine, row: int) -> Json:
    state = engine.state
    c = state.cols
    kind = int(c.reject_kind[row])
    at = int(c.reject_at[row])
    return {
        "kind": None if kind == RejectKind.NONE else RejectKind(kind).name.lower(),
        "at": None if at == NEVER else _time(absolute(at)),
        "count": int(c.reject_count[row]),
        "apn": _text(state.apns.values, int(c.reject_apn[row])),
        "cause": _text(state.causes.values, int(c.reject_cause[row])),
    }


def _network(engine: Engine, row: int) -> Json:
    """The network's own evidence about the SIM: what counts it as failing in its group
    in the last evaluation, its last failure end and when it last left a partner."""
    c = engine.state.cols
    evaluation = engine.last_evaluation
    bits = int(evaluation.evidence[row]) if evaluation is not None and row < evaluation.n else 0
    fail_at = int(c.fail_at[row])
    moved_at = int(c.moved_at[row])
    return {
        "evidence": [name for bit, name in EVIDENCE_NAMES if bits & bit],
        "failure_end_at": None if fail_at == NEVER else _time(absolute(fail_at)),
        "failure_end_cause": _text(engine.state.causes.values, int(c.fail_cause[row])),
        "moved_at": None if moved_at == NEVER else _time(absolute(moved_at)),
    }


def _usage(engine: Engine, row: int, now: float) -> Json:
    c = engine.state.cols
    used = int(c.month_bytes[row]) if int(c.month[row]) == month_of(now) else 0
    cap = int(c.data_cap[row])
    return {
        "bytes": used,
        "cap": None if cap < 0 else cap,
        "share": None if cap <= 0 else round(used / cap, 4),
    }


def sim_short(engine: Engine, row: int, state_code: int, now: float) -> Json:
    """The list form of a SIM."""
    state = engine.state
    c = state.cols
    last = _last_data(engine, row)
    return {
        "iccid": state.index.iccid(row),
        "state": STATE_NAMES[state_code],
        "status": Status(int(c.status[row])).name.lower(),
        "customer": _text(state.customers.values, int(c.customer[row])),
        "apn": _text(state.apns.values, int(c.apn[row])),
        "country": _text(state.countries.values, int(c.country[row])),
        "partner": _text(state.partners.values, int(c.partner[row])),
        "last_data": _time(last),
        "silent_for_s": _silent_for(last, now),
    }


def _texts(values: list[str], codes: list[int]) -> list[str | None]:
    """``_text`` of many codes (one comprehension, no call per code)."""
    n = len(values)
    return [values[code] if 0 < code < n else None for code in codes]


def sim_shorts(engine: Engine, rows: np.ndarray, states: np.ndarray, now: float) -> list[Json]:
    """``sim_short`` of many rows, with the columns gathered, their codes turned into
    strings column by column and the times formatted once (a page of 1000 SIMs)."""
    state = engine.state
    c = state.cols
    status_names = [s.name.lower() for s in Status]
    last_data = state.rhythm.last_data[rows]
    seen_texts = format_rfc3339_many(last_data)
    silent = [
        None if text is None else max(0, round(now - seen))
        for seen, text in zip(last_data.tolist(), seen_texts, strict=True)
    ]
    columns = zip(
        state.index.iccids(rows),
        [STATE_NAMES[code] for code in states[rows].tolist()],
        [status_names[status] for status in c.status[rows].tolist()],
        _texts(state.customers.values, c.customer[rows].tolist()),
        _texts(state.apns.values, c.apn[rows].tolist()),
        _texts(state.countries.values, c.country[rows].tolist()),
        _texts(state.partners.values, c.partner[rows].tolist()),
        seen_texts,
        silent,
        strict=True,
    )
    return [
        {
            "iccid": sim,
            "state": state_name,
            "status": status,
            "customer": customer,
            "apn": apn,
            "country": country,
            "partner": partner,
            "last_data": seen_text,
            "silent_for_s": silent_for,
        }
        for (sim, state_name, status, customer, apn, country, partner, seen_text, silent_for) in (
            columns
        )
    ]


# ---- the SIM list ----------------------------------------------------------------------


def encode_cursor(row: int) -> str:
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{row}".encode()).decode().rstrip("=")


_CURSOR_DIGITS = 12  # a row number: far more than any fleet, few enough for int()
_LIMIT_DIGITS = 9


def decode_cursor(cursor: str, n: int) -> int:
    """Row a cursor points at; 400 naming ``cursor`` when it is not one of ours."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    digits = text.removeprefix(_CURSOR_PREFIX)
    if (
        not text.startswith(_CURSOR_PREFIX)
        or not digits.isascii()
        or not digits.isdigit()
        or len(digits) > _CURSOR_DIGITS
    ):
        raise bad_request("invalid cursor: use the next_cursor of a previous page")
    row = int(digits)
    if row > n:
        raise bad_request("invalid cursor: it points past the end of the fleet")
    return row


def parse_limit(text: str | None, max_page_size: int) -> int:
    if text is None or text == "":
        return min(DEFAULT_PAGE_SIZE, max_page_size)
    if (
        not text.isascii()
        or not text.isdigit()
        or len(text) > _LIMIT_DIGITS
        or not 1 <= int(text) <= max_page_size
    ):
        raise bad_request(f"invalid limit {text[:20]!r}: expected an integer 1..{max_page_size}")
    return int(text)


def parse_state(text: str) -> int:
    if text not in STATE_NAMES:
        raise bad_request(f"invalid state {text[:40]!r}: expected one of {', '.join(STATE_NAMES)}")
    return STATE_NAMES.index(text)


_SCAN_FIRST = 8192  # rows in the first slice a list scan looks at; each next one doubles


def _first_matches(
    wanted: list[tuple[np.ndarray, int]], start: int, n: int, count: int
) -> np.ndarray:
    """The first ``count`` rows in ``[start, n)`` where every column equals its code.

    Scans in doubling slices and stops once it has enough, so a page of a common group
    looks at a few thousand rows, not the whole fleet; a rare one costs at most about
    twice one full scan."""
    found: list[np.ndarray] = []
    need = count
    lo, size = start, _SCAN_FIRST
    while lo < n and need > 0:
        hi = min(n, lo + size)
        mask = np.ones(hi - lo, bool)
        for column, code in wanted:
            mask &= column[lo:hi] == code
        hits = np.flatnonzero(mask)[:need] + lo
        found.append(hits)
        need -= len(hits)
        lo, size = hi, size * 2
    return np.concatenate(found) if found else np.zeros(0, np.int64)


def list_sims(
    engine: Engine,
    now: float,
    filters: Mapping[str, str],
    *,
    limit: int = DEFAULT_PAGE_SIZE,
    cursor: str | None = None,
) -> Json:
    """One page of SIMs in row order matching every filter (exact match on the value).

    ``filters`` keys: ``state`` and ``LIST_FILTERS``; empty values are ignored. The match
    is vectorized over the interned code columns; a value never seen matches nothing.
    """
    unknown = sorted(set(filters) - {"state", *LIST_FILTERS})
    if unknown:
        raise bad_request(f"unknown filter {unknown[0]!r}")
    n = len(engine.state)
    start = 0 if not cursor else decode_cursor(cursor, n)
    states = current_states(engine, now)
    wanted_state = filters.get("state")
    wanted = [(states, parse_state(wanted_state))] if wanted_state else []
    for dim in LIST_FILTERS:
        value = filters.get(dim)
        if value:
            wanted.append((_column(engine, dim), engine.state.find_code(dim, value)))
    rows = _first_matches(wanted, start, n, limit + 1)
    items = sim_shorts(engine, rows[:limit], states, now)
    next_cursor = encode_cursor(int(rows[limit])) if len(rows) > limit else None
    return {"items": items, "next_cursor": next_cursor}


# ---- groups ----------------------------------------------------------------------------


def _counts(row: np.ndarray) -> Json:
    return {name: int(row[i]) for i, name in enumerate(STATE_NAMES)}


def _group(group: Group) -> Json:
    ratio = group.affected_ratio
    return {
        "dims": group.dims,
        "sims": group.sims,
        "states": group.state_counts(),
        "total": group.total,
        "affected": group.affected,
        "affected_ratio": None if ratio is None else round(ratio, 4),
        "month_bytes": group.month_bytes,
    }


_NO_SIMS: Final = Group({}, (0,) * _N_STATES, 0, 0, 0)


def groups_view(engine: Engine, now: float, dim: str | None = None) -> Json:
    """The figures of each group (``simwatch.core.groups``, as /metrics and InfluxDB have
    them, without a top-N cap): by ``dim``, or each leaf group if None.

    ``states`` counts every SIM of the group: the last evaluation's states, fresh at
    ``now`` for SIMs it has not seen; ``total``, ``affected`` and ``affected_ratio`` are
    the last evaluation's. SIMs without a value for the grouping (no record with
    attributes yet) are counted under ``unassigned``. Groups with SIMs only, the most
    affected first (then the most silent, then the largest).
    """
    state = engine.state
    evaluation = engine.last_evaluation
    if dim is not None and dim not in group_dims(engine):
        raise bad_request(
            f"invalid dim {dim[:40]!r}: expected one of {', '.join(group_dims(engine))}"
        )
    figures = fleet_figures(state, evaluation, current_states(engine, now), now)
    groups = by_leaf(state, figures) if dim is None else by_dimension(state, figures, dim, None)
    silent = groups.states[:, STATE_NAMES.index("silent")]
    order = np.lexsort((groups.codes, -groups.states.sum(axis=1), -silent, -groups.affected))
    listed = list(groups)
    unassigned = groups.get(0)
    return {
        "dim": dim,
        "evaluated_at": None if evaluation is None else _time(evaluation.now),
        "groups": [_group(listed[i]) for i in order.tolist() if groups.codes[i] != 0],
        "unassigned": _group(_NO_SIMS if unassigned is None else replace(unassigned, dims={})),
    }


# ---- incidents and status --------------------------------------------------------------


def incidents_view(engine: Engine, state: str | None = None) -> Json:
    if state and state not in INCIDENT_STATES:
        raise bad_request(f"invalid state {state[:40]!r}: expected open or resolved")
    items: Iterable[Incident] = engine.incidents.all()
    if state:
        items = (i for i in items if i.state == state)
    return {"incidents": [i.to_json() for i in items]}


def known_incident(engine: Engine, incident_id: str) -> Incident:
    """The incident of that id; 404 naming it when there is none."""
    incident = engine.incidents.get(incident_id)
    if incident is None:
        raise not_found(f"unknown incident {incident_id[:40]!r}")
    return incident


def incident_view(engine: Engine, incident_id: str) -> Json:
    return known_incident(engine, incident_id).to_json()


def failing_rows(engine: Engine, incident: Incident) -> np.ndarray:
    """Rows of the SIMs failing in the incident's group in the last evaluation (its one
    SIM for a SIM incident), ascending."""
    if incident.kind == "sim" and incident.iccid is not None:
        row = engine.state.row(incident.iccid)
        return np.asarray([row] if row >= 0 else [], np.int64)
    evaluation = engine.last_evaluation
    if evaluation is None or incident.kind != "group":
        return np.zeros(0, np.int64)
    return np.flatnonzero(group_failing(engine.state, evaluation, incident.dims))


def incident_sims(
    engine: Engine, rows: np.ndarray, now: float, *, limit: int, cursor: str | None
) -> Json:
    """One page of ``rows`` (``failing_rows``) in the SIM list form, from ``cursor``;
    ``count`` is all of them (``GET /api/v1/incidents/{id}/sims``, the console's
    incident page)."""
    start = 0 if not cursor else decode_cursor(cursor, len(engine.state))
    page = rows[rows >= start][: limit + 1]
    states = current_states(engine, now)
    items = sim_shorts(engine, page[:limit], states, now)
    following = encode_cursor(int(page[limit])) if len(page) > limit else None
    return {"items": items, "next_cursor": following, "count": len(rows)}


def maintenance_view(windows: Iterable[Window], now: float, active_only: bool = False) -> Json:
    """The maintenance windows (``GET /api/v1/maintenance``): each with its current and
    next occurrence at ``now``; ``active_only``: those under way."""
    items = [w.to_json(now) for w in windows]
    if active_only:
        items = [w for w in items if w["active"]]
    return {"windows": items}


def source_view(stats: SourceStats) -> Json:
    return {
        "name": stats.name,
        "kind": stats.kind,
        "received": stats.received,
        "rejected": dict(sorted(stats.rejected.items())),
        "duplicates": stats.duplicates,
        "errors": stats.errors,
        "last_success": _time(stats.last_success),
        "last_error": stats.last_error,
        "connected": stats.connected,
    }


def status_view(engine: Engine, now: float, sources: Iterable[SourceStats] = ()) -> Json:
    """Fleet-wide summary: SIMs per state, cycles, open incidents, the sources."""
    states = current_states(engine, now).astype(np.int64)
    counts = np.bincount(states, minlength=_N_STATES)
    evaluation = engine.last_evaluation
    open_incidents = len(engine.incidents.open)
    return {
        "now": _time(now),
        "sims": len(engine.state),
        "states": _counts(counts),
        "cycles": engine.cycles,
        "evaluated_at": None if evaluation is None else _time(evaluation.now),
        "warmed_up": engine.warmed_up(now),
        "open_incidents": open_incidents,
        "rejected": dict(sorted(engine.rejected.items())),
        "sources": [source_view(s) for s in sources],
    }


__all__ = [
    "DEFAULT_PAGE_SIZE",
    "LIST_FILTERS",
    "ViewError",
    "check_iccid",
    "current_states",
    "decode_cursor",
    "encode_cursor",
    "failing_rows",
    "group_dims",
    "groups_view",
    "incident_sims",
    "incident_view",
    "incidents_view",
    "known_incident",
    "list_sims",
    "maintenance_view",
    "parse_limit",
    "parse_state",
    "sim_short",
    "sim_shorts",
    "sim_view",
    "source_view",
    "status_view",
]
