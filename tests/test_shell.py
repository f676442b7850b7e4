"""The shared shell pieces: backoff, failure/recovery logging, atomic writes, MQTT."""

from __future__ import annotations

import asyncio
import logging
import os
import random
from typing import TYPE_CHECKING, BinaryIO

import aiomqtt
import pytest

from simwatch.shell.backoff import Backoff, backoff_delay
from simwatch.shell.files import write_atomically
from simwatch.shell.logs import FailureLog
from simwatch.shell.mqtt import Reconnector, load_tls, make_client
from simwatch.shell.settings import MqttSinkSettings, MqttSourceSettings

if TYPE_CHECKING:
    from pathlib import Path

LOGGER = "simwatch.test_shell"


class CeilingRng(random.Random):
    """Always draws the top of the range: backoff delays become deterministic."""

    def uniform(self, a: float, b: float) -> float:
        return max(a, b)


class FloorRng(random.Random):
    """Always draws the bottom of the range."""

    def uniform(self, a: float, b: float) -> float:
        return min(a, b)


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# ---- backoff --------------------------------------------------------------------------


def test_backoff_ceiling_doubles_to_the_cap() -> None:
    rng = CeilingRng()
    delays = [backoff_delay(failures, 0.5, 30.0, rng) for failures in range(1, 11)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0]
    assert backoff_delay(10_000, 0.5, 30.0, rng) == 30.0  # no overflow on a long outage


def test_backoff_never_waits_less_than_half_the_ceiling() -> None:
    rng = FloorRng()
    delays = [backoff_delay(failures, 0.5, 30.0, rng) for failures in range(1, 9)]
    assert delays == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0]


def test_backoff_is_equal_jitter_within_the_upper_half() -> None:
    rng = random.Random(7)
    draws = [[backoff_delay(n, 0.5, 30.0, rng) for _ in range(200)] for n in range(1, 13)]
    for failures, delays in enumerate(draws, start=1):
        ceiling = min(30.0, 0.5 * 2 ** (failures - 1))
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        # spread over the whole upper half, not clustered at one end
        assert min(delays) < ceiling * 0.55
        assert max(delays) > ceiling * 0.95
        assert len(set(delays)) == len(delays)
    # same seed, same delays: jitter is reproducible with an injected rng
    again = random.Random(7)
    assert [backoff_delay(1, 0.5, 30.0, again) for _ in range(200)] == draws[0]


def test_backoff_zero_failures_waits_like_the_first() -> None:
    rng = CeilingRng()
    assert backoff_delay(0, 0.5, 30.0, rng) == backoff_delay(1, 0.5, 30.0, rng) == 0.5


def test_backoff_counts_failures_and_starts_again_after_a_success() -> None:
    backoff = Backoff(1.0, 8.0, CeilingRng())
    assert [backoff.failed() for _ in range(5)] == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert backoff.failures == 5
    backoff.succeeded()
    assert backoff.failures == 0
    assert backoff.failed() == 1.0


# ---- failure / recovery logging --------------------------------------------------------


def _lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == LOGGER]


def test_a_failure_is_logged_once_and_its_recovery_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    clock = FakeClock()
    failure = FailureLog(logging.getLogger(LOGGER), "source a", clock=clock)
    assert not failure.failing
    assert not failure.recovered()  # healthy: nothing to say
    assert failure.failed("broker:1883 unavailable", detail="refused", hint="retrying")
    for attempt in range(4):
        clock.now += 2.0
        # what varies between attempts is detail, not reason: not logged again
        assert not failure.failed("broker:1883 unavailable", detail=f"attempt {attempt}")
    assert failure.failing
    assert failure.failures == 5
    clock.now += 2.0
    assert failure.recovered("connected again")
    assert not failure.recovered()
    assert _lines(caplog) == [
        (logging.WARNING, "source a: broker:1883 unavailable (refused); retrying"),
        (logging.INFO, "source a: connected again after 5 failures over 10 s"),
    ]
    assert (failure.failures, failure.reason, failure.since) == (0, None, None)


def test_a_new_reason_is_logged_again_and_the_run_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    clock = FakeClock()
    failure = FailureLog(logging.getLogger(LOGGER), "sink b", clock=clock)
    failure.failed("disk full")
    clock.now += 30.0
    assert failure.failed("permission denied")
    assert not failure.failed("permission denied")
    clock.now += 30.0
    failure.recovered()
    assert _lines(caplog) == [
        (logging.WARNING, "sink b: disk full"),
        (logging.WARNING, "sink b: permission denied"),
        (logging.INFO, "sink b: recovered after 3 failures over 60 s"),  # since the first
    ]


