"""The webhook source through the real aiohttp app and a real daemon (journal on tmp_path).

Bodies are the documented examples (copies in ``tests/data/cmp/``, see its READMEs:
PLATFORMS.md 1.3/1.4/1.5 emnify events and Data Streamer usage, 2.4 1NCE Data Streamer v1
and v2). KORE (4.3) and Cisco (3.3) have no retrievable example payload: their bodies are
built from the fields PLATFORMS.md lists. The daemon runs on a fixed clock just after the
examples' own times (hourly cycles), so nothing depends on the date the tests run.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import re
import signal
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestClient, TestServer
from mosquitto import free_port
from prometheus_client import generate_latest
from servers import api_token, http_get, start_simwatch, until

from simwatch.core.engine import Engine
from simwatch.core.timeutil import format_rfc3339, parse_rfc3339
from simwatch.http.app import make_app
from simwatch.http.metrics import EngineCollector, make_registry
from simwatch.service.daemon import Daemon
from simwatch.service.run import build_sources, wire_webhooks
from simwatch.shell.health import DaemonHealth
from simwatch.shell.settings import (
    CheckpointSettings,
    ConfigError,
    EngineSettings,
    HttpSettings,
    Settings,
    load_settings,
)
from simwatch.shell.settings.sources import SourcesSettings, WebhookSourceSettings
from simwatch.sources.webhook import WebhookSource
from simwatch.sources.webhook.cisco import signature_ok

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from simwatch.shell.source_contract import Batch

DATA = Path(__file__).parent / "data" / "cmp"
TOKEN = "webhook-test-token"
USER, PASSWORD = "streamer", "b4sic-s3cret"
WAIT = 20.0


def example(name: str) -> Any:
    return orjson.loads((DATA / name).read_bytes())


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


BEARER = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class Stack:
    daemon: Daemon
    source: WebhookSource
    client: TestClient[Any, Any]
    dead_letters: Path

    async def post(self, body: object, headers: dict[str, str] | None = None, **kw: Any) -> Any:
        data = orjson.dumps(body) if isinstance(body, dict | list) else body
        return await self.client.post(
            f"/api/v1/ingest/{self.source.name}", data=data, headers=headers or BEARER, **kw
        )

    def row(self, iccid: str) -> int:
        return self.daemon.engine.state.row(iccid)

    def dead(self) -> list[dict[str, Any]]:
        if not self.dead_letters.exists():
            return []
        return [orjson.loads(x) for x in self.dead_letters.read_bytes().splitlines()]


def _settings(tmp_path: Path, webhook: WebhookSourceSettings) -> Settings:
    return Settings(
        state_dir=tmp_path / "state",
        engine=EngineSettings(
            eval_interval_s=3600, dead_letter_file=tmp_path / "dead.ndjson", operators_file=None
        ),
        checkpoint=CheckpointSettings(interval_s=3600),
        sources=SourcesSettings(webhook=[webhook]),
    )


@contextlib.asynccontextmanager
async def stack(tmp_path: Path, clock_at: str, **options: Any) -> AsyncIterator[Stack]:
    """A daemon with one webhook source and the HTTP app in front of it."""
    options.setdefault("decode_workers", 0)  # no worker process unless a test asks for one
    webhook = WebhookSourceSettings(name=options.pop("name", "ds"), **options)
    settings = _settings(tmp_path, webhook)
    now = parse_rfc3339(clock_at)
    sources, _ = build_sources(settings)
    daemon = Daemon(settings, sources, clock=lambda: now, checkpoints=True)
    wire_webhooks(daemon)
    source = sources[0]
    assert isinstance(source, WebhookSource)
    app = make_app(
        daemon.engine,
        now=daemon.clock,
        settings=HttpSettings(),
        tokens=frozenset({TOKEN}),
        receivers=[source],
    )
    task = asyncio.create_task(daemon.run())
    async with TestClient(TestServer(app)) as client:
        await until(lambda: source.journal is not None, WAIT, "the journal open")
        try:
            yield Stack(daemon, source, client, tmp_path / "dead.ndjson")
        finally:
            daemon.request_stop()
            await asyncio.wait_for(task, WAIT)


def applied(s: Stack, n: int) -> Callable[[], bool]:
    return lambda: s.source.stats.received >= n and s.daemon.queue.empty()


# ---- formats, each from its documented example ---------------------------------------------


async def test_emnify_events_bulk_and_single(tmp_path: Path) -> None:
    names = [
        "emnify-event-create-pdp-context-accepted.json",
        "emnify-event-delete-pdp-context.json",
        "emnify-event-create-pdp-context-rejected-no-quota.json",
        "emnify-event-endpoint-blocked.json",
        "emnify-event-purge-location.json",
    ]
    events = [example(n) for n in names]
    async with stack(tmp_path, "2021-10-27T16:00:00Z", format="emnify") as s:
        response = await s.post(events[:4])  # bulk mode: a JSON collection
        assert response.status == 200, await response.text()
        assert (await response.json())["accepted"] == 4
        response = await s.post(events[4])  # single mode: one event per POST
        assert response.status == 200
        await until(applied(s, 5), WAIT, "the events applied")
        assert s.source.stats.rejected == {}
        for event in events:
            assert s.row(event["sim"]["iccid"]) >= 0


async def test_emnify_usage_and_sms_is_never_data(tmp_path: Path) -> None:
    data = example("emnify-ds-usage-data.json")  # a JSON array (bulk), traffic type 5
    sms = example("emnify-ds-usage-sms.json")  # traffic type 6: volume is a message count
    async with stack(tmp_path, "2024-02-15T15:00:00Z", format="emnify") as s:
        response = await s.post(sms)
        assert response.status == 200
        assert await response.json() == {"accepted": 0, "ignored": 1}
        response = await s.post(data)
        assert (await response.json())["accepted"] == 1
        await until(applied(s, 1), WAIT, "the usage applied")
        row = s.row(data[0]["sim"]["iccid"])
        assert row >= 0
        state = s.daemon.engine.state
        # 1 MB = 1e6 bytes: tx 0.047085 MB up, rx 0.172848 MB down
        assert int(state.mv["month_bytes"][row]) == 47_085 + 172_848
        assert s.row(sms[0]["sim"]["iccid"]) < 0  # the SMS made no SIM, no bytes
        assert s.source.stats.rejected["unknown_kind"] == 1
        (dead,) = s.dead()
        assert dead["reason"] == "unknown_kind"
        assert "traffic_type 6" in dead["detail"]


async def test_1nce_v2_bulk(tmp_path: Path) -> None:
    body = [
        example("1nce-v2-ds-event-create-pdp-context.json"),
        example("1nce-v2-ds-event-update-location.json"),
        example("1nce-v2-ds-usage-data.json"),
        example("1nce-v2-ds-usage-sms.json"),
    ]
    async with stack(
        tmp_path, "2024-12-15T07:00:00Z", format="1nce", username=USER, password=PASSWORD
    ) as s:
        # 1NCE sends a Basic Authentication header configured with the stream (2.4)
        response = await s.post(body, {"Authorization": basic(USER, PASSWORD)})
        assert response.status == 200
        assert await response.json() == {"accepted": 3, "ignored": 1}
        await until(applied(s, 3), WAIT, "the 1NCE records applied")
        assert s.source.stats.rejected == {"unknown_kind": 1}  # the SMS usage record
        usage_row = s.row(body[2]["sim"]["iccid"])
        assert int(s.daemon.engine.state.mv["month_bytes"][usage_row]) == 1_004_902


async def test_records_object_array_and_ndjson(tmp_path: Path) -> None:
    def usage(i: int) -> dict[str, object]:
        return {
            "kind": "usage",
            "record_id": f"u-{i}",
            "iccid": f"89314400000000000{i:02d}",
            "start": "2024-01-01T10:00:00Z",
            "end": "2024-01-01T10:15:00Z",
            "bytes_up": 100,
            "bytes_down": 10,
        }

    ndjson = b"\n".join(orjson.dumps(usage(i)) for i in (3, 4)) + b"\n"
    async with stack(tmp_path, "2024-01-01T10:30:00Z") as s:
        assert (await s.post(usage(1))).status == 200
        assert (await s.post([usage(2)])).status == 200
        response = await s.post(ndjson, headers={**BEARER, "Content-Type": "application/x-ndjson"})
        assert response.status == 200
        await until(applied(s, 4), WAIT, "the records applied")
        assert all(s.row(f"89314400000000000{i:02d}") >= 0 for i in (1, 2, 3, 4))


async def test_kore_connection_events(tmp_path: Path) -> None:
    def event(kind: str, sid: str, **data: object) -> dict[str, object]:
        return {
            "specversion": "1.0",
            "id": sid,
            "type": f"com.kore.supersim.connection.{kind}",
            "source": "kore-events",
            "time": "2024-05-01T10:00:00Z",
            "datacontenttype": "application/json",
            "data": {
                "event_sid": sid,
                "sim_iccid": "89883070000123456789",
                "timestamp": "2024-05-01T10:00:00Z",
                "network": {"mcc": "262", "mnc": "02", "iso_country": "DE"},
                "apn": "super",
                **data,
            },
        }

    body = [
        event("attachment.rejected", "EZ1", error={"code": 83705, "message": "SIM inactive"}),
        event("data-session.started", "EZ2", data_session_sid="SS1"),
        event(
            "data-session.updated",
            "EZ3",
            data_session_sid="SS1",
            data_upload=1000,
            data_download=500,
            data_session_update_start_time="2024-05-01T09:55:00Z",
            data_session_update_end_time="2024-05-01T10:00:00Z",
        ),
        event("sim.something-new", "EZ4"),
    ]
    async with stack(tmp_path, "2024-05-01T10:30:00Z", format="kore") as s:
        response = await s.post(body)
        assert await response.json() == {"accepted": 3, "ignored": 1}
        await until(applied(s, 3), WAIT, "the KORE events applied")
        row = s.row("89883070000123456789")
        assert int(s.daemon.engine.state.mv["month_bytes"][row]) == 1500
        assert s.source.stats.rejected == {"unknown_kind": 1}


async def test_cisco_push_form_with_xml(tmp_path: Path) -> None:
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<SessionStop xmlns="http://api.jasperwireless.com/ws/schema">'
        "<iccid>8988216716970004975</iccid><dateSessionEnded>2024-03-01T10:00:00Z"
        "</dateSessionEnded></SessionStop>"
    )
    timestamp = "2024-03-01T10:00:01.000Z"
    signature = base64.b64encode(
        hmac.new(b"push-secret", timestamp.encode(), hashlib.sha256).digest()
    ).decode()
    fields = {"eventType": "SESSION_STOP", "timestamp": timestamp, "signature2": signature}
    form = urllib.parse.urlencode({**fields, "data": xml})
    assert signature_ok(fields, "push-secret")
    assert not signature_ok(fields, "other")
    forged = urllib.parse.urlencode({**fields, "signature2": "Zm9yZ2Vk", "data": xml})
    secret = {"signature_secret": "push-secret"}
    async with stack(tmp_path, "2024-03-01T10:30:00Z", format="cisco", **secret) as s:
        headers = {**BEARER, "Content-Type": "application/x-www-form-urlencoded"}
        response = await s.post(forged, headers)
        assert response.status == 401
        assert "signature2" in (await response.json())["error"]["message"]
        response = await s.post(form, headers)
        assert await response.json() == {"accepted": 1, "ignored": 0}
        await until(applied(s, 1), WAIT, "the push applied")
        assert s.row("8988216716970004975") >= 0


# ---- auth, limits, bad bodies ----------------------------------------------------------------


async def test_auth_token_basic_and_wrong(tmp_path: Path) -> None:
    event = example("emnify-event-purge-location.json")
    async with stack(
        tmp_path, "2021-10-27T16:00:00Z", format="emnify", username=USER, password=PASSWORD
    ) as s:
        assert (await s.post(event, BEARER)).status == 200
        assert (await s.post(event, {"Authorization": basic(USER, PASSWORD)})).status == 200
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": basic(USER, "wrong")},
            {"Authorization": basic("other", PASSWORD)},
            {"Authorization": "Basic %%%not-base64"},
        ):
            response = await s.client.post("/api/v1/ingest/ds", data=b"{}", headers=headers)
            assert response.status == 401, headers
            assert "Basic" in response.headers["WWW-Authenticate"]
        # an unknown source: 401 without credentials, 404 with a token
        assert (await s.client.post("/api/v1/ingest/nope", data=b"{}")).status == 401
        assert (
            await s.client.post("/api/v1/ingest/nope", data=b"{}", headers=BEARER)
        ).status == 404
        # the Basic credentials of this source are no key to the rest of the API
        headers = {"Authorization": basic(USER, PASSWORD)}
        assert (await s.client.get("/api/v1/status", headers=headers)).status == 401


async def test_body_limit_413(tmp_path: Path) -> None:
    async with stack(tmp_path, "2024-01-01T10:30:00Z", max_body_bytes=1024) as s:
        big = b"[" + b" " * 2000 + b"]"
        response = await s.post(big)
        assert response.status == 413
        assert "max_body_bytes 1024" in (await response.json())["error"]["message"]

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as read
            for _ in range(4):
                yield b" " * 600

        response = await s.post(chunks())
        assert response.status == 413
        assert s.source.stats.rejected["too_large"] == 2


async def test_bad_body_400_goes_to_dead_letters(tmp_path: Path) -> None:
    async with stack(tmp_path, "2021-10-27T16:00:00Z", format="emnify") as s:
        response = await s.post(b"{not json")
        assert response.status == 400
        message = (await response.json())["error"]["message"]
        assert message.startswith("emnify body: not JSON")
        response = await s.post(b'"a string"')
        assert response.status == 400
        assert "expected an object or an array" in (await response.json())["error"]["message"]
        dead = s.dead()
        assert [d["reason"] for d in dead] == ["invalid_json", "not_object"]
        assert dead[0]["source"] == "ds"
        assert dead[0]["raw"] == "{not json"
        assert s.source.stats.rejected == {"invalid_json": 1, "not_object": 1}
        assert s.daemon.engine.rejected["invalid_json"] == 1


async def test_journal_full_503_with_retry_after(tmp_path: Path) -> None:
    options = {
        "max_body_bytes": 1024,
        "journal_max_bytes": 1 << 16,
        "journal_segment_bytes": 1 << 12,
        "retry_after_s": 7,
    }
    record = {
        "kind": "event",
        "iccid": "8931440000000000011",
        "ts": "2024-01-01T10:00:00Z",
        "type": "attach",
        "pad": "x" * 800,
    }
    async with stack(tmp_path, "2024-01-01T10:30:00Z", **options) as s:
        statuses = []
        for i in range(120):
            response = await s.post({**record, "record_id": f"e-{i}"})
            statuses.append(response.status)
            if response.status != 200:
                break
        assert statuses[-1] == 503, statuses
        assert 40 < len(statuses) < 100
        assert response.headers["Retry-After"] == "7"
        await until(applied(s, len(statuses) - 1), WAIT, "the accepted ones applied")
        assert await s.daemon.checkpoint()  # frees the segments the checkpoint passed
        assert (await s.post({**record, "record_id": "e-after"})).status == 200


async def test_duplicates_count_once(tmp_path: Path) -> None:
    event = example("emnify-event-delete-pdp-context.json")
    async with stack(tmp_path, "2021-10-27T16:00:00Z", format="emnify") as s:
        for _ in range(3):  # at-least-once delivery: the same event again
            assert (await s.post([event])).status == 200
        await until(applied(s, 3), WAIT, "all three deliveries applied")
        assert s.source.stats.duplicates == 2
        row = s.row(event["sim"]["iccid"])
        # delete PDP context: tx 0.223173 MB, rx 0.418811 MB, counted once
        assert int(s.daemon.engine.state.mv["month_bytes"][row]) == 223_173 + 418_811
        # /metrics shows the source like any other
        health = DaemonHealth(started_at=0.0, queue_depth=s.daemon.queue.qsize)
        registry = make_registry(
            EngineCollector(s.daemon.engine, health, s.daemon.source_stats, version="t")
        )
        text = generate_latest(registry).decode()
        assert 'simwatch_source_records_received_total{source="ds"} 3.0' in text
        assert 'simwatch_source_duplicates_total{source="ds"} 2.0' in text


# ---- durability --------------------------------------------------------------------------------


async def test_journaled_batch_survives_a_restart(tmp_path: Path) -> None:
    """200 means journaled: a batch the daemon never applied is replayed at the next start."""
    event = example("emnify-event-endpoint-blocked.json")
    settings = WebhookSourceSettings(name="ds", format="emnify")
    first = WebhookSource(settings, state_dir=tmp_path / "state")
    app = make_app(
        Engine(),
        now=lambda: 0.0,
        settings=HttpSettings(),
        tokens=frozenset({TOKEN}),
        receivers=[first],
    )
    nobody: asyncio.Queue[Batch] = asyncio.Queue()  # ingest never reads: nothing applied
    task = asyncio.create_task(first.run(nobody))
    async with TestClient(TestServer(app)) as client:
        await until(lambda: first.journal is not None, WAIT, "the journal open")
        response = await client.post("/api/v1/ingest/ds", data=orjson.dumps(event), headers=BEARER)
        assert response.status == 200
    task.cancel()  # as if killed: no checkpoint, nothing applied
    with contextlib.suppress(asyncio.CancelledError):
        await task
    async with stack(tmp_path, "2021-10-27T16:00:00Z", format="emnify") as s:
        await until(applied(s, 1), WAIT, "the journaled event replayed")
        assert s.row(event["sim"]["iccid"]) >= 0


# ---- settings ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ('username = "u"', "sources.webhook[0].password: required when username"),
        ('password = "p"', "sources.webhook[0].username: required when a password"),
        (
            "max_body_bytes = 1048576\njournal_max_bytes = 1048576\njournal_segment_bytes = 4096",
            "sources.webhook[0].journal_max_bytes: must be at least twice max_body_bytes",
        ),
        ('format = "xml"', "sources.webhook[0].format"),
    ],
)
def test_bad_settings_name_the_field(tmp_path: Path, toml: str, expected: str) -> None:
    path = tmp_path / "simwatch.toml"
    path.write_text(f'[[sources.webhook]]\nname = "ds"\n{toml}\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(path, {})
    assert expected in str(info.value)
    path.write_text('[[sources.webhook]]\nname = "a/b"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"sources\.webhook\[0\]\.name"):
        load_settings(path, {})


def test_unreadable_password_file_fails_at_start(tmp_path: Path) -> None:
    webhook = WebhookSourceSettings(name="ds", username=USER, password_file=tmp_path / "missing")
    with pytest.raises(ConfigError, match=r"sources\.webhook\[0\]\.password_file: cannot read"):
        build_sources(_settings(tmp_path, webhook))


# ---- bulk bodies through the decode worker, the OpenAPI document ------------------------------


async def test_bulk_body_mapped_in_a_worker_process(tmp_path: Path) -> None:
    """A bulk body of 64 KiB or more is mapped in the decode worker; the answer is the
    same, and a bad one is still a 400 naming the reason."""
    template = example("emnify-ds-usage-data.json")[0]
    items = [{**template, "id": 1000 + i} for i in range(200)]  # 200 usage records
    body = orjson.dumps(items)
    assert len(body) >= 64 << 10
    bad = b"[" + b" " * (64 << 10) + b"{]"
    async with stack(tmp_path, "2024-02-15T15:00:00Z", format="emnify", decode_workers=1) as s:
        response = await s.post(body)
        assert await response.json() == {"accepted": 200, "ignored": 0}
        await until(applied(s, 200), WAIT, "the bulk applied")
        response = await s.post(bad)
        assert response.status == 400
        assert "not JSON" in (await response.json())["error"]["message"]
        assert s.source.stats.rejected == {"invalid_json": 1}


async def test_openapi_documents_the_ingest_path_only_when_configured(tmp_path: Path) -> None:
    async with stack(tmp_path, "2024-01-01T10:30:00Z") as s:
        doc = await (await s.client.get("/api/v1/openapi.json", headers=BEARER)).json()
        responses = doc["paths"]["/api/v1/ingest/{name}"]["post"]["responses"]
        assert {"200", "400", "401", "404", "413", "503"} <= set(responses)
        assert doc["components"]["securitySchemes"]["basic"]["scheme"] == "basic"
    app = make_app(Engine(), now=lambda: 0.0, settings=HttpSettings(), tokens=frozenset({TOKEN}))
    async with TestClient(TestServer(app)) as client:
        doc = await (await client.get("/api/v1/openapi.json", headers=BEARER)).json()
        assert "/api/v1/ingest/{name}" not in doc["paths"]
        # no webhook source: the path is like any unknown API path (401 before anything)
        assert (await client.post("/api/v1/ingest/ds", data=b"{}")).status == 401


# ---- kill -9 of a real daemon ----------------------------------------------------------------


@pytest.mark.real_server
async def test_kill_9_loses_no_acknowledged_push(tmp_path: Path) -> None:
    """Every push answered 200 by a real ``simwatch run`` is applied after a ``kill -9``
    and a restart, once (checkpoints every second, pushes before and after some)."""
    port = free_port()
    state = tmp_path / "state"
    config = tmp_path / "simwatch.toml"
    config.write_text(
        f'state_dir = "{state}"\n[checkpoint]\ninterval_s = 1.0\n'
        f'[engine]\ndead_letter_file = "{tmp_path / "dl.ndjson"}"\n'
        f'[http]\nport = {port}\n[[sources.webhook]]\nname = "ds"\nformat = "records"\n',
        encoding="utf-8",
    )
    log = tmp_path / "simwatch.log"
    base = f"http://127.0.0.1:{port}"
    t = time.time() - 600  # records are 10 minutes old whenever the test runs

    def batch(b: int) -> bytes:
        return b"\n".join(
            orjson.dumps(
                {
                    "kind": "usage",
                    "record_id": f"u-{b}-{i}",
                    "iccid": f"8931440000{b:04d}{i:05d}",
                    "start": format_rfc3339(t - 60),
                    "end": format_rfc3339(t),
                    "bytes_up": 10,
                    "bytes_down": 1,
                }
            )
            for i in range(50)
        )

    async def status(token: str) -> dict[str, Any] | None:
        code, body = await asyncio.to_thread(http_get, f"{base}/api/v1/status", 2.0, token)
        return orjson.loads(body) if code == 200 else None

    process = start_simwatch(config, log)
    try:
        await until((state / "api-token").exists, 60, "the API token", log)
        token = api_token(state)
        await until(lambda: status(token), 60, "the daemon's API", log)
        headers = {"Authorization": f"Bearer {token}"}
        async with ClientSession() as session:
            for b in range(40):
                async with session.post(
                    f"{base}/api/v1/ingest/ds", data=batch(b), headers=headers
                ) as response:
                    assert response.status == 200, await response.text()
                if b == 20:
                    await asyncio.sleep(1.5)  # a checkpoint covers the first ones
        process.send_signal(signal.SIGKILL)  # at once after the last 200
        process.wait(30)
        process = start_simwatch(config, log)

        async def all_sims() -> bool:
            view = await status(token)
            return view is not None and view["sims"] == 40 * 50

        await until(all_sims, 60, "every pushed SIM after the restart", log)
        # the restart replayed what the last checkpoint before the kill did not cover
        replays = re.findall(rb"webhook source ds: .* replaying (\d+) bytes", log.read_bytes())
        assert len(replays) == 2
        assert int(replays[1]) > 0
        view = await status(token)
        assert view is not None
        (source,) = view["sources"]
        assert source["rejected"] == {} or not any(source["rejected"].values())
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
