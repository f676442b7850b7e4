"""Test helpers shared by test modules: inventory rows and FORMATS.md records fed to a
real engine through the real decoder (import as ``from fleet import Feed, inventory_row``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from simwatch.core.inventory import InventoryRow
from simwatch.core.records import Record, RecordDecoder
from simwatch.core.timeutil import format_rfc3339

if TYPE_CHECKING:
    from simwatch.core.engine import Engine


def inventory_row(iccid: str, **kw: object) -> InventoryRow:
    """An active inventory row of customer acme on APN meters.acme; ``kw`` overrides."""
    base: dict[str, object] = {
        "iccid": iccid,
        "imsi": None,
        "customer": "acme",
        "apns": ("meters.acme",),
        "plan": None,
        "data_cap_bytes": None,
        "status": "active",
        "tags": frozenset(),
        "extra": {},
    }
    base.update(kw)
    return InventoryRow(**base)  # type: ignore[arg-type]


class Feed:
    """Builds FORMATS.md records and sends them through the real decoder into the engine.

    ``now`` is the decoder's clock (records later than it are rejected); by default a
    minute after each record's own time.
    """

    def __init__(self, engine: Engine, now: float | None = None) -> None:
        self.engine = engine
        self.decoder = RecordDecoder()
        self.now = now
        self.n = 0

    def send(self, obj: dict[str, object], at: float) -> Record:
        self.n += 1
        obj.setdefault("record_id", f"r-{self.n}")
        now = self.now if self.now is not None else at + 60.0
        result = self.decoder.decode_line(orjson.dumps(obj), now)
        assert isinstance(result, Record), result
        self.engine.ingest_record(result)
        return result

    def usage(self, iccid: str, end: float, **kw: object) -> Record:
        obj: dict[str, object] = {
            "kind": "usage",
            "iccid": iccid,
            "start": format_rfc3339(end - 60),
            "end": format_rfc3339(end),
            "bytes_up": 1200,
            "bytes_down": 300,
            "apn": "meters.acme",
            "mcc": "262",
            "mnc": "02",
            "rat": "LTE-M",
        }
        obj.update(kw)
        return self.send(obj, end)

    def event(self, iccid: str, ts: float, kind: str, **kw: object) -> Record:
        obj: dict[str, object] = {"kind": "event", "iccid": iccid, "ts": format_rfc3339(ts)}
        obj.update(kw, type=kind)
        return self.send(obj, ts)

    def session(self, iccid: str, ts: float, status: str, **kw: object) -> Record:
        obj: dict[str, object] = {
            "kind": "session",
            "iccid": iccid,
            "ts": format_rfc3339(ts),
            "session_id": f"s-{self.n}",
            "status": status,
        }
        obj.update(kw)
        return self.send(obj, ts)
