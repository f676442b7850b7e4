"""The Alertmanager sink: open incidents as alerts, posted to every replica's v2 API.

What is sent (docs/alerts.md is the reference):

- a group incident is an alert ``alertname=SimwatchGroupIncident, severity=page`` with
  one label per dimension of the incident (``partner=26202``...), ``incident`` and
  ``group_incident`` (both its id), and annotations a person can act on (affected/total,
  baseline, since when, top customers, runbook, dashboard);
- a single tagged SIM that is silent (an incident of kind ``sim``, when
  ``settings.tickets``) is ``alertname=SimwatchSimSilent, severity=ticket`` with
  ``iccid``, the SIM's dimensions, and ``group_incident=<id>`` while an open group
  incident covers the SIM, so an inhibit rule ``equal: [group_incident]`` mutes it.

Alert identity is the label set: labels hold only stable values (ids, dimension values,
static labels), never counts or times, so the same incident sent again (a re-send, a
restart with checkpointed ids) is the same alert and never pages twice. When an
alert's labels change (a group incident widens, a ticket becomes covered) the old label
set is resolved and the new one fires.

The two halves:

- ``on_cycle`` rebuilds the desired set of firing alerts (a dict keyed by label set)
  when the cycle changed an incident, and queues a resolved alert (``endsAt`` = now on
  the sink clock) for every replica when an alert leaves the set. Annotations (with the
  top customers, a numpy pass over the group's SIMs) are computed only then. Nothing is
  sent before the first live cycle: incidents opened and resolved within the backlog
  replayed at start are never sent; those still open at its end are sent once live.
- ``run`` keeps one delivery task per replica: it posts the firing alerts (``endsAt`` =
  sink clock + ``ends_at_after_s``) and the resolved ones that replica has not taken
  yet, at once after a change and every ``resend_interval_s``. A failing replica is
  retried alone with capped jittered backoff; the others are not held up. Resolved
  alerts wait per replica (at most ``MAX_PENDING_RESOLVED``, oldest dropped and
  counted) until that replica takes them or the alert fires again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import re
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final
from urllib.parse import quote, urlencode

import aiohttp
import numpy as np
import orjson

from simwatch.core import groups
from simwatch.core.evaluate import group_failing
from simwatch.shell.backoff import Backoff
from simwatch.shell.logs import FailureLog
from simwatch.shell.sink_contract import Cycle, SinkStats

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from simwatch.core.engine import Engine
    from simwatch.core.evaluate import Evaluation
    from simwatch.core.incidents import Incident
    from simwatch.shell.settings import AlertmanagerSinkSettings

__all__ = [
    "GROUP_ALERTNAME",
    "MAX_PENDING_RESOLVED",
    "SIM_ALERTNAME",
    "Alert",
    "AlertmanagerSink",
    "format_time",
    "label_name",
    "top_customers",
]

log = logging.getLogger(__name__)

GROUP_ALERTNAME: Final = "SimwatchGroupIncident"
SIM_ALERTNAME: Final = "SimwatchSimSilent"
MAX_PENDING_RESOLVED: Final = 10_000  # resolved alerts kept per replica until delivered
MAX_ALERTS_PER_POST: Final = 1000  # a larger set is posted in several requests
TOP_CUSTOMERS: Final = 3
# Grafana dashboard paths (grafana/build.py): a group's SIMs in the drill-down, with the
# incident's dims as its apn/country/partner variables; one SIM by its iccid variable
DASHBOARD_GROUP: Final = "/d/simwatch-sim"  # Grafana finds a dashboard by uid alone
DASHBOARD_SIM: Final = "/d/simwatch-sim"
_DASHBOARD_LEAD_S: Final = 3600.0  # dashboard links start this long before the incident
_LABEL_NAME: Final = re.compile(r"[^A-Za-z0-9_]")
_DIM_NAMES: Final = {"apn": "APN", "country": "country", "partner": "partner"}
_REASONS: Final = {
    "silent": "silent beyond its usual rhythm",
    "late": "late against its usual rhythm",
    "never_seen": "never seen",
    "wrong_apn": "uses an APN it is not allowed",
    "auth_failure": "authentication failures",
    "pdp_reject": "PDP context rejects",
    "data_cap": "monthly data cap reached",
    "session_churn": "sessions dropping again and again",
}

Fingerprint = tuple[tuple[str, str], ...]
Json = dict[str, object]


def label_name(name: str) -> str:
    """A valid Alertmanager label name: ``[A-Za-z_][A-Za-z0-9_]*``."""
    clean = _LABEL_NAME.sub("_", name) or "_"
    return f"_{clean}" if clean[0].isdigit() else clean


def format_time(ts: float) -> str:
    """RFC 3339 with milliseconds, UTC (``2026-11-18T10:32:00.250Z``)."""
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def _when(ts: float) -> str:
    return datetime.fromtimestamp(round(ts), tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def _duration(seconds: float) -> str:
    minutes = max(0, round(seconds / 60))
    if minutes < 90:
        return f"{minutes} min"
    hours = minutes / 60
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"


def _percent(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "0%"


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert as Alertmanager gets it; ``ends_at`` is None while it fires."""

    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: float
    generator_url: str
    ends_at: float | None = None

    def to_json(self, now: float, ends_at_after_s: float) -> Json:
        """The v2 ``postableAlert``: a firing one ends ``ends_at_after_s`` after ``now``
        unless re-sent. ``startsAt`` never lies ahead of ``now`` or after ``endsAt``
        (Alertmanager refuses an alert that ends before it starts)."""
        ends_at = now + ends_at_after_s if self.ends_at is None else self.ends_at
        return {
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "startsAt": format_time(min(self.starts_at, now, ends_at)),
            "endsAt": format_time(ends_at),
            "generatorURL": self.generator_url,
        }


