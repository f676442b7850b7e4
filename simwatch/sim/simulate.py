"""``simwatch simulate``: a realistic IoT SIM fleet generator.

Draws an inventory of SIMs (customers, APNs, plans, caps, statuses) and plays their devices'
traffic as FORMATS.md records: ``usage`` per report window, ``session`` lifecycles with
daily scheduled resets per partner, and ``event`` signalling (attach, location updates,
detaches, rejects). It adds the noise of a real fleet (late and duplicated deliveries,
single device deaths, coverage gaps) and injectable faults with their ground truth.

Time advances in fixed chunks of event time: :meth:`FleetSimulator.advance` generates
every chunk that can hold a record arrived by ``until`` and returns the arrived lines in
arrival order, so the output does not depend on how ``advance`` is stepped. Report times
and payloads are drawn with numpy per chunk; each SIM's state machine then runs through
its chunk in time order.
"""

from __future__ import annotations

import argparse
import bisect
import gc
import heapq
import math
import random
import re
import sys
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from itertools import count, repeat
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import orjson

from simwatch.core.timeutil import format_rfc3339, parse_rfc3339
from simwatch.sim.catalogue import (
    COUNTRIES,
    DAY,
    HOUR,
    PROFILES,
    ROGUE_APNS,
    Partner,
    SimCard,
    all_partners,
    build_fleet,
)
from simwatch.sim.catalogue import inventory_csv as _inventory_csv

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

MINUTE = 60.0
CHUNK = 6 * HOUR  # event-time chunk generated at once (fixed: output must not depend on it)
INTERIM_PERIOD = 8 * HOUR
DEFAULT_START = parse_rfc3339("2026-11-02T00:00:00Z")

GROUP_KINDS: frozenset[str] = frozenset(
    {"partner_outage", "partial_blackhole", "apn_outage", "country_outage", "apn_country"}
)
SIM_KINDS: frozenset[str] = frozenset({"data_cap", "wrong_apn", "session_flapping"})
FAULT_KINDS: frozenset[str] = GROUP_KINDS | SIM_KINDS
REQUIRED_DIMS: Mapping[str, tuple[str, ...]] = {
    "partner_outage": ("partner",),
    "partial_blackhole": ("partner",),
    "apn_outage": ("apn",),
    "country_outage": ("country",),
    "apn_country": ("apn", "country"),
}
_SILENCING = frozenset({"partner_outage", "country_outage"})
_CONNECT_BLOCKING = frozenset({"apn_outage", "apn_country", "data_cap", "wrong_apn"})


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """A fault to inject: ``kind`` from FAULT_KINDS, active in ``[start, end)`` (epoch s).

    Group faults name their group in ``dims`` (``{"partner": "26202"}``,
    ``{"apn": "meters.acme", "country": "DE"}``); per-SIM faults give a SIM count in ``sims``.
    """

    kind: str
    start: float
    end: float
    dims: Mapping[str, str] = field(default_factory=dict)
    fraction: float = 1.0
    steer_fraction: float = 0.3
    sims: int = 0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; known: {sorted(FAULT_KINDS)}")
        if self.end <= self.start:
            raise ValueError(f"fault {self.kind} ends before it starts")
        missing = [k for k in REQUIRED_DIMS.get(self.kind, ()) if k not in self.dims]
        if missing:
            raise ValueError(f"fault {self.kind} needs {', '.join(missing)}")
        if self.kind in SIM_KINDS and self.sims <= 0:
            raise ValueError(f"fault {self.kind} needs sims > 0")
        if not (0.0 <= self.fraction <= 1.0 and 0.0 <= self.steer_fraction <= 1.0):
            raise ValueError("fraction and steer_fraction must be within [0, 1]")

    @property
    def group(self) -> bool:
        return self.kind in GROUP_KINDS

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "kind": self.kind,
            "dims": dict(self.dims),
            "start": format_rfc3339(self.start),
            "end": format_rfc3339(self.end),
        }
        if self.kind == "partial_blackhole":
            out["fraction"] = self.fraction
        if self.kind == "partner_outage":
            out["steer_fraction"] = self.steer_fraction
        if self.kind in SIM_KINDS:
            out["sims"] = self.sims
        return out


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
        }


# Happening codes of the per-SIM state machine.
_REPORT = 0
_INTERIM = 1
_RESET = 2
_CONNECT = 3
_RESELECT = 4
_DETACH = 5
_REATTACH = 6
_GAP_START = 7
_GAP_END = 8
_GAP_TIMEOUT = 9
_DEATH = 10
_FAULT_START = 11
_FAULT_END = 12
_STEER = 13
_APN_DROP = 14
_FLAP = 15

