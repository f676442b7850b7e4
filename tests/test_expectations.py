"""Expectations the user sets (inventory columns expected_interval_s, active_hours,
timezone; per-plan and per-customer tables): they override what is learned, a SIM
outside its active hours is not late, and the per-SIM view says which applies."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np
import pytest
from fleet import ICCIDS, Feed, inventory_row

from simwatch.core.engine import Engine, EngineConfig
from simwatch.core.inventory import InventoryRow, parse_inventory
from simwatch.core.records import Rejection
from simwatch.core.schedule import Expectation, ExpectationTables
from simwatch.http.views import sim_view
from simwatch.shell.settings import ConfigError, load_settings

if TYPE_CHECKING:
    from pathlib import Path


def ts(text: str) -> float:
    return datetime.fromisoformat(text).astimezone(UTC).timestamp()


MONDAY = ts("2026-11-16T00:00+01:00")  # Monday 16 November 2026, Paris midnight
TABLES = ExpectationTables(
    plans={"meter-6h": Expectation(expected_interval_s=21600)},
    customers={"acme": Expectation(active_hours="Mo-Fr 07:00-19:00", timezone="Europe/Paris")},
)


def engine_of(rows: list[InventoryRow]) -> Engine:
    engine = Engine(replace(EngineConfig(), warmup_s=0.0, expectations=TABLES))
    engine.load_inventory(rows)
    return engine


def report(feed: Feed, iccid: str, start: float, end: float, step: float) -> float:
    t = start
    while t < end:
        feed.usage(iccid, t)
        t += step
    return t - step


def state_of(engine: Engine, iccid: str, now: float) -> str:
    view = sim_view(engine, iccid, now)
    return str(view["state"])


def test_inventory_columns_are_read_and_bad_ones_rejected_naming_the_field() -> None:
    text = (
        "iccid,expected_interval_s,active_hours,timezone\n"
        f"{ICCIDS[0]},21600,Mo-Fr 07:00-19:00,Europe/Paris\n"
        f"{ICCIDS[1]},10,,\n"
        f"{ICCIDS[2]},,Mo-Fx 07:00-19:00,\n"
        f"{ICCIDS[3]},,,Mars/Base\n"
        f"{ICCIDS[4]},,,\n"
    )
    rows = list(parse_inventory(text.splitlines(keepends=True), "inv.csv"))
    first = rows[0]
    assert isinstance(first, InventoryRow)
    assert (first.expected_interval_s, first.active_hours, first.timezone) == (
        21600.0,
        "Mo-Fr 07:00-19:00",
        "Europe/Paris",
    )
    assert [r.detail.split(": ")[0:2] for r in rows[1:4] if isinstance(r, Rejection)] == [
        ["line 3", "field 'expected_interval_s'"],
        ["line 4", "field 'active_hours'"],
        ["line 5", "field 'timezone'"],
    ]
    last = rows[4]
    assert isinstance(last, InventoryRow)
    assert last.expected_interval_s is None
    assert last.extra == {}  # known columns, no longer extra attributes


def test_a_set_interval_judges_the_sim_instead_of_its_learned_rhythm() -> None:
    learned, set_ = ICCIDS[0], ICCIDS[1]
    engine = engine_of(
        [
            inventory_row(learned, customer=None),
            inventory_row(set_, customer=None, plan="meter-6h"),
        ]
    )
    feed = Feed(engine)
    last = report(feed, learned, MONDAY, MONDAY + 86400, 900.0)
    report(feed, set_, MONDAY, MONDAY + 86400, 900.0)
    # two hours of silence: late by its learned 15-min rhythm, fine by a 6 h interval
    now = last + 2 * 3600
    engine.evaluate(now)
    assert state_of(engine, learned, now) == "silent"
    assert state_of(engine, set_, now) == "ok"
    view = sim_view(engine, set_, now)
    rhythm = view["rhythm"]
    assert isinstance(rhythm, dict)
    assert rhythm["expectation"]["interval_s"] == 21600.0
    assert rhythm["expectation"]["interval_from"] == "plan"
    assert rhythm["late_after_s"] == 8 * 3600.0  # 6 h + min(6 h, 2 h of slack)
    assert rhythm["silent_after_s"] == 26 * 3600.0  # 6 h + min(24 h, 20 h)
    now = last + 8 * 3600 + 60
    engine.evaluate(now)
    assert state_of(engine, set_, now) == "late"


def test_a_set_interval_counts_a_sim_without_enough_history() -> None:
    iccid = ICCIDS[0]
    engine = engine_of([inventory_row(iccid, customer=None, plan="meter-6h")])
    feed = Feed(engine)
    feed.usage(iccid, MONDAY)
    feed.usage(iccid, MONDAY + 21600)  # one gap: not learned by its own rhythm
    evaluation = engine.evaluate(MONDAY + 21600 + 60).evaluation
    assert bool(evaluation.counted[engine.state.row(iccid)])


def test_outside_its_active_hours_a_sim_is_not_late() -> None:
    iccid = ICCIDS[0]
    engine = engine_of([inventory_row(iccid)])  # customer acme: Mo-Fr 07:00-19:00 Paris
    feed = Feed(engine)
    day = 86400.0
    for k in range(5):  # every 15 minutes, 07:00-18:45 Paris, Monday to Friday
        report(feed, iccid, MONDAY + k * day + 7 * 3600, MONDAY + k * day + 19 * 3600, 900.0)
    saturday_noon = MONDAY + 5 * day + 12 * 3600
    engine.evaluate(saturday_noon)
    assert state_of(engine, iccid, saturday_noon) == "ok"
    view = sim_view(engine, iccid, saturday_noon)
    expectation = view["rhythm"]["expectation"]  # type: ignore[index]
    assert expectation["active_hours"] == "Mo-Fr 07:00-19:00"
    assert expectation["timezone"] == "Europe/Paris"
    assert expectation["hours_from"] == "customer"
    assert expectation["interval_from"] == "learned"
    assert expectation["in_active_hours"] is False
    monday_morning = MONDAY + 7 * day + 8 * 3600  # 1 h 15 min of active time without data
    engine.evaluate(monday_morning)
    assert state_of(engine, iccid, monday_morning) in ("late", "silent")


def test_a_sims_own_columns_win_over_its_plan_and_customer() -> None:
    iccid = ICCIDS[0]
    row = inventory_row(
        iccid, plan="meter-6h", expected_interval_s=3600.0, active_hours="Sa-Su 10:00-12:00"
    )
    engine = engine_of([row])
    Feed(engine).usage(iccid, MONDAY)
    expectation = sim_view(engine, iccid, MONDAY + 60)["rhythm"]["expectation"]  # type: ignore[index]
    assert (expectation["interval_s"], expectation["interval_from"]) == (3600.0, "inventory")
    assert (expectation["active_hours"], expectation["hours_from"]) == (
        "Sa-Su 10:00-12:00",
        "inventory",
    )
    assert expectation["timezone"] == "Europe/Paris"  # the customer's, for want of its own


def test_expectations_survive_a_checkpoint() -> None:
    iccid = ICCIDS[0]
    engine = engine_of([inventory_row(iccid, plan="meter-6h")])
    Feed(engine).usage(iccid, MONDAY)
    arrays, meta = engine.export_state()
    again = Engine(replace(EngineConfig(), expectations=TABLES))
    again.restore_state({k: v for k, v in arrays.items() if isinstance(v, np.ndarray)}, meta)
    assert (
        sim_view(again, iccid, MONDAY + 60)["rhythm"]
        == sim_view(engine, iccid, MONDAY + 60)["rhythm"]
    )


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            "[engine.expectations.plans.m]\nactive_hours = 'Mo-Fr 7-19'\n",
            "engine.expectations.plans.m.active_hours: cannot read the times '7-19'",
        ),
        (
            "[engine.expectations.customers.acme]\ntimezone = 'Mars/Base'\n",
            "engine.expectations.customers.acme.timezone: unknown time zone 'Mars/Base'",
        ),
        (
            "[engine.expectations.plans.m]\nexpected_interval_s = 5\n",
            (
                "engine.expectations.plans.m.expected_interval_s: Input should be greater "
                "than or equal to 60"
            ),
        ),
    ],
)
def test_bad_expectation_config_names_the_field(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "simwatch.toml"
    path.write_text(toml, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(path, {})
    assert str(info.value).startswith(message)


def test_expectation_config_reaches_the_engine(tmp_path: Path) -> None:
    path = tmp_path / "simwatch.toml"
    path.write_text(
        "[engine.expectations.plans.'meter-6h']\nexpected_interval_s = 21600\n"
        "[engine.expectations.customers.acme]\nactive_hours = 'Mo-Fr 07:00-19:00'\n"
        "timezone = 'Europe/Paris'\n",
        encoding="utf-8",
    )
    config = load_settings(path, {}).engine.engine_config()
    assert config.expectations == TABLES
