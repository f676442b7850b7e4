"""The one per-group aggregation (simwatch.core.groups) and its three consumers.

For one engine cycle, /metrics, the InfluxDB sink's ``simwatch_group`` points and the
API's groups view report the same figures per group: SIMs per state, ``total``,
``affected``, ``affected_ratio`` and ``month_bytes``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pytest
from fleet import DAY, ICCIDS, T0, Feed, inventory_row, new_engine
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from simwatch.core.evaluate import STATE_NAMES
from simwatch.core.groups import (
    DEFAULT_TOP_N,
    OTHER,
    OTHER_CODE,
    UNKNOWN,
    by_dimension,
    by_dimensions,
    by_leaf,
    cycle_figures,
    fleet_figures,
)
from simwatch.http.metrics import EngineCollector, make_registry
from simwatch.http.views import groups_view
from simwatch.shell.health import DaemonHealth
from simwatch.sinks.influx.points import group_lines
from simwatch.sinks.influx.sink import GROUP_TOP_N

if TYPE_CHECKING:
    from simwatch.core.engine import Engine

BYTES = 1500  # bytes_up + bytes_down of every usage record of the Feed
OUTAGE_MIN = 150  # minutes evaluated after partner 26203 went silent
CAPPED = ICCIDS[0]  # on 26202, over its data cap, stops: silent but explained
NETWORKS = (
    *[("262", "02", "meters.acme")] * 15,  # rows 0-14
    *[("262", "03", "sensors.acme")] * 10,  # rows 15-24: go silent
    *[("204", "08", "meters.acme")] * 5,  # rows 25-29
)
Figures = tuple[tuple[int, ...], int, int, float | None, int]


def build_fleet() -> tuple[Engine, float]:
    """40 SIMs: 30 report every 15 minutes for three days (three partners, two APNs, two
    countries), then partner 26203 and the capped SIM go quiet; 6 never seen, 4
    suspended. Returns the engine after its last cycle and that cycle's time."""
    engine = new_engine()
    engine.load_inventory(
        inventory_row(i, data_cap_bytes=10 * BYTES if i == CAPPED else None) for i in ICCIDS[:36]
    )
    engine.load_inventory(inventory_row(i, status="suspended") for i in ICCIDS[36:])
    feed = Feed(engine)

    def report(k: int, t: float) -> None:
        mcc, mnc, apn = NETWORKS[k]
        feed.usage(ICCIDS[k], t + k, mcc=mcc, mnc=mnc, apn=apn)

    end = T0 + 3 * DAY
    t = T0
    while t < end:
        for k in range(30):
            report(k, t)
        if t % 3600 == 0:
            engine.evaluate(t + 60)
        t += 900.0
    last = end - 900.0 + 60
    now = last
    for minute in range(OUTAGE_MIN):
        now = last + minute * 60
        if minute % 15 == 0:
            for k in [*range(1, 15), *range(25, 30)]:
                report(k, now)
        engine.evaluate(now)
    return engine, now


@pytest.fixture(scope="module")
def fleet() -> tuple[Engine, float]:
    return build_fleet()  # read only by the tests below


# ---- the three consumers, read back ----------------------------------------------------------


