"""Per-SIM diagnosis: what is wrong with one SIM, in words a support agent can read out.

Built from the fleet state and the last evaluation; pure (``now`` is an argument).
Each finding has a stable ``code`` (for tools), a ``severity`` and a plain-language
``hint``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from simwatch.core.evaluate import INACTIVE, Evidence, Why
from simwatch.core.rhythm import SimState
from simwatch.core.state import NEVER, SESSION_RING, Status, rel
from simwatch.core.timeutil import format_rfc3339

if TYPE_CHECKING:
    from simwatch.core.evaluate import EvalParams, Evaluation
    from simwatch.core.incidents import Incident
    from simwatch.core.state import FleetState


@dataclass(frozen=True, slots=True)
class Finding:
    code: str
    severity: str  # "info" | "warning" | "critical"
    hint: str

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "severity": self.severity, "hint": self.hint}


def human_duration(seconds: float) -> str:
    """``3 h 10 min``, ``45 min``, ``2 d 4 h``, ``40 s``."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    minutes = s // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def format_bytes(n: int) -> str:
    """``144.0 kB``, ``12 B``, ``3.2 GB``: decimal units (the diagnosis and the console)."""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"  # pragma: no cover - the loop always returns


_OWN_EVIDENCE: Final = (
    (Evidence.FAILURE_END, "its session was ended by the network"),
    (Evidence.REJECT, "its data session was refused"),
    (Evidence.CHURN, "it re-opens sessions again and again"),
    (Evidence.MOVED, "it left the partner for another one"),
    (Evidence.DARK, "nothing came from any device of its group for far longer than usual"),
)


def _own_evidence(evaluation: Evaluation, row: int) -> str:
    """What the network said of this SIM this cycle, as a clause ("" when nothing)."""
    if row >= evaluation.n:
        return ""
    bits = int(evaluation.evidence[row])
    parts = [text for bit, text in _OWN_EVIDENCE if bits & bit]
    if not parts and evaluation.overdue[row]:
        parts.append("it is overdue by its own rhythm")
    if not parts and evaluation.awaiting[row]:
        # the group's recovery began: what support tells a customer calling about it
        parts.append(
            "it has been quiet since before its group began to recover and is not due to "
            "report yet: it is expected back by its own rhythm"
        )
    return "; ".join(parts)


def diagnose(
    state: FleetState,
    row: int,
    evaluation: Evaluation,
    params: EvalParams,
    *,
    incident: Incident | None = None,
    partner_label: str | None = None,
) -> list[Finding]:
    """Findings for one SIM, most important first."""
    c = state.cols
    now = evaluation.now
    code = int(evaluation.states[row]) if row < evaluation.n else int(SimState.NEVER_SEEN)
    why = int(evaluation.why[row]) if row < evaluation.n else 0
    findings: list[Finding] = []
    info = state.rhythm.describe(row, now)
    if code == INACTIVE:
        status = Status(int(c.status[row])).name.lower()
        return [
            Finding(
                "inactive",
                "info",
                f"This SIM is {status} in the inventory, so it is not expected to send data.",
            )
        ]
    if incident is not None:
        where = ", ".join(f"{k} {v}" for k, v in sorted(incident.dims.items()))
        if partner_label and "partner" in incident.dims:
            where = where.replace(incident.dims["partner"], partner_label)
        evidence = incident.evidence_text()
        mine = _own_evidence(evaluation, row)
        findings.append(
            Finding(
                "group_incident",
                "critical",
                f"Part of incident {incident.id}: {round(incident.affected)} of "
                f"{round(incident.total)} SIMs on {where} stopped sending data since "
                f"{format_rfc3339(incident.opened_at)}. The cause is on the network side, "
                "not this device."
                + (f" Evidence: {evidence}." if evidence else "")
                + (f" This SIM: {mine}." if mine else ""),
            )
        )
    allowed = state.allowed_apn_names(row)
    reject_apn = state.apns.values[int(c.reject_apn[row])]
    cause = state.causes.values[int(c.reject_cause[row])]
    count = int(c.reject_count[row])
    if why & Why.WRONG_APN:
        findings.append(
            Finding(
                "wrong_apn",
                "critical",
                f"The device uses APN '{reject_apn}'; this SIM allows "
                f"{' or '.join(repr(a) for a in allowed)}. Set the device's APN to "
                f"'{allowed[0]}'. ({count} authentication failures"
                f"{', cause ' + cause if cause else ''}.)",
            )
        )
    elif why & Why.AUTH_FAILURE:
        findings.append(
            Finding(
                "auth_failure",
                "warning",
                f"The network refused authentication {count} times on APN '{reject_apn}'"
                f"{' (cause ' + cause + ')' if cause else ''}. Check the device's APN "
                "username and password and the SIM's profile.",
            )
        )
    if why & Why.DATA_CAP:
        cap = int(c.data_cap[row])
        used = int(c.month_bytes[row])
        if used >= cap:
            text = f"Monthly data cap reached: {format_bytes(used)} used of {format_bytes(cap)}."
        else:  # refused near the cap (EvalParams.cap_refused_share)
            text = (
                f"Monthly data cap reached: {format_bytes(used)} of {format_bytes(cap)} seen "
                f"here, and the network refuses its data sessions"
                f"{' (cause ' + cause + ')' if cause else ''}; the platform counts bytes "
                "this monitor has not seen yet."
            )
        findings.append(
            Finding(
                "data_cap",
                "critical",
                f"{text} Data is blocked until the next month starts or the cap is raised.",
            )
        )
    if why & Why.PDP_REJECT:
        findings.append(_policy_finding(cause, count) or _pdp_reject(cause, count, reject_apn))
    if why & Why.CHURN:
        ring = c.session_starts[row]
        now_rel = rel(now)
        starts = sum(1 for t in ring if t != NEVER and now_rel - params.churn_window_s < t)
        more = "+" if starts >= SESSION_RING else ""
        window = human_duration(params.churn_window_s)
        findings.append(
            Finding(
                "session_churn",
                "warning",
                f"The data session restarted {starts}{more} times in the last {window}; a daily "
                "reset is normal, this is not. Check coverage at the device's location, "
                "its antenna and its modem firmware.",
            )
        )
    findings.extend(_silence_finding(code, info, now))
    return findings