def test_one_failure_and_counted_losses_read_naturally(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    clock = FakeClock()
    once = FailureLog(logging.getLogger(LOGGER), "evaluation", clock=clock)
    once.failed("failed", level=logging.ERROR)
    once.recovered()
    shed = FailureLog(logging.getLogger(LOGGER), "mqtt source c", clock=clock, noun="shed message")
    shed.failed("ingest is behind", count=40)
    shed.failed("ingest is behind", count=2)
    clock.now += 5.0
    shed.recovered("caught up")
    assert _lines(caplog) == [
        (logging.ERROR, "evaluation: failed"),
        (logging.INFO, "evaluation: recovered after 1 failure over 0 s"),
        (logging.WARNING, "mqtt source c: ingest is behind"),
        (logging.INFO, "mqtt source c: caught up after 42 shed messages over 5 s"),
    ]


def test_a_failure_can_carry_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    failure = FailureLog(logging.getLogger(LOGGER), "sink d")

    def boom() -> None:
        raise RuntimeError("boom")

    try:
        boom()
    except RuntimeError:
        failure.failed("failed to take a cycle", level=logging.ERROR, exc_info=True)
    [record] = [r for r in caplog.records if r.name == LOGGER]
    assert record.exc_info is not None
    assert record.exc_info[0] is RuntimeError


# ---- atomic writes ---------------------------------------------------------------------


def test_write_atomically_bytes_and_callback(tmp_path: Path) -> None:
    path = tmp_path / "new" / "state.json"  # the folder is made
    assert write_atomically(path, b"first") == 5
    assert path.read_bytes() == b"first"

    def writer(out: BinaryIO) -> None:
        out.write(b"second, ")
        out.write(b"longer")

    assert write_atomically(path, writer) == 14
    assert path.read_bytes() == b"second, longer"
    assert sorted(p.name for p in path.parent.iterdir()) == ["state.json"]  # no tmp left


def test_write_atomically_a_secret_is_never_readable_by_others(tmp_path: Path) -> None:
    # the API token: a reader sees the old file or the whole new one, never an empty one,
    # and the file is the owner's from its first byte
    path = tmp_path / "api-token"
    path.write_bytes(b"old\n")
    stale = tmp_path / ".api-token.tmp"  # left by a crash, readable by all
    stale.write_bytes(b"half")
    stale.chmod(0o644)
    seen: list[bytes] = []

    def writer(out: BinaryIO) -> None:
        seen.append(path.read_bytes())  # while the new one is being written
        assert os.fstat(out.fileno()).st_mode & 0o077 == 0
        out.write(b"new\n")

    write_atomically(path, writer, mode=0o600)
    assert seen == [b"old\n"]
    assert path.read_bytes() == b"new\n"
    assert path.stat().st_mode & 0o777 == 0o600


def test_write_atomically_keeps_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.npz"
    tmp = tmp_path / "checkpoint.tmp"
    write_atomically(path, b"old", tmp=tmp)

    def broken(out: BinaryIO) -> None:
        out.write(b"half of the new")
        raise OSError(28, os.strerror(28))

    with pytest.raises(OSError, match="No space left"):
        write_atomically(path, broken, tmp=tmp)
    assert path.read_bytes() == b"old"
    assert not tmp.exists()


# ---- MQTT connection pieces ------------------------------------------------------------


async def test_make_client_sends_the_password_only_with_a_username() -> None:
    settings = MqttSourceSettings.model_validate(
        {"name": "m", "topics": ["t/#"], "client_id": "cid", "username": "u"}
    )
    client = make_client(settings, password="secret", tls=None, clean_session=False)
    assert client.identifier == "cid"
    assert client._client._username == b"u"
    assert client._client._password == b"secret"
    anonymous = MqttSinkSettings.model_validate({})
    client = make_client(anonymous, password="secret", tls=None, clean_session=True)
    assert client.identifier == "simwatch-events"
    assert client._client._username is None
    assert client._client._password is None


async def test_unusable_tls_files_are_an_mqtt_error(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not a certificate")
    settings = MqttSinkSettings.model_validate({"tls": True, "ca_file": ca})
    with pytest.raises(aiomqtt.MqttError, match="TLS setup failed"):
        await load_tls(settings)
    assert await load_tls(MqttSinkSettings.model_validate({})) is None


async def test_reconnector_backs_off_logs_once_and_reconnects_at_once_after_a_return(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    sleeps: list[float] = []

    async def no_sleep(delay: float) -> None:
        sleeps.append(delay)

    monkeypatch.setattr(asyncio, "sleep", no_sleep)
    settings = MqttSinkSettings.model_validate(
        {"host": "broker", "port": 1884, "reconnect_min_s": 1.0, "reconnect_max_s": 4.0}
    )
    reconnect = Reconnector(settings, logging.getLogger(LOGGER), "mqtt sink", rng=CeilingRng())
    script = ["fail", "fail", "fail", "up", "return", "up", "fail", "stop"]
    errors: list[str] = []

    async def session() -> None:
        step = script.pop(0)
        if step == "stop":
            raise asyncio.CancelledError
        if step == "fail":
            raise aiomqtt.MqttError(f"refused {len(script)}")
        reconnect.connected()
        if step == "up":
            raise aiomqtt.MqttError("connection lost")

    def failed(exc: Exception) -> tuple[str, str]:
        errors.append(str(exc))
        return reconnect.unavailable, str(exc)

    with pytest.raises(asyncio.CancelledError):
        await reconnect.run(session, failed)
    assert sleeps == [1.0, 2.0, 4.0, 1.0, 1.0, 2.0]  # from the start again once connected
    assert errors == [
        "refused 7",
        "refused 6",
        "refused 5",
        "connection lost",
        "connection lost",  # after a deliberate return (no backoff) and a connection
        "refused 1",
    ]
    down = "mqtt sink: broker:1884 unavailable"
    again = "mqtt sink: connected again to broker:1884 after"
    assert _lines(caplog) == [
        (logging.WARNING, f"{down} (refused 7); reconnecting with backoff"),
        (logging.INFO, f"{again} 3 failures over 0 s"),
        (logging.WARNING, f"{down} (connection lost); reconnecting with backoff"),
        (logging.INFO, f"{again} 1 failure over 0 s"),
        (logging.WARNING, f"{down} (connection lost); reconnecting with backoff"),
    ]
