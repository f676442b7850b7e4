"""Each group's own normal: the learned share of overdue SIMs per leaf and hour of day.

For every leaf group (a combination of dimension values) and every UTC hour of the day,
an exponentially weighted sum of overdue SIMs and of counted SIMs is kept. The expected
overdue count of a leaf now is its learned ratio for this hour times its current size,
shrunk towards the leaf's all-day ratio and the fleet's ratio where the leaf has little
history (small leaves are noisy; a new leaf borrows the fleet's normal).

Learning skips leaves that are abnormal right now (significantly above their own
baseline or inside an open incident), so an outage is never learned as normal.

Each leaf's over-dispersion is learned too: how much more its overdue count scatters
around the expected count than counting noise would (bursty devices), from every cycle
outside an open incident once the leaf's expectation for that hour has a history (a burst
that opened none is the leaf's noise; a new leaf's first cycles measure the prior it
borrowed, not its noise), so localization does not take a bursty leaf's spike for a
cause. With it, the leaf's peak share: the largest overdue share those cycles showed
(each at most ``skip_z`` standard deviations of its learned scatter above expected,
fading over ``memory_days``), so localization can tell a count beyond anything the
leaf's history produced from one of its bursts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Mapping

HOURS = 24


@dataclass(frozen=True, slots=True)
class BaselineParams:
    # Time constant of the learning, in days of that hour of day (3: a new normal is
    # mostly learned after three days).
    memory_days: float = 3.0
    # Pseudo-count (SIM-cycles) with which a leaf's hourly ratio is pulled towards its
    # all-day ratio, and the all-day ratio towards the fleet's.
    shrink: float = 30.0
    # A leaf is left out of learning this cycle when its overdue count is this many
    # standard deviations above expected.
    skip_z: float = 3.0
    # Floor on any expected ratio: a group that was never overdue can still have a
    # SIM late now and then; without a floor one late SIM would look infinitely unusual.
    min_ratio: float = 0.002
    # A leaf's anomalies are only kept out of learning once that hour of day has a
    # history: a learned weight (in units of the leaf's current size) of at least this
    # much, about one day of that hour at memory_days=3. Before that everything is
    # learned — otherwise a pattern that recurs at one hour every day (devices that stop
    # in the evening) would look abnormal on its first day and never be learned.
    established_weight: float = 0.25
    # Pseudo-count (cycles at counting noise) with which a leaf's learned over-dispersion
    # is pulled towards 1: a leaf with a short history is not called bursty on one spike.
    dispersion_prior: float = 2.0


class GroupBaseline:
    """Learned overdue ratios per leaf and hour of day (float64 arrays, grown as leaves appear)."""

    def __init__(self, params: BaselineParams | None = None) -> None:
        self.params = params or BaselineParams()
        self.overdue = np.zeros((0, HOURS))
        self.counted = np.zeros((0, HOURS))
        self.fleet_overdue = np.zeros(HOURS)
        self.fleet_counted = np.zeros(HOURS)
        self.scatter = np.zeros(0)  # per leaf: decayed sum of Pearson residuals
        self.cycles = np.zeros(0)  # per leaf: decayed count of the cycles in it
        self.peak = np.zeros(0)  # per leaf: decayed largest overdue share of those cycles
        self.learned_seconds = 0.0

    def _fit(self, n_leaves: int) -> None:
        have = self.overdue.shape[0]
        if n_leaves > have:
            pad = np.zeros((n_leaves - have, HOURS))
            self.overdue = np.vstack([self.overdue, pad])
            self.counted = np.vstack([self.counted, pad])
        have = self.scatter.shape[0]
        if n_leaves > have:
            self.scatter = np.concatenate([self.scatter, np.zeros(n_leaves - have)])
            self.cycles = np.concatenate([self.cycles, np.zeros(n_leaves - have)])
        have = self.peak.shape[0]
        if n_leaves > have:
            self.peak = np.concatenate([self.peak, np.zeros(n_leaves - have)])

    @staticmethod
    def hour(now: float) -> int:
        return int(now // 3600) % HOURS

    def expected_ratio(self, now: float, n_leaves: int) -> np.ndarray:
        """Expected overdue ratio per leaf at ``now``."""
        self._fit(n_leaves)
        p = self.params
        h = self.hour(now)
        fleet_all = _ratio(self.fleet_overdue.sum(), self.fleet_counted.sum(), p.min_ratio)
        fleet_hour = (self.fleet_overdue[h] + p.shrink * fleet_all) / (
            self.fleet_counted[h] + p.shrink
        )
        over = self.overdue[:n_leaves]
        counted = self.counted[:n_leaves]
        leaf_all = (over.sum(axis=1) + p.shrink * fleet_all) / (counted.sum(axis=1) + p.shrink)
        # hour-of-day shape: the leaf's own hour where it has history, else the fleet's
        # hour-of-day factor applied to the leaf's all-day ratio
        fleet_factor = fleet_hour / max(fleet_all, p.min_ratio)
        prior = leaf_all * fleet_factor
        ratio = (over[:, h] + p.shrink * prior) / (counted[:, h] + p.shrink)
        return np.asarray(np.maximum(ratio, p.min_ratio), dtype=np.float64)

    def dispersion(self, n_leaves: int) -> np.ndarray:
        """Over-dispersion per leaf (at least 1): the mean of its Pearson residuals
        ``(A - E)² / E`` (each at most ``skip_z²``) over the cycles learned, with
        ``dispersion_prior`` cycles at 1."""
        self._fit(n_leaves)
        prior = self.params.dispersion_prior
        phi = (prior + self.scatter[:n_leaves]) / (prior + self.cycles[:n_leaves])
        return np.asarray(np.maximum(phi, 1.0), dtype=np.float64)

    def peak_share(self, n_leaves: int) -> np.ndarray:
        """Per leaf, the largest overdue share its learned cycles showed (0: none learned),
        each cycle's share at most ``skip_z`` standard deviations of its learned
        over-dispersion above expected; it fades by the same ``memory_days`` of cycles."""
        self._fit(n_leaves)
        return self.peak[:n_leaves].copy()

    def update(
        self,
        now: float,
        interval_s: float,
        *,
        affected: np.ndarray,
        total: np.ndarray,
        expected: np.ndarray,
        frozen: np.ndarray | None = None,
    ) -> None:
        """Learn from one evaluation cycle (per-leaf counts); ``frozen`` leaves are skipped."""
        n = affected.shape[0]
        self._fit(n)
        p = self.params
        h = self.hour(now)
        # one cycle's weight: a time constant of memory_days of this hour of day
        alpha = min(1.0, interval_s / (p.memory_days * 3600.0))
        sd = np.sqrt(np.maximum(expected, 1.0))
        established = self.counted[:n, h] >= p.established_weight * np.maximum(total, 1.0)
        learn = ~established | ((affected - expected) <= p.skip_z * sd)
        if frozen is not None:
            learn &= ~frozen
        decay = np.where(learn, 1.0 - alpha, 1.0)
        self.overdue[:n, h] = self.overdue[:n, h] * decay + np.where(learn, affected * alpha, 0.0)
        self.counted[:n, h] = self.counted[:n, h] * decay + np.where(learn, total * alpha, 0.0)
        self.fleet_overdue[h] = self.fleet_overdue[h] * (1 - alpha) + affected[learn].sum() * alpha
        self.fleet_counted[h] = self.fleet_counted[h] * (1 - alpha) + total[learn].sum() * alpha
        # over-dispersion: every cycle outside an open incident once this hour has a
        # history (before that the expectation is the prior the leaf borrowed: a leaf
        # first seen during an outage would learn the outage as its scatter), over
        # memory_days of cycles
        seen = (total > 0) & (expected > 0) & established
        if frozen is not None:
            seen &= ~frozen
        keep = 1.0 - min(1.0, interval_s / (p.memory_days * 86_400.0))
        # (a cycle's residual counts up to skip_z²: a fault's first cycles, before its
        # incident opens, must not teach the leaf that such counts are its noise)
        with np.errstate(divide="ignore", invalid="ignore"):
            resid = np.where(seen, (affected - expected) ** 2 / expected, 0.0)
            # the peak share: the count up to skip_z sd of its learned scatter
            phi = self.dispersion(n)
            reach = np.minimum(affected, expected + p.skip_z * np.sqrt(phi * expected))
            share = np.where(seen, reach / total, 0.0)
        resid = np.minimum(resid, p.skip_z * p.skip_z)
        self.peak[:n] = np.where(seen, np.maximum(self.peak[:n] * keep, share), self.peak[:n])
        self.scatter[:n] = self.scatter[:n] * np.where(seen, keep, 1.0) + resid
        self.cycles[:n] = self.cycles[:n] * np.where(seen, keep, 1.0) + seen
        self.learned_seconds += interval_s

    def nbytes(self) -> int:
        return int(
            self.overdue.nbytes
            + self.counted.nbytes
            + self.scatter.nbytes
            + self.cycles.nbytes
            + self.peak.nbytes
        )

    def export(self) -> tuple[dict[str, np.ndarray], dict[str, object]]:
        """Copies of the learned arrays and the learned time (for a checkpoint)."""
        arrays = {
            "overdue": self.overdue.copy(),
            "counted": self.counted.copy(),
            "fleet_overdue": self.fleet_overdue.copy(),
            "fleet_counted": self.fleet_counted.copy(),
            "scatter": self.scatter.copy(),
            "cycles": self.cycles.copy(),
            "peak": self.peak.copy(),
        }
        return arrays, {"learned_seconds": self.learned_seconds}

    def restore(self, arrays: Mapping[str, np.ndarray], meta: Mapping[str, object]) -> None:
        """Load ``export()``'s output; ``ValueError`` when the shapes do not fit."""
        overdue, counted = arrays["overdue"], arrays["counted"]
        if overdue.shape != counted.shape or overdue.ndim != 2 or overdue.shape[1] != HOURS:
            raise ValueError(f"baseline arrays of shape {overdue.shape} / {counted.shape}")
        fleet_overdue, fleet_counted = arrays["fleet_overdue"], arrays["fleet_counted"]
        if fleet_overdue.shape != (HOURS,) or fleet_counted.shape != (HOURS,):
            raise ValueError("fleet baseline arrays must hold 24 hours")
        self.overdue = overdue.astype(np.float64, copy=True)
        self.counted = counted.astype(np.float64, copy=True)
        self.fleet_overdue = fleet_overdue.astype(np.float64, copy=True)
        self.fleet_counted = fleet_counted.astype(np.float64, copy=True)
        # a checkpoint from before the over-dispersion was learned: none learned yet
        scatter = arrays.get("scatter", np.zeros(0))
        cycles = arrays.get("cycles", np.zeros(0))
        if scatter.shape != cycles.shape or scatter.ndim != 1:
            raise ValueError(f"dispersion arrays of shape {scatter.shape} / {cycles.shape}")
        self.scatter = scatter.astype(np.float64, copy=True)
        self.cycles = cycles.astype(np.float64, copy=True)
        # a checkpoint from before the peak share was learned: none learned yet
        peak = arrays.get("peak", np.zeros(0))
        if peak.ndim != 1:
            raise ValueError(f"peak array of shape {peak.shape}")
        self.peak = peak.astype(np.float64, copy=True)
        learned = meta.get("learned_seconds", 0.0)
        self.learned_seconds = float(learned) if isinstance(learned, int | float) else 0.0


def _ratio(num: float, den: float, floor: float) -> float:
    return max(floor, num / den) if den > 0 else floor
