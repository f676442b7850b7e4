"""The fleet simulator: a fleet's inventory and its records, chunk by chunk of event time.

Time advances in fixed chunks of event time: :meth:`FleetSimulator.advance` generates
every chunk that can hold a record arrived by ``until`` and returns the arrived lines in
arrival order, so the output does not depend on how ``advance`` is stepped. Report times
and payloads are drawn with numpy per chunk; each SIM's state machine
(:class:`~simwatch.sim.machine.DeviceMachine`) then runs through its chunk in time order.
"""

from __future__ import annotations

import gc
import heapq
import math
import random
from typing import TYPE_CHECKING

import numpy as np

from simwatch.core.timeutil import format_rfc3339
from simwatch.sim.catalogue import (
    COUNTRIES,
    DAY,
    HOUR,
    MINUTE,
    PROFILES,
    ROGUE_APNS,
    SimCard,
    build_fleet,
)
from simwatch.sim.catalogue import inventory_csv as _inventory_csv
from simwatch.sim.device import (
    DEATH,
    DETACH,
    DETACH_PER_DAY,
    FAULT_END,
    FAULT_START,
    GAP_END,
    GAP_START,
    INTERIM,
    R2,
    REGIME_NAMES,
    RESELECT,
    RESELECT_PER_DAY,
    RESET,
    WATCHDOG_SHARE,
    Device,
    Happening,
)
from simwatch.sim.faults import GROUP_KINDS
from simwatch.sim.machine import DeviceMachine

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from simwatch.sim.config import SimConfig

CHUNK = 6 * HOUR  # event-time chunk generated at once (fixed: output must not depend on it)
INTERIM_PERIOD = 8 * HOUR


