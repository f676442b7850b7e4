from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from simwatch.core.inventory import InventoryError, InventoryRow
from simwatch.core.records import Rejection, RejectReason
from simwatch.shell.inventory import iter_inventory, load_inventory

if TYPE_CHECKING:
    from pathlib import Path

HEADER = "iccid,imsi,customer,apn,plan,data_cap_bytes,status,tags\n"
GOOD = (
    "8931440000000000011,262021234567890,Acme,meters.acme; backup.acme ,m2m-s,5000000,,vip; pilot\n"
)


def write(tmp_path: Path, text: str, name: str = "inv.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8", newline="")
    return path


def test_good_row_all_fields(tmp_path: Path) -> None:
    rows, rejected = load_inventory(write(tmp_path, HEADER + GOOD))
    assert rejected == []
    assert rows == [
        InventoryRow(
            iccid="8931440000000000011",
            imsi="262021234567890",
            customer="Acme",
            apns=("meters.acme", "backup.acme"),
            plan="m2m-s",
            data_cap_bytes=5_000_000,
            status="active",
            tags=frozenset({"vip", "pilot"}),
            extra={},
        )
    ]


def test_minimal_inventory_defaults(tmp_path: Path) -> None:
    rows, rejected = load_inventory(write(tmp_path, "ICCID\r\n8931440000000000011\r\n\r\n"))
    assert rejected == []
    assert rows == [
        InventoryRow(
            iccid="8931440000000000011",
            imsi=None,
            customer=None,
            apns=(),
            plan=None,
            data_cap_bytes=None,
            status="active",
            tags=frozenset(),
            extra={},
        )
    ]


def test_status_case_insensitive_and_extra_columns(tmp_path: Path) -> None:
    text = (
        "\ufefficcid,Status,Region,device type\n"
        "8931440000000000011,Suspended,EU,meter\n"
        "8931440000000000012, TEST ,US,\n"
        "8931440000000000013,deactivated,,tracker\n"
    )
    rows, rejected = load_inventory(write(tmp_path, text))
    assert rejected == []
    assert [r.status for r in rows] == ["suspended", "test", "deactivated"]
    assert rows[0].extra == {"Region": "EU", "device type": "meter"}
    assert rows[1].extra == {"Region": "US", "device type": ""}


def test_quoted_fields_and_multiline_raw(tmp_path: Path) -> None:
    text = (
        "iccid,customer,imsi\n"
        '8931440000000000011,"Acme, Inc.",\n'
        '"8931440000000000012","two\nlines",123\n'
    )
    rows, rejected = load_inventory(write(tmp_path, text))
    assert [r.customer for r in rows] == ["Acme, Inc."]
    assert len(rejected) == 1
    assert rejected[0].raw == '"8931440000000000012","two\nlines",123'
    assert rejected[0].iccid == "8931440000000000012"


BAD_ROWS = [
    ("short iccid", "123,,,,,,,\n", RejectReason.BAD_ICCID, "'iccid'"),
    ("spreadsheet iccid", "8.93144E+18,,,,,,,\n", RejectReason.BAD_ICCID, "spreadsheet"),
    ("empty iccid", ",262021234567890,,,,,,\n", RejectReason.MISSING_FIELD, "'iccid'"),
    ("short imsi", "8931440000000000011,26202,,,,,,\n", RejectReason.BAD_VALUE, "'imsi'"),
    (
        "letters imsi",
        "8931440000000000011,26202123456789X,,,,,,\n",
        RejectReason.BAD_VALUE,
        "'imsi'",
    ),
    ("negative cap", "8931440000000000011,,,,,-5,,\n", RejectReason.BAD_VALUE, "'data_cap_bytes'"),
    ("float cap", "8931440000000000011,,,,,1.5e9,,\n", RejectReason.BAD_VALUE, "'data_cap_bytes'"),
    ("unit cap", "8931440000000000011,,,,,10GB,,\n", RejectReason.BAD_VALUE, "'data_cap_bytes'"),
    (
        "underscore cap",
        "8931440000000000011,,,,,1_000,,\n",
        RejectReason.BAD_VALUE,
        "'data_cap_bytes'",
    ),
    ("odd status", "8931440000000000011,,,,,,retired,\n", RejectReason.BAD_VALUE, "'status'"),
    ("too many fields", "8931440000000000011,,,,,,,,extra\n", RejectReason.BAD_VALUE, "9 fields"),
]


@pytest.mark.parametrize(
    ("row", "reason", "needle"), [c[1:] for c in BAD_ROWS], ids=[c[0] for c in BAD_ROWS]
)
def test_bad_rows(tmp_path: Path, row: str, reason: RejectReason, needle: str) -> None:
    path = write(tmp_path, HEADER + GOOD + row + GOOD.replace("0011,", "0099,"))
    items = list(iter_inventory(path))
    assert [type(i).__name__ for i in items] == ["InventoryRow", "Rejection", "InventoryRow"]
    rejection = items[1]
    assert isinstance(rejection, Rejection)
    assert rejection.reason is reason
    assert needle in rejection.detail
    assert "line 3" in rejection.detail
    assert rejection.raw == row.rstrip("\n")


def test_plus_sign_cap_is_a_number(tmp_path: Path) -> None:
    rows, _ = load_inventory(write(tmp_path, "iccid,data_cap_bytes\n8931440000000000011,+100\n"))
    assert rows[0].data_cap_bytes == 100


def test_duplicate_iccid_first_wins(tmp_path: Path) -> None:
    text = HEADER + GOOD + GOOD.replace("Acme", "Other")
    rows, rejected = load_inventory(write(tmp_path, text))
    assert [r.customer for r in rows] == ["Acme"]
    assert [r.reason for r in rejected] == [RejectReason.DUPLICATE_ICCID]
    assert rejected[0].iccid == "8931440000000000011"


WHOLE_FILE_PROBLEMS = [
    ("empty", b"", "empty"),
    ("no iccid column", b"imsi,customer\n262021234567890,Acme\n", "'iccid'"),
    ("repeated column", b"iccid,tags,Tags\n8931440000000000011,a,b\n", "repeats"),
    ("latin-1", b"iccid,customer\n8931440000000000011,M\xfcller\n", "not UTF-8"),
    ("runaway field", b'iccid,customer\n8931440000000000011,"' + b"x" * 200_000, "broken CSV"),
]


@pytest.mark.parametrize(
    ("data", "needle"),
    [c[1:] for c in WHOLE_FILE_PROBLEMS],
    ids=[c[0] for c in WHOLE_FILE_PROBLEMS],
)
def test_whole_file_problems(tmp_path: Path, data: bytes, needle: str) -> None:
    path = tmp_path / "inv.csv"
    path.write_bytes(data)
    with pytest.raises(InventoryError, match=needle) as info:
        load_inventory(path)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match="cannot read"):
        load_inventory(tmp_path / "nope.csv")


def test_streaming_yields_before_the_end(tmp_path: Path) -> None:
    rows = "".join(f"89314400000000{i:05d},,,,,,,\n" for i in range(1000))
    items = iter_inventory(write(tmp_path, HEADER + rows + "bad,,,,,,,\n"))
    first = next(items)
    assert isinstance(first, InventoryRow)
    assert first.iccid == "8931440000000000000"
    rest = list(items)
    assert len(rest) == 1000
    assert isinstance(rest[-1], Rejection)
