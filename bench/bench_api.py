"""HTTP API latency at fleet scale while the daemon ingests and evaluates.

    python bench/bench_api.py --sims 1000000 --rate 500 --seconds 20 --ingest-rate 20000

The server (this process, one event loop on one core) builds an engine of N SIMs the
way bench_engine.py does (an inventory, then ``--reports`` usage records per SIM decoded
from NDJSON bytes and applied one by one), runs one evaluation, then serves the real app
(``simwatch.http.app.make_app``) on 127.0.0.1 while, on the same loop, an ingest task applies
fresh usage records for random SIMs at a steady rate (decode + apply in chunks of 500,
yielding between chunks, as the daemon does) and an evaluation runs every 5 s.

The load generator is a separate process (this script with ``--client``): open-loop
requests at a fixed rate against 127.0.0.1 only, a mix of one SIM (80 %), a filtered SIM
page of 100 (10 %), the incident list (5 %) and the partner groups (5 %). Latency is
measured per request from just before it is sent until its body is read, so a request
waiting behind an evaluation or an ingest chunk counts the wait. Everything is bounded:
``rate * seconds`` requests, a hard deadline, loopback only.

``/metrics`` is served as in ``simwatch run`` (``EngineCollector`` in a registry with the
process metrics). Before the load, its collect + render is timed in-process (text and
OpenMetrics); with ``--scrape-every S`` the client also GETs it every S seconds during
the load, alternating the text format and OpenMetrics and asking for gzip as Prometheus
does, and reports latency and size. At the end the server prints its resident memory.

``--columnar`` is the daemon's way (issue 12): columnar decode and batch apply, each
cycle's ``Engine.assess`` in a worker thread while ingest waits, and /metrics served by
``CachedMetrics`` (the fleet's families rendered in a worker thread after each cycle).
The daemon runs uvloop by default (``event_loop``): pass ``--loop uvloop`` to measure
what it serves. Each phase prints the CPU time the server used (its loop thread and its
worker threads) and the load client's own CPU time (a separate process): on two shared
cores the client's share is part of the picture. ``--rates 500,1000,2000`` runs one
load phase per rate after a single fill.

Each phase also prints the CPU per unit of work from thread CPU times, which depend
far less on the machine's load than latencies do: HTTP + views per request (the loop
thread's CPU less ingest, line generation and ``finish_cycle``), ingest per record,
``Engine.assess`` and ``finish_cycle`` per cycle, the kernel's share; a loop monitor
(a 2 ms sleep over and over: the wake-ups more than 10 ms late, whether the loop thread
was on the CPU meanwhile, and what was under way); and the ``/metrics`` handler's own
time in the server. ``--mix sim`` (one-SIM views only) and ``--mix healthy``
(``GET /-/healthy`` only) separate the views' cost from the HTTP stack's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import random
import resource
import statistics
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import orjson
from aiohttp import ClientError, ClientSession, ClientTimeout, web
from benchfleet import APNS, PARTNERS, iccid, inventory, usage_lines
from prometheus_client import exposition
from prometheus_client.openmetrics import exposition as om_exposition

from simwatch import __version__
from simwatch.core.columnar import ColumnarDecoder
from simwatch.core.engine import Engine, EngineConfig
from simwatch.core.records import Record, RecordDecoder
from simwatch.core.timeutil import format_rfc3339
from simwatch.http import views
from simwatch.http.app import make_app
from simwatch.http.metrics import (
    CachedMetrics,
    EngineCollector,
    make_registry,
    metrics_handler,
)
from simwatch.shell.health import DaemonHealth
from simwatch.shell.settings import HttpSettings

if TYPE_CHECKING:
    from aiohttp.typedefs import Handler
    from prometheus_client import CollectorRegistry

    from simwatch.core.evaluate import Evaluation

HOST = "127.0.0.1"
SCRIPT = Path(__file__).resolve()
CHUNK = 500  # records decoded and applied between yields, as in the daemon
EVAL_INTERVAL_S = 5.0
ENDPOINTS = ("sim", "sims", "incidents", "groups", "healthy")
WEIGHTS = (80, 10, 5, 5, 0)
# --mix: the request mix of the load. "api" is the issue's; "sim" only one-SIM views;
# "healthy" only GET /-/healthy, a constant answer: what the HTTP stack itself costs.
MIXES = {"api": WEIGHTS, "sim": (100, 0, 0, 0, 0), "healthy": (0, 0, 0, 0, 100)}
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
SCRAPE_FORMATS = ("text", "openmetrics")
CONNECTIONS = 64  # keep-alive connections of the load generator
TOKEN = "bench-token"  # noqa: S105 - loopback-only bench; the API wants a token, as in production
LIVE_LINE = (
    b'{"kind":"usage","record_id":"live-%d","iccid":"%s","start":"%s","end":"%s",'
    b'"bytes_up":1200,"bytes_down":340,"apn":"%s","mcc":"%s","mnc":"%s","rat":"LTE-M"}'
)


# ---- server: fill -------------------------------------------------------------------------


def build_engine(n: int, reports: int, *, columnar: bool = False) -> Engine:
    """Inventory of ``n`` SIMs, then ``reports`` rounds of usage ending before now
    (``columnar``: decoded and applied in batches of 5,000, the same state)."""
    engine = Engine(replace(EngineConfig(), warmup_s=0.0, initial_capacity=n))
    engine.load_inventory(inventory(n))
    decoder = RecordDecoder()
    batch_decoder = ColumnarDecoder()
    rng = np.random.default_rng(1)
    wall = time.time()
    for k in range(reports):
        end = wall - 600 - (reports - k) * 900.0
        lines = usage_lines(n, end, k, rng)
        if columnar:
            for j in range(0, len(lines), 5000):
                engine.ingest_batch(batch_decoder.decode_lines(lines[j : j + 5000], wall).records)
            continue
        for line in lines:
            rec = decoder.decode_line(line, wall)
            if isinstance(rec, Record):
                engine.ingest_record(rec)
    return engine


# ---- server: live ingest and evaluation ---------------------------------------------------


@dataclass
class LiveStats:
    records: int = 0
    rejected: int = 0
    busy_s: float = 0.0  # decoding and applying
    gen_s: float = 0.0  # generating the lines (stands in for a source's own work)
    # loop thread CPU s (thread_time) of: decoding + applying, generating the lines, the
    # cycles' finish_cycle; and the worker threads' CPU s in Engine.assess
    ingest_cpu_s: float = 0.0
    gen_cpu_s: float = 0.0
    cycle_cpu_s: float = 0.0
    assess_cpu_s: float = 0.0
    started: float = 0.0
    stopped: float = 0.0
    eval_s: list[float] = field(default_factory=list)
    gc_s: list[float] = field(default_factory=list)  # pauses of full (generation 2) collections
    # --columnar: ingest waits while a cycle's worker thread reads the state
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    metrics: CachedMetrics | None = None  # --columnar: /metrics as the daemon serves it
    cpu_began: tuple[float, float] = (0.0, 0.0)  # (process, loop thread) CPU s at the start
    cpu_s: tuple[float, float] = (0.0, 0.0)  # (process, loop thread) CPU s during the load
    # the loop monitor: (when, wall s, loop thread CPU s) of each of its wake-ups that
    # came more than LAG_S late, and what else was under way (spans of perf_counter)
    lags: list[tuple[float, float, float]] = field(default_factory=list)
    wakeups: int = 0
    eval_spans: list[tuple[float, float]] = field(default_factory=list)  # worker-thread part
    cycle_spans: list[tuple[float, float]] = field(default_factory=list)  # finish_cycle (loop)
    ingest_spans: list[tuple[float, float]] = field(default_factory=list)  # decode + apply
    gc_spans: list[tuple[float, float]] = field(default_factory=list)
    scrape_handler_s: list[float] = field(default_factory=list)  # /metrics in the server
    sys_began: float = 0.0  # the process's system (kernel) CPU s at the start
    sys_s: float = 0.0  # the process's system CPU s during the load (sockets, page faults)
    _gc_began: float = 0.0

    def on_gc(self, phase: str, info: dict[str, int]) -> None:
        if info.get("generation") != 2:  # the oldest generation
            return
        if phase == "start":
            self._gc_began = time.perf_counter()
        else:
            end = time.perf_counter()
            self.gc_s.append(end - self._gc_began)
            self.gc_spans.append((self._gc_began, end))


def live_chunk(n: int, seq: int, now: float, rng: random.Random) -> list[bytes]:
    start_text = format_rfc3339(now - 900).encode()
    end_text = format_rfc3339(now).encode()
    lines = []
    for j in range(CHUNK):
        mcc, mnc = PARTNERS[rng.randrange(len(PARTNERS))]
        lines.append(
            LIVE_LINE
            % (
                seq + j,
                iccid(rng.randrange(n)).encode(),
                start_text,
                end_text,
                APNS[rng.randrange(len(APNS))].encode(),
                mcc.encode(),
                mnc.encode(),
            )
        )
    return lines


async def ingest_loop(engine: Engine, n: int, rate: float, stats: LiveStats) -> None:
    """Fresh records for random SIMs at ``rate`` per second, decoded and applied per chunk."""
    decoder = RecordDecoder()
    rng = random.Random(2)
    chunks = 0
    while True:
        due = stats.started + chunks * CHUNK / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        began = time.perf_counter()
        cpu = time.thread_time()
        now = time.time()
        lines = live_chunk(n, chunks * CHUNK, now, rng)
        made = time.perf_counter()
        made_cpu = time.thread_time()
        stats.gen_s += made - began
        stats.gen_cpu_s += made_cpu - cpu
        for line in lines:
            rec = decoder.decode_line(line, now)
            if isinstance(rec, Record):
                engine.ingest_record(rec)
                stats.records += 1
            else:
                stats.rejected += 1
        chunks += 1
        stats.busy_s += time.perf_counter() - made
        stats.ingest_cpu_s += time.thread_time() - made_cpu


async def eval_loop(engine: Engine, stats: LiveStats) -> None:
    while True:
        await asyncio.sleep(EVAL_INTERVAL_S)
        began = time.perf_counter()
        cpu = time.thread_time()
        engine.evaluate(time.time())
        stats.cycle_cpu_s += time.thread_time() - cpu
        stats.eval_s.append(time.perf_counter() - began)


# ---- issue 12: the daemon's way (--columnar) ----------------------------------------------


async def columnar_ingest_loop(engine: Engine, n: int, rate: float, stats: LiveStats) -> None:
    """As ``ingest_loop``, decoded into columns and applied per chunk (``ingest_batch``)."""
    decoder = ColumnarDecoder()
    rng = random.Random(2)
    chunks = 0
    while True:
        due = stats.started + chunks * CHUNK / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        began = time.perf_counter()
        cpu = time.thread_time()
        now = time.time()
        lines = live_chunk(n, chunks * CHUNK, now, rng)
        made = time.perf_counter()
        stats.gen_s += made - began
        stats.gen_cpu_s += time.thread_time() - cpu
        async with stats.lock:
            made = time.perf_counter()  # the lock may have waited for a cycle
            made_cpu = time.thread_time()
            batch = decoder.decode_lines(lines, now)
            engine.ingest_batch(batch.records)
            stats.ingest_cpu_s += time.thread_time() - made_cpu
        stats.ingest_spans.append((made, time.perf_counter()))
        stats.records += len(batch.records)
        stats.rejected += len(batch.rejections)
        chunks += 1
        stats.busy_s += time.perf_counter() - made


def timed_assess(engine: Engine, now: float) -> tuple[Evaluation, float]:
    """``Engine.assess`` and the CPU time its (worker) thread spent on it."""
    cpu = time.thread_time()
    evaluation = engine.assess(now)
    return evaluation, time.thread_time() - cpu


async def columnar_eval_loop(engine: Engine, stats: LiveStats) -> None:
    """As ``eval_loop``, the heavy part in a worker thread (``Engine.assess``), then the
    /metrics families rendered in a worker thread (``CachedMetrics``), as the daemon does."""
    while True:
        await asyncio.sleep(EVAL_INTERVAL_S)
        began = time.perf_counter()
        async with stats.lock:
            now = time.time()
            assess_began = time.perf_counter()
            evaluation, assess_cpu = await asyncio.to_thread(timed_assess, engine, now)
            stats.assess_cpu_s += assess_cpu
            assessed = time.perf_counter()
            cpu = time.thread_time()
            engine.finish_cycle(now, evaluation, began)
            stats.cycle_cpu_s += time.thread_time() - cpu
            stats.eval_spans.append((assess_began, assessed))
            stats.cycle_spans.append((assessed, time.perf_counter()))
        stats.eval_s.append(time.perf_counter() - began)
        if stats.metrics is not None:
            stats.metrics.refresh_soon()


LAG_TICK_S = 0.002  # the loop monitor's sleep
LAG_S = 0.010  # a wake-up later than this counts: the loop was held (or starved) that long


async def loop_monitor(stats: LiveStats) -> None:
    """Sleep ``LAG_TICK_S`` over and over and note every wake-up more than ``LAG_S`` late,
    with the loop thread's CPU time over the same span: CPU close to the wall time means
    the loop itself was busy (a callback held it); far less means it waited (for the GIL
    held by a worker thread, or for a core the machine gave to another process)."""
    while True:
        began = time.perf_counter()
        cpu = time.thread_time()
        await asyncio.sleep(LAG_TICK_S)
        wall = time.perf_counter() - began
        stats.wakeups += 1
        if wall - LAG_TICK_S > LAG_S:
            stats.lags.append((began, wall - LAG_TICK_S, time.thread_time() - cpu))


def _overlaps(at: float, length: float, spans: list[tuple[float, float]]) -> bool:
    return any(lo < at + length and hi > at for lo, hi in spans)


def report_lags(stats: LiveStats) -> None:
    """The loop monitor's late wake-ups, and what was under way during each."""
    lags = stats.lags
    if not stats.wakeups:
        return
    worst = max((lag for _, lag, _ in lags), default=0.0)
    busy = sum(1 for _, lag, cpu in lags if cpu >= lag / 2)
    print(
        f"loop monitor: {stats.wakeups:,} wake-ups, {len(lags)} more than "
        f"{LAG_S * 1000:.0f} ms late ({sum(1 for _, lag, _ in lags if lag > 0.05)} over 50 ms),"
        f" worst {worst * 1000:.0f} ms; {busy} of them with the loop thread on the CPU "
        "for at least half the time (held by a callback), the rest waiting (GIL, or the core)"
    )
    if not lags:
        return
    kinds = (
        ("an evaluation in its worker thread", stats.eval_spans),
        ("finish_cycle on the loop", stats.cycle_spans),
        ("an ingest chunk", stats.ingest_spans),
        ("a full garbage collection", stats.gc_spans),
    )
    parts = []
    for name, spans in kinds:
        hit = [lag for at, lag, _ in lags if _overlaps(at, lag + LAG_TICK_S, spans)]
        if hit:
            parts.append(f"{len(hit)} during {name} (worst {max(hit) * 1000:.0f} ms)")
    alone = [
        lag
        for at, lag, _ in lags
        if not any(_overlaps(at, lag + LAG_TICK_S, spans) for _, spans in kinds)
    ]
    if alone:
        parts.append(f"{len(alone)} during none of these (worst {max(alone) * 1000:.0f} ms)")
    print("  late wake-ups: " + "; ".join(parts))


