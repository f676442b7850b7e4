"""Named scenario presets and writing a whole run to a folder."""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from simwatch.sim.catalogue import DAY, HOUR
from simwatch.sim.config import DEFAULT_START, SimConfig
from simwatch.sim.faults import FaultSpec
from simwatch.sim.fleet import FleetSimulator

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path


def _at(day: float, hour: float) -> float:
    return DEFAULT_START + day * DAY + hour * HOUR


def _fault_free_week(seed: int) -> SimConfig:
    return SimConfig(days=7.0, seed=seed)


def _partner_outage(seed: int) -> SimConfig:
    f = FaultSpec("partner_outage", _at(2, 10), _at(2, 13), {"partner": "26201"})
    return SimConfig(seed=seed, faults=(f,))


def _partial_blackhole(seed: int) -> SimConfig:
    f = FaultSpec("partial_blackhole", _at(2, 14), _at(2, 17), {"partner": "26201"}, fraction=0.3)
    return SimConfig(seed=seed, faults=(f,))


def _apn_outage(seed: int) -> SimConfig:
    f = FaultSpec("apn_outage", _at(2, 9), _at(2, 12), {"apn": "internet.iot"})
    return SimConfig(seed=seed, faults=(f,))


def _country_outage(seed: int) -> SimConfig:
    f = FaultSpec(
        "country_outage",
        _at(2, 11),
        _at(
            2,
            13,
        ),
        {"country": "FR"},
    )
    return SimConfig(seed=seed, faults=(f,))


def _apn_country(seed: int) -> SimConfig:
    f = FaultSpec("apn_country", _at(2, 8), _at(2, 11), {"apn": "meters.acme", "country": "DE"})
    return SimConfig(seed=seed, faults=(f,))


def _apn_partner(seed: int) -> SimConfig:
    f = FaultSpec("apn_partner", _at(2, 9), _at(2, 12), {"apn": "internet.iot", "partner": "26201"})
    return SimConfig(seed=seed, faults=(f,))


def _shared_value(seed: int) -> SimConfig:
    """Two faults at once that share a value (one APN, two countries), its other countries
    healthy: two incidents, never the APN fleet-wide."""
    return SimConfig(
        seed=seed,
        faults=(
            FaultSpec(
                "apn_country", _at(2, 9), _at(2, 12), {"apn": "internet.iot", "country": "FR"}
            ),
            FaultSpec(
                "apn_country", _at(2, 9.25), _at(2, 12), {"apn": "internet.iot", "country": "NL"}
            ),
        ),
    )


def _two_faults(seed: int) -> SimConfig:
    return SimConfig(
        seed=seed,
        faults=(
            FaultSpec("partner_outage", _at(2, 10), _at(2, 13), {"partner": "26201"}),
            FaultSpec("apn_outage", _at(2, 11.5), _at(2, 14), {"apn": "cold.chain"}),
        ),
    )


def _per_sim(seed: int) -> SimConfig:
    return SimConfig(
        seed=seed,
        faults=(
            FaultSpec("data_cap", _at(2, 9), _at(2, 13), sims=5),
            FaultSpec("wrong_apn", _at(2, 15), _at(2, 18), sims=5),
            FaultSpec("session_flapping", _at(3, 2), _at(3, 5), sims=5),
        ),
    )


SCENARIOS: Mapping[str, Callable[[int], SimConfig]] = {
    "fault_free_week": _fault_free_week,
    "partner_outage": _partner_outage,
    "partial_blackhole": _partial_blackhole,
    "apn_outage": _apn_outage,
    "country_outage": _country_outage,
    "apn_country": _apn_country,
    "apn_partner": _apn_partner,
    "shared_value": _shared_value,
    "two_faults": _two_faults,
    "per_sim": _per_sim,
}


# ------------------------------------------------------------------------- output and CLI


def write_scenario(config: SimConfig, out_dir: Path) -> dict[str, Path]:
    """Generate the whole run into ``out_dir``: inventory.csv, records.ndjson, truth.json."""
    out_dir.mkdir(parents=True, exist_ok=True)
    sim = FleetSimulator(config)
    sim.end_at_horizon()
    paths = {
        "inventory": out_dir / "inventory.csv",
        "records": out_dir / "records.ndjson",
        "truth": out_dir / "truth.json",
    }
    paths["inventory"].write_text(sim.inventory_csv(), encoding="utf-8")
    with paths["records"].open("wb") as fh:
        step = DAY
        t = config.start
        while True:
            t += step
            fh.write(sim.advance_ndjson(t))
            if t > config.start + config.days * DAY + DAY:
                break
    paths["truth"].write_bytes(orjson.dumps(sim.truth(), option=orjson.OPT_INDENT_2) + b"\n")
    return paths
