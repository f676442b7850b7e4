"""Two simwatch replicas sharded by ICCID on one machine: merged group counts are right.

docs/scaling.md, end to end. A simulated fleet (1,000 SIMs, 2.5 days, partner 26201
down for the last two hours) is published once to one real Mosquitto, each record to
``sims/<shard>/records`` with ``shard = shard_of(iccid, 2)`` (CRC-32 mod 2). Three real
daemons (``simwatch.service.daemon.Daemon`` + ``simwatch.service.run.serve``, the HTTP API on free
ports) run side by side in this process on one fake clock:

- shard 0 subscribes to ``sims/0/records`` and loads only its half of the inventory,
- shard 1 subscribes to ``sims/1/records``, the other half,
- the reference is one node for the whole fleet: the whole inventory, and every record
  in the same arrival order on ``all/records``. (Not ``sims/+/records``: the two shard
  streams interleaved per 500-line message would run its watermark ahead of half the
  fleet by minutes, and that half would look overdue.)

The fake clock stands 3 minutes after the last record, so every cycle runs on event
time, as in a backlog; a last record per shard at END makes all three evaluate that
same instant last. Then:

- every SIM is in exactly one shard;
- ``/api/v1/groups`` (per apn, country, partner and per leaf) and ``/metrics``
  ``simwatch_group_sims`` of the two shards, summed, equal the reference's for every
  (dim, value, state);
- the per-leaf counts merged by ``simwatch.core.merge`` (not served by the API yet: read
  from the engines) equal the reference's ``total`` and ``overdue`` exactly, and
  localization on them names the same cause as the reference: partner 26201;
- a ``Merger`` fed each cycle's shard reports opens exactly one incident, for 26201,
  in the same minutes as the reference;
- each shard on its own also pages for the fault, for its half of the SIMs and with the
  same incident id as the other shard (why shards must not page on their own);
- a shard whose feed stalls (all its SIMs overdue) is set aside as an outlier instead of
  becoming a fleet-wide cause.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import aiohttp
import aiomqtt
import mosquitto
import orjson
import pytest
from mosquitto import Mosquitto, free_port
from prometheus_client.parser import text_string_to_metric_families
from servers import until

from simwatch.core.inventory import InventoryRow
from simwatch.core.localize import LeafTable, localize
from simwatch.core.merge import (
    LeafCounts,
    Merger,
    ShardReport,
    merge_reports,
    shard_of,
    shard_report,
)
from simwatch.core.timeutil import format_rfc3339, parse_rfc3339
from simwatch.service.daemon import Daemon
from simwatch.service.run import serve
from simwatch.shell.inventory import iter_inventory
from simwatch.shell.settings import (
    EngineSettings,
    HttpSettings,
    MqttSourceSettings,
    Settings,
    SourcesSettings,
)
from simwatch.sim.catalogue import DAY, HOUR
from simwatch.sim.simulate import DEFAULT_START, FaultSpec, FleetSimulator, SimConfig
from simwatch.sources.mqtt import MqttSource

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

    from simwatch.core.engine import CycleResult, Engine
    from simwatch.core.incidents import Incident

pytestmark = [
    pytest.mark.real_server,  # mosquitto
    pytest.mark.skipif(not mosquitto.available(), reason="mosquitto is not installed"),
]

SHARDS = 2
SIMS = 1000
START = DEFAULT_START
END = START + 2.5 * DAY
FAULT_START = START + 2 * DAY + 10 * HOUR  # two hours before the end, still going on
FAULT = {"partner": "26201"}
CLOCK = END + 180.0  # the fake wall clock: every record is backlog, evaluated on event time
FINAL_EVAL = END  # the last boundary: the one the closing tick record passes
REPORTS_FROM = FAULT_START - 2 * HOUR  # the merger runs from here (warm-up is over)
DIMS = ("apn", "country", "partner")
REFERENCE_TOPIC = "all/records"
LINES_PER_MESSAGE = 500
WAIT_S = 60.0  # bound on every wait: a failure fails, it never hangs


def clock() -> float:
    """The daemons' wall clock: it stands still at ``CLOCK``."""
    return CLOCK