def service_times(engine: Engine, n: int, repeats: int = 30) -> dict[str, float]:
    """Median time of each endpoint's view plus JSON encoding, in-process, no HTTP."""
    rng = random.Random(4)
    out = {}
    for kind in ENDPOINTS:
        times = []
        for _ in range(repeats):
            began = time.perf_counter()
            now = time.time()
            if kind == "sim":
                body = views.sim_view(engine, iccid(rng.randrange(n)), now)
            elif kind == "sims":
                mcc, mnc = PARTNERS[rng.randrange(len(PARTNERS))]
                body = views.list_sims(engine, now, {"partner": mcc + mnc}, limit=100)
            elif kind == "incidents":
                body = views.incidents_view(engine)
            elif kind == "groups":
                body = views.groups_view(engine, now, "partner")
            else:
                body = {"status": "ok"}
            orjson.dumps(body)
            times.append(time.perf_counter() - began)
        out[kind] = statistics.median(times)
    return out


def make_metrics(engine: Engine) -> CollectorRegistry:
    """The /metrics registry exactly as ``simwatch run`` builds it (no sources, no sinks)."""
    health = DaemonHealth(started_at=time.time())
    return make_registry(EngineCollector(engine, health, tuple, version=__version__))


def scrape_times(registry: CollectorRegistry, repeats: int = 5) -> dict[str, tuple[float, int]]:
    """Median collect + render time (s) and body size (bytes) of each format, in-process."""
    out = {}
    for name, render in (
        ("text", exposition.generate_latest),
        ("openmetrics", om_exposition.generate_latest),
    ):
        times, size = [], 0
        for _ in range(repeats):
            began = time.perf_counter()
            size = len(render(registry))
            times.append(time.perf_counter() - began)
        out[name] = (statistics.median(times), size)
    return out


