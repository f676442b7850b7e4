"""Batch apply (``Engine.ingest_batch``) against the one-at-a-time reference (issue 12).

Documented behaviour (core/ingest.py ``Ingestor.apply_columns``): a batch of decoded
records gives the same state as ``Engine.ingest_record`` on each record in order:
the same per-SIM columns, rhythm model, value tables, leaves, duplicate memory and
counters. Random batches: several SIMs, usage, session and event records, roaming
(partners change), records out of order, repeated deliveries, SIMs not in the
inventory, in batches of random sizes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from fleet import ICCIDS, T0, new_engine
from fuzzing import fuzz
from hypothesis import given
from hypothesis import strategies as st

from simwatch.core.arrays import all_distinct, unique_first_inverse
from simwatch.core.columnar import RecordColumns
from simwatch.core.dedup import Deduplicator, fingerprint, fingerprints
from simwatch.core.records import Record

if TYPE_CHECKING:
    from simwatch.core.engine import Engine

PARTNERS = [("262", "01"), ("262", "02"), ("208", "10"), ("310", "410")]
APNS = ["meters.acme", "iot.fleet", None]
# not in the inventory: a new SIM, both forms of another's ICCID (19 digits and with its
# Luhn check digit), and the other form of an inventory SIM's
SIMS = [
    *ICCIDS[:6],
    "8931440000000099990",
    "89314400000000999911",
    "89314400000000999909",
    "89314400000000000005",
]


@st.composite
def records(
    draw: st.DrawFn, sims: tuple[str, ...] = tuple(SIMS), usage: int = 2, ids: int = 60
) -> Record:
    kind = draw(st.sampled_from(["usage"] * usage + ["session", "event"]))
    ts = T0 + draw(st.integers(0, 6 * 3600))  # out of order: any time in a window
    rid = f"r{draw(st.integers(0, ids))}"  # repeats: duplicate deliveries
    iccid = draw(st.sampled_from(sims))
    mcc, mnc = draw(st.sampled_from([*PARTNERS, (None, None)]))
    common: dict[str, Any] = {
        "record_id": rid,
        "iccid": iccid,
        "apn": draw(st.sampled_from(APNS)),
        "mcc": mcc,
        "mnc": mnc,
        "rat": draw(st.sampled_from(["LTE-M", None])),
        "operator": draw(st.sampled_from([None, None, "Op A", "Op B"])),
    }
    if kind == "usage":
        return Record(
            "usage",
            ts=ts,
            start=draw(st.sampled_from([ts - 900, ts - 3600, ts - 0.5, None])),
            bytes_up=draw(st.integers(0, 3)) * 500,
            bytes_down=draw(st.integers(0, 1)) * 100,
            **common,
        )
    if kind == "session":
        return Record(
            "session",
            ts=ts,
            session_id="s",
            status=draw(st.sampled_from(["started", "interim", "ended"])),
            end_cause=draw(st.sampled_from([None, "normal", "network_failure"])),
            bytes_up=draw(st.integers(0, 4)) * 1000,
            **common,
        )
    return Record(
        "event",
        ts=ts,
        event_type=draw(
            st.sampled_from(["attach", "auth_failure", "pdp_reject", "blocked", "detach", "purge"])
        ),
        cause=draw(st.sampled_from([None, "apn_not_allowed"])),
        **common,
    )


def state_of(engine: Engine) -> tuple[dict[str, Any], dict[str, object]]:
    arrays, meta = engine.export_state()
    return {k: np.asarray(v) for k, v in arrays.items()}, meta


def assert_same(a: Engine, b: Engine) -> None:
    arrays_a, meta_a = state_of(a)
    arrays_b, meta_b = state_of(b)
    assert meta_a == meta_b
    assert arrays_a.keys() == arrays_b.keys()
    for name, value in arrays_a.items():
        if name.startswith("dedup."):  # a set's keys: the order is not kept
            assert np.array_equal(np.sort(value), np.sort(arrays_b[name])), name
            continue
        assert np.array_equal(value, arrays_b[name], equal_nan=value.dtype.kind == "f"), name


@fuzz(120)
@given(
    st.lists(records(), min_size=1, max_size=80),
    st.lists(st.integers(1, 30), min_size=1, max_size=10),
    st.integers(2, 200),
)
def test_batches_give_the_state_of_one_record_at_a_time(
    recs: list[Record], sizes: list[int], dedup_capacity: int
) -> None:
    scalar = new_engine(SIMS[:4], dedup_capacity=dedup_capacity, initial_capacity=2)
    batched = new_engine(SIMS[:4], dedup_capacity=dedup_capacity, initial_capacity=2)
    batched.ingestor.small_batch = sizes[0] % 3  # mostly the array path, at times not
    batched.ingestor.min_round = sizes[-1] % 4  # a SIM's later records: rounds, at times not
    applied_scalar = [scalar.ingest_record(r) for r in recs]
    applied_batch: list[bool] = []
    start = 0
    k = 0
    while start < len(recs):
        size = sizes[k % len(sizes)]
        cols = RecordColumns.from_records(recs[start : start + size])
        applied_batch.extend(batched.ingest_batch(cols).tolist())
        start += size
        k += 1
    assert applied_batch == applied_scalar
    assert_same(scalar, batched)


def warm_up(engine: Engine) -> None:
    """Every partner, APN, RAT and their leaves registered (SIMs 30-35, one at a time)."""
    k = 0
    for mcc, mnc in [*PARTNERS, (None, None)]:
        for apn in APNS:
            for rat in ("LTE-M", None):
                k += 1
                engine.ingest_record(
                    Record("usage", f"w{k}", ICCIDS[30 + k % 6], T0 - 3600, T0 - 4500, 1, 0,
                           apn, mcc, mnc, rat)
                )  # fmt: skip


@fuzz(100)
@given(
    st.lists(records(ICCIDS[:30], usage=12, ids=400), min_size=1, max_size=120),
    st.lists(st.integers(5, 40), min_size=1, max_size=5),
)
def test_batches_of_many_sims_on_a_known_network(recs: list[Record], sizes: list[int]) -> None:
    """Mostly usage records of SIMs seen once per batch, on known partners and APNs: the
    records applied over arrays (roaming included) give the state of one at a time."""
    scalar = new_engine(ICCIDS[:20], initial_capacity=8)
    batched = new_engine(ICCIDS[:20], initial_capacity=8)
    batched.ingestor.small_batch = 0  # every batch on the array path
    batched.ingestor.min_round = 1  # a SIM's later records of a batch too
    warm_up(scalar)
    warm_up(batched)
    same_by_batches(scalar, batched, recs, sizes)


def same_by_batches(scalar: Engine, batched: Engine, recs: list[Record], sizes: list[int]) -> None:
    """``recs`` one at a time into ``scalar`` and in batches of ``sizes`` (cycled) into
    ``batched``: the same records applied and the same state."""
    applied_scalar = [scalar.ingest_record(r) for r in recs]
    applied_batch: list[bool] = []
    start = k = 0
    while start < len(recs):
        size = sizes[k % len(sizes)]
        cols = RecordColumns.from_records(recs[start : start + size])
        applied_batch.extend(batched.ingest_batch(cols).tolist())
        start += size
        k += 1
    assert applied_batch == applied_scalar
    assert_same(scalar, batched)


@fuzz(200)
@given(st.lists(st.integers(0, 40).map(str), max_size=60), st.integers(2, 30))
def test_seen_many_is_seen_on_each(ids: list[str], capacity: int) -> None:
    one, many = Deduplicator(capacity), Deduplicator(capacity)
    expected = [one.seen(x) for x in ids]
    half = len(ids) // 2
    got = many.seen_many(ids[:half]).tolist() + many.seen_many(ids[half:]).tolist()
    assert got == expected
    (cur_a, old_a), (cur_b, old_b) = one.export(), many.export()
    assert (set(cur_a.tolist()), set(old_a.tolist())) == (set(cur_b.tolist()), set(old_b.tolist()))


def warm_up_causes(engine: Engine) -> None:
    """Every cause and reject text the records below can carry registered (SIM 36), and
    usage records for half of the SIMs (a session's total is data evidence only for a
    SIM without usage records)."""
    k = 0
    sim = ICCIDS[36]
    for event in ("auth_failure", "pdp_reject", "blocked"):
        for cause in (None, "apn_not_allowed"):
            for apn in APNS:
                k += 1
                engine.ingest_record(
                    Record("event", f"c{k}", sim, T0 - 3000, event_type=event, cause=cause,
                           apn=apn)
                )  # fmt: skip
    engine.ingest_record(
        Record("session", "c-end", sim, T0 - 2000, session_id="s", status="ended",
               end_cause="network_failure")
    )  # fmt: skip
    for i, iccid in enumerate(ICCIDS[:10]):
        engine.ingest_record(Record("usage", f"u{i}", iccid, T0 - 1000, T0 - 1900, 10, 0))


@fuzz(100)
@given(
    st.lists(records(ICCIDS[:30], usage=1, ids=400), min_size=1, max_size=120),
    st.lists(st.integers(5, 40), min_size=1, max_size=5),
)
def test_sessions_and_events_on_a_known_network(recs: list[Record], sizes: list[int]) -> None:
    """A third each of usage, session and event records, the causes, APNs and partners
    known: sessions and events applied over arrays give the state of one at a time
    (starts, running totals, ends with a failure cause, rejects and their runs,
    detaches), for SIMs with and without usage records."""
    scalar = new_engine(ICCIDS[:20], initial_capacity=8)
    batched = new_engine(ICCIDS[:20], initial_capacity=8)
    batched.ingestor.small_batch = 0
    batched.ingestor.min_round = 1
    for engine in (scalar, batched):
        warm_up(engine)
        warm_up_causes(engine)
    same_by_batches(scalar, batched, recs, sizes)


@fuzz(200)
@given(
    st.lists(
        st.one_of(
            st.text(st.characters(max_codepoint=127), min_size=1, max_size=256),
            st.text(min_size=1, max_size=20),  # non-ASCII: the one-by-one fingerprint
            st.integers(0, 10**9).map(lambda i: f"u-{i}"),
        ),
        max_size=40,
    )
)
def test_fingerprints_of_a_batch_are_fingerprint_of_each(ids: list[str]) -> None:
    """The batch fingerprint (a byte matrix reduced by Horner's rule) is bit for bit the
    one-by-one Karp-Rabin fingerprint: NUL bytes, 1-256 characters, ids of every length
    in one batch."""
    ascii_only = [x for x in ids if x.isascii()]
    # the last Horner step of this id ends between p and 2**62 + 2**40 (found by search):
    # it needs the final subtraction
    above_p = "y:b,VT9D#l##Gw.qx+|d*=>a"
    for batch in (ids, ascii_only, ["\x00"], ["\x7f" * 256, "a"], [above_p, "b"]):
        assert fingerprints(batch).tolist() == [fingerprint(x) for x in batch]


def warm_up_values(engine: Engine) -> None:
    """Every partner, APN and RAT registered, but only some of their leaves: APN
    ``iot.fleet`` only with the first partner (SIMs 30-35, one at a time)."""
    k = 0
    for mcc, mnc in PARTNERS:
        for apn in ("meters.acme", "iot.fleet") if k == 0 else ("meters.acme",):
            k += 1
            engine.ingest_record(
                Record("usage", f"w{k}", ICCIDS[30 + k % 6], T0 - 3600, T0 - 4500, 1, 0,
                       apn, mcc, mnc, "LTE-M")
            )  # fmt: skip


@fuzz(100)
@given(
    st.lists(records(ICCIDS[:8], usage=12, ids=400), min_size=1, max_size=120),
    st.lists(st.integers(5, 40), min_size=1, max_size=5),
)
def test_a_sims_records_after_a_new_leaf_stay_in_order(
    recs: list[Record], sizes: list[int]
) -> None:
    """Few SIMs, several records each per batch, on a network whose values are known but
    not all of whose leaves exist: a SIM's records go over arrays round by round (its
    first records, then its second...) until one leads to a new leaf; that one and the
    SIM's later records of the batch go one at a time, in order."""
    scalar = new_engine(ICCIDS[:8], initial_capacity=8)
    batched = new_engine(ICCIDS[:8], initial_capacity=8)
    batched.ingestor.small_batch = 0
    batched.ingestor.min_round = 1
    warm_up_values(scalar)
    warm_up_values(batched)
    same_by_batches(scalar, batched, recs, sizes)


