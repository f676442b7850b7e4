"""Multi-dimensional root-cause localization.

Given per-leaf counts (a leaf is one combination of dimension values, e.g. one
``(apn, country, partner)``), name the fewest, most specific groups of leaves
whose failures are far beyond their expected level.

Method (see docs/localization.md for the long form):

1. Candidates are every group defined by fixing 0..``max_depth`` dimensions
   (depth 0 is the whole fleet, ``{}``). All groups of all cuboids are summed
   in one ``np.bincount`` pass over a stacked group-id array.
2. A group is *significant* when its one-sided Poisson log-likelihood ratio
   ``A·ln(A/E) - (A - E)`` exceeds the Bonferroni threshold for ``alpha`` over
   the number of non-empty candidate groups, and it has at least
   ``min_affected`` failing members, an excess ``A - E`` of at least
   ``min_excess`` and a lift ``A/E`` of at least ``min_lift``. The threshold is
   raised by the leaves' over-dispersion (fleet-wide, and per leaf from
   ``LeafTable.dispersion``) and, for large groups, by the leaves' relative scatter
   (a variance ``φ·E + κ·E²``, :func:`relative_dispersion`), except for a count
   significant at the fleet's threshold even against its leaves' history peaks
   (``LeafTable.peak``). Each leaf's expected count is floored at
   ``min_baseline_ratio`` of its members (a member that never failed still counts).
3. Greedy explanation: pick the significant group with the largest LLR, mark
   its leaves explained, recompute every group over the unexplained leaves
   only, and repeat. A group that merely contains an anomalous child plus
   normal leaves scores lower than the child (the normal leaves are penalised
   at the child's lift), while a parent whose children are all elevated scores
   the sum of them and wins. Exact ties (the same leaves, e.g. a country with a
   single partner) go to the group with fewer attributes, then to the earlier
   dimension order.
4. Siblings stay apart (:func:`_split`): a pick whose children on one attribute
   fail while its other children are healthy (not elevated by ``generalize_margin``
   nats, and holding at least ``split_min_share`` of its members) is replaced by
   those children: one APN failing in two countries is two causes, not the APN.
5. Move (:func:`_refine`): a pick is replaced by the parent (one attribute fewer)
   or the child (one more) that explains its leaves better under the fault model of
   :func:`share_evidence` (a fault takes one share of its group's members on top of
   their baseline), by more than ``generalize_margin`` quasi-likelihood nats; a child
   only while the rest of the pick is not elevated itself (else the fault is the
   pick's, uneven). A sibling cause never carries the climb over the parent's
   healthy children. Parents and children include the groups named by swapping one
   attribute for another that hold more leaves, all of the pick's (a partner's
   country), or fewer, all inside it (one partner of a country): at three attributes
   ``{apn, country, rat}`` and ``{apn, partner, rat}`` are otherwise out of each
   other's reach. The move repeats from the new group; a group it reached with more
   leaves than the pick splits as in step 4.
6. If a cause picked later covers an earlier one (its leaves are a superset),
   the earlier one is dropped: the parent explains it. Except the whole fleet
   picked after causes whose fault its other leaves do not share
   (:func:`_residual_fleet`): it is named beside them.

The core is pure: no I/O, no clock, no global state.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from itertools import combinations
from statistics import NormalDist
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_DENSE_LIMIT = 4096  # mixed-radix keys up to this many cells are ranked by counting
_TIE_RTOL = 1e-9
_SORT_LIMIT = 512  # fewer group ids than this are deduplicated by sorting, more by counting


@dataclass(frozen=True, slots=True)
class LeafTable:
    """Per-leaf counts for one evaluation instant."""

    dims: tuple[str, ...]
    codes: npt.NDArray[np.int32]
    labels: tuple[tuple[str, ...], ...]
    affected: FloatArray
    total: FloatArray
    expected: FloatArray
    # per leaf, how much more its failing count scatters than counting noise (at least 1;
    # learned from its history, e.g. GroupBaseline.dispersion); None: unknown
    dispersion: FloatArray | None = None
    # per leaf, the largest failing count its history showed at its current size (the
    # peak share GroupBaseline.peak_share learns, times total); with ``dispersion``: a
    # group whose count is significant under counting noise even against its leaves'
    # peaks stays significant whatever their over-dispersion. None: unknown
    peak: FloatArray | None = None

    @classmethod
    def from_rows(
        cls,
        dims: Sequence[str],
        rows: Iterable[tuple[Sequence[str], float, float, float]],
    ) -> LeafTable:
        """Build a table from ``(values per dim, affected, total, expected)`` rows.

        Duplicate leaves (same values in every dimension) are summed.
        """
        dims_t = tuple(dims)
        n_dims = len(dims_t)
        maps: list[dict[str, int]] = [{} for _ in range(n_dims)]
        index: dict[tuple[int, ...], int] = {}
        codes: list[tuple[int, ...]] = []
        sums: list[list[float]] = []
        for values, affected, total, expected in rows:
            if len(values) != n_dims:
                raise ValueError(f"row has {len(values)} values for {n_dims} dims")
            key = tuple(m.setdefault(str(v), len(m)) for m, v in zip(maps, values, strict=True))
            pos = index.get(key)
            if pos is None:
                index[key] = len(codes)
                codes.append(key)
                sums.append([float(affected), float(total), float(expected)])
            else:
                acc = sums[pos]
                acc[0] += float(affected)
                acc[1] += float(total)
                acc[2] += float(expected)
        code_arr = np.asarray(codes, dtype=np.int32).reshape(len(codes), n_dims)
        num = np.asarray(sums, dtype=np.float64).reshape(len(sums), 3)
        labels = tuple(tuple(m) for m in maps)  # dicts keep insertion order = code order
        return cls(
            dims=dims_t,
            codes=code_arr,
            labels=labels,
            affected=np.ascontiguousarray(num[:, 0]),
            total=np.ascontiguousarray(num[:, 1]),
            expected=np.ascontiguousarray(num[:, 2]),
        )

    def leaves_of(self, dims: Mapping[str, str]) -> npt.NDArray[np.bool_]:
        """Bool per leaf: inside the group ``dims`` (a dimension or value the table does
        not have: none)."""
        inside = np.ones(len(self.total), bool)
        for dim, value in dims.items():
            if dim not in self.dims:
                return np.zeros(len(self.total), bool)
            column = self.dims.index(dim)
            labels = self.labels[column]
            if value not in labels:
                return np.zeros(len(self.total), bool)
            inside &= self.codes[:, column] == labels.index(value)
        return inside

    def within(self, narrow: Mapping[str, str], wide: Mapping[str, str]) -> bool:
        """Whether group ``narrow`` lies inside group ``wide`` by the leaves the table
        has (a partner's leaves all lie in its country), as the incidents judge it."""
        inner = self.leaves_of(narrow)
        return bool(inner.any()) and not bool((inner & ~self.leaves_of(wide)).any())


def dims_within(narrow: Mapping[str, str], wide: Mapping[str, str]) -> bool:
    """Whether group ``narrow`` refines group ``wide`` (or is it) by their dimensions
    alone: each of ``wide``'s values is one of ``narrow``'s. ``LeafTable.within`` judges by
    the leaves a fleet has instead (a partner lies in its country)."""
    return all(narrow.get(dim) == value for dim, value in wide.items())


@dataclass(frozen=True, slots=True)
class Cause:
    """One localized group.

    ``score`` is the one-sided Poisson log-likelihood ratio (nats) of the group's
    failing count against its expected count, ``A·ln(A/E) - (A - E)``;
    ``sqrt(2·score)`` is approximately the z-score.
    """

    dims: Mapping[str, str]
    affected: float
    total: float
    expected: float
    score: float


@dataclass(frozen=True, slots=True)
class LocalizeParams:
    """Tuning knobs of :func:`localize`.

    - ``min_affected``: a group with fewer failing members never forms a cause.
    - ``min_excess``: minimum ``affected - expected`` of a cause.
    - ``min_lift``: minimum ``affected / expected`` of a cause (guards against a
      slightly biased baseline on very large groups).
    - ``alpha``: family-wise false-alarm probability per call; the LLR threshold
      is the one-sided normal quantile of ``alpha / m`` (Bonferroni over the
      ``m`` non-empty candidate groups), ``z²/2``.
    - ``min_baseline_ratio``: floor on the expected failing share of each leaf, hence
      of each group (``E ≥ ratio · total``), so that a zero baseline is not infinitely
      surprising and a member that never failed still counts in its groups.
    - ``max_depth``: the most dimensions a cause may fix (``None``: all dims, at
      most 3).
    - ``max_causes``: the most causes returned.
    - ``min_relative_score``: a cause whose score is below this fraction of the
      best cause's score is dropped (0 keeps every significant cause).
    - ``generalize_margin``: evidence (quasi-likelihood nats: nats over the
      over-dispersion) a parent or a child must show for explaining a cause's leaves
      better before it replaces the cause (see :func:`_refine`), and the most a part
      may be above its baseline to count as healthy (:func:`healthy_part`); ``inf``
      disables the move.
    - ``split_min_share``: a parent's children that fail are named instead of the
      parent only when its healthy children hold at least this share of its members
      (smaller healthy parts are exceptions within a parent's fault), and only when
      those healthy children do not fail like the failing ones.
    - ``dispersion_quantile`` (0 disables), ``dispersion_min_expected``,
      ``dispersion_min_leaves``, ``dispersion_cap``: the significance threshold is
      multiplied by the leaves' over-dispersion (:func:`dispersion`), so leaves whose
      failing count scatters beyond counting noise (bursty devices, causes outside
      the dimensions) do not raise causes.
    - ``relative_min_expected``: leaves expecting at least this many failures (Cochran's
      rule for a Pearson residual, 5) estimate the relative scatter ``κ``
      (:func:`relative_dispersion`): the part of a leaf's variance growing with the
      square of its expected count, ``φ·E + κ·E²``, that a large group's threshold
      carries (``inf`` disables).
    """

    min_affected: float = 5.0
    min_excess: float = 3.0
    min_lift: float = 1.5
    alpha: float = 1e-3
    min_baseline_ratio: float = 1e-3
    max_depth: int | None = None
    max_causes: int = 5
    min_relative_score: float = 0.0
    generalize_margin: float = 3.0
    split_min_share: float = 0.1
    dispersion_quantile: float = 0.5
    dispersion_min_expected: float = 1.0
    dispersion_min_leaves: int = 10
    dispersion_cap: float = 10.0
    relative_min_expected: float = 5.0


def _llr(a: FloatArray, e: FloatArray) -> FloatArray:
    """One-sided Poisson log-likelihood ratio, 0 where ``a <= e``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(a > e, a / e, 1.0)
        out = a * np.log(ratio) - (a - e)
    return np.where(a > e, out, 0.0)


def llr(a: float, e: float) -> float:
    """:func:`_llr` of one group."""
    return a * math.log(a / e) - (a - e) if a > e else 0.0


def uncovered(masks: Sequence[npt.NDArray[np.bool_]], skip: int | None = None) -> list[int]:
    """The indices of the groups (bool masks over one table's leaves) that no other
    covers: group k covers group i when all of i's leaves are k's and k has more, or as
    many and comes first. The group ``skip`` covers nothing (step 6's residual fleet)."""
    held = [m.nonzero()[0] for m in masks]
    return [
        i
        for i in range(len(masks))
        if not any(
            k not in {i, skip}
            and bool(masks[k][held[i]].all())
            and (k < i or held[k].size > held[i].size)
            for k in range(len(masks))
        )
    ]


def llr_threshold(alpha: float, n_tests: int) -> float:
    """LLR a group needs for a one-sided p-value below ``alpha / n_tests``."""
    p = alpha / max(n_tests, 1)
    p = min(max(p, 1e-300), 0.5)
    z = -NormalDist().inv_cdf(p) if p > 1e-15 else math.sqrt(-2.0 * math.log(p))
    return 0.5 * z * z


@dataclass(frozen=True, slots=True)
class _Groups:
    cuboids: tuple[tuple[int, ...], ...]
    local: IntArray  # (n_cuboids, n_leaves): group id within the cuboid
    flat: IntArray  # (n_cuboids * n_leaves,): global group id
    offsets: IntArray  # (n_cuboids + 1,)
    depth: IntArray  # (n_groups,)
    cuboid_of: IntArray  # (n_groups,)
    n_groups: int


def _build_groups(table: LeafTable, max_depth: int) -> _Groups:
    n_leaves, n_dims = table.codes.shape
    cols = [table.codes[:, d].astype(np.int64) for d in range(n_dims)]
    card = [len(lab) for lab in table.labels]
    cuboids = tuple(c for d in range(max_depth + 1) for c in combinations(range(n_dims), d))
    local = np.empty((len(cuboids), n_leaves), dtype=np.int64)
    sizes: list[int] = []
    # a cuboid's mixed-radix key extends its prefix's (cuboids come in depth order)
    keys: dict[tuple[int, ...], tuple[IntArray, int]] = {(): (np.zeros(n_leaves, np.int64), 1)}
    for ci, cub in enumerate(cuboids):
        if cub not in keys:
            prefix, cells = keys[cub[:-1]]
            keys[cub] = (prefix * card[cub[-1]] + cols[cub[-1]], cells * card[cub[-1]])
        key, cells = keys[cub]
        # each leaf's group: the rank of its key among the distinct ones (np.unique's
        # inverse), so no group is empty and group ids keep the keys' order
        if cells <= max(_DENSE_LIMIT, 2 * n_leaves):  # by marking the keys present
            present = np.zeros(cells, dtype=bool)
            present[key] = True
            distinct = present.nonzero()[0]
            rank = np.empty(cells, dtype=np.int64)
            rank[distinct] = np.arange(distinct.size, dtype=np.int64)
            local[ci] = rank[key]
            sizes.append(distinct.size)
        else:  # by sorting them
            order = np.argsort(key, kind="stable")
            ordered = key[order]
            new = np.empty(n_leaves, dtype=bool)
            new[:1] = True
            np.not_equal(ordered[1:], ordered[:-1], out=new[1:])
            rank = np.cumsum(new) - 1
            local[ci, order] = rank
            sizes.append(int(rank[-1]) + 1)
    offsets = np.zeros(len(cuboids) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    flat = (local + offsets[:-1, None]).reshape(-1)
    n_groups = int(offsets[-1])
    cuboid_of = np.repeat(np.arange(len(cuboids), dtype=np.int64), sizes)
    depth = np.repeat(np.asarray([len(c) for c in cuboids], dtype=np.int64), sizes)
    return _Groups(cuboids, local, flat, offsets, depth, cuboid_of, n_groups)


def _tiled(weights: FloatArray, times: int, buf: FloatArray | None = None) -> FloatArray:
    """``weights`` repeated ``times`` over (``np.tile`` without its Python overhead), in
    ``buf`` when given (of that size: one buffer for several sums spares allocations)."""
    out = np.empty(times * weights.size, dtype=np.float64) if buf is None else buf
    out.reshape(times, weights.size)[:] = weights
    return out


def _sums(
    groups: _Groups, weights: FloatArray, n_cuboids: int, buf: FloatArray | None = None
) -> FloatArray:
    tiled = _tiled(weights, n_cuboids, buf)
    out = np.bincount(groups.flat, weights=tiled, minlength=groups.n_groups)
    return out.astype(np.float64, copy=False)


def _significant(  # noqa: PLR0917 - private helper, the sums of one pass
    a: FloatArray,
    n: FloatArray,
    e: FloatArray,
    params: LocalizeParams,
    threshold: float | FloatArray,
    beyond: tuple[FloatArray, float] | None = None,
) -> tuple[npt.NDArray[np.bool_], FloatArray]:
    """Which groups are significant, and their scores (LLR against the expected count).

    ``beyond``: the groups' peak counts (their leaves' history peaks summed) and the
    threshold without the leaves' own over-dispersion: a group whose count is
    significant at that threshold against the larger of its expected and peak counts is
    significant whatever its leaves' over-dispersion (a count beyond anything counting
    noise or its history produced is no burst of the history's kind).
    """
    e_eff = np.maximum(e, params.min_baseline_ratio * n)
    cheap = (
        (a >= params.min_affected)
        & (a - e_eff >= params.min_excess)
        & (a >= params.min_lift * e_eff)
    )
    idx = cheap.nonzero()[0]
    score = np.zeros(a.shape, dtype=np.float64)  # only computed where the cheap filters pass
    score[idx] = _llr(a[idx], e_eff[idx])
    ok = cheap & (score >= threshold)
    if beyond is not None:
        peak, base = beyond
        rest = idx[~ok[idx]]
        if rest.size:
            ok[rest] = _llr(a[rest], np.maximum(e_eff[rest], peak[rest])) >= base
    return ok, score


def _subtract(
    groups: _Groups, leaves: IntArray, pairs: tuple[tuple[FloatArray, FloatArray], ...]
) -> IntArray:
    """For each ``(sums, weights)``: take the ``leaves``' weights off their groups' sums
    (in place, at least 0: rounding leaves a group with nothing left at 0). Returns the
    groups whose sums changed."""
    n_cub = len(groups.cuboids)
    ids = groups.flat.reshape(n_cub, -1)[:, leaves].reshape(-1)  # global ids, cuboid-major
    changed: IntArray
    if ids.size < _SORT_LIMIT:  # a few ids: sorting them beats a pass over every group
        changed, inv = np.unique(ids, return_inverse=True)
        inv = inv.reshape(-1)
    else:  # the same, in time linear in the ids and groups
        changed = np.bincount(ids, minlength=groups.n_groups).nonzero()[0]
        rank = np.empty(groups.n_groups, dtype=np.int64)
        rank[changed] = np.arange(changed.size, dtype=np.int64)
        inv = rank[ids]
    for sums, weights in pairs:
        # each group's taken weight is summed in the order of ``ids`` either way
        taken = np.bincount(inv, weights=_tiled(weights[leaves], n_cub), minlength=changed.size)
        sums[changed] = np.maximum(sums[changed] - taken, 0.0)
    return changed


def _thresholds(
    threshold: float,
    phi: float,
    e_sums: FloatArray,
    pe_sums: FloatArray | None,
    fe_sums: FloatArray | None = None,
) -> float | FloatArray:
    """Per group: ``threshold`` (which holds the fleet's over-dispersion ``phi``) raised to
    the group's own over-dispersion when that is larger: its leaves' dispersions weighted
    by their expected counts (``pe_sums / e_sums``). ``fe_sums``: the same weighting of the
    fleet's model of a leaf's dispersion with its relative scatter, ``φ + κ·E`` (None:
    ``φ`` for every leaf). Both None: ``threshold`` for all."""
    if pe_sums is None and fe_sums is None:
        return threshold
    with np.errstate(divide="ignore", invalid="ignore"):
        fleet = phi if fe_sums is None else np.where(e_sums > 0.0, fe_sums / e_sums, phi)
        if pe_sums is None:
            return (threshold / phi) * np.maximum(fleet, phi)
        phi_g = np.where(e_sums > 0.0, pe_sums / e_sums, 1.0)
    return (threshold / phi) * np.maximum(fleet, phi_g)


def _mask(groups: _Groups, g: int) -> npt.NDArray[np.bool_]:
    """The leaves of group ``g``."""
    ci = int(groups.cuboid_of[g])
    members: npt.NDArray[np.bool_] = groups.local[ci] == g - int(groups.offsets[ci])
    return members


def healthy_part(
    leaves: npt.NDArray[np.bool_],
    whole: npt.NDArray[np.bool_],
    leaf_stats: tuple[FloatArray, FloatArray, FloatArray],
    params: LocalizeParams,
    scale: float = 1.0,
) -> bool:
    """Whether ``leaves``, part of the group ``whole``, are a healthy part of it.

    Healthy: they hold at least ``split_min_share`` of the group's members (a
    smaller part cannot tell a parent's fault from its children's), and their
    failing count is not above their baseline by ``generalize_margin`` nats or more
    (one-sided Poisson LLR) times ``scale`` (the over-dispersion: quasi-likelihood).
    """
    a, n, e = leaf_stats
    idx = leaves.nonzero()[0]
    n_r = float(n[idx].sum())
    if n_r <= 0.0 or n_r < params.split_min_share * float(n[whole.nonzero()[0]].sum()):
        return False
    return not above_baseline(float(a[idx].sum()), float(e[idx].sum()), n_r, params, scale)


def above_baseline(
    a: float, e: float, n: float, params: LocalizeParams, scale: float = 1.0
) -> bool:
    """Whether ``a`` failing of ``n`` members are above their baseline ``e`` (floored at
    ``min_baseline_ratio`` of ``n``) by ``generalize_margin`` nats or more (one-sided
    Poisson LLR) times ``scale`` (the over-dispersion: quasi-likelihood).

    With the floors a cause needs: fewer than ``min_affected`` failing, or an excess
    ``a - e`` under ``min_excess``, is not above the baseline (a few scattered dead
    devices never form a cause, nor do they make a part fail), however small ``e``."""
    e = max(e, params.min_baseline_ratio * n)
    if a < params.min_affected or a - e < params.min_excess:
        return False
    return llr(a, e) >= params.generalize_margin * scale


def _alike_llr(
    leaves: npt.NDArray[np.bool_],
    like: npt.NDArray[np.bool_],
    leaf_stats: tuple[FloatArray, FloatArray, FloatArray],
    params: LocalizeParams,
) -> float:
    """Log-likelihood ratio of ``leaves``' failing count failing like ``like`` (its excess
    share on top of their baseline) against failing at their baseline (Poisson)."""
    return _alike_llr_of(_part(leaves, leaf_stats), _part(like, leaf_stats), params)


def _part(
    leaves: npt.NDArray[np.bool_], leaf_stats: tuple[FloatArray, FloatArray, FloatArray]
) -> tuple[float, float, float]:
    """The failing, total and expected counts of ``leaves``."""
    a, n, e = leaf_stats
    idx = leaves.nonzero()[0]  # gathering by index: the same values, in the same order
    return float(a[idx].sum()), float(n[idx].sum()), float(e[idx].sum())


def _alike_llr_of(
    leaves: tuple[float, float, float], like: tuple[float, float, float], params: LocalizeParams
) -> float:
    """:func:`_alike_llr` from the two parts' counts (:func:`_part`)."""
    floor = params.min_baseline_ratio
    a_l, n_l, e_l = like
    a_r, n_r, e_r = leaves
    if n_l <= 0.0 or n_r <= 0.0:
        return 0.0
    share = max(a_l - max(e_l, floor * n_l), 0.0) / n_l
    e_r = max(e_r, floor * n_r)
    alike = e_r + share * n_r
    return a_r * math.log(alike / e_r) - (alike - e_r)


def _fails_alike(
    leaves: npt.NDArray[np.bool_],
    like: npt.NDArray[np.bool_],
    leaf_stats: tuple[FloatArray, FloatArray, FloatArray],
    params: LocalizeParams,
) -> bool:
    """Whether ``leaves`` fail like the group ``like`` rather than at their baseline.

    A fault takes a share of its members on top of their normal failures: ``like``'s
    excess share ``f = (A - E) / N``. The leaves fail alike when their count is at
    least as likely under ``E + f·N`` as under ``E`` (Poisson, :func:`_alike_llr`).
    """
    return _alike_llr(leaves, like, leaf_stats, params) >= 0.0


def _apart(  # noqa: PLR0917 - private helper, called twice with all of them
    failing: npt.NDArray[np.bool_],
    rest: npt.NDArray[np.bool_],
    extra: int,
    leaf_stats: tuple[FloatArray, FloatArray, FloatArray],
    params: LocalizeParams,
    penalty: float,
) -> bool:
    """Whether naming the failing children ``failing`` of a parent, its other children
    ``rest`` healthy, is worth ``extra`` more causes than naming the parent.

    The log-likelihood gain of the children failing at their share and the rest at its
    baseline, over the whole parent failing at one share (:func:`share_evidence`), must
    exceed ``extra`` times ``penalty``, the cost of naming one more cause (the
    significance threshold, in nats).
    """
    f_stats, r_stats = _part(failing, leaf_stats), _part(rest, leaf_stats)
    return -share_evidence(f_stats, r_stats, params.min_baseline_ratio) > extra * penalty


def _split(  # noqa: PLR0917 - private helper, called once with all of them
    g: int,
    groups: _Groups,
    cub_index: Mapping[tuple[int, ...], int],
    ok: npt.NDArray[np.bool_],
    score: FloatArray,
    leaf_stats: tuple[FloatArray, FloatArray, FloatArray],
    params: LocalizeParams,
    n_dims: int,
    scale: float,
    penalty: float,
) -> list[int]:
    """The children of group ``g`` that fail while its other children are healthy.

    A parent outscores each of its children when several fail (one APN in two
    countries, its other countries healthy), so the greedy pick is the parent. For
    each attribute the parent leaves free: its significant children on it that fail
    like the strongest of them (:func:`_fails_alike`) are the failing ones; if there
    are at least two and the parent's other children are healthy (:func:`healthy_part`),
    they replace the parent, unless one significant child of the parent on another
    attribute holds them all (:func:`_one_child_holds`: the partners of one country,
    for the APN in that country; the move to that child names it). Of several
    attributes that split so, the one naming the fewest children wins, then the higher
    total score. ``[g]`` when none does.
    """
    ci = int(groups.cuboid_of[g])
    cub = groups.cuboids[ci]
    p_mask = _mask(groups, g)
    p_idx = p_mask.nonzero()[0]
    a, n, e = leaf_stats
    best: list[int] = [g]
    best_key = (math.inf, 0.0)
    for d in range(n_dims):
        ki = cub_index.get(tuple(sorted((*cub, d)))) if d not in cub else None
        if ki is None:
            continue
        off = int(groups.offsets[ki])
        local = groups.local[ki]
        p_local = local[p_idx]
        counts = np.bincount(p_local, minlength=int(groups.offsets[ki + 1]) - off)
        ids = counts.nonzero()[0]
        is_sig = ok[ids + off]
        if int(np.count_nonzero(is_sig)) < 2 or bool(is_sig.all()):
            continue
        # each child's leaves, in leaf order, as one slice of the parent's sorted by child:
        # a slice's sum is the sum of the child's leaves (:func:`_part`), bit for bit
        order = p_idx[np.argsort(p_local, kind="stable")]
        ends = np.cumsum(counts[ids]).tolist()
        a_o, n_o, e_o = a[order], n[order], e[order]
        parts: dict[int, tuple[float, float, float]] = {}
        for j in is_sig.nonzero()[0].tolist():
            lo, hi = (ends[j - 1] if j else 0), ends[j]
            parts[int(ids[j]) + off] = (
                float(a_o[lo:hi].sum()),
                float(n_o[lo:hi].sum()),
                float(e_o[lo:hi].sum()),
            )
        kids = list(parts)
        top = max(kids, key=lambda k: float(score[k]))
        kids = [k for k in kids if k == top or _alike_llr_of(parts[k], parts[top], params) >= 0.0]
        if len(kids) < 2:
            continue
        chosen = np.zeros(counts.size, dtype=bool)
        chosen[np.asarray(kids, dtype=np.int64) - off] = True
        failing = chosen[local]  # the failing children's leaves (all inside the parent)
        rest = p_mask & ~failing
        if not healthy_part(rest, p_mask, leaf_stats, params, scale):
            continue
        if not _apart(failing, rest, len(kids) - 1, leaf_stats, params, penalty):
            continue
        if _alike_llr(rest, failing, leaf_stats, params) > 0.0:
            continue  # the other children fail like them: the parent it is
        if _one_child_holds(failing, d, g, p_mask, groups, cub_index, ok, n_dims):
            continue  # parts of one child on another attribute: the move to it (step 6)
        key = (float(len(kids)), -float(score[kids].sum()))
        if key < best_key:
            best, best_key = kids, key
    return best


def _one_child_holds(  # noqa: PLR0917 - private helper
    failing: npt.NDArray[np.bool_],
    d: int,
    g: int,
    p_mask: npt.NDArray[np.bool_],
    groups: _Groups,
    cub_index: Mapping[tuple[int, ...], int],
    ok: npt.NDArray[np.bool_],
    n_dims: int,
) -> bool:
    """Whether one significant child of group ``g`` on an attribute other than ``d``,
    smaller than ``g``, holds all the ``failing`` leaves (the children on ``d`` are parts
    of one child on another attribute: name that one, by the move to a child)."""
    cub = groups.cuboids[int(groups.cuboid_of[g])]
    leaf = int(failing.argmax())  # the first of its leaves
    n_p = int(np.count_nonzero(p_mask))
    for d2 in range(n_dims):
        if d2 == d or d2 in cub:
            continue
        ki = cub_index.get(tuple(sorted((*cub, d2))))
        if ki is None:
            continue
        local = groups.local[ki]
        k_mask = local == local[leaf]
        if not ok[int(local[leaf] + groups.offsets[ki])]:
            continue
        if np.all(k_mask[failing]) and int(np.count_nonzero(k_mask)) < n_p:
            return True
    return False


def share_evidence(
    c: tuple[float, float, float], r: tuple[float, float, float], floor: float
) -> float:
    """Evidence (nats) that a fault covers the leaves ``c`` and ``r`` rather than ``c`` only.

    The fault model: a fault takes a share ``f`` of its group's members on top of their
    normal failures (``E + f·N``). Each part is ``(affected, total, expected)``. The
    log-likelihood of the parts failing at one share ``f`` (its maximum, a few Newton
    steps from the pooled share), minus that of ``c`` failing at its own share and ``r``
    at its baseline. Positive: the larger group explains the leaves better; negative:
    ``r`` is healthier than the larger group's fault would make it.
    """
    a_c, n_c, e_c = c
    a_r, n_r, e_r = r
    e_c = max(e_c, floor * n_c)
    e_r = max(e_r, floor * n_r)
    if n_c <= 0.0 or e_c <= 0.0:
        return 0.0
    if n_r <= 0.0 or e_r <= 0.0:
        return 0.0  # the same leaves
    n = n_c + n_r
    f = max(a_c + a_r - e_c - e_r, 0.0) / n
    for _ in range(4):  # Newton on the concave log-likelihood in f
        d_c, d_r = e_c + f * n_c, e_r + f * n_r
        grad = a_c * n_c / d_c + a_r * n_r / d_r - n
        hess = a_c * n_c * n_c / (d_c * d_c) + a_r * n_r * n_r / (d_r * d_r)
        if hess <= 0.0:
            break
        step = max(f + grad / hess, 0.0)
        if step == f:
            break  # a fixed point: the remaining steps would return it again
        f = step
    # the Poisson log-likelihood ratio of both parts at f, less c's at its own share (this
    # runs for every candidate move: inlined)
    x_c, x_r = f * n_c, f * n_r
    joint = (a_c * math.log1p(x_c / e_c) - x_c if x_c > 0.0 else 0.0) + (
        a_r * math.log1p(x_r / e_r) - x_r if x_r > 0.0 else 0.0
    )
    if a_c > e_c:
        joint -= a_c * math.log1p((a_c - e_c) / e_c) - (a_c - e_c)
    return joint


def _refine(  # noqa: PLR0917 - private helper, called once with all of them
    g: int,
    others: list[tuple[int, npt.NDArray[np.bool_]]],
    groups: _Groups,
    cub_index: Mapping[tuple[int, ...], int],
    ok: npt.NDArray[np.bool_],
    group_stats: tuple[FloatArray, FloatArray, FloatArray],
    leaf_stats: tuple[FloatArray, FloatArray, FloatArray],
    params: LocalizeParams,
    scale: float,
    max_depth: int,
    sizes: IntArray,
) -> int:
    """Move from group ``g`` to the parent or child that explains the leaves better.

    Neighbours are the significant groups with one attribute fewer (parents P) or one
    more (children K), and those with one attribute swapped for another that hold more
    leaves, all of C's (parents), or fewer, all inside C (children): ``sizes`` is each
    group's number of leaves. A parent replaces the group C when its other leaves R = P - C
    fail like C (the fault model of :func:`share_evidence`: one share of the members
    on top of their baseline) by more than ``generalize_margin`` quasi-likelihood nats
    (nats divided by the over-dispersion ``scale``); a child replaces C when C's other
    leaves C - K are healthier than C's fault would make them by more than that. R leaves
    out the leaves of the other causes (``others``: cuboid index and leaves) that reach
    outside P (an independent fault elsewhere must not drag C up to a common ancestor); a
    cause inside P counts as part of R, except when P is the whole fleet. A sibling of C
    (a cause on the same attributes inside P) never carries the climb over P's healthy
    children (:func:`healthy_part`). The best move is taken and the search repeats.
    """
    a_g, n_g, e_g = group_stats
    a, n, e = leaf_stats
    floor = params.min_baseline_ratio
    margin = params.generalize_margin * scale
    seen = {g}
    n_dims = sum(1 for c in groups.cuboids if len(c) == 1)
    # the other causes' leaves as indices: indexing by a few beats a pass over all leaves
    held = [(o_ci, om.nonzero()[0]) for o_ci, om in others]
    while True:
        ci = int(groups.cuboid_of[g])
        cub = groups.cuboids[ci]
        c_mask = groups.local[ci] == g - int(groups.offsets[ci])
        c_stats = (float(a_g[g]), float(n_g[g]), float(e_g[g]))
        leaf = int(c_mask.argmax())  # the first of its leaves
        c_idx = c_mask.nonzero()[0]
        # the cuboids with one of C's attributes swapped for another
        swapped = [
            cub_index[kc]
            for d in cub
            for d2 in range(n_dims)
            if d2 not in cub
            and (kc := tuple(sorted((*(x for x in cub if x != d), d2)))) in cub_index
        ]
        best_g, best_ev = -1, margin
        c_size = int(sizes[g])
        # parents: one attribute fewer, or one attribute swapped for another when the
        # group so named holds more leaves, all of C's (a country for one of its partners)
        uppers = [(cub_index[tuple(x for x in cub if x != d)], False) for d in cub]
        uppers += [(pi, True) for pi in swapped]
        for pi, swap in uppers:
            local_id = groups.local[pi, leaf]
            pg = int(local_id + groups.offsets[pi])
            if not ok[pg] or pg in seen:
                continue
            if swap and (
                int(sizes[pg]) <= c_size or not bool((groups.local[pi, c_idx] == local_id).all())
            ):
                continue  # not a larger group holding all of C's leaves
            p_mask = groups.local[pi] == local_id
            rest = p_mask & ~c_mask
            remaining = rest.copy()  # the parent's leaves no cause holds
            siblings = False
            for o_ci, o_idx in held:
                remaining[o_idx] = False
                if len(cub) == 1 or not p_mask[o_idx].all():
                    rest[o_idx] = False  # a cause reaching outside the parent is independent
                else:  # a cause inside the parent counts as its rest ...
                    siblings |= o_ci == ci
            if siblings and healthy_part(remaining, p_mask, leaf_stats, params, scale):
                continue  # ... but siblings never carry the climb over healthy children
            ev = share_evidence(c_stats, _part(rest, leaf_stats), floor)
            if ev > best_ev:
                best_g, best_ev = pg, ev
        free = c_mask.copy()  # C's leaves no other cause holds
        for _, o_idx in held:
            free[o_idx] = False
        free_idx = free.nonzero()[0]
        fa, fn_, fe = a[free_idx], n[free_idx], e[free_idx]
        c_free = (float(fa.sum()), float(fn_.sum()), float(fe.sum()))
        # children: one attribute more, or one attribute swapped for another when the group
        # so named holds fewer leaves, all inside C (one partner of a country)
        lowers = [
            (ki, False)
            for ki, kcub in enumerate(groups.cuboids)
            if len(cub) < max_depth and len(kcub) == len(cub) + 1 and set(cub) <= set(kcub)
        ]
        lowers += [(ki, True) for ki in swapped]
        for ki, swap in lowers:
            loc = groups.local[ki][free_idx]
            off = int(groups.offsets[ki])
            size = int(groups.offsets[ki + 1]) - off
            # the children holding free leaves, in group order; only significant ones
            # move, so only theirs are summed (each in leaf order, as a bincount does)
            ids = np.bincount(loc, minlength=size).nonzero()[0]
            ids = ids[ok[ids + off]]
            if swap and ids.size:  # only groups inside C, smaller than it
                inside = np.bincount(groups.local[ki][c_idx], minlength=size)[ids]
                k_size = sizes[ids + off]
                ids = ids[(inside == k_size) & (k_size < c_size)]
            if ids.size == 0:
                continue
            ka = np.bincount(loc, weights=fa, minlength=size)[ids]
            kn = np.bincount(loc, weights=fn_, minlength=size)[ids]
            ke = np.bincount(loc, weights=fe, minlength=size)[ids]
            for j, lid in enumerate(ids.tolist()):
                kk = lid + off
                if kk in seen:
                    continue
                k_stats = (float(ka[j]), float(kn[j]), float(ke[j]))
                r_stats = (
                    c_free[0] - k_stats[0],
                    c_free[1] - k_stats[1],
                    c_free[2] - k_stats[2],
                )
                ev = -share_evidence(k_stats, r_stats, floor)
                if ev > best_ev and above_baseline(
                    r_stats[0], r_stats[2], r_stats[1], params, scale
                ):
                    continue  # the rest fails too, less: C's fault, uneven
                if ev > best_ev:
                    best_g, best_ev = kk, ev
        if best_g < 0:
            return _fewest_attributes(g, groups, cub_index)
        g = best_g
        seen.add(g)


def _fewest_attributes(g: int, groups: _Groups, cub_index: Mapping[tuple[int, ...], int]) -> int:
    """The group with the fewest attributes (then the earliest dimensions) holding exactly
    the leaves of ``g`` (e.g. ``{partner}`` for ``{country, partner}``): the tie rule of the
    greedy pick, for a group reached by a move."""
    while True:
        ci = int(groups.cuboid_of[g])
        cub = groups.cuboids[ci]
        c_mask = groups.local[ci] == g - int(groups.offsets[ci])
        leaf = int(c_mask.argmax())  # the first of its leaves
        n_leaves = int(np.count_nonzero(c_mask))
        same = [
            int(groups.local[pi, leaf] + groups.offsets[pi])
            for pi in sorted(cub_index[tuple(x for x in cub if x != d)] for d in cub)
            if int(np.count_nonzero(groups.local[pi] == groups.local[pi, leaf])) == n_leaves
        ]
        if not same:
            return g
        g = same[0]  # cuboids are in dimension order within a depth


@dataclass(frozen=True, slots=True)
class _Pass:
    """Per group: the sums of failing, total, expected, expected times over-dispersion and
    peak counts (the last two None when the leaves' are unknown), significance, score."""

    a: FloatArray
    n: FloatArray
    e: FloatArray
    pe: FloatArray | None
    pk: FloatArray | None
    ok: npt.NDArray[np.bool_]
    score: FloatArray
    fe: FloatArray | None = None  # expected counts times the fleet's model of dispersion


@dataclass(frozen=True, slots=True)
class _Leaves:
    """Per leaf: failing, total, expected, over-dispersion and peak (None: unknown)."""

    a: FloatArray
    n: FloatArray
    e: FloatArray
    phi: FloatArray | None
    peak: FloatArray | None
    fphi: FloatArray | None = None  # the fleet's model of each leaf's dispersion, φ + κ·E


def _greedy(  # noqa: PLR0917 - private helper, called twice with all of them
    groups: _Groups,
    start: _Pass,
    allowed: npt.NDArray[np.bool_],
    uncovered: npt.NDArray[np.bool_],
    leaves: _Leaves,
    params: LocalizeParams,
    thresholds: tuple[float, float],
    limit: int,
) -> list[tuple[int, npt.NDArray[np.bool_]]]:
    """Greedy explanation over the ``uncovered`` leaves: pick the ``allowed`` significant
    group with the largest score, take its leaves off every group's sums, rescore the
    groups holding them, repeat (at most ``limit`` picks). ``thresholds``: the
    significance threshold (with the fleet's over-dispersion) and that over-dispersion."""
    threshold, phi = thresholds
    uncovered = uncovered.copy()
    picked: list[tuple[int, npt.NDArray[np.bool_]]] = []
    # the groups' sums over the leaves no pick covers yet (updated by subtraction): the
    # start's until the first subtraction, copies from then on
    a_r, n_r, e_r, pe_r, pk_r, fe_r = start.a, start.n, start.e, start.pe, start.pk, start.fe
    ok_r, score_r = start.ok & allowed, start.score
    pairs: tuple[tuple[FloatArray, FloatArray], ...] = ()
    while len(picked) < limit:
        cand = ok_r.nonzero()[0]
        if cand.size == 0:
            break
        best = float(score_r[cand].max())
        near = cand[score_r[cand] >= best * (1.0 - _TIE_RTOL)]
        # fewest attributes first, then cuboid order (dimension order), then group id
        order = np.lexsort((near, groups.cuboid_of[near], groups.depth[near]))
        g = int(near[order[0]])
        members = _mask(groups, g)
        picked.append((g, members))
        newly = (members & uncovered).nonzero()[0]
        uncovered &= ~members
        if not uncovered.any():
            break
        if not pairs:  # the first subtraction: copy the start's sums
            a_r, n_r, e_r, score_r = a_r.copy(), n_r.copy(), e_r.copy(), score_r.copy()
            pe_r = None if pe_r is None else pe_r.copy()
            pk_r = None if pk_r is None else pk_r.copy()
            fe_r = None if fe_r is None else fe_r.copy()
            pairs = ((a_r, leaves.a), (n_r, leaves.n), (e_r, leaves.e))
            if fe_r is not None and leaves.fphi is not None:
                pairs += ((fe_r, leaves.e * leaves.fphi),)
            if pe_r is not None and leaves.phi is not None:
                pairs += ((pe_r, leaves.e * leaves.phi),)
            if pk_r is not None and leaves.peak is not None:
                pairs += ((pk_r, leaves.peak),)
        u = _subtract(groups, newly, pairs)
        # only the groups holding the newly covered leaves change
        ok_r[u], score_r[u] = _significant(
            a_r[u],
            n_r[u],
            e_r[u],
            params,
            _thresholds(
                threshold,
                phi,
                e_r[u],
                None if pe_r is None else pe_r[u],
                None if fe_r is None else fe_r[u],
            ),
            None if pk_r is None else (pk_r[u], threshold),
        )
        ok_r[u] &= allowed[u]
    return picked


def _joint_split(  # noqa: PLR0917 - private helper, called once with all of them
    g: int,
    groups: _Groups,
    state: _Pass,
    leaves: _Leaves,
    params: LocalizeParams,
    thresholds: tuple[float, float],
) -> list[int]:
    """Group ``g``'s leaves explained by groups inside it, on any attributes: ``[g]``
    when they are not.

    Two large faults on different attributes (a partner and an APN everywhere) together
    outscore each, so the greedy pick is a group holding both (the whole fleet), and
    no one attribute parts them (each attribute's other values hold the other fault):
    :func:`_split` keeps the pick. Here the greedy explanation runs again over ``g``'s
    leaves with only the groups inside ``g`` (fewer leaves) as candidates. Its picks
    replace ``g`` when there are at least two, ``g``'s other leaves are healthy
    (:func:`healthy_part`) and do not fail like them, and naming them pays for the
    extra causes (:func:`_apart`), as for the one-attribute split. :func:`localize`
    asks it for the whole fleet only: below it, a group's uneven fault splits so too
    (measured on RS, docs/localization.md).
    """
    threshold, phi = thresholds
    if params.split_min_share > 1.0:
        return [g]  # no part is ever healthy: the split is off
    members = _mask(groups, g)
    size = np.bincount(groups.flat, minlength=groups.n_groups).astype(np.float64)  # leaves
    allowed = size < float(np.count_nonzero(members)) - 0.5  # fewer leaves than g ...
    if g != 0:  # ... and all inside it (every group is inside the whole fleet)
        inside = _sums(groups, members.astype(np.float64), len(groups.cuboids))
        allowed &= inside >= size - 0.5
    if np.count_nonzero(state.ok & allowed) < 2:
        return [g]
    picks = _greedy(groups, state, allowed, members, leaves, params, thresholds, params.max_causes)
    if len(picks) < 2:
        return [g]
    failing = np.zeros_like(members)
    for _, m in picks:
        failing |= m
    rest = members & ~failing
    leaf_stats = (leaves.a, leaves.n, leaves.e)
    apart = (
        healthy_part(rest, members, leaf_stats, params, phi)
        and _apart(failing, rest, len(picks) - 1, leaf_stats, params, threshold)
        # the other leaves failing like them: the group it is
        and _alike_llr(rest, failing, leaf_stats, params) <= 0.0
    )
    return [h for h, _ in picks] if apart else [g]


def _residual_fleet(
    picked: list[tuple[int, npt.NDArray[np.bool_]]],
    leaf_stats: tuple[FloatArray, FloatArray, FloatArray],
    params: LocalizeParams,
) -> int:
    """Index in ``picked`` of a whole fleet (group 0) picked after causes whose fault its
    other leaves do not share; -1 if none.

    A later pick covering an earlier one replaces it (the parent explains it). The whole
    fleet picked after causes is the residual over everything they leave: when its other
    leaves (outside all of them) fail like none of them (:func:`_fails_alike`: likelier
    at their baseline than at the cause's excess share), they are no part of those
    faults, and replacing the causes by the fleet would hide them behind a milder
    elevation of everything else. Such a fleet is named beside them, not in their
    place. A fleet whose other leaves fail like a cause (a fleet-wide fault, worse in
    one place) replaces it as before."""
    for k, (h, fleet) in enumerate(picked):
        if h != 0 or k == 0:
            continue
        rest = fleet.copy()
        for _, m in picked[:k]:
            rest &= ~m
        if not any(_fails_alike(rest, m, leaf_stats, params) for _, m in picked[:k]):
            return k
    return -1


def _own_test(
    idx: IntArray,
    leaves: _Leaves,
    weighted: tuple[FloatArray | None, FloatArray | None],
    params: LocalizeParams,
    thresholds: tuple[float, float],
) -> tuple[bool, float]:
    """Whether the leaves ``idx`` are significant as a greedy pick over them would be (the
    same floors, threshold and peak), and their score over that threshold. ``weighted``:
    the leaves' expected counts times their own and the fleet model's dispersions."""
    threshold, phi = thresholds

    def total(w: FloatArray | None) -> FloatArray | None:
        return None if w is None else np.asarray([float(w[idx].sum())])

    a = np.asarray([float(leaves.a[idx].sum())])
    n = np.asarray([float(leaves.n[idx].sum())])
    e = np.asarray([float(leaves.e[idx].sum())])
    pk = total(leaves.peak)
    th = _thresholds(threshold, phi, e, total(weighted[0]), total(weighted[1]))
    ok, score = _significant(a, n, e, params, th, None if pk is None else (pk, threshold))
    return bool(ok[0]), float(score[0]) / float(np.asarray(th).reshape(-1)[0])


def _own_parts(  # noqa: PLR0917 - private helper, called once with all of them
    picked: list[tuple[int, npt.NDArray[np.bool_]]],
    ok: npt.NDArray[np.bool_],
    score: FloatArray,
    leaves: _Leaves,
    params: LocalizeParams,
    thresholds: tuple[float, float],
) -> list[tuple[int, npt.NDArray[np.bool_]]]:
    """The causes that each explain a significant part of the anomaly of their own.

    A cause's own part: its leaves outside the other causes, except those holding all of
    its leaves (a residual fleet named beside it). The greedy explanation names a pick
    only when its leaves not yet explained are significant, but the splits and moves that
    follow reach groups whose leaves other causes explain already (a parent whose failing
    part is another cause's). So the causes are chosen again as a stepwise selection does:
    forward, in score order, a cause is kept when its own part beyond the causes kept
    before it is significant (:func:`_own_test`: as a greedy pick over those leaves); then
    backward, while a kept cause's own part beyond all the others is not significant, the
    one with the lowest score over its threshold is dropped. A cause sharing no leaf with
    another is its own part (``ok``, the first pass's verdict on its group)."""
    held = [m.nonzero()[0] for _, m in picked]
    # cut[i]: the causes whose leaves come off cause i's (they share leaves with it and
    # do not hold all of them)
    cut = [
        [
            k
            for k, (_, om) in enumerate(picked)
            if k != i and om[held[i]].any() and not om[held[i]].all()
        ]
        for i in range(len(picked))
    ]
    if not any(cut):
        return picked
    weighted = (
        None if leaves.phi is None else leaves.e * leaves.phi,
        None if leaves.fphi is None else leaves.e * leaves.fphi,
    )

    def own_test(i: int, among: list[int]) -> tuple[bool, float]:
        others = [k for k in cut[i] if k in among]
        if not others:
            return bool(ok[picked[i][0]]), math.inf
        own = picked[i][1].copy()
        for k in others:
            own[held[k]] = False
        return _own_test(own.nonzero()[0], leaves, weighted, params, thresholds)

    kept: list[int] = []
    for i in sorted(range(len(picked)), key=lambda j: -float(score[picked[j][0]])):
        if not kept or own_test(i, kept)[0]:
            kept.append(i)
    while len(kept) > 1:
        worst, worst_margin = -1, math.inf
        for i in kept:
            passed, margin = own_test(i, kept)
            if not passed and margin < worst_margin:
                worst, worst_margin = i, margin
        if worst < 0:
            break
        kept.remove(worst)
    return [picked[i] for i in sorted(kept)]


def quick_check(table: LeafTable, params: LocalizeParams = LocalizeParams()) -> bool:
    """Cheap necessary condition for any cause: False means :func:`localize` returns ``[]``.

    No group can have more failing members than the whole table, nor a larger
    excess than the sum of the leaves' positive excesses.
    """
    a = table.affected
    total_a = float(a.sum())
    if total_a < params.min_affected:
        return False
    pos_excess = float(np.maximum(a - table.expected, 0.0).sum())
    return pos_excess >= params.min_excess


def _quantile(values: FloatArray, q: float) -> float:
    """``np.quantile(values, q)`` (its default linear method), bit for bit: the same two
    order statistics and the same interpolation, without its overhead (half a
    millisecond a call, a tenth of a localization). Edge cases go to ``np.quantile``."""
    n = values.size
    v = (n - 1) * q  # where the quantile falls between the sorted values
    if not 0.0 <= v < n - 1 or bool(np.isnan(values).any()):
        return float(np.quantile(values, q))
    lo = math.floor(v)
    part = np.partition(values, (lo, lo + 1))
    below, above = float(part[lo]), float(part[lo + 1])
    t = v - lo
    diff = above - below
    return above - diff * (1 - t) if t >= 0.5 else below + diff * t  # numpy's _lerp


def dispersion(table: LeafTable, params: LocalizeParams) -> float:
    """The leaves' over-dispersion: how much more their failing counts scatter around
    their expectation than counting noise (Poisson) would, at least 1.

    Quasi-Poisson: the median of the Pearson residuals ``(A - E)² / E`` over leaves
    expecting at least ``dispersion_min_expected`` failures, over the median of a
    chi-square with one degree of freedom (0.455, what pure counting noise gives). The
    median ignores the failing leaves as long as they are fewer than half. Fewer than
    ``dispersion_min_leaves`` such leaves: 1 (small groups carry no estimate). The
    estimate is taken one standard error low (a sample quantile's asymptotic error), so
    a few dozen leaves of pure counting noise, whose median scatters by a third, do not
    hide a partial fault.
    """
    q = params.dispersion_quantile
    if q <= 0.0:
        return 1.0
    e = table.expected
    sel = e >= params.dispersion_min_expected
    if int(np.count_nonzero(sel)) < params.dispersion_min_leaves:
        return 1.0
    residual = (table.affected[sel] - e[sel]) ** 2 / e[sel]
    normal = NormalDist()
    z = normal.inv_cdf(0.5 + q / 2.0)
    x = z * z  # the quantile of a chi-square with one degree of freedom
    phi = _quantile(residual, q) / x
    # the estimate's standard error (asymptotic, of a sample quantile) relative to it:
    # only dispersion clearly above counting noise raises the threshold
    density = math.exp(-x / 2.0) / math.sqrt(2.0 * math.pi * x)
    rel_se = math.sqrt(q * (1.0 - q) / residual.size) / (density * x)
    phi *= max(1.0 - rel_se, 0.0)  # one standard error below the estimate
    return min(max(phi, 1.0), params.dispersion_cap)


def relative_dispersion(table: LeafTable, params: LocalizeParams, phi: float) -> float:
    """The leaves' relative scatter ``κ``: how much of their variance grows with the
    square of their expected count, ``Var = φ·E + κ·E²`` (0 when none does).

    Shocks shared by a leaf's members (a CDN's load, a cell's congestion) make a large
    count scatter by a share of itself, not by its square root: counting noise and the
    over-dispersion ``φ`` (:func:`dispersion`) grow like ``E``, such scatter like ``E²``,
    and a large group whose count is a few times its expectation passes any threshold
    scaled by ``φ`` alone. The estimate: the median over the leaves expecting at least
    ``relative_min_expected`` failures (below that counting noise hides it) of
    ``((A - E)² / x - φ·E) / E²``, ``x`` the chi-square quantile that the over-dispersion's
    median uses (the scatter beyond ``φ``, per squared expected count), at least 0. Where
    the leaves scatter like ``φ·E`` whatever their size it is about 0 (half of them above
    ``φ·E``, half below). Fewer than ``dispersion_min_leaves`` such leaves give 0.
    """
    q = params.dispersion_quantile
    if q <= 0.0 or not math.isfinite(params.relative_min_expected):
        return 0.0
    e = table.expected
    sel = e >= params.relative_min_expected
    if int(np.count_nonzero(sel)) < params.dispersion_min_leaves:
        return 0.0
    e_s = e[sel]
    z = NormalDist().inv_cdf(0.5 + q / 2.0)
    beyond = ((table.affected[sel] - e_s) ** 2 / (z * z) - phi * e_s) / (e_s * e_s)
    return max(_quantile(beyond, q), 0.0)


def _floored(table: LeafTable, ratio: float) -> LeafTable:
    """``table`` with each leaf's expected count at least ``ratio`` of its members.

    A leaf that expects no failure (none in its history) is not infinitely surprising
    either: floored as a group is, it no longer makes every group holding it look like
    a cause when a few of its members fail, nor tips the tests of steps 5 and 6 that
    weigh its group's parts. The engine's baseline floors each leaf at a higher share
    already (``BaselineParams.min_ratio``); a table from another baseline may not."""
    floor = ratio * table.total
    if not bool((table.expected < floor).any()):
        return table
    return dataclasses.replace(table, expected=np.maximum(table.expected, floor))


def localize(table: LeafTable, params: LocalizeParams = LocalizeParams()) -> list[Cause]:
    """Return the fewest, most specific significant causes, sorted by score descending."""
    n_leaves, n_dims = table.codes.shape
    if n_leaves == 0 or not quick_check(table, params):
        return []
    table = _floored(table, params.min_baseline_ratio)
    max_depth = min(n_dims, 3) if params.max_depth is None else min(params.max_depth, n_dims)
    groups = _build_groups(table, max_depth)
    n_cub = len(groups.cuboids)
    a_leaf, n_leaf, e_leaf = table.affected, table.total, table.expected
    buf = np.empty(groups.flat.size, dtype=np.float64)  # the leaves' weights, per cuboid
    a_g = _sums(groups, a_leaf, n_cub, buf)
    n_g = _sums(groups, n_leaf, n_cub, buf)
    e_g = _sums(groups, e_leaf, n_cub, buf)
    n_tests = int(np.count_nonzero(n_g > 0))
    phi = dispersion(table, params)
    threshold = llr_threshold(params.alpha, n_tests) * phi
    leaf_phi = table.dispersion
    # per group: expected counts weighted by the leaves' own over-dispersion
    pe_g = None if leaf_phi is None else _sums(groups, e_leaf * leaf_phi, n_cub, buf)
    # per group: its leaves' history peaks (only with their over-dispersion)
    peak_leaf = None if leaf_phi is None else table.peak
    pk_g = None if peak_leaf is None else _sums(groups, peak_leaf, n_cub, buf)
    # per group: expected counts weighted by the fleet's model of the leaves' dispersion
    # with their relative scatter (large groups scatter by a share of their count)
    kappa = relative_dispersion(table, params, phi)
    cap = max(params.dispersion_cap, phi)  # the fleet's model is bounded as its φ is
    fphi_leaf = None if kappa <= 0.0 else np.minimum(phi + kappa * e_leaf, cap)
    fe_g = None if fphi_leaf is None else _sums(groups, e_leaf * fphi_leaf, n_cub, buf)
    ok, score = _significant(
        a_g,
        n_g,
        e_g,
        params,
        _thresholds(threshold, phi, e_g, pe_g, fe_g),
        None if pk_g is None else (pk_g, threshold),
    )
    if not ok.any():
        return []

    cub_index = {c: i for i, c in enumerate(groups.cuboids)}
    state = _Pass(a_g, n_g, e_g, pe_g, pk_g, ok, score, fe_g)
    leaves = _Leaves(a_leaf, n_leaf, e_leaf, leaf_phi, peak_leaf, fphi_leaf)
    allowed = np.ones(groups.n_groups, dtype=bool)
    everything = np.ones(n_leaves, dtype=bool)
    picked = _greedy(
        groups, state, allowed, everything, leaves, params, (threshold, phi), params.max_causes + 4
    )

    # siblings apart, climb to parents whose rest is elevated too, then drop causes
    # covered by another
    leaf_stats = (a_leaf, n_leaf, e_leaf)
    apart: list[tuple[int, npt.NDArray[np.bool_]]] = []
    for g, members in picked:
        kids = [g]
        if int(groups.depth[g]) < max_depth:
            kids = _split(
                g, groups, cub_index, ok, score, leaf_stats, params, n_dims, phi, threshold
            )
            if kids == [g] and g == 0:  # the whole fleet: faults on different attributes
                kids = _joint_split(g, groups, state, leaves, params, (threshold, phi))
        apart.extend([(g, members)] if kids == [g] else [(k, _mask(groups, k)) for k in kids])
    picked = apart
    sizes = np.bincount(groups.flat, minlength=groups.n_groups)  # leaves per group
    climbed: list[int] = []  # picks that moved to a larger group
    for i, (g, _) in enumerate(picked):
        others = [(int(groups.cuboid_of[h]), m) for k, (h, m) in enumerate(picked) if k != i]
        g2 = _refine(
            g,
            others,
            groups,
            cub_index,
            ok,
            (a_g, n_g, e_g),
            leaf_stats,
            params,
            phi,
            max_depth,
            sizes,
        )
        if g2 != g:
            ci = int(groups.cuboid_of[g2])
            picked[i] = (g2, groups.local[ci] == g2 - int(groups.offsets[ci]))
            if int(sizes[g2]) > int(sizes[g]):
                climbed.append(i)
    if climbed:  # a parent reached by a move splits as a greedy pick does (step 5)
        parted: list[tuple[int, npt.NDArray[np.bool_]]] = []
        parts: dict[int, list[int]] = {}  # several picks may climb to one parent
        for i, (g, members) in enumerate(picked):
            kids = [g]
            if i in climbed and int(groups.depth[g]) < max_depth:
                if g not in parts:
                    parts[g] = _split(
                        g, groups, cub_index, ok, score, leaf_stats, params, n_dims, phi, threshold
                    )
                kids = parts[g]
            parted.extend([(g, members)] if kids == [g] else [(k, _mask(groups, k)) for k in kids])
        picked = parted
    residual = _residual_fleet(picked, leaf_stats, params)  # covers no cause
    kept = [picked[i] for i in uncovered([m for _, m in picked], skip=residual)]
    picked = _own_parts(kept, ok, score, leaves, params, (threshold, phi))

    causes: list[Cause] = []
    for g, members in picked:
        ci = int(groups.cuboid_of[g])
        leaf = int(members.argmax())  # the first of its leaves
        dims = {
            table.dims[d]: table.labels[d][int(table.codes[leaf, d])] for d in groups.cuboids[ci]
        }
        causes.append(
            Cause(
                dims=dims,
                affected=float(a_g[g]),
                total=float(n_g[g]),
                expected=float(e_g[g]),
                score=float(score[g]),
            )
        )
    causes.sort(key=lambda c: (-c.score, len(c.dims), sorted(c.dims.items())))
    if causes and params.min_relative_score > 0.0:
        floor = causes[0].score * params.min_relative_score
        causes = [c for c in causes if c.score >= floor]
    return causes[: params.max_causes]
