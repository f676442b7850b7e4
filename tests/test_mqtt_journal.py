"""The MQTT source's journal: nothing acknowledged to the broker is lost on a crash.

1. ``Journal`` on its own (simwatch/sources/journal.py): round trip, a torn tail cut at
   open, a CRC mismatch, segments released once a checkpoint passed them, the byte cap.
2. ``MqttSource`` with a journal against a real Mosquitto: a message is acknowledged only
   once it is journaled, replayed from the journal after a restart, shed messages come
   again, checkpointed segments are deleted.
3. A real ``simwatch run`` consuming QoS 1 payloads is ``SIGKILL``ed mid-ingest and
   restarted: with the journal every record is applied exactly once; without it
   (``journal = false``) the records applied after the last checkpoint are lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar, cast

import aiomqtt
import orjson
import pytest
from mosquitto import Mosquitto, available, free_port
from servers import http_get, start_simwatch, stop_simwatch, until

from simwatch.core.iccid_index import IccidIndex
from simwatch.core.timeutil import format_rfc3339, month_of
from simwatch.service import checkpoint as ckpt
from simwatch.shell.settings import MqttSourceSettings
from simwatch.sources.journal import HEADER, Journal, cursor_of, encode_frame, position_of
from simwatch.sources.mqtt import MqttSource, journal_dir

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator

    from simwatch.shell.source_contract import Batch

WAIT = 15.0  # the bound on every wait in the source tests: a failure fails, never hangs
TOPIC = "sims/records"


F = TypeVar("F", bound="Callable[..., object]")


def needs_broker(test: F) -> F:
    """A test against a real Mosquitto: marked ``real_server``, skipped without one."""
    skip = pytest.mark.skipif(not available(), reason="mosquitto is not installed")
    marked: F = pytest.mark.real_server(skip(test))
    return marked


def journal(directory: Path, segment_bytes: int = 1000, max_bytes: int = 1 << 20) -> Journal:
    return Journal(directory, segment_bytes=segment_bytes, max_bytes=max_bytes)


def messages(n: int, start: int = 0) -> list[tuple[str, bytes]]:
    """``n`` (topic, payload) pairs of varied sizes."""
    return [
        (f"sims/{i % 3}/records", b'{"n":%d,"pad":"%s"}' % (i, b"x" * (i % 50)))
        for i in range(start, start + n)
    ]


def read_all(j: Journal) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    while frames := j.read(7, 1 << 20):
        out.extend((f.topic, f.payload) for f in frames)
    return out


def segment_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.seg"))


# ---- 1. the journal ----------------------------------------------------------------------


def test_round_trip_in_order_with_contiguous_positions(tmp_path: Path) -> None:
    j = journal(tmp_path)
    report = j.open()
    assert (report.start, report.end, report.read_from, report.segments) == (0, 0, 0, 0)
    sent = messages(120)
    for k in range(0, 120, 10):
        assert j.append(sent[k : k + 10]) is None
    frames = []
    while batch := j.read(25, 1 << 20):
        assert len(batch) <= 25
        frames.extend(batch)
    assert [(f.topic, f.payload) for f in frames] == sent
    assert frames[0].position == 0
    assert all(a.end == b.position for a, b in itertools.pairwise(frames))
    assert frames[-1].end == j.end == j.read_position
    assert len(segment_files(tmp_path)) > 3  # 1000-byte segments: rolled several times
    assert j.read(10, 1 << 20) == []  # caught up
    j.close()

    # Reopened: everything again from the start, or from any frame boundary.
    again = journal(tmp_path)
    assert again.open().end == frames[-1].end
    assert read_all(again) == sent
    again.close()
    middle = frames[57]
    again = journal(tmp_path)
    assert again.open(read_from=middle.position).read_from == middle.position
    assert read_all(again) == sent[57:]
    # A reopened journal writes a new segment after the last one; positions go on.
    count = len(segment_files(tmp_path))
    again.append(messages(1, 500))
    assert len(segment_files(tmp_path)) == count + 1
    assert read_all(again) == messages(1, 500)
    again.close()


def test_read_is_bounded_by_bytes_but_returns_one_big_frame(tmp_path: Path) -> None:
    j = journal(tmp_path, segment_bytes=1 << 16)
    j.open()
    big = ("t", b"y" * 5000)
    j.append([big, ("t", b"small")])
    assert [f.payload for f in j.read(100, 100)] == [big[1]]  # one frame even if larger
    assert [f.payload for f in j.read(100, 100)] == [b"small"]
    j.close()


def test_a_torn_tail_is_cut_at_open_and_writing_goes_on(tmp_path: Path) -> None:
    j = journal(tmp_path, segment_bytes=1 << 16)
    j.open()
    sent = messages(5)
    j.append(sent)
    end = j.end
    j.close()
    # A crash in the middle of the next write: half a frame reached the disk.
    torn = encode_frame("sims/x/records", b'{"torn":true}')
    (last,) = segment_files(tmp_path)
    with last.open("ab") as out:
        out.write(torn[: len(torn) // 2])

    again = journal(tmp_path, segment_bytes=1 << 16)
    report = again.open()
    assert report.cut_bytes == len(torn) // 2
    assert report.end == end
    assert last.stat().st_size == end  # cut off the file itself
    assert read_all(again) == sent
    again.append(messages(2, 100))
    assert read_all(again) == messages(2, 100)
    again.close()
    assert read_all(reopened(tmp_path)) == sent + messages(2, 100)


def test_a_tail_that_is_only_a_header_or_zeros_is_cut(tmp_path: Path) -> None:
    j = journal(tmp_path, segment_bytes=1 << 16)
    j.open()
    j.append(messages(3))
    j.close()
    (last,) = segment_files(tmp_path)
    size = last.stat().st_size
    for tail in (b"\x01\x02\x03", b"\x00" * 64):  # a short header; a block of zeros
        with last.open("ab") as out:
            out.write(tail)
        again = journal(tmp_path, segment_bytes=1 << 16)
        assert again.open().cut_bytes == len(tail)
        assert last.stat().st_size == size
        assert read_all(again) == messages(3)
        again.close()


def test_a_segment_torn_to_nothing_is_removed_and_positions_go_on(tmp_path: Path) -> None:
    j = journal(tmp_path, segment_bytes=1 << 16)
    j.open()
    j.append(messages(3))
    j.close()
    j.open()  # a new segment for what comes after the restart
    base = j.end
    j.append(messages(1, 10))
    j.close()
    last = segment_files(tmp_path)[-1]
    assert int(last.stem) == base
    os.truncate(last, 5)  # its only frame torn: the crash came during its first write
    again = journal(tmp_path, segment_bytes=1 << 16)
    report = again.open()
    assert report.cut_bytes == 5
    assert not last.exists()
    assert report.end == base
    again.append(messages(1, 20))
    assert int(segment_files(tmp_path)[-1].stem) == base
    assert read_all(again) == messages(3) + messages(1, 20)
    again.close()


def test_a_crc_mismatch_in_the_last_frame_is_a_torn_tail(tmp_path: Path) -> None:
    j = journal(tmp_path, segment_bytes=1 << 16)
    j.open()
    j.append(messages(4))
    last_frame_len = len(encode_frame(*messages(1, 3)[0]))
    j.close()
    (last,) = segment_files(tmp_path)
    data = bytearray(last.read_bytes())
    data[-2] ^= 0x40  # a bit of the last payload: written in part before the crash
    last.write_bytes(bytes(data))
    again = journal(tmp_path, segment_bytes=1 << 16)
    assert again.open().cut_bytes == last_frame_len
    assert read_all(again) == messages(3)
    again.close()


def test_a_crc_mismatch_inside_is_skipped_logged_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    j = journal(tmp_path, segment_bytes=600)
    j.open()
    sent = messages(60)
    for k in range(0, 60, 3):
        j.append(sent[k : k + 3])
    j.close()
    files = segment_files(tmp_path)
    assert len(files) >= 4
    victim = files[1]  # an older segment: a disk error, not a crash
    data = bytearray(victim.read_bytes())
    second = len(encode_frame(*_first_frame(data)))  # the second frame starts here
    data[second + HEADER.size + 3] ^= 0x01
    victim.write_bytes(bytes(data))

    again = journal(tmp_path, segment_bytes=600)
    assert again.open().cut_bytes == 0  # only the last segment is checked at open
    with caplog.at_level(logging.WARNING, logger="simwatch.sources.journal"):
        got = read_all(again)
    assert "unreadable frame" in caplog.text
    assert "CRC mismatch" in caplog.text
    assert again.stats.corrupt_bytes == len(data) - second
    # Everything but the rest of the damaged segment, in order.
    before = sum(1 for _ in _frames_of(files[0]))
    lost = sum(1 for _ in _frames_of_bytes(bytes(victim.read_bytes()))) - 1
    assert got == sent[: before + 1] + sent[before + 1 + lost :]
    again.close()


def _first_frame(data: bytes | bytearray) -> tuple[str, bytes]:
    size, topic_len, _crc = HEADER.unpack_from(data, 0)
    body = bytes(data[HEADER.size : HEADER.size + topic_len + size])
    return body[:topic_len].decode(), body[topic_len:]


def _frames_of_bytes(data: bytes) -> Iterator[int]:
    at = 0
    while at < len(data):
        size, topic_len, _crc = HEADER.unpack_from(data, at)
        yield at
        at += HEADER.size + topic_len + size


def _frames_of(path: Path) -> Iterator[int]:
    return _frames_of_bytes(path.read_bytes())


def reopened(directory: Path, **kwargs: int) -> Journal:
    j = journal(directory, **({"segment_bytes": 1 << 16} | kwargs))
    j.open()
    return j


def test_segments_are_deleted_once_a_checkpoint_passed_them(tmp_path: Path) -> None:
    j = journal(tmp_path, segment_bytes=500)
    j.open()
    sent = messages(80)
    positions: list[int] = []
    for k in range(0, 80, 4):
        j.append(sent[k : k + 4])
        positions.append(j.end)
    frames = []
    while batch := j.read(100, 1 << 20):
        frames.extend(batch)
    files = segment_files(tmp_path)
    assert len(files) >= 5
    bases = [int(f.stem) for f in files]
    cursor = frames[len(frames) // 2].end  # what a checkpoint holds
    released = j.release(cursor)
    kept = [int(f.stem) for f in segment_files(tmp_path)]
    # exactly the segments that end at or before the cursor are gone
    ends = [*bases[1:], j.end]
    assert released == sum(1 for end in ends if end <= cursor) > 0
    assert kept == [b for b, end in zip(bases, ends, strict=True) if end > cursor]
    assert j.start == kept[0] <= cursor
    # The one being written is never deleted, even when the cursor is at the end.
    j.release(j.end)
    assert [int(f.stem) for f in segment_files(tmp_path)] == [bases[-1]]
    j.close()
    # At open, ``release_to`` deletes what the restored checkpoint passed; reading starts
    # at the asked position.
    again = journal(tmp_path, segment_bytes=500)
    report = again.open(read_from=j.end, release_to=j.end)
    assert report.released == 1
    assert segment_files(tmp_path) == []
    assert report.read_from == report.end == j.end
    again.append(messages(1, 900))
    assert read_all(again) == messages(1, 900)
    assert int(segment_files(tmp_path)[0].stem) == j.end  # positions are never reused
    again.close()


def test_a_new_journal_starts_at_the_asked_position(tmp_path: Path) -> None:
    j = journal(tmp_path)
    report = j.open(read_from=123_456)  # the checkpoint's position; the folder was emptied
    assert (report.start, report.end, report.read_from) == (123_456, 123_456, 123_456)
    j.append(messages(2))
    frames = j.read(10, 1 << 20)
    assert frames[0].position == 123_456
    assert [(f.topic, f.payload) for f in frames] == messages(2)
    j.close()


def test_other_files_in_the_folder_are_left_alone(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "12.seg").write_bytes(b"not twenty digits")
    j = journal(tmp_path)
    assert j.open().segments == 0
    j.append(messages(1))
    assert read_all(j) == messages(1)
    j.close()
    assert (tmp_path / "notes.txt").read_text() == "hello"
    assert (tmp_path / "12.seg").exists()


def test_the_cap_drops_the_oldest_segments_and_counts_unread_frames(tmp_path: Path) -> None:
    j = journal(tmp_path, segment_bytes=400, max_bytes=1200)
    j.open()
    sent = messages(100)
    frame_sizes = [len(encode_frame(*m)) for m in sent]
    # The reader takes the first 10 frames; then ingest stalls and the feed goes on.
    j.append(sent[:10])
    assert len(j.read(10, 1 << 20)) == 10
    drops = []
    for k in range(10, 100, 2):
        drop = j.append(sent[k : k + 2])
        if drop is not None:
            drops.append(drop)
        assert j.size() <= 1200 + 400 + 2 * max(frame_sizes)  # bounded
    assert drops
    dropped_frames = sum(d.unread_frames for d in drops)
    assert dropped_frames > 0
    assert j.stats.dropped_unread == dropped_frames
    assert j.stats.dropped_segments == sum(d.segments for d in drops)
    # The reader jumps over what was dropped; every frame is read or counted, once.
    rest = read_all(j)
    assert len(rest) + dropped_frames == 90
    assert rest == sent[100 - len(rest) :]  # the newest ones, in order
    # Segments the reader had already read are dropped without being counted.
    j.append(messages(30, 200))
    read_all(j)
    before = j.stats.dropped_unread
    for k in range(0, 40, 2):
        j.append(messages(2, 300 + k))
        read_all(j)
    assert j.stats.dropped_segments > sum(d.segments for d in drops)
    assert j.stats.dropped_unread == before
    j.close()


# ---- 2. the source with a journal, against a broker ----------------------------------------


def source_settings(port: int, directory: Path, **overrides: object) -> MqttSourceSettings:
    values: dict[str, object] = {
        "name": "mqtt:journal",
        "port": port,
        "topics": ["sims/#"],
        "client_id": "simwatch-journal",
        "reconnect_min_s": 0.05,
        "reconnect_max_s": 0.2,
        "journal_dir": str(directory),
        "journal_segment_bytes": 4096,
        "journal_max_bytes": 1 << 20,
    }
    values.update(overrides)
    return MqttSourceSettings.model_validate(values)


async def publish(port: int, payloads: list[bytes], qos: int = 1) -> None:
    async with aiomqtt.Client("127.0.0.1", port, identifier="publisher", timeout=WAIT) as pub:
        for payload in payloads:
            await pub.publish(TOPIC, payload, qos=qos)


async def take(sink: asyncio.Queue[Batch], count: int, *, apply: bool = True) -> list[bytes]:
    """Payloads from the sink until ``count``; ``apply``: run each batch's on_applied."""
    got: list[bytes] = []

    async def run() -> None:
        while len(got) < count:
            batch = await sink.get()
            got.extend(batch.payloads)
            if apply and batch.on_applied is not None:
                await batch.on_applied()

    await asyncio.wait_for(run(), WAIT)
    return got