_RESELECT_PER_DAY = 0.03
_DETACH_PER_DAY = 0.02
_SEQ_BASE = 1 << 40  # sequence numbers of non-report happenings (reports use their index)

Happening = tuple[float, int, int, int, int]


class _Sim:
    """Mutable per-SIM state (static attributes copied from its card for speed)."""

    __slots__ = (
        "apn",
        "bad_apn",
        "blackholed",
        "block",
        "capped",
        "card",
        "carry",
        "country",
        "dead",
        "detached",
        "faults",
        "home",
        "iccid",
        "in_gap",
        "mcc",
        "missed_down",
        "missed_since",
        "missed_up",
        "mnc",
        "month_bytes",
        "month_end",
        "partner",
        "plan",
        "rat",
        "sending",
        "sess_down",
        "sess_id",
        "sess_up",
        "silenced",
        "token",
        "visible",
        "window",
    )

    def __init__(self, card: SimCard, partner: Partner, session_id: str) -> None:
        self.card = card
        self.iccid = card.iccid
        self.apn = card.apn
        self.capped = card.cap_bytes is not None
        self.country = card.country
        self.rat = card.rat
        self.window = PROFILES[card.profile].window
        self.home = card.home_partner
        self.partner = card.home_partner
        self.mcc = partner.mcc
        self.mnc = partner.mnc
        self.sess_id: str | None = session_id
        self.sess_up = 0
        self.sess_down = 0
        self.month_bytes = 0
        self.month_end = -math.inf
        self.dead = False
        self.in_gap = False
        self.detached = False
        self.faults: dict[int, str] = {}
        self.silenced = False
        self.blackholed = False
        self.block: str | None = None
        self.visible = True
        self.sending = True
        self.token = 0
        self.bad_apn = ""
        # Store and forward: what the device could not send while it had no data
        # session (outage, coverage gap, rejected session) goes out once it has one.
        self.missed_up = 0
        self.missed_down = 0
        self.missed_since: float | None = None
        self.carry: list[Happening] = []
        self.plan: list[Happening] = []

    def refresh(self) -> None:
        kinds = set(self.faults.values())
        self.silenced = bool(kinds & _SILENCING)
        self.blackholed = "partial_blackhole" in kinds
        blocking = sorted(kinds & _CONNECT_BLOCKING)
        self.block = blocking[0] if blocking else None
        self.visible = not (self.dead or self.in_gap or self.silenced)
        self.sending = (
            self.visible and self.sess_id is not None and not self.detached and not self.blackholed
        )


def _next_month_start(t: float) -> float:
    d = datetime.fromtimestamp(t, tz=UTC)
    year, month = (d.year + 1, 1) if d.month == 12 else (d.year, d.month + 1)
    return datetime(year, month, 1, tzinfo=UTC).timestamp()


