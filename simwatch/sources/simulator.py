"""The ``simulator`` source: a simulated fleet (simwatch.sim.fleet) played on the wall clock.

The fleet starts ``history_s`` before now: that history is generated and handed over at
start, as fast as ingest takes it, so rhythms and group baselines are learned at once.
Then, every ``tick_s``, the simulator advances to ``clock()`` and the lines that arrived
meanwhile are handed over.

Random group faults (partner, partial blackhole, APN, country, APN in a country) are
planned up front over a ten-year horizon: one starts about every ``fault_every_s``
(exponential gaps, seeded), each lasts ``fault_duration_s``. The simulator's cost grows
with faults x SIMs (every group fault is planned into every SIM), so the fleet is played
in windows of ``WINDOW_S``: each window is a fresh ``FleetSimulator`` of the same fleet
(same seed) given only the faults that touch it. Its record ids get a ``w<k>-`` prefix so
they stay unique across windows; the previous window is kept for ``DRAIN_S`` to deliver
its late and duplicated records.

With ``as_of`` set, the fleet is simulated as of that instant instead of the wall clock,
and moved to the wall clock by a whole number of hours (``shift_s``, the most that keeps
``as_of + shift_s`` at or before the real start). The source then starts at that pinned
"now" (at most an hour before the real one, whose last minutes the first tick catches up
on): its history, the faults planned from it and every record are the same whatever the
date, moved by ``shift_s``, and so is the hour of day each record falls on. The tests pin
it so. Without it, the time of day at start decides which devices (daytime ones sleep at
night) are awake when the first faults hit, so what a detector finds depends on the day.
"""

from __future__ import annotations

import asyncio
import bisect
import math
import random
import tempfile
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Final

from simwatch.core.inventory import InventoryRow
from simwatch.shell.inventory import iter_inventory
from simwatch.shell.source_contract import Batch, SourceStats
from simwatch.sim.catalogue import DAY, HOUR, all_partners
from simwatch.sim.config import SimConfig
from simwatch.sim.faults import FaultSpec
from simwatch.sim.fleet import CHUNK, FleetSimulator

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from datetime import datetime

    from simwatch.shell.settings import SimulatorSourceSettings
    from simwatch.shell.source_contract import Sink
    from simwatch.sim.catalogue import SimCard

__all__ = [
    "BATCH_LINES",
    "DRAIN_S",
    "HORIZON_DAYS",
    "MIN_GROUP_SIMS",
    "WINDOW_S",
    "SimulatorSource",
    "plan_faults",
    "plan_shift",
]

BATCH_LINES: Final = 5000
WINDOW_S: Final = 7 * DAY  # one FleetSimulator per window of event time
DRAIN_S: Final = 2 * HOUR  # a window's late/duplicated deliveries arrive within this after it
HORIZON_DAYS: Final = 3650.0  # faults are planned this far ahead
MIN_GROUP_SIMS: Final = 5  # a fault hits a group of at least this many active SIMs
_RECORD_ID: Final = b'"record_id":"'


def plan_shift(now: float, as_of: datetime | None) -> float:
    """Wall clock minus simulated time for a source started at ``now``: the whole hours
    from ``as_of`` to ``now``, rounded down (so ``as_of + shift`` is at most an hour
    before ``now``), or 0 without ``as_of``."""
    if as_of is None:
        return 0.0
    return math.floor((now - as_of.timestamp()) / HOUR) * HOUR