@fuzz(200)
@given(st.lists(st.integers(-(2**62), 2**62) | st.integers(0, 5), max_size=60))
def test_array_helpers_are_numpys(values: list[int]) -> None:
    keys = np.array(values, np.int64)
    got = unique_first_inverse(keys)
    expected = np.unique(keys, return_index=True, return_inverse=True)
    for a, b in zip(got, expected, strict=True):
        assert a.tolist() == b.ravel().tolist()
    assert all_distinct(keys) == (np.unique(keys).size == keys.size)


MCCS = [None, "262", "208", "310", "234", "204"]
MNCS = [None, "01", "02", "10", "410", "15"]


@fuzz(150)
@given(
    st.lists(st.tuples(st.sampled_from(MCCS), st.sampled_from(MNCS)), min_size=1, max_size=40),
    st.integers(0, 6),
)
def test_partner_codes_of_a_batch_are_each_records(
    pairs: list[tuple[str | None, str | None]], registered: int
) -> None:
    """The partner and country code of each record of a batch (a mark per possible
    MCC/MNC pair when there are few, a sort otherwise) are the lookups of its own pair:
    ABSENT without MCC or MNC, UNKNOWN for a partner or country not registered yet."""
    engine = new_engine()
    ingestor = engine.ingestor
    for k, (known_mcc, known_mnc) in enumerate(PARTNERS[:registered]):  # some partners known
        engine.ingest_record(
            Record("usage", f"p{k}", ICCIDS[k], T0, T0 - 900, 1, 0, None, known_mcc, known_mnc)
        )
    # the drawn batch, and one of as many distinct MCCs and MNCs as records (the sort)
    for batch in (pairs, list(zip(MCCS, MNCS[::-1], strict=True)) + pairs[:1]):
        mccs = [m for m, _ in batch]
        mncs = [n for _, n in batch]
        partner, country, given = ingestor._partner_codes(mccs, mncs)
        expected_partner, expected_country = [], []
        for mcc, mnc in batch:
            if mcc is None or mnc is None:
                expected_partner.append(-2)
                expected_country.append(-2)
                continue
            code = engine.state.partners.find(mcc + mnc)
            found = ingestor._country_of_partner.get(code) if code >= 0 else None
            expected_partner.append(code)
            expected_country.append(-1 if found is None else found)
        assert partner.tolist() == expected_partner
        assert country.tolist() == expected_country
        assert given.tolist() == [m is not None for m in mccs]
