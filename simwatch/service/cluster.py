"""``[cluster]``: this daemon as one shard of a cluster coordinated through NATS JetStream.

Two key-value buckets (docs/scaling.md, "The cluster"):

- ``<bucket>-leases``, whose entries expire ``lease_s`` after their last write (the
  bucket's TTL; nats-server 2.9 has no per-key TTL): ``node.<name>`` renewed by every
  node every ``lease_s / 3`` (a node that stops renewing is gone), and ``leader``, taken
  with ``create`` (only if absent) and renewed with a revision-checked ``update``: two
  nodes can never both renew it, and a leader that fails to renew steps down.
- ``<bucket>-state``, kept: ``assignment`` (partition -> node, written by the leader with
  ``core.cluster.assign``: sticky, a dead node's partitions go to the least loaded),
  ``report.<name>`` (each node's per-leaf counts after every cycle, ``core.merge``), and
  ``incidents`` (the leader's group incidents and id counter after every cycle).

Every node reads the ``assignment`` and tells its JetStream source which partitions to
read (``NatsSource.assign``). Every ``checkpoint.interval_s`` it puts a snapshot of each
partition it reads into the object store ``<bucket>-partitions`` (``service.handoff``);
a partition new to the node starts from that snapshot (its SIMs merged, only the stream
after its sequence replayed) when it covers more than the node's own checkpoint, else
from the checkpoint's position, else from the start of the stream (retention). The
SIMs of every partition the node does not read are away there (``Flag.AWAY``: inactive,
never counted in a group), so a partition that moved, a checkpoint from another
assignment or a whole inventory count nothing twice.

The leader, after each of its cycles, waits up to half an interval for every assigned
node's report of the same instant, merges them and localizes once
(``core.cluster.merge_cycle``); its engine applies those causes at its next cycle (one
evaluation step later) to its group incidents, which its Alertmanager sink pages. Other
nodes never open group incidents (``Engine.groups_local = False``); their Alertmanager
sinks send only their own SIMs' tickets. A node that becomes leader adopts the
``incidents`` entry (same ids, same labels: Alertmanager sees the alerts it knows and
notifies nothing new); a node that steps down forgets its group incidents without
resolving them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Final

import nats
import nats.errors
import nats.js.errors
import orjson
from nats.js import api

from simwatch.core.cluster import (
    LeaderGroup,
    assign,
    fleet_heard,
    foreign_rows,
    leader_entry,
    leader_groups,
    leader_merge,
    members,
    owned_by,
)
from simwatch.core.merge import ShardReport, shard_report
from simwatch.http.views import ViewError, sim_view
from simwatch.service import handoff
from simwatch.shell import nats as natsconn
from simwatch.shell.health import ClusterStats
from simwatch.shell.logs import FailureLog
from simwatch.shell.tasks import raise_if_cancelled
from simwatch.sinks.alertmanager import AlertmanagerSink
from simwatch.sources.nats import NatsSource, partition_of

if TYPE_CHECKING:
    from collections.abc import Callable

    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.js.client import JetStreamContext
    from nats.js.kv import KeyValue
    from nats.js.object_store import ObjectStore

    from simwatch.core.engine import CycleResult
    from simwatch.service.daemon import Daemon
    from simwatch.shell.settings.nats import ClusterSettings

log = logging.getLogger("simwatch")

LEADER_KEY: Final = "leader"
ASSIGNMENT_KEY: Final = "assignment"
INCIDENTS_KEY: Final = "incidents"


class ClusterNode:
    """One node's part in the cluster: leases, assignment, reports, the leader's merge."""

    def __init__(
        self,
        settings: ClusterSettings,
        daemon: Daemon,
        source: NatsSource,
        *,
        api: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.daemon = daemon
        self.source = source
        self.api = api
        self.clock = clock
        self.stats = ClusterStats(node=settings.node)
        self._leader_revision = 0
        self._assignment: dict[int, str] = {}
        self._set_aside = False  # the SIMs of other nodes' partitions marked away once
        self._nc: Client | None = None
        self._report: ShardReport | None = None
        # the leader's group incidents (``core.cluster.leader_groups``) and the revision
        # of the ``incidents`` entry they come from
        self._groups: tuple[LeaderGroup, ...] = ()
        self._incidents_revision = 0
        self._incidents_entry: object = None  # the leader's last entry read (``leader_entry``)
        self._reported = asyncio.Event()
        self._failure = FailureLog(log, "cluster")
        self._interval = daemon.settings.engine.eval_interval_s
        self._since_start = clock()
        # per-partition snapshots (service.handoff): the object store, what was put
        self._store: ObjectStore | None = None
        self._rows = handoff.PartitionRows(source.settings.partitions)
        self._published: dict[int, int] = {}  # partition -> sequence of its last snapshot
        self._left: dict[int, int] = {}  # partition moved away -> the last sequence applied
        self._listed: dict[str, float] = {}  # node -> when its lease was last listed
        self._snapshot_every = daemon.settings.checkpoint.interval_s
        source.assign({})  # nothing until the cluster's assignment says so
        daemon.on_cycle.insert(0, self._on_cycle)

    @property
    def name(self) -> str:
        return self.settings.node

    # ---- after every cycle (on the loop, synchronous) ---------------------------------------

    def _on_cycle(self, result: CycleResult) -> None:
        engine = self.daemon.engine  # replaced by a checkpoint restore: read it each time
        engine.groups_local = False
        engine.leader_groups = () if self.stats.leader else self._groups
        if not self.stats.leader:  # the leader sets its own at each merge
            # what the fleet heard of each group at the leader's last merge, for the next
            # cycle; none once the leader stopped merging for three intervals
            now = result.evaluation.now
            engine.heard_elsewhere = fleet_heard(self._incidents_entry, now, 3 * self._interval)
        self._report = shard_report(engine, 0, 1)
        self._reported.set()

    # ---- the tasks ---------------------------------------------------------------------------

    async def run(self) -> None:
        cfg = self.settings
        nc = await natsconn.connect(
            cfg.servers, f"simwatch cluster {cfg.node}", error_cb=self._on_error
        )
        self._nc = nc
        try:
            js = nc.jetstream()
            leases = await _bucket(js, f"{cfg.bucket}-leases", ttl=cfg.lease_s)
            state = await _bucket(js, f"{cfg.bucket}-state", ttl=None)
            self._store = await _object_store(js, f"{cfg.bucket}-partitions")
            engine = self.daemon.engine
            engine.groups_local = False
            if not self.stats.leader:  # a checkpoint of a former leader: the leader has them
                engine.incidents.drop_groups()
            await nc.subscribe(self._sim_subject(self.name), cb=self._answer_sim)
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._lease_loop(leases, state), name="cluster:leases")
                tg.create_task(self._report_loop(state), name="cluster:reports")
                tg.create_task(self._snapshot_loop(), name="cluster:snapshots")
        finally:
            self._nc = None
            if self.stats.leader:
                self._step_down("shutting down")
            await natsconn.close(nc, "cluster")

    async def _on_error(self, exc: Exception) -> None:
        self._failure.failed(f"NATS error: {exc or type(exc).__name__}", hint="reconnecting")

    async def _lease_loop(self, leases: KeyValue, state: KeyValue) -> None:
        tick = self.settings.lease_s / 3
        while True:
            raise_if_cancelled()  # a publish may have swallowed a cancellation (shell.tasks)
            try:
                await self._tick(leases, state)
            except (nats.errors.Error, nats.js.errors.Error, OSError) as exc:
                self._failure.failed(f"{type(exc).__name__}: {exc}", hint="retrying")
            else:
                self._failure.recovered()
            await asyncio.sleep(tick)

    async def _tick(self, leases: KeyValue, state: KeyValue) -> None:
        now = self.clock()
        me = orjson.dumps({"node": self.name, "api": self.api, "at": now})
        await leases.put(f"node.{self.name}", me)
        await self._elect(leases, state)
        try:
            keys = await leases.keys()
        except nats.js.errors.NoKeysError:
            keys = []
        self._listed = members(self._listed, keys, now, self.settings.lease_s)
        nodes = sorted(self._listed)
        self.stats.nodes = nodes
        current, revision = await _json_entry(state, ASSIGNMENT_KEY)
        assignment = _assignment(current)
        if self.stats.leader:
            wanted = assign(self.source.settings.partitions, nodes, assignment)
            settled = len(nodes) >= self.settings.min_nodes or (
                now - self._since_start >= 3 * self.settings.lease_s
            )
            if wanted != assignment and (settled or assignment):
                value = orjson.dumps({"partitions": {str(p): n for p, n in wanted.items()}})
                try:
                    await state.update(ASSIGNMENT_KEY, value, last=revision)
                except nats.js.errors.KeyWrongLastSequenceError:
                    return  # another leader wrote meanwhile: read again next tick
                log.info("cluster: partitions assigned over %s", ", ".join(nodes))
                assignment = wanted
        self._assignment = assignment
        mine = owned_by(assignment, self.name)
        if assignment and (mine != sorted(self.source.partitions) or not self._set_aside):
            # a partition new here starts from its snapshot when that covers more than
            # this node's checkpoint, else from the checkpoint, else from the stream's start
            for gone in self.source.partitions - set(mine):
                left = self.source.applied(gone)
                if left is not None:  # its SIMs here stay as they were at this sequence
                    self._left[gone] = left
            await self._take_over([p for p in mine if p not in self.source.partitions])
            self.source.assign(dict.fromkeys(mine, 0))
            await self._set_aside_foreign(mine)
            log.info("cluster: this node reads partitions %s", mine)
        self.stats.partitions = mine
        if not self.stats.leader:
            await self._follow_incidents(state)

    async def _follow_incidents(self, state: KeyValue) -> None:
        """The leader's group incidents, for this node's next cycles: its groups' baselines
        do not learn an open one's fault, its SIMs silent since before a fault's end wait
        for their report (as on one node), and its SIM views and tickets name the open
        one that covers them (the tickets are relabelled at the next cycle when the open
        ones change, so the inhibit rule mutes them); what the fleet heard of each group
        judges its session-level groups' darkness (``_on_cycle``)."""
        try:
            entry = await state.get(INCIDENTS_KEY)
        except nats.js.errors.KeyNotFoundError:
            return
        revision = entry.revision or 0
        if revision == self._incidents_revision:
            return
        self._incidents_revision = revision
        try:
            data = orjson.loads(entry.value or b"null")
        except orjson.JSONDecodeError:
            return
        before = _open_ids(self._groups)
        self._groups = leader_groups(data)
        self.daemon.engine.leader_groups = self._groups
        self._incidents_entry = data
        if _open_ids(self._groups) != before:
            for sink in self.daemon.sinks:
                if isinstance(sink, AlertmanagerSink):
                    sink.refresh()

    async def _set_aside_foreign(self, mine: list[int]) -> None:
        """SIMs of partitions another node reads are away here (inactive, never counted):
        those of a checkpoint from another assignment, of the whole inventory, of a
        partition that moved away. A partition that comes back brings its SIMs back."""
        state = self.daemon.engine.state
        iccids = state.index.iccids()
        partitions = self.source.settings.partitions
        rows = await asyncio.to_thread(foreign_rows, iccids, partitions, mine)
        engine = self.daemon.engine
        if engine.state is state:  # not replaced by a restore meanwhile
            changed = state.set_away(rows)
            self._set_aside = True
            if changed:
                log.info("cluster: %d SIMs of other nodes' partitions set aside", len(rows))

    # ---- per-partition snapshots (service.handoff) ------------------------------------------

    async def _snapshot_loop(self) -> None:
        while True:
            raise_if_cancelled()  # a publish may have swallowed a cancellation (shell.tasks)
            await asyncio.sleep(self._snapshot_every)
            try:
                await self.publish_snapshots()
                if self.stats.leader:
                    await self.publish_noise()
            except (nats.errors.Error, nats.js.errors.Error, OSError) as exc:
                self._failure.failed(f"partition snapshot: {exc}", hint="retrying")

    async def publish_noise(self) -> bool:
        """As the leader: put what it learned of each leaf's noise on the merged counts
        (``handoff.NOISE_OBJECT``) for the next leader; whether it was put."""
        store = self._store
        if store is None:
            return False
        exported = self.daemon.engine.merged_noise.export()  # on the loop, where it learns
        data = await asyncio.to_thread(
            handoff.encode_noise, exported, node=self.name, at=self.clock()
        )
        await store.put(handoff.NOISE_OBJECT, data)
        return True

    async def _adopt_noise(self) -> None:
        """As the new leader: carry on the last leader's learning of each leaf's noise
        (none stored, or unusable: this node's own, from its checkpoint or afresh)."""
        store = self._store
        if store is None:
            return
        try:
            found = await store.get(handoff.NOISE_OBJECT)
        except nats.js.errors.ObjectNotFoundError:
            return
        except (nats.errors.Error, nats.js.errors.Error, OSError) as exc:
            log.warning("cluster: the last leader's noise learning is unreadable: %s", exc)
            return
        engine = self.daemon.engine
        try:
            noise, at = await asyncio.to_thread(
                handoff.decode_noise, found.data or b"", engine.config.baseline
            )
        except ValueError as exc:
            log.warning("cluster: the last leader's noise learning is unusable: %s", exc)
            return
        engine.merged_noise = noise
        log.info(
            "cluster: carrying on the noise of %d leaves the last leader learned (%.0f s old)",
            len(noise.index),
            self.clock() - at,
        )

    async def publish_snapshots(self) -> int:
        """Put the snapshot of every partition read whose position moved since its last
        one; how many were put."""
        store = self._store
        if store is None:
            return 0
        daemon = self.daemon
        await asyncio.to_thread(self._rows.update, daemon.engine.state)  # most of it unlocked
        async with daemon._batch_lock:  # noqa: SLF001 - rows and positions of one instant
            positions = {
                p: seq
                for p in self.source.partitions
                if (seq := self.source.applied(p)) is not None and seq != self._published.get(p)
            }
            if not positions:
                return 0
            state = daemon.engine.state
            snapshots = await asyncio.to_thread(handoff.take, state, self._rows, positions)
        at = self.clock()
        for snapshot in snapshots:
            if snapshot.partition not in self.source.partitions:
                continue  # moved away meanwhile: its new owner puts it from now on
            data = await asyncio.to_thread(snapshot.encode, node=self.name, at=at)
            await store.put(handoff.object_name(snapshot.partition), data)
            self._published[snapshot.partition] = snapshot.sequence
            self.stats.snapshot_bytes = len(data)
            log.debug(
                "cluster: snapshot of partition %d at sequence %d (%d SIMs, %d bytes)",
                snapshot.partition,
                snapshot.sequence,
                snapshot.sims,
                len(data),
            )
        return len(snapshots)

    async def _take_over(self, partitions: list[int]) -> None:
        """Merge the snapshot of each partition new here that covers more of its stream
        than this node's own position, and start the partition after its sequence.

        A partition that comes back to this node while the process ran starts from
        where it left (its SIMs here are as they were then, and the dedup memory knows
        their records) unless the snapshot is newer."""
        store = self._store
        if store is None or not partitions:
            return
        for partition in partitions:
            left = self._left.pop(partition, None)
            if left is not None and self.source.applied(partition) is None:
                self.source.restore({str(partition): left})
            try:
                found = await store.get(handoff.object_name(partition))
            except nats.js.errors.ObjectNotFoundError:
                continue  # never published: from the checkpoint or the stream's start
            try:
                snapshot = await asyncio.to_thread(
                    handoff.PartitionSnapshot.decode, found.data or b""
                )
            except ValueError as exc:
                log.error("cluster: partition %d's snapshot is unusable: %s", partition, exc)  # noqa: TRY400 - the reason is the message
                continue
            own = self.source.applied(partition)
            if snapshot.partition != partition or (own is not None and own >= snapshot.sequence):
                continue
            daemon = self.daemon
            async with daemon._batch_lock:  # noqa: SLF001 - no batch between rows and position
                state = daemon.engine.state
                try:
                    sims = await asyncio.to_thread(
                        handoff.merge, state, snapshot, self.source.settings.partitions
                    )
                except (ValueError, TypeError, KeyError) as exc:
                    log.error("cluster: partition %d's snapshot does not fit: %s", partition, exc)  # noqa: TRY400 - the reason is the message
                    continue
                self.source.restore({str(partition): snapshot.sequence})
            self._published.pop(partition, None)  # put it again, as the new owner's
            self.stats.snapshots_loaded += 1
            log.warning(
                "cluster: partition %d taken over from %s's snapshot: %d SIMs, "
                "replaying after sequence %d",
                partition,
                snapshot.meta.get("node"),
                sims,
                snapshot.sequence,
            )

    async def _elect(self, leases: KeyValue, state: KeyValue) -> None:
        value = self.name.encode()
        if self.stats.leader:
            try:
                self._leader_revision = await leases.update(
                    LEADER_KEY, value, last=self._leader_revision
                )
            except nats.js.errors.KeyWrongLastSequenceError:
                self._step_down("its lease was taken over")
            return
        try:
            self._leader_revision = await leases.create(LEADER_KEY, value)
        except nats.js.errors.KeyWrongLastSequenceError:
            with contextlib.suppress(nats.js.errors.KeyNotFoundError):
                entry = await leases.get(LEADER_KEY)
                self.stats.leader_name = (entry.value or b"").decode() or None
            return
        await self._become_leader(state)

    async def _become_leader(self, state: KeyValue) -> None:
        engine = self.daemon.engine
        data, _revision = await _json_entry(state, INCIDENTS_KEY)
        # everything read before the incidents show: the API answers between two awaits
        await self._adopt_noise()
        if isinstance(data, dict):
            try:
                engine.incidents.adopt_groups(data)
            except ValueError:
                log.exception("cluster: the stored incidents are unreadable; starting afresh")
        engine.external_causes = None
        engine.external_merged = None
        engine.leader_groups = self._groups = ()  # its own incidents are them now
        self.stats.leader = True
        self.stats.leader_name = self.name
        self.stats.became_leader_at = self.clock()
        for sink in self.daemon.sinks:
            if isinstance(sink, AlertmanagerSink):
                sink.refresh()  # page what is open at the next cycle, same labels
        opened = [i.id for i in engine.incidents.open.values() if i.kind == "group"]
        log.warning(
            "cluster: %s is the leader now (group incidents carried on: %s)",
            self.name,
            ", ".join(opened) or "none",
        )

    def _step_down(self, why: str) -> None:
        self.stats.leader = False
        self.daemon.engine.incidents.drop_groups()
        self.daemon.engine.external_causes = None
        self.daemon.engine.external_merged = None
        self._incidents_revision = 0  # follow the next leader's from its first write
        for sink in self.daemon.sinks:
            if isinstance(sink, AlertmanagerSink):
                sink.drop_groups()
        log.warning("cluster: %s is no longer the leader (%s)", self.name, why)

    async def _report_loop(self, state: KeyValue) -> None:
        while True:
            raise_if_cancelled()  # a publish may have swallowed a cancellation (shell.tasks)
            await self._reported.wait()
            self._reported.clear()
            report = self._report
            if report is None:
                continue
            try:
                # the report is frozen once built: its wire form off the loop (a few ms
                # for a large leaf table)
                payload = await asyncio.to_thread(_wire, report)
                await state.put(f"report.{self.name}", payload)
                if self.stats.leader:
                    await self._merge(state, report.evaluated_at)
                    # after the merge: with the recovery onsets it set, which the other
                    # nodes apply at their next cycle
                    if self.stats.leader:
                        entry = leader_entry(self.daemon.engine, report.evaluated_at)
                        await state.put(INCIDENTS_KEY, orjson.dumps(entry))
            except (nats.errors.Error, nats.js.errors.Error, OSError) as exc:
                self._failure.failed(f"{type(exc).__name__}: {exc}", hint="retrying")

    async def _merge(self, state: KeyValue, at: float) -> None:
        """Every assigned node's report for ``at`` merged; the causes for the next cycle."""
        started = time.perf_counter()
        deadline = self.clock() + self._interval / 2
        while True:
            current, _revision = await _json_entry(state, ASSIGNMENT_KEY)
            nodes = sorted(set(_assignment(current).values()))
            reports = {}
            for node in nodes:
                data, _ = await _json_entry(state, f"report.{node}")
                with contextlib.suppress(TypeError, ValueError):
                    reports[node] = ShardReport.from_json(data)
            if all(r.evaluated_at == at for r in reports.values()) and len(reports) == len(nodes):
                break
            if self.clock() >= deadline or self._reported.is_set():
                break
            await asyncio.sleep(min(0.1, self._interval / 20))
        started_merge = time.perf_counter()
        result = leader_merge(self.daemon.engine, reports, nodes, at)
        if not self.stats.leader:
            return
        # what the fleet heard of each group, for every node's next cycle (null unless
        # every node reported for this instant)
        self.daemon.engine.heard_elsewhere = result.merged.heard
        self.stats.last_merge_s = time.perf_counter() - started_merge
        # the causes for the next cycle (none without a decision); the open incidents'
        # recovery at once
        self.daemon.engine.apply_merge(result.merged, result.causes)
        if result.causes is None:
            self.stats.merges_incomplete += 1
            merged = result.merged
            log.info(
                "cluster: no decision at %.0f (missing %s, stale %s, warming %s, outliers %s)",
                at,
                [result.nodes[i] for i in merged.missing if i < len(result.nodes)],
                [result.nodes[i] for i in merged.stale if i < len(result.nodes)],
                [result.nodes[i] for i in merged.warming if i < len(result.nodes)],
                [result.nodes[o.shard] for o in merged.outliers if o.shard < len(result.nodes)],
            )
            return
        self.stats.merges += 1
        log.debug(
            "cluster: merged %d nodes in %.1f ms",
            len(nodes),
            1000 * (time.perf_counter() - started),
        )

    # ---- /api/v1/sims/{iccid} on any node ------------------------------------------------------

    def _sim_subject(self, node: str) -> str:
        return f"{self.settings.bucket}.sim.{node}"

    async def forward_sim(self, iccid: str) -> tuple[int, object] | None:
        """The owner's answer for a SIM of a partition another node reads; None when this
        node reads it (or the ICCID is malformed, or no assignment is known yet)."""
        if not iccid.isdigit() or not 18 <= len(iccid) <= 22:
            return None
        owner = self._assignment.get(partition_of(iccid, self.source.settings.partitions))
        nc = self._nc
        if owner is None or owner == self.name or nc is None:
            return None
        try:
            reply = await nc.request(self._sim_subject(owner), iccid.encode(), timeout=2.0)
            answer = orjson.loads(reply.data)
            return int(answer["status"]), answer["body"]
        except (nats.errors.Error, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            message = f"the node reading this SIM's partition ({owner}) does not answer"
            return 503, {"error": {"status": 503, "message": message}}

    async def _answer_sim(self, msg: Msg) -> None:
        iccid = msg.data.decode(errors="replace")
        try:
            body: object = sim_view(self.daemon.engine, iccid, self.clock())
            status = 200
        except ViewError as exc:
            status, body = exc.status, {"error": {"status": exc.status, "message": exc.message}}
        with contextlib.suppress(nats.errors.Error):
            await msg.respond(orjson.dumps({"status": status, "body": body, "node": self.name}))


def _wire(report: ShardReport) -> bytes:
    """A shard report's wire form (JSON bytes)."""
    return orjson.dumps(report.to_json())


def _assignment(data: object) -> dict[int, str]:
    partitions = data.get("partitions") if isinstance(data, dict) else None
    if not isinstance(partitions, dict):
        return {}
    return {
        int(p): n
        for p, n in partitions.items()
        if isinstance(p, str) and p.isdigit() and isinstance(n, str)
    }


async def _json_entry(kv: KeyValue, key: str) -> tuple[object, int]:
    """The key's JSON value and revision; (None, 0) when absent or not JSON."""
    try:
        entry = await kv.get(key)
    except nats.js.errors.KeyNotFoundError:
        return None, 0
    try:
        return orjson.loads(entry.value or b"null"), entry.revision or 0
    except orjson.JSONDecodeError:
        return None, entry.revision or 0


async def _bucket(js: JetStreamContext, name: str, *, ttl: float | None) -> KeyValue:
    try:
        return await js.key_value(name)
    except nats.js.errors.BucketNotFoundError:
        with contextlib.suppress(nats.js.errors.BadRequestError):  # another node was first
            return await js.create_key_value(
                config=api.KeyValueConfig(bucket=name, history=1, ttl=ttl)
            )
        return await js.key_value(name)


async def _object_store(js: JetStreamContext, name: str) -> ObjectStore:
    try:
        return await js.object_store(name)
    except nats.js.errors.BucketNotFoundError:
        with contextlib.suppress(nats.js.errors.BadRequestError):  # another node was first
            return await js.create_object_store(name)
        return await js.object_store(name)


def cluster_node(daemon: Daemon, api_url: str) -> ClusterNode | None:
    """The cluster part of ``simwatch run`` (None without ``[cluster] enabled``)."""
    cfg = daemon.settings.cluster
    if not cfg.enabled:
        return None
    source = next(
        (s for s in daemon.sources if isinstance(s, NatsSource) and s.stats.name == cfg.source),
        None,
    )
    if source is None:  # the settings check this; a guard for code that builds its own
        raise ValueError(f"cluster.source: no [[sources.nats]] named {cfg.source!r}")
    return ClusterNode(cfg, daemon, source, api=api_url)


def _open_ids(groups: tuple[LeaderGroup, ...]) -> frozenset[str]:
    """The ids of the leader's open group incidents (what a ticket's labels name)."""
    return frozenset(g.incident.id for g in groups if g.open and g.incident)


__all__ = ["ClusterNode", "ClusterStats", "cluster_node"]