class FleetSimulator(DeviceMachine):
    """Generates a fleet's inventory and its records, chunk by chunk of event time.

    ``shift_s`` (whole minutes) plays the fleet at another time than it simulates: the
    records carry, and ``advance`` takes, simulated time + ``shift_s``. The config, the
    faults and the ground truth stay in simulated time.
    """

    def __init__(self, config: SimConfig, *, shift_s: float = 0.0) -> None:
        # the record writer and the devices' state machine
        super().__init__(config, shift_s=shift_s)
        self._t0 = config.start
        rng = np.random.default_rng([config.seed, 0xF1EE7])
        self._cards = build_fleet(config.sims, rng)
        self._country_offset = {c.code: c.utc_offset_h * HOUR for c in COUNTRIES}
        # Network-wide scheduled session reset per partner: between 00:00 and 05:00 local.
        self._reset_tod = [
            (float(rng.integers(0, 5 * 60)) * MINUTE - self._country_offset[p.country]) % DAY
            for p in self._partner_list
        ]
        self._sims = [
            Device(c, self._partner_list[c.home_partner], self._new_session_id())
            for c in self._cards
            if c.status == "active"
        ]
        self._assign_regimes(np.random.default_rng([config.seed, 0x5E6]))
        self._r2_sims = [s for s in self._sims if s.regime == R2]
        self._deaths: list[dict[str, str]] = []
        self._gaps: list[dict[str, str]] = []
        self._plan(rng)
        self._static_arrays()
        self._next_chunk = 0

    # ---------------------------------------------------------------- public API

    @property
    def partners(self) -> Mapping[str, str]:
        """Partner code (MCC+MNC) -> ISO country code."""
        return {p.code: p.country for p in self._partner_list}

    @property
    def cards(self) -> Sequence[SimCard]:
        """The fleet's SIM cards (inventory and device attributes)."""
        return self._cards

    def inventory_csv(self) -> str:
        return _inventory_csv(self._cards)

    def advance(self, until: float) -> list[bytes]:
        """NDJSON lines (no newline) arrived by ``until`` (shifted time), in arrival order."""
        return [line.encode() for line in self._arrived(until)]

    def advance_ndjson(self, until: float) -> bytes:
        """``advance(until)``'s lines as one NDJSON block (each line ends with a newline;
        empty when none arrived)."""
        lines = self._arrived(until)
        if not lines:
            return b""
        lines.append("")
        return "\n".join(lines).encode()

    def _arrived(self, until: float) -> list[str]:
        """Generate what can arrive by ``until`` (shifted time); take the lines arrived
        by then out of the pending ones, in order of arrival (ties: in the order they
        were written; a stable sort of the arrival times)."""
        until -= self._shift
        gc_was_enabled = gc.isenabled()
        # Generation allocates millions of short-lived tuples and dicts of atoms; the cyclic
        # collector would triple the run time scanning them. Nothing here makes cycles.
        gc.disable()
        try:
            while self._chunk_start(self._next_chunk) <= until and (
                self._chunk_start(self._next_chunk) < self._end
            ):
                self._generate_chunk(self._next_chunk)
                self._next_chunk += 1
        finally:
            if gc_was_enabled:
                gc.enable()
        at = np.array(self._out_at, np.float64)
        pending = self._out_lines
        due = at <= until
        rows = np.flatnonzero(due)
        rows = rows[np.argsort(at[rows], kind="stable")]
        lines = [pending[i] for i in rows.tolist()]
        if len(rows) < len(at):
            rest = np.flatnonzero(~due)
            self._out_at = at[rest].tolist()
            self._out_lines = [pending[i] for i in rest.tolist()]
        else:
            self._out_at = []
            self._out_lines = []
        return lines

    def truth(self) -> dict[str, object]:
        faults: list[dict[str, object]] = []
        for i, f in enumerate(self._cfg.faults):
            entry = f.to_json()
            entry["group"] = f.group
            entry["iccids"] = sorted(self._fault_iccids[i])
            if f.kind == "partner_outage":
                entry["steered"] = sorted(self._steered[i])
            if f.kind in GROUP_KINDS:
                entry["matched"] = self._matched[i]
            faults.append(entry)
        return {
            "config": self._cfg.to_json(),
            "faults": faults,
            "deaths": list(self._deaths),
            "coverage_gaps": list(self._gaps),
            "stats": {"records": self._records, "late": self._late, "duplicates": self._dups},
        }

    # ---------------------------------------------------------------- planning

    def _chunk_start(self, ci: int) -> float:
        return self._t0 + ci * CHUNK

    def _plan(self, rng: np.random.Generator) -> None:
        """Per-SIM fault SIMs, deaths and coverage gaps; fault start/end happenings."""
        cfg = self._cfg
        sims = self._sims
        n = len(sims)
        taken: set[int] = set()
        frequent = [
            i
            for i, s in enumerate(sims)
            if s.card.period <= HOUR and not PROFILES[s.card.profile].daytime
        ]
        for fi, f in enumerate(cfg.faults):
            if f.kind in GROUP_KINDS:
                for s in sims:
                    s.plan.append((f.start, next(self._hseq), FAULT_START, fi, 0))
                    s.plan.append((f.end, next(self._hseq), FAULT_END, fi, 0))
                continue
            pool = [i for i in frequent if i not in taken]
            if f.kind == "data_cap":
                pool = [i for i in pool if sims[i].card.cap_bytes is not None]
            chosen = rng.choice(len(pool), size=min(f.sims, len(pool)), replace=False)
            for j in sorted(int(x) for x in chosen):
                i = pool[j]
                taken.add(i)
                s = sims[i]
                if f.kind == "wrong_apn":
                    rogue = [a for a in ROGUE_APNS if a not in s.card.apns]
                    s.bad_apn = rogue[int(rng.integers(len(rogue)))]
                s.plan.append((f.start, next(self._hseq), FAULT_START, fi, 0))
                s.plan.append((f.end, next(self._hseq), FAULT_END, fi, 0))
        free = [i for i in range(n) if i not in taken]
        span = self._end - self._t0
        n_deaths = int(rng.poisson(cfg.deaths_per_day * cfg.days)) if free else 0
        for i in rng.choice(free, size=min(n_deaths, len(free)), replace=False) if n_deaths else []:
            s = sims[int(i)]
            t = self._t0 + float(rng.random()) * span
            taken.add(int(i))
            s.plan.append((t, next(self._hseq), DEATH, 0, 0))
            self._deaths.append({"iccid": s.iccid, "at": format_rfc3339(t)})
        free = [i for i in range(n) if i not in taken]
        n_gaps = int(rng.poisson(cfg.coverage_gaps_per_day * cfg.days)) if free else 0
        for i in rng.choice(free, size=min(n_gaps, len(free)), replace=False) if n_gaps else []:
            s = sims[int(i)]
            t = self._t0 + float(rng.random()) * span
            dur = (1.0 + 5.0 * float(rng.random())) * HOUR
            s.plan.append((t, next(self._hseq), GAP_START, 0, int(t + dur)))
            s.plan.append((t + dur, next(self._hseq), GAP_END, 0, 0))
            self._gaps.append(
                {"iccid": s.iccid, "start": format_rfc3339(t), "end": format_rfc3339(t + dur)}
            )
        self._deaths.sort(key=lambda d: d["at"])
        self._gaps.sort(key=lambda d: d["start"])
        for s in sims:
            s.plan.sort()

    def _assign_regimes(self, rng: np.random.Generator) -> None:
        """Each SIM's data regime and firmware, from a random stream of their own (so an
        r1 fleet's records do not depend on the draws made for the other regimes)."""
        sims = self._sims
        n = len(sims)
        choice = self._cfg.regime
        if choice == "mixed":
            regimes = rng.choice(3, size=n, p=[0.4, 0.3, 0.3]).tolist()
        else:
            regimes = [REGIME_NAMES.index(choice)] * n
        windows = np.where(rng.random(n) < 0.6, 15 * MINUTE, HOUR).tolist()
        lags = (2.0 + 8.0 * rng.random(n)).tolist()
        watchdog = (rng.random(n) < WATCHDOG_SHARE).tolist()
        for i, sim in enumerate(sims):
            sim.regime = int(regimes[i])
            sim.r2_window = float(windows[i])
            sim.r2_lag = float(lags[i]) * MINUTE
            sim.watchdog = bool(watchdog[i])

    def _static_arrays(self) -> None:
        sims = self._sims
        profs = [PROFILES[s.card.profile] for s in sims]
        self._a_period = np.array([s.card.period for s in sims], dtype=np.float64)
        self._a_phase = np.array([s.card.phase for s in sims], dtype=np.float64)
        self._a_jitter = np.array([p.jitter for p in profs], dtype=np.float64)
        self._a_up = np.log(np.array([p.up for p in profs], dtype=np.float64))
        self._a_down = np.log(np.array([p.down for p in profs], dtype=np.float64))
        self._a_daytime = np.array([p.daytime for p in profs], dtype=bool)
        self._a_tz = np.array([self._country_offset[s.country] for s in sims], dtype=np.float64)
        self._a_ds = np.array([s.card.day_start for s in sims], dtype=np.float64)
        self._a_de = np.array([s.card.day_end for s in sims], dtype=np.float64)
        self._a_evrate = np.array([p.events_per_day for p in profs], dtype=np.float64)
        self._a_evup = np.log(np.maximum([p.event_up for p in profs], 1.0))
        self._a_evdown = np.log(np.maximum([p.event_down for p in profs], 1.0))

    # ---------------------------------------------------------------- generation

    def _reports(
        self, c0: float, c1: float, rng: np.random.Generator
    ) -> tuple[list[int], list[float], list[int], list[int]]:
        """All report times and payloads in [c0, c1), sorted by SIM then time.

        Returns per-SIM offsets (len n+1) and flat lists of times, bytes up, bytes down.
        """
        n = len(self._sims)
        period = self._a_period
        phase = self._a_phase
        k0 = np.ceil((c0 - phase) / period)
        k1 = np.ceil((c1 - phase) / period)
        counts = (k1 - k0).astype(np.int64)
        idx = np.repeat(np.arange(n), counts)
        first = np.cumsum(counts) - counts
        k = k0[idx] + (np.arange(idx.size) - first[idx])
        nominal = phase[idx] + k * period[idx]
        local = np.mod(nominal + self._a_tz[idx], DAY)
        keep = (nominal < self._end) & (
            ~self._a_daytime[idx] | ((local >= self._a_ds[idx]) & (local < self._a_de[idx]))
        )
        idx = idx[keep]
        t = nominal[keep] + rng.random(idx.size) * self._a_jitter[idx]
        up = rng.lognormal(self._a_up[idx], 0.35)
        down = rng.lognormal(self._a_down[idx], 0.5)
        # Event-driven reports (alarm panels): Poisson in the chunk.
        ev_counts = rng.poisson(self._a_evrate * ((c1 - c0) / DAY))
        ev_idx = np.repeat(np.arange(n), ev_counts)
        ev_t = c0 + rng.random(ev_idx.size) * (c1 - c0)
        ev_up = rng.lognormal(self._a_evup[ev_idx], 0.5)
        ev_down = rng.lognormal(self._a_evdown[ev_idx], 0.5)
        idx = np.concatenate([idx, ev_idx])
        t = np.concatenate([t, ev_t])
        up = np.concatenate([up, ev_up])
        down = np.concatenate([down, ev_down])
        order = np.lexsort((t, idx))
        idx = idx[order]
        offsets = np.searchsorted(idx, np.arange(n + 1)).tolist()
        return (
            offsets,
            t[order].tolist(),
            np.maximum(up[order], 20).astype(np.int64).tolist(),
            np.maximum(down[order], 8).astype(np.int64).tolist(),
        )

    def _generate_chunk(self, ci: int) -> None:
        c0 = self._chunk_start(ci)
        c1 = min(c0 + CHUNK, self._end)
        seed = self._cfg.seed
        rng = np.random.default_rng([seed, 7, ci])
        self._rnd = random.Random(seed * 1_000_003 + ci)  # noqa: S311 - synthetic data
        rnd = self._rnd
        offsets, times, ups, downs = self._reports(c0, c1, rng)
        p_reselect = RESELECT_PER_DAY * (c1 - c0) / DAY
        p_detach = DETACH_PER_DAY * (c1 - c0) / DAY
        day0 = math.floor(c0 / DAY) * DAY
        for j, sim in enumerate(self._sims):
            if sim.dead:
                continue
            h: list[Happening] = []
            card = sim.card
            hs = self._hseq
            # Interim session updates every 8 h.
            k = math.ceil((c0 - card.interim_phase) / INTERIM_PERIOD)
            ti = card.interim_phase + k * INTERIM_PERIOD
            while ti < c1:
                h.append((ti, next(hs), INTERIM, 0, 0))
                ti += INTERIM_PERIOD
            # Scheduled resets of every partner of the SIM's country (applies to the current one).
            for p in self._country_partners[sim.country]:
                tr = day0 + self._reset_tod[p] + card.reset_jitter
                while tr < c1:
                    if tr >= c0:
                        h.append((tr, next(hs), RESET, p, 0))
                    tr += DAY
            if rnd.random() < p_reselect:
                h.append((c0 + rnd.random() * (c1 - c0), next(hs), RESELECT, -1, 1))
            if rnd.random() < p_detach:
                h.append((c0 + rnd.random() * (c1 - c0), next(hs), DETACH, 0, 0))
            plan = sim.plan
            while plan and plan[0][0] < c1:
                h.append(plan.pop(0))
            if sim.carry:
                keep: list[Happening] = []
                for item in sim.carry:
                    (h if item[0] < c1 else keep).append(item)
                sim.carry = keep
            heapq.heapify(h)
            self._run(sim, h, c1, (times, ups, downs, offsets[j], offsets[j + 1]))
        for sim in self._r2_sims:  # the platform closes the windows ended by now
            self.flush_window(sim, c1)