@dataclass
class Replica:
    name: str
    topic: str
    inventory: list[InventoryRow]
    shard: int | None = None  # None: the reference (the whole fleet)
    sent: int = 0  # lines published to its topic(s)
    daemon: Daemon | None = None
    source: MqttSource | None = None
    port: int = 0
    reports: dict[float, ShardReport] = field(default_factory=dict)

    @property
    def engine(self) -> Engine:
        assert self.daemon is not None
        return self.daemon.engine


@dataclass
class Outcome:
    shards: list[Replica]
    reference: Replica
    groups: dict[str, dict[str | None, Any]]  # replica name -> dim -> /api/v1/groups body
    metrics: dict[str, Counter[tuple[str, str, str]]]  # simwatch_group_sims per replica
    status: dict[str, Any]  # /api/v1/status per replica


def fleet(tmp: Path) -> tuple[list[bytes], list[InventoryRow]]:
    fault = FaultSpec("partner_outage", FAULT_START, END + DAY, FAULT)
    sim = FleetSimulator(SimConfig(sims=SIMS, days=2.5, seed=3, faults=(fault,)))
    lines = sim.advance(END - 1)  # every record's time is before END
    path = tmp / "inventory.csv"
    path.write_text(sim.inventory_csv(), encoding="utf-8")
    rows = [r for r in iter_inventory(path) if isinstance(r, InventoryRow)]
    return lines, rows


def collect_reports(replica: Replica) -> Callable[[CycleResult], None]:
    """Hook: this shard's report after every cycle from ``REPORTS_FROM`` on."""
    assert replica.shard is not None
    shard = replica.shard

    def hook(result: CycleResult) -> None:
        if result.evaluation.now >= REPORTS_FROM:
            report = shard_report(replica.engine, shard, SHARDS)
            assert report is not None
            replica.reports[report.evaluated_at] = report

    return hook


def tick(lines: list[bytes], shard: int) -> bytes:
    """A copy of the shard's last usage record, moved to END (with a new record id)."""
    for line in reversed(lines):
        record = orjson.loads(line)
        if record["kind"] == "usage" and shard_of(record["iccid"], SHARDS) == shard:
            window = parse_rfc3339(record["end"]) - parse_rfc3339(record["start"])
            record["record_id"] = f"tick-{shard}"
            record["start"] = format_rfc3339(END - window)
            record["end"] = format_rfc3339(END)
            return orjson.dumps(record)
    raise AssertionError(f"no usage record for shard {shard}")


async def publish(port: int, lines: list[bytes], shards: list[Replica]) -> None:
    """Each record to its shard's topic, in arrival order, 500 lines per message; and
    every record, in the same order, to the reference's topic.

    Last, one tick record per shard at END: the record passing that boundary makes each
    daemon evaluate END (before applying it), with exactly the records before it.
    """
    buffers: dict[str, list[bytes]] = {}
    async with aiomqtt.Client("127.0.0.1", port, identifier="publisher") as client:

        async def add(topic: str, line: bytes, *, force: bool = False) -> None:
            buffer = buffers.setdefault(topic, [])
            buffer.append(line)
            if force or len(buffer) >= LINES_PER_MESSAGE:
                await client.publish(topic, b"\n".join(buffer), qos=1)
                buffer.clear()

        ticks = [tick(lines, k) for k in range(SHARDS)]
        for i, line in enumerate([*lines, *ticks]):
            last = i >= len(lines) - 1  # from the last record on, every line goes out at once
            k = shard_of(orjson.loads(line)["iccid"], SHARDS)
            shards[k].sent += 1
            await add(shards[k].topic, line, force=last)
            await add(REFERENCE_TOPIC, line, force=last)


