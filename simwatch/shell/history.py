"""The bounded per-SIM history on disk (sqlite3 from the stdlib) that the console reads.

What the fleet state keeps per SIM is the newest of everything (one row of columns); the
console also shows what came before: the SIM's records of the last two days (the strip
of ticks against its rhythm), its recent sessions with causes and volumes, its rejects,
and per group the affected count each cycle (an incident's chart). That lives here, on
disk, bounded in days, never in memory per SIM.

- ``records``: one table per UTC day (``r_<day number>``), ``WITHOUT ROWID`` with the key
  ``(iccid, ts, n)``: a SIM's records of a day are one range of the b-tree. Pruning drops
  whole days (``DROP TABLE``: instant, no scan).
- ``series``: ``(key, at)`` → total, affected, expected of a group per cycle (``key`` is
  ``partner=20801`` or ``apn=x,partner=20801``), pruned by ``DELETE`` once an hour.
- ``ids``: ``(kind, value)`` → ICCID for the inventory's IMSI and MSISDN (the console's
  search box).

``HistoryStore`` is synchronous (called in worker threads): one writer connection and one
reader connection in WAL mode, each behind its own lock, so a page reads while a batch is
written. ``HistoryWriter`` is the event loop's side: ``add_*`` only appends to a bounded
buffer (beyond ``max_pending`` records are dropped and counted), ``run()`` writes the
buffer every second in a worker thread (``asyncio.to_thread``), and prunes hourly.
"""

from __future__ import annotations

import asyncio
import logging
import operator
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from simwatch.shell.logs import FailureLog

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from pathlib import Path

    from simwatch.core.records import Record

log = logging.getLogger(__name__)

DAY_S: Final = 86_400
KINDS: Final = ("usage", "session", "event")
FLUSH_S: Final = 1.0  # the writer writes what is buffered this often
PRUNE_S: Final = 3600.0  # and drops expired days this often
_DAY_TABLE: Final = "r_"
_KEY: Final = operator.itemgetter(0, 1)  # a record row's (iccid, ts): the table's key order
CACHE_KB: Final = 64 * 1024  # the writer connection's page cache (sqlite default: 2 MB)

# One buffered record: iccid, ts, kind code, bytes, what (session status or event type),
# cause (end cause or event cause), apn, partner.
Row = tuple[str, int, int, int, str | None, str | None, str | None, str | None]
SeriesRow = tuple[str, int, float, float, float]  # key, at, total, affected, expected


@dataclass(frozen=True, slots=True)
class HistoryRecord:
    """One record of a SIM as the history keeps it."""

    ts: int  # event time, epoch seconds
    kind: str  # usage | session | event
    bytes: int  # bytes_up + bytes_down
    what: str | None  # session status (started/interim/ended) or event type
    cause: str | None  # session end cause or event cause
    apn: str | None
    partner: str | None


def row_of(record: Record) -> Row:
    """The history row of one applied record."""
    what = record.status if record.kind == "session" else record.event_type
    cause = record.end_cause if record.kind == "session" else record.cause
    return (
        record.iccid,
        int(record.ts),
        KINDS.index(record.kind),
        record.bytes_up + record.bytes_down,
        what,
        cause,
        record.apn,
        record.partner,
    )


def series_key(dims: Mapping[str, str]) -> str:
    """The key of a group's series: ``apn=x,partner=20801`` (dims sorted)."""
    return ",".join(f"{k}={v}" for k, v in sorted(dims.items()))


