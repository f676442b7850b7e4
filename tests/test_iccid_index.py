from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simwatch.core.iccid_index import IccidIndex


def random_iccids(count: int, seed: int) -> list[str]:
    """Distinct ICCIDs of every length 18-22, including leading zeros and extreme values."""
    rng = random.Random(seed)
    out: dict[str, None] = {}
    for length in range(18, 23):
        for fixed in ("0" * length, "9" * length, "1" + "0" * (length - 1), "89" * 11):
            out[fixed[:length]] = None
    while len(out) < count:
        length = rng.randint(18, 22)
        head = rng.choice(["89", "0089", "0", "00000", ""])
        body = "".join(rng.choice("0123456789") for _ in range(length))
        out[(head + body)[:length]] = None
    return list(out)


iccid_st = st.integers(18, 22).flatmap(
    lambda n: st.text(alphabet="0123456789", min_size=n, max_size=n)
)


def test_round_trip_every_length() -> None:
    keys = random_iccids(5000, seed=1)
    assert {len(k) for k in keys} == {18, 19, 20, 21, 22}
    index = IccidIndex()
    rows = [index.add(k) for k in keys]
    assert rows == list(range(len(keys)))  # dense, insertion order
    assert len(index) == len(keys)
    assert [index.get(k) for k in keys] == rows
    assert [index.iccid(r) for r in rows] == keys
    assert index.iccids() == keys
    assert index.iccids(np.array([3, 0, 3], dtype=np.int32)) == [keys[3], keys[0], keys[3]]
    assert all(k in index for k in keys)


def test_leading_zeros_and_length_are_part_of_the_key() -> None:
    x = "8931440000000000011"
    variants = [x[1:], x, "0" + x, "00" + x, "000" + x]  # 18..22 digits, same integer tail
    index = IccidIndex(capacity=1)
    assert [index.add(v) for v in variants] == [0, 1, 2, 3, 4]
    assert index.iccids() == variants
    zeros = ["0" * n for n in range(18, 23)]  # all the integer 0
    assert index.add_many(zeros).tolist() == [5, 6, 7, 8, 9]
    assert [index.iccid(r) for r in range(5, 10)] == zeros
    assert index.get("0" * 19) == 6
    assert index.get("1" + "0" * 18) == -1


def test_values_above_two_to_the_64() -> None:
    # 10**22 - 1 > 2**64: the upper bits live in hi and must survive the round trip
    big = ["9" * 22, "1" + "0" * 21, str(2**64).zfill(20), str(2**64 - 1).zfill(20)]
    index = IccidIndex()
    rows = index.add_many(big)
    assert index.iccids(rows) == big
    scalar = IccidIndex()
    assert [scalar.add(b) for b in big] == [0, 1, 2, 3]
    assert scalar.iccids() == big
    assert np.array_equal(index._hi[:4], scalar._hi[:4])
    assert np.array_equal(index._lo[:4], scalar._lo[:4])


def test_unknown_is_minus_one_and_add_is_idempotent() -> None:
    index = IccidIndex()
    assert index.get("89314400000000000111") == -1
    assert "89314400000000000111" not in index
    assert index.add("89314400000000000111") == 0
    assert index.add("89314400000000000111") == 0
    assert index.add("89314400000000000112") == 1
    assert index.add("89314400000000000111") == 0
    assert len(index) == 2
    assert index.get("89314400000000000113") == -1
    assert index.get_many([]).shape == (0,)
    assert index.add_many([]).shape == (0,)
    assert IccidIndex().get_many(["8931440000000000011"]).tolist() == [-1]


def test_growth_across_many_doublings() -> None:
    keys = random_iccids(60_000, seed=2)
    index = IccidIndex(capacity=0)
    sizes = set()
    for k in keys:
        index.add(k)
        sizes.add(index._table.size)
    assert len(sizes) >= 12  # 8 -> 131072 slots
    assert index.get_many(keys).tolist() == list(range(len(keys)))
    assert index.iccids() == keys
    assert len(index) <= 0.7 * index._table.size
    # the table holds every row exactly once
    table = index._table
    assert sorted(table[table >= 0].tolist()) == list(range(len(keys)))


def test_batch_growth_and_memory_budget() -> None:
    keys = random_iccids(100_000, seed=3)
    index = IccidIndex(capacity=4)
    for i in range(0, len(keys), 7_000):
        index.add_many(keys[i : i + 7_000])
    assert index.get_many(keys).tolist() == list(range(len(keys)))
    assert [index.get(k) for k in keys[::997]] == list(range(0, len(keys), 997))
    assert index.nbytes() / len(index) <= 48
    assert index.nbytes() == index._table.nbytes + index._hi.nbytes + index._lo.nbytes


def test_batch_agrees_with_scalar_including_duplicates() -> None:
    rng = random.Random(4)
    pool = random_iccids(3000, seed=4)
    scalar, batch = IccidIndex(capacity=2), IccidIndex(capacity=2)
    for _ in range(30):
        chunk = [rng.choice(pool) for _ in range(rng.randint(0, 300))]
        expected = [scalar.add(k) for k in chunk]
        assert batch.add_many(chunk).tolist() == expected
        probe = [rng.choice(pool) for _ in range(200)]
        assert batch.get_many(probe).tolist() == [scalar.get(k) for k in probe]
    assert batch.iccids() == scalar.iccids()


def test_add_many_numbers_new_keys_by_first_appearance() -> None:
    a, b, c, d = (f"89{i:018d}" for i in (7, 3, 5, 1))
    index = IccidIndex()
    index.add(c)
    rows = index.add_many([b, a, b, c, d, a, d])
    assert rows.dtype == np.int64
    assert rows.tolist() == [1, 2, 1, 0, 3, 2, 3]
    assert index.iccids() == [c, b, a, d]


