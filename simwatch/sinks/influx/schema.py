"""The InfluxDB schema simwatch writes: measurements, tags and fields (one source of truth).

The InfluxDB sink writes exactly these, docs/influxdb.md documents them, and the test
of the Grafana dashboards checks every InfluxDB panel query against them. Per-SIM detail
lives here (the ICCID is a tag), never in Prometheus.

``DIM_TAGS`` stands for one tag per configured grouping dimension (``engine.dims``; by
default ``apn``, ``country``, ``partner``); a SIM without a value yet has no such tag.
Every point's time is the evaluation cycle's time (event time while a backlog is
evaluated, else the wall clock), in seconds precision.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

FieldType = Literal["int", "float", "string"]

DIM_TAGS: Final = "<dims>"  # placeholder: one tag per configured dimension


@dataclass(frozen=True, slots=True)
class Measurement:
    name: str
    tags: tuple[str, ...]
    fields: dict[str, FieldType]
    doc: str


SIM_USAGE: Final = Measurement(
    name="simwatch_sim_usage",
    tags=("iccid", "customer", DIM_TAGS),
    fields={
        "bytes": "int",  # bytes (up + down) since the SIM's previous usage point
        "month_bytes": "int",  # bytes used in the calendar month (UTC) so far
        "last_data": "float",  # epoch s of the SIM's newest data
    },
    doc="One point per SIM whose data advanced during the cycle.",
)

SIM_STATE: Final = Measurement(
    name="simwatch_sim_state",
    tags=("iccid", "customer", DIM_TAGS),
    fields={
        "state": "string",  # ok | late | silent | never_seen | inactive
        "previous": "string",  # the state before this change
        "code": "int",  # 0 ok, 1 late, 2 silent, 3 never_seen, 4 inactive
    },
    doc="One point per SIM whose state changed during the cycle.",
)

GROUP: Final = Measurement(
    name="simwatch_group",
    tags=("dim", "value"),
    fields={
        "ok": "int",
        "late": "int",
        "silent": "int",
        "never_seen": "int",
        "inactive": "int",
        "total": "int",  # SIMs expected to report (the affected ratio's denominator)
        "affected": "int",  # of those, late or silent and not explained per SIM
        "affected_ratio": "float",  # affected / total (absent when total is 0)
        "month_bytes": "int",  # bytes used in the calendar month (UTC) of the cycle
    },
    doc="Per cycle, one point per value of each dimension (simwatch.core.groups: the same"
    " figures as the simwatch_group_* metrics and the API's groups view).",
)

INCIDENT: Final = Measurement(
    name="simwatch_incident",
    tags=("id", "severity", "kind", "event"),
    fields={
        "affected": "int",
        "total": "int",
        "ratio": "float",
        "baseline_ratio": "float",
        "score": "float",
        "dims": "string",  # JSON object of the incident's group, e.g. {"partner":"26201"}
        "iccid": "string",  # SIM incidents only
    },
    doc="One point per incident change; event is opened, updated or resolved.",
)

SCHEMA: Final = {m.name: m for m in (SIM_USAGE, SIM_STATE, GROUP, INCIDENT)}