class HistoryStore:
    """The sqlite file. Every method blocks: call it from a worker thread."""

    def __init__(self, path: Path, *, days: int) -> None:
        self.path = path
        self.days = days
        path.parent.mkdir(parents=True, exist_ok=True)
        self._write = self._connect()
        self._read = self._connect()
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        # the day tables; replaced whole (never changed in place) under the write lock, so
        # a reader thread takes it without a lock
        self._tables: frozenset[int] = frozenset()
        self._next = 0
        with self._write_lock:
            db = self._write
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # history: a lost last second is fine
            db.execute(f"PRAGMA cache_size=-{CACHE_KB}")  # the pages a batch touches stay hot
            db.execute(
                "CREATE TABLE IF NOT EXISTS series (key TEXT NOT NULL, at INTEGER NOT NULL, "
                "total REAL, affected REAL, expected REAL, PRIMARY KEY (key, at)) WITHOUT ROWID"
            )
            db.execute(
                "CREATE TABLE IF NOT EXISTS ids (kind TEXT NOT NULL, value TEXT NOT NULL, "
                "iccid TEXT NOT NULL, PRIMARY KEY (kind, value)) WITHOUT ROWID"
            )
            for day in self._days(db):
                self._tables |= {day}
                found = db.execute(f"SELECT max(n) FROM {_DAY_TABLE}{day}").fetchone()[0]  # noqa: S608 - our own table name
                self._next = max(self._next, (found or 0) + 1)
            db.commit()

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, check_same_thread=False, timeout=30.0)

    @staticmethod
    def _days(db: sqlite3.Connection) -> list[int]:
        names = db.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name LIKE 'r\\_%' ESCAPE '\\'"
        ).fetchall()
        return sorted(int(n[0][2:]) for n in names if n[0][2:].isdigit())

    def close(self) -> None:
        with self._write_lock, self._read_lock:
            self._write.close()
            self._read.close()

    # ---- writing --------------------------------------------------------------------------

    def write(self, rows: Sequence[Row], series: Sequence[SeriesRow] = ()) -> None:
        """Append records (each to the table of its day) and group series points."""
        by_day: dict[int, list[tuple[object, ...]]] = {}
        with self._write_lock:
            for row in rows:
                self._next += 1
                by_day.setdefault(row[1] // DAY_S, []).append((*row, self._next))
            db = self._write
            for day, items in by_day.items():
                items.sort(key=_KEY)  # in key order: each b-tree leaf touched once per batch
                if day not in self._tables:
                    db.execute(
                        f"CREATE TABLE IF NOT EXISTS {_DAY_TABLE}{day} (iccid TEXT NOT NULL, "
                        "ts INTEGER NOT NULL, kind INTEGER NOT NULL, bytes INTEGER NOT NULL, "
                        "what TEXT, cause TEXT, apn TEXT, partner TEXT, n INTEGER NOT NULL, "
                        "PRIMARY KEY (iccid, ts, n)) WITHOUT ROWID"
                    )
                    self._tables |= {day}
                db.executemany(
                    f"INSERT INTO {_DAY_TABLE}{day} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608 - our own table name
                    items,
                )
            if series:
                db.executemany("INSERT OR REPLACE INTO series VALUES (?, ?, ?, ?, ?)", series)
            db.commit()

    def write_ids(self, ids: Iterable[tuple[str, str, str]]) -> None:
        """(kind, value, iccid) of the inventory: ``imsi`` and ``msisdn`` → ICCID."""
        with self._write_lock:
            self._write.executemany("INSERT OR REPLACE INTO ids VALUES (?, ?, ?)", ids)
            self._write.commit()

    def prune(self, now: float) -> int:
        """Drop the days older than ``days`` before ``now``, and their series; returns the
        number of day tables dropped."""
        first = int(now) // DAY_S - self.days
        dropped = 0
        with self._write_lock:
            db = self._write
            for day in sorted(self._tables):
                if day < first:
                    db.execute(f"DROP TABLE IF EXISTS {_DAY_TABLE}{day}")
                    self._tables -= {day}
                    dropped += 1
            db.execute("DELETE FROM series WHERE at < ?", (int(now) - self.days * DAY_S,))
            db.commit()
        return dropped

    # ---- reading --------------------------------------------------------------------------

    def records(self, iccids: Sequence[str], since: float, until: float) -> list[HistoryRecord]:
        """The records of one SIM (any of ``iccids``, its two ICCID forms) in
        ``[since, until]``, oldest first."""
        lo, hi = int(since), int(until)
        days = [d for d in sorted(self._tables) if lo // DAY_S <= d <= hi // DAY_S]
        marks = ",".join("?" * len(iccids))
        out: list[HistoryRecord] = []
        with self._read_lock:
            for day in days:
                try:
                    found = self._read.execute(
                        f"SELECT ts, kind, bytes, what, cause, apn, partner FROM {_DAY_TABLE}{day} "  # noqa: S608 - our own table name
                        f"WHERE iccid IN ({marks}) AND ts BETWEEN ? AND ? ORDER BY ts, n",
                        (*iccids, lo, hi),
                    ).fetchall()
                except sqlite3.OperationalError:  # dropped by a prune meanwhile
                    continue
                out.extend(
                    HistoryRecord(ts, KINDS[kind], size, what, cause, apn, partner)
                    for ts, kind, size, what, cause, apn, partner in found
                )
        out.sort(key=lambda r: r.ts)
        return out

    def series(self, key: str, since: float, until: float) -> list[tuple[int, float, float, float]]:
        """(at, total, affected, expected) of one group, oldest first."""
        with self._read_lock:
            rows = self._read.execute(
                "SELECT at, total, affected, expected FROM series WHERE key = ? "
                "AND at BETWEEN ? AND ? ORDER BY at",
                (key, int(since), int(until)),
            ).fetchall()
        return [(int(a), float(t), float(f), float(e)) for a, t, f, e in rows]

    def find_id(self, value: str) -> str | None:
        """The ICCID of an IMSI or an MSISDN, or None."""
        with self._read_lock:
            row = self._read.execute(
                "SELECT iccid FROM ids WHERE value = ? ORDER BY kind LIMIT 1", (value,)
            ).fetchone()
        return None if row is None else str(row[0])


@dataclass(slots=True)
class HistoryStats:
    written: int = 0
    dropped: int = 0  # beyond max_pending
    failures: int = 0


class HistoryWriter:
    """The event loop's side of the store: bounded buffers and one writing task."""

    def __init__(
        self,
        store: HistoryStore,
        *,
        max_pending: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.max_pending = max_pending
        self.clock = clock
        self.stats = HistoryStats()
        self._rows: list[Row] = []
        self._series: list[SeriesRow] = []
        self._ids: list[tuple[str, str, str]] = []
        self._full = FailureLog(log, "history", noun="dropped record")  # logged once
        self._writes = FailureLog(log, "history")

    @property
    def pending(self) -> int:
        """Records waiting to be written."""
        return len(self._rows)

    def add_records(self, records: Iterable[Record]) -> None:
        """Buffer applied records (on the loop: no I/O)."""
        room = self.max_pending - len(self._rows)
        rows = [row_of(r) for r in records]
        if len(rows) > room:
            dropped = len(rows) - max(room, 0)
            self.stats.dropped += dropped
            rows = rows[: max(room, 0)]
            self._full.failed(
                "the writer is behind: new records are dropped",
                detail=f"{self.max_pending} waiting",
                hint="the console's history misses them (raise console.history_max_pending "
                "or put history_file on a faster disk)",
                count=dropped,
            )
        elif self._full.failing:
            self._full.recovered("keeps up again")
        self._rows.extend(rows)

    def add_series(self, points: Iterable[SeriesRow]) -> None:
        self._series.extend(points)
        del self._series[: max(0, len(self._series) - self.max_pending)]

    def add_ids(self, ids: Iterable[tuple[str, str, str]]) -> None:
        self._ids.extend(ids)

    async def flush(self) -> None:
        """Write what is buffered now, in a worker thread."""
        rows, self._rows = self._rows, []
        series, self._series = self._series, []
        ids, self._ids = self._ids, []
        try:
            if ids:
                await asyncio.to_thread(self.store.write_ids, ids)
            if rows or series:
                await asyncio.to_thread(self.store.write, rows, series)
        except sqlite3.Error as exc:  # the disk is full, the file broken: keep running
            self.stats.failures += 1
            self.stats.dropped += len(rows)
            self._writes.failed(
                f"writing failed ({exc})", hint="records are dropped until it works again"
            )
            return
        self._writes.recovered()
        self.stats.written += len(rows)

    async def run(self) -> None:
        """The writing task: flush every second, prune every hour; a last flush at the end."""
        last_prune = -PRUNE_S
        try:
            while True:
                await asyncio.sleep(FLUSH_S)
                await self.flush()
                now = self.clock()
                if now - last_prune >= PRUNE_S:
                    last_prune = now
                    try:
                        await asyncio.to_thread(self.store.prune, now)
                    except sqlite3.Error as exc:
                        self.stats.failures += 1
                        self._writes.failed(f"pruning failed ({exc})", hint="retried in an hour")
        finally:
            await asyncio.shield(self.flush())


__all__ = [
    "HistoryRecord",
    "HistoryStats",
    "HistoryStore",
    "HistoryWriter",
    "row_of",
    "series_key",
]