@dataclass(slots=True)
class _Replica:
    """One Alertmanager replica's delivery state."""

    url: str  # base URL without the trailing slash
    backoff: Backoff  # between failed posts
    failure: FailureLog  # logged when posting starts failing and when it works again
    resolved: OrderedDict[Fingerprint, Alert] = field(default_factory=OrderedDict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    sent_version: int = -1  # the desired-set version this replica last took
    next_resend: float = 0.0  # loop time of the next re-send of the firing alerts
    up: bool = False
    error: str | None = None  # the current failure

    @property
    def endpoint(self) -> str:
        return f"{self.url}/api/v2/alerts"


class AlertmanagerSink:
    """Open incidents to Alertmanager's v2 API (see the module docstring)."""

    def __init__(
        self,
        settings: AlertmanagerSinkSettings,
        *,
        simwatch_url: str,
        console: bool = False,
        clock: Callable[[], float] = time.time,
        session: aiohttp.ClientSession | None = None,
        rng: random.Random | None = None,
    ) -> None:
        """``console``: the console is served (``/ui/``): each alert links its page there
        (``console_url``). ``rng``: the retry jitter (seeded in tests)."""
        self.settings = settings
        self.stats = SinkStats(name="alertmanager", kind="alertmanager")
        self.clock = clock
        base = str(settings.external_url) if settings.external_url is not None else simwatch_url
        self.simwatch_url = base.rstrip("/")
        self.console_url = f"{self.simwatch_url}/ui" if console else None
        self.grafana_url = str(settings.grafana_url).rstrip("/")
        self.runbook_url = str(settings.runbook_url)
        self.static_labels = {label_name(k): v for k, v in settings.labels.items() if v}
        self._session = session
        self._own_session = session is None
        jitter = rng if rng is not None else random.Random()  # noqa: S311 - jitter, not crypto
        self._replicas = [
            _Replica(
                url,
                Backoff(settings.retry_min_s, settings.retry_max_s, jitter),
                FailureLog(log, f"alertmanager {url}"),
            )
            for url in (str(u).rstrip("/") for u in settings.urls)
        ]
        self._firing: dict[Fingerprint, Alert] = {}
        self._version = 0
        self._live = False  # a live cycle was seen: alerts may be sent
        self._refresh = False  # rebuild at the next cycle whatever changed (``refresh``)

    # ---- the desired alert set (on the loop, after each cycle) -------------------------

    @property
    def firing(self) -> list[Alert]:
        """The alerts firing now (a copy)."""
        return list(self._firing.values())

    def pending_resolved(self, replica: int = 0) -> list[Alert]:
        """Resolved alerts the replica (index into ``settings.urls``) has not taken yet."""
        return list(self._replicas[replica].resolved.values())

    def on_cycle(self, cycle: Cycle) -> None:
        if not cycle.live and not self._live:
            return  # the backlog at start: what is still open at its end is sent once live
        if not self._live:  # the first live cycle: send what is open, or an empty post
            self._live = True  # (which shows at once whether each replica answers)
            self._version += 1
            for replica in self._replicas:
                replica.wake.set()
        elif not cycle.result.changes and not self._refresh:
            return
        self._refresh = False
        changed = {c.incident.id for c in cycle.result.changes if c.kind != "resolved"}
        self._rebuild(cycle.engine, cycle.result.evaluation, changed)

    # ---- a cluster's leader changes (service.cluster) --------------------------------------

    def refresh(self) -> None:
        """Rebuild the desired alerts at the next cycle even without incident changes (a
        node that became the cluster's leader carries open group incidents on)."""
        self._refresh = True

    def drop_groups(self) -> None:
        """Forget the group pages without resolving them (a node no longer the leader:
        the new leader keeps sending the same alerts)."""
        firing = {
            fp: a for fp, a in self._firing.items() if a.labels.get("alertname") != GROUP_ALERTNAME
        }
        if len(firing) != len(self._firing):
            self._firing = firing
            self._version += 1
            for replica in self._replicas:
                replica.wake.set()

    def _rebuild(self, engine: Engine, evaluation: Evaluation, changed: set[str]) -> None:
        desired: dict[Fingerprint, Alert] = {}
        # Pages first: Alertmanager hands a post's alerts on in order, so its inhibitor
        # knows a page before it meets the tickets that page mutes.
        incidents = sorted(engine.incidents.open.values(), key=lambda i: i.kind != "group")
        for incident in incidents:
            if incident.kind == "group":
                labels = self._group_labels(incident)
            elif self.settings.tickets and incident.iccid is not None:
                labels = self._ticket_labels(engine, incident)
            else:
                continue
            fingerprint = tuple(sorted(labels.items()))
            alert = self._firing.get(fingerprint)
            if alert is None or incident.id in changed:
                alert = self._alert(engine, evaluation, incident, labels, alert)
            desired[fingerprint] = alert
        now = self.clock()
        modified = desired.keys() != self._firing.keys() or any(
            desired[fp] is not alert for fp, alert in self._firing.items() if fp in desired
        )
        for fingerprint, alert in self._firing.items():
            if fingerprint not in desired:
                resolved = replace(alert, ends_at=now)
                for replica in self._replicas:
                    self._queue_resolved(replica, fingerprint, resolved)
        for fingerprint in desired.keys() - self._firing.keys():
            for replica in self._replicas:  # firing again: supersedes a pending resolve
                replica.resolved.pop(fingerprint, None)
        self._firing = desired
        if modified:
            self._version += 1
            for replica in self._replicas:
                replica.wake.set()
        self._count_buffered()

    def _queue_resolved(self, replica: _Replica, fingerprint: Fingerprint, alert: Alert) -> None:
        replica.resolved.pop(fingerprint, None)
        replica.resolved[fingerprint] = alert
        while len(replica.resolved) > MAX_PENDING_RESOLVED:
            replica.resolved.popitem(last=False)
            self.stats.dropped += 1

    def _count_buffered(self) -> None:
        self.stats.buffered = sum(
            len(r.resolved) + (len(self._firing) if r.sent_version != self._version else 0)
            for r in self._replicas
        )

    # ---- labels and annotations ----------------------------------------------------------

    def _group_labels(self, incident: Incident) -> dict[str, str]:
        labels = dict(self.static_labels)
        labels.update({label_name(k): v for k, v in incident.dims.items() if v})
        labels.update(
            alertname=GROUP_ALERTNAME,
            severity="page",
            incident=incident.id,
            group_incident=incident.id,
        )
        _mark_maintenance(labels, incident)
        return labels

    def _ticket_labels(self, engine: Engine, incident: Incident) -> dict[str, str]:
        iccid = incident.iccid or ""
        labels = dict(self.static_labels)
        row = engine.state.row(iccid)
        if row >= 0:
            labels.update({label_name(k): v for k, v in engine.sim_dims(row).items() if v})
            group = engine.incident_of(row)
            if group is not None:
                labels["group_incident"] = group.id
        labels.update(alertname=SIM_ALERTNAME, severity="ticket", incident=incident.id)
        labels["iccid"] = iccid
        _mark_maintenance(labels, incident)
        return labels

    def _alert(
        self,
        engine: Engine,
        evaluation: Evaluation,
        incident: Incident,
        labels: dict[str, str],
        previous: Alert | None,
    ) -> Alert:
        if incident.kind == "group":
            annotations = self._group_annotations(engine, evaluation, incident)
            starts_at = incident.opened_at
        else:
            annotations = self._ticket_annotations(engine, incident, labels)
            # A ticket's label set starts when this sink first has it (a ticket that an
            # incident just covered is a new label set), never before the ticket opened:
            # Alertmanager then holds it for group_wait instead of notifying at once,
            # time enough to learn of the page that mutes it.
            starts_at = max(incident.opened_at, self.clock())
            if previous is not None:
                starts_at = previous.starts_at
        return Alert(
            labels=labels,
            annotations=annotations,
            starts_at=starts_at,
            generator_url=f"{self.simwatch_url}/api/v1/incidents/{quote(incident.id)}",
        )

    def _scope(self, engine: Engine, dims: Mapping[str, str]) -> str:
        if not dims:
            return "the whole fleet"
        parts = []
        for dim, value in dims.items():
            shown = engine.partner_label(value) if dim == "partner" else value
            parts.append(f"{_DIM_NAMES.get(dim, dim)} {shown}")
        return ", ".join(parts)

    def _dashboard(self, path: str, since: float, variables: Mapping[str, str]) -> str:
        query = {f"var-{k}": v for k, v in variables.items()}
        query |= {"from": str(int((since - _DASHBOARD_LEAD_S) * 1000)), "to": "now"}
        return f"{self.grafana_url}{path}?{urlencode(query)}"

    def _group_annotations(
        self, engine: Engine, evaluation: Evaluation, incident: Incident
    ) -> dict[str, str]:
        scope = self._scope(engine, incident.dims)
        affected, total = round(incident.affected), round(incident.total)
        expected = incident.expected
        usual = f"{expected:.1f}" if expected < 10 else f"{expected:.0f}"
        top = top_customers(engine, evaluation, incident.dims)
        top_text = ", ".join(f"{name} {count}" for name, count in top) or "none known"
        sims_link = f"{self.simwatch_url}/api/v1/incidents/{quote(incident.id)}/sims"
        evidence = incident.evidence_text()
        description = (
            f"{affected} of {total} SIMs ({_percent(affected, total)}) in {scope} stopped "
            f"sending data; normally about {usual} ({_percent(expected, total)}) "
            f"at this hour. {f'Evidence: {evidence}. ' if evidence else ''}"
            f"Since {_when(incident.opened_at)} (incident {incident.id}, "
            f"peak {round(incident.peak_affected)} of {round(incident.peak_total)}). "
            f"Top customers of the affected SIMs: {top_text}. "
            f"Tickets of single SIMs in this group carry group_incident={incident.id}. "
            f"{_maintenance_text(incident)}"
            f"Affected SIMs: {sims_link}"
        )
        notes = {
            "summary": f"{scope}: {affected} of {total} SIMs stopped sending data "
            f"(normally about {usual})",
            "description": description,
            "affected": str(affected),
            "total": str(total),
            "baseline": f"{expected:.1f}",
            "top_customers": ", ".join(f"{name}={count}" for name, count in top),
            "runbook_url": self.runbook_url,
            "dashboard_url": self._dashboard(DASHBOARD_GROUP, incident.opened_at, incident.dims),
        }
        if evidence:
            notes["evidence"] = evidence
        if self.console_url is not None:  # the incident's chart, evidence and SIMs
            notes["console_url"] = f"{self.console_url}/incidents/{quote(incident.id)}"
        return notes

    def _ticket_annotations(
        self, engine: Engine, incident: Incident, labels: Mapping[str, str]
    ) -> dict[str, str]:
        iccid = incident.iccid or ""
        row = engine.state.row(iccid)
        reasons = "; ".join(_REASONS.get(r, r) for r in incident.reasons) or "no data"
        customer = None
        last_text = "no data ever"
        if row >= 0:
            customers = engine.state.customers.values
            code = int(engine.state.cols.customer[row])
            customer = customers[code] if 0 < code < len(customers) else None
            last = float(engine.state.rhythm.last_data[row])
            if not math.isnan(last):
                ago = _duration(incident.opened_at - last)
                last_text = f"last data {_when(last)} ({ago} before the ticket opened)"
        owner = f" of customer {customer}" if customer else ""
        dims = {k: v for k, v in labels.items() if k in engine.state.dims}
        group = labels.get("group_incident")
        if group:
            cover = (
                f"It lies inside open group incident {group} (a page): that outage is the "
                f"likely cause (an inhibit rule on group_incident mutes this ticket)."
            )
        else:
            cover = "No open group incident covers it: look at this SIM and its device."
        seen = f"Seen on {self._scope(engine, dims)}." if dims else "No APN or network seen yet."
        description = (
            f"SIM {iccid}{owner} (tagged vip): {reasons}; {last_text}. {seen} {cover} "
            f"Diagnosis: {self.simwatch_url}/api/v1/sims/{iccid}"
        )
        notes = {
            "summary": f"SIM {iccid}{owner}: {reasons}",
            "description": description,
            "runbook_url": self.runbook_url,
            "dashboard_url": self._dashboard(DASHBOARD_SIM, incident.opened_at, {"iccid": iccid}),
        }
        if self.console_url is not None:  # the SIM's diagnosis and history
            notes["console_url"] = f"{self.console_url}/sims/{quote(iccid)}"
        return notes

    # ---- delivery --------------------------------------------------------------------------

    def payload(self, replica: int = 0) -> list[Json]:
        """What the next post to replica ``replica`` holds: every firing alert and the
        resolved ones it has not taken yet."""
        return self._payload(self._replicas[replica], self.clock())[0]

    def _payload(self, replica: _Replica, now: float) -> tuple[list[Json], list[Alert]]:
        after = self.settings.ends_at_after_s
        resolved = list(replica.resolved.values())
        alerts = [a.to_json(now, after) for a in self._firing.values()]
        alerts += [a.to_json(now, after) for a in resolved]
        return alerts, resolved

    async def run(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        async with asyncio.TaskGroup() as tg:
            for replica in self._replicas:
                tg.create_task(self._deliver(replica), name=f"alertmanager:{replica.url}")

    async def _deliver(self, replica: _Replica) -> None:
        loop = asyncio.get_running_loop()
        while True:
            changed = replica.sent_version != self._version or bool(replica.resolved)
            resend_due = bool(self._firing) and loop.time() >= replica.next_resend
            if not self._live or not (changed or resend_due):
                timeout = None
                if self._live and self._firing:
                    timeout = max(0.0, replica.next_resend - loop.time())
                replica.wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await replica.wake.wait()
                continue
            if await self._send(replica):
                replica.next_resend = loop.time() + self.settings.resend_interval_s
                replica.backoff.succeeded()
            else:
                await asyncio.sleep(replica.backoff.failed())

    async def _send(self, replica: _Replica, timeout_s: float | None = None) -> bool:
        """Post the replica's payload; True when every request was accepted."""
        version = self._version
        alerts, resolved = self._payload(replica, self.clock())
        try:
            for start in range(0, len(alerts), MAX_ALERTS_PER_POST):
                await self._post(replica, alerts[start : start + MAX_ALERTS_PER_POST], timeout_s)
        except TimeoutError:
            self._failed(replica, f"no answer within {timeout_s or self.settings.timeout_s:g} s")
            return False
        except (aiohttp.ClientError, OSError, _RefusedError) as exc:
            self._failed(replica, str(exc) or type(exc).__name__)
            return False
        for alert in resolved:  # taken: forget it unless it was queued again meanwhile
            fingerprint = tuple(sorted(alert.labels.items()))
            if replica.resolved.get(fingerprint) is alert:
                del replica.resolved[fingerprint]
        replica.sent_version = version
        self.stats.sent += len(alerts)
        self.stats.last_success = self.clock()
        replica.failure.recovered("delivering alerts again")
        replica.error = None
        replica.up = True
        self._sync_stats()
        return True

    async def _post(self, replica: _Replica, alerts: list[Json], timeout_s: float | None) -> None:
        if self._session is None:
            raise _RefusedError("no HTTP session (the sink is not running)")
        timeout = aiohttp.ClientTimeout(total=timeout_s or self.settings.timeout_s)
        async with self._session.post(
            replica.endpoint,
            data=orjson.dumps(alerts),
            headers={"Content-Type": "application/json"},
            timeout=timeout,
        ) as response:
            if response.status // 100 != 2:
                body = (await response.text(errors="replace"))[:200].strip()
                raise _RefusedError(f"HTTP {response.status} {body}")

    def _failed(self, replica: _Replica, message: str) -> None:
        self.stats.errors += 1
        replica.failure.failed(
            "sending alerts failed", detail=message, hint="retrying with backoff"
        )
        replica.error = message
        replica.up = False
        self._sync_stats()

    def _sync_stats(self) -> None:
        # up while at least one replica takes the alerts: pages still reach on-call
        # (replicas share notifications); a replica down is a ticket of its own
        # (SimwatchAlertmanagerReplicaDown), not a page
        self.stats.replicas = len(self._replicas)
        self.stats.replicas_up = sum(r.up for r in self._replicas)
        self.stats.up = self.stats.replicas_up > 0
        errors = [f"{r.url}: {r.error}" for r in self._replicas if r.error is not None]
        self.stats.last_error = "; ".join(errors) if errors else None
        self._count_buffered()

    async def close(self) -> None:
        """Last flush: one attempt per replica that has something it has not taken."""
        try:
            if self._live and self._session is not None:
                pending = [
                    r for r in self._replicas if r.sent_version != self._version or r.resolved
                ]
                timeout = min(self.settings.timeout_s, 4.0)
                await asyncio.gather(*(self._send(r, timeout) for r in pending))
        finally:
            if self._own_session and self._session is not None:
                await self._session.close()
                self._session = None


def _mark_maintenance(labels: dict[str, str], incident: Incident) -> None:
    """``maintenance="true"`` while a maintenance window covers the incident (the shipped
    Alertmanager config routes it to a quiet receiver); no label otherwise, so the label
    set of an alert outside any window is what it always was."""
    if incident.maintenance:
        labels["maintenance"] = "true"


def _maintenance_text(incident: Incident) -> str:
    if not incident.maintenance:
        return ""
    names = ", ".join(
        f"{m.get('name')} (until {_when(float(str(m.get('ends_at'))))})"
        for m in incident.maintenance
    )
    return f"In a maintenance window: {names}; not paged while it lasts. "


class _RefusedError(Exception):
    """Alertmanager answered, but not with a 2xx."""


def top_customers(
    engine: Engine, evaluation: Evaluation, dims: Mapping[str, str], limit: int = TOP_CUSTOMERS
) -> list[tuple[str, int]]:
    """Customers with the most affected SIMs in the group ``dims`` (failing: overdue, or
    on the network's evidence, as the incident's ``affected`` counts them), most first."""
    rows = np.flatnonzero(group_failing(engine.state, evaluation, dims))
    return groups.top_customers(engine.state, rows, limit)