async def take_distinct(sink: asyncio.Queue[Batch], wanted: set[bytes]) -> set[bytes]:
    """Payloads from the sink (applied) until each of ``wanted`` came at least once."""
    got: set[bytes] = set()

    async def run() -> None:
        while not wanted <= got:
            batch = await sink.get()
            got.update(batch.payloads)
            if batch.on_applied is not None:
                await batch.on_applied()

    await asyncio.wait_for(run(), WAIT)
    return got


@contextlib.asynccontextmanager
async def running(source: MqttSource, sink: asyncio.Queue[Batch]) -> AsyncIterator[None]:
    task = asyncio.create_task(source.run(sink))

    def connected() -> bool:
        return source.stats.connected or task.done()

    try:
        await until(connected, WAIT, "the source connected", interval_s=0.01)
        assert not task.done(), task
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, WAIT)


def test_the_journal_lives_under_the_state_dir_unless_told() -> None:
    settings = MqttSourceSettings(name="mqtt:broker a/b", topics=["t"])
    assert journal_dir(settings, Path("/var/lib/simwatch")) == Path(
        "/var/lib/simwatch/mqtt-journal/mqtt%3Abroker%20a%2Fb"
    )
    assert journal_dir(settings, None) is None  # no state dir: no journal
    off = settings.model_copy(update={"journal": False})
    assert journal_dir(off, Path("/var/lib/simwatch")) is None
    there = settings.model_copy(update={"journal_dir": Path("/fast/j")})
    assert journal_dir(there, None) == Path("/fast/j")
    assert MqttSource(settings).cursor() == {"version": 1, "position": None}