def plan_faults(
    cards: Sequence[SimCard],
    partners: Mapping[str, str],
    *,
    seed: int,
    start: float,
    end: float,
    every_s: float,
    duration_s: float,
    fixed_starts: Sequence[float] = (),
) -> list[FaultSpec]:
    """Random group faults over ``[start, end)``, sorted by start (pure, deterministic).

    ``fixed_starts`` (sorted) are faults that start exactly then (the demo's fault in the
    recent history and its first live one); after the last of them, random gaps follow.

    Gaps between starts are exponential with mean ``every_s``. A fault picks a kind, then a
    group of at least MIN_GROUP_SIMS active SIMs (by their home attributes); partner faults
    only pick partners of countries with more than one partner (the others can take over).
    """
    codes = [p.code for p in all_partners()]
    per_country = Counter(partners.values())
    active = [c for c in cards if c.status == "active"]
    partner_n = Counter(codes[c.home_partner] for c in active)
    groups: dict[str, list[dict[str, str]]] = {
        "partner": [
            {"partner": p}
            for p, n in sorted(partner_n.items())
            if n >= MIN_GROUP_SIMS and per_country[partners[p]] > 1
        ],
        "apn": [
            {"apn": a}
            for a, n in sorted(Counter(c.apn for c in active).items())
            if n >= MIN_GROUP_SIMS
        ],
        "country": [
            {"country": k}
            for k, n in sorted(Counter(c.country for c in active).items())
            if n >= MIN_GROUP_SIMS
        ],
        "apn_country": [
            {"apn": a, "country": k}
            for (a, k), n in sorted(Counter((c.apn, c.country) for c in active).items())
            if n >= MIN_GROUP_SIMS
        ],
    }
    kinds = [
        (kind, groups[over])
        for kind, over in (
            ("partner_outage", "partner"),
            ("partial_blackhole", "partner"),
            ("apn_outage", "apn"),
            ("country_outage", "country"),
            ("apn_country", "apn_country"),
        )
        if groups[over]
    ]
    if not kinds:
        return []
    rnd = random.Random(f"simwatch-faults-{seed}")  # noqa: S311 - synthetic data, not crypto
    faults: list[FaultSpec] = []
    fixed = list(fixed_starts)
    t = fixed[-1] if fixed else start
    while True:
        if fixed:
            t = fixed.pop(0)
        else:
            t += rnd.expovariate(1.0 / every_s)
        if t >= end:
            return faults
        kind, candidates = kinds[rnd.randrange(len(kinds))]
        dims = candidates[rnd.randrange(len(candidates))]
        fraction = round(rnd.uniform(0.3, 0.7), 2) if kind == "partial_blackhole" else 1.0
        faults.append(FaultSpec(kind, t, t + duration_s, dims, fraction=fraction))


