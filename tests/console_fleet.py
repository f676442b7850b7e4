"""The fleet the console tests look at (unit tests and the real browser alike).

100 SIMs report every 15 minutes for a day (FORMATS.md usage records through the real
decoder, evaluated every 5 minutes): SIMs 0-79 on KPN (NL, 20408), SIMs 80-99 on
Vodafone (DE, 26202); even SIMs belong to customer acme, odd ones to beta. Then the KPN
SIMs stop for two hours: one group incident (``inc-0001``) with 80 failing SIMs, two
pages of the console's 50. SIM 99 sends authentication failures on APN ``internet``
(its profile allows ``meters.acme``) and stops: its diagnosis says so. SIM 98 skips two
hours at noon of the first day and comes back. SIM 0 has IMSI
``204080000000000`` and SIM 1 MSISDN ``31612345678`` in the inventory.

Every applied record and each cycle's group figures go to a real ``HistoryStore``, as
the daemon's history writer does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from fleet import DAY, T0, Feed, iccid, inventory_row, new_engine

from simwatch.core.timeutil import format_rfc3339
from simwatch.http.console_views import series_points
from simwatch.shell.history import HistoryStore, row_of

if TYPE_CHECKING:
    from pathlib import Path

    from simwatch.core.engine import Engine
    from simwatch.core.records import Record

SIMS: Final = [iccid(k) for k in range(100)]
KPN: Final = SIMS[:80]
WRONG_APN: Final = SIMS[99]
GAPPY: Final = 98  # silent for two hours at noon of the first day, then back
IMSI: Final = "204080000000000"
MSISDN: Final = "31612345678"
OUTAGE: Final = T0 + DAY
NOW: Final = OUTAGE + 2 * 3600
TOKEN: Final = "console-test-token"


def network(k: int) -> dict[str, object]:
    return {"mcc": "204", "mnc": "08"} if k < 80 else {"mcc": "262", "mnc": "02"}


def build(history_file: Path) -> tuple[Engine, HistoryStore]:
    engine = new_engine(())
    engine.load_inventory(
        inventory_row(
            sim,
            customer="acme" if k % 2 == 0 else "beta",
            imsi=IMSI if k == 0 else None,
            extra={"msisdn": MSISDN} if k == 1 else {},
        )
        for k, sim in enumerate(SIMS)
    )
    store = HistoryStore(history_file, days=2)
    ids = [("imsi", IMSI, SIMS[0]), ("msisdn", MSISDN, SIMS[1])]
    store.write_ids(ids)
    feed = Feed(engine)
    records: list[Record] = []
    t = T0
    while t < NOW:
        if (t - T0) % 900 == 0:
            for k, sim in enumerate(SIMS):
                silent = (k < 80 and t >= OUTAGE) or (k == 99 and t >= OUTAGE)
                silent |= k == GAPPY and T0 + 12 * 3600 <= t < T0 + 14 * 3600
                if not silent:
                    records.append(feed.usage(sim, t + k, **network(k)))
        if t >= OUTAGE and (t - OUTAGE) % 900 == 300:
            records.append(
                feed.event(
                    WRONG_APN,
                    t,
                    "auth_failure",
                    apn="internet",
                    cause="apn_not_allowed",
                    **network(99),
                )
            )
        if t >= T0 + 3 * 3600:
            engine.evaluate(t + 120)
            store.write([row_of(r) for r in records], series_points(engine))
            records = []
        t += 300
    engine.evaluate(NOW)
    store.write([row_of(r) for r in records], series_points(engine))
    return engine, store


def when(ts: float) -> str:
    return format_rfc3339(ts)