class FleetSimulator:
    """Generates a fleet's inventory and its records, chunk by chunk of event time."""

    def __init__(self, config: SimConfig) -> None:
        self._cfg = config
        self._t0 = config.start
        self._end = config.start + config.days * DAY
        rng = np.random.default_rng([config.seed, 0xF1EE7])
        self._cards = build_fleet(config.sims, rng)
        self._partner_list = all_partners()
        self._partner_code = [p.code for p in self._partner_list]
        self._country_offset = {c.code: c.utc_offset_h * HOUR for c in COUNTRIES}
        self._country_partners: dict[str, list[int]] = {}
        self._country_weights: dict[str, list[float]] = {}
        for i, p in enumerate(self._partner_list):
            self._country_partners.setdefault(p.country, []).append(i)
        for c in COUNTRIES:
            self._country_weights[c.code] = list(c.partner_weights)
        # Network-wide scheduled session reset per partner: between 00:00 and 05:00 local.
        self._reset_tod = [
            (float(rng.integers(0, 5 * 60)) * MINUTE - self._country_offset[p.country]) % DAY
            for p in self._partner_list
        ]
        self._session_seq = count(1)
        self._record_seq = count(1)
        self._arrival_seq = count(1)
        self._hseq = count(_SEQ_BASE)
        self._sims = [
            _Sim(c, self._partner_list[c.home_partner], self._new_session_id())
            for c in self._cards
            if c.status == "active"
        ]
        self._truth_faults: list[dict[str, object]] = []
        self._fault_iccids: list[set[str]] = [set() for _ in config.faults]
        self._steered: list[set[str]] = [set() for _ in config.faults]
        self._matched: list[int] = [0 for _ in config.faults]
        self._deaths: list[dict[str, str]] = []
        self._gaps: list[dict[str, str]] = []
        self._plan(rng)
        self._static_arrays()
        self._pending: list[tuple[float, int, str]] = []
        self._next_chunk = 0
        self._minute_prefix: dict[int, str] = {}
        self._secs = [f"{s:02d}Z" for s in range(60)]
        self._rnd = random.Random(0)  # noqa: S311 - synthetic data, not crypto
        self._out: list[tuple[float, int, str]] = []
        self._records = 0
        self._late_p = config.late_fraction
        self._dup_p = config.duplicate_fraction
        self._late = 0
        self._dups = 0

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
        """NDJSON lines (no newline) arrived by ``until``, in arrival order."""
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
        pending = self._pending
        pending.sort()
        cut = bisect.bisect_right(pending, (until, math.inf))
        lines = [line.encode() for _, _, line in pending[:cut]]
        del pending[:cut]
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

    def _new_session_id(self) -> str:
        return f"{next(self._session_seq):08x}"

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
                    s.plan.append((f.start, next(self._hseq), _FAULT_START, fi, 0))
                    s.plan.append((f.end, next(self._hseq), _FAULT_END, fi, 0))
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
                s.plan.append((f.start, next(self._hseq), _FAULT_START, fi, 0))
                s.plan.append((f.end, next(self._hseq), _FAULT_END, fi, 0))
        free = [i for i in range(n) if i not in taken]
        span = self._end - self._t0
        n_deaths = int(rng.poisson(cfg.deaths_per_day * cfg.days)) if free else 0
        for i in rng.choice(free, size=min(n_deaths, len(free)), replace=False) if n_deaths else []:
            s = sims[int(i)]
            t = self._t0 + float(rng.random()) * span
            taken.add(int(i))
            s.plan.append((t, next(self._hseq), _DEATH, 0, 0))
            self._deaths.append({"iccid": s.iccid, "at": format_rfc3339(t)})
        free = [i for i in range(n) if i not in taken]
        n_gaps = int(rng.poisson(cfg.coverage_gaps_per_day * cfg.days)) if free else 0
        for i in rng.choice(free, size=min(n_gaps, len(free)), replace=False) if n_gaps else []:
            s = sims[int(i)]
            t = self._t0 + float(rng.random()) * span
            dur = (1.0 + 5.0 * float(rng.random())) * HOUR
            s.plan.append((t, next(self._hseq), _GAP_START, 0, int(t + dur)))
            s.plan.append((t + dur, next(self._hseq), _GAP_END, 0, 0))
            self._gaps.append(
                {"iccid": s.iccid, "start": format_rfc3339(t), "end": format_rfc3339(t + dur)}
            )
        self._deaths.sort(key=lambda d: d["at"])
        self._gaps.sort(key=lambda d: d["start"])
        for s in sims:
            s.plan.sort()

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
        self._out = self._pending
        p_reselect = _RESELECT_PER_DAY * (c1 - c0) / DAY
        p_detach = _DETACH_PER_DAY * (c1 - c0) / DAY
        day0 = math.floor(c0 / DAY) * DAY
        for j, sim in enumerate(self._sims):
            if sim.dead:
                continue
            lo, hi = offsets[j], offsets[j + 1]
            h: list[Happening] = list(
                zip(
                    times[lo:hi],
                    range(lo, hi),
                    repeat(_REPORT),
                    ups[lo:hi],
                    downs[lo:hi],
                    strict=False,
                )
            )
            card = sim.card
            hs = self._hseq
            # Interim session updates every 8 h.
            k = math.ceil((c0 - card.interim_phase) / INTERIM_PERIOD)
            ti = card.interim_phase + k * INTERIM_PERIOD
            while ti < c1:
                h.append((ti, next(hs), _INTERIM, 0, 0))
                ti += INTERIM_PERIOD
            # Scheduled resets of every partner of the SIM's country (applies to the current one).
            for p in self._country_partners[sim.country]:
                tr = day0 + self._reset_tod[p] + card.reset_jitter
                while tr < c1:
                    if tr >= c0:
                        h.append((tr, next(hs), _RESET, p, 0))
                    tr += DAY
            if rnd.random() < p_reselect:
                h.append((c0 + rnd.random() * (c1 - c0), next(hs), _RESELECT, -1, 1))
            if rnd.random() < p_detach:
                h.append((c0 + rnd.random() * (c1 - c0), next(hs), _DETACH, 0, 0))
            plan = sim.plan
            while plan and plan[0][0] < c1:
                h.append(plan.pop(0))
            if sim.carry:
                keep: list[Happening] = []
                for item in sim.carry:
                    (h if item[0] < c1 else keep).append(item)
                sim.carry = keep
            heapq.heapify(h)
            self._run(sim, h, c1)

    def _prefix(self, minute: int) -> str:
        """``2026-11-02T10:15:`` for an epoch minute (cached: records repeat minutes a lot)."""
        if len(self._minute_prefix) > 200_000:
            self._minute_prefix.clear()
        prefix = format_rfc3339(minute * 60)[:17]
        self._minute_prefix[minute] = prefix
        return prefix

    def _fmt(self, t: float) -> str:
        m, sec = divmod(round(t), 60)
        return (self._minute_prefix.get(m) or self._prefix(m)) + self._secs[sec]

    def _emit(self, t: float, obj: dict[str, object]) -> None:
        # Kept as str: holding orjson's oversized bytes buffers fragments the heap badly.
        line = orjson.dumps(obj).decode()
        rnd = self._rnd.random
        late = self._late_p
        self._records += 1
        u = rnd()
        if u < late:  # one draw decides lateness and the delay
            arrival = t + 60.0 + 420.0 * u / late
            self._late += 1
        else:
            arrival = t + 0.5 + 14.5 * (u - late) / (1.0 - late)
        out = self._out
        out.append((arrival, next(self._arrival_seq), line))
        if rnd() < self._dup_p:
            self._dups += 1
            out.append((arrival + 30.0 + rnd() * 870.0, next(self._arrival_seq), line))

    def _event(self, sim: _Sim, t: float, etype: str, apn: str | None, cause: str | None) -> None:
        obj: dict[str, object] = {
            "kind": "event",
            "record_id": f"e-{next(self._record_seq)}",
            "iccid": sim.iccid,
            "ts": self._fmt(t),
            "type": etype,
        }
        if apn is not None:
            obj["apn"] = apn
        obj["mcc"] = sim.mcc
        obj["mnc"] = sim.mnc
        if cause is not None:
            obj["cause"] = cause
        self._emit(t, obj)

    def _session(self, sim: _Sim, t: float, status: str, end_cause: str | None = None) -> None:
        obj: dict[str, object] = {
            "kind": "session",
            "record_id": f"s-{next(self._record_seq)}",
            "iccid": sim.iccid,
            "session_id": sim.sess_id,
            "status": status,
            "ts": self._fmt(t),
            "apn": sim.apn,
            "mcc": sim.mcc,
            "mnc": sim.mnc,
            "rat": sim.rat,
        }
        if status != "started":
            obj["bytes_up"] = sim.sess_up
            obj["bytes_down"] = sim.sess_down
        if end_cause is not None:
            obj["end_cause"] = end_cause
        self._emit(t, obj)

    def _usage(self, sim: _Sim, t: float, window: float, up: int, down: int) -> None:
        prefixes = self._minute_prefix
        secs = self._secs
        m, sec = divmod(round(t), 60)
        m0, sec0 = divmod(round(t - window), 60)
        end = prefixes.get(m) or self._prefix(m)
        start = prefixes.get(m0) or self._prefix(m0)
        self._emit(
            t,
            {
                "kind": "usage",
                "record_id": f"u-{next(self._record_seq)}",
                "iccid": sim.iccid,
                "start": start + secs[sec0],
                "end": end + secs[sec],
                "bytes_up": up,
                "bytes_down": down,
                "apn": sim.apn,
                "mcc": sim.mcc,
                "mnc": sim.mnc,
                "rat": sim.rat,
            },
        )
        sim.sess_up += up
        sim.sess_down += down
        if sim.capped:
            if t >= sim.month_end:
                sim.month_end = _next_month_start(t)
                sim.month_bytes = 0
            sim.month_bytes += up + down

    def _end_session(self, sim: _Sim, t: float, cause: str) -> None:
        if sim.sess_id is not None:
            self._session(sim, t, "ended", cause)
            sim.sess_id = None
            sim.refresh()

    def _set_partner(self, sim: _Sim, p: int) -> None:
        sim.partner = p
        partner = self._partner_list[p]
        sim.mcc = partner.mcc
        sim.mnc = partner.mnc

    def _partner_down(self, p: int, t: float) -> bool:
        partner = self._partner_list[p]
        for f in self._cfg.faults:
            if not f.start <= t < f.end:
                continue
            if f.kind == "partner_outage" and f.dims.get("partner") == partner.code:
                return True
            if f.kind == "country_outage" and f.dims.get("country") == partner.country:
                return True
        return False

    def _other_partner(self, sim: _Sim, t: float) -> int | None:
        cands = self._country_partners[sim.country]
        weights = self._country_weights[sim.country]
        ok = [
            (p, w)
            for p, w in zip(cands, weights, strict=True)
            if p != sim.partner and not self._partner_down(p, t)
        ]
        if not ok:
            return None
        return self._rnd.choices([p for p, _ in ok], weights=[w for _, w in ok])[0]

    def _matches(self, sim: _Sim, dims: Mapping[str, str]) -> bool:
        for key, value in dims.items():
            if key == "partner":
                if self._partner_code[sim.partner] != value:
                    return False
            elif key == "country":
                if sim.country != value:
                    return False
            elif key == "apn":
                if sim.card.apn != value:
                    return False
            elif key == "customer" and sim.card.customer != value:
                return False
        return True

    def _run(self, sim: _Sim, h: list[Happening], c1: float) -> None:
        """Run one SIM's happenings of a chunk in time order."""
        rnd = self._rnd
        end = self._end
        hs = self._hseq
        heappop = heapq.heappop
        heappush = heapq.heappush

        def push(t: float, code: int, a: int = 0, b: int = 0) -> None:
            if t >= end:
                return
            item = (t, next(hs), code, a, b)
            if t < c1:
                heappush(h, item)
            else:
                sim.carry.append(item)

        def connect_later(t: float, delay: float, attach: int) -> None:
            sim.token += 1
            push(t + delay, _CONNECT, sim.token, attach)

        while h:
            t, _, code, a, b = heappop(h)
            if sim.dead:
                return
            if code == _REPORT:
                if sim.sending:
                    self._usage(sim, t, sim.window, a, b)
                elif not sim.blackholed:  # a black hole swallows data the device thinks it sent
                    sim.missed_up += a
                    sim.missed_down += b
                    if sim.missed_since is None:
                        sim.missed_since = t - sim.window
            elif code == _INTERIM:
                if sim.visible and sim.sess_id is not None and not sim.detached:
                    self._session(sim, t, "interim")
            elif code == _RESET:
                if (
                    sim.visible
                    and sim.sess_id is not None
                    and not sim.detached
                    and a == sim.partner
                ):
                    self._end_session(sim, t, "scheduled_reset")
                    connect_later(t, 1.0 + rnd.random() * 4.0, 0)
            elif code == _CONNECT:
                if a == sim.token:
                    self._connect(sim, t, attach=bool(b), push=push)
            elif code == _RESELECT:
                if sim.visible and not sim.faults and not sim.detached:
                    target = a if a >= 0 else self._other_partner(sim, t)
                    if (
                        target is not None
                        and target != sim.partner
                        and not self._partner_down(target, t)
                    ):
                        self._end_session(sim, t, "normal")
                        self._set_partner(sim, target)
                        self._event(sim, t + 1.0, "location_update", None, None)
                        connect_later(t, 2.0 + rnd.random() * 20.0, 0)
                        if b and target != sim.home and rnd.random() < 0.5:
                            push(t + (1.0 + 11.0 * rnd.random()) * HOUR, _RESELECT, sim.home, 0)
            elif code == _DETACH:
                if sim.visible and not sim.faults and not sim.detached:
                    self._event(sim, t, "detach", None, None)
                    self._end_session(sim, t + 0.5, "normal")
                    sim.detached = True
                    sim.refresh()
                    push(t + 60.0 + rnd.random() * 1140.0, _REATTACH)
            elif code == _REATTACH:
                sim.detached = False
                sim.refresh()
                sim.token += 1
                self._connect(sim, t, attach=True, push=push)
            elif code == _GAP_START:
                sim.in_gap = True
                sim.refresh()
                push(t + min(1800.0, (b - t) / 2), _GAP_TIMEOUT)
            elif code == _GAP_TIMEOUT:
                if sim.in_gap and sim.sess_id is not None:
                    # The network closes the idle session; the record does not need the device.
                    self._end_session(sim, t, "idle_timeout")
            elif code == _GAP_END:
                sim.in_gap = False
                sim.refresh()
                if sim.sess_id is None:
                    connect_later(t, rnd.random() * 30.0, 1)
            elif code == _DEATH:
                sim.dead = True
                sim.refresh()
                sim.carry.clear()
                return
            elif code == _FAULT_START:
                self._fault_start(sim, t, a, push, connect_later)
            elif code == _FAULT_END:
                kind = sim.faults.pop(a, None)
                if kind is not None:
                    sim.refresh()
                    if kind in _SILENCING:
                        if sim.visible and sim.sess_id is None and not sim.detached:
                            connect_later(t, 30.0 + rnd.random() * 570.0, 1)
                    elif kind in _CONNECT_BLOCKING and sim.sess_id is None and not sim.detached:
                        connect_later(t, 10.0 + rnd.random() * 290.0, 0)
            elif code == _STEER:
                if a in sim.faults and not sim.in_gap:
                    target = self._other_partner(sim, t)
                    if target is not None:
                        del sim.faults[a]
                        self._steered[a].add(sim.iccid)
                        self._set_partner(sim, target)
                        sim.refresh()
                        self._event(sim, t, "location_update", None, None)
                        sim.token += 1
                        self._connect(sim, t + 2.0, attach=False, push=push)
            elif code == _APN_DROP:
                if a in sim.faults and sim.visible:
                    self._end_session(sim, t, "network_failure")
                    connect_later(t, 20.0 + rnd.random() * 70.0, 0)
            elif code == _FLAP and a in sim.faults:
                if sim.visible and sim.sess_id is not None and not sim.detached:
                    self._end_session(sim, t, "network_failure")
                    connect_later(t, 5.0 + rnd.random() * 55.0, 0)
                push(t + (6.0 + 14.0 * rnd.random()) * MINUTE, _FLAP, a)

    def _connect(
        self, sim: _Sim, t: float, *, attach: bool, push: Callable[[float, int, int, int], None]
    ) -> None:
        """The device tries to open a data session (it may be rejected and retry)."""
        if not sim.visible or sim.detached or sim.sess_id is not None:
            return
        rnd = self._rnd
        block = sim.block
        if attach:
            self._event(sim, t, "attach", None, None)
            t += 1.0
        if block is None:
            sim.sess_id = self._new_session_id()
            sim.sess_up = 0
            sim.sess_down = 0
            sim.refresh()
            self._session(sim, t, "started")
            if sim.missed_since is not None and sim.sending:
                sent = t + 2.0 + rnd.random() * 28.0
                self._usage(sim, sent, sent - sim.missed_since, sim.missed_up, sim.missed_down)
                sim.missed_up = sim.missed_down = 0
                sim.missed_since = None
            return
        if block == "wrong_apn":
            self._event(sim, t, "auth_failure", sim.bad_apn, "apn_not_allowed")
            retry = (10.0 + 20.0 * rnd.random()) * MINUTE
        elif block == "data_cap":
            self._event(sim, t, "pdp_reject", sim.apn, "data_cap_reached")
            retry = (60.0 + 120.0 * rnd.random()) * MINUTE
        else:
            self._event(sim, t, "pdp_reject", sim.apn, "apn_unavailable")
            retry = (20.0 + 20.0 * rnd.random()) * MINUTE
        sim.token += 1
        push(t + retry, _CONNECT, sim.token, 0)

    def _fault_start(
        self,
        sim: _Sim,
        t: float,
        fi: int,
        push: Callable[[float, int, int, int], None],
        connect_later: Callable[[float, float, int], None],
    ) -> None:
        f = self._cfg.faults[fi]
        rnd = self._rnd
        if f.kind in GROUP_KINDS:
            if not self._matches(sim, f.dims):
                return
            self._matched[fi] += 1
            if f.kind == "partial_blackhole" and rnd.random() >= f.fraction:
                return
        self._fault_iccids[fi].add(sim.iccid)
        sim.faults[fi] = f.kind
        kind = f.kind
        if kind in _SILENCING:
            sim.sess_id = None  # the session dies with the network; no record reaches us
            if (
                kind == "partner_outage"
                and rnd.random() < f.steer_fraction
                and len(self._country_partners[sim.country]) > 1
            ):
                push(t + (2.0 + 8.0 * rnd.random()) * MINUTE, _STEER, fi, 0)
        elif kind in {"apn_outage", "apn_country"}:
            push(t + rnd.random() * 600.0, _APN_DROP, fi, 0)
        elif kind == "data_cap":
            cap = sim.card.cap_bytes or 0
            if t >= sim.month_end:
                sim.month_end = _next_month_start(t)
                sim.month_bytes = 0
            missing = cap - sim.month_bytes
            if missing > 0:
                # A runaway download burns the rest of the month's allowance.
                up = max(missing // 20, 1)
                self._usage(sim, t, 3 * HOUR, up, missing - up)
            sim.refresh()
            self._end_session(sim, t + 1.0, "admin")
            connect_later(t + 1.0, 30.0 + rnd.random() * 90.0, 0)
        elif kind == "wrong_apn":
            sim.refresh()
            self._end_session(sim, t, "normal")
            connect_later(t, 30.0 + rnd.random() * 90.0, 0)
        elif kind == "session_flapping":
            push(t + (1.0 + 14.0 * rnd.random()) * MINUTE, _FLAP, fi, 0)
        sim.refresh()


# ------------------------------------------------------------------------- scenarios


def _at(day: float, hour: float) -> float:
    return DEFAULT_START + day * DAY + hour * HOUR


def _fault_free_week(seed: int) -> SimConfig:
    return SimConfig(days=7.0, seed=seed)


def _partner_outage(seed: int) -> SimConfig:
    f = FaultSpec("partner_outage", _at(2, 10), _at(2, 13), {"partner": "26201"})
    return SimConfig(seed=seed, faults=(f,))


def _partial_blackhole(seed: int) -> SimConfig:
    f = FaultSpec("partial_blackhole", _at(2, 14), _at(2, 17), {"partner": "26201"}, fraction=0.3)
    return SimConfig(seed=seed, faults=(f,))


def _apn_outage(seed: int) -> SimConfig:
    f = FaultSpec("apn_outage", _at(2, 9), _at(2, 12), {"apn": "internet.iot"})
    return SimConfig(seed=seed, faults=(f,))


def _country_outage(seed: int) -> SimConfig:
    f = FaultSpec(
        "country_outage",
        _at(2, 11),
        _at(
            2,
            13,
        ),
        {"country": "FR"},
    )
    return SimConfig(seed=seed, faults=(f,))


def _apn_country(seed: int) -> SimConfig:
    f = FaultSpec("apn_country", _at(2, 8), _at(2, 11), {"apn": "meters.acme", "country": "DE"})
    return SimConfig(seed=seed, faults=(f,))


def _two_faults(seed: int) -> SimConfig:
    return SimConfig(
        seed=seed,
        faults=(
            FaultSpec("partner_outage", _at(2, 10), _at(2, 13), {"partner": "26201"}),
            FaultSpec("apn_outage", _at(2, 11.5), _at(2, 14), {"apn": "cold.chain"}),
        ),
    )


def _per_sim(seed: int) -> SimConfig:
    return SimConfig(
        seed=seed,
        faults=(
            FaultSpec("data_cap", _at(2, 9), _at(2, 13), sims=5),
            FaultSpec("wrong_apn", _at(2, 15), _at(2, 18), sims=5),
            FaultSpec("session_flapping", _at(3, 2), _at(3, 5), sims=5),
        ),
    )


SCENARIOS: Mapping[str, Callable[[int], SimConfig]] = {
    "fault_free_week": _fault_free_week,
    "partner_outage": _partner_outage,
    "partial_blackhole": _partial_blackhole,
    "apn_outage": _apn_outage,
    "country_outage": _country_outage,
    "apn_country": _apn_country,
    "two_faults": _two_faults,
    "per_sim": _per_sim,
}


# ------------------------------------------------------------------------- output and CLI


def write_scenario(config: SimConfig, out_dir: Path) -> dict[str, Path]:
    """Generate the whole run into ``out_dir``: inventory.csv, records.ndjson, truth.json."""
    out_dir.mkdir(parents=True, exist_ok=True)
    sim = FleetSimulator(config)
    paths = {
        "inventory": out_dir / "inventory.csv",
        "records": out_dir / "records.ndjson",
        "truth": out_dir / "truth.json",
    }
    paths["inventory"].write_text(sim.inventory_csv(), encoding="utf-8")
    with paths["records"].open("wb") as fh:
        step = DAY
        t = config.start
        while True:
            t += step
            lines = sim.advance(t)
            if lines:
                fh.write(b"\n".join(lines))
                fh.write(b"\n")
            if t > config.start + config.days * DAY + DAY:
                break
    paths["truth"].write_bytes(orjson.dumps(sim.truth(), option=orjson.OPT_INDENT_2) + b"\n")
    return paths


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_UNITS = {"": 1.0, "s": 1.0, "m": MINUTE, "h": HOUR, "d": DAY}


def parse_duration(text: str) -> float:
    """``90s``, ``15m``, ``3h``, ``1.5d`` (plain numbers are seconds)."""
    m = _DURATION.match(text.strip())
    if m is None:
        raise ValueError(f"bad duration {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_fault(text: str) -> FaultSpec:
    """``kind:key=value,...``; keys start, end or duration, fraction, steer_fraction, sims,
    anything else is a dimension (partner, apn, country)."""
    kind, _, rest = text.partition(":")
    params: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"fault parameter without '=': {part!r}")
        params[key.strip()] = value.strip()
    if "start" not in params:
        raise ValueError("fault needs start=RFC3339")
    start = parse_rfc3339(params.pop("start"))
    if "end" in params:
        end = parse_rfc3339(params.pop("end"))
        params.pop("duration", None)
    else:
        end = start + parse_duration(params.pop("duration", "3h"))
    kind = kind.strip()
    default_fraction = "0.3" if kind == "partial_blackhole" else "1.0"
    fraction = float(params.pop("fraction", default_fraction))
    steer = float(params.pop("steer_fraction", "0.3"))
    sims = int(params.pop("sims", "0"))
    return FaultSpec(kind, start, end, params, fraction, steer, sims)


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="simwatch simulate", description="Generate a synthetic IoT SIM fleet scenario."
    )
    p.add_argument("--out", type=Path, help="output directory")
    p.add_argument("--scenario", help="named preset (see --list-scenarios)")
    p.add_argument("--sims", type=int, help="number of SIMs (default 2000)")
    p.add_argument("--days", type=float, help="days to simulate (default 5)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--start", help="RFC 3339 start (default 2026-11-02T00:00:00Z)")
    p.add_argument(
        "--fault",
        action="append",
        default=[],
        help='extra fault "kind:key=value,...", e.g. '
        '"partner_outage:partner=26202,start=2026-11-04T10:00:00Z,duration=3h"',
    )
    p.add_argument("--list-scenarios", action="store_true", help="list presets and exit")
    return p


