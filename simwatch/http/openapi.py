"""The OpenAPI 3.1 description of the HTTP API, served at ``/api/v1/openapi.json``.

Kept next to the views it describes; ``tests/test_api.py`` validates real responses of
every endpoint against these schemas and checks that every route is described.
"""

from __future__ import annotations

from typing import Final

from simwatch import __version__
from simwatch.core.evaluate import STATE_NAMES
from simwatch.http.views import DEFAULT_PAGE_SIZE

Schema = dict[str, object]

STATUS_NAMES: Final = ["active", "suspended", "test", "deactivated"]


def _nullable(kind: str, **extra: object) -> Schema:
    return {"type": [kind, "null"], **extra}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(properties: dict[str, Schema], description: str | None = None) -> Schema:
    out: Schema = {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }
    if description:
        out["description"] = description
    return out


_TIME = _nullable("string", format="date-time")
_TEXT = _nullable("string")
_COUNT: Final[Schema] = {"type": "integer", "minimum": 0}
_STATE: Final[Schema] = {"type": "string", "enum": list(STATE_NAMES)}

_EVIDENCE: Final[Schema] = {
    "type": "object",
    "description": (
        "group incidents: what the failing SIMs show this cycle: `failing`, "
        "`overdue` (by their own rhythm) and the network's evidence, "
        "`failure_end` (sessions ended with a failure cause), `reject`, "
        "`churn`, `moved` (left for another partner), `dark` (session-level "
        "SIMs of a country, partner or APN that went dark), as SIM counts, "
        "with `failure_end_cause` and `reject_cause`, the leading causes, and "
        "`moved_to`, where most of the SIMs that left went; "
        "`awaiting`: once recovery began, overdue SIMs whose next report is "
        "not due yet, and SIMs refused before it that have not tried again "
        "(not counted as failing)"
    ),
    "properties": {
        "failing": _COUNT,
        "overdue": _COUNT,
        "failure_end": _COUNT,
        "reject": _COUNT,
        "churn": _COUNT,
        "moved": _COUNT,
        "dark": _COUNT,
        "awaiting": _COUNT,
        "usual": {
            "type": "object",
            "description": "per kind of evidence, how many of the group's "
            "SIMs show it on a normal day at this hour (learned per leaf and "
            "hour of day)",
            "additionalProperties": {"type": "number", "minimum": 0},
        },
        "failure_end_cause": {"type": "string"},
        "reject_cause": {"type": "string"},
        "moved_to": {
            "type": "string",
            "description": "the partner (MCC+MNC) most of the SIMs that left went to",
        },
    },
    "additionalProperties": False,
}