def test_journal_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="2 is not supported with the journal"):
        MqttSourceSettings(name="m", topics=["t"], qos=2)
    assert MqttSourceSettings(name="m", topics=["t"], qos=2, journal=False).qos == 2
    with pytest.raises(ValueError, match="at least twice journal_segment_bytes"):
        MqttSourceSettings(
            name="m", topics=["t"], journal_max_bytes=1 << 20, journal_segment_bytes=1 << 20
        )


class QueuedMessages:
    """A stand-in for ``client.messages``: messages already waiting, then a disconnect."""

    def __init__(self, items: list[aiomqtt.Message]) -> None:
        self.queue = items

    def __aiter__(self) -> QueuedMessages:
        return self

    async def __anext__(self) -> aiomqtt.Message:
        await asyncio.sleep(0)
        if not self.queue:
            raise aiomqtt.MqttError("Disconnected during message iteration")
        return self.queue.pop(0)

    def __len__(self) -> int:
        return len(self.queue)


class FakePaho:
    def __init__(self) -> None:
        self.acked: list[tuple[int, int]] = []

    def ack(self, mid: int, qos: int) -> int:
        self.acked.append((mid, qos))
        return 0


class FakeClient:
    def __init__(self, items: list[aiomqtt.Message]) -> None:
        self.messages = QueuedMessages(items)
        self._client = FakePaho()


