"""A partition's SIM rows out of one ``FleetState`` and into another, pure.

A cluster node publishes, per partition it reads, the rows of that partition's SIMs
(``export_rows``); a node taking the partition over merges them into its own state
(``merge_rows``) and replays the stream only after the sequence they cover
(``service.handoff``, docs/scaling.md "Taking a partition over").

What travels, per SIM: its ICCID, every per-SIM column of ``core.state`` (inventory
facts, attributes, session, rejects, failures, regime, month volume, set expectations,
extra dimensions) and its rhythm model (``core.rhythm``). Interned columns carry codes
local to the export and the strings they stand for (``tables``); the receiving state
interns those strings in its own tables, so codes never leak from one node to another.
Leaf ids (``leaf``, ``prev_leaf``) travel as the dimension strings of their leaf.

Not carried: the dedup memory (record ids; the stream sequence is the boundary), group
baselines (per leaf, rebuilt from the counts) and the engine's previous SIM states.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import numpy as np

from simwatch.core.rhythm import RhythmModel
from simwatch.core.state import ADDED_COLUMNS, INTERNER_OF, Columns, Flag

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from simwatch.core.state import FleetState, Interner

FORMAT: Final = "simwatch-partition-rows"
VERSION: Final = 1

# per-SIM column -> the FleetState attribute holding its value table
_INTERNED: Final = {
    "customer": "customers",
    "plan": "plans",
    "allowed_apns": "apn_sets",
    "apn": "apns",
    "partner": "partners",
    "country": "countries",
    "rat": "rats",
    "reject_apn": "apns",
    "reject_cause": "causes",
    "fail_cause": "causes",
    "expect_hours": "schedules",
}
_LEAVES: Final = ("leaf", "prev_leaf")
_COLUMNS: Final = tuple(name for name in Columns.__slots__ if name != "extra")


def _table(state: FleetState, column: str) -> Interner:
    if column.startswith("extra."):
        return state.extra_values[column.removeprefix("extra.")]
    table: Interner = getattr(state, _INTERNED[column])
    return table


def _interned_columns(state: FleetState) -> list[str]:
    return list(_INTERNED) + [f"extra.{name}" for name in state.extra_dims]


def iccid_bytes(state: FleetState, rows: np.ndarray) -> np.ndarray:
    """The ICCIDs of ``rows`` as the export carries them (ASCII, ``S22``)."""
    return np.array(state.index.iccids(rows), dtype="S22").reshape(len(rows))


def export_rows(
    state: FleetState, rows: np.ndarray, *, iccids: np.ndarray | None = None
) -> tuple[dict[str, np.ndarray], dict[str, object]]:
    """Copies of ``rows`` (row numbers of ``state``): numpy arrays (columns, rhythm,
    ICCIDs) and JSON-able metadata (dims, the strings of the interned codes, leaves).
    ``iccids``: ``iccid_bytes(state, rows)`` when the caller has it already (decoding
    ICCIDs is half of the cost; a row's ICCID never changes)."""
    rows = np.asarray(rows, dtype=np.int64)
    n = len(state)
    if rows.size and (int(rows.min()) < 0 or int(rows.max()) >= n):
        raise IndexError(f"rows out of range 0..{n - 1}")
    if iccids is None:
        iccids = iccid_bytes(state, rows)
    elif iccids.shape != rows.shape or iccids.dtype != np.dtype("S22"):
        raise ValueError("iccids must be the S22 ICCIDs of the rows")
    cols = state.cols
    arrays: dict[str, np.ndarray] = {"iccid": iccids}
    for name in _COLUMNS:
        arrays[f"col.{name}"] = getattr(cols, name)[rows]
    for name, column in cols.extra.items():
        arrays[f"col.extra.{name}"] = column[rows]
    arrays["col.flags"] &= np.uint8(0xFF & ~Flag.AWAY)  # the receiver decides what is away
    tables: dict[str, list[str]] = {}
    for interned in _interned_columns(state):
        codes = arrays[f"col.{interned}"]
        used, local = np.unique(codes, return_inverse=True)
        values = _table(state, interned).values
        tables[interned] = [values[int(code)] for code in used]
        arrays[f"col.{interned}"] = local.reshape(codes.shape).astype(codes.dtype)
    # leaves: ids local to the export, each with its dimension strings
    ids = np.concatenate([arrays[f"col.{name}"] for name in _LEAVES])
    used = np.unique(ids[ids >= 0])
    labels = [state.dim_values(dim) for dim in state.dims]
    leaves = [
        [labels[d][code] for d, code in enumerate(state.leaf_keys[int(leaf)])] for leaf in used
    ]
    for name in _LEAVES:
        column = arrays[f"col.{name}"]
        arrays[f"col.{name}"] = np.where(column >= 0, np.searchsorted(used, column), -1).astype(
            column.dtype
        )
    for name, column in state.rhythm.take(rows).items():
        arrays[f"rhythm.{name}"] = column
    meta: dict[str, object] = {
        "format": FORMAT,
        "version": VERSION,
        "dims": list(state.dims),
        "sims": int(rows.size),
        "tables": tables,
        "leaves": leaves,
    }
    return arrays, meta


def merge_rows(
    state: FleetState,
    arrays: Mapping[str, np.ndarray],
    meta: Mapping[str, object],
    *,
    accept: Callable[[str], bool] | None = None,
) -> np.ndarray:
    """Merge ``export_rows``' output into ``state``: a SIM new here gets a new row, a
    known one (either form of its ICCID) has its row overwritten. ``accept``: only the
    SIMs whose ICCID it accepts (None: all). Returns the rows written, in export order
    (-1 for a SIM not accepted). ``ValueError`` when the export does not fit (other
    dims or format, a missing or mistyped array; ``TypeError`` for malformed metadata)."""
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise ValueError(f"not a {FORMAT} v{VERSION} export")
    if meta.get("dims") != list(state.dims):
        raise ValueError(f"exported dims {meta.get('dims')} differ from {list(state.dims)}")
    tables = meta.get("tables")
    leaves = meta.get("leaves")
    if not isinstance(tables, dict) or not isinstance(leaves, list):
        raise TypeError("export without value tables or leaves")
    try:
        iccids = [raw.decode() for raw in arrays["iccid"].tolist()]
    except (KeyError, AttributeError, UnicodeDecodeError) as exc:
        raise ValueError(f"export with unreadable ICCIDs: {exc}") from exc
    size = len(iccids)
    given: dict[str, np.ndarray] = {}
    own = Columns.empty(0, state.extra_dims)
    names = list(_COLUMNS) + [f"extra.{name}" for name in state.extra_dims]
    for name in names:
        column = arrays.get(f"col.{name}")
        if column is None and name in ADDED_COLUMNS:
            continue  # from a node of an older version: the SIMs keep the empty value
        like: np.ndarray = own.extra[name[6:]] if name.startswith("extra.") else getattr(own, name)
        if column is None or column.dtype != like.dtype or column.shape[:1] != (size,):
            raise ValueError(f"export column {name}: missing or mistyped")
        given[name] = column
    # the strings of the interned codes, in this state's tables
    for name in _interned_columns(state):
        values = tables.get(name)
        if not isinstance(values, list):
            raise TypeError(f"export without the value table of {name}")
        table = _table(state, name)
        recode = np.array([table.code(str(v)) for v in values] or [0], dtype=np.int64)
        local = given[name]
        if local.size and (int(local.min()) < 0 or int(local.max()) >= len(values)):
            raise ValueError(f"export column {name}: a code outside its value table")
        given[name] = recode[local].astype(local.dtype)
    leaf_ids = []
    for key in leaves:
        if not isinstance(key, list) or len(key) != len(state.dims):
            raise ValueError("export leaf of another shape")
        codes = (_dim_table(state, d).code(str(v)) for d, v in zip(state.dims, key, strict=True))
        leaf_ids.append(state.leaf_id(tuple(codes)))
    recode_leaf = np.array([*leaf_ids, -1], dtype=np.int64)  # index -1: no leaf
    for name in _LEAVES:
        local = given[name]
        if local.size and int(local.max()) >= len(leaf_ids):
            raise ValueError(f"export column {name}: a leaf outside its table")
        given[name] = recode_leaf[local].astype(local.dtype)
    rhythm: dict[str, np.ndarray] = {}
    for name in RhythmModel._COLUMNS:  # noqa: SLF001 - the model's own layout
        column = arrays.get(f"rhythm.{name}")
        if column is None or column.shape != (size,):
            raise ValueError(f"export rhythm column {name}: missing or mistyped")
        rhythm[name] = column
    out = np.full(size, -1, np.int64)
    for i, iccid in enumerate(iccids):
        if accept is None or accept(iccid):
            out[i] = state.ensure_row(iccid)
    take = np.flatnonzero(out >= 0)
    rows = out[take]
    cols = state.cols  # after ensure_row: the columns may have grown
    for name, column in given.items():
        target = cols.extra[name[6:]] if name.startswith("extra.") else getattr(cols, name)
        target[rows] = column[take]
    state.rhythm.put(rows, {name: column[take] for name, column in rhythm.items()})
    return out


def _dim_table(state: FleetState, dim: str) -> Interner:
    attribute = INTERNER_OF.get(dim)
    if attribute is None:
        return state.extra_values[dim]
    table: Interner = getattr(state, attribute)
    return table


__all__ = ["FORMAT", "VERSION", "export_rows", "iccid_bytes", "merge_rows"]