SCHEMAS: Final[dict[str, Schema]] = {
    "Error": _object(
        {
            "error": _object(
                {"status": {"type": "integer"}, "message": {"type": "string"}},
            )
        }
    ),
    "Probe": _object({"status": {"type": "string", "enum": ["ok", "ready", "not ready"]}}),
    "StateCounts": _object(dict.fromkeys(STATE_NAMES, _COUNT), "SIMs per state"),
    "Rhythm": _object(
        {
            "typical_gap_s": _nullable("number"),
            "late_after_s": _nullable("number"),
            "silent_after_s": _nullable("number"),
            "learned": {"type": "boolean"},
            "gaps_seen": _COUNT,
            "active_hours": {
                "type": ["array", "null"],
                "items": {"type": "integer", "minimum": 0, "maximum": 23},
                "description": "hours of day (UTC) of a daytime-only device; null otherwise",
            },
            "weekdays_only": {
                "type": "boolean",
                "description": "learned: the SIM reports on weekdays only (UTC; two weeks in "
                "a row with data on 3+ weekdays and none on the weekend), so weekends do not "
                "count towards late and silent",
            },
            "expectation": _ref("Expectation"),
        },
        "the SIM's reporting rhythm: learned, or as set (late_after_s and silent_after_s "
        "are the thresholds that apply)",
    ),
    "Expectation": _object(
        {
            "interval_s": {
                **_nullable("number"),
                "description": "the expected interval set for the SIM; null: learned",
            },
            "interval_from": {
                "type": "string",
                "enum": ["learned", "inventory", "plan", "customer"],
                "description": "where the interval comes from: the SIM's inventory row, its "
                "plan's or its customer's [expectations] table, or its learned rhythm",
            },
            "active_hours": {**_TEXT, "description": "set active hours (Mo-Fr 07:00-19:00)"},
            "timezone": {**_TEXT, "description": "the time zone of the set active hours"},
            "hours_from": {
                "type": ["string", "null"],
                "enum": ["learned", "inventory", "plan", "customer", None],
                "description": "where the active hours come from; learned: the rhythm's "
                "daytime pattern (rhythm.active_hours); null: none",
            },
            "in_active_hours": {
                "type": ["boolean", "null"],
                "description": "now inside the set active hours; null: none set",
            },
        },
        "which expectation judges the SIM (docs/configuration.md, Expectations)",
    ),
    "Session": _object(
        {
            "open": {"type": "boolean"},
            "started": _TIME,
            "apn": _TEXT,
            "partner": _TEXT,
            "partner_name": {
                "type": ["string", "null"],
                "description": "the partner with its operator name, e.g. '26202 (Vodafone)'",
            },
            "country": _TEXT,
            "rat": _TEXT,
        },
        "the current data session, or the last one when none is open",
    ),
    "Rejects": _object(
        {
            "kind": {"type": ["string", "null"], "enum": ["auth_failure", "pdp_reject", None]},
            "at": _TIME,
            "count": _COUNT,
            "apn": _TEXT,
            "cause": _TEXT,
        },
        "the last authentication failure or session reject and its run length",
    ),
    "Regime": _object(
        {
            "name": {
                "type": ["string", "null"],
                "enum": ["per_report", "windowed", "session", None],
                "description": "null until the SIM's first usage record",
            },
            "judged_by": _TEXT,
        },
        "what the SIM's usage records are, learned from them (docs/detection.md, "
        "Data regimes), and so how it is judged",
    ),
    "Network": _object(
        {
            "evidence": {
                "type": "array",
                "items": {
                    "type": "string",
                    "enum": ["failure_end", "reject", "churn", "moved"],
                },
            },
            "failure_end_at": _TIME,
            "failure_end_cause": _TEXT,
            "moved_at": _TIME,
        },
        "the network's own evidence: what counts the SIM as failing in its group in the "
        "last evaluation (docs/detection.md), its last session ended with a failure cause, "
        "and when it last left a partner for another",
    ),
    "Usage": _object(
        {
            "bytes": _COUNT,
            "cap": {"type": ["integer", "null"], "minimum": 0},
            "share": {"type": ["number", "null"], "minimum": 0},
        },
        "bytes this calendar month and the monthly cap",
    ),
    "Finding": _object(
        {
            "code": {"type": "string"},
            "severity": {"type": "string", "enum": ["info", "warning", "critical"]},
            "hint": {"type": "string"},
        }
    ),
    "Incident": {
        "type": "object",
        "description": "an incident as in FORMATS.md (plus extension fields)",
        "properties": {
            "id": {"type": "string"},
            "dims": {"type": "object", "additionalProperties": {"type": "string"}},
            "state": {"type": "string", "enum": ["open", "resolved"]},
            "severity": {"type": "string", "enum": ["page", "ticket"]},
            "opened_at": {"type": "string", "format": "date-time"},
            "resolved_at": _TIME,
            "affected": _COUNT,
            "total": _COUNT,
            "ratio": {"type": "number", "minimum": 0},
            "baseline_ratio": {"type": "number", "minimum": 0},
            "score": {"type": "number"},
            "kind": {"type": "string", "enum": ["group", "sim"]},
            "updated_at": {"type": "string", "format": "date-time"},
            "peak_affected": _COUNT,
            "peak_total": {
                **_COUNT,
                "description": "total at the cycle of peak_affected (a group's total "
                "changes while it is open: devices leave a failing partner)",
            },
            "iccid": {"type": "string"},
            "reasons": {"type": "array", "items": {"type": "string"}},
            "named_at": {
                "type": "string",
                "format": "date-time",
                "description": "group incidents whose dims changed after they opened: when "
                "they were last given other dims (a fault's known extent grew, or a "
                "provisional name settled); absent: the dims are those it opened on",
            },
            "recovering_since": {
                "type": "string",
                "format": "date-time",
                "description": "open group incidents: when SIMs of the group began to send "
                "data again (the fault may have ended; SIMs not due since are awaited)",
            },
            "peak_evidence": {
                **_EVIDENCE,
                "description": "group incidents: `evidence` at the cycle the most SIMs "
                "failed (what a resolved incident rested on; its last `evidence` is the "
                "few SIMs left at its end)",
            },
            "recovered_at": {
                "type": "string",
                "format": "date-time",
                "description": "resolved group incidents whose recovery was seen: when the "
                "group's SIMs were seen coming back (``recovering_since`` while it was "
                "open; ``resolved_at`` is later: the incident waited to be sure)",
            },
            "maintenance": {
                "type": "boolean",
                "description": "a maintenance window under way covers the incident: it is "
                'shown and stored, and sent to Alertmanager with maintenance="true"',
            },
            "maintenance_windows": {
                "type": "array",
                "items": _object(
                    {"id": {"type": "string"}, "name": {"type": "string"}, "ends_at": _TIME},
                    "a window covering the incident; ends_at: the end of its occurrence",
                ),
            },
            "evidence": _EVIDENCE,
        },
        "required": [
            "id",
            "dims",
            "state",
            "severity",
            "opened_at",
            "resolved_at",
            "affected",
            "total",
            "ratio",
            "baseline_ratio",
            "score",
            "kind",
            "updated_at",
            "peak_affected",
            "peak_total",
            "maintenance",
            "maintenance_windows",
        ],
        "additionalProperties": False,
    },
    "MaintenanceSpan": _object(
        {
            "start": {"type": "string", "format": "date-time"},
            "end": {"type": "string", "format": "date-time"},
        },
        "one occurrence of a window, in UTC",
    ),
    "MaintenanceWindow": _object(
        {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "source": {"type": "string", "enum": ["config", "api"]},
            "start": {"type": "string", "description": "local wall time in timezone"},
            "timezone": {"type": "string"},
            "duration_s": {"type": "number", "exclusiveMinimum": 0},
            "rrule": {**_TEXT, "description": "RFC 5545 RRULE body; null: one-off or cron"},
            "cron": {**_TEXT, "description": "5-field cron schedule of the starts, or null"},
            "scope": {
                "type": "object",
                "additionalProperties": {"type": "array", "items": {"type": "string"}},
                "description": "dimension -> allowed values; {} = the whole fleet",
            },
            "created_at": _TIME,
            "active": {"type": "boolean"},
            "current": {"oneOf": [_ref("MaintenanceSpan"), {"type": "null"}]},
            "next": {"oneOf": [_ref("MaintenanceSpan"), {"type": "null"}]},
        },
        "a maintenance window (docs/alerts.md)",
    ),
    "MaintenanceList": _object({"windows": {"type": "array", "items": _ref("MaintenanceWindow")}}),
    "MaintenanceInput": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "start": {"type": "string", "description": "YYYY-MM-DDTHH:MM local (or an offset)"},
            "timezone": {"type": "string", "default": "UTC"},
            "duration_s": {"type": "number", "exclusiveMinimum": 0},
            "rrule": {"type": "string", "description": "e.g. FREQ=WEEKLY;BYDAY=SU"},
            "cron": {"type": "string", "description": "instead of rrule, e.g. 0 2 * * SUN"},
            "scope": {
                "type": "object",
                "additionalProperties": {
                    "oneOf": [
                        {"type": "string"},
                        {"type": "array", "items": {"type": "string"}, "minItems": 1},
                    ]
                },
            },
        },
        "required": ["name", "start", "duration_s"],
        "additionalProperties": False,
    },
    "IncidentList": _object({"incidents": {"type": "array", "items": _ref("Incident")}}),
    "Sim": _object(
        {
            "iccid": {"type": "string", "pattern": "^[0-9]{18,22}$"},
            "state": _STATE,
            "status": {"type": "string", "enum": STATUS_NAMES},
            "in_inventory": {"type": "boolean"},
            "customer": _TEXT,
            "plan": _TEXT,
            "allowed_apns": {"type": "array", "items": {"type": "string"}},
            "tags": {"type": "array", "items": {"type": "string"}},
            "last_data": _TIME,
            "silent_for_s": {"type": ["integer", "null"], "minimum": 0},
            "rhythm": _ref("Rhythm"),
            "session": _ref("Session"),
            "rejects": _ref("Rejects"),
            "regime": _ref("Regime"),
            "network": _ref("Network"),
            "usage_this_month": _ref("Usage"),
            "diagnosis": {"type": "array", "items": _ref("Finding")},
            "incident": {
                "oneOf": [_ref("Incident"), {"type": "null"}],
                "description": "the open group incident whose group contains the SIM",
            },
        },
        "everything known about one SIM",
    ),
    "SimShort": _object(
        {
            "iccid": {"type": "string", "pattern": "^[0-9]{18,22}$"},
            "state": _STATE,
            "status": {"type": "string", "enum": STATUS_NAMES},
            "customer": _TEXT,
            "apn": _TEXT,
            "country": _TEXT,
            "partner": _TEXT,
            "last_data": _TIME,
            "silent_for_s": {"type": ["integer", "null"], "minimum": 0},
        },
        "a SIM in a list",
    ),
    "SimPage": _object(
        {
            "items": {"type": "array", "items": _ref("SimShort")},
            "next_cursor": {
                "type": ["string", "null"],
                "description": "pass as cursor for the next page; null on the last page",
            },
        }
    ),
    "IncidentSims": _object(
        {
            "items": {"type": "array", "items": _ref("SimShort")},
            "next_cursor": {
                "type": ["string", "null"],
                "description": "pass as cursor for the next page; null on the last page",
            },
            "count": {"type": "integer", "minimum": 0, "description": "SIMs in all pages"},
        },
        "the SIMs a group incident counts as affected at the last evaluation (failing in "
        "its group: overdue, or on the network's evidence; a SIM that moved, in the group "
        "it left), in a stable order; a SIM incident: its one SIM",
    ),
    "Group": _object(
        {
            "dims": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "description": "the group's dimension -> value mapping",
            },
            "sims": {**_COUNT, "description": "every SIM of the group, in any state"},
            "states": _ref("StateCounts"),
            "total": {
                **_COUNT,
                "description": "SIMs counted (active, seen, rhythm learned, or dropped or"
                " refused by the network), at the last evaluation",
            },
            "affected": {
                **_COUNT,
                "description": "of those, late or silent and not explained by a per-SIM"
                " cause (wrong APN, data cap)",
            },
            "affected_ratio": {
                "type": ["number", "null"],
                "minimum": 0,
                "maximum": 1,
                "description": "affected / total (4 digits); null when total is 0",
            },
            "month_bytes": {
                **_COUNT,
                "description": "bytes used in the calendar month (UTC) of the last evaluation",
            },
        },
        "the figures of one group: the same as the simwatch_group_* metrics and the"
        " InfluxDB simwatch_group points",
    ),
    "Groups": _object(
        {
            "dim": {"type": ["string", "null"], "description": "null: each leaf group"},
            "evaluated_at": _TIME,
            "groups": {"type": "array", "items": _ref("Group")},
            "unassigned": _ref("Group"),
        },
        "figures per group, most affected first (then most silent, then largest);"
        " 'unassigned': SIMs without a value yet",
    ),
    "SourceStats": _object(
        {
            "name": {"type": "string"},
            "kind": {"type": "string"},
            "received": _COUNT,
            "rejected": {"type": "object", "additionalProperties": _COUNT},
            "duplicates": _COUNT,
            "errors": _COUNT,
            "last_success": _TIME,
            "last_error": _TEXT,
            "connected": {"type": "boolean"},
        }
    ),
    "Status": _object(
        {
            "now": {"type": "string", "format": "date-time"},
            "sims": _COUNT,
            "states": _ref("StateCounts"),
            "cycles": _COUNT,
            "evaluated_at": _TIME,
            "warmed_up": {"type": "boolean"},
            "open_incidents": _COUNT,
            "rejected": {"type": "object", "additionalProperties": _COUNT},
            "sources": {"type": "array", "items": _ref("SourceStats")},
        },
        "fleet summary",
    ),
}


