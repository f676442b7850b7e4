"""``SimConfig``: what to simulate (fleet size, span, seed, faults, noise rates)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from simwatch.core.timeutil import format_rfc3339, parse_rfc3339

if TYPE_CHECKING:
    from simwatch.sim.faults import FaultSpec

DEFAULT_START = parse_rfc3339("2026-11-02T00:00:00Z")
REGIMES = ("r1", "r2", "r3", "mixed")


@dataclass(frozen=True, slots=True)
class SimConfig:
    """What to simulate: fleet size, span, seed, faults and noise rates."""

    sims: int = 2000
    days: float = 5.0
    start: float = DEFAULT_START
    seed: int = 1
    faults: tuple[FaultSpec, ...] = ()
    late_fraction: float = 0.015
    duplicate_fraction: float = 0.005
    deaths_per_day: float = 3.0
    coverage_gaps_per_day: float = 6.0
    # Data regime of the fleet's usage records: r1 (one per report), r2 (windowed usage),
    # r3 (session level) or mixed (each SIM draws one: 40 % r1, 30 % r2, 30 % r3).
    regime: str = "r1"

    def __post_init__(self) -> None:
        if self.regime not in REGIMES:
            raise ValueError(f"unknown regime {self.regime!r}; known: {', '.join(REGIMES)}")

    def to_json(self) -> dict[str, object]:
        return {
            "sims": self.sims,
            "days": self.days,
            "start": format_rfc3339(self.start),
            "seed": self.seed,
            "faults": [f.to_json() for f in self.faults],
            "late_fraction": self.late_fraction,
            "duplicate_fraction": self.duplicate_fraction,
            "deaths_per_day": self.deaths_per_day,
            "coverage_gaps_per_day": self.coverage_gaps_per_day,
            "regime": self.regime,
        }
