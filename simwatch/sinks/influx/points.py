"""Line protocol of the InfluxDB sink: escaping, per-SIM point chunks, group and
incident points (the schema of ``simwatch.sinks.influx.schema``).

Per-SIM points are kept as numpy *chunks* (rows, tag codes and field values gathered
at the cycle, while the engine is consistent) and formatted lazily, ``lines(a, b)`` at
a time, by the sink's writer. Group and incident points (a few hundred at most) are
formatted at once. The group figures are ``simwatch.core.groups``'.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

import numpy as np
import orjson

from simwatch.core.evaluate import STATE_NAMES
from simwatch.core.groups import UNKNOWN, by_dimension, cycle_figures
from simwatch.sinks.influx.schema import GROUP, INCIDENT, SIM_STATE, SIM_USAGE

if TYPE_CHECKING:
    from collections.abc import Sequence

    from simwatch.core.engine import Engine
    from simwatch.core.evaluate import Evaluation
    from simwatch.core.iccid_index import IccidIndex
    from simwatch.core.incidents import IncidentChange

_N_STATES: Final = len(STATE_NAMES)

_ESCAPE_TAG: Final = str.maketrans({
    ",": r"\,",
    "=": r"\=",
    " ": r"\ ",
    "\n": r"\n",
    "\r": r"\r",
    "\t": r"\t",
})  # fmt: skip
_ESCAPE_STRING: Final = str.maketrans({'"': r"\"", "\\": r"\\"})


def escape_tag(text: str) -> str:
    """A tag key or value in line protocol: commas, equals signs and spaces escaped.

    Backslashes stay as they are (InfluxDB keeps them literally); a trailing backslash
    is removed, because it would escape the separator after the value. Control
    characters become ``\\n``, ``\\r``, ``\\t`` (as the official client writes them).
    An empty result means "no such tag" (line protocol has no empty tag values).
    """
    return text.rstrip("\\").translate(_ESCAPE_TAG)


def string_field(text: str) -> str:
    """A string field value in line protocol: double-quoted, ``"`` and ``\\`` escaped."""
    return '"' + text.translate(_ESCAPE_STRING) + '"'


def float_field(value: float) -> str | None:
    """A float field value, or None for NaN and infinities (line protocol has neither)."""
    return repr(float(value)) if math.isfinite(value) else None


# ---- per-SIM points ----------------------------------------------------------------------


def _column(engine: Engine, dim: str) -> np.ndarray:
    cols = engine.state.cols
    column: np.ndarray = cols.extra[dim] if dim in cols.extra else getattr(cols, dim)
    return column


@dataclass(frozen=True, slots=True)
class SimTags:
    """The tags of per-SIM points besides the ICCID: ``customer`` and one per dimension.

    Keys are sorted (InfluxDB's preferred order); the ICCID goes between ``split - 1``
    and ``split``. ``values`` are the engine's interned value lists: they only ever grow,
    so a code gathered now still names the same value when the point is formatted.
    """

    keys: tuple[str, ...]  # escaped tag keys, sorted
    names: tuple[str, ...]  # the same keys unescaped (customer or a dimension name)
    values: tuple[list[str], ...]
    split: int  # keys[:split] sort before "iccid"

    @classmethod
    def of(cls, engine: Engine) -> SimTags:
        names = tuple(sorted({"customer", *engine.state.dims} - {"iccid"}))
        state = engine.state
        values = tuple(
            state.customers.values if name == "customer" else state.dim_values(name)
            for name in names
        )
        split = sum(1 for name in names if name < "iccid")
        return cls(tuple(escape_tag(n) for n in names), names, values, split)

    def codes(self, engine: Engine, rows: np.ndarray) -> np.ndarray:
        """(len(keys), len(rows)) int32 tag-value codes of ``rows``, gathered now (one
        contiguous row per key: the gather writes sequentially)."""
        out = np.empty((len(self.names), len(rows)), np.int32)
        for j, name in enumerate(self.names):
            column = engine.state.cols.customer if name == "customer" else _column(engine, name)
            out[j] = column[rows]
        return out

    def pieces(self, codes: Sequence[int]) -> tuple[str, str]:
        """``(",k=v..." before the ICCID, ",k=v..." after it)`` for one code combination."""
        parts = []
        for key, values, code in zip(self.keys, self.values, codes, strict=True):
            value = escape_tag(values[code]) if 0 < code < len(values) else ""
            parts.append(f",{key}={value}" if value else "")
        return "".join(parts[: self.split]), "".join(parts[self.split :])