async def test_only_messages_of_this_connection_are_acknowledged(tmp_path: Path) -> None:
    # Five messages left in the queue by a closed connection, then five of this one
    # (two of them QoS 0): all ten are journaled; only this connection's QoS 1 are acked.
    items = [
        aiomqtt.Message(TOPIC, b'{"n":%d}' % i, qos=0 if i in (6, 8) else 1, retain=False,
                        mid=100 + i, properties=None)
        for i in range(10)
    ]  # fmt: skip
    source = MqttSource(source_settings(1883, tmp_path / "journal"))
    j = await source._open_journal(tmp_path / "journal")
    client = FakeClient(list(items))
    source._stale = 5
    with pytest.raises(aiomqtt.MqttError):
        await source._journal_pump(cast("aiomqtt.Client", client), j)
    assert client._client.acked == [(105, 1), (107, 1), (109, 1)]
    assert [f.payload for f in j.read(100, 1 << 20)] == [m.payload for m in items]
    j.close()


async def test_a_stop_during_the_journal_write_still_acknowledges_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Cancelled while the batch is written in its thread (ingest can already read it: the
    # journal's end moves before the thread returns): the write ends and the batch is
    # acknowledged before the cancellation goes on, so the broker does not send it again.
    items = [
        aiomqtt.Message(TOPIC, b'{"n":%d}' % i, qos=1, retain=False, mid=200 + i,
                        properties=None)
        for i in range(4)
    ]  # fmt: skip
    source = MqttSource(source_settings(1883, tmp_path / "journal"))
    j = await source._open_journal(tmp_path / "journal")
    writing, release = threading.Event(), threading.Event()
    append = j.append

    def slow_append(records: list[tuple[str, bytes]]) -> object:
        writing.set()
        release.wait(WAIT)
        return append(records)

    monkeypatch.setattr(j, "append", slow_append)
    client = FakeClient(list(items))
    source._stale = 1  # the first came over a closed connection: never acknowledged
    pump = asyncio.create_task(source._journal_pump(cast("aiomqtt.Client", client), j))
    assert await asyncio.to_thread(writing.wait, WAIT)
    pump.cancel()
    await asyncio.sleep(0.05)
    assert not pump.done()  # waits for the write
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await pump
    assert client._client.acked == [(201, 1), (202, 1), (203, 1)]
    assert [f.payload for f in j.read(100, 1 << 20)] == [m.payload for m in items]
    j.close()


@needs_broker
async def test_payloads_go_through_the_journal_and_are_acknowledged(
    broker: Mosquitto, tmp_path: Path
) -> None:
    settings = source_settings(broker.port, tmp_path / "journal")
    source = MqttSource(settings)
    assert source.cursor() is None  # not known before the journal is open
    sink: asyncio.Queue[Batch] = asyncio.Queue()
    sent = [b'{"n":%d}' % i for i in range(50)]
    async with running(source, sink):
        await publish(broker.port, sent)
        assert await take(sink, 50) == sent
    assert source.journal is not None
    assert source.cursor() == {"version": 1, "position": source.journal.end}
    # Acknowledged: a new client with the same session gets nothing again.
    again = MqttSource(source_settings(broker.port, tmp_path / "other-journal"))
    sink2: asyncio.Queue[Batch] = asyncio.Queue()
    async with running(again, sink2):
        await publish(broker.port, [b'{"after":1}'])
        assert await take(sink2, 1) == [b'{"after":1}']


@needs_broker
async def test_a_message_not_journaled_is_not_acknowledged(
    broker: Mosquitto,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    failures = [OSError(28, "No space left on device")]
    real_append = Journal.append

    def append(self: Journal, batch: list[tuple[str, bytes]]) -> object:
        if failures:
            raise failures.pop()
        return real_append(self, batch)

    monkeypatch.setattr(Journal, "append", append)
    source = MqttSource(source_settings(broker.port, tmp_path / "journal"))
    sink: asyncio.Queue[Batch] = asyncio.Queue()
    caplog.set_level(logging.WARNING, logger="simwatch.sources.mqtt")
    async with running(source, sink):
        await publish(broker.port, [b'{"first":1}'])
        # The write failed: no ack, the source reconnects, the broker sends it again.
        assert await take(sink, 1) == [b'{"first":1}']
        assert source.stats.errors == 1
        await until(lambda: source.stats.connected, WAIT, "reconnected", interval_s=0.01)
        assert source.stats.last_error is None
    assert "messages left unacknowledged (cannot write the journal" in caplog.text
    assert "No space left on device" in caplog.text


@needs_broker
async def test_what_was_not_applied_is_replayed_from_the_journal(
    broker: Mosquitto, tmp_path: Path
) -> None:
    settings = source_settings(broker.port, tmp_path / "journal")
    first = MqttSource(settings)
    sink: asyncio.Queue[Batch] = asyncio.Queue()
    sent = [b'{"n":%d}' % i for i in range(40)]
    async with running(first, sink):
        await publish(broker.port, sent[:10])
        assert await take(sink, 10) == sent[:10]  # applied
        checkpoint = first.cursor()
        await publish(broker.port, sent[10:])
        assert await take(sink, 30, apply=False) == sent[10:]  # handed, never applied
    assert first.cursor() == checkpoint
    # "Crash", restart from the checkpoint: the 30 come from the journal (the broker has
    # them acknowledged), then the live feed goes on.
    second = MqttSource(settings)
    second.restore(checkpoint)
    sink = asyncio.Queue()
    async with running(second, sink):
        assert await take(sink, 30) == sent[10:]
        await publish(broker.port, [b'{"live":1}'])
        assert await take(sink, 1) == [b'{"live":1}']
    assert sink.empty()


@needs_broker
async def test_checkpointed_segments_are_deleted(broker: Mosquitto, tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    source = MqttSource(source_settings(broker.port, directory, journal_segment_bytes=4096))
    sink: asyncio.Queue[Batch] = asyncio.Queue()
    sent = [b'{"n":%d,"pad":"%s"}' % (i, b"p" * 400) for i in range(60)]
    async with running(source, sink):
        for k in range(0, 60, 5):
            await publish(broker.port, sent[k : k + 5])
            await take(sink, 5)
        assert len(segment_files(directory)) > 3
        await source.checkpointed(source.cursor())
        assert len(segment_files(directory)) == 1  # only the one being written
        await source.checkpointed({"version": 1, "position": 0})  # older: no effect
        await source.checkpointed("junk")  # malformed: ignored
        assert len(segment_files(directory)) == 1
    # Restored from that cursor, nothing is replayed.
    again = MqttSource(source_settings(broker.port, directory))
    again.restore(source.cursor())
    sink = asyncio.Queue()
    async with running(again, sink):
        await publish(broker.port, [b'{"live":2}'])
        assert await take(sink, 1) == [b'{"live":2}']
    assert sink.empty()


@needs_broker
async def test_a_checkpoint_without_the_journal_discards_older_journal_frames(
    broker: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "journal"
    old = Journal(directory, segment_bytes=4096, max_bytes=1 << 20)
    old.open()
    old.append([(TOPIC, b'{"old":1}')])
    old.close()
    source = MqttSource(source_settings(broker.port, directory))
    source.restore({"version": 1, "position": None})  # the checkpoint had the journal off
    sink: asyncio.Queue[Batch] = asyncio.Queue()
    with caplog.at_level(logging.WARNING, logger="simwatch.sources.mqtt"):
        async with running(source, sink):
            await publish(broker.port, [b'{"new":1}'])
            assert await take(sink, 1) == [b'{"new":1}']
    assert "written with the journal off" in caplog.text


@needs_broker
async def test_shed_messages_come_again_after_a_reconnect(tmp_path: Path) -> None:
    # The broker lets 200 messages be in flight; the journal is slow at first, so
    # aiomqtt's queue (10) overflows. The shed messages were not acknowledged: once the
    # source caught up it reconnects and the broker sends them again.
    server = Mosquitto(tmp_path / "broker")
    with server.config.open("a") as conf:
        conf.write("max_inflight_messages 200\n")
    await asyncio.to_thread(server.start)
    slow = [True]
    real_append = Journal.append

    def append(self: Journal, batch: list[tuple[str, bytes]]) -> object:
        if slow:
            slow.clear()
            time.sleep(0.5)  # in the worker thread: the socket keeps being read
        return real_append(self, batch)

    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(Journal, "append", append)
            settings = source_settings(server.port, tmp_path / "journal", max_queued_messages=10)
            source = MqttSource(settings)
            sink: asyncio.Queue[Batch] = asyncio.Queue()
            sent = [b'{"n":%d}' % i for i in range(150)]
            async with running(source, sink):
                await publish(server.port, sent)
                got = await take_distinct(sink, set(sent))
        assert source.stats.shed > 0
        assert got == set(sent)
    finally:
        await asyncio.to_thread(server.stop)


# ---- 3. kill -9 of a real `simwatch run` ---------------------------------------------------

SIMS = [f"8931440000{i:09d}" for i in range(300)]
PER_PAYLOAD = 50  # records per MQTT message


class Feed:
    """QoS 1 payloads of usage records, and per SIM what was published."""

    def __init__(self) -> None:
        self.seq = 0
        self.records = 0
        self.month_bytes: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))

    def payload(self) -> bytes:
        end = time.time() - 5
        lines = []
        for _ in range(PER_PAYLOAD):
            self.seq += 1
            iccid = SIMS[self.seq % len(SIMS)]
            up = 1000 + (self.seq * 7919) % 5000
            self.month_bytes[iccid][month_of(end)] += up + 100
            lines.append(
                orjson.dumps(
                    {
                        "kind": "usage",
                        "record_id": f"m-{self.seq}",
                        "iccid": iccid,
                        "start": format_rfc3339(end - 60),
                        "end": format_rfc3339(end),
                        "bytes_up": up,
                        "bytes_down": 100,
                        "apn": "meters.acme",
                        "mcc": "262",
                        "mnc": "01",
                    }
                )
            )
        self.records += PER_PAYLOAD
        return b"\n".join(lines)

    def expected(self) -> dict[str, int]:
        return {iccid: months[max(months)] for iccid, months in self.month_bytes.items()}


class Publisher:
    """Publishes QoS 1 payloads (each confirmed by the broker) until stopped."""

    def __init__(self, port: int, feed: Feed) -> None:
        self.port = port
        self.feed = feed
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        async with aiomqtt.Client("127.0.0.1", self.port, identifier="feeder") as client:
            while not self.stop.is_set():
                for _ in range(5):
                    await client.publish(TOPIC, self.feed.payload(), qos=1)
                await asyncio.sleep(0.05)

    def start(self) -> None:
        self.task = asyncio.create_task(self.run())

    async def finish(self) -> None:
        self.stop.set()
        if self.task is not None:
            await self.task


def write_config(tmp_path: Path, broker_port: int, http_port: int, *, journal: bool) -> Path:
    config = tmp_path / "simwatch.toml"
    config.write_text(
        f"""
state_dir = "{tmp_path / "state"}"
[checkpoint]
interval_s = 1.0
[engine]
eval_interval_s = 300.0
dead_letter_file = "{tmp_path / "dl.ndjson"}"
[http]
port = {http_port}
auth = "off"
[log]
level = "info"
[[sources.mqtt]]
name = "mqtt:feed"
port = {broker_port}
topics = ["{TOPIC}"]
client_id = "simwatch-kill9"
reconnect_min_s = 0.1
reconnect_max_s = 0.5
journal = {"true" if journal else "false"}
journal_dir = "{tmp_path / "journal"}"
journal_segment_bytes = 65536
journal_max_bytes = 1073741824
""",
        encoding="utf-8",
    )
    return config


def received(port: int) -> int:
    """Records the daemon's MQTT source has handed to ingest and ingest applied, counted
    since the process started (-1 while the API does not answer)."""
    status, body = http_get(f"http://127.0.0.1:{port}/api/v1/status")
    if status != 200:
        return -1
    (source,) = orjson.loads(body)["sources"]
    return int(source["received"])


def checkpoint(state_dir: Path) -> ckpt.Snapshot | None:
    try:
        return ckpt.read_file(state_dir)
    except ckpt.CheckpointError:
        return None  # being replaced right now


def ingest_counts(snapshot: ckpt.Snapshot | None) -> tuple[int, int]:
    """(applied, duplicates) in a checkpoint."""
    if snapshot is None:
        return 0, 0
    engine = snapshot.header["engine"]
    assert isinstance(engine, dict)
    ingest = engine["ingest"]
    return int(ingest["applied"]), int(ingest["duplicates"])


def month_bytes(snapshot: ckpt.Snapshot) -> dict[str, int]:
    index = IccidIndex()
    index.restore(snapshot.arrays["index.hi"], snapshot.arrays["index.lo"])
    values = snapshot.arrays["col.month_bytes"].tolist()
    return dict(zip(index.iccids(), values, strict=True))


async def kill_mid_ingest_and_restart(tmp_path: Path, *, journal: bool) -> tuple[Feed, int]:
    """Run the scenario; (what was published, records applied after the last checkpoint
    when the daemon was killed). The final checkpoint is in ``tmp_path/state``."""
    broker = Mosquitto(tmp_path / "broker")
    await asyncio.to_thread(broker.start)
    port = free_port()
    config = write_config(tmp_path, broker.port, port, journal=journal)
    state_dir = tmp_path / "state"
    log = tmp_path / "simwatch.log"
    feed = Feed()
    publisher = Publisher(broker.port, feed)
    process = start_simwatch(config, log)
    try:
        await until(lambda: received(port) >= 0, 60, "the daemon's API")
        publisher.start()
        # kill -9 once records are applied past a checkpoint of live records
        await until(
            lambda: (
                ingest_counts(checkpoint(state_dir))[0] > 2000
                and received(port) > ingest_counts(checkpoint(state_dir))[0] + 500
            ),
            60,
            "a checkpoint, and records applied after it",
        )
        seen = received(port)
        os.kill(process.pid, signal.SIGKILL)
        await asyncio.to_thread(process.wait, 10)
        ahead = seen - ingest_counts(checkpoint(state_dir))[0]  # the checkpoint restored
        # restart; the feed goes on a little, then stops
        process = start_simwatch(config, log)
        await until(lambda: received(port) >= 0, 60, "the API after the restart")
        await asyncio.sleep(1.0)
        await publisher.finish()
        # everything published is applied (or, without the journal, nothing more comes)
        await until(Settled(port, state_dir, feed, journal=journal), 60, "ingest to settle")
        assert await stop_simwatch(process, log) == 0
    finally:
        publisher.stop.set()
        if process.poll() is None:
            process.kill()
            process.wait()
        await asyncio.to_thread(broker.stop)
    text = log.read_text(errors="replace")
    assert "checkpoint restored" in text, text[-3000:]
    return feed, ahead


class Settled:
    """With the journal: the last checkpoint holds every published record. Without:
    ingest has been idle for 3 s (what was lost will not come)."""

    def __init__(self, port: int, state_dir: Path, feed: Feed, *, journal: bool) -> None:
        self.port = port
        self.state_dir = state_dir
        self.feed = feed
        self.journal = journal
        self.count = -2
        self.since = time.monotonic()

    def __call__(self) -> bool:
        if self.journal:
            return ingest_counts(checkpoint(self.state_dir))[0] >= self.feed.records
        count = received(self.port)
        if count != self.count:
            self.count, self.since = count, time.monotonic()
            return False
        return count > 0 and time.monotonic() - self.since > 3.0


@needs_broker
async def test_kill_9_mid_ingest_with_the_journal_applies_every_record_once(
    tmp_path: Path,
) -> None:
    feed, ahead = await kill_mid_ingest_and_restart(tmp_path, journal=True)
    assert ahead > 0, "the kill came before any record past the checkpoint was applied"
    final = ckpt.read_file(tmp_path / "state")
    assert final is not None
    applied, _duplicates = ingest_counts(final)  # duplicates: redelivered, dropped
    assert applied == feed.records  # every published record applied exactly once ...
    assert month_bytes(final) == feed.expected()  # ... and no byte counted twice
    text = (tmp_path / "simwatch.log").read_text(errors="replace")
    assert "replaying" in text
    # every checkpoint deleted the segments it had passed; the last one, all of them
    assert len(segment_files(tmp_path / "journal")) <= 1


@needs_broker
async def test_kill_9_mid_ingest_without_the_journal_loses_records(tmp_path: Path) -> None:
    feed, ahead = await kill_mid_ingest_and_restart(tmp_path, journal=False)
    assert ahead > 0, "the kill came before any record past the checkpoint was applied"
    final = ckpt.read_file(tmp_path / "state")
    assert final is not None
    applied, _duplicates = ingest_counts(final)
    # acknowledged on receipt, applied after the checkpoint, gone with the process
    assert applied <= feed.records - ahead
    assert not (tmp_path / "journal").exists()


@pytest.mark.parametrize(
    ("cursor", "error"),
    [
        ([1], TypeError),  # not an object
        ({"position": 5}, KeyError),  # no version
        ({"version": 2, "position": 5}, ValueError),  # a version this daemon does not know
        ({"version": 1}, KeyError),  # no position
        ({"version": 1, "position": -1}, ValueError),
        ({"version": 1, "position": True}, ValueError),  # a bool is not a position
        ({"version": 1, "position": "5"}, ValueError),
    ],
)
def test_a_malformed_cursor_is_refused_by_name(cursor: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        position_of(cursor)


def test_a_cursor_round_trips_and_a_missing_position_is_refused_where_one_is_required() -> None:
    assert position_of(cursor_of(4096)) == 4096
    assert position_of(cursor_of(None)) is None  # the MQTT source with its journal off
    with pytest.raises(ValueError, match="bad position None"):
        position_of(cursor_of(None), optional=False)  # the webhook source always journals
