"""Static catalogue and fleet planning for ``simwatch simulate``.

Countries with their real roaming partners (MCC/MNC), device profiles (report rhythms and
payload sizes), customers (device type, allowed APNs, plan, cap, footprint), and the
function that draws a fleet of SIM cards from them. Pure: everything comes from the
random generator passed in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DAY = 86400.0
HOUR = 3600.0
MINUTE = 60.0


@dataclass(frozen=True, slots=True)
class Partner:
    """A visited network: ``mcc`` + ``mnc`` digits as given (``310`` + ``260``)."""

    mcc: str
    mnc: str
    name: str
    country: str

    @property
    def code(self) -> str:
        return self.mcc + self.mnc


@dataclass(frozen=True, slots=True)
class Country:
    code: str
    utc_offset_h: float  # November (winter time)
    weight: float  # share of "global" customers' devices
    partners: tuple[Partner, ...]
    partner_weights: tuple[float, ...]  # how often each is a SIM's home partner


def _country(
    code: str, offset: float, weight: float, partners: list[tuple[str, str, str, float]]
) -> Country:
    return Country(
        code=code,
        utc_offset_h=offset,
        weight=weight,
        partners=tuple(Partner(mcc, mnc, name, code) for mcc, mnc, name, _ in partners),
        partner_weights=tuple(w for *_, w in partners),
    )


COUNTRIES: tuple[Country, ...] = (
    _country(
        "DE",
        1,
        0.22,
        [
            ("262", "01", "Telekom", 0.5),
            ("262", "02", "Vodafone", 0.3),
            ("262", "03", "Telefonica", 0.2),
        ],
    ),
    _country(
        "FR",
        1,
        0.10,
        [("208", "01", "Orange", 0.5), ("208", "10", "SFR", 0.3), ("208", "20", "Bouygues", 0.2)],
    ),
    _country(
        "GB",
        0,
        0.10,
        [
            ("234", "10", "O2", 0.35),
            ("234", "15", "Vodafone", 0.3),
            ("234", "20", "Three", 0.1),
            ("234", "30", "EE", 0.25),
        ],
    ),
    _country(
        "ES",
        1,
        0.07,
        [
            ("214", "01", "Vodafone", 0.35),
            ("214", "03", "Orange", 0.3),
            ("214", "07", "Movistar", 0.35),
        ],
    ),
    _country(
        "IT",
        1,
        0.07,
        [
            ("222", "01", "TIM", 0.45),
            ("222", "10", "Vodafone", 0.35),
            ("222", "88", "WindTre", 0.2),
        ],
    ),
    _country(
        "NL",
        1,
        0.06,
        [("204", "04", "Vodafone", 0.4), ("204", "08", "KPN", 0.4), ("204", "16", "Odido", 0.2)],
    ),
    _country(
        "PL",
        1,
        0.05,
        [("260", "01", "Plus", 0.4), ("260", "02", "T-Mobile", 0.3), ("260", "03", "Orange", 0.3)],
    ),
    _country("SE", 1, 0.04, [("240", "01", "Telia", 0.6), ("240", "07", "Tele2", 0.4)]),
    _country("AT", 1, 0.03, [("232", "01", "A1", 0.6), ("232", "03", "Magenta", 0.4)]),
    _country("CH", 1, 0.03, [("228", "01", "Swisscom", 0.7), ("228", "02", "Sunrise", 0.3)]),
    _country(
        "US",
        -5,
        0.10,
        [
            ("310", "260", "T-Mobile", 0.4),
            ("310", "410", "AT&T", 0.45),
            ("311", "480", "Verizon", 0.15),
        ],
    ),
    _country("CA", -5, 0.03, [("302", "720", "Rogers", 0.6), ("302", "610", "Bell", 0.4)]),
    _country("BR", -3, 0.04, [("724", "05", "Claro", 0.6), ("724", "06", "Vivo", 0.4)]),
    _country("JP", 9, 0.03, [("440", "10", "Docomo", 1.0)]),
    _country("AU", 10, 0.03, [("505", "01", "Telstra", 0.7), ("505", "03", "Vodafone", 0.3)]),
)


@dataclass(frozen=True, slots=True)
class Profile:
    """A device rhythm: one report every ``period`` seconds (jittered), payload sizes in bytes."""

    name: str
    period: float
    window: float  # usage record window length
    jitter: float  # max delay added to every nominal report time
    up: float  # mean bytes sent per report
    down: float  # mean bytes received per report
    daytime: bool = False  # reports only between ~07:00 and ~19:00 local time
    daily: bool = False  # once a day at a device-specific local hour
    events_per_day: float = 0.0  # extra event-driven reports (alarms)
    event_up: float = 0.0
    event_down: float = 0.0
    period_spread: float = 0.0  # per-device period varies by +- this share (heartbeats)


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("tracker_1m", 60.0, 60.0, 5.0, 420.0, 90.0),
        Profile("telematics_5m", 300.0, 300.0, 20.0, 1500.0, 350.0),
        Profile("meter_15m", 900.0, 900.0, 60.0, 260.0, 60.0),
        Profile("sensor_1h", 3600.0, 3600.0, 90.0, 700.0, 180.0),
        Profile("daily", DAY, 600.0, 240.0, 45000.0, 12000.0, daily=True),
        Profile("daytime_15m", 900.0, 900.0, 60.0, 1400.0, 500.0, daytime=True),
        Profile(
            "alarm_panel",
            4 * HOUR,
            60.0,
            90.0,
            180.0,
            60.0,
            events_per_day=2.0,
            event_up=1800.0,
            event_down=400.0,
            period_spread=0.25,
        ),
    )
}

MB = 1_000_000


@dataclass(frozen=True, slots=True)
class Customer:
    name: str
    profile: str
    apns: tuple[str, ...]
    plan: str
    cap_bytes: int | None
    weight: float  # share of the fleet
    rats: tuple[str, ...]
    countries: tuple[tuple[str, float], ...] = ()  # empty: worldwide (COUNTRIES weights)


CUSTOMERS: tuple[Customer, ...] = (
    Customer(
        "trackr", "tracker_1m", ("iot.trackr",), "track-100mb", 100 * MB, 0.85, ("LTE-M", "LTE")
    ),
    Customer(
        "fleetlink",
        "telematics_5m",
        ("fleet.link", "internet.iot"),
        "fleet-100mb",
        100 * MB,
        4.0,
        ("LTE", "LTE-M"),
        (("DE", 0.3), ("FR", 0.2), ("PL", 0.2), ("NL", 0.15), ("IT", 0.15)),
    ),
    Customer(
        "acme-meters",
        "meter_15m",
        ("meters.acme",),
        "meter-5mb",
        5 * MB,
        12.0,
        ("NB-IoT", "LTE-M"),
        (("DE", 0.6), ("AT", 0.2), ("NL", 0.2)),
    ),
    Customer(
        "gridsense",
        "meter_15m",
        ("grid.sense", "internet.iot"),
        "meter-5mb",
        5 * MB,
        7.0,
        ("NB-IoT", "LTE-M", "2G"),
        (("GB", 0.5), ("SE", 0.3), ("NL", 0.2)),
    ),
    Customer(
        "aquaread",
        "meter_15m",
        ("meters.aqua",),
        "meter-pool",
        None,
        6.0,
        ("NB-IoT", "2G"),
        (("FR", 0.5), ("ES", 0.3), ("IT", 0.2)),
    ),
    Customer(
        "agrisense", "sensor_1h", ("internet.iot",), "iot-10mb", 10 * MB, 5.0, ("LTE-M", "2G")
    ),
    Customer("coldchain", "sensor_1h", ("cold.chain",), "iot-10mb", 10 * MB, 6.0, ("LTE-M", "LTE")),
    Customer(
        "parkwise",
        "sensor_1h",
        ("internet.iot",),
        "iot-pool",
        None,
        4.0,
        ("NB-IoT",),
        (("GB", 0.4), ("ES", 0.3), ("IT", 0.3)),
    ),
    Customer(
        "envmon",
        "sensor_1h",
        ("env.mon", "internet.iot"),
        "iot-10mb",
        10 * MB,
        5.0,
        ("NB-IoT", "LTE-M"),
    ),
    Customer(
        "liftwatch",
        "sensor_1h",
        ("lift.watch",),
        "iot-pool",
        None,
        5.0,
        ("LTE", "2G"),
        (("DE", 0.4), ("CH", 0.2), ("AT", 0.2), ("FR", 0.2)),
    ),
    Customer(
        "vendomat",
        "daily",
        ("m2m.vendomat",),
        "daily-20mb",
        20 * MB,
        8.0,
        ("LTE", "2G"),
        (("DE", 0.4), ("FR", 0.2), ("IT", 0.2), ("ES", 0.2)),
    ),
    Customer("smartbins", "daily", ("internet.iot",), "iot-pool", None, 6.0, ("NB-IoT", "LTE-M")),
    Customer("retailpos", "daytime_15m", ("pos.retail",), "pos-50mb", 50 * MB, 8.0, ("LTE",)),
    Customer(
        "buildsite",
        "daytime_15m",
        ("internet.iot",),
        "iot-pool",
        None,
        3.0,
        ("LTE", "LTE-M"),
        (("US", 0.5), ("CA", 0.2), ("AU", 0.3)),
    ),
    Customer(
        "evcharge",
        "daytime_15m",
        ("ev.charge", "internet.iot"),
        "ev-50mb",
        50 * MB,
        3.0,
        ("LTE",),
        (("NL", 0.3), ("DE", 0.3), ("SE", 0.2), ("GB", 0.2)),
    ),
    Customer(
        "securepanel",
        "alarm_panel",
        ("secure.panel",),
        "alarm-5mb",
        5 * MB,
        7.0,
        ("LTE-M", "2G"),
        (("DE", 0.3), ("GB", 0.3), ("US", 0.2), ("FR", 0.2)),
    ),
    Customer(
        "firealert", "alarm_panel", ("alarm.fire",), "alarm-5mb", 5 * MB, 4.0, ("LTE-M", "NB-IoT")
    ),
    Customer(
        "medialert",
        "alarm_panel",
        ("internet.iot",),
        "iot-pool",
        None,
        3.0,
        ("LTE", "LTE-M"),
        (("US", 0.4), ("CA", 0.2), ("BR", 0.2), ("JP", 0.2)),
    ),
)

# APNs a misconfigured device may try (none of them allowed for anybody except by chance).
ROGUE_APNS: tuple[str, ...] = ("internet", "web.iot", "m2m.default", "iot.test")

STATUSES: tuple[tuple[str, float], ...] = (
    ("active", 0.97),
    ("suspended", 0.012),
    ("test", 0.01),
    ("deactivated", 0.008),
)
VIP_SHARE = 0.02


@dataclass(frozen=True, slots=True)
class SimCard:
    """One SIM of the fleet: inventory attributes and its device's rhythm."""

    index: int
    iccid: str
    imsi: str
    customer: str
    apns: tuple[str, ...]  # allowed (inventory)
    apn: str  # the one the device uses
    plan: str
    cap_bytes: int | None
    status: str
    tags: tuple[str, ...]
    profile: str
    country: str
    home_partner: int  # index into all_partners()
    rat: str
    period: float
    phase: float  # nominal report times are phase + k * period (epoch seconds)
    day_start: float  # daytime devices: local seconds of day
    day_end: float
    interim_phase: float
    reset_jitter: float