class Chunk(Protocol):
    """Points of one cycle waiting to be formatted; ``lines(a, b)`` formats points a..b."""

    def __len__(self) -> int: ...

    def lines(self, start: int, stop: int) -> list[str]: ...


class Lines:
    """Points already in line protocol (group and incident points)."""

    __slots__ = ("items",)

    def __init__(self, items: list[str]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def lines(self, start: int, stop: int) -> list[str]:
        return self.items[start:stop]


@dataclass(frozen=True, slots=True)
class SimRows:
    """What every per-SIM point of one cycle and measurement shares, gathered at the cycle."""

    time: int
    index: IccidIndex  # row -> ICCID (rows are never reused)
    tags: SimTags
    rows: np.ndarray  # int64 rows of the SIMs
    codes: np.ndarray  # (len(tags.keys), len(rows)) int32 tag-value codes


class SimChunk:
    """Per-SIM points of one cycle: rows and tag codes, formatted lazily in batches."""

    __slots__ = ("measurement", "sims")

    def __init__(self, measurement: str, sims: SimRows) -> None:
        self.measurement = escape_tag(measurement)
        self.sims = sims

    def __len__(self) -> int:
        return len(self.sims.rows)

    def fields(self, start: int, stop: int) -> list[str]:
        raise NotImplementedError

    def lines(self, start: int, stop: int) -> list[str]:
        sims = self.sims
        iccids = sims.index.iccids(sims.rows[start:stop])
        combos, inverse = np.unique(sims.codes[:, start:stop].T, axis=0, return_inverse=True)
        pieces = [sims.tags.pieces(c) for c in combos.tolist()]
        head, t = self.measurement, sims.time
        out = []
        for iccid, k, fields in zip(
            iccids, inverse.reshape(-1).tolist(), self.fields(start, stop), strict=True
        ):
            before, after = pieces[k]
            out.append(f"{head}{before},iccid={iccid}{after} {fields} {t}")
        return out


class UsageChunk(SimChunk):
    __slots__ = ("delta", "last_data", "month_bytes")

    def __init__(
        self,
        sims: SimRows,
        delta: np.ndarray,
        month_bytes: np.ndarray,
        last_data: np.ndarray,
    ) -> None:
        super().__init__(SIM_USAGE.name, sims)
        self.delta = delta
        self.month_bytes = month_bytes
        self.last_data = last_data

    def fields(self, start: int, stop: int) -> list[str]:
        out = []
        for delta, used, last in zip(
            self.delta[start:stop].tolist(),
            self.month_bytes[start:stop].tolist(),
            self.last_data[start:stop].tolist(),
            strict=True,
        ):
            text = f"bytes={delta}i,month_bytes={used}i"
            out.append(text if math.isnan(last) else f"{text},last_data={last!r}")
        return out


_STATE_FIELDS: Final = tuple(
    tuple(
        f"state={string_field(STATE_NAMES[new])},previous={string_field(STATE_NAMES[old])},"
        f"code={new}i"
        for new in range(_N_STATES)
    )
    for old in range(_N_STATES)
)


class StateChunk(SimChunk):
    __slots__ = ("new", "old")

    def __init__(
        self,
        sims: SimRows,
        old: np.ndarray,
        new: np.ndarray,
    ) -> None:
        super().__init__(SIM_STATE.name, sims)
        self.old = old
        self.new = new

    def fields(self, start: int, stop: int) -> list[str]:
        table = _STATE_FIELDS
        return [
            table[o][n]
            for o, n in zip(
                self.old[start:stop].tolist(), self.new[start:stop].tolist(), strict=True
            )
        ]


class UsageTracker:
    """Which SIMs' data advanced since the previous cycle, and by how many bytes.

    Remembers each SIM's ``month_bytes`` and ``month`` as of the previous cycle (10 B
    per SIM). A SIM whose month moved on reports the new month's bytes (bytes of the old
    month that arrived after the previous point are not seen again).
    """

    def __init__(self) -> None:
        self.month_bytes = np.zeros(0, np.int64)
        self.month = np.full(0, -1, np.int16)

    def _ensure(self, n: int) -> None:
        if len(self.month_bytes) < n:
            capacity = max(n, 2 * len(self.month_bytes), 1024)
            grown = np.zeros(capacity, np.int64)
            grown[: len(self.month_bytes)] = self.month_bytes
            month = np.full(capacity, -1, np.int16)
            month[: len(self.month)] = self.month
            self.month_bytes, self.month = grown, month

    def advance(self, engine: Engine, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(rows, bytes since the previous point, month_bytes)`` of SIMs that advanced."""
        self._ensure(n)
        cols = engine.state.cols
        used, month = cols.month_bytes[:n], cols.month[:n]
        prev_used, prev_month = self.month_bytes[:n], self.month[:n]
        rows = np.flatnonzero((used != prev_used) | (month != prev_month))
        now_used = used[rows]
        if 4 * len(rows) > n:  # most SIMs (the first cycle): contiguous passes beat gathers
            delta = np.where(month == prev_month, used - prev_used, used)[rows]
            prev_used[:] = used
            prev_month[:] = month
        else:
            same = month[rows] == prev_month[rows]
            delta = np.where(same, now_used - prev_used[rows], now_used)
            prev_used[rows] = now_used
            prev_month[rows] = month[rows]
        return rows, delta, now_used

    def baseline(self, engine: Engine, n: int) -> None:
        """Take the engine's current figures as seen (no points for what came before)."""
        self._ensure(n)
        self.month_bytes[:n] = engine.state.cols.month_bytes[:n]
        self.month[:n] = engine.state.cols.month[:n]


# ---- group and incident points -------------------------------------------------------


def group_lines(engine: Engine, evaluation: Evaluation, t: int, top_n: int) -> list[str]:
    """``simwatch_group`` points of one cycle: per dimension, the ``top_n`` values with
    the most SIMs and ``_other`` (the rest summed); the figures of ``simwatch.core.groups``,
    the same as the ``simwatch_group_*`` metrics and the API's groups view."""
    state = engine.state
    figures = cycle_figures(state, evaluation)
    head = escape_tag(GROUP.name)
    out: list[str] = []
    for dim in state.dims:
        dim_tag = escape_tag(dim) or "_"
        for group in by_dimension(state, figures, dim, top_n):
            fields = [f"{name}={count}i" for name, count in group.state_counts().items()]
            fields.append(f"total={group.total}i")
            fields.append(f"affected={group.affected}i")
            ratio = group.affected_ratio
            if ratio is not None:
                fields.append(f"affected_ratio={ratio!r}")
            fields.append(f"month_bytes={group.month_bytes}i")
            value = escape_tag(group.dims[dim]) or UNKNOWN
            out.append(f"{head},dim={dim_tag},value={value} {','.join(fields)} {t}")
    return out


def incident_lines(changes: Sequence[IncidentChange], t: int) -> list[str]:
    """``simwatch_incident`` points: one per incident change of the cycle."""
    head = escape_tag(INCIDENT.name)
    out = []
    for change in changes:
        incident = change.incident
        tags = (
            f"event={escape_tag(change.kind)},id={escape_tag(incident.id)},"
            f"kind={escape_tag(incident.kind)},severity={escape_tag(incident.severity)}"
        )
        fields = [f"affected={round(incident.affected)}i", f"total={round(incident.total)}i"]
        for name, number in (
            ("ratio", incident.ratio),
            ("baseline_ratio", incident.baseline_ratio),
            ("score", incident.score),
        ):
            text = float_field(number)
            if text is not None:
                fields.append(f"{name}={text}")
        dims = orjson.dumps(incident.dims, option=orjson.OPT_SORT_KEYS).decode()
        fields.append(f"dims={string_field(dims)}")
        if incident.iccid is not None:
            fields.append(f"iccid={string_field(incident.iccid)}")
        out.append(f"{head},{tags} {','.join(fields)} {t}")
    return out