def _json(schema: str, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


def _error(description: str) -> Schema:
    return _json("Error", description)


_AUTH_ERROR: Final = {
    "401": {
        **_error("missing or invalid bearer token (when authentication is on)"),
        "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
    }
}


def _query(name: str, schema: Schema, description: str) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _get(
    summary: str,
    responses: dict[str, Schema],
    parameters: list[Schema] | None = None,
    *,
    api: bool = True,
) -> Schema:
    op: Schema = {"summary": summary, "responses": {**responses, **(_AUTH_ERROR if api else {})}}
    if parameters:
        op["parameters"] = parameters
    if not api:
        op["security"] = []
    return {"get": op}


_RETRY: Final = {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}}
_INGEST: Final[Schema] = {
    "post": {
        "summary": "push records to the webhook source {name} ([[sources.webhook]]): FORMATS.md "
        "records (an object, an array or NDJSON) or a platform's push payloads (emnify / 1NCE "
        "Data Streamer single or bulk, KORE Event Streams, Cisco Push API), by its format; "
        "200 only once they are journaled on disk",
        "security": [{"bearer": []}, {"basic": []}],
        "parameters": [
            {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {}},
                "application/x-ndjson": {"schema": {"type": "string"}},
                "application/x-www-form-urlencoded": {"schema": {"type": "object"}},
            },
        },
        "responses": {
            "200": {
                "description": "journaled: records accepted, items of unused types ignored",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["accepted", "ignored"],
                            "properties": {
                                "accepted": {"type": "integer"},
                                "ignored": {"type": "integer"},
                            },
                        }
                    }
                },
            },
            "400": _error("the body cannot be decoded (kept in the dead letters)"),
            "401": {
                **_error("missing or invalid bearer token or Basic credentials"),
                "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
            },
            "404": _error("no webhook source of that name"),
            "413": _error("body larger than the source's max_body_bytes"),
            "503": {**_error("the journal is full or unavailable: retry later"), "headers": _RETRY},
        },
    }
}


