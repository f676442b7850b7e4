"""Per-group figures, the one aggregation behind /metrics, InfluxDB and the API.

A group is one value of one dimension (``partner=20801``), or one leaf group (a
combination of every dimension's value); its figures are summed over its SIMs:

- ``states``: SIMs per state (``STATE_NAMES``), every SIM of the group;
- ``total``: SIMs expected to report (the evaluation's ``counted``: active, seen, rhythm
  learned, in a leaf group);
- ``affected``: of those, the overdue ones (late or silent) not explained by a per-SIM
  cause (wrong APN, data cap): the evaluation's ``overdue`` mask;
- ``affected_ratio``: ``affected / total`` (None when ``total`` is 0);
- ``month_bytes``: bytes (up + down) used in the calendar month (UTC) of the evaluation.

``dims`` is a group's dimension → value mapping (``{"partner": "20801"}``). Per
dimension, values beyond the ``top_n`` with the most SIMs are summed into ``OTHER`` so
that exported label sets stay bounded, and SIMs with no value yet are counted under
``UNKNOWN``. One ``np.bincount`` per dimension over (value, category) codes.

Pure: numpy over the fleet state and one evaluation; no clock, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import numpy as np

from simwatch.core.evaluate import STATE_NAMES
from simwatch.core.timeutil import month_of

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from simwatch.core.evaluate import Evaluation
    from simwatch.core.state import FleetState

DEFAULT_TOP_N: Final = 200  # dimension values exported per dimension; the rest is "_other"
OTHER: Final = "_other"  # label value of the values beyond the top N, summed
UNKNOWN: Final = "_unknown"  # label value of SIMs without a value for the dimension yet
OTHER_CODE: Final = -1  # the key of the OTHER row in ``Groups.codes``

N_STATES: Final = len(STATE_NAMES)
# Per SIM, one category code over (state, how it counts): 0 not expected to report,
# 1 expected and reporting, 2 expected and overdue (late or silent, unexplained).
_KINDS: Final = 3
_CATEGORIES: Final = N_STATES * _KINDS


# ---- per-SIM inputs ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SimFigures:
    """What the aggregation sums, per SIM: the first ``n`` rows of the fleet."""

    states: np.ndarray  # int8 state code (index into STATE_NAMES)
    counted: np.ndarray  # bool: expected to report (counts in a group's total)
    affected: np.ndarray  # bool: counted, overdue and not explained per SIM
    month_bytes: np.ndarray  # int64: bytes used in the evaluation's month (else 0)

    @property
    def n(self) -> int:
        return len(self.states)


def month_usage(state: FleetState, n: int, at: float) -> np.ndarray:
    """int64 bytes of the first ``n`` SIMs used in the calendar month (UTC) of ``at``."""
    cols = state.cols
    used: np.ndarray = np.where(cols.month[:n] == month_of(at), cols.month_bytes[:n], 0)
    return used.astype(np.int64, copy=False)


def cycle_figures(state: FleetState, evaluation: Evaluation) -> SimFigures:
    """The SIMs of one evaluation cycle (a SIM added since is in no figure)."""
    n = evaluation.n
    return SimFigures(
        states=evaluation.states[:n],
        counted=evaluation.counted[:n],
        affected=evaluation.overdue[:n],  # the evaluation's name for the same mask
        month_bytes=month_usage(state, n, evaluation.now),
    )


def fleet_figures(
    state: FleetState, evaluation: Evaluation | None, states: np.ndarray, now: float
) -> SimFigures:
    """Every SIM of the fleet: ``states`` per SIM (the cycle's, fresh where it has none).

    ``total`` and ``affected`` stay the cycle's: a SIM the last evaluation did not see
    (added since, or no evaluation yet) is in neither. The month is the cycle's (``now``'s
    before the first). With ``states`` of the cycle's SIMs only, this is
    ``cycle_figures``."""
    n = len(states)
    counted = np.zeros(n, bool)
    affected = np.zeros(n, bool)
    if evaluation is not None:
        m = min(n, evaluation.n)
        counted[:m] = evaluation.counted[:m]
        affected[:m] = evaluation.overdue[:m]
    at = now if evaluation is None else evaluation.now
    return SimFigures(states, counted, affected, month_usage(state, n, at))


# ---- the figures of groups -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Group:
    """The figures of one group."""

    dims: dict[str, str]  # dimension -> value; {} for the SIMs without a leaf group yet
    states: tuple[int, ...]  # SIMs per state, in STATE_NAMES order
    total: int  # SIMs expected to report
    affected: int  # of those, overdue and not explained per SIM
    month_bytes: int  # bytes used in the evaluation's calendar month

    @property
    def sims(self) -> int:
        """Every SIM of the group, in any state."""
        return sum(self.states)

    @property
    def affected_ratio(self) -> float | None:
        """``affected / total``; None when no SIM of the group is expected to report."""
        return self.affected / self.total if self.total else None

    def state_counts(self) -> dict[str, int]:
        return dict(zip(STATE_NAMES, self.states, strict=True))


@dataclass(frozen=True, slots=True)
class Groups:
    """The groups of one grouping: one row per group, the arrays aligned."""

    dimension: str | None  # the dimension grouped by; None: leaf groups
    dims: list[dict[str, str]]  # per group, its dimension -> value mapping
    codes: np.ndarray  # int64 key per group: the value code (leaf + 1), OTHER_CODE
    states: np.ndarray  # (groups, N_STATES) int64 SIMs per state
    total: np.ndarray  # int64
    affected: np.ndarray  # int64
    month_bytes: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.dims)

    def __iter__(self) -> Iterator[Group]:
        states = self.states.tolist()
        for dims, counts, total, affected, used in zip(
            self.dims,
            states,
            self.total.tolist(),
            self.affected.tolist(),
            self.month_bytes.tolist(),
            strict=True,
        ):
            yield Group(dims, tuple(counts), total, affected, used)

    def get(self, code: int) -> Group | None:
        """The group of key ``code`` (0: the SIMs without a value), None if it has no SIMs."""
        found = np.flatnonzero(self.codes == code)
        if not len(found):
            return None
        i = int(found[0])
        return Group(
            self.dims[i],
            tuple(self.states[i].tolist()),
            int(self.total[i]),
            int(self.affected[i]),
            int(self.month_bytes[i]),
        )


def _sums(keys: np.ndarray, n_keys: int, sims: SimFigures) -> tuple[np.ndarray, np.ndarray]:
    """Per key: ``(n_keys, _CATEGORIES)`` SIM counts, and the month's bytes."""
    key = np.multiply(keys, _CATEGORIES, dtype=np.int64)
    key += sims.states.astype(np.int64) * _KINDS
    key += sims.counted
    key += sims.affected
    per_key = np.bincount(key, minlength=n_keys * _CATEGORIES).reshape(n_keys, _CATEGORIES)
    # float64 sums are exact below 2**53 bytes (8 PiB) per group
    used = np.bincount(keys, weights=sims.month_bytes.astype(np.float64), minlength=n_keys)
    return per_key.astype(np.int64, copy=False), np.rint(used).astype(np.int64)


