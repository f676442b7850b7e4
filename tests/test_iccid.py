"""One SIM, one identity: an ICCID with and without its Luhn check digit (issue 10)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from fleet import T0, Feed, inventory_row, new_engine

from simwatch.core.iccid import alternate_form, luhn_check_digit
from simwatch.core.merge import shard_of
from simwatch.http.views import sim_view
from simwatch.shell.inventory import load_inventory

if TYPE_CHECKING:
    from pathlib import Path

# emnify reports ICCIDs as 19 digits without the check digit (PLATFORMS.md 1.6); the
# card prints 19 digits and the Luhn digit.
PLATFORM = "8988303000000123456"
PRINTED = PLATFORM + luhn_check_digit(PLATFORM)


@pytest.mark.parametrize(
    ("digits", "check"),
    [
        ("7992739871", "3"),  # the textbook Luhn example
        ("411111111111111", "1"),  # the well-known Visa test number 4111 1111 1111 1111
        ("0", "0"),
    ],
)
def test_luhn_check_digit(digits: str, check: str) -> None:
    assert luhn_check_digit(digits) == check
    # and the full number passes the Luhn test: doubling from the second-last digit
    full = digits + check
    total = 0
    for i, ch in enumerate(reversed(full)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    assert total % 10 == 0


def test_the_two_forms_are_each_others_alternate() -> None:
    assert len(PRINTED) == 20
    assert alternate_form(PLATFORM) == PRINTED
    assert alternate_form(PRINTED) == PLATFORM


def test_a_wrong_check_digit_and_other_lengths_have_no_alternate() -> None:
    wrong = PLATFORM + str((int(PRINTED[-1]) + 1) % 10)
    assert alternate_form(wrong) is None
    assert alternate_form("893144000000000001") is None  # 18 digits
    assert alternate_form("8931440000000000000123") is None  # 22 digits


def test_records_in_the_platform_form_reach_the_printed_inventory_sim() -> None:
    engine = new_engine([PRINTED])
    Feed(engine).usage(PLATFORM, T0 + 600)
    assert len(engine.state) == 1  # no second SIM
    row = engine.state.row(PRINTED)
    assert row == engine.state.row(PLATFORM) == 0
    assert engine.state.index.iccid(row) == PRINTED  # it keeps the inventory's form
    assert engine.ingestor.stats.unknown_sims == 0  # a SIM of the inventory, not a stranger


def test_records_in_the_printed_form_reach_the_platform_form_sim() -> None:
    engine = new_engine([PLATFORM])
    Feed(engine).usage(PRINTED, T0 + 600)
    assert len(engine.state) == 1
    assert engine.state.index.iccid(0) == PLATFORM


def test_the_api_answers_for_either_form() -> None:
    engine = new_engine([PRINTED])
    Feed(engine).usage(PLATFORM, T0 + 600)
    engine.evaluate(T0 + 660)
    by_printed = sim_view(engine, PRINTED, T0 + 660)
    by_platform = sim_view(engine, PLATFORM, T0 + 660)
    assert by_printed == by_platform
    assert by_printed["iccid"] == PRINTED


def test_a_wrong_check_digit_is_another_sim() -> None:
    wrong = PLATFORM + str((int(PRINTED[-1]) + 1) % 10)
    engine = new_engine([wrong])
    Feed(engine).usage(PLATFORM, T0 + 600)
    assert len(engine.state) == 2


def test_both_forms_in_one_inventory_are_one_sim(tmp_path: Path) -> None:
    path = tmp_path / "inventory.csv"
    path.write_text(f"iccid,customer\n{PRINTED},acme\n{PLATFORM},other\n", encoding="utf-8")
    rows, rejected = load_inventory(path)
    assert [r.iccid for r in rows] == [PRINTED]
    assert [str(r.reason) for r in rejected] == ["duplicate_iccid"]
    assert "with or without its check digit" in rejected[0].detail


def test_both_forms_land_on_one_shard() -> None:
    for shards in (2, 3, 7, 16):
        assert shard_of(PRINTED, shards) == shard_of(PLATFORM, shards)


def test_inventory_row_helper_accepts_both_forms() -> None:
    engine = new_engine()
    engine.load_inventory([inventory_row(PLATFORM), inventory_row(PRINTED, customer="x")])
    assert len(engine.state) == 1
