"""The MQTT sink against a real mosquitto on loopback (tests/mosquitto.py) and a real Engine.

Incident changes come from the engine itself: a SIM tagged ``vip`` that goes silent
raises a ticket (``severity=ticket``) after ``open_after`` cycles, and resolves
``close_after`` cycles after it reports again. Cycles are driven on a fake clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import ssl
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Self

import aiomqtt
import orjson
import pytest
from fleet import DAY, T0, Feed, inventory_row
from fleet import iccid as fleet_iccid
from mosquitto import Mosquitto, available, free_port, make_certs
from servers import until

from simwatch.core.engine import Engine, EngineConfig
from simwatch.core.timeutil import format_rfc3339
from simwatch.shell.settings import ConfigError, MqttSinkSettings, load_settings
from simwatch.shell.sink_contract import Cycle
from simwatch.sinks.mqtt import MqttSink

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from pathlib import Path

    from simwatch.core.incidents import IncidentChange

pytestmark = [
    pytest.mark.real_server,
    pytest.mark.skipif(not available(), reason="mosquitto is not installed"),
]

WAIT = 10.0  # the bound on every wait: a failure fails, it never hangs
WALL = T0 + 30 * DAY
ICCIDS = [fleet_iccid(k) for k in range(200)]
VIP = ICCIDS[0]


@dataclass
class Fleet:
    """Three SIMs reporting every 15 min for three days; the first is tagged vip."""

    engine: Engine = field(default_factory=lambda: Engine(replace(EngineConfig(), warmup_s=0.0)))
    minute: int = 0
    last: float = 0.0

    def __post_init__(self) -> None:
        self.engine.load_inventory(inventory_row(i) for i in ICCIDS[1:3])
        self.engine.load_inventory([inventory_row(VIP, tags=frozenset({"vip"}))])
        self.feed = Feed(self.engine, WALL)
        end = T0 + 3 * DAY
        t = T0
        while t < end:
            for i, iccid in enumerate(ICCIDS[:3]):
                self.feed.usage(iccid, t + i)
            t += 900.0
        self.last = end - 900.0 + 3

    def cycles(
        self, sinks: list[MqttSink], minutes: int, *, live: bool = True, vip_reports: bool = False
    ) -> list[tuple[IncidentChange, dict[str, object]]]:
        """One cycle a minute; the vip SIM is silent unless ``vip_reports``.

        Returns each incident change with the incident's JSON as it was at that cycle.
        """
        changes = []
        for _ in range(minutes):
            now = self.last + self.minute * 60
            if self.minute % 15 == 0:
                for iccid in ICCIDS[1:3] if not vip_reports else ICCIDS[:3]:
                    self.feed.usage(iccid, now)
            result = self.engine.evaluate(now)
            changes += [(c, c.incident.to_json()) for c in result.changes]
            for sink in sinks:
                sink.on_cycle(Cycle(self.engine, result, now, live))
            self.minute += 1
        return changes


# ---- subscriber, sink helpers (the broker: conftest's ``broker``) ---------------------------


def settings_for(port: int, **overrides: object) -> MqttSinkSettings:
    values: dict[str, object] = {
        "port": port,
        "client_id": "simwatch-sink-test",
        "reconnect_min_s": 0.05,
        "reconnect_max_s": 0.2,
    }
    values.update(overrides)
    return MqttSinkSettings.model_validate(values)


@contextlib.asynccontextmanager
async def running(sink: MqttSink) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(sink.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, WAIT)


@dataclass(frozen=True)
class Got:
    topic: str
    payload: bytes
    retain: bool

    def json(self) -> object:
        return orjson.loads(self.payload)


class Subscriber:
    """Subscribes to ``simwatch/#`` (QoS 1) and collects everything that arrives."""

    def __init__(
        self,
        port: int,
        *,
        identifier: str = "watcher",
        clean_session: bool = True,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.client = aiomqtt.Client(
            "127.0.0.1",
            port,
            identifier=identifier,
            clean_session=clean_session,
            tls_context=tls_context,
            timeout=WAIT,
        )
        self.got: list[Got] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        await self.client.__aenter__()
        await self.client.subscribe("simwatch/#", qos=1)
        self._task = asyncio.create_task(self._collect())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.client.__aexit__(None, None, None)

    async def _collect(self) -> None:
        async for message in self.client.messages:
            payload = message.payload
            assert isinstance(payload, bytes)
            self.got.append(Got(str(message.topic), payload, message.retain))

    def on(self, topic: str) -> list[Got]:
        return [g for g in self.got if g.topic == topic]

    async def wait(self, predicate: Callable[[Subscriber], bool]) -> None:
        """Poll until what arrived satisfies ``predicate``, at most ``WAIT`` s."""
        await until(lambda: predicate(self), WAIT, "the messages")


async def make_session(port: int, identifier: str) -> None:
    """A persistent subscription: the broker queues QoS 1 messages for it while it is away."""
    async with Subscriber(port, identifier=identifier, clean_session=False):
        pass


def sim_topic(iccid: str) -> str:
    return f"simwatch/sims/{iccid}/state"


# ---- against a broker ----------------------------------------------------------------------


async def test_incident_events_current_and_state_changes_reach_a_subscriber(
    broker: Mosquitto,
) -> None:
    fleet = Fleet()
    sink = MqttSink(settings_for(broker.port), password=None, clock=lambda: WALL)
    assert (sink.stats.name, sink.stats.kind) == ("mqtt", "mqtt")
    async with Subscriber(broker.port) as sub, running(sink):
        await until(lambda: sink.stats.up, WAIT)
        opened = fleet.cycles([sink], 90)  # the vip SIM goes late, silent: a ticket opens
        assert [c.kind for c, _ in opened] == ["opened"]
        await sub.wait(lambda s: len(s.on("simwatch/incidents/events")) == 1)
        await sub.wait(lambda s: len(s.on("simwatch/incidents/current")) == 1)
        resolved = fleet.cycles([sink], 10, vip_reports=True)  # it reports: resolved
        assert [c.kind for c, _ in resolved] == ["resolved"]
        await sub.wait(lambda s: len(s.on("simwatch/incidents/events")) == 2)
        await sub.wait(lambda s: len(s.on("simwatch/incidents/current")) == 2)
        await sub.wait(lambda s: len(s.on(sim_topic(VIP))) == 4)
        await until(lambda: sink.stats.buffered == 0, WAIT)

    events = [g.json() for g in sub.on("simwatch/incidents/events")]
    assert events == [
        {"event": change.kind, "at": format_rfc3339(change.at), "incident": doc}
        for change, doc in opened + resolved
    ]
    ticket = events[0]["incident"]  # type: ignore[index]
    assert ticket["severity"] == "ticket"
    assert ticket["iccid"] == VIP
    assert ticket["state"] == "open"
    assert events[1]["incident"]["state"] == "resolved"  # type: ignore[index]
    # current: [ticket] after it opened, [] after it resolved. Cycles that ran before the
    # sender had a turn share one snapshot: only the newest is published (the first live
    # cycle's [] was superseded by [ticket] before it went out).
    assert [g.json() for g in sub.on("simwatch/incidents/current")] == [[ticket], []]
    # per-SIM: never_seen -> ok at the first cycle, then ok -> late -> silent -> ok
    vip = [g.json() for g in sub.on(sim_topic(VIP))]
    assert [(m["previous"], m["state"]) for m in vip] == [  # type: ignore[index]
        ("never_seen", "ok"),
        ("ok", "late"),
        ("late", "silent"),
        ("silent", "ok"),
    ]
    row = fleet.engine.state.row(VIP)
    assert vip[2] == {
        **fleet.engine.sim_dims(row),  # apn, country, partner
        "iccid": VIP,
        "state": "silent",
        "previous": "late",
        "at": vip[2]["at"],  # type: ignore[index]
        "incident": None,  # no group incident contains it
    }
    assert fleet.engine.sim_dims(row) == {"apn": "meters.acme", "country": "DE", "partner": "26202"}
    assert all(not g.retain for g in sub.got)  # delivered live: the retain flag is cleared
    assert [g.payload for g in sub.on("simwatch/status")] == [b"online"]
    others = {ICCIDS[1], ICCIDS[2]}
    assert {g.topic for g in sub.got if g.topic.startswith("simwatch/sims/")} == {
        sim_topic(i) for i in {VIP, *others}
    }
    stats = sink.stats
    assert stats.sent == 2 + 2 + 4 + 2  # events, snapshots, vip states, the others' first
    assert (stats.errors, stats.dropped, stats.buffered) == (0, 0, 0)
    assert stats.last_success == WALL
    assert stats.last_error is None


async def test_backlog_publishes_nothing_then_current_once_live(broker: Mosquitto) -> None:
    fleet = Fleet()
    sink = MqttSink(settings_for(broker.port), password=None)
    # The whole story happens in a backlog replayed on event time: nothing is queued.
    assert [c.kind for c, _ in fleet.cycles([sink], 90, live=False)] == ["opened"]
    assert sink.stats.buffered == 0
    assert (sink.stats.dropped, sink.stats.sent) == (0, 0)
    async with Subscriber(broker.port) as sub, running(sink):
        await until(lambda: sink.stats.up, WAIT)
        fleet.cycles([sink], 1)  # the first live cycle: no change, but the current snapshot
        assert sink.stats.buffered == 1
        await sub.wait(lambda s: len(s.on("simwatch/incidents/current")) == 1)
        await until(lambda: sink.stats.buffered == 0, WAIT)
        fleet.cycles([sink], 5)  # nothing changes: nothing more is published
        await asyncio.sleep(0.2)
    assert [g.topic for g in sub.got] == ["simwatch/status", "simwatch/incidents/current"]
    current = sub.on("simwatch/incidents/current")[0].json()
    open_ticket = fleet.engine.incidents.open[(("iccid", VIP),)]
    assert current == [open_ticket.to_json()]

    # A subscriber arriving later gets the retained snapshot and status at once.
    async with Subscriber(broker.port, identifier="late") as late:
        await late.wait(lambda s: len(s.got) == 2)
    by_topic = {g.topic: g for g in late.got}
    assert by_topic["simwatch/incidents/current"].json() == current
    assert by_topic["simwatch/incidents/current"].retain
    assert by_topic["simwatch/status"].payload == b"online"
    assert by_topic["simwatch/status"].retain

    # A clean shutdown says "offline" (retained), as the last will would on a crash.
    await asyncio.wait_for(sink.close(), WAIT)
    async with Subscriber(broker.port, identifier="after") as after:
        await after.wait(lambda s: len(s.on("simwatch/status")) == 1)
    assert after.on("simwatch/status")[0].payload == b"offline"


async def test_messages_buffered_while_the_broker_is_away_are_delivered(
    broker: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="simwatch.sinks.mqtt")
    await make_session(broker.port, "offline-reader")
    fleet = Fleet()
    sink = MqttSink(settings_for(broker.port), password=None)
    async with running(sink):
        await until(lambda: sink.stats.up, WAIT)
        await asyncio.to_thread(broker.stop)
        await until(lambda: not sink.stats.up, WAIT)  # seen while idle, not at a publish
        changes = fleet.cycles([sink], 90)  # everything happens while the broker is away
        assert [c.kind for c, _ in changes] == ["opened"]
        waiting = sink.stats.buffered
        assert waiting == 1 + 3 + 2 + 1  # event, SIMs' first states, late + silent, snapshot
        await until(lambda: sink.stats.errors >= 3, WAIT)  # retried with backoff meanwhile
        await asyncio.to_thread(broker.start)
        await until(lambda: sink.stats.up and sink.stats.buffered == 0, WAIT)
        assert sink.stats.sent == waiting
    # The reader's persistent session queued every QoS 1 message published meanwhile.
    async with Subscriber(broker.port, identifier="offline-reader", clean_session=False) as sub:
        await sub.wait(lambda s: len(s.on("simwatch/incidents/events")) == 1)
        await sub.wait(lambda s: len(s.on(sim_topic(VIP))) == 3)
    event = sub.on("simwatch/incidents/events")[0].json()
    assert event == {
        "event": "opened",
        "at": format_rfc3339(changes[0][0].at),
        "incident": changes[0][1],
    }
    states = [g.json()["state"] for g in sub.on(sim_topic(VIP))]  # type: ignore[index]
    assert states == ["ok", "late", "silent"]
    assert sink.stats.dropped == 0
    assert sink.stats.last_error is None
    # Logged once when the failure started and once on recovery, not on every retry.
    records = [r for r in caplog.records if r.name == "simwatch.sinks.mqtt"]
    warnings = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    infos = [r.getMessage() for r in records if r.levelno == logging.INFO]
    assert len(warnings) == 1
    assert "unavailable" in warnings[0]
    assert len(infos) == 1
    assert "connected again" in infos[0]


async def test_a_full_buffer_drops_the_oldest_and_counts_them(broker: Mosquitto) -> None:
    await make_session(broker.port, "bound-reader")
    engine = Engine(replace(EngineConfig(), warmup_s=0.0))
    feed = Feed(engine, WALL)
    for i, iccid in enumerate(ICCIDS[:150]):
        feed.usage(iccid, T0 + i)
    sink = MqttSink(settings_for(broker.port, max_buffer=100), password=None)
    # Not running yet, as while the broker is away: 150 SIMs change state at once.
    result = engine.evaluate(T0 + 600)
    assert len(result.state_changes) == 150
    sink.on_cycle(Cycle(engine, result, T0 + 600, live=True))
    assert sink.stats.dropped == 50
    assert sink.stats.buffered == 100 + 1  # the bound, plus the current snapshot
    async with running(sink):
        await until(lambda: sink.stats.buffered == 0, WAIT)
    async with Subscriber(broker.port, identifier="bound-reader", clean_session=False) as sub:
        await sub.wait(lambda s: len([g for g in s.got if "/sims/" in g.topic]) == 100)
    got = [g.topic for g in sub.got if g.topic.startswith("simwatch/sims/")]
    assert got == [sim_topic(i) for i in ICCIDS[50:150]]  # the newest kept, in order
    assert sink.stats.sent == 101
    assert sink.stats.dropped == 50


async def test_retained_sim_state_is_opt_in(broker: Mosquitto) -> None:
    fleet = Fleet()
    plain = MqttSink(settings_for(broker.port), password=None)
    fleet.cycles([plain], 1)
    async with running(plain):
        await until(lambda: plain.stats.sent == 4, WAIT)
    async with Subscriber(broker.port, identifier="late-1") as sub:
        await sub.wait(lambda s: len(s.on("simwatch/incidents/current")) == 1)
        await asyncio.sleep(0.2)
    assert not [g for g in sub.got if g.topic.startswith("simwatch/sims/")]  # not retained

    retained = MqttSink(
        settings_for(broker.port, sim_changes_retain=True, topic_prefix="simwatch/r"),
        password=None,
    )
    fleet = Fleet()
    fleet.cycles([retained], 1)
    async with running(retained):
        await until(lambda: retained.stats.sent == 4, WAIT)
    async with Subscriber(broker.port, identifier="late-2") as sub:
        await sub.wait(lambda s: len([g for g in s.got if "/sims/" in g.topic]) == 3)
    states = {g.topic: (g.json()["state"], g.retain) for g in sub.got if "/sims/" in g.topic}  # type: ignore[index]
    assert states == {f"simwatch/r/sims/{i}/state": ("ok", True) for i in ICCIDS[:3]}


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI is not installed")
async def test_tls_with_a_ca_file(tmp_path: Path) -> None:
    files = await asyncio.to_thread(make_certs, tmp_path / "certs")
    server = Mosquitto(tmp_path / "tls-broker", tls=files)
    await asyncio.to_thread(server.start)
    try:
        sink = MqttSink(settings_for(server.port, tls=True, ca_file=files.ca), password=None)
        context = ssl.create_default_context(cafile=str(files.ca))
        async with Subscriber(server.port, tls_context=context) as sub, running(sink):
            Fleet().cycles([sink], 1)
            await sub.wait(lambda s: len(s.on("simwatch/incidents/current")) == 1)
        assert sink.stats.errors == 0
    finally:
        await asyncio.to_thread(server.stop)


async def test_unusable_tls_files_are_a_retried_error_not_a_crash(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("not a certificate\n")
    sink = MqttSink(settings_for(free_port(), tls=True, ca_file=ca), password=None)
    async with running(sink) as task:
        await until(lambda: sink.stats.errors >= 2, WAIT)
        assert not task.done()
    assert sink.stats.last_error is not None
    assert sink.stats.last_error.startswith("TLS setup failed")


# ---- without a broker ----------------------------------------------------------------------


def test_state_changes_are_capped_per_cycle_real_transitions_first() -> None:
    engine = Engine(replace(EngineConfig(), warmup_s=0.0))
    feed = Feed(engine, WALL)
    t = T0
    while t < T0 + 3 * DAY:  # two SIMs learn a 15-minute rhythm
        feed.usage(ICCIDS[0], t)
        feed.usage(ICCIDS[1], t + 1)
        t += 900.0
    last = t - 900.0
    sink = MqttSink(settings_for(1883, sim_changes_max_per_cycle=5), password=None)
    engine.evaluate(last + 600)  # the two are ok
    for iccid in ICCIDS[2:40]:  # 38 SIMs appear
        feed.usage(iccid, last + 3500)
    result = engine.evaluate(last + 3600)  # the two go late, the 38 come from never_seen
    assert len(result.state_changes) == 40
    sink.on_cycle(Cycle(engine, result, last + 3600, live=True))
    assert sink.stats.dropped == 35
    sims = [m for m in sink._buffer if m.topic.startswith("simwatch/sims/")]
    assert len(sims) == 5
    docs = [orjson.loads(m.payload) for m in sims]
    assert [(d["iccid"], d["previous"], d["state"]) for d in docs[:2]] == [
        (ICCIDS[0], "ok", "late"),
        (ICCIDS[1], "ok", "late"),
    ]
    assert all(d["previous"] == "never_seen" for d in docs[2:])
    assert all(not m.retain for m in sims)


def test_sim_changes_off_publishes_incidents_only() -> None:
    fleet = Fleet()
    sink = MqttSink(settings_for(1883, sim_changes=False), password=None)
    fleet.cycles([sink], 90)
    topics = [m.topic for m in sink._buffer]
    assert topics == ["simwatch/incidents/events"]
    assert sink.stats.buffered == 2  # the event and the current snapshot
    assert sink.stats.dropped == 0


async def test_cancellation_while_reconnecting_is_clean_and_close_reports(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = MqttSink(
        settings_for(free_port(), reconnect_min_s=5.0, reconnect_max_s=5.0), password=None
    )
    Fleet().cycles([sink], 1)
    task = asyncio.create_task(sink.run())
    await until(lambda: sink.stats.errors >= 1, WAIT)  # now sleeping in the backoff
    assert not sink.stats.up
    assert sink.stats.last_error
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, WAIT)
    assert task.cancelled()
    # close() with the broker still away: logged, nothing raised, the loss is reported.
    await asyncio.wait_for(sink.close(), WAIT)
    assert sink.stats.buffered == 4
    assert any("not delivered" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("toml", "field_name"),
    [
        ("sim_changes_max_per_cycle = 0", "sinks.mqtt.sim_changes_max_per_cycle"),
        ('sim_changes_retain = "maybe"', "sinks.mqtt.sim_changes_retain"),
        ("max_buffer = 10", "sinks.mqtt.max_buffer"),
        ('topic_prefix = "simwatch/#"', "sinks.mqtt.topic_prefix"),
    ],
)
def test_bad_sink_settings_name_the_field(tmp_path: Path, toml: str, field_name: str) -> None:
    path = tmp_path / "simwatch.toml"
    path.write_text(f"[sinks.mqtt]\n{toml}\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, {})
    assert f"{field_name}:" in str(caught.value)
