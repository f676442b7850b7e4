"""The daemon's own figures: the service writes them, /metrics and the API read them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable


@dataclass(slots=True)
class DaemonHealth:
    """The daemon's own figures: the daemon updates these, the collector reads them."""

    evaluations_total: int = 0
    evaluation_failures_total: int = 0
    last_evaluation_duration_s: float = 0.0
    last_evaluation_timestamp: float | None = None
    queue_depth: Callable[[], int] | None = None
    started_at: float = 0.0


@dataclass(slots=True)
class CheckpointStats:
    """What the /metrics collector exports about checkpoints."""

    successes: int = 0
    failures: int = 0
    last_success: float | None = None  # epoch s (daemon clock) of the last written one
    last_duration_s: float | None = None  # copy on the loop + write in the thread
    last_copy_s: float = 0.0
    last_write_s: float = 0.0
    last_release_s: float = 0.0  # handing the freed copy back to the OS (malloc_trim)
    size_bytes: int | None = None  # of the last written file
    restored_from: float | None = None  # ``written_at`` of the checkpoint restored at start
    failing: str | None = field(default=None)  # the current failure, None once recovered


@dataclass(slots=True)
class ClusterStats:
    """What a cluster node knows of the cluster (``service.cluster``; /metrics reads it)."""

    node: str
    leader: bool = False
    leader_name: str | None = None
    nodes: list[str] = field(default_factory=list)
    partitions: list[int] = field(default_factory=list)
    merges: int = 0  # the leader's merges that decided (every node reported)
    merges_incomplete: int = 0  # merges left undecided (a report missing or stale)
    last_merge_s: float = 0.0  # merge + localize of the last merge, seconds
    became_leader_at: float | None = None
    # per-partition snapshots (service.handoff)
    snapshot_bytes: int = 0  # size of the last one put
    snapshots_loaded: int = 0  # partitions taken over from a snapshot