def all_partners() -> tuple[Partner, ...]:
    return tuple(p for c in COUNTRIES for p in c.partners)


def luhn_check_digit(body: str) -> str:
    """The Luhn digit that makes ``body + digit`` valid."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def luhn_valid(number: str) -> bool:
    return number.isdigit() and luhn_check_digit(number[:-1]) == number[-1]


# Two SIM batches: 19-digit ICCIDs (issuer 49/027) and 20-digit ones (issuer 31/44).
_BATCHES: tuple[tuple[str, int, str], ...] = (
    ("8949027", 11, "90128"),
    ("89314400", 11, "20404"),
)


def build_fleet(n: int, rng: np.random.Generator) -> list[SimCard]:
    """Draw ``n`` SIM cards (deterministic for the generator's state)."""
    partners = all_partners()
    partner_index = {p.code: i for i, p in enumerate(partners)}
    countries = {c.code: c for c in COUNTRIES}
    # Customers get their exact share of the fleet (largest remainders), in random order:
    # a few SIMs more or less of the every-minute trackers would swing the volume a lot.
    cust_w = np.array([c.weight for c in CUSTOMERS])
    quota = cust_w / cust_w.sum() * n
    counts = np.floor(quota).astype(np.int64)
    short = n - int(counts.sum())
    counts[np.argsort(counts - quota, kind="stable")[:short]] += 1
    cust_idx = rng.permutation(np.repeat(np.arange(len(CUSTOMERS)), counts))
    glob_codes = [c.code for c in COUNTRIES]
    glob_w = np.array([c.weight for c in COUNTRIES])
    glob_w = glob_w / glob_w.sum()
    status_names = [s for s, _ in STATUSES]
    status_w = np.array([w for _, w in STATUSES])
    statuses = rng.choice(len(STATUSES), size=n, p=status_w / status_w.sum())
    vip = rng.random(n) < VIP_SHARE
    batch = (rng.random(n) < 0.3).astype(int)
    serial_step = 97
    serials = 10_000_000 + np.arange(n) * serial_step + rng.integers(0, serial_step, n)
    cards: list[SimCard] = []
    for i in range(n):
        cust = CUSTOMERS[int(cust_idx[i])]
        prof = PROFILES[cust.profile]
        if cust.countries:
            codes = [c for c, _ in cust.countries]
            w = np.array([x for _, x in cust.countries])
            country = codes[int(rng.choice(len(codes), p=w / w.sum()))]
        else:
            country = glob_codes[int(rng.choice(len(glob_codes), p=glob_w))]
        ctry = countries[country]
        pw = np.array(ctry.partner_weights)
        home = ctry.partners[int(rng.choice(len(ctry.partners), p=pw / pw.sum()))]
        apn = cust.apns[0] if len(cust.apns) == 1 or rng.random() < 0.8 else cust.apns[1]
        rat = cust.rats[int(rng.integers(len(cust.rats)))]
        period = prof.period
        if prof.period_spread:
            period = round(period * (1 + prof.period_spread * (2 * rng.random() - 1)) / 60) * 60
        offset = ctry.utc_offset_h * HOUR
        if prof.daily:
            local = float(rng.integers(1, 23)) * HOUR + float(rng.integers(0, 60)) * 60
            phase = (local - offset) % DAY
        else:
            phase = float(rng.random()) * period
        prefix, width, imsi_prefix = _BATCHES[int(batch[i])]
        body = prefix + str(int(serials[i])).zfill(width)
        iccid = body + luhn_check_digit(body)
        imsi = imsi_prefix + str(int(serials[i])).zfill(10)
        cards.append(
            SimCard(
                index=i,
                iccid=iccid,
                imsi=imsi,
                customer=cust.name,
                apns=cust.apns,
                apn=apn,
                plan=cust.plan,
                cap_bytes=cust.cap_bytes,
                status=status_names[int(statuses[i])],
                tags=("vip",) if vip[i] else (),
                profile=prof.name,
                country=country,
                home_partner=partner_index[home.code],
                rat=rat,
                period=period,
                phase=phase,
                day_start=(6.75 + 0.5 * float(rng.random())) * HOUR,
                day_end=(18.75 + 0.5 * float(rng.random())) * HOUR,
                interim_phase=float(rng.random()) * 8 * HOUR,
                reset_jitter=float(rng.random()) * 90.0,
            )
        )
    return cards


INVENTORY_COLUMNS: tuple[str, ...] = (
    "iccid",
    "imsi",
    "customer",
    "apn",
    "plan",
    "data_cap_bytes",
    "status",
    "tags",
    "device",
)


def inventory_csv(cards: list[SimCard]) -> str:
    """The inventory as FORMATS.md CSV (plus a ``device`` column, kept as an extra attribute)."""
    lines = [",".join(INVENTORY_COLUMNS)]
    lines.extend(
        ",".join(
            (
                c.iccid,
                c.imsi,
                c.customer,
                ";".join(c.apns),
                c.plan,
                "" if c.cap_bytes is None else str(c.cap_bytes),
                c.status,
                ";".join(c.tags),
                c.profile,
            )
        )
        for c in cards
    )
    return "\n".join(lines) + "\n"