def rss_status() -> dict[str, int]:
    """VmRSS and VmHWM (peak) of this process, bytes, as the kernel reports them."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out


def malloc_trim() -> None:
    """Hand freed heap back to the OS (glibc): the fill's line buffers, gone but resident."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def system_cpu() -> float:
    """The process's CPU seconds in the kernel (all threads)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_stime


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# ---- client ------------------------------------------------------------------------------


def request_path(kind: str, n: int, rng: random.Random) -> str:
    if kind == "sim":
        return f"/api/v1/sims/{iccid(rng.randrange(n))}"
    if kind == "sims":
        mcc, mnc = PARTNERS[rng.randrange(len(PARTNERS))]
        return f"/api/v1/sims?partner={mcc}{mnc}&limit=100"
    if kind == "incidents":
        return "/api/v1/incidents"
    if kind == "groups":
        return "/api/v1/groups?dim=partner"
    return "/-/healthy"


async def scraper(
    session: ClientSession, base: str, every: float, out: list[tuple[str, float, int, int, bool]]
) -> None:
    """GET /metrics every ``every`` seconds, alternating text and OpenMetrics, with gzip:
    (format, latency s, body bytes, bytes on the wire, ok) per scrape."""
    k = 0
    t0 = time.perf_counter()
    while True:
        await asyncio.sleep(max(0.0, t0 + (k + 1) * every - time.perf_counter()))
        fmt = SCRAPE_FORMATS[k % 2]
        headers = {"Accept-Encoding": "gzip"}
        if fmt == "openmetrics":
            headers["Accept"] = OPENMETRICS
        began = time.perf_counter()
        try:
            async with session.get(base + "/metrics", headers=headers) as response:
                body = await response.read()
                wire = response.content_length or len(body)
                ok = response.status == 200
        except (ClientError, OSError, TimeoutError):
            body, wire, ok = b"", 0, False
        out.append((fmt, time.perf_counter() - began, len(body), wire, ok))
        k += 1


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection of the load generator: a request written, the
    response's head and ``Content-Length`` body parsed, nothing else (aiohttp's client
    costs about as much CPU per request as the server, so it could not offer 2,000
    requests/s from one core; this costs a few tens of microseconds)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[int] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        head_end = self.buffer.find(b"\r\n\r\n")
        if head_end < 0:
            return
        head = bytes(self.buffer[:head_end]).lower()
        found = head.find(b"\r\ncontent-length:")
        if found < 0:
            waiter.set_exception(ConnectionError("a response without Content-Length"))
            return
        line_end = head.find(b"\r\n", found + 2)
        length = int(head[found + 17 : line_end if line_end >= 0 else len(head)])
        total = head_end + 4 + length
        if len(self.buffer) >= total:
            del self.buffer[:total]
            waiter.set_result(int(head[9:12]))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc or ConnectionError("connection closed"))

    async def get(self, request: bytes) -> int:
        """Send one request; its status once the whole response is in."""
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self.waiter


async def client(
    port: int,
    n: int,
    rate: float,
    seconds: float,
    scrape_every: float = 0.0,
    *,
    weights: tuple[int, ...] = WEIGHTS,
) -> dict[str, object]:
    """Open-loop load: request ``i`` is due at ``i / rate`` seconds, whatever came back.

    Its latency runs from when it was due (not when a connection was free) until its
    whole body is read, so waiting anywhere, in this client or the server, counts."""
    cpu_began = time.process_time()
    rng = random.Random(3)
    loop = asyncio.get_running_loop()
    latencies: dict[str, list[float]] = {k: [] for k in ENDPOINTS}
    errors: dict[str, int] = dict.fromkeys(ENDPOINTS, 0)
    scrapes: list[tuple[str, float, int, int, bool]] = []
    total = int(rate * seconds)
    idle: asyncio.Queue[_Connection] = asyncio.Queue()
    connections = []
    for _ in range(CONNECTIONS):
        _, conn = await loop.create_connection(_Connection, HOST, port)
        connections.append(conn)
        idle.put_nowait(conn)
    head = f"Host: {HOST}:{port}\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode()

    async def one(kind: str, path: str, due: float) -> None:
        conn = await idle.get()
        try:
            status = await asyncio.wait_for(
                conn.get(b"GET %s HTTP/1.1\r\n%s" % (path.encode(), head)), 30.0
            )
            ok = status == 200
        except (OSError, TimeoutError, ConnectionError):
            ok = False
            assert conn.transport is not None
            conn.transport.close()  # out of step now: replace it
            _, conn = await loop.create_connection(_Connection, HOST, port)
        idle.put_nowait(conn)
        latencies[kind].append(time.perf_counter() - due)
        if not ok:
            errors[kind] += 1

    async with ClientSession(timeout=ClientTimeout(total=30.0)) as session:
        tasks = []
        scraping = None
        if scrape_every > 0:
            base = f"http://{HOST}:{port}"
            scraping = asyncio.create_task(scraper(session, base, scrape_every, scrapes))
        t0 = time.perf_counter()
        for i in range(total):
            due = t0 + i / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            kind = rng.choices(ENDPOINTS, weights)[0]
            tasks.append(asyncio.create_task(one(kind, request_path(kind, n, rng), due)))
        sent_s = time.perf_counter() - t0
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=60.0)
        done_s = time.perf_counter() - t0
        if scraping is not None:
            scraping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await scraping
    for conn in connections:
        if conn.transport is not None:
            conn.transport.close()
    return {
        "cpu_s": time.process_time() - cpu_began,
        "latencies": latencies,
        "errors": errors,
        "sent_s": sent_s,
        "done_s": done_s,
        "scrapes": scrapes,
    }


def client_main(args: argparse.Namespace) -> None:
    result = asyncio.run(
        client(
            args.port,
            args.sims,
            args.rate,
            args.seconds,
            args.scrape_every,
            weights=MIXES[args.mix],
        )
    )
    sys.stdout.buffer.write(orjson.dumps(result))


# ---- server main -------------------------------------------------------------------------


def describe(name: str, values: list[float], errors: int) -> str:
    if not values:
        return f"  {name:<10} no requests"
    ms = np.asarray(values) * 1000
    p50, p99 = np.percentile(ms, [50, 99])
    return (
        f"  {name:<10} {len(ms):>6} req  p50 {p50:7.2f} ms  p99 {p99:8.2f} ms  "
        f"max {ms.max():8.2f} ms  errors {errors}"
    )


def client_command(port: int, args: argparse.Namespace) -> list[str]:
    """The load generator's command line (a separate process: its own core)."""
    return [
        sys.executable,
        str(SCRIPT),
        "--client",
        "--port",
        str(port),
        "--sims",
        str(args.sims),
        "--rate",
        str(args.rate),
        "--seconds",
        str(args.seconds),
        "--scrape-every",
        str(args.scrape_every),
        "--mix",
        args.mix,
    ]


