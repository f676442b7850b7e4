"""Test helpers shared by test modules: the common fleet constants, a fresh engine,
inventory rows and FORMATS.md records fed to a real engine through the real decoder
(import as ``from fleet import ICCIDS, T0, Feed, inventory_row, new_engine``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar

import numpy as np
import orjson

from simwatch.core.engine import Engine, EngineConfig
from simwatch.core.inventory import InventoryRow
from simwatch.core.records import Record, RecordDecoder
from simwatch.core.timeutil import format_rfc3339

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

T0: Final = 1_794_960_000.0  # 2026-11-18T00:00:00Z, a UTC midnight: the tests' fleet starts
DAY: Final = 86_400.0


def iccid(k: int) -> str:
    """The ``k``-th ICCID of the test fleet (19 digits, ``89314400000000`` + 5 digits)."""
    return f"89314400000000{k:05d}"


ICCIDS: Final = tuple(iccid(k) for k in range(40))  # slice it for a smaller fleet


def new_engine(iccids: Iterable[str] = (), **config: Any) -> Engine:
    """A fresh engine without warm-up (``config`` overrides ``EngineConfig`` fields) and,
    given ``iccids``, an inventory of an active row (``inventory_row``) for each."""
    engine = Engine(replace(EngineConfig(), **{"warmup_s": 0.0, **config}))
    rows = [inventory_row(i) for i in iccids]
    if rows:
        engine.load_inventory(rows)
    return engine


def inventory_row(iccid: str, **kw: object) -> InventoryRow:
    """An active inventory row of customer acme on APN meters.acme; ``kw`` overrides."""
    base: dict[str, object] = {
        "iccid": iccid,
        "imsi": None,
        "customer": "acme",
        "apns": ("meters.acme",),
        "plan": None,
        "data_cap_bytes": None,
        "status": "active",
        "tags": frozenset(),
        "extra": {},
    }
    base.update(kw)
    return InventoryRow(**base)  # type: ignore[arg-type]


class Feed:
    """Builds FORMATS.md records and sends them through the real decoder into the engine.

    ``now`` is the decoder's clock (records later than it are rejected); by default a
    minute after each record's own time.
    """

    def __init__(self, engine: Engine, now: float | None = None) -> None:
        self.engine = engine
        self.decoder = RecordDecoder()
        self.now = now
        self.n = 0

    def send(self, obj: dict[str, object], at: float) -> Record:
        self.n += 1
        obj.setdefault("record_id", f"r-{self.n}")
        now = self.now if self.now is not None else at + 60.0
        result = self.decoder.decode_line(orjson.dumps(obj), now)
        assert isinstance(result, Record), result
        self.engine.ingest_record(result)
        return result

    def usage(self, iccid: str, end: float, **kw: object) -> Record:
        obj: dict[str, object] = {
            "kind": "usage",
            "iccid": iccid,
            "start": format_rfc3339(end - 60),
            "end": format_rfc3339(end),
            "bytes_up": 1200,
            "bytes_down": 300,
            "apn": "meters.acme",
            "mcc": "262",
            "mnc": "02",
            "rat": "LTE-M",
        }
        obj.update(kw)
        return self.send(obj, end)

    def event(self, iccid: str, ts: float, kind: str, **kw: object) -> Record:
        obj: dict[str, object] = {"kind": "event", "iccid": iccid, "ts": format_rfc3339(ts)}
        obj.update(kw, type=kind)
        return self.send(obj, ts)

    def session(self, iccid: str, ts: float, status: str, **kw: object) -> Record:
        obj: dict[str, object] = {
            "kind": "session",
            "iccid": iccid,
            "ts": format_rfc3339(ts),
            "session_id": f"s-{self.n}",
            "status": status,
        }
        obj.update(kw)
        return self.send(obj, ts)


def two_partner_period(k: int) -> float:
    """The two-partner fleet of the recovery tests (tests/test_recovery.py,
    tests/test_cluster_parity.py): even SIMs (partner 26202) report every 5 minutes or
    hourly, odd ones (26201) every 30 minutes."""
    if k % 2:
        return 1800.0
    return 300.0 if k % 4 == 0 else 3600.0


def two_partner_mnc(k: int) -> str:
    """The MNC of SIM ``k`` of that fleet: 02 (partner 26202) for even SIMs, else 01."""
    return "02" if k % 2 == 0 else "01"


R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


class Evaluates(Protocol[R_co]):
    """An engine, or anything evaluated like one (a cluster's twin of engines)."""

    def evaluate(self, now: float) -> R_co: ...


def two_partner_history(
    target: Evaluates[object], feed: Feed, sims: int, history_s: float
) -> tuple[float, np.ndarray]:
    """``history_s`` of that fleet's reports from ``T0`` (each SIM at a random phase of
    its period), evaluated every 10 minutes; returns when the history ends and each
    SIM's next report time."""
    offsets = np.random.default_rng(3).uniform(0, 1, sims)
    period = two_partner_period
    events = sorted(
        (T0 + offsets[k] * period(k) + j * period(k), k)
        for k in range(sims)
        for j in range(int(history_s // period(k)))
    )
    nxt = T0 + offsets * np.array([period(k) for k in range(sims)])
    evaluate_at = T0 + 600.0
    for ts, k in events:
        while evaluate_at <= ts:
            target.evaluate(evaluate_at)
            evaluate_at += 600.0
        feed.usage(iccid(k), ts, mnc=two_partner_mnc(k))
        nxt[k] = ts + period(k)
    return T0 + history_s, nxt


def two_partner_run(
    target: Evaluates[R],
    feed: Feed,
    nxt: np.ndarray,
    start: float,
    end: float,
    *,
    up: Callable[[int, float], bool],
) -> list[R]:
    """Evaluate every minute in (start, end]; the SIMs for which ``up(k, t)`` send
    their reports when due (``nxt``, advanced). Returns each cycle's result."""
    results: list[R] = []
    t = start
    while t < end:
        t += 60.0
        for k in range(len(nxt)):
            while nxt[k] <= t:
                if up(k, nxt[k]):
                    feed.usage(iccid(k), float(nxt[k]), mnc=two_partner_mnc(k))
                nxt[k] += two_partner_period(k)
        results.append(target.evaluate(t))
    return results


def daily_sessions(feed: Feed, sims: Sequence[str], days: int = 6) -> float:
    """Session-level history: SIMs ``0..39`` of ``sims`` in DE (26202), the rest in FR
    (20801), a session a day each (a usage record at its close, a scheduled reset) at
    hours spread over the day, for ``days`` days; returns the last session's start."""
    rng = np.random.default_rng(5)
    plan = []
    for k, sim in enumerate(sims):
        mcc, net = ("262", "02") if k < 40 else ("208", "01")
        first = T0 + rng.uniform(0, DAY)
        plan += [(first + d * DAY, sim, mcc, net, d) for d in range(days)]
    for ts, sim, mcc, net, d in sorted(plan):
        if d:
            feed.send(
                {
                    "kind": "usage",
                    "iccid": sim,
                    "start": format_rfc3339(ts - DAY + 5),
                    "end": format_rfc3339(ts),
                    "bytes_up": 40_000,
                    "bytes_down": 9_000,
                    "apn": "meters.acme",
                    "mcc": mcc,
                    "mnc": net,
                },
                ts,
            )
            feed.session(sim, ts, "ended", end_cause="scheduled_reset")
        feed.session(sim, ts + 5, "started", apn="meters.acme", mcc=mcc, mnc=net)
    return float(max(p[0] for p in plan))
