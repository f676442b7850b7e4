"""Tests for the ``file`` source: backlog, follow, partial lines, rotation, restart, errors."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import TYPE_CHECKING

import orjson
import pytest
from servers import until

from simwatch.shell.settings import FileSourceSettings
from simwatch.sources.file import BATCH_LINES, FileSource

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from simwatch.shell.source_contract import Batch

POLL = 0.01
TIMEOUT = 5.0


def _line(n: int) -> bytes:
    return orjson.dumps({"kind": "usage", "record_id": f"u-{n}", "iccid": "8931440000000000011"})


def _write(path: Path, numbers: range | list[int], mode: str = "ab") -> None:
    with path.open(mode) as out:
        out.writelines(_line(n) + b"\n" for n in numbers)


def _settings(path: Path, **kw: object) -> FileSourceSettings:
    return FileSourceSettings.model_validate(
        {"name": "file:test", "path": path, "poll_interval_s": POLL, **kw}
    )


@contextlib.asynccontextmanager
async def _running(source: FileSource, queue: asyncio.Queue[Batch]) -> AsyncIterator[None]:
    task = asyncio.create_task(source.run(queue))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _take(queue: asyncio.Queue[Batch], n: int, *, apply: bool = True) -> list[bytes]:
    """The next ``n`` lines from the queue (committing each batch unless ``apply`` is off)."""
    got: list[bytes] = []

    async def collect() -> None:
        while len(got) < n:
            batch = await queue.get()
            assert batch.source == "file:test"
            got.extend(batch.lines)
            if apply and batch.on_applied is not None:
                await batch.on_applied()

    await asyncio.wait_for(collect(), TIMEOUT)
    return got


async def _nothing_more(queue: asyncio.Queue[Batch]) -> None:
    await asyncio.sleep(POLL * 10)
    assert queue.empty(), [b.lines for b in [queue.get_nowait()]]


def _numbers(lines: list[bytes]) -> list[int]:
    return [int(str(orjson.loads(line)["record_id"])[2:]) for line in lines]


async def test_backlog_then_appended_lines_and_partial_line_waits(tmp_path: Path) -> None:
    path = tmp_path / "records.ndjson"
    _write(path, range(1, 4))
    with path.open("ab") as out:
        out.write(_line(4)[:10])  # a partial last line
    source = FileSource(_settings(path), clock=lambda: 1000.0)
    queue: asyncio.Queue[Batch] = asyncio.Queue(maxsize=4)
    async with _running(source, queue):
        assert _numbers(await _take(queue, 3)) == [1, 2, 3]
        await _nothing_more(queue)  # the partial line waits for its newline
        with path.open("ab") as out:
            out.write(_line(4)[10:] + b"\n\n")  # completes it; a blank line is skipped
        _write(path, [5, 6])
        assert _numbers(await _take(queue, 3)) == [4, 5, 6]
        await _nothing_more(queue)
    assert source.stats.kind == "file"
    assert source.stats.errors == 0
    assert source.stats.last_success == 1000.0
    assert source.stats.connected


async def test_big_backlog_is_batched_in_order(tmp_path: Path) -> None:
    path = tmp_path / "records.ndjson"
    total = 2 * BATCH_LINES + 123
    _write(path, range(total))
    queue: asyncio.Queue[Batch] = asyncio.Queue(maxsize=1)  # backpressure: one batch at a time
    sizes: list[int] = []
    got: list[bytes] = []
    async with _running(FileSource(_settings(path)), queue):

        async def collect() -> None:
            while len(got) < total:
                batch = await queue.get()
                sizes.append(len(batch.lines))
                got.extend(batch.lines)

        await asyncio.wait_for(collect(), TIMEOUT)
    assert _numbers(got) == list(range(total))
    assert max(sizes) <= BATCH_LINES
    assert len(sizes) >= 3


async def test_start_at_end_skips_the_backlog_but_not_new_files(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    old = folder / "a.ndjson"
    _write(old, range(1, 4))
    with old.open("ab") as out:
        out.write(_line(99)[:7])  # partial: starting "at the end" means after the last newline
    queue: asyncio.Queue[Batch] = asyncio.Queue()
    async with _running(FileSource(_settings(folder, start_at="end")), queue):
        await asyncio.sleep(POLL * 5)
        with old.open("ab") as out:
            out.write(_line(99)[7:] + b"\n")
        assert _numbers(await _take(queue, 1)) == [99]
        _write(folder / "b.ndjson", [10, 11])  # a file that appears later is new data
        assert _numbers(await _take(queue, 2)) == [10, 11]
        await _nothing_more(queue)


async def test_rotation_reads_the_old_file_to_its_end_then_the_new_one(tmp_path: Path) -> None:
    path = tmp_path / "records.ndjson"
    _write(path, [1, 2])
    queue: asyncio.Queue[Batch] = asyncio.Queue()
    async with _running(FileSource(_settings(path)), queue):
        assert _numbers(await _take(queue, 2)) == [1, 2]
        rotated = tmp_path / "records.ndjson.1"
        path.rename(rotated)
        await asyncio.sleep(POLL * 5)  # the path is missing for a while: not an error
        _write(rotated, [3, 4])  # the writer still had the old file open
        with rotated.open("ab") as out:
            out.write(_line(5))  # the finished file's last line has no newline
        _write(path, [6, 7], mode="wb")  # the new file
        assert _numbers(await _take(queue, 5)) == [3, 4, 5, 6, 7]
        _write(path, [8])
        assert _numbers(await _take(queue, 1)) == [8]
        await _nothing_more(queue)


async def test_replaced_file_of_the_same_size_is_detected_by_inode(tmp_path: Path) -> None:
    path = tmp_path / "records.ndjson"
    _write(path, [1, 2])
    queue: asyncio.Queue[Batch] = asyncio.Queue()
    source = FileSource(_settings(path))
    async with _running(source, queue):
        assert _numbers(await _take(queue, 2)) == [1, 2]
        fresh = tmp_path / "fresh.ndjson"
        _write(fresh, [3, 4], mode="wb")  # same size as the old file
        fresh.replace(path)
        assert _numbers(await _take(queue, 2)) == [3, 4]
        await _nothing_more(queue)
    assert source.stats.errors == 0


async def test_truncation_restarts_at_zero(tmp_path: Path) -> None:
    path = tmp_path / "records.ndjson"
    _write(path, range(1, 6))
    queue: asyncio.Queue[Batch] = asyncio.Queue()
    async with _running(FileSource(_settings(path)), queue):
        assert _numbers(await _take(queue, 5)) == [1, 2, 3, 4, 5]
        _write(path, [42], mode="wb")  # truncated in place (same inode), shorter than before
        assert _numbers(await _take(queue, 1)) == [42]
        _write(path, [43])
        assert _numbers(await _take(queue, 1)) == [43]
        await _nothing_more(queue)


async def test_restart_resumes_from_the_committed_offset(tmp_path: Path) -> None:
    path = tmp_path / "records.ndjson"
    state = tmp_path / "state" / "offsets.json"
    settings = _settings(path, state_file=state)
    _write(path, range(1, 5))
    queue: asyncio.Queue[Batch] = asyncio.Queue()
    async with _running(FileSource(settings), queue):
        assert _numbers(await _take(queue, 4)) == [1, 2, 3, 4]
    saved = orjson.loads(state.read_bytes())
    assert [f["offset"] for f in saved["files"]] == [path.stat().st_size]
    assert not list(state.parent.glob("*.tmp"))  # written via a temp file, then replaced

    _write(path, [5, 6])
    async with _running(FileSource(settings), queue):
        assert _numbers(await _take(queue, 2)) == [5, 6]  # nothing repeated
        _write(path, [7, 8])
        # handed over but never applied (say ingest died): must come again after a restart
        assert _numbers(await _take(queue, 2, apply=False)) == [7, 8]
        await _nothing_more(queue)

    async with _running(FileSource(settings), queue):
        assert _numbers(await _take(queue, 2)) == [7, 8]  # nothing lost
        await _nothing_more(queue)


async def test_restart_does_not_trust_an_offset_of_a_different_file(tmp_path: Path) -> None:
    path = tmp_path / "records.ndjson"
    state = tmp_path / "offsets.json"
    settings = _settings(path, state_file=state)
    _write(path, range(1, 4))
    queue: asyncio.Queue[Batch] = asyncio.Queue()
    async with _running(FileSource(settings), queue):
        assert _numbers(await _take(queue, 3)) == [1, 2, 3]
    # While we were down the file was truncated and rewritten with other content.
    _write(path, [11, 12, 13, 14], mode="wb")
    async with _running(FileSource(settings), queue):
        assert _numbers(await _take(queue, 4)) == [11, 12, 13, 14]
        await _nothing_more(queue)


async def test_folder_with_pattern(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    _write(folder / "a.ndjson", [1, 2])
    _write(folder / "b.ndjson", [3])
    _write(folder / "c.txt", [100])  # not matching the pattern
    (folder / "d.ndjson").mkdir()  # a folder matching the pattern is not a file
    queue: asyncio.Queue[Batch] = asyncio.Queue()
    async with _running(FileSource(_settings(folder)), queue):
        assert sorted(_numbers(await _take(queue, 3))) == [1, 2, 3]
        _write(folder / "b.ndjson", [4])
        _write(folder / "e.ndjson", [5])
        assert sorted(_numbers(await _take(queue, 2))) == [4, 5]
        (folder / "a.ndjson").rename(folder / "z.ndjson")  # renamed within the folder
        _write(folder / "z.ndjson", [6])
        assert _numbers(await _take(queue, 1)) == [6]  # offset kept: 1 and 2 not repeated
        await _nothing_more(queue)


async def test_missing_folder_is_an_error_until_it_appears(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "later"
    queue: asyncio.Queue[Batch] = asyncio.Queue()
    source = FileSource(_settings(folder), clock=lambda: 5.0)
    caplog.set_level(logging.INFO, logger="simwatch.sources.file")
    async with _running(source, queue):
        await until(
            lambda: source.stats.errors >= 3, TIMEOUT, "three failed polls", interval_s=POLL
        )
        assert source.stats.last_error is not None
        assert "later" in source.stats.last_error
        assert not source.stats.connected
        assert source.stats.last_success is None
        folder.mkdir()
        _write(folder / "a.ndjson", [1])
        assert _numbers(await _take(queue, 1)) == [1]
        await until(lambda: source.stats.last_error is None, TIMEOUT, "recovery", interval_s=POLL)
    assert source.stats.last_success == 5.0
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    recoveries = [r for r in caplog.records if "recovered" in r.getMessage()]
    assert len(warnings) == 1  # logged once when it started, not on every poll
    assert len(recoveries) == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
async def test_unreadable_file_is_an_error_until_fixed(tmp_path: Path) -> None:
    path = tmp_path / "records.ndjson"
    _write(path, [1])
    path.chmod(0)
    queue: asyncio.Queue[Batch] = asyncio.Queue()
    source = FileSource(_settings(path))
    async with _running(source, queue):
        await until(lambda: source.stats.errors >= 2, TIMEOUT, "failed polls", interval_s=POLL)
        assert source.stats.last_error is not None
        path.chmod(0o644)
        assert _numbers(await _take(queue, 1)) == [1]
        await until(lambda: source.stats.last_error is None, TIMEOUT, "recovery", interval_s=POLL)