def group_sims(text: str) -> Counter[tuple[str, str, str]]:
    out: Counter[tuple[str, str, str]] = Counter()
    for family in text_string_to_metric_families(text):
        if family.name == "simwatch_group_sims":
            for sample in family.samples:
                labels = sample.labels
                out[labels["dim"], labels["value"], labels["state"]] += int(sample.value)
    return out


async def read_api(replica: Replica) -> tuple[dict[str | None, Any], Counter[Any], Any]:
    base = f"http://127.0.0.1:{replica.port}"
    async with aiohttp.ClientSession() as http:

        async def get(path: str) -> Any:
            async with http.get(base + path) as response:
                assert response.status == 200, (path, await response.text())
                return await response.json()

        groups: dict[str | None, Any] = {None: await get("/api/v1/groups")}
        for dim in DIMS:
            groups[dim] = await get(f"/api/v1/groups?dim={dim}")
        async with http.get(base + "/metrics") as response:
            metrics = group_sims(await response.text())
        status = await get("/api/v1/status")
    return groups, metrics, status


async def run_replicas(tmp: Path) -> Outcome:
    lines, inventory = fleet(tmp)
    broker = Mosquitto(tmp / "broker")
    await asyncio.to_thread(broker.start)
    shards = [
        Replica(
            f"shard{k}",
            f"sims/{k}/records",
            [r for r in inventory if shard_of(r.iccid, SHARDS) == k],
            shard=k,
        )
        for k in range(SHARDS)
    ]
    reference = Replica("reference", REFERENCE_TOPIC, inventory)
    replicas = [*shards, reference]
    tasks = []
    try:
        for replica in replicas:
            replica.port = free_port()
            http = HttpSettings(port=replica.port, auth="off")
            mqtt = MqttSourceSettings(
                name=f"mqtt:{replica.name}",
                port=broker.port,
                topics=[replica.topic],
                client_id=f"simwatch-{replica.name}",
            )
            settings = Settings(
                engine=EngineSettings(dead_letter_file=tmp / f"{replica.name}-dl.ndjson"),
                http=http,
                sources=SourcesSettings(mqtt=[mqtt]),
            )
            replica.source = MqttSource(mqtt)
            daemon = Daemon(settings, [replica.source], inventory=replica.inventory, clock=clock)
            replica.daemon = daemon
            if replica.shard is not None:
                daemon.on_cycle.append(collect_reports(replica))

            def http_task(d: Daemon = daemon, h: HttpSettings = http) -> Awaitable[None]:
                return serve(d, h, frozenset())

            tasks.append(asyncio.create_task(daemon.run(extra_tasks=[("http", http_task)])))

        sources = [r.source for r in replicas if r.source is not None]
        await until(lambda: all(s.stats.connected for s in sources), WAIT_S, "sources connected")
        await publish(broker.port, lines, shards)
        reference.sent = sum(s.sent for s in shards)
        await until(
            lambda: all(
                r.source is not None and r.source.stats.received >= r.sent for r in replicas
            ),
            WAIT_S,
            "every record ingested",
        )
        await until(
            lambda: all(
                r.daemon is not None and r.daemon.health.last_evaluation_at == FINAL_EVAL
                for r in replicas
            ),
            WAIT_S,
            "the last cycle evaluated everywhere",
        )
        groups, metrics, status = {}, {}, {}
        for replica in replicas:
            groups[replica.name], metrics[replica.name], status[replica.name] = await read_api(
                replica
            )
    finally:
        for replica in replicas:
            if replica.daemon is not None:
                replica.daemon.request_stop()
        for task in tasks:
            await asyncio.wait_for(task, 10)
        await asyncio.to_thread(broker.stop)
    return Outcome(shards, reference, groups, metrics, status)


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    return asyncio.run(run_replicas(tmp_path_factory.mktemp("replicas")))


# ---- helpers over the API bodies -----------------------------------------------------


def group_key(dims: dict[str, str]) -> frozenset[tuple[str, str]]:
    return frozenset(dims.items())


