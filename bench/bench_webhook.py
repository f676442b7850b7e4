"""Push ingest throughput: records/s through one daemon, Data Streamer bulk mode.

    python bench/bench_webhook.py --records 200000 --batch 1000 --concurrency 4

The server (this process) runs the real daemon (``simwatch.service.daemon.Daemon``) with
one ``[[sources.webhook]]`` source of format ``emnify`` (checkpoints on, its journal in a
temporary directory) and the real app (``simwatch.http.app.make_app``) on 127.0.0.1,
exactly as ``simwatch run`` wires them. The load generator is a separate process (this
script with ``--client``): it builds bulk bodies first, JSON arrays of ``--batch`` usage
records in the emnify Data Streamer shape (PLATFORMS.md 1.4: ``id``, ``traffic_type``
5 Data, ``volume {rx, tx, total}`` in MB, ``start_timestamp`` / ``end_timestamp``,
``sim {iccid}``, ``operator {mnc, country {mcc}}``) for random SIMs of a 10,000-SIM
fleet, then POSTs them with a bearer token over ``--concurrency`` connections.

Every 200 means the batch was mapped and fsynced to the journal; the figure is end to
end: from the client's first POST until ingest has applied the last record (the
source's ``received`` count), so journaling, the feed and the engine's ingest are all in
it. Also printed: the rate at which the POSTs were answered (accepted), and the p50/p99
latency of one POST.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

from simwatch.http.app import make_app
from simwatch.service.daemon import Daemon
from simwatch.service.run import build_sources, wire_webhooks
from simwatch.shell.push import PushReceiver
from simwatch.shell.settings import CheckpointSettings, EngineSettings, HttpSettings, Settings
from simwatch.shell.settings.sources import SourcesSettings, WebhookSourceSettings

if TYPE_CHECKING:
    from simwatch.shell.source_contract import SourceStats

TOKEN = "bench-webhook-token"  # noqa: S105 - a throwaway token for a loopback benchmark
SIMS = 10_000


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(t))


def bodies(records: int, batch: int, seed: int, fmt: str = "emnify") -> list[bytes]:
    """Bulk bodies of emnify Data Streamer usage records, ending a little before now
    (``fmt`` "records": the same usage as FORMATS.md records)."""
    rng = random.Random(seed)
    now = time.time() - 120
    out: list[bytes] = []
    uid = 1
    for start in range(0, records, batch):
        items = []
        for _ in range(min(batch, records - start)):
            sim = rng.randrange(SIMS)
            end = now - rng.uniform(0, 60)
            tx, rx = rng.randint(0, 200_000) / 1e6, rng.randint(0, 500_000) / 1e6
            items.append(
                {
                    "id": uid,
                    "cost": 0.01,
                    "traffic_type": {"id": 5, "description": "Data"},
                    "volume": {"total": round(tx + rx, 6), "rx": rx, "tx": tx},
                    "start_timestamp": _iso(end - 45),
                    "end_timestamp": _iso(end),
                    "sim": {"id": sim, "iccid": f"8988303{sim:012d}"},
                    "operator": {"id": 2, "mnc": "02", "country": {"id": 74, "mcc": "262"}},
                    "endpoint": {"id": sim, "name": f"device-{sim}"},
                    "session_id": f"s-{sim}",
                }
            )
            uid += 1
        if fmt == "records":
            items = [_record(item) for item in items]
        out.append(orjson.dumps(items))
    return out


def _record(item: dict[str, object]) -> dict[str, object]:
    volume: dict[str, float] = item["volume"]  # type: ignore[assignment]
    sim: dict[str, str] = item["sim"]  # type: ignore[assignment]
    return {
        "kind": "usage",
        "record_id": f"u-{item['id']}",
        "iccid": sim["iccid"],
        "start": item["start_timestamp"],
        "end": item["end_timestamp"],
        "bytes_up": round(volume["tx"] * 1e6),
        "bytes_down": round(volume["rx"] * 1e6),
        "mcc": "262",
        "mnc": "02",
    }


async def client(args: argparse.Namespace) -> None:
    payloads = bodies(args.records, args.batch, args.seed, args.format)
    url = f"http://127.0.0.1:{args.port}/api/v1/ingest/bench"
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in payloads:
        queue.put_nowait(body)

    async def worker(session: ClientSession) -> None:
        while not queue.empty():
            body = queue.get_nowait()
            while True:
                sent = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    statuses[response.status] = statuses.get(response.status, 0) + 1
                    if response.status == 200:
                        latencies.append(time.perf_counter() - sent)
                        break
                    await asyncio.sleep(float(response.headers.get("Retry-After", "1")))

    connector = TCPConnector(limit=args.concurrency)
    async with ClientSession(connector=connector, timeout=ClientTimeout(total=120)) as session:
        started = time.time()
        await asyncio.gather(*(worker(session) for _ in range(args.concurrency)))
        finished = time.time()
    latencies.sort()
    print(
        orjson.dumps(
            {
                "started": started,
                "finished": finished,
                "statuses": statuses,
                "p50_ms": 1000 * statistics.median(latencies),
                "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
            },
            option=orjson.OPT_NON_STR_KEYS,
        ).decode(),
        flush=True,
    )


async def server(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-webhook-") as tmp:
        settings = Settings(
            state_dir=Path(tmp),
            engine=EngineSettings(dead_letter_file=Path(tmp) / "dead.ndjson"),
            checkpoint=CheckpointSettings(interval_s=60),
            sources=SourcesSettings(
                webhook=[
                    WebhookSourceSettings(
                        name="bench", format=args.format, decode_workers=args.decode_workers
                    )
                ]
            ),
        )
        sources, _ = build_sources(settings)
        daemon = Daemon(settings, sources, checkpoints=True)
        wire_webhooks(daemon)
        source = sources[0]
        app = make_app(
            daemon.engine,
            now=daemon.clock,
            settings=HttpSettings(),
            tokens=frozenset({TOKEN}),
            receivers=[s for s in sources if isinstance(s, PushReceiver)],
        )
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # noqa: SLF001
        task = asyncio.create_task(daemon.run())
        try:
            await _measure(args, port, source.stats, daemon)
        finally:
            daemon.request_stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 30)
            await runner.cleanup()


async def _measure(args: argparse.Namespace, port: int, stats: SourceStats, daemon: Daemon) -> None:
    command = [
        sys.executable,
        __file__,
        "--client",
        f"--port={port}",
        f"--records={args.records}",
        f"--batch={args.batch}",
        f"--concurrency={args.concurrency}",
        f"--seed={args.seed}",
        f"--format={args.format}",
    ]
    process = await asyncio.create_subprocess_exec(*command, stdout=subprocess.PIPE)
    done_at = None
    while done_at is None:
        await asyncio.sleep(0.005)
        if stats.received >= args.records and daemon.queue.empty():
            done_at = time.time()
        elif process.returncode not in (None, 0):
            raise SystemExit(f"the client failed (exit {process.returncode})")
    out, _ = await process.communicate()
    report = orjson.loads(out.splitlines()[-1])
    started = report["started"]
    applied_s = done_at - started
    posted_s = report["finished"] - started
    print(
        f"format {args.format}: {args.records} records in bulk bodies of {args.batch}, "
        f"{args.concurrency} connections"
    )
    print(
        f"POST statuses {report['statuses']}, p50 {report['p50_ms']:.1f} ms, "
        f"p99 {report['p99_ms']:.1f} ms per POST"
    )
    print(f"accepted (journaled, 200): {args.records / posted_s:,.0f} records/s")
    print(f"applied end to end: {args.records / applied_s:,.0f} records/s ({applied_s:.2f} s)")
    print(f"duplicates {stats.duplicates}, rejected {dict(stats.rejected)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--format", choices=("emnify", "records"), default="emnify")
    parser.add_argument("--decode-workers", type=int, default=1)
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    asyncio.run(client(args) if args.client else server(args))


if __name__ == "__main__":
    main()