def from_metrics(engine: Engine) -> dict[tuple[str, str], Figures]:
    collector = EngineCollector(engine, DaemonHealth(), tuple, version="0")
    text = generate_latest(make_registry(collector, process=False)).decode()
    values: dict[str, dict[tuple[str, ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = (s.labels.get(k, "") for k in ("dim", "value", "state"))
            values.setdefault(s.name, {})[tuple(labels)] = s.value
    out: dict[tuple[str, str], Figures] = {}
    for dim, value, _ in values["simwatch_group_total_sims"]:
        states = tuple(int(values["simwatch_group_sims"][dim, value, s]) for s in STATE_NAMES)
        out[dim, value] = (
            states,
            int(values["simwatch_group_total_sims"][dim, value, ""]),
            int(values["simwatch_group_affected_sims"][dim, value, ""]),
            values["simwatch_group_affected_ratio"].get((dim, value, "")),
            int(values["simwatch_group_month_bytes"][dim, value, ""]),
        )
    return out


def from_influx(engine: Engine) -> dict[tuple[str, str], Figures]:
    evaluation = engine.last_evaluation
    assert evaluation is not None
    out: dict[tuple[str, str], Figures] = {}
    for line in group_lines(engine, evaluation, int(evaluation.now), GROUP_TOP_N):
        head, field_text, t = line.split(" ")
        assert int(t) == int(evaluation.now)
        measurement, dim_tag, value_tag = head.split(",")
        assert measurement == "simwatch_group"
        fields = dict(f.split("=", 1) for f in field_text.split(","))
        ratio = fields.get("affected_ratio")
        out[dim_tag.removeprefix("dim="), value_tag.removeprefix("value=")] = (
            tuple(int(fields[s].removesuffix("i")) for s in STATE_NAMES),
            int(fields["total"].removesuffix("i")),
            int(fields["affected"].removesuffix("i")),
            None if ratio is None else float(ratio),
            int(fields["month_bytes"].removesuffix("i")),
        )
    return out


def from_api(engine: Engine, now: float) -> dict[tuple[str, str], Figures]:
    out: dict[tuple[str, str], Figures] = {}
    for dim in engine.state.dims:
        body = groups_view(engine, now, dim)
        groups = body["groups"]
        assert isinstance(groups, list)
        unassigned = body["unassigned"]
        assert isinstance(unassigned, dict)
        if unassigned["sims"]:
            groups = [*groups, {**unassigned, "dims": {dim: UNKNOWN}}]
        for g in groups:
            out[dim, g["dims"][dim]] = (
                tuple(g["states"][s] for s in STATE_NAMES),
                g["total"],
                g["affected"],
                g["affected_ratio"],
                g["month_bytes"],
            )
    return out


def test_metrics_influx_and_the_api_report_the_same_figures(fleet: tuple[Engine, float]) -> None:
    engine, now = fleet
    metrics, influx, api = from_metrics(engine), from_influx(engine), from_api(engine, now)
    assert metrics == influx  # the same floats, to the last bit
    assert set(api) == set(metrics)
    for key, (states, total, affected, ratio, used) in metrics.items():
        assert api[key] == (
            states,
            total,
            affected,
            None if ratio is None else round(ratio, 4),  # the API rounds to 4 digits
            used,
        ), key

    # and the figures are the right ones
    assert metrics["partner", "26203"] == ((0, 0, 10, 0, 0), 10, 10, 1.0, 10 * 288 * BYTES)
    ok_reports = 288 + OUTAGE_MIN // 15
    de2_bytes = (14 * ok_reports + 288) * BYTES
    # the capped SIM is silent but explained by its cap: expected to report, not affected
    assert metrics["partner", "26202"] == ((14, 0, 1, 0, 0), 15, 0, 0.0, de2_bytes)
    nl_bytes = 5 * ok_reports * BYTES
    assert metrics["country", "DE"][1:] == (25, 10, 10 / 25, de2_bytes + 10 * 288 * BYTES)
    assert metrics["country", "NL"][1:] == (5, 0, 0.0, nl_bytes)
    assert metrics["apn", "sensors.acme"][1:] == (10, 10, 1.0, 10 * 288 * BYTES)
    # never seen and suspended SIMs have no value and are not expected to report
    assert metrics["partner", UNKNOWN] == ((0, 0, 0, 6, 4), 0, 0, None, 0)
    total_bytes = sum(v[4] for (dim, _), v in metrics.items() if dim == "partner")
    assert total_bytes == de2_bytes + 10 * 288 * BYTES + nl_bytes


# ---- the aggregation itself ------------------------------------------------------------------


def test_top_n_sums_the_rest_into_other(fleet: tuple[Engine, float]) -> None:
    engine, _ = fleet
    evaluation = engine.last_evaluation
    assert evaluation is not None
    sims = cycle_figures(engine.state, evaluation)
    full = by_dimension(engine.state, sims, "partner")
    assert [g.dims["partner"] for g in full] == [
        "26202",
        UNKNOWN,
        "26203",
        "20408",
    ]  # ties: first seen
    capped = by_dimension(engine.state, sims, "partner", top_n=1)
    assert [g.dims["partner"] for g in capped] == ["26202", OTHER]
    assert capped.codes[-1] == OTHER_CODE
    other = list(capped)[-1]
    rest = list(full)[1:]
    assert other.states == tuple(np.sum([g.states for g in rest], axis=0).tolist())
    assert other.total == sum(g.total for g in rest) == 15
    assert other.affected == sum(g.affected for g in rest) == 10
    assert other.month_bytes == sum(g.month_bytes for g in rest)
    assert other.affected_ratio == 10 / 15
    # every dimension's groups add up to the fleet
    for groups in by_dimensions(engine.state, sims, top_n=1):
        assert int(groups.states.sum()) == 40
        assert int(groups.total.sum()) == int(evaluation.counted.sum())
        assert int(groups.affected.sum()) == int(evaluation.overdue.sum())
    assert DEFAULT_TOP_N == GROUP_TOP_N


def test_leaf_groups_and_the_unassigned(fleet: tuple[Engine, float]) -> None:
    engine, _ = fleet
    evaluation = engine.last_evaluation
    assert evaluation is not None
    leaves = by_leaf(engine.state, cycle_figures(engine.state, evaluation))
    by_dims = {tuple(sorted(g.dims.items())): g for g in leaves}
    silent = by_dims[("apn", "sensors.acme"), ("country", "DE"), ("partner", "26203")]
    assert (silent.sims, silent.total, silent.affected) == (10, 10, 10)
    unassigned = leaves.get(0)
    assert unassigned is not None
    assert unassigned.dims == {}
    assert unassigned.state_counts() == {
        "ok": 0, "late": 0, "silent": 0, "never_seen": 6, "inactive": 4,
    }  # fmt: skip
    assert unassigned.affected_ratio is None
    assert sum(g.sims for g in leaves) == 40


def test_sims_new_since_the_cycle_count_in_states_only() -> None:
    engine = new_engine(ICCIDS[:3])
    feed = Feed(engine)
    feed.usage(ICCIDS[0], T0)
    engine.evaluate(T0 + 60)
    feed.usage(ICCIDS[5], T0 + 90)  # a SIM new to the fleet, after the cycle
    evaluation = engine.last_evaluation
    assert evaluation is not None
    states = np.zeros(len(engine.state), np.int8)
    states[: evaluation.n] = evaluation.states
    fleet_now = fleet_figures(engine.state, evaluation, states, T0 + 120)
    cycle = cycle_figures(engine.state, evaluation)
    assert (fleet_now.n, cycle.n) == (4, 3)
    now_groups = {g.dims["partner"]: g for g in by_dimension(engine.state, fleet_now, "partner")}
    now_group = now_groups["26202"]
    assert (now_group.total, now_group.affected) == (0, 0)  # one report: nothing learned yet
    assert now_group.sims == 2  # the new SIM is counted in the states...
    assert now_group.month_bytes == 2 * BYTES  # ...and the month's bytes
    cycle_groups = {g.dims["partner"]: g for g in by_dimension(engine.state, cycle, "partner")}
    assert cycle_groups["26202"].sims == 1  # the cycle knows one SIM there
    # before any cycle: nothing counted, the month of now
    fresh = fleet_figures(engine.state, None, states, T0 + 120)
    assert not fresh.counted.any()
    assert int(fresh.month_bytes.sum()) == 2 * BYTES


def test_a_group_with_nobody_expected_has_no_ratio() -> None:
    engine = new_engine(ICCIDS[:2])
    engine.evaluate(T0)
    evaluation = engine.last_evaluation
    assert evaluation is not None
    (group,) = by_dimension(engine.state, cycle_figures(engine.state, evaluation), "apn")
    assert group.dims == {"apn": UNKNOWN}
    assert (group.sims, group.total, group.affected) == (2, 0, 0)
    assert group.affected_ratio is None
    assert not math.isnan(float(group.month_bytes))
