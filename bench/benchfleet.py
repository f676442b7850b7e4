"""The synthetic fleet the benchmarks share: SIM ids, an inventory, usage record lines.

40 partners, 12 APNs, 20 customers; ``usage_lines`` gives one FORMATS.md usage record
per SIM (random partner and APN, ending within 10 minutes after ``end``), as NDJSON bytes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from simwatch.core.inventory import InventoryRow
from simwatch.core.timeutil import format_rfc3339

if TYPE_CHECKING:
    from collections.abc import Iterator

    import numpy as np

PARTNERS = [(str(262 + c), f"{m:02d}") for c in range(16) for m in (1, 2, 3)][:40]
APNS = [f"apn{k}.iot" for k in range(12)]


def iccid(i: int) -> str:
    return f"8931{i:015d}"


def inventory(n: int, customer: str = "c") -> Iterator[InventoryRow]:
    """``n`` active SIMs, customers ``<customer>0`` .. ``<customer>19``, one APN each."""
    for i in range(n):
        yield InventoryRow(
            iccid=iccid(i),
            imsi=None,
            customer=f"{customer}{i % 20}",
            apns=(APNS[i % 12],),
            plan=None,
            data_cap_bytes=None,
            status="active",
            tags=frozenset(),
            extra={},
        )


def usage_lines(n: int, end: float, k: int, rng: np.random.Generator) -> list[bytes]:
    """Round ``k``: one usage record per SIM, ending within 10 minutes after ``end``."""
    start_text = format_rfc3339(end - 900)
    partner = rng.integers(0, len(PARTNERS), n)
    apn = rng.integers(0, len(APNS), n)
    offsets = rng.integers(0, 600, n)
    ends = {o: format_rfc3339(end + o) for o in range(600)}
    out = []
    for i in range(n):
        mcc, mnc = PARTNERS[partner[i]]
        out.append(
            orjson.dumps(
                {
                    "kind": "usage",
                    "record_id": f"u-{k}-{i}",
                    "iccid": iccid(i),
                    "start": start_text,
                    "end": ends[int(offsets[i])],
                    "bytes_up": 1200,
                    "bytes_down": 340,
                    "apn": APNS[apn[i]],
                    "mcc": mcc,
                    "mnc": mnc,
                    "rat": "LTE-M",
                }
            )
        )
    return out
