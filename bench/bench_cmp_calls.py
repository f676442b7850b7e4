"""Calls per poll of the per-SIM platforms (Cisco, Soracom), against the test fakes.

    python bench/bench_cmp_calls.py [SIMS]     (default 10000)

Polls a fleet of SIMS SIMs twice through CmpSource (first poll: SIM discovery from
scratch; second: steady state) and prints the HTTP calls each poll made.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))  # the fake platforms

from cmp_fakes import FakeTime, serve_handler
from cmp_fakes_more import FakeCisco, FakeSoracom

from simwatch.core.timeutil import parse_rfc3339
from simwatch.shell.settings import HttpSourceSettings
from simwatch.sources.cmp.source import CmpSource

if TYPE_CHECKING:
    from collections.abc import Sequence

T0 = parse_rfc3339("2026-11-20T12:00:00Z")


async def _polls(source: CmpSource, calls: Sequence[object], label: str, sims: int) -> None:
    for name in ("first poll (discovery)", "steady poll"):
        before = len(calls)
        started = time.perf_counter()
        await source.poll_once(asyncio.Queue())
        took = time.perf_counter() - started
        print(f"{label} {sims} SIMs, {name}: {len(calls) - before} calls ({took:.1f} s locally)")


async def cisco(n: int) -> None:
    fake = FakeCisco(delay=0.0)
    sims = [f"8988216716{i:09d}" for i in range(n)]
    fake.devices = dict.fromkeys(sims, "2026-01-01T00:00:00+00:00")
    fake.session = {s: {"dateSessionStarted": None} for s in sims}
    fake.ctd = {s: {"ctdDataUsage": 0, "ctdSessionCount": 0} for s in sims}
    async with serve_handler(fake.handle) as url:
        auth = {"kind": "basic", "username": fake.user, "password": fake.api_key}
        settings = HttpSourceSettings.model_validate(
            {"name": "c", "adapter": "cisco", "base_url": url, "auth": auth}
            | {"rate_limit_per_s": 1e6}
        )
        ftime = FakeTime(T0)
        await _polls(
            CmpSource(settings, clock=ftime.clock, sleep=ftime.sleep), fake.calls, "cisco", n
        )
        assert fake.overlaps == 0


async def soracom(n: int) -> None:
    fake = FakeSoracom()
    fake.sims = [f"8942310000{i:09d}" for i in range(n)]
    async with serve_handler(fake.handle) as url:
        auth = {"kind": "soracom", "auth_key_id": fake.auth_key_id, "auth_key": fake.auth_key}
        settings = HttpSourceSettings.model_validate(
            {"name": "s", "adapter": "soracom", "base_url": url, "auth": auth}
            | {"rate_limit_per_s": 1e6, "page_size": 100}
        )
        ftime = FakeTime(T0)
        await _polls(
            CmpSource(settings, clock=ftime.clock, sleep=ftime.sleep), fake.calls, "soracom", n
        )


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    asyncio.run(cisco(n))
    asyncio.run(soracom(n))


if __name__ == "__main__":
    main()
