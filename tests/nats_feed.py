"""Records published to JetStream as a publisher would (tests of the NATS source and cluster).

``Publisher`` makes FORMATS.md usage records for a fleet, puts each on
``simwatch.records.<partition>`` (``partition_of``, the documented partition function)
in the three documented shapes (one record, a JSON array, NDJSON lines), and keeps what
it sent: record count and per SIM the bytes, to check that every record was applied once.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Self

import nats
import nats.js.api
import nats.js.errors
import orjson

from simwatch.core.timeutil import format_rfc3339
from simwatch.sources.nats import partition_of

if TYPE_CHECKING:
    from collections.abc import Sequence

    from nats.aio.client import Client

PREFIX = "simwatch.records"
STREAM = "SIMWATCH_RECORDS"


def sims(n: int, base: int = 8931440000) -> list[str]:
    return [f"{base}{i:09d}" for i in range(n)]


class Publisher:
    def __init__(self, url: str, partitions: int) -> None:
        self.url = url
        self.partitions = partitions
        self.nc: Client | None = None
        self.seq = 0
        self.records = 0  # good records published
        self.bytes: dict[str, int] = defaultdict(int)  # per SIM: bytes_up + bytes_down sent
        self.last_seq: dict[int, int] = {}  # per partition: stream sequence of its last message

    async def __aenter__(self) -> Self:
        self.nc = await nats.connect(self.url)
        js = self.nc.jetstream()
        try:
            await js.stream_info(STREAM)
        except nats.js.errors.NotFoundError:  # the source creates it too, on its start:
            # the same configuration as the source's defaults, so either may be first
            await js.add_stream(
                name=STREAM,
                subjects=[f"{PREFIX}.*"],
                max_age=7 * 86400.0,
                storage=nats.js.api.StorageType.FILE,
            )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.nc is not None:
            await self.nc.close()

    def record(self, iccid: str, end: float, *, mcc: str = "262", mnc: str = "01") -> bytes:
        self.seq += 1
        up = 1000 + (self.seq * 7919) % 5000
        self.bytes[iccid] += up + 100
        self.records += 1
        return orjson.dumps(
            {
                "kind": "usage",
                "record_id": f"r-{self.seq}",
                "iccid": iccid,
                "start": format_rfc3339(end - 60),
                "end": format_rfc3339(end),
                "bytes_up": up,
                "bytes_down": 100,
                "apn": "meters.acme",
                "mcc": mcc,
                "mnc": mnc,
            }
        )

    async def send(self, partition: int, payload: bytes) -> None:
        assert self.nc is not None
        ack = await self.nc.jetstream().publish(f"{PREFIX}.{partition}", payload, stream=STREAM)
        self.last_seq[partition] = ack.seq

    async def publish(self, lines: Sequence[tuple[str, bytes]], shape: int = 0) -> None:
        """Publish (iccid, record) pairs, grouped per partition, in ``shape``: 0 one record
        per message, 1 a JSON array of up to 20, 2 NDJSON messages of up to 20 lines."""
        by_partition: dict[int, list[bytes]] = defaultdict(list)
        for iccid, line in lines:
            by_partition[partition_of(iccid, self.partitions)].append(line)
        for partition, records in sorted(by_partition.items()):
            if shape == 0:
                for line in records:
                    await self.send(partition, line)
                continue
            for i in range(0, len(records), 20):
                chunk = records[i : i + 20]
                if shape == 1:
                    await self.send(partition, b"[" + b",".join(chunk) + b"]")
                else:
                    await self.send(partition, b"\n".join(chunk) + b"\n")