def test_mixed_and_single_length_batches_parse_alike() -> None:
    keys = random_iccids(2000, seed=5)
    by_len = IccidIndex()
    for n in range(18, 23):
        by_len.add_many([k for k in keys if len(k) == n])  # single-length fast path
    mixed = IccidIndex()
    mixed.add_many(keys)  # mixed-length gather path
    order = by_len.iccids()
    assert sorted(order) == sorted(keys)
    rows = mixed.get_many(order)
    assert rows.tolist() == [keys.index(k) for k in order]
    assert np.array_equal(mixed._hi[rows], by_len._hi[: len(keys)])
    assert np.array_equal(mixed._lo[rows], by_len._lo[: len(keys)])
    assert by_len.get_many(keys).tolist() == [by_len.get(k) for k in keys]


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "8" * 17,
        "8" * 23,
        "\u0668\u0669" * 10,  # Arabic-Indic digits: str.isdigit() accepts them
        "\uff18\uff19" * 10,  # fullwidth digits
        "89" * 9 + "\u00b2",  # superscript two: isdigit() but not a decimal digit
        " " + "8" * 19,
        "8" * 19 + "\n",
        "+" + "8" * 19,
        "-" + "8" * 19,
        "8" * 10 + "_" + "8" * 9,
        "8" * 18 + "\x00",
        "8" * 9 + "," + "8" * 9,
        "8" * 18 + "a",
    ],
)
def test_invalid_iccids_are_rejected(bad: str) -> None:
    index = IccidIndex()
    index.add("8" * 19)
    assert not IccidIndex.valid(bad)
    assert bad not in index
    with pytest.raises(ValueError, match="not an ICCID"):
        index.get(bad)
    with pytest.raises(ValueError, match="not an ICCID"):
        index.add(bad)
    with pytest.raises(ValueError, match="not an ICCID"):
        index.get_many(["8" * 20, bad])
    with pytest.raises(ValueError, match="not an ICCID"):
        index.add_many(["8" * 20, bad, "8" * 21])
    assert len(index) == 1  # a rejected batch adds nothing
    assert index.get("8" * 20) == -1


@pytest.mark.parametrize("bad", [b"8931440000000000011", 8931440000000000011, None])
def test_non_strings_are_rejected(bad: object) -> None:
    index = IccidIndex()
    assert not IccidIndex.valid(bad)
    assert bad not in index
    with pytest.raises(ValueError, match="not an ICCID"):
        index.add(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not an ICCID"):
        index.get(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not an ICCID"):
        index.add_many(["8" * 20, bad])  # type: ignore[list-item]


def test_valid_accepts_ascii_digits_of_every_length() -> None:
    assert all(IccidIndex.valid("0" * n) for n in range(18, 23))
    assert IccidIndex.valid("89314400000000000111")


def test_row_lookups_out_of_range() -> None:
    index = IccidIndex()
    index.add_many(["8" * 19, "8" * 20])
    for row in (-1, 2, 10**9):
        with pytest.raises(IndexError):
            index.iccid(row)
    with pytest.raises(IndexError):
        index.iccids(np.array([0, 2]))
    with pytest.raises(IndexError):
        index.iccids(np.array([-1]))
    with pytest.raises(TypeError):
        index.iccids(np.array([0.0]))
    assert index.iccids(np.array([], dtype=np.int64)) == []


def test_negative_capacity_is_rejected() -> None:
    with pytest.raises(ValueError, match="capacity"):
        IccidIndex(capacity=-1)


def test_numpy_string_batches() -> None:
    keys = random_iccids(50, seed=6)
    index = IccidIndex()
    index.add_many(np.array(keys))
    assert index.get_many(np.array(keys[::-1])).tolist() == list(range(len(keys)))[::-1]


ops_st = st.lists(
    st.tuples(
        st.sampled_from(["add", "get", "add_many", "get_many", "contains"]),
        st.lists(st.integers(0, 39), min_size=0, max_size=12),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(pool=st.lists(iccid_st, min_size=1, max_size=40, unique=True), ops=ops_st)
def test_matches_dict_model(pool: list[str], ops: list[tuple[str, list[int]]]) -> None:
    index = IccidIndex(capacity=1)
    model: dict[str, int] = {}
    for op, picks in ops:
        keys = [pool[i % len(pool)] for i in picks]
        if op == "add":
            for k in keys:
                assert index.add(k) == model.setdefault(k, len(model))
        elif op == "get":
            for k in keys:
                assert index.get(k) == model.get(k, -1)
        elif op == "contains":
            for k in keys:
                assert (k in index) == (k in model)
        elif op == "add_many":
            expected = [model.setdefault(k, len(model)) for k in keys]
            assert index.add_many(keys).tolist() == expected
        else:
            assert index.get_many(keys).tolist() == [model.get(k, -1) for k in keys]
        assert len(index) == len(model)
    assert index.iccids() == list(model)


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(st.text(max_size=24), iccid_st))
def test_validation_matches_definition(text: str) -> None:
    expected = 18 <= len(text) <= 22 and all(c in "0123456789" for c in text)
    assert IccidIndex.valid(text) == expected
    index = IccidIndex()
    if expected:
        assert index.add(text) == 0
        assert index.get_many([text]).tolist() == [0]
        assert index.iccid(0) == text
    else:
        with pytest.raises(ValueError, match="not an ICCID"):
            index.get(text)
        with pytest.raises(ValueError, match="not an ICCID"):
            index.get_many([text])
