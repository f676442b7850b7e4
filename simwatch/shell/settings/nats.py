"""``[[sources.nats]]`` and ``[cluster]``: records from NATS JetStream, shards and a leader.

docs/scaling.md describes the design: records on ``<subject_prefix>.<partition>``,
partitioned by ICCID (``core.merge.shard_of``), one durable pull consumer per partition,
acknowledged once a checkpoint covers it.
"""

from typing import Self

from pydantic import Field, model_validator

from simwatch.shell.settings.base import Model, field_error

# NATS names (streams, consumers, buckets): no dots, spaces, wildcards or separators
_NAME = r"^[A-Za-z0-9_-]+$"
# a subject prefix: dot-separated tokens without wildcards
_SUBJECT = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"


class NatsSourceSettings(Model):
    name: str = Field("nats", min_length=1)
    # the NATS servers (any of a cluster); credentials in the URL are not supported here
    servers: list[str] = Field(default_factory=lambda: ["nats://127.0.0.1:4222"], min_length=1)
    stream: str = Field("SIMWATCH_RECORDS", pattern=_NAME)
    subject_prefix: str = Field("simwatch.records", pattern=_SUBJECT)
    # records are on <subject_prefix>.<p> with p = shard_of(iccid, partitions)
    partitions: int = Field(16, ge=1, le=4096)
    # the partitions this node reads; empty: all of them ([cluster] assigns them instead)
    owned: list[int] = Field(default_factory=list)
    durable: str = Field("simwatch", pattern=_NAME)  # consumer names: <durable>-p<partition>
    fetch_batch: int = Field(256, ge=1, le=10_000)  # messages per pull request
    fetch_timeout_s: float = Field(1.0, gt=0, le=60)  # how long a pull waits when idle
    # create the stream when missing (subjects <prefix>.*, file storage, this retention)
    create_stream: bool = True
    max_age_s: float = Field(7 * 86400.0, gt=0)
    # a delivered message is redelivered when unacknowledged this long; acks wait for the
    # checkpoint that covers them, so this must exceed checkpoint.interval_s (checked)
    ack_wait_s: float = Field(600.0, gt=0)
    max_ack_pending: int = Field(100_000, ge=1)  # delivered, not yet acknowledged

    @model_validator(mode="after")
    def _owned_within(self) -> Self:
        for i, p in enumerate(self.owned):
            if not 0 <= p < self.partitions:
                raise field_error(
                    f"owned[{i}]", f"partition {p} is not within 0..{self.partitions - 1}"
                )
        if len(set(self.owned)) != len(self.owned):
            raise field_error("owned", "a partition is listed twice")
        return self

    def subject(self, partition: int) -> str:
        return f"{self.subject_prefix}.{partition}"


class ClusterSettings(Model):
    """``[cluster]``: this node is one shard of a cluster coordinated through NATS."""

    enabled: bool = False
    servers: list[str] = Field(default_factory=lambda: ["nats://127.0.0.1:4222"], min_length=1)
    node: str = Field("", pattern=r"^([A-Za-z0-9_-]+)?$")  # this node's name (unique)
    partitions: int = Field(16, ge=1, le=4096)
    bucket: str = Field("simwatch", pattern=_NAME)  # the KV bucket (leases, assignment, state)
    lease_s: float = Field(10.0, ge=1, le=600)  # a node that stops renewing for this long is gone
    source: str = Field("nats", min_length=1)  # the [[sources.nats]] whose partitions it assigns
    # the first assignment waits for this many nodes (or three leases), so the nodes of a
    # cluster started together share the partitions instead of the first taking them all
    min_nodes: int = Field(1, ge=1, le=1000)

    @model_validator(mode="after")
    def _node_named(self) -> Self:
        if self.enabled and not self.node:
            raise field_error("node", "a cluster node needs a name (unique in the cluster)")
        return self
