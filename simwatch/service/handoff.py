"""Per-partition snapshots of a cluster node's SIMs in a JetStream object store.

docs/scaling.md, "Taking a partition over". Every ``checkpoint.interval_s`` each node
puts, per partition it reads whose position moved, the rows of that partition's SIMs
(``core.handoff.export_rows``) with the partition's stream sequence they cover into the
object store ``<bucket>-partitions`` as object ``p<partition>``: taken under the
daemon's batch lock, so the rows and the sequence describe the same instant (the source
commits its position inside the lock, ``Batch.on_applied``).

A node given a partition it was not reading loads that object; when it covers more of
the stream than the node's own position for the partition (its checkpoint's, or none),
it merges the rows (``core.handoff.merge_rows``) and the source starts after the
snapshot's sequence: only the tail is replayed. The sequence is the boundary (the
receiving node's dedup memory does not know the old owner's record ids): every message
up to it is in the rows, every message after it is replayed, none twice.

The object: a ``.npz`` (deflate, ``np.savez_compressed``) whose member ``header`` is the
JSON metadata (``core.handoff`` meta plus ``partition``, ``sequence``, ``node``, ``at``).

The same store holds the leader's learning of each leaf's noise (``NOISE_OBJECT``), for
the next leader after a fail-over.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import numpy as np
import orjson

from simwatch.core.handoff import export_rows, iccid_bytes, merge_rows
from simwatch.core.merge import MergedNoise
from simwatch.sources.nats import partition_of

if TYPE_CHECKING:
    from collections.abc import Mapping

    from simwatch.core.baseline import BaselineParams
    from simwatch.core.state import FleetState

_HEADER: Final = "header"


@dataclass(frozen=True, slots=True)
class PartitionSnapshot:
    """One partition's rows as they travel, and the stream sequence they cover."""

    partition: int
    sequence: int
    arrays: Mapping[str, np.ndarray]
    meta: Mapping[str, object]

    @property
    def sims(self) -> int:
        return len(self.arrays["iccid"])

    def encode(self, *, node: str, at: float) -> bytes:
        header = {
            **self.meta,
            "partition": self.partition,
            "sequence": self.sequence,
            "node": node,
            "at": at,
        }
        return pack(header, self.arrays)

    @classmethod
    def decode(cls, data: bytes) -> PartitionSnapshot:
        """``ValueError`` for anything that is not such a snapshot."""
        header, arrays = unpack(data, "partition snapshot")
        partition, sequence = header.get("partition"), header.get("sequence")
        if type(partition) is not int or type(sequence) is not int or sequence < 0:
            raise ValueError("partition snapshot without its partition and sequence")
        return cls(partition, sequence, arrays, header)


def pack(header: Mapping[str, object], arrays: Mapping[str, np.ndarray]) -> bytes:
    """An object of the store: a deflated ``.npz`` of ``arrays`` and the JSON ``header``."""
    out = io.BytesIO()
    members = {_HEADER: np.frombuffer(orjson.dumps(header), np.uint8), **arrays}
    np.savez_compressed(out, allow_pickle=False, **members)
    return out.getvalue()


def unpack(data: bytes, what: str) -> tuple[dict[str, object], dict[str, np.ndarray]]:
    """``pack``'s header and arrays; ``ValueError`` naming ``what`` for anything else."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
        header = orjson.loads(arrays.pop(_HEADER).tobytes())
    except (OSError, KeyError, EOFError, ValueError, zipfile.BadZipFile) as exc:
        # ValueError: not an .npz (numpy takes it for a pickle) or a header not JSON
        raise ValueError(f"unreadable {what}: {exc}") from exc
    if not isinstance(header, dict):
        raise ValueError(f"{what} without a header")  # noqa: TRY004 - bad data
    return header, arrays


# The cluster leader's learning of each leaf's noise on the merged counts
# (``core.merge.MergedNoise``), put by the leader every ``checkpoint.interval_s`` and
# taken by the next leader: a fail-over does not start it at counting noise again.
NOISE_OBJECT: Final = "merged-noise"


def encode_noise(
    exported: tuple[Mapping[str, np.ndarray], Mapping[str, object]], *, node: str, at: float
) -> bytes:
    """The object of ``MergedNoise.export()``'s output (taken where the learning runs:
    the copy is of one instant)."""
    arrays, meta = exported
    return pack({**meta, "node": node, "at": at}, arrays)


def decode_noise(data: bytes, params: BaselineParams | None) -> tuple[MergedNoise, float]:
    """The learning ``encode_noise`` put and when; ``ValueError`` when unusable."""
    header, arrays = unpack(data, "merged noise")
    at = header.get("at")
    if not isinstance(at, int | float) or isinstance(at, bool):
        raise ValueError("merged noise without its time")  # noqa: TRY004 - bad data
    noise = MergedNoise(params)
    try:
        noise.restore(arrays, header)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"merged noise does not fit: {exc}") from exc
    return noise, float(at)


class PartitionRows:
    """The partition and ICCID of every row of a state, kept as rows are added (rows are
    only ever appended and keep their ICCID; a restored engine's new state starts it
    afresh). ``update`` can run outside the batch lock: it reads rows that exist."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self._state: FleetState | None = None
        self._of = np.zeros(0, np.int16)  # partition of each row
        self._iccids = np.zeros(0, "S22")

    def update(self, state: FleetState) -> None:
        """Map the rows added since (blocking: ~1 µs per new row; in a worker thread)."""
        if state is not self._state:
            self._state, self._of, self._iccids = state, np.zeros(0, np.int16), np.zeros(0, "S22")
        done, n = len(self._of), len(state)
        if n > done:
            fresh = iccid_bytes(state, np.arange(done, n))
            part = np.fromiter(
                (partition_of(i.decode(), self.partitions) for i in fresh.tolist()), np.int16
            )
            self._iccids = np.concatenate([self._iccids, fresh])
            self._of = np.concatenate([self._of, part])

    def rows(self, state: FleetState, partition: int) -> tuple[np.ndarray, np.ndarray]:
        """The rows of the partition's SIMs and their ICCIDs (``S22``)."""
        self.update(state)
        rows = np.flatnonzero(self._of[: len(state)] == partition).astype(np.int64)
        return rows, self._iccids[rows]


def take(
    state: FleetState, rows: PartitionRows, positions: Mapping[int, int]
) -> list[PartitionSnapshot]:
    """The snapshot of each partition at its sequence (under the batch lock, in a thread;
    ``rows.update(state)`` just before, outside the lock, leaves little to map here)."""
    out = []
    for partition, sequence in sorted(positions.items()):
        found, iccids = rows.rows(state, partition)
        arrays, meta = export_rows(state, found, iccids=iccids)
        out.append(PartitionSnapshot(partition, sequence, arrays, meta))
    return out


def merge(state: FleetState, snapshot: PartitionSnapshot, partitions: int) -> int:
    """Merge the snapshot's SIMs of its partition into ``state``; how many (ValueError or
    TypeError when it does not fit, before any row is written)."""
    written = merge_rows(
        state,
        snapshot.arrays,
        snapshot.meta,
        accept=lambda iccid: partition_of(iccid, partitions) == snapshot.partition,
    )
    return int(np.count_nonzero(written >= 0))


def object_name(partition: int) -> str:
    return f"p{partition}"


__all__ = ["PartitionRows", "PartitionSnapshot", "merge", "object_name", "take"]
