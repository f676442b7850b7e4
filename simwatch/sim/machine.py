"""The devices' state machine: what a SIM does with each happening (reports, sessions,
resets, reselections, detaches, coverage gaps, deaths, faults), writing its records.

``DeviceMachine`` sits between the record writer and the fleet simulator: it owns the
partner tables, the fault bookkeeping of the ground truth and the happening sequence.
"""

from __future__ import annotations

import bisect
import heapq
import math
from itertools import count
from typing import TYPE_CHECKING

from simwatch.sim.catalogue import COUNTRIES, DAY, HOUR, MINUTE, all_partners
from simwatch.sim.device import (
    APN_DROP,
    CONNECT,
    DEATH,
    DETACH,
    FAULT_END,
    FAULT_START,
    FLAP,
    GAP_END,
    GAP_START,
    GAP_TIMEOUT,
    INTERIM,
    REATTACH,
    RESELECT,
    RESET,
    SEQ_BASE,
    STEER,
    WATCHDOG_FAILS,
    next_month_start,
)
from simwatch.sim.faults import CONNECT_BLOCKING, GROUP_KINDS, SILENCING
from simwatch.sim.records import RecordWriter

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from simwatch.sim.config import SimConfig
    from simwatch.sim.device import Device, Happening


class DeviceMachine(RecordWriter):
    """Runs each device's happenings in time order (the fleet simulator feeds them)."""

    def __init__(self, config: SimConfig, *, shift_s: float = 0.0) -> None:
        super().__init__(config, shift_s=shift_s)
        self._end = config.start + config.days * DAY
        self._partner_list = all_partners()
        self._partner_code = [p.code for p in self._partner_list]
        self._country_partners: dict[str, list[int]] = {}
        self._country_weights: dict[str, list[float]] = {}
        for i, p in enumerate(self._partner_list):
            self._country_partners.setdefault(p.country, []).append(i)
        for c in COUNTRIES:
            self._country_weights[c.code] = list(c.partner_weights)
        self._session_seq = count(1)
        self._hseq = count(SEQ_BASE)
        self._fault_iccids: list[set[str]] = [set() for _ in config.faults]
        self._steered: list[set[str]] = [set() for _ in config.faults]
        self._matched: list[int] = [0 for _ in config.faults]

    def end_at_horizon(self) -> None:
        """Deliver no record of event time past the run's end (``start + days``): a
        scored run's world ends there for every SIM. Without it, reports due before the
        end but sent a little after it (their jitter) carried the replay's clock past the
        end while the other SIMs' data had stopped, and a 50,000-SIM fleet's one-minute
        trackers all went late in the run's last minutes. A live window (the simulator
        source) does not cut: the next window goes on from there."""
        self._horizon = self._end

    def _new_session_id(self) -> str:
        return f"{next(self._session_seq):08x}"

    def _set_partner(self, sim: Device, p: int) -> None:
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

    def _other_partner(self, sim: Device, t: float) -> int | None:
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

    def _matches(self, sim: Device, dims: Mapping[str, str]) -> bool:
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

    def _run(
        self,
        sim: Device,
        h: list[Happening],
        c1: float,
        reports: tuple[list[float], list[int], list[int], int, int] = ([], [], [], 0, 0),
    ) -> None:
        """Run one SIM's happenings of a chunk in time order: the heap ``h`` and its
        reports of the chunk, ``reports`` = (times, bytes up, bytes down, lo, hi), whose
        rows [lo, hi) are the SIM's, sorted by time.

        The same order as one heap holding both (a report is the happening
        ``(t, index, REPORT, up, down)`` and every other one's sequence number is above
        ``SEQ_BASE``): a report goes first while its time is at most the heap's next.
        Reports cannot change the heap but by a watchdog's reconnect, so the reports
        before the heap's next happening go as one run (``_report_run``)."""
        rnd = self._rnd
        end = self._end
        hs = self._hseq
        heappop = heapq.heappop
        heappush = heapq.heappush
        times, ups, downs, i, hi = reports
        bisect_right = bisect.bisect_right
        inf = math.inf

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
            push(t + delay, CONNECT, sim.token, attach)

        while True:
            if i < hi:
                nxt = h[0][0] if h else inf
                if times[i] <= nxt:
                    if sim.sending:  # the reports up to the heap's next happening
                        k = bisect_right(times, nxt, i, hi)
                        self._report_run(sim, (times, ups, downs), i, k)
                        i = k
                        continue
                    t = times[i]
                    a = ups[i]
                    b = downs[i]
                    i += 1
                    if not sim.blackholed:  # a black hole swallows data the device thinks it sent
                        sim.missed_up += a
                        sim.missed_down += b
                        if sim.missed_since is None:
                            sim.missed_since = t - sim.window
                    elif sim.watchdog and sim.sess_id is not None and sim.visible:
                        # Its firmware gives up on a session after two unanswered sends and
                        # opens a new one: session churn with next to no volume.
                        sim.fails += 1
                        if sim.fails >= WATCHDOG_FAILS:
                            sim.fails = 0
                            self._end_session(sim, t, "normal")
                            connect_later(t, 5.0 + rnd.random() * 55.0, 0)
                    continue
            if not h:
                return
            t, _, code, a, b = heappop(h)
            if sim.dead:
                return
            if code == INTERIM:
                if sim.visible and sim.sess_id is not None and not sim.detached:
                    self._session(sim, t, "interim")
            elif code == RESET:
                if (
                    sim.visible
                    and sim.sess_id is not None
                    and not sim.detached
                    and a == sim.partner
                ):
                    self._end_session(sim, t, "scheduled_reset")
                    connect_later(t, 1.0 + rnd.random() * 4.0, 0)
            elif code == CONNECT:
                if a == sim.token:
                    self._connect(sim, t, attach=bool(b), push=push)
            elif code == RESELECT:
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
                            push(t + (1.0 + 11.0 * rnd.random()) * HOUR, RESELECT, sim.home, 0)
            elif code == DETACH:
                if sim.visible and not sim.faults and not sim.detached:
                    self._event(sim, t, "detach", None, None)
                    self._end_session(sim, t + 0.5, "normal")
                    sim.detached = True
                    sim.refresh()
                    push(t + 60.0 + rnd.random() * 1140.0, REATTACH)
            elif code == REATTACH:
                sim.detached = False
                sim.refresh()
                sim.token += 1
                self._connect(sim, t, attach=True, push=push)
            elif code == GAP_START:
                sim.in_gap = True
                sim.refresh()
                push(t + min(1800.0, (b - t) / 2), GAP_TIMEOUT)
            elif code == GAP_TIMEOUT:
                if sim.in_gap and sim.sess_id is not None:
                    # The network closes the idle session; the record does not need the device.
                    self._end_session(sim, t, "idle_timeout")
            elif code == GAP_END:
                sim.in_gap = False
                sim.refresh()
                if sim.sess_id is None:
                    connect_later(t, rnd.random() * 30.0, 1)
            elif code == DEATH:
                sim.dead = True
                sim.refresh()
                sim.carry.clear()
                return
            elif code == FAULT_START:
                self._fault_start(sim, t, a, push, connect_later)
            elif code == FAULT_END:
                kind = sim.faults.pop(a, None)
                if kind is not None:
                    sim.refresh()
                    if kind in SILENCING:
                        if sim.visible and sim.sess_id is None and not sim.detached:
                            connect_later(t, 30.0 + rnd.random() * 570.0, 1)
                    elif kind in CONNECT_BLOCKING and sim.sess_id is None and not sim.detached:
                        connect_later(t, 10.0 + rnd.random() * 290.0, 0)
            elif code == STEER:
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
            elif code == APN_DROP:
                if a in sim.faults and sim.visible:
                    self._end_session(sim, t, "network_failure")
                    connect_later(t, 20.0 + rnd.random() * 70.0, 0)
            elif code == FLAP and a in sim.faults:
                if sim.visible and sim.sess_id is not None and not sim.detached:
                    self._end_session(sim, t, "network_failure")
                    connect_later(t, 5.0 + rnd.random() * 55.0, 0)
                push(t + (6.0 + 14.0 * rnd.random()) * MINUTE, FLAP, a)

    def _connect(
        self, sim: Device, t: float, *, attach: bool, push: Callable[[float, int, int, int], None]
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
        push(t + retry, CONNECT, sim.token, 0)

    def _fault_start(
        self,
        sim: Device,
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
        if kind in SILENCING:
            sim.sess_id = None  # the session dies with the network; no record reaches us
            sim.r3_up = sim.r3_down = 0
            if (
                kind == "partner_outage"
                and rnd.random() < f.steer_fraction
                and len(self._country_partners[sim.country]) > 1
            ):
                push(t + (2.0 + 8.0 * rnd.random()) * MINUTE, STEER, fi, 0)
        elif kind in {"apn_outage", "apn_country", "apn_partner"}:
            push(t + rnd.random() * 600.0, APN_DROP, fi, 0)
        elif kind == "data_cap":
            cap = sim.card.cap_bytes or 0
            if t >= sim.month_end:
                sim.month_end = next_month_start(t)
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
            push(t + (1.0 + 14.0 * rnd.random()) * MINUTE, FLAP, fi, 0)
        sim.refresh()