class SimulatorSource:
    """A simulated fleet as a live source (see the module docstring)."""

    def _demo_fault_starts(self, now: float) -> list[float]:
        """A fault that ended an hour before start (when the history is long enough to
        have learned the fleet first: two days), and the first live fault soon after."""
        cfg = self.settings
        starts = []
        past = now - 3600.0 - cfg.fault_duration_s
        if past - self._start >= 2 * DAY:
            starts.append(past)
        if cfg.first_fault_after_s != 0:  # negative: already under way at start
            starts.append(now + cfg.first_fault_after_s)
        return sorted(starts)

    def __init__(
        self, settings: SimulatorSourceSettings, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.settings = settings
        self.stats = SourceStats(name=settings.name, kind="simulator")
        self.caught_up = asyncio.Event()  # set once the history was handed over
        self._clock = clock
        wall = clock()
        self._shift = plan_shift(wall, settings.as_of)
        # "now" for the plan: the wall clock, or as_of moved by whole hours (pinned)
        now = wall if settings.as_of is None else settings.as_of.timestamp() + self._shift
        self._start = now - settings.history_s
        probe = FleetSimulator(
            SimConfig(
                sims=settings.sims,
                days=CHUNK / DAY,
                start=self._start - self._shift,
                seed=settings.seed,
            ),
            shift_s=self._shift,
        )
        self._inventory_csv = probe.inventory_csv()
        self._faults = plan_faults(
            probe.cards,
            probe.partners,
            seed=settings.seed,
            start=now,
            end=self._start + HORIZON_DAYS * DAY,
            every_s=settings.fault_every_s,
            duration_s=settings.fault_duration_s,
            fixed_starts=self._demo_fault_starts(now),
        )
        self._fault_starts = [f.start for f in self._faults]
        self._live: list[tuple[int, FleetSimulator]] = []
        self._next_window = 0

    # ---------------------------------------------------------------- for the daemon

    @property
    def start(self) -> float:
        """Epoch s where the simulated fleet starts (``clock() - history_s`` at creation;
        with ``as_of``: ``as_of + shift_s - history_s``, up to an hour earlier)."""
        return self._start

    @property
    def shift_s(self) -> float:
        """Wall-clock time minus simulated time (whole hours; 0 unless ``as_of`` is set)."""
        return self._shift

    def inventory_rows(self) -> list[InventoryRow]:
        """The simulated fleet's inventory (blocking: a temp file; call it before the loop)."""
        with tempfile.TemporaryDirectory(prefix="simwatch-sim-") as folder:
            path = Path(folder) / "inventory.csv"
            path.write_text(self._inventory_csv, encoding="utf-8")
            items = list(iter_inventory(path))
        rows = [item for item in items if isinstance(item, InventoryRow)]
        if len(rows) != len(items):
            raise RuntimeError(f"{len(items) - len(rows)} simulated inventory rows rejected")
        return rows

    def faults(self, *, until: float | None = None) -> list[dict[str, object]]:
        """The planned faults (FaultSpec.to_json), those starting before ``until`` if given."""
        n = len(self._faults) if until is None else bisect.bisect_left(self._fault_starts, until)
        return [f.to_json() for f in self._faults[:n]]

    # ---------------------------------------------------------------- the loop

    async def run(self, sink: Sink) -> None:
        t = self._start
        now = self._clock()
        while t < now:  # the history, chunk by chunk, as fast as ingest takes it
            t = min(t + CHUNK, now)
            await self._hand_over(sink, t)
        self.caught_up.set()
        while True:
            await asyncio.sleep(self.settings.tick_s)
            await self._hand_over(sink, self._clock())

    async def _hand_over(self, sink: Sink, until: float) -> None:
        lines = await asyncio.to_thread(self._advance, until)
        for i in range(0, len(lines), BATCH_LINES):
            chunk = lines[i : i + BATCH_LINES]
            await sink.put(Batch(source=self.settings.name, lines=chunk))
        self.stats.connected = True
        self.stats.last_success = self._clock()

    # ---------------------------------------------------------------- worker thread

    def _window_start(self, k: int) -> float:
        return self._start + k * WINDOW_S

    def _window_faults(self, k: int) -> tuple[FaultSpec, ...]:
        """The faults touching window k, clipped to it (wall-clock times)."""
        w0, w1 = self._window_start(k), self._window_start(k + 1)
        lo = bisect.bisect_right(self._fault_starts, w0 - self.settings.fault_duration_s)
        hi = bisect.bisect_left(self._fault_starts, w1)
        out: list[FaultSpec] = []
        for f in self._faults[lo:hi]:
            start, end = max(f.start, w0), min(f.end, w1)
            if end > start:
                out.append(
                    FaultSpec(f.kind, start, end, f.dims, f.fraction, f.steer_fraction, f.sims)
                )
        return tuple(out)

    def _build(self, k: int) -> FleetSimulator:
        s = self.settings
        shift = self._shift
        config = SimConfig(
            sims=s.sims,
            days=WINDOW_S / DAY,
            start=self._window_start(k) - shift,
            seed=s.seed,
            faults=tuple(
                replace(f, start=f.start - shift, end=f.end - shift) if shift else f
                for f in self._window_faults(k)
            ),
        )
        return FleetSimulator(config, shift_s=shift)

    def _advance(self, until: float) -> list[bytes]:
        """Lines arrived by ``until`` from every live window (blocking: in a thread)."""
        while self._window_start(self._next_window) <= until:
            self._live.append((self._next_window, self._build(self._next_window)))
            self._next_window += 1
        lines: list[bytes] = []
        for k, sim in self._live:
            prefix = _RECORD_ID + f"w{k}-".encode()
            lines.extend(line.replace(_RECORD_ID, prefix, 1) for line in sim.advance(until))
        self._live = [
            (k, sim) for k, sim in self._live if self._window_start(k + 1) + DRAIN_S > until
        ]
        return lines