def _maintenance_paths() -> dict[str, Schema]:
    window_id: list[Schema] = [
        {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
    ]
    deleted: Schema = {"description": "deleted"}
    body = {"required": True, "content": {"application/json": {"schema": _ref("MaintenanceInput")}}}
    listing = _get(
        "maintenance windows (the config file's, then the API's) with their current and "
        "next occurrence",
        {
            "200": _json("MaintenanceList", "the windows"),
            "400": _error("a bad query parameter"),
        },
        [_query("active", {"type": "boolean"}, "true: only the windows under way")],
    )
    listing["post"] = {
        "summary": "create a maintenance window (kept in the state directory)",
        "requestBody": body,
        "responses": {
            "201": _json("MaintenanceWindow", "created"),
            "400": _error("not a valid window: the message names the field"),
            "503": _error("the window could not be saved"),
            **_AUTH_ERROR,
        },
    }
    responses: dict[str, Schema] = {
        "204": deleted,
        "404": _error("unknown window"),
        "409": _error("a window of the config file (read-only)"),
        "503": _error("the change could not be saved"),
    }
    responses.update(_AUTH_ERROR)
    delete: Schema = {
        "summary": "delete a window made through the API",
        "parameters": window_id,
        "responses": responses,
    }
    return {"/api/v1/maintenance": listing, "/api/v1/maintenance/{id}": {"delete": delete}}


def openapi_document(
    *, max_page_size: int = 1000, ingest: bool = False, maintenance: bool = False
) -> dict[str, object]:
    """The OpenAPI 3.1 document (``max_page_size`` is the configured page size limit;
    ``ingest``: webhook sources are configured, ``POST /api/v1/ingest/{name}`` exists;
    ``maintenance``: the maintenance windows' endpoints exist)."""
    text: Schema = {"type": "string"}
    page = [
        _query(
            "limit",
            {
                "type": "integer",
                "minimum": 1,
                "maximum": max_page_size,
                "default": min(DEFAULT_PAGE_SIZE, max_page_size),
            },
            "page size",
        ),
        _query("cursor", text, "next_cursor of the previous page"),
    ]
    paths: dict[str, Schema] = {
        "/": {
            "get": {
                "summary": "landing page linking the endpoints",
                "security": [],
                "responses": {
                    "200": {"description": "HTML", "content": {"text/html": {"schema": text}}}
                },
            }
        },
        "/-/healthy": _get(
            "liveness: 200 while the server is serving",
            {"200": _json("Probe", "serving")},
            api=False,
        ),
        "/-/ready": _get(
            "readiness: 200 once the engine is ready (inventory loaded, state restored)",
            {"200": _json("Probe", "ready"), "503": _json("Probe", "not ready yet")},
            api=False,
        ),
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (when the daemon enables them)",
                "security": [],
                "responses": {
                    "200": {
                        "description": "Prometheus text exposition format",
                        "content": {"text/plain": {"schema": text}},
                    }
                },
            }
        },
        "/api/v1/openapi.json": _get(
            "this document",
            {
                "200": {
                    "description": "OpenAPI 3.1",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
        ),
        "/api/v1/status": _get("fleet summary and sources", {"200": _json("Status", "summary")}),
        "/api/v1/sims": _get(
            "SIMs in a stable order, filtered (exact match) and paginated",
            {"200": _json("SimPage", "one page"), "400": _error("a bad parameter, named")},
            [
                _query("state", _STATE, "the SIM's state in the last evaluation"),
                _query("apn", text, "the APN last seen"),
                _query("country", text, "ISO 3166-1 alpha-2 country last seen"),
                _query("partner", text, "the visited network last seen (MCC+MNC)"),
                _query("customer", text, "the inventory customer"),
                *page,
            ],
        ),
        "/api/v1/sims/{iccid}": _get(
            "one SIM: state, rhythm, session, rejects, usage, diagnosis, incident",
            {
                "200": _json("Sim", "the SIM"),
                "400": _error("not an ICCID"),
                "404": _error("unknown SIM"),
            },
            [
                {
                    "name": "iccid",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "pattern": "^[0-9]{18,22}$"},
                }
            ],
        ),
        "/api/v1/groups": _get(
            "figures per group: SIMs per state, total, affected, month bytes",
            {"200": _json("Groups", "the groups"), "400": _error("unknown dimension")},
            [
                _query(
                    "dim",
                    text,
                    "group by this dimension (apn, country, partner, rat, customer, plan or a "
                    "configured extra one); default: each leaf group (all dimensions)",
                )
            ],
        ),
        "/api/v1/incidents": _get(
            "incidents, oldest first",
            {"200": _json("IncidentList", "the incidents"), "400": _error("bad state")},
            [_query("state", {"type": "string", "enum": ["open", "resolved"]}, "only these")],
        ),
        "/api/v1/incidents/{id}": _get(
            "one incident",
            {"200": _json("Incident", "the incident"), "404": _error("unknown incident")},
            [{"name": "id", "in": "path", "required": True, "schema": text}],
        ),
        "/api/v1/incidents/{id}/sims": _get(
            "the incident's affected SIMs, paginated",
            {
                "200": _json("IncidentSims", "one page"),
                "400": _error("a bad parameter, named"),
                "404": _error("unknown incident"),
            },
            [{"name": "id", "in": "path", "required": True, "schema": text}, *page],
        ),
    }
    schemes: dict[str, Schema] = {"bearer": {"type": "http", "scheme": "bearer"}}
    if ingest:
        paths["/api/v1/ingest/{name}"] = _INGEST
        schemes["basic"] = {"type": "http", "scheme": "basic"}
    if maintenance:
        paths.update(_maintenance_paths())
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "simwatch",
            "version": __version__,
            "description": "Per-SIM status, groups and incidents of a fleet of IoT SIMs. "
            "Errors are JSON: {'error': {'status': ..., 'message': ...}}.",
        },
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": schemes,
        },
        "security": [{"bearer": []}],
    }


__all__ = ["SCHEMAS", "openapi_document"]