def main(argv: Sequence[str]) -> int:
    """The ``simwatch simulate`` command line."""
    parser = _build_parser()
    args = parser.parse_args(list(argv))
    if args.list_scenarios:
        for name, make in SCENARIOS.items():
            cfg = make(args.seed)
            kinds = ", ".join(f.kind for f in cfg.faults) or "no faults"
            print(f"{name:20s} {cfg.days:g} days, {kinds}")
        return 0
    if args.out is None:
        parser.print_usage(sys.stderr)
        print("simwatch simulate: --out is required", file=sys.stderr)
        return 2
    if args.scenario is not None and args.scenario not in SCENARIOS:
        print(
            f"simwatch simulate: unknown scenario {args.scenario!r}; known: {', '.join(SCENARIOS)}",
            file=sys.stderr,
        )
        return 2
    try:
        if args.scenario is not None:
            config = SCENARIOS[args.scenario](args.seed)
        else:
            config = SimConfig(seed=args.seed)
        if args.start is not None:
            start = parse_rfc3339(args.start)
            shift = start - config.start
            moved = tuple(
                replace(f, start=f.start + shift, end=f.end + shift) for f in config.faults
            )
            config = replace(config, start=start, faults=moved)
        if args.sims is not None:
            config = replace(config, sims=args.sims)
        if args.days is not None:
            config = replace(config, days=args.days)
        extra = tuple(parse_fault(text) for text in args.fault)
        config = replace(config, faults=config.faults + extra)
    except ValueError as exc:
        print(f"simwatch simulate: {exc}", file=sys.stderr)
        return 2
    paths = write_scenario(config, args.out)
    truth = orjson.loads(paths["truth"].read_bytes())
    stats = truth["stats"]
    print(
        f"{config.sims} SIMs, {config.days:g} days from {format_rfc3339(config.start)}: "
        f"{stats['records']} records ({stats['late']} late, {stats['duplicates']} duplicated)"
    )
    for f in truth["faults"]:
        print(f"  fault {f['kind']} {f['dims']} {f['start']}..{f['end']}: {len(f['iccids'])} SIMs")
    for key, path in paths.items():
        print(f"  {key}: {path}")
    return 0
