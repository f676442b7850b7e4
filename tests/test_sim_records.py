"""The simulator's fast paths write the records the plain ones did (issue 12, the
50,000-SIM scenario runs).

Documented behaviour (sim/records.py, sim/machine.py, sim/fleet.py): a usage record's
line is what orjson writes for its dict; a SIM's reports run in one merge with its other
happenings, in the order one heap of both gave; ``advance_ndjson`` is ``advance``'s lines
as one block. The digests below are of records written by the simulator before these
paths (main at 4ad2c01): the records of a seed must never change.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from fuzzing import fuzz
from hypothesis import given
from hypothesis import strategies as st

from simwatch.sim.catalogue import DAY
from simwatch.sim.config import SimConfig
from simwatch.sim.fleet import FleetSimulator
from simwatch.sim.records import RecordWriter
from simwatch.sim.scenarios import SCENARIOS

GOLDEN = {
    ("partial_blackhole", "r1"): "f6d1648a84107692fc144557f4ad70139d932ba233c50cad2f60f3cdd88671b4",
    ("apn_outage", "r2"): "fcba0eddfaa545902b9cce6ce44e24187f1c1583922de23eb9a2f28084736fa6",
    ("partner_outage", "r3"): "cce1fa21c6a1fe77e68049de936b04c3fcc60090b0813134fef498da90a2228f",
    ("per_sim", "mixed"): "a9a859db6f12c490b0e497e92b2745dcafb131cb21acc8132e426d66257a8efc",
}


def _config(name: str, regime: str) -> SimConfig:
    return replace(SCENARIOS[name](3), regime=regime, sims=300, days=3.0)


@pytest.mark.parametrize(("name", "regime"), sorted(GOLDEN))
def test_records_of_a_seed_are_those_written_before(name: str, regime: str) -> None:
    cfg = _config(name, regime)
    sim = FleetSimulator(cfg)
    digest = hashlib.sha256()
    t = cfg.start
    while t <= cfg.start + 5 * DAY:
        t += DAY / 2
        for line in sim.advance(t):
            digest.update(line + b"\n")
    assert digest.hexdigest() == GOLDEN[name, regime]


def test_advance_ndjson_is_advance_joined() -> None:
    cfg = _config("partner_outage", "mixed")
    lines, block = FleetSimulator(cfg), FleetSimulator(cfg)
    t = cfg.start
    empty = 0
    while t <= cfg.start + 5 * DAY:
        t += 5 * 3600.0
        want = b"".join(line + b"\n" for line in lines.advance(t))
        got = block.advance_ndjson(t)
        assert got == want
        empty += not got
    assert empty  # the steps past the end arrive nothing: b""


_text = st.text(min_size=0, max_size=12)


@fuzz(200)
@given(
    st.tuples(_text, _text, _text, _text, _text),
    st.tuples(st.integers(0, 2**53), st.integers(0, 2**53)),
    st.tuples(st.floats(1.6e9, 1.9e9), st.floats(0.0, 86400.0)),
    st.booleans(),
)
def test_usage_line_is_orjson_of_its_dict(
    values: tuple[str, str, str, str, str],
    volume: tuple[int, int],
    times: tuple[float, float],
    windowed: bool,
) -> None:
    iccid, apn, mcc, mnc, rat = values
    up, down = volume
    t, span = times
    writer = RecordWriter(SimConfig(), shift_s=120.0)
    sim: Any = SimpleNamespace(iccid=iccid, apn=apn, mcc=mcc, mnc=mnc, rat=rat)
    attrs = (apn + "w", mcc, mnc, rat) if windowed else None
    for _ in range(2):  # the second from the caches
        writer._usage_record(sim, t - span, t, up, down, attrs=attrs)
    first, second = writer._out_lines[0], writer._out_lines[-1]
    record = orjson.loads(first)
    start, end = writer._fmt(t - span), writer._fmt(t)
    want = {
        "kind": "usage",
        "record_id": "u-1",
        "iccid": iccid,
        "start": start,
        "end": end,
        "bytes_up": up,
        "bytes_down": down,
        "apn": apn + "w" if windowed else apn,
        "mcc": mcc,
        "mnc": mnc,
        "rat": rat,
    }
    assert first == orjson.dumps(want).decode()
    assert record == want
    assert second == orjson.dumps(want | {"record_id": "u-2"}).decode()
