"""One simulated device: its mutable state and the happening codes of its state machine."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from simwatch.sim.catalogue import PROFILES
from simwatch.sim.faults import CONNECT_BLOCKING, SILENCING

if TYPE_CHECKING:
    from simwatch.sim.catalogue import Partner, SimCard

# Happening codes of the per-SIM state machine.
REPORT = 0
INTERIM = 1
RESET = 2
CONNECT = 3
RESELECT = 4
DETACH = 5
REATTACH = 6
GAP_START = 7
GAP_END = 8
GAP_TIMEOUT = 9
DEATH = 10
FAULT_START = 11
FAULT_END = 12
STEER = 13
APN_DROP = 14
FLAP = 15

# Data regimes: what the platform makes of a device's reports (FORMATS.md usage records).
R1 = 0  # one usage record per report (application heartbeats, MQTT, files)
R2 = 1  # usage aggregated over fixed windows, delivered minutes after the window closes
R3 = 2  # session level: usage at session close, or every 15 min above 100 kB while open
REGIME_NAMES = ("r1", "r2", "r3")

# Share of devices whose firmware re-opens its data session after failed sends, and after
# how many. Fixed before any scenario was scored: most cellular modules' reference
# firmware reconnects its PDP context after a few unacknowledged sends.
WATCHDOG_SHARE = 0.6
WATCHDOG_FAILS = 2

RESELECT_PER_DAY = 0.03
DETACH_PER_DAY = 0.02
SEQ_BASE = 1 << 40  # sequence numbers of non-report happenings (reports use their index)

Happening = tuple[float, int, int, int, int]


class Device:
    """Mutable per-SIM state (static attributes copied from its card for speed)."""

    __slots__ = (
        "acc_attrs",
        "acc_bucket",
        "acc_down",
        "acc_up",
        "apn",
        "bad_apn",
        "blackholed",
        "block",
        "capped",
        "card",
        "carry",
        "country",
        "dead",
        "detached",
        "fails",
        "faults",
        "home",
        "iccid",
        "in_gap",
        "mcc",
        "missed_down",
        "missed_since",
        "missed_up",
        "mnc",
        "month_bytes",
        "month_end",
        "partner",
        "plan",
        "r2_lag",
        "r2_window",
        "r3_down",
        "r3_since",
        "r3_up",
        "rat",
        "regime",
        "sending",
        "sess_down",
        "sess_id",
        "sess_up",
        "silenced",
        "token",
        "visible",
        "watchdog",
        "window",
    )

    def __init__(self, card: SimCard, partner: Partner, session_id: str) -> None:
        self.card = card
        self.iccid = card.iccid
        self.apn = card.apn
        self.capped = card.cap_bytes is not None
        self.country = card.country
        self.rat = card.rat
        self.window = PROFILES[card.profile].window
        self.home = card.home_partner
        self.partner = card.home_partner
        self.mcc = partner.mcc
        self.mnc = partner.mnc
        self.sess_id: str | None = session_id
        self.sess_up = 0
        self.sess_down = 0
        self.month_bytes = 0
        self.month_end = -math.inf
        self.dead = False
        self.in_gap = False
        self.detached = False
        self.faults: dict[int, str] = {}
        self.silenced = False
        self.blackholed = False
        self.block: str | None = None
        self.visible = True
        self.sending = True
        self.token = 0
        self.bad_apn = ""
        # Store and forward: what the device could not send while it had no data
        # session (outage, coverage gap, rejected session) goes out once it has one.
        self.missed_up = 0
        self.missed_down = 0
        self.missed_since: float | None = None
        self.carry: list[Happening] = []
        # Data regime (set by the fleet simulator) and its delivery state.
        self.regime = R1
        self.r2_window = 900.0
        self.r2_lag = 300.0
        self.acc_bucket = -1.0  # R2: start of the open window, -1 when none
        self.acc_attrs: tuple[str, str, str, str] = ("", "", "", "")  # at its last report
        self.acc_up = 0
        self.acc_down = 0
        self.r3_since = 0.0  # R3: start of what the next usage record covers
        self.r3_up = 0
        self.r3_down = 0
        # Firmware that tears its data session down after failed sends (a black hole
        # shows as session churn) and its count of failed sends.
        self.watchdog = False
        self.fails = 0
        self.plan: list[Happening] = []

    def refresh(self) -> None:
        kinds = set(self.faults.values())
        self.silenced = bool(kinds & SILENCING)
        self.blackholed = "partial_blackhole" in kinds
        blocking = sorted(kinds & CONNECT_BLOCKING)
        self.block = blocking[0] if blocking else None
        self.visible = not (self.dead or self.in_gap or self.silenced)
        self.sending = (
            self.visible and self.sess_id is not None and not self.detached and not self.blackholed
        )


def next_month_start(t: float) -> float:
    d = datetime.fromtimestamp(t, tz=UTC)
    year, month = (d.year + 1, 1) if d.month == 12 else (d.year, d.month + 1)
    return datetime(year, month, 1, tzinfo=UTC).timestamp()