def timed_handler(handler: Handler, out: list[float]) -> Handler:
    """``handler``, its time from entry to its response (s) appended to ``out``: the
    server's part of a scrape, without the wait in the loop's queue or the client's."""

    async def timed(request: web.Request) -> web.StreamResponse:
        began = time.perf_counter()
        try:
            return await handler(request)
        finally:
            out.append(time.perf_counter() - began)

    return timed


async def start_server(
    engine: Engine, port: int, stats: LiveStats, columnar: bool
) -> web.AppRunner:
    """The real API app with /metrics as ``simwatch run`` serves them, on 127.0.0.1
    (``columnar``: the per-cycle families rendered off the loop, ``CachedMetrics``)."""
    settings = HttpSettings(host=HOST, port=port or 39153)
    if columnar:
        health = DaemonHealth(started_at=time.time())
        collector = EngineCollector(engine, health, tuple, version=__version__)
        stats.metrics = CachedMetrics(collector, lock=stats.lock)
        await stats.metrics.refresh()
        handler: Handler = stats.metrics.handle
    else:
        handler = metrics_handler(make_metrics(engine))
    handler = timed_handler(handler, stats.scrape_handler_s)
    app = make_app(
        engine,
        now=time.time,
        settings=settings,
        tokens=frozenset({TOKEN}),
        metrics_handler=handler,
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, HOST, port)
    await site.start()
    return runner