def counts(body: Any) -> Counter[tuple[frozenset[tuple[str, str]], str]]:
    """(group, state) -> SIMs, from one /api/v1/groups body (``unassigned`` included)."""
    out: Counter[tuple[frozenset[tuple[str, str]], str]] = Counter()
    for group in [*body["groups"], {"dims": {"_": "unassigned"}, **body["unassigned"]}]:
        for state, n in group["states"].items():
            if n:
                out[group_key(group["dims"]), state] += n
    return out


def leaf_counts(table: LeafTable) -> dict[tuple[str, ...], tuple[float, float, float]]:
    """Leaf values -> (total, overdue, expected), leaves with counted SIMs only."""
    out = {}
    for i, codes in enumerate(table.codes.tolist()):
        if table.total[i] > 0:
            values = tuple(table.labels[d][c] for d, c in enumerate(codes))
            out[values] = (
                float(table.total[i]),
                float(table.affected[i]),
                float(table.expected[i]),
            )
    return out


def reference_table(engine: Engine) -> LeafTable:
    report = shard_report(engine, 0, 1)  # the whole fleet is one shard of one
    assert report is not None
    return merge_reports([report], 1).table


def final_reports(outcome: Outcome) -> list[ShardReport]:
    return [s.reports[FINAL_EVAL] for s in outcome.shards]


def pages(incidents: list[Incident]) -> list[Incident]:
    return [i for i in incidents if i.severity == "page"]


# ---- the tests -----------------------------------------------------------------------


def test_every_sim_is_in_exactly_one_shard(outcome: Outcome) -> None:
    ref = outcome.reference.engine.state
    seen: Counter[str] = Counter()
    for shard in outcome.shards:
        state = shard.engine.state
        iccids = state.index.iccids()
        assert all(shard_of(i, SHARDS) == shard.shard for i in iccids), shard.name
        seen.update(iccids)
    assert set(seen) == set(ref.index.iccids())
    assert max(seen.values()) == 1
    # and both halves are about half
    sizes = [outcome.status[s.name]["sims"] for s in outcome.shards]
    assert sum(sizes) == outcome.status["reference"]["sims"]
    assert min(sizes) > 0.4 * sum(sizes)


def test_all_three_evaluated_the_same_instant(outcome: Outcome) -> None:
    for name, status in outcome.status.items():
        assert status["evaluated_at"] == "2026-11-04T12:00:00Z", name
        assert status["warmed_up"] is True, name
    # the fault is on: the reference has SIMs overdue, so the comparison is not trivial
    states = outcome.status["reference"]["states"]
    assert states["late"] + states["silent"] >= 30


@pytest.mark.parametrize("dim", [None, *DIMS])
def test_api_group_counts_of_the_shards_sum_to_the_reference(
    outcome: Outcome, dim: str | None
) -> None:
    summed: Counter[tuple[frozenset[tuple[str, str]], str]] = Counter()
    for shard in outcome.shards:
        summed.update(counts(outcome.groups[shard.name][dim]))
    reference = counts(outcome.groups["reference"][dim])
    assert summed == reference
    assert len(reference) > 10  # many groups, several states


def test_metrics_group_sims_of_the_shards_sum_to_the_reference(outcome: Outcome) -> None:
    summed: Counter[tuple[str, str, str]] = Counter()
    for shard in outcome.shards:
        summed.update(outcome.metrics[shard.name])
    reference = outcome.metrics["reference"]
    assert not any(value == "_other" for _, value, _ in reference)  # top_n holds every value
    assert +summed == +reference
    assert reference["partner", "26201", "late"] + reference["partner", "26201", "silent"] > 0


def test_merged_leaf_counts_equal_the_reference(outcome: Outcome) -> None:
    merged = merge_reports(final_reports(outcome), SHARDS)
    assert merged.complete
    assert merged.missing == merged.stale == merged.warming == ()
    assert merged.outliers == ()
    mine = leaf_counts(merged.table)
    ref = leaf_counts(reference_table(outcome.reference.engine))
    assert mine.keys() == ref.keys()
    for leaf, (total, overdue, _) in ref.items():
        assert mine[leaf][:2] == (total, overdue), leaf  # per-SIM facts: exact
    # expected: each shard's own baseline for its part; close to the one-node baseline
    mine_e = sum(e for *_, e in mine.values())
    ref_e = sum(e for *_, e in ref.values())
    assert mine_e == pytest.approx(ref_e, rel=0.25)


