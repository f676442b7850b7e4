"""The console's page times at fleet scale (target: every page under 200 ms at 1M SIMs).

    python bench/bench_console.py --sims 1000000

Builds an engine of N SIMs (an inventory; partner ``i % 40``, APN ``i % 12``), applies
``--rounds`` rounds of usage records 15 minutes apart (records built directly, not
decoded: the decoder is bench_decode's subject), the SIMs of one partner (1/40 of the
fleet) silent in the last four, evaluating every 5 minutes from the fourth round on, so
that one group incident is open, as in an outage. Every applied record and each cycle's
group figures go to a real history store (sqlite, in a temp directory), as
``simwatch run`` writes them.

Then serves the real app (``make_app`` with the console) on 127.0.0.1, signs in, and
times each page ``--repeats`` times from request to body read (client and server on one
event loop, one core: the time is the server's plus a loopback round trip): the fleet,
the incident, its second page of SIMs, a SIM of the incident, the search of a SIM by the
other form of its ICCID (answered by a redirect), the maintenance windows (one weekly
window), the sign-in form. Prints the median
and the worst per page, and the build figures.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer
from benchfleet import APNS, PARTNERS, iccid, inventory

from simwatch.core.engine import Engine, EngineConfig
from simwatch.core.iccid import luhn_check_digit
from simwatch.core.records import Record
from simwatch.http.app import make_app
from simwatch.http.console import Sessions
from simwatch.http.console_views import series_points
from simwatch.shell.history import HistoryStore, row_of
from simwatch.shell.maintenance import MaintenanceStore
from simwatch.shell.settings import HttpSettings

START = 1_795_000_000.0  # a fixed time (2026-11-18): the same fleet on any date
TOKEN = "bench-token"  # noqa: S105 - the bench's own server on loopback
WRITE_BATCH = 50_000


def build(n: int, rounds: int, store: HistoryStore) -> tuple[Engine, float, dict[str, float]]:
    engine = Engine(replace(EngineConfig(), warmup_s=0.0, initial_capacity=n))
    engine.load_inventory(inventory(n))
    sims = [iccid(i) for i in range(n)]
    network = [PARTNERS[i % len(PARTNERS)] for i in range(n)]
    apns = [APNS[i % len(APNS)] for i in range(n)]
    ingest_s = write_s = eval_s = 0.0
    now = START
    for k in range(rounds):
        end = START + k * 900.0
        outage = k >= rounds - 4
        began = time.perf_counter()
        rows = []
        for i in range(n):
            if outage and i % len(PARTNERS) == 0:
                continue
            mcc, mnc = network[i]
            record = Record(
                kind="usage",
                record_id=f"u-{k}-{i}",
                iccid=sims[i],
                ts=end + i % 600,
                start=end - 900,
                bytes_up=1200,
                bytes_down=340,
                apn=apns[i],
                mcc=mcc,
                mnc=mnc,
                rat="LTE-M",
            )
            engine.ingest_record(record)
            rows.append(row_of(record))
        ingest_s += time.perf_counter() - began
        began = time.perf_counter()
        for lo in range(0, len(rows), WRITE_BATCH):
            store.write(rows[lo : lo + WRITE_BATCH])
        write_s += time.perf_counter() - began
        if k >= 3:
            for step in range(3):
                now = end + 600 + step * 300
                began = time.perf_counter()
                engine.evaluate(now)
                eval_s += time.perf_counter() - began
                store.write([], series_points(engine))
    return engine, now, {"ingest_s": ingest_s, "history_write_s": write_s, "evaluate_s": eval_s}


async def time_pages(engine: Engine, store: HistoryStore, now: float, repeats: int) -> None:
    windows = MaintenanceStore([], None)
    window = {"name": "Sunday works", "start": "2026-11-15T02:00", "timezone": "Europe/Paris"}
    windows.add({**window, "duration_s": 7200, "rrule": "FREQ=WEEKLY;BYDAY=SU"})
    app = make_app(
        engine,
        now=lambda: now,
        settings=HttpSettings(),
        tokens=frozenset({TOKEN}),
        console=Sessions(3600.0, 10, lambda: now),
        history=store,
        maintenance=windows,
    )
    async with TestClient(TestServer(app)) as client:
        signed = await client.post("/ui/signin", data={"token": TOKEN}, allow_redirects=False)
        assert signed.status == 303, await signed.text()
        opened = [i for i in engine.incidents.all() if i.kind == "group" and i.resolved_at is None]
        assert opened, "no incident opened: the bench fleet is wrong"
        incident = opened[0].id
        first = await (await client.get(f"/ui/incidents/{incident}")).text()
        cursor = re.search(r'href="(/ui/incidents/[^"]+\?cursor=[^"]+)" id="next-page"', first)
        sim = re.search(r'href="/ui/sims/(\d+)" class="sim-link"', first)
        assert cursor, "the incident page has no second page"
        assert sim, "the incident page lists no SIMs"
        pages = {
            "fleet /ui/": "/ui/",
            "incident": f"/ui/incidents/{incident}",
            "incident, page 2": cursor.group(1).replace("&amp;", "&"),
            "SIM": f"/ui/sims/{sim.group(1)}",
            "search (20-digit ICCID)": f"/ui/sims?q={sim.group(1)}{luhn_check_digit(sim.group(1))}",
            "maintenance windows": "/ui/maintenance",
            "sign-in form": "/ui/signin",
        }
        print(f"{len(engine.state):,} SIMs, incident {incident}: {opened[0].dims} "
              f"({round(opened[0].affected):,} SIMs failing)")  # fmt: skip
        print(f"{'page':<26}{'median ms':>10}{'max ms':>9}{'bytes':>9}")
        for name, url in pages.items():
            times = []
            size = 0
            for _ in range(repeats):
                began = time.perf_counter()
                response = await client.get(url, allow_redirects=False)
                body = await response.read()
                times.append((time.perf_counter() - began) * 1e3)
                assert response.status in (200, 303), (url, response.status)
                size = len(body)
            print(f"{name:<26}{statistics.median(times):>10.1f}{max(times):>9.1f}{size:>9}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sims", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = HistoryStore(Path(tmp) / "history.sqlite", days=2)
        began = time.perf_counter()
        engine, now, figures = build(args.sims, args.rounds, store)
        print(
            f"built in {time.perf_counter() - began:.0f} s: "
            + ", ".join(f"{k} {v:.1f}" for k, v in figures.items())
        )
        asyncio.run(time_pages(engine, store, now, args.repeats))
        store.close()


if __name__ == "__main__":
    main()