def _groups(
    dimension: str | None,
    dims: list[dict[str, str]],
    codes: np.ndarray,
    per_key: np.ndarray,
    used: np.ndarray,
) -> Groups:
    by_kind = per_key.reshape(len(dims), N_STATES, _KINDS)
    return Groups(
        dimension=dimension,
        dims=dims,
        codes=codes,
        states=by_kind.sum(axis=2),
        total=by_kind[:, :, 1:].sum(axis=(1, 2)),
        affected=by_kind[:, :, 2].sum(axis=1),
        month_bytes=used,
    )


def dimension_codes(state: FleetState, dim: str, n: int) -> np.ndarray:
    """The value code of the first ``n`` SIMs for ``dim`` (a record or inventory dimension)."""
    cols = state.cols
    column: np.ndarray = cols.extra[dim] if dim in cols.extra else getattr(cols, dim)
    return column[:n]


def _label(values: Sequence[str], code: int) -> str:
    return values[code] if 0 < code < len(values) else UNKNOWN


def by_dimension(
    state: FleetState, sims: SimFigures, dim: str, top_n: int | None = DEFAULT_TOP_N
) -> Groups:
    """The groups of one dimension's values, the ones with the most SIMs first (ties: the
    value seen first); beyond ``top_n`` of them (None: no limit) the rest summed into one
    ``OTHER`` group. SIMs without a value are the group ``UNKNOWN`` (code 0). Values
    without SIMs are left out."""
    codes = dimension_codes(state, dim, sims.n).astype(np.int64)
    values = state.dim_values(dim)
    n_codes = max(len(values), int(codes.max(initial=0)) + 1)
    per_key, used = _sums(codes, n_codes, sims)
    sizes = per_key.sum(axis=1)
    present = np.flatnonzero(sizes)
    order = present[np.argsort(-sizes[present], kind="stable")]
    kept = order if top_n is None else order[:top_n]
    labels = [_label(values, code) for code in kept.tolist()]
    rows, row_bytes, row_codes = per_key[kept], used[kept], kept.astype(np.int64)
    if len(order) > len(kept):
        rest = order[len(kept) :]
        labels.append(OTHER)
        rows = np.vstack([rows, per_key[rest].sum(axis=0)])
        row_bytes = np.append(row_bytes, used[rest].sum())
        row_codes = np.append(row_codes, OTHER_CODE)
    return _groups(dim, [{dim: label} for label in labels], row_codes, rows, row_bytes)


def by_dimensions(
    state: FleetState, sims: SimFigures, top_n: int | None = DEFAULT_TOP_N
) -> list[Groups]:
    """``by_dimension`` of every grouping dimension of the state (``state.dims``)."""
    return [by_dimension(state, sims, dim, top_n) for dim in state.dims]


def by_leaf(state: FleetState, sims: SimFigures) -> Groups:
    """Every leaf group with SIMs (key ``leaf + 1``, in order of first appearance) and,
    key 0 with ``dims`` {}, the SIMs in no leaf group yet (no record with attributes)."""
    keys = state.cols.leaf[: sims.n].astype(np.int64) + 1
    n_keys = state.n_leaves + 1
    per_key, used = _sums(keys, n_keys, sims)
    present = np.flatnonzero(per_key.sum(axis=1))
    leaf_codes = state.leaf_codes().tolist()
    labels = state.leaf_labels()
    dims = []
    for key in present.tolist():
        codes = leaf_codes[key - 1] if key else [0] * len(state.dims)
        dims.append({
            d: labels[j][code]
            for j, (d, code) in enumerate(zip(state.dims, codes, strict=True))
            if code
        })  # fmt: skip
    return _groups(None, dims, present.astype(np.int64), per_key[present], used[present])


def top_customers(state: FleetState, rows: np.ndarray, limit: int) -> list[tuple[str, int]]:
    """The ``limit`` customers with the most SIMs among ``rows``, most first (ties: the
    customer known first); SIMs without a customer count as ``(no customer)``."""
    if not rows.size:
        return []
    counts = np.bincount(state.cols.customer[rows].astype(np.int64))
    names = state.customers.values
    order = np.argsort(-counts, kind="stable")[:limit]
    return [(names[c] or "(no customer)", int(counts[c])) for c in order.tolist() if counts[c]]