def test_localization_on_merged_counts_names_the_reference_cause(outcome: Outcome) -> None:
    reference = outcome.reference.engine.last_evaluation
    assert reference is not None
    assert [c.dims for c in reference.causes] == [FAULT]
    causes = localize(merge_reports(final_reports(outcome), SHARDS).table)
    assert [c.dims for c in causes] == [FAULT]
    assert causes[0].affected == reference.causes[0].affected
    assert causes[0].total == reference.causes[0].total


def test_merger_opens_one_incident_like_the_reference(outcome: Outcome) -> None:
    instants = sorted(set.intersection(*(set(s.reports) for s in outcome.shards)))
    assert instants[0] == REPORTS_FROM
    assert instants[-1] == FINAL_EVAL
    merger = Merger(SHARDS)
    for at in instants:
        cycle = merger.cycle([s.reports[at] for s in outcome.shards], at=at)
        assert cycle.decided
        assert cycle.merged.outliers == ()
    merged_pages = pages(merger.incidents.all())
    reference_pages = pages(outcome.reference.engine.incidents.all())
    assert [p.dims for p in merged_pages] == [FAULT]
    assert [p.dims for p in reference_pages if p.opened_at >= REPORTS_FROM] == [FAULT]
    reference_page = next(p for p in reference_pages if p.dims == FAULT)
    assert merged_pages[0].state == reference_page.state == "open"
    assert FAULT_START < merged_pages[0].opened_at <= FAULT_START + 45 * 60
    assert abs(merged_pages[0].opened_at - reference_page.opened_at) <= 5 * 60


def test_each_shard_alone_pages_for_its_half_with_the_same_id(outcome: Outcome) -> None:
    # Why shards must not page on their own: each finds the fault on its half of the
    # fleet and numbers it by itself, so two pages for one fault share one incident id.
    own = [pages(s.engine.incidents.all()) for s in outcome.shards]
    assert [[(p.id, p.dims) for p in mine] for mine in own] == [[("inc-0001", FAULT)]] * SHARDS
    reference = next(p for p in pages(outcome.reference.engine.incidents.all()) if p.dims == FAULT)
    assert sum(mine[0].affected for mine in own) == reference.affected
    assert sum(mine[0].total for mine in own) == reference.total


def test_a_stalled_shard_is_an_outlier_not_a_fleet_outage(outcome: Outcome) -> None:
    good, stalled = final_reports(outcome)
    # shard 1's feed stopped long ago: every SIM it counts is overdue
    dead = replace(
        stalled,
        leaves=tuple(
            LeafCounts(leaf.values, leaf.total, leaf.total, leaf.expected)
            for leaf in stalled.leaves
        ),
    )
    naive = localize(merge_reports([good], SHARDS).table)  # shard 0 alone still sees 26201
    assert [c.dims for c in naive] == [FAULT]
    summed = LeafTable.from_rows(
        DIMS,
        [
            (leaf.values, leaf.overdue, leaf.total, leaf.expected)
            for report in (good, dead)
            for leaf in report.leaves
        ],
    )
    assert {} in [c.dims for c in localize(summed)]  # a plain sum: a fleet-wide outage
    merged = merge_reports([good, dead], SHARDS)
    assert [o.shard for o in merged.outliers] == [1]
    assert merged.included == (0,)
    assert [c.dims for c in localize(merged.table)] == [FAULT]
    cycle = Merger(SHARDS).cycle([good, dead])
    assert not cycle.decided  # fewer usable shards than min_shards: nothing changes
    assert Merger(SHARDS, min_shards=1).cycle([good, dead]).decided
