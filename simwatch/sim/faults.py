"""Fault kinds and their spec: what ``simwatch simulate`` can inject, with ground truth.

Group faults hit every SIM of a group (a partner, an APN, a country, an APN in a
country, an APN on one partner); per-SIM faults hit a number of SIMs picked at random.
``parse_fault`` reads the command line's ``--fault "kind:key=value,..."`` syntax.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from simwatch.core.timeutil import format_rfc3339, parse_rfc3339
from simwatch.sim.catalogue import DAY, HOUR, MINUTE

if TYPE_CHECKING:
    from collections.abc import Mapping

GROUP_KINDS: frozenset[str] = frozenset(
    {
        "partner_outage",
        "partial_blackhole",
        "apn_outage",
        "country_outage",
        "apn_country",
        "apn_partner",
    }
)
SIM_KINDS: frozenset[str] = frozenset({"data_cap", "wrong_apn", "session_flapping"})
FAULT_KINDS: frozenset[str] = GROUP_KINDS | SIM_KINDS
REQUIRED_DIMS: Mapping[str, tuple[str, ...]] = {
    "partner_outage": ("partner",),
    "partial_blackhole": ("partner",),
    "apn_outage": ("apn",),
    "country_outage": ("country",),
    "apn_country": ("apn", "country"),
    "apn_partner": ("apn", "partner"),  # one partner's gateway for an APN
}
SILENCING = frozenset({"partner_outage", "country_outage"})
CONNECT_BLOCKING = frozenset({"apn_outage", "apn_country", "apn_partner", "data_cap", "wrong_apn"})


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """A fault to inject: ``kind`` from FAULT_KINDS, active in ``[start, end)`` (epoch s).

    Group faults name their group in ``dims`` (``{"partner": "26202"}``,
    ``{"apn": "meters.acme", "country": "DE"}``); per-SIM faults give a SIM count in ``sims``.
    """

    kind: str
    start: float
    end: float
    dims: Mapping[str, str] = field(default_factory=dict)
    fraction: float = 1.0
    steer_fraction: float = 0.3
    sims: int = 0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; known: {sorted(FAULT_KINDS)}")
        if self.end <= self.start:
            raise ValueError(f"fault {self.kind} ends before it starts")
        missing = [k for k in REQUIRED_DIMS.get(self.kind, ()) if k not in self.dims]
        if missing:
            raise ValueError(f"fault {self.kind} needs {', '.join(missing)}")
        if self.kind in SIM_KINDS and self.sims <= 0:
            raise ValueError(f"fault {self.kind} needs sims > 0")
        if not (0.0 <= self.fraction <= 1.0 and 0.0 <= self.steer_fraction <= 1.0):
            raise ValueError("fraction and steer_fraction must be within [0, 1]")

    @property
    def group(self) -> bool:
        return self.kind in GROUP_KINDS

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "kind": self.kind,
            "dims": dict(self.dims),
            "start": format_rfc3339(self.start),
            "end": format_rfc3339(self.end),
        }
        if self.kind == "partial_blackhole":
            out["fraction"] = self.fraction
        if self.kind == "partner_outage":
            out["steer_fraction"] = self.steer_fraction
        if self.kind in SIM_KINDS:
            out["sims"] = self.sims
        return out


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_UNITS = {"": 1.0, "s": 1.0, "m": MINUTE, "h": HOUR, "d": DAY}


def parse_duration(text: str) -> float:
    """``90s``, ``15m``, ``3h``, ``1.5d`` (plain numbers are seconds)."""
    m = _DURATION.match(text.strip())
    if m is None:
        raise ValueError(f"bad duration {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_fault(text: str) -> FaultSpec:
    """``kind:key=value,...``; keys start, end or duration, fraction, steer_fraction, sims,
    anything else is a dimension (partner, apn, country)."""
    kind, _, rest = text.partition(":")
    params: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"fault parameter without '=': {part!r}")
        params[key.strip()] = value.strip()
    if "start" not in params:
        raise ValueError("fault needs start=RFC3339")
    start = parse_rfc3339(params.pop("start"))
    if "end" in params:
        end = parse_rfc3339(params.pop("end"))
        params.pop("duration", None)
    else:
        end = start + parse_duration(params.pop("duration", "3h"))
    kind = kind.strip()
    default_fraction = "0.3" if kind == "partial_blackhole" else "1.0"
    fraction = float(params.pop("fraction", default_fraction))
    steer = float(params.pop("steer_fraction", "0.3"))
    sims = int(params.pop("sims", "0"))
    return FaultSpec(kind, start, end, params, fraction, steer, sims)
