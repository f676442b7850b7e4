"""``core.handoff``: a partition's SIM rows exported from one state and merged into another.

Documented behaviour (simwatch/core/handoff.py, docs/scaling.md "Taking a partition over"):
the rows of a set of SIMs carry every per-SIM column and the rhythm model; merged into
another state, a SIM new there is appended, a known one overwritten; interned strings
(APN, partner, customer, causes...) are re-interned in the receiving state's tables.
So each merged SIM's view (``/api/v1/sims/{iccid}``) is the one its old owner had.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from simwatch.core.engine import Engine, EngineConfig
from simwatch.core.handoff import export_rows, merge_rows
from simwatch.core.inventory import InventoryRow
from simwatch.core.operators import OperatorTable
from simwatch.core.state import NEVER, Flag
from simwatch.core.timeutil import format_rfc3339
from simwatch.http.views import sim_view
from simwatch.shell.replay import replay_lines

T0 = 1_795_000_000.0  # 2026-11-18, a fixed instant
NOW = T0 + 2 * 86400
PARTNERS = [("262", "01"), ("204", "04"), ("234", "15"), ("208", "10")]


def fleet(base: int, n: int) -> list[str]:
    return [f"{base}{i:09d}" for i in range(n)]


def records(iccids: list[str], *, apn_prefix: str, seed: int) -> list[bytes]:
    """Two days of usage every ~15 min on varied APNs and partners, sessions with end
    causes and auth failures: every interned column gets values."""
    rng = np.random.default_rng(seed)
    out: list[bytes] = []
    n = 0
    for k, iccid in enumerate(iccids):
        mcc, mnc = PARTNERS[(k + seed) % len(PARTNERS)]
        apn = f"{apn_prefix}{k % 3}.example"
        t = T0 + float(rng.integers(0, 900))
        step = 900.0 * (1 + k % 3)
        while t < NOW - 600:
            n += 1
            up = int(rng.integers(100, 5000))
            out.append(orjson.dumps({
                "kind": "usage", "record_id": f"u-{seed}-{n}", "iccid": iccid,
                "start": format_rfc3339(t - 60), "end": format_rfc3339(t),
                "bytes_up": up, "bytes_down": 10, "apn": apn, "mcc": mcc, "mnc": mnc,
                "rat": "LTE-M" if k % 2 else "NB-IoT",
            }))  # fmt: skip
            t += step
        n += 1
        out.append(orjson.dumps({
            "kind": "session", "record_id": f"s-{seed}-{n}", "iccid": iccid,
            "session_id": f"x{k}", "status": "started", "ts": format_rfc3339(NOW - 3000),
            "apn": apn, "mcc": mcc, "mnc": mnc,
        }))  # fmt: skip
        if k % 4 == 0:
            n += 1
            out.append(orjson.dumps({
                "kind": "session", "record_id": f"s-{seed}-{n}", "iccid": iccid,
                "session_id": f"x{k}", "status": "ended", "ts": format_rfc3339(NOW - 1200),
                "bytes_up": 500, "bytes_down": 5, "end_cause": f"cause-{seed}-{k % 5}",
            }))  # fmt: skip
        if k % 5 == 0:
            n += 1
            out.append(orjson.dumps({
                "kind": "event", "record_id": f"e-{seed}-{n}", "iccid": iccid,
                "ts": format_rfc3339(NOW - 900), "type": "auth_failure", "apn": "internet",
                "mcc": mcc, "mnc": mnc, "cause": f"reject-{seed}",
            }))  # fmt: skip
    return out


def engine_with(iccids: list[str], *, apn_prefix: str, seed: int, customer: str = "acme") -> Engine:
    engine = Engine(EngineConfig(), OperatorTable.load(None))
    engine.state.load_inventory(
        InventoryRow(
            iccid=iccid,
            customer=f"{customer}-{k % 2}",
            plan=f"plan-{k % 3}",
            apns=(f"{apn_prefix}0.example", f"{apn_prefix}1.example"),
            tags=frozenset({"vip"}) if k % 7 == 0 else frozenset(),
        )
        for k, iccid in enumerate(iccids)
    )
    replay_lines(engine, records(iccids, apn_prefix=apn_prefix, seed=seed), wall_now=NOW)
    return engine


def view(engine: Engine, iccid: str) -> dict[str, Any]:
    """The SIM's API view judged on the state now (not on the last cycle's evaluation,
    which predates the merge until the next cycle)."""
    engine.last_evaluation = None
    return sim_view(engine, iccid, NOW)


def test_export_then_merge_gives_the_same_views_with_strings_reinterned() -> None:
    moving = fleet(8931440000, 60)
    old = engine_with(moving, apn_prefix="meters", seed=1)
    # the receiver knows other SIMs first (its codes differ) and a stale copy of 10 of
    # the moving SIMs (overwritten by the merge)
    other = fleet(8931449000, 40)
    new = engine_with(other + moving[:10], apn_prefix="cars", seed=2, customer="zeta")
    before = {iccid: view(new, iccid) for iccid in other}
    assert new.state.apns.find("meters0.example") < 0  # the strings are new to it
    stale = len(new.state)

    rows = np.array([old.state.row(i) for i in moving], dtype=np.int64)
    arrays, meta = export_rows(old.state, rows)
    meta = orjson.loads(orjson.dumps(meta))  # what travels is JSON
    written = merge_rows(new.state, arrays, meta)

    assert (written >= 0).all()
    assert len(new.state) == stale + 50  # 50 appended, 10 overwritten in place
    assert all(new.state.row(i) == r for i, r in zip(moving, written.tolist(), strict=True))
    for iccid in moving:
        assert view(new, iccid) == view(old, iccid), iccid
    for iccid in other:  # the receiver's own SIMs are untouched
        assert view(new, iccid) == before[iccid]
    # the codes differ, the strings are the same
    for name, table in (("apn", "apns"), ("partner", "partners"), ("customer", "customers")):
        codes_old = getattr(old.state.cols, name)[rows]
        codes_new = getattr(new.state.cols, name)[written]
        assert (codes_old != codes_new).any(), name
        strings_old = [getattr(old.state, table).values[c] for c in codes_old]
        assert [getattr(new.state, table).values[c] for c in codes_new] == strings_old
    for r_new in written.tolist():
        assert new.state.dim_codes(r_new) == new.state.leaf_keys[int(new.state.cols.leaf[r_new])]
    for column in ("month_bytes", "session_bytes", "session_starts", "attrs_at"):
        own = getattr(old.state.cols, column)[rows]
        assert (getattr(new.state.cols, column)[written] == own).all(), column
    assert (new.state.rhythm.take(written)["mu"] == old.state.rhythm.take(rows)["mu"]).all()


def test_merge_keeps_only_accepted_sims_and_clears_away() -> None:
    moving = fleet(8931440000, 20)
    old = engine_with(moving, apn_prefix="meters", seed=3)
    rows = np.arange(len(old.state), dtype=np.int64)
    old.state.set_away(rows[:5])
    arrays, meta = export_rows(old.state, rows)
    new = Engine(EngineConfig(), OperatorTable.load(None))
    keep = set(moving[::2])
    written = merge_rows(new.state, arrays, meta, accept=keep.__contains__)
    assert len(new.state) == len(keep)
    assert (written[1::2] == -1).all()
    assert not (new.state.cols.flags[: len(new.state)] & Flag.AWAY).any()


def test_an_export_of_other_dims_or_a_torn_column_is_refused() -> None:
    old = engine_with(fleet(8931440000, 5), apn_prefix="m", seed=4)
    arrays, meta = export_rows(old.state, np.arange(5, dtype=np.int64))
    other = Engine(EngineConfig(dims=("apn", "partner")), OperatorTable.load(None))
    with pytest.raises(ValueError, match="dims"):
        merge_rows(other.state, arrays, meta)
    torn = dict(arrays)
    torn["col.month_bytes"] = torn["col.month_bytes"][:3]
    fresh = Engine(EngineConfig(), OperatorTable.load(None))
    with pytest.raises(ValueError, match="month_bytes"):
        merge_rows(fresh.state, torn, meta)
    assert len(fresh.state) == 0  # refused before any row was written


def test_an_export_from_an_older_node_without_a_newer_column_is_taken() -> None:
    # A rolling upgrade: a node of the version before ``data_from`` hands over its
    # partitions. Its SIMs are taken with that column empty (the state a checkpoint
    # without it restores to); a column every version has is still required.
    old = engine_with(fleet(8931440000, 5), apn_prefix="m", seed=4)
    arrays, meta = export_rows(old.state, np.arange(5, dtype=np.int64))
    older = {k: v for k, v in arrays.items() if k != "col.data_from"}
    fresh = Engine(EngineConfig(), OperatorTable.load(None))
    written = merge_rows(fresh.state, older, meta)
    assert (written >= 0).all()
    assert (fresh.state.cols.data_from[:5] == NEVER).all()
    assert np.array_equal(fresh.state.cols.apn[:5] > 0, old.state.cols.apn[:5] > 0)
    without = {k: v for k, v in arrays.items() if k != "col.month_bytes"}
    with pytest.raises(ValueError, match="month_bytes"):
        merge_rows(Engine(EngineConfig(), OperatorTable.load(None)).state, without, meta)