async def run_load(
    port: int,
    client_args: argparse.Namespace,
    *,
    limit_s: float,
    runner: web.AppRunner,
    stats: LiveStats,
    live: list[asyncio.Task[None]],
) -> bytes:
    """Run the load client to its end, then stop the server-side tasks and the server;
    returns the client's JSON report."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *client_command(port, client_args), stdout=asyncio.subprocess.PIPE
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout=limit_s)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
    finally:
        stats.stopped = time.perf_counter()
        stats.cpu_s = (
            time.process_time() - stats.cpu_began[0],
            time.thread_time() - stats.cpu_began[1],
        )
        stats.sys_s = system_cpu() - stats.sys_began
        gc.callbacks.remove(stats.on_gc)
        for task in live:
            task.cancel()
        for task in live:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await runner.cleanup()
    if proc.returncode != 0:
        raise SystemExit(f"client failed with exit code {proc.returncode}")
    return out


async def serve_rates(args: argparse.Namespace, engine: Engine, rates: list[float]) -> None:
    """One load phase per rate on the same engine (``--rates``), each with a fresh server."""
    for k, rate in enumerate(rates):
        if k:
            await asyncio.sleep(5.0)  # let the machine settle between phases
        print(f"\n== {rate:.0f} requests/s offered; load average {load_average()}")
        await serve(replace_rate(args, rate), engine)


def replace_rate(args: argparse.Namespace, rate: float) -> argparse.Namespace:
    return argparse.Namespace(**{**vars(args), "rate": rate})


async def serve(args: argparse.Namespace, engine: Engine) -> None:
    stats = LiveStats()
    runner = await start_server(engine, args.port, stats, args.columnar)
    port = int(runner.addresses[0][1])
    stats.started = time.perf_counter()
    stats.cpu_began = (time.process_time(), time.thread_time())
    stats.sys_began = system_cpu()
    gc.callbacks.append(stats.on_gc)
    evaluating, ingesting = (
        (columnar_eval_loop, columnar_ingest_loop) if args.columnar else (eval_loop, ingest_loop)
    )
    live = [
        asyncio.create_task(evaluating(engine, stats)),
        asyncio.create_task(loop_monitor(stats)),
    ]
    if args.ingest_rate > 0:
        live.append(asyncio.create_task(ingesting(engine, args.sims, args.ingest_rate, stats)))
    out = await run_load(
        port, args, limit_s=args.seconds + 120, runner=runner, stats=stats, live=live
    )
    report(args, orjson.loads(out), stats)


def report(args: argparse.Namespace, result: dict[str, object], stats: LiveStats) -> None:
    latencies: dict[str, list[float]] = result["latencies"]  # type: ignore[assignment]
    errors: dict[str, int] = result["errors"]  # type: ignore[assignment]
    done_s = float(result["done_s"])  # type: ignore[arg-type]
    every = [v for k in ENDPOINTS for v in latencies[k]]
    live_s = max(stats.stopped - stats.started, 1e-9)
    print(
        f"requests: {len(every)} in {done_s:.1f} s = {len(every) / done_s:.0f} req/s "
        f"(target {args.rate:.0f}/s for {args.seconds:.0f} s, open loop)"
    )
    for kind in ENDPOINTS:
        if latencies[kind]:
            print(describe(kind, latencies[kind], errors[kind]))
    print(describe("all", every, sum(errors.values())))
    print(
        f"ingest during the run: {stats.records:,} records in {live_s:.1f} s = "
        f"{stats.records / live_s:,.0f} rec/s (target {args.ingest_rate:,.0f}/s), "
        f"{stats.rejected} rejected; loop busy {stats.busy_s / live_s:.0%} decoding and "
        f"applying ({stats.busy_s / max(stats.records, 1) * 1e6:.1f} us/record), "
        f"{stats.gen_s / live_s:.0%} generating lines"
    )
    if stats.eval_s:
        print(
            f"evaluations during the run: {len(stats.eval_s)}, median "
            f"{statistics.median(stats.eval_s) * 1000:.0f} ms, "
            f"max {max(stats.eval_s) * 1000:.0f} ms"
        )
    if stats.gc_s:
        print(
            f"full garbage collections during the run: {len(stats.gc_s)}, "
            f"max pause {max(stats.gc_s) * 1000:.0f} ms"
        )
    report_lags(stats)
    report_scrapes(result.get("scrapes", []))  # type: ignore[arg-type]
    if stats.scrape_handler_s:
        ms = np.asarray(stats.scrape_handler_s) * 1000
        print(
            f"  /metrics in the server's handler: {len(ms)} scrapes, median "
            f"{np.median(ms):.1f} ms, max {ms.max():.1f} ms (the rest of a scrape's time is "
            "the wait in the loop's queue, the transfer and the client's own loop)"
        )
    client_cpu = float(result["cpu_s"])  # type: ignore[arg-type]
    process_cpu, loop_cpu = stats.cpu_s
    http_cpu = loop_cpu - stats.ingest_cpu_s - stats.gen_cpu_s - stats.cycle_cpu_s
    print(
        f"CPU per unit of work (load-independent, thread CPU time): HTTP + views "
        f"{http_cpu / max(len(every), 1) * 1e6:.0f} us per request (the loop thread's CPU "
        f"less ingest, line generation and finish_cycle); ingest (decode + dedup + apply) "
        f"{stats.ingest_cpu_s / max(stats.records, 1) * 1e6:.1f} us per record; "
        f"evaluation: Engine.assess {stats.assess_cpu_s / max(len(stats.eval_s), 1) * 1e3:.0f}"
        f" ms (worker thread), finish_cycle "
        f"{stats.cycle_cpu_s / max(len(stats.eval_s), 1) * 1e3:.0f} ms (loop) per cycle"
    )
    print(
        f"CPU during the load: server {process_cpu / live_s:.0%} of a core (its event loop "
        f"thread {loop_cpu / live_s:.0%}, worker threads {(process_cpu - loop_cpu) / live_s:.0%}"
        f"), {process_cpu / max(len(every), 1) * 1e6:.0f} us per request all work included "
        f"({stats.sys_s / max(len(every), 1) * 1e6:.0f} us of it in the kernel); "
        f"load client (its own process) {client_cpu / done_s:.0%} of a core, "
        f"{client_cpu / max(len(every), 1) * 1e6:.0f} us per request"
    )
    rss = rss_status()
    print(
        f"server resident memory at the end: {rss['VmRSS'] / 2**20:,.0f} MiB "
        f"(peak {rss['VmHWM'] / 2**20:,.0f} MiB); load average {load_average()}"
    )


def report_scrapes(scrapes: list[list[object]]) -> None:
    """Latency and size of the client's /metrics scrapes, per format."""
    for fmt in SCRAPE_FORMATS:
        rows = [s for s in scrapes if s[0] == fmt]
        if not rows:
            continue
        ms = np.asarray([float(s[1]) for s in rows]) * 1000  # type: ignore[arg-type]
        p50, p99 = np.percentile(ms, [50, 99])
        failed = sum(1 for s in rows if not s[4])
        print(
            f"  /metrics {fmt:<11} {len(rows):>4} scrapes  p50 {p50:7.1f} ms  p99 {p99:7.1f} ms"
            f"  max {ms.max():7.1f} ms  {rows[-1][2]:,} bytes ({rows[-1][3]:,} gzipped)"
            f"  errors {failed}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sims", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=500.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the load")
    parser.add_argument("--ingest-rate", type=float, default=20_000.0, help="records per second")
    parser.add_argument("--reports", type=int, default=2, help="usage records per SIM in the fill")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument(
        "--columnar",
        action="store_true",
        help="issue 12: columnar decode + batch apply, evaluation in a worker thread",
    )
    parser.add_argument(
        "--scrape-every", type=float, default=0.0, help="GET /metrics every S seconds (0: never)"
    )
    parser.add_argument(
        "--loop", choices=("asyncio", "uvloop"), default="asyncio", help="the server's loop"
    )
    parser.add_argument(
        "--profile", type=int, default=0, help="print the server's N costliest functions"
    )
    parser.add_argument(
        "--rates",
        default="",
        help="comma-separated request rates: one load phase each after one fill (overrides --rate)",
    )
    parser.add_argument(
        "--mix",
        choices=tuple(MIXES),
        default="api",
        help="requests: api (80 %% one SIM, 10 %% a page, 5 %% incidents, 5 %% groups), "
        "sim (one SIM only) or healthy (GET /-/healthy only: the HTTP stack's own cost)",
    )
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",") if r] or [args.rate]
    if args.client:
        client_main(args)
        return
    began = time.perf_counter()
    engine = build_engine(args.sims, args.reports, columnar=args.columnar)
    fill_s = time.perf_counter() - began
    print(f"load average at start: {load_average()}")
    print(
        f"fill: {args.sims:,} SIMs, {args.sims * args.reports:,} records in {fill_s:.1f} s "
        f"({args.sims * args.reports / fill_s:,.0f} rec/s incl. generating the lines)"
    )
    began = time.perf_counter()
    engine.evaluate(time.time())
    print(f"first evaluation: {(time.perf_counter() - began) * 1000:.0f} ms")
    service = service_times(engine, args.sims)
    cost = sum(service[k] * w / 100 for k, w in zip(ENDPOINTS, WEIGHTS, strict=True))
    cached = cost - service["groups"] * WEIGHTS[ENDPOINTS.index("groups")] / 100
    print(
        "service time per request (view + JSON, no HTTP, median): "
        + ", ".join(f"{k} {v * 1000:.2f} ms" for k, v in service.items())
        + f"; the mix costs {cost * args.rate:.0%} of a core at {args.rate:.0f} req/s, "
        f"{cached * args.rate:.0%} with groups from the app's per-cycle cache (as served)"
    )
    scrape = scrape_times(make_metrics(engine))
    print(
        "/metrics collect + render in-process (median of 5): "
        + ", ".join(f"{k} {t * 1000:.0f} ms, {size:,} bytes" for k, (t, size) in scrape.items())
    )
    before = rss_status()["VmRSS"]
    gc.collect()
    malloc_trim()
    rss = rss_status()
    print(
        f"resident memory after the fill: {before / 2**20:,.0f} MiB, "
        f"{rss['VmRSS'] / 2**20:,.0f} MiB after gc + malloc_trim (the fill's buffers)"
    )
    print(
        f"resident memory before the load: {rss['VmRSS'] / 2**20:,.0f} MiB; load {load_average()}"
    )
    profile = None
    if args.profile:
        import cProfile  # noqa: PLC0415 - only when asked for

        profile = cProfile.Profile()
        profile.enable()
    if args.loop == "uvloop":
        import uvloop  # noqa: PLC0415 - only when asked for

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(serve_rates(args, engine, rates))
    else:
        asyncio.run(serve_rates(args, engine, rates))
    if profile is not None:
        import pstats  # noqa: PLC0415 - only when asked for

        profile.disable()
        pstats.Stats(profile).sort_stats("tottime").print_stats(args.profile)


if __name__ == "__main__":
    main()
