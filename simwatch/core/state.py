"""Fleet state: one row per SIM in numpy columns, indexed by a compact ICCID index.

No Python object per SIM: every per-SIM fact is a slot in a typed column, so a million
SIMs fit in well under 200 bytes each. Strings that repeat across SIMs (APNs, partners,
customers, causes) are interned to small integer codes.

Times are stored as int32 seconds relative to ``EPOCH_BASE`` (good until 2088); -1 means
"never". Only this module knows the column layout; ingest and evaluation go through it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Final, Literal

import numpy as np

from simwatch.core.iccid import alternate_form
from simwatch.core.iccid_index import IccidIndex
from simwatch.core.rhythm import RhythmModel, RhythmParams
from simwatch.core.schedule import Expectation, ExpectationTables, Schedule

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from simwatch.core.inventory import InventoryRow

EPOCH_BASE = 1_577_836_800  # 2020-01-01T00:00:00Z
NEVER = -1
SESSION_RING = 6  # session starts remembered per SIM (enough to see "four drops in an hour")

# Dimensions a group can be described by. The first three come from the records; the
# others from the inventory (any inventory extra column can be added by name).
RECORD_DIMS = ("apn", "country", "partner", "rat")
INVENTORY_DIMS = ("customer", "plan")


class Status(IntEnum):
    """Inventory status; only ACTIVE SIMs are expected to send data."""

    ACTIVE = 0
    SUSPENDED = 1
    TEST = 2
    DEACTIVATED = 3


STATUS_BY_NAME = {s.name.lower(): s for s in Status}


class RejectKind(IntEnum):
    NONE = 0
    AUTH_FAILURE = 1
    PDP_REJECT = 2


class Flag(IntEnum):
    IN_INVENTORY = 1
    VIP = 2
    HAS_USAGE = 4  # the SIM's volume comes from usage records (session totals then are not added)
    AWAY = 8  # a cluster: another node reads this SIM's partition; inactive here


def rel(ts: float) -> int:
    """Epoch seconds to the int32 relative time of the columns."""
    return int(ts) - EPOCH_BASE


def absolute(value: int) -> float | None:
    """Relative column time back to epoch seconds (None for NEVER)."""
    return None if value == NEVER else float(value + EPOCH_BASE)


class Interner:
    """Bidirectional map between strings and dense int codes; code 0 is the empty value."""

    __slots__ = ("_codes", "values")

    def __init__(self) -> None:
        self.values: list[str] = [""]
        self._codes: dict[str, int] = {"": 0}

    def code(self, value: str | None) -> int:
        if not value:
            return 0
        found = self._codes.get(value)
        if found is None:
            found = len(self.values)
            self._codes[value] = found
            self.values.append(value)
        return found

    def find(self, value: str) -> int:
        """Code of a known value, or -1."""
        return self._codes.get(value, -1)

    def __len__(self) -> int:
        return len(self.values)


@dataclass(slots=True)
class Columns:
    """Typed per-SIM columns. All arrays have the same length (the capacity)."""

    status: np.ndarray
    flags: np.ndarray
    customer: np.ndarray
    plan: np.ndarray
    allowed_apns: np.ndarray  # code of the ';'-joined allowed APN list
    data_cap: np.ndarray  # bytes per month, -1 = none
    apn: np.ndarray
    partner: np.ndarray
    country: np.ndarray
    rat: np.ndarray
    # when the attributes above were seen (late records don't override): a record's time,
    # a usage window's start (the window's attributes hold somewhere within it)
    attrs_at: np.ndarray
    session_open: np.ndarray
    session_start: np.ndarray
    session_bytes: np.ndarray  # running total of the open session
    session_end: np.ndarray  # when the last session ended (record, detach or purge)
    session_starts: np.ndarray  # (capacity, SESSION_RING) ring of recent starts
    reject_kind: np.ndarray
    reject_at: np.ndarray
    reject_count: np.ndarray  # rejects in the current 24 h run (reset after a quiet day)
    reject_apn: np.ndarray
    reject_cause: np.ndarray
    fail_at: np.ndarray  # time of the last session the network ended with a failure cause
    fail_cause: np.ndarray  # its cause (code in ``causes``)
    prev_leaf: np.ndarray  # the leaf the SIM left when its partner last changed, -1 = none
    moved_at: np.ndarray  # when its partner last changed (from a known partner)
    regime: np.ndarray  # its data regime, learned from its usage records (core.regime)
    # when the SIM's latest data began: its usage window's start (the window's data was
    # sent somewhere within it), else the data's time (``sent_after``)
    data_from: np.ndarray
    month: np.ndarray  # year*12+month-1 of month_bytes, -1 = none
    month_bytes: np.ndarray
    leaf: np.ndarray  # code of the SIM's leaf group (combination of its dimension values)
    expect_interval: np.ndarray  # set expected interval in seconds, 0 = none (learned)
    expect_hours: np.ndarray  # code in ``FleetState.schedules`` of set active hours, 0 = none
    expect_from: np.ndarray  # bits 0-1: the interval's source, 2-3 the hours' (SOURCES)
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # extra inventory dimensions

    @classmethod
    def empty(cls, capacity: int, extra_dims: Sequence[str]) -> Columns:
        i32 = np.int32
        return cls(
            status=np.zeros(capacity, np.int8),
            flags=np.zeros(capacity, np.uint8),
            customer=np.zeros(capacity, i32),
            plan=np.zeros(capacity, i32),
            allowed_apns=np.zeros(capacity, i32),
            data_cap=np.full(capacity, -1, np.int64),
            apn=np.zeros(capacity, i32),
            partner=np.zeros(capacity, i32),
            country=np.zeros(capacity, np.int16),
            rat=np.zeros(capacity, np.int16),
            attrs_at=np.full(capacity, NEVER, i32),
            session_open=np.zeros(capacity, np.uint8),
            session_start=np.full(capacity, NEVER, i32),
            session_bytes=np.zeros(capacity, np.int64),
            session_end=np.full(capacity, NEVER, i32),
            session_starts=np.full((capacity, SESSION_RING), NEVER, i32),
            reject_kind=np.zeros(capacity, np.int8),
            reject_at=np.full(capacity, NEVER, i32),
            reject_count=np.zeros(capacity, np.uint16),
            reject_apn=np.zeros(capacity, i32),
            reject_cause=np.zeros(capacity, i32),
            fail_at=np.full(capacity, NEVER, i32),
            fail_cause=np.zeros(capacity, i32),
            prev_leaf=np.full(capacity, -1, i32),
            moved_at=np.full(capacity, NEVER, i32),
            regime=np.zeros(capacity, np.uint8),
            data_from=np.full(capacity, NEVER, i32),
            month=np.full(capacity, -1, np.int16),
            month_bytes=np.zeros(capacity, np.int64),
            leaf=np.full(capacity, -1, i32),
            expect_interval=np.zeros(capacity, np.float32),
            expect_hours=np.zeros(capacity, np.int16),
            expect_from=np.zeros(capacity, np.uint8),
            extra={name: np.zeros(capacity, i32) for name in extra_dims},
        )

    def arrays(self) -> list[np.ndarray]:
        out = [getattr(self, name) for name in self.__slots__ if name != "extra"]
        return [a for a in out if isinstance(a, np.ndarray)] + list(self.extra.values())

    def grow(self, capacity: int) -> None:
        for name in self.__slots__:
            if name != "extra":
                setattr(self, name, _grown(getattr(self, name), capacity, _FILL.get(name, 0)))
        for name, old in list(self.extra.items()):
            self.extra[name] = _grown(old, capacity, 0)


# The "empty" value of columns whose empty value is not 0.
_FILL = {
    "attrs_at": NEVER,
    "session_start": NEVER,
    "session_starts": NEVER,
    "reject_at": NEVER,
    "fail_at": NEVER,
    "prev_leaf": -1,
    "moved_at": NEVER,
    "session_end": NEVER,
    "data_from": NEVER,
    "data_cap": -1,
    "month": -1,
    "leaf": -1,
}


# Columns added after checkpoints were first written: a checkpoint without them restores
# with their empty values (the evidence they hold is minutes old anyway).
ADDED_COLUMNS: Final = frozenset({
    "fail_at", "fail_cause", "prev_leaf", "moved_at", "session_end", "regime",
    "expect_interval", "expect_hours", "expect_from", "data_from",
})  # fmt: skip
ADDED_TABLES: Final = frozenset({"schedules"})  # value tables added since, restored empty
_MAX_SCHEDULES: Final = 32767  # distinct (active hours, zone) pairs: the int16 column's range


def _copy_into(own: np.ndarray, given: np.ndarray, n: int, name: str) -> None:
    if given.dtype != own.dtype or given.shape != (n, *own.shape[1:]):
        raise ValueError(
            f"checkpoint column {name}: {given.dtype}{given.shape}, "
            f"expected {own.dtype}{(n, *own.shape[1:])}"
        )
    own[:n] = given


def _grown(old: np.ndarray, capacity: int, fill: int) -> np.ndarray:
    new = np.full((capacity, *old.shape[1:]), fill, old.dtype)
    new[: old.shape[0]] = old
    return new


_IntFormat = Literal["b", "B", "h", "H", "i", "q"]
_INT_FORMATS: dict[tuple[int, str], _IntFormat] = {
    (1, "i"): "b",
    (1, "u"): "B",
    (2, "i"): "h",
    (2, "u"): "H",
    (4, "i"): "i",
    (8, "i"): "q",
}
HOT_COLUMNS = (
    "flags",
    "apn",
    "partner",
    "country",
    "rat",
    "attrs_at",
    "session_open",
    "session_start",
    "session_bytes",
    "month",
    "month_bytes",
    "data_from",
)


def views(cols: Columns) -> dict[str, memoryview[int]]:
    """Memoryviews of the columns the ingest hot path touches per record.

    Reading or writing one element through a memoryview is a plain Python int and
    costs a third of numpy's scalar indexing. Rebuilt whenever the columns grow.
    """
    out: dict[str, memoryview[int]] = {}
    for name in HOT_COLUMNS:
        array: np.ndarray = getattr(cols, name)
        out[name] = array.data.cast("B").cast(_INT_FORMATS[array.dtype.itemsize, array.dtype.kind])
    return out


# the attribute holding each built-in dimension's value table (the per-SIM API asks often)
INTERNER_OF: Final = {
    "apn": "apns",
    "country": "countries",
    "partner": "partners",
    "rat": "rats",
    "customer": "customers",
    "plan": "plans",
}


class FleetState:
    """All per-SIM state, the interned value tables and the leaf-group registry."""

    def __init__(
        self,
        *,
        dims: Sequence[str] = ("apn", "country", "partner"),
        capacity: int = 1024,
        rhythm: RhythmParams | None = None,
    ) -> None:
        unknown = [d for d in dims if not d]
        if unknown:
            raise ValueError("empty dimension name")
        self.dims: tuple[str, ...] = tuple(dims)
        self.extra_dims = tuple(d for d in self.dims if d not in RECORD_DIMS + INVENTORY_DIMS)
        self.index = IccidIndex(capacity)
        self.cols = Columns.empty(capacity, self.extra_dims)
        self.mv = views(self.cols)
        self.rhythm = RhythmModel(capacity, rhythm or RhythmParams())
        self.capacity = capacity
        self.apns = Interner()
        self.partners = Interner()
        self.countries = Interner()
        self.rats = Interner()
        self.customers = Interner()
        self.plans = Interner()
        self.causes = Interner()
        self.apn_sets = Interner()  # ';'-joined allowed APN lists
        self.schedules = Interner()  # "<active hours>|<time zone>" of set expectations
        self._schedule_objects: dict[int, Schedule] = {}
        self.expectations = ExpectationTables()  # per plan and customer (the engine's)
        self.extra_values = {name: Interner() for name in self.extra_dims}
        self._allowed_cache: dict[int, frozenset[int]] = {0: frozenset()}
        # Leaf groups: the tuple of dimension codes -> leaf id.
        self.leaf_keys: list[tuple[int, ...]] = []
        self._leaf_ids: dict[tuple[int, ...], int] = {}
        self._leaf_codes = np.zeros((0, len(self.dims)), np.int32)
        self._labels: tuple[tuple[int, ...], tuple[tuple[str, ...], ...]] = ((), ())

    # ---- rows -------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.index)

    def row(self, iccid: str) -> int:
        """Row of a known SIM, or -1; either form of its ICCID finds it (``core.iccid``)."""
        row = self.index.get(iccid)
        if row < 0:
            other = alternate_form(iccid)
            if other is not None:
                row = self.index.get(other)
        return row

    def ensure_row(self, iccid: str) -> int:
        """Row of a SIM, creating it (as an active SIM not in the inventory) if new.

        A SIM already known by the other form of its ICCID keeps its row and its form."""
        row = self.row(iccid)
        if row < 0:
            row = self.index.add(iccid)
        if row >= self.capacity:
            self._grow(max(self.capacity * 2, row + 1))
        return row

    def ensure_capacity(self, rows: int) -> None:
        """Columns for ``rows`` rows, grown as ``ensure_row`` would have grown them one
        row at a time (doubling)."""
        capacity = self.capacity
        while capacity < rows:
            capacity = max(capacity * 2, capacity + 1)
        if capacity != self.capacity:
            self._grow(capacity)

    def _grow(self, capacity: int) -> None:
        self.cols.grow(capacity)
        self.mv = views(self.cols)
        self.rhythm.resize(capacity)
        self.capacity = capacity

    # ---- inventory --------------------------------------------------------------------

    def load_inventory(self, rows: Iterable[InventoryRow]) -> int:
        """Apply inventory rows (new SIMs are added, known ones updated). Returns the count."""
        count = 0
        for item in rows:
            row = self.ensure_row(item.iccid)
            c = self.cols  # after ensure_row: the columns may have grown
            c.status[row] = STATUS_BY_NAME.get(item.status, Status.ACTIVE)
            flags = int(c.flags[row]) | Flag.IN_INVENTORY
            flags = flags | Flag.VIP if "vip" in item.tags else flags & ~Flag.VIP
            c.flags[row] = flags
            c.customer[row] = self.customers.code(item.customer)
            c.plan[row] = self.plans.code(item.plan)
            c.allowed_apns[row] = self.apn_sets.code(";".join(item.apns))
            c.data_cap[row] = -1 if item.data_cap_bytes is None else item.data_cap_bytes
            for name in self.extra_dims:
                c.extra[name][row] = self.extra_values[name].code(item.extra.get(name))
            self._set_expectation(row, item)
            count += 1
        return count

    def _set_expectation(self, row: int, item: InventoryRow) -> None:
        """Resolve the SIM's set expectation: its own columns, else its plan's, else its
        customer's (each part on its own); the time zone defaults to UTC."""
        tables = self.expectations
        levels: list[tuple[int, Expectation | None]] = [
            (1, Expectation(item.expected_interval_s, item.active_hours, item.timezone)),
            (2, tables.plans.get(item.plan) if item.plan else None),
            (3, tables.customers.get(item.customer) if item.customer else None),
        ]
        interval, interval_from = 0.0, 0
        hours: str | None = None
        hours_from = 0
        zone: str | None = None
        for source, spec in levels:
            if spec is None:
                continue
            if not interval_from and spec.expected_interval_s is not None:
                interval, interval_from = spec.expected_interval_s, source
            if not hours_from and spec.active_hours is not None:
                hours, hours_from = spec.active_hours, source
            if zone is None:
                zone = spec.timezone
        c = self.cols
        c.expect_interval[row] = interval
        code = 0 if hours is None else self.schedules.code(f"{hours}|{zone or 'UTC'}")
        if code > _MAX_SCHEDULES:  # more distinct active hours than the int16 column holds
            code, hours_from = 0, 0
        c.expect_hours[row] = code
        c.expect_from[row] = interval_from | (hours_from << 2)

    def schedule(self, code: int) -> Schedule:
        """The active hours of a ``schedules`` code (> 0), built once."""
        found = self._schedule_objects.get(code)
        if found is None:
            hours, _, zone = self.schedules.values[code].rpartition("|")
            found = Schedule(hours, zone)
            self._schedule_objects[code] = found
        return found

    def allowed_apns(self, row: int) -> frozenset[int]:
        """APN codes the SIM's profile allows (empty: the inventory says nothing)."""
        code = int(self.cols.allowed_apns[row])
        found = self._allowed_cache.get(code)
        if found is None:
            names = self.apn_sets.values[code].split(";")
            found = frozenset(self.apns.code(n) for n in names if n)
            self._allowed_cache[code] = found
        return found

    def allowed_apn_names(self, row: int) -> list[str]:
        text = self.apn_sets.values[int(self.cols.allowed_apns[row])]
        return [n for n in text.split(";") if n]

    # ---- leaf groups ------------------------------------------------------------------

    def dim_codes(self, row: int) -> tuple[int, ...]:
        c = self.cols
        out = []
        for dim in self.dims:
            column = c.extra[dim] if dim in c.extra else getattr(c, dim)
            out.append(int(column[row]))
        return tuple(out)

    def dim_values(self, dim: str) -> list[str]:
        """String value of every code of a dimension."""
        return self._interner(dim).values

    def _interner(self, dim: str) -> Interner:
        attribute = INTERNER_OF.get(dim)
        if attribute is None:
            return self.extra_values[dim]
        table: Interner = getattr(self, attribute)
        return table

    def dim_column(self, dim: str) -> np.ndarray:
        """The per-SIM code column of a dimension."""
        c = self.cols
        column: np.ndarray = c.extra[dim] if dim in c.extra else getattr(c, dim)
        return column

    def find_leaf(self, key: tuple[int, ...]) -> int:
        """The leaf id of a combination of dimension codes, -1 when there is none yet."""
        return self._leaf_ids.get(key, -1)

    def refresh_leaf(self, row: int) -> None:
        """Recompute the SIM's leaf after one of its dimension values changed."""
        self.cols.leaf[row] = self.leaf_id(self.dim_codes(row))

    def leaf_id(self, key: tuple[int, ...]) -> int:
        """The leaf id of a combination of dimension codes, registered if new."""
        leaf = self._leaf_ids.get(key)
        if leaf is None:
            leaf = len(self.leaf_keys)
            self._leaf_ids[key] = leaf
            self.leaf_keys.append(key)
        return leaf

    def refresh_all_leaves(self) -> None:
        for row in range(len(self)):
            if self.cols.attrs_at[row] != NEVER or self.cols.leaf[row] >= 0:
                self.refresh_leaf(row)

    @property
    def n_leaves(self) -> int:
        return len(self.leaf_keys)

    def note_moves(self, rows: np.ndarray, left: np.ndarray, t: np.ndarray | int) -> None:
        """SIMs ``rows`` left the leaves ``left`` at ``t`` (their partner changed). The
        move counts against the partner left (``prev_leaf``, ``evaluate.Evidence.MOVED``)
        unless the SIM went back to the partner it had last left: devices steered away
        return to their partner once it is back, and a device at a border goes to and
        fro; neither is the failure of the partner they leave (a partner's steered
        devices going home paged the sibling that had carried them)."""
        c = self.cols
        if "partner" in self.dims:
            prev = c.prev_leaf[rows]
            came_from = self.leaf_codes()[np.maximum(prev, 0), self.dims.index("partner")]
            back = (prev >= 0) & (came_from == c.partner[rows])
            left = np.where(back, -1, left)
        c.prev_leaf[rows] = left
        c.moved_at[rows] = t

    def leaf_codes(self) -> np.ndarray:
        """(n_leaves, n_dims) int32 codes of every leaf (cached until a leaf is added)."""
        cached = self._leaf_codes
        if cached.shape[0] != len(self.leaf_keys):
            shape = (len(self.leaf_keys), len(self.dims))
            cached = np.asarray(self.leaf_keys, dtype=np.int32).reshape(shape)
            self._leaf_codes = cached
        return cached

    def leaf_labels(self) -> tuple[tuple[str, ...], ...]:
        """Per dimension, the string of every code (cached until a value is added)."""
        sizes = tuple(len(self._interner(d)) for d in self.dims)
        if self._labels[0] != sizes:
            self._labels = (sizes, tuple(tuple(self.dim_values(d)) for d in self.dims))
        return self._labels[1]

    def find_code(self, dim: str, value: str) -> int:
        return self._interner(dim).find(value)

    # ---- checkpoint -------------------------------------------------------------------

    def _interners(self) -> dict[str, Interner]:
        out = {
            "apns": self.apns,
            "partners": self.partners,
            "countries": self.countries,
            "rats": self.rats,
            "customers": self.customers,
            "plans": self.plans,
            "causes": self.causes,
            "apn_sets": self.apn_sets,
            "schedules": self.schedules,
        }
        out.update({f"extra.{name}": table for name, table in self.extra_values.items()})
        return out

    def export(self) -> tuple[dict[str, np.ndarray], dict[str, object]]:
        """Copies of the used rows of every column, the index keys, the rhythm model and
        the leaf registry (arrays), and the interned value tables and dims (JSON-able).

        Synchronous and read-only: the caller takes it between two batches, so the copy is
        consistent. A few tens of ms per million SIMs (memcpy of ~150 bytes per SIM).
        """
        n = len(self)
        arrays: dict[str, np.ndarray] = {}
        hi, lo = self.index.keys()
        arrays["index.hi"] = hi
        arrays["index.lo"] = lo
        cols = self.cols
        for name in Columns.__slots__:
            if name != "extra":
                arrays[f"col.{name}"] = getattr(cols, name)[:n].copy()
        for name, column in cols.extra.items():
            arrays[f"extra.{name}"] = column[:n].copy()
        for name, column in self.rhythm.export(n).items():
            arrays[f"rhythm.{name}"] = column
        arrays["leaf_keys"] = self.leaf_codes().copy()
        meta: dict[str, object] = {
            "dims": list(self.dims),
            "sims": n,
            "interners": {name: list(t.values) for name, t in self._interners().items()},
        }
        return arrays, meta

    def restore(self, arrays: Mapping[str, np.ndarray], meta: Mapping[str, object]) -> None:
        """Load ``export()``'s output into this (fresh) state. ``ValueError`` when it does
        not fit (other dims, a missing or mistyped column)."""
        dims = meta.get("dims")
        if dims != list(self.dims):
            raise ValueError(f"checkpoint dims {dims} differ from the configured {list(self.dims)}")
        self.index.restore(arrays["index.hi"], arrays["index.lo"])
        n = len(self.index)
        capacity = max(self.capacity, n)
        cols = Columns.empty(capacity, self.extra_dims)
        names = [(name, f"col.{name}") for name in Columns.__slots__ if name != "extra"]
        for name, key in names:
            if key not in arrays and name in ADDED_COLUMNS:
                continue
            _copy_into(getattr(cols, name), arrays[key], n, key)
        for name in self.extra_dims:
            _copy_into(cols.extra[name], arrays[f"extra.{name}"], n, f"extra.{name}")
        self.cols = cols
        self.mv = views(cols)
        self.rhythm = RhythmModel(capacity, self.rhythm.params)
        self.rhythm.restore(
            {name: arrays[f"rhythm.{name}"] for name in RhythmModel._COLUMNS}  # noqa: SLF001 - its own layout
        )
        self.capacity = capacity
        tables = meta.get("interners")
        if not isinstance(tables, dict):
            raise TypeError("checkpoint has no interned value tables")
        for name, table in self._interners().items():
            values = tables.get(name)
            if values is None and name in ADDED_TABLES:
                values = [""]
            if not isinstance(values, list) or not values or values[0] != "":
                raise ValueError(f"checkpoint value table {name} is missing or malformed")
            table.values = [str(v) for v in values]
            table._codes = {v: i for i, v in enumerate(table.values)}  # noqa: SLF001 - same module
        self._allowed_cache = {0: frozenset()}
        self._schedule_objects = {}
        leaf_keys = arrays["leaf_keys"]
        if leaf_keys.ndim != 2 or leaf_keys.shape[1] != len(self.dims):
            raise ValueError(f"checkpoint leaf registry has shape {leaf_keys.shape}")
        self.leaf_keys = [tuple(k) for k in leaf_keys.tolist()]
        self._leaf_ids = {key: i for i, key in enumerate(self.leaf_keys)}
        self._leaf_codes = np.zeros((0, len(self.dims)), np.int32)
        self._labels = ((), ())

    def set_away(self, rows: np.ndarray) -> int:
        """Mark exactly ``rows`` as away (a cluster node no longer reads their partition:
        inactive here, never counted in a group); every other SIM is not away. Returns
        how many SIMs changed."""
        n = len(self)
        flags = self.cols.flags
        away = np.zeros(n, bool)
        away[rows[rows < n]] = True
        was = (flags[:n] & Flag.AWAY) != 0
        flags[:n] = np.where(away, flags[:n] | Flag.AWAY, flags[:n] & np.uint8(0xFF & ~Flag.AWAY))
        return int(np.count_nonzero(was != away))

    def forget_inventory(self) -> None:
        """Drop what the inventory said about every SIM (before re-reading a changed one).

        A SIM still in the new inventory gets its facts back from it; one that is no
        longer there is kept like any SIM known only from its records (active, no customer,
        no plan, no allowed APNs, no cap, not vip). One that never sent data either is set
        ``deactivated`` so that it does not linger as ``never_seen``.
        """
        n = len(self)
        c = self.cols
        listed = (c.flags[:n] & Flag.IN_INVENTORY) != 0
        c.flags[:n] &= np.uint8(0xFF & ~(Flag.IN_INVENTORY | Flag.VIP))
        c.customer[:n] = 0
        c.plan[:n] = 0
        c.allowed_apns[:n] = 0
        c.data_cap[:n] = -1
        c.expect_interval[:n] = 0
        c.expect_hours[:n] = 0
        c.expect_from[:n] = 0
        for column in c.extra.values():
            column[:n] = 0
        never = listed & np.isnan(self.rhythm.last_data[:n]) & (c.attrs_at[:n] == NEVER)
        c.status[:n] = np.where(never, Status.DEACTIVATED, Status.ACTIVE).astype(np.int8)

    # ---- memory -----------------------------------------------------------------------

    def nbytes(self) -> int:
        """Bytes held by the per-SIM columns, the rhythm model and the index."""
        cols = sum(a.nbytes for a in self.cols.arrays())
        return cols + self.rhythm.nbytes() + self.index.nbytes()
