"""What the console pages show beyond the JSON views: pure functions of the engine.

The console reuses ``simwatch.http.views`` for everything the JSON API already has (the
fleet summary, a SIM, an incident, the SIM list form); this module adds what only the
pages need: per dimension value the affected share against its usual level, the failing
SIMs of an incident (paged), its top customers, the per-group points the history keeps
each cycle, and the search box's reading of an ICCID, IMSI or MSISDN.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final

import numpy as np

from simwatch.http import views
from simwatch.shell.history import series_key

if TYPE_CHECKING:
    from collections.abc import Callable

    from simwatch.core.engine import Engine

Json = dict[str, object]
LEVEL_DIMS: Final = ("partner", "country", "apn")  # the fleet page's bars
_SEPARATORS: Final = re.compile(r"[\s\-./()]+")


def dimension_levels(engine: Engine, dim: str, limit: int = 12) -> list[Json]:
    """Per value of ``dim`` in the last evaluation: total, affected, expected (the usual
    level: the baseline's share times total), most affected first (``limit`` values).

    Summed over the leaf groups (a few thousand at most), never over the SIMs."""
    evaluation = engine.last_evaluation
    state = engine.state
    if evaluation is None or dim not in state.dims or state.n_leaves == 0:
        return []
    n_leaves = len(evaluation.leaf_total)
    codes = state.leaf_codes()[:n_leaves, state.dims.index(dim)]
    size = int(codes.max()) + 1 if len(codes) else 1
    total = np.bincount(codes, evaluation.leaf_total, size)
    affected = np.bincount(codes, evaluation.leaf_affected, size)
    expected = np.bincount(codes, evaluation.leaf_expected, size)
    values = state.dim_values(dim)
    order = np.lexsort((-total, -(affected - expected)))
    out: list[Json] = []
    for code in order.tolist():
        if code == 0 or total[code] <= 0:
            continue
        value = values[code]
        t, a, e = float(total[code]), float(affected[code]), float(expected[code])
        out.append({
            "dim": dim,
            "value": value,
            "label": engine.partner_label(value) if dim == "partner" else value,
            "total": round(t),
            "affected": round(a),
            "ratio": a / t,
            "usual": e / t,
        })  # fmt: skip
        if len(out) >= limit:
            break
    return out


def series_points(engine: Engine) -> list[tuple[str, int, float, float, float]]:
    """This cycle's (key, at, total, affected, expected) for every value of every
    dimension and every open group incident: what the history keeps per cycle so that an
    incident's chart reaches back before its start."""
    evaluation = engine.last_evaluation
    state = engine.state
    if evaluation is None or state.n_leaves == 0:
        return []
    at = int(evaluation.now)
    n_leaves = len(evaluation.leaf_total)
    leaf_codes = state.leaf_codes()[:n_leaves]
    out: list[tuple[str, int, float, float, float]] = []
    for d, dim in enumerate(state.dims):
        codes = leaf_codes[:, d]
        size = int(codes.max()) + 1
        total = np.bincount(codes, evaluation.leaf_total, size)
        affected = np.bincount(codes, evaluation.leaf_affected, size)
        expected = np.bincount(codes, evaluation.leaf_expected, size)
        values = state.dim_values(dim)
        for code in np.flatnonzero(total > 0).tolist():
            if code:
                key = f"{dim}={values[code]}"
                figures = float(total[code]), float(affected[code]), float(expected[code])
                out.append((key, at, *figures))
    for incident in engine.incidents.open.values():
        if incident.kind == "group" and len(incident.dims) > 1:
            key = series_key(incident.dims)
            out.append((key, at, incident.total, incident.affected, incident.expected))
    return out


def normalize_query(text: str) -> str:
    """The search box's text without spaces, dashes, dots, brackets and a leading ``+``."""
    return _SEPARATORS.sub("", text.strip()).removeprefix("+")


def resolve_sim(
    engine: Engine, text: str, find_id: Callable[[str], str | None] | None
) -> str | None:
    """The ICCID (the SIM's own form) of an ICCID in either form (19 or 20 digits, with
    or without the Luhn check digit), an IMSI or an MSISDN; None when no SIM has it.

    ``find_id`` looks an IMSI or MSISDN up in the history store (None: no store)."""
    query = normalize_query(text)
    if not query.isascii() or not query.isdigit():
        return None
    if views.ICCID_RE.fullmatch(query):
        row = engine.state.row(query)
        if row >= 0:
            return engine.state.index.iccid(row)
    if find_id is not None:
        found = find_id(query)
        if found is not None:
            row = engine.state.row(found)
            return engine.state.index.iccid(row) if row >= 0 else None
    return None


__all__ = [
    "LEVEL_DIMS",
    "dimension_levels",
    "normalize_query",
    "resolve_sim",
    "series_points",
]
