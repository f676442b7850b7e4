from __future__ import annotations

import csv
from importlib import resources
from typing import TYPE_CHECKING

import pytest

from simwatch.core.operators import OperatorTable, OperatorTableError

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture(scope="module")
def shipped() -> OperatorTable:
    return OperatorTable.load()


def _shipped_rows(name: str) -> list[dict[str, str]]:
    text = (resources.files("simwatch.core") / "data" / name).read_text(encoding="utf-8")
    return list(csv.DictReader(text.splitlines()))


@pytest.mark.parametrize(
    ("mcc", "country"),
    [
        ("262", "DE"),
        ("234", "GB"),
        ("235", "GB"),
        ("310", "US"),
        ("313", "US"),
        ("316", "US"),
        ("404", "IN"),
        ("405", "IN"),
        ("406", "IN"),
        ("302", "CA"),
        ("334", "MX"),
        ("460", "CN"),
        ("724", "BR"),
        ("505", "AU"),
        ("655", "ZA"),
    ],
)
def test_countries(shipped: OperatorTable, mcc: str, country: str) -> None:
    assert shipped.country(mcc) == country


@pytest.mark.parametrize("mcc", ["901", "001", "999", "000", "26", "abc"])
def test_international_and_unknown_mcc_have_no_country(shipped: OperatorTable, mcc: str) -> None:
    assert shipped.country(mcc) is None


@pytest.mark.parametrize(
    ("mcc", "mnc", "name"),
    [
        ("262", "01", "Telekom Deutschland"),
        ("262", "02", "Vodafone Germany"),
        ("234", "15", "Vodafone UK"),
        ("208", "01", "Orange France"),
        ("310", "410", "AT&T Mobility"),
        ("310", "260", "T-Mobile US"),
        ("311", "480", "Verizon Wireless"),
        ("302", "720", "Rogers Wireless"),
        ("334", "020", "Telcel"),
        ("405", "857", "Reliance Jio"),
        ("404", "10", "Airtel"),
        ("440", "10", "NTT docomo"),
    ],
)
def test_operators(shipped: OperatorTable, mcc: str, mnc: str, name: str) -> None:
    assert shipped.operator(mcc, mnc) == name


def test_two_and_three_digit_mnc_are_distinct(shipped: OperatorTable) -> None:
    assert shipped.operator("310", "260") == "T-Mobile US"
    assert shipped.operator("310", "26") is None
    assert shipped.operator("262", "02") == "Vodafone Germany"
    assert shipped.operator("262", "002") is None


def test_shipped_tables_are_consistent() -> None:
    countries = _shipped_rows("mcc_countries.csv")
    operators = _shipped_rows("operators.csv")
    mccs = {row["mcc"] for row in countries}
    assert len(mccs) == len(countries) > 200
    assert all(len(r["country"]) == 2 and r["country"].isupper() for r in countries)
    keys = [(r["mcc"], r["mnc"]) for r in operators]
    assert len(set(keys)) == len(keys)
    assert {mcc for mcc, _ in keys} <= mccs
    country_of = {r["mcc"]: r["country"] for r in countries}
    assert len({country_of[mcc] for mcc, _ in keys}) >= 40
    # 3-digit-MNC countries use 3 digits throughout.
    for mcc, mnc in keys:
        if mcc in {"310", "311", "312", "313", "302", "334", "722", "732"}:
            assert len(mnc) == 3, (mcc, mnc)


def test_override_replaces_and_adds(tmp_path: Path) -> None:
    path = tmp_path / "ops.csv"
    path.write_text(
        "mcc,mnc,name,country\n"
        "262,02,Vodafone DE (our name),\n"
        "262,002,Three-digit test network,\n"
        "999,01,Private LTE,\n"
        "999,,,zz\n",
        encoding="utf-8",
    )
    table = OperatorTable.load(path)
    assert table.operator("262", "02") == "Vodafone DE (our name)"
    assert table.operator("262", "002") == "Three-digit test network"
    assert table.operator("262", "01") == "Telekom Deutschland"  # untouched
    assert table.operator("999", "01") == "Private LTE"
    assert table.country("999") == "ZZ"
    assert table.country("262") == "DE"


def test_override_with_only_countries(tmp_path: Path) -> None:
    path = tmp_path / "countries.csv"
    path.write_text("\ufeffMCC , Country\n901,XZ\n340,MQ\n", encoding="utf-8")
    table = OperatorTable.load(path)
    assert (table.country("901"), table.country("340")) == ("XZ", "MQ")
    assert table.operator("262", "01") == "Telekom Deutschland"


BAD_OVERRIDES = [
    ("no header", "", "empty file"),
    ("no mcc column", "mnc,name\n01,X\n", ":1: header has no 'mcc'"),
    ("mnc without name", "mcc,mnc\n262,01\n", ":1: header needs both"),
    ("nothing to set", "mcc,plan\n262,x\n", ":1: header needs"),
    ("short mcc", "mcc,mnc,name\n262,01,A\n26,01,B\n", ":3: mcc '26'"),
    ("long mnc", "mcc,mnc,name\n262,0001,A\n", ":2: mnc '0001'"),
    ("number-ish mnc", "mcc,mnc,name\n262,1,A\n", ":2: mnc '1'"),
    ("empty name", "mcc,mnc,name\n262,01,\n", ":2: operator name is empty"),
    ("bad country", "mcc,country\n262,DEU\n", ":2: country 'DEU'"),
    ("empty row content", "mcc,country\n262,\n", ":2: row sets neither"),
    ("too many fields", "mcc,country\n262,DE,x\n", ":2: 3 fields"),
]


@pytest.mark.parametrize(
    ("text", "needle"), [c[1:] for c in BAD_OVERRIDES], ids=[c[0] for c in BAD_OVERRIDES]
)
def test_bad_override_names_file_and_line(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(OperatorTableError) as info:
        OperatorTable.load(path)
    message = str(info.value)
    assert message.startswith(str(path))
    assert needle in message


def test_unreadable_override(tmp_path: Path) -> None:
    with pytest.raises(OperatorTableError, match="cannot read"):
        OperatorTable.load(tmp_path / "missing.csv")
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"mcc,mnc,name\n262,01,M\xfcnchen\n")
    with pytest.raises(OperatorTableError, match="not UTF-8"):
        OperatorTable.load(latin)