# FORMATS.md event types the ingest stores as a data refusal with a "<type>: " cause prefix
POLICY_REJECTS = ("quota_exhausted", "blocked", "attach_reject")


def _pdp_reject(cause: str | None, count: int, apn: str | None) -> Finding:
    return Finding(
        "pdp_reject",
        "warning",
        f"The network rejected {count} data session requests"
        f"{' on APN ' + repr(apn) if apn else ''}"
        f"{' (cause ' + cause + ')' if cause else ''}.",
    )


def _policy_finding(cause: str | None, count: int) -> Finding | None:
    """A refusal by the platform's policy (quota used up, blocked, attach refused)."""
    kind, _, detail = (cause or "").partition(":")
    if kind not in POLICY_REJECTS:
        return None
    why = f" ({detail.strip()})" if detail.strip() else ""
    if kind == "quota_exhausted":
        return Finding(
            "quota_exhausted",
            "critical",
            f"The platform reports this SIM's data quota used up and refuses its data "
            f"sessions{why}. Data stays blocked until the quota is topped up or renewed.",
        )
    if kind == "blocked":
        return Finding(
            "blocked",
            "critical",
            f"The platform blocked data for this SIM{why}. Check its limits and status "
            "in the platform's portal; the device cannot fix this.",
        )
    return Finding(
        "attach_reject",
        "warning",
        f"The network refused this SIM's attach or location update {count} times{why}. "
        "Check the SIM's roaming and radio (RAT) permissions.",
    )


def _silence_finding(code: int, info: dict[str, object], now: float) -> list[Finding]:
    last = info.get("last_data")
    typical = info.get("typical_gap_s")
    rhythm = (
        f"; this SIM normally reports every {human_duration(float(typical))}"
        if isinstance(typical, float | int) and info.get("learned")
        else ""
    )
    if code == SimState.NEVER_SEEN:
        return [Finding("never_seen", "warning", "No data has ever been seen from this SIM.")]
    if not isinstance(last, float | int):
        return []
    gap = human_duration(now - float(last))
    if code == SimState.SILENT:
        return [Finding("silent", "critical", f"No data for {gap}{rhythm}.")]
    if code == SimState.LATE:
        return [Finding("late", "warning", f"No data for {gap}{rhythm}: overdue, not yet silent.")]
    return [Finding("ok", "info", f"Last data {gap} ago{rhythm}.")]


__all__ = ["Finding", "diagnose", "format_bytes", "human_duration"]
