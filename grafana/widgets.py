# ruff: noqa: INP001 - a module of the standalone script grafana/build.py, not a package
"""Shared pieces of the dashboards: datasources, uids, colours and small panel builders."""

from __future__ import annotations

from typing import Any, Final

Json = dict[str, Any]

PROM: Final = {"type": "prometheus", "uid": "prometheus"}
INFLUX: Final = {"type": "influxdb", "uid": "influxdb"}
GRAFANA: Final = {"type": "grafana", "uid": "-- Grafana --"}
SCHEMA_VERSION: Final = 39
TAG: Final = "simwatch"

FLEET_UID: Final = "simwatch-fleet"
INCIDENTS_UID: Final = "simwatch-incidents"
SIM_UID: Final = "simwatch-sim"

# The engine's default grouping dimensions (engine.dims). Incident series carry one
# label per dimension; the drill-down filters on one tag per dimension.
DIMS: Final = ("apn", "country", "partner")

STATE_COLORS: Final = {
    "ok": "green",
    "late": "yellow",
    "silent": "red",
    "never_seen": "purple",
    "inactive": "blue",
}
STATE_CODES: Final = ("ok", "late", "silent", "never_seen", "inactive")  # influx "code"

# ---- small builders ---------------------------------------------------------------------


def steps(base: str, *more: tuple[float, str]) -> Json:
    """Absolute thresholds: ``base`` colour below the first value, then each (value, colour)."""
    out: list[Json] = [{"color": base, "value": None}]
    out += [{"color": color, "value": value} for value, color in more]
    return {"mode": "absolute", "steps": out}


NO_THRESHOLDS: Final = steps("text")


def prom(
    expr: str,
    legend: str = "",
    *,
    ref: str = "A",
    instant: bool = False,
    table: bool = False,
) -> Json:
    """A Prometheus target: a range query unless ``instant`` (``table``: format table)."""
    return {
        "datasource": PROM,
        "editorMode": "code",
        "expr": expr,
        "format": "table" if table else "time_series",
        "instant": instant,
        "legendFormat": legend or "__auto",
        "range": not instant,
        "refId": ref,
    }


def pipe(*steps: str) -> str:
    """Flux: the bucket over the dashboard's time range, then ``steps``, one a line."""
    start = [
        "from(bucket: v.defaultBucket)",
        "range(start: v.timeRangeStart, stop: v.timeRangeStop)",
    ]
    return "\n  |> ".join([*start, *steps])


def flux(query: str, ref: str = "A") -> Json:
    """An InfluxDB (Flux) target."""
    return {"datasource": INFLUX, "query": query, "refId": ref}


def columns(*names: str) -> str:
    return "[" + ", ".join(f'"{n}"' for n in names) + "]"


def link(title: str, url: str, *, new_tab: bool = False) -> Json:
    return {"targetBlank": new_tab, "title": title, "url": url}


def state_overrides() -> list[Json]:
    """A fixed colour per per-SIM state for series named by the state."""
    return [
        {
            "matcher": {"id": "byName", "options": state},
            "properties": [{"id": "color", "value": {"fixedColor": color, "mode": "fixed"}}],
        }
        for state, color in STATE_COLORS.items()
    ]


def state_mappings(*, by_code: bool) -> list[Json]:
    """Value mappings showing a state's name and colour (from its name or its code)."""
    if by_code:
        options = {
            str(code): {"color": STATE_COLORS[name], "index": code, "text": name}
            for code, name in enumerate(STATE_CODES)
        }
    else:
        options = {
            name: {"color": STATE_COLORS[name], "index": i, "text": name}
            for i, name in enumerate(STATE_CODES)
        }
    return [{"options": options, "type": "value"}]


def by_name(name: str, *properties: tuple[str, Any]) -> Json:
    return {
        "matcher": {"id": "byName", "options": name},
        "properties": [{"id": key, "value": value} for key, value in properties],
    }


def up_down_mappings() -> list[Json]:
    """0 shown as a red "down", 1 as a green "up"."""
    return [
        {
            "options": {
                "0": {"color": "red", "index": 0, "text": "down"},
                "1": {"color": "green", "index": 1, "text": "up"},
            },
            "type": "value",
        }
    ]


def panel(
    kind: str,
    title: str,
    pos: tuple[int, int, int, int],
    targets: list[Json],
    *,
    unit: str,
    description: str,
    thresholds: Json = NO_THRESHOLDS,
    options: Json | None = None,
    custom: Json | None = None,
    overrides: list[Json] | None = None,
    mappings: list[Json] | None = None,
    data_links: list[Json] | None = None,
    links: list[Json] | None = None,
    transformations: list[Json] | None = None,
    color: str = "thresholds",
    extra_defaults: Json | None = None,
) -> Json:
    """One panel; ``pos`` is (x, y, w, h) on Grafana's 24-column grid."""
    x, y, w, h = pos
    datasource = targets[0]["datasource"]
    defaults: Json = {
        "color": {"mode": color},
        "links": data_links or [],
        "mappings": mappings or [],
        "thresholds": thresholds,
        "unit": unit,
    }
    if custom is not None:
        defaults["custom"] = custom
    defaults.update(extra_defaults or {})
    out: Json = {
        "datasource": datasource,
        "description": description,
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "gridPos": {"h": h, "w": w, "x": x, "y": y},
        "links": links or [],
        "options": options or {},
        "targets": targets,
        "title": title,
        "type": kind,
    }
    if transformations:
        out["transformations"] = transformations
    return out


def row(title: str, y: int) -> Json:
    return {
        "collapsed": False,
        "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
        "panels": [],
        "title": title,
        "type": "row",
    }


def stat_options(*, graph: bool = True, text_mode: str = "auto") -> Json:
    return {
        "colorMode": "value",
        "graphMode": "area" if graph else "none",
        "justifyMode": "auto",
        "orientation": "auto",
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "textMode": text_mode,
    }


def timeseries_custom(*, stacked: bool = False, bars: bool = False, lines: bool = False) -> Json:
    return {
        "drawStyle": "bars" if bars else "line",
        "fillOpacity": 60 if stacked else (80 if bars else 10),
        "lineWidth": 1,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"group": "A", "mode": "normal" if stacked else "none"},
        "thresholdsStyle": {"mode": "line" if lines else "off"},
    }


def timeseries_options(*, table_legend: bool = False) -> Json:
    legend: Json = {"displayMode": "list", "placement": "bottom", "showLegend": True}
    if table_legend:
        legend = {
            "calcs": ["lastNotNull", "max"],
            "displayMode": "table",
            "placement": "right",
            "showLegend": True,
        }
    return {"legend": legend, "tooltip": {"mode": "multi", "sort": "desc"}}


def table_options(sort_by: str | None = None, *, desc: bool = True) -> Json:
    out: Json = {"cellHeight": "sm", "footer": {"show": False}, "showHeader": True}
    if sort_by is not None:
        out["sortBy"] = [{"desc": desc, "displayName": sort_by}]
    return out


def textbox(name: str, label: str, default: str = "", description: str = "") -> Json:
    return {
        "current": {"selected": False, "text": default, "value": default},
        "description": description,
        "hide": 0,
        "label": label,
        "name": name,
        "options": [{"selected": True, "text": default, "value": default}],
        "query": default,
        "type": "textbox",
    }


SIMWATCH_URL_VAR: Final = textbox(
    "simwatch_url",
    "simwatch API",
    "http://localhost:39153",
    "Base URL of simwatch's HTTP API as your browser reaches it (links only).",
)


def dashboard(
    uid: str,
    title: str,
    description: str,
    *,
    panels: list[Json],
    variables: list[Json],
    links: list[Json],
    time_from: str = "now-6h",
) -> Json:
    for i, p in enumerate(panels, start=1):
        p["id"] = i
    return {
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": GRAFANA,
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "description": description,
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": None,
        "links": [
            {
                "asDropdown": True,
                "icon": "external link",
                "includeVars": False,
                "keepTime": True,
                "tags": [TAG],
                "targetBlank": False,
                "title": "simwatch dashboards",
                "type": "dashboards",
            },
            *links,
        ],
        "panels": panels,
        "refresh": "1m",
        "schemaVersion": SCHEMA_VERSION,
        "tags": [TAG],
        "templating": {"list": variables},
        "time": {"from": time_from, "to": "now"},
        "timepicker": {},
        "timezone": "utc",
        "title": title,
        "uid": uid,
        "version": 1,
        "weekStart": "",
    }


def api_link(title: str, path: str) -> Json:
    return {
        "asDropdown": False,
        "icon": "doc",
        "includeVars": False,
        "keepTime": False,
        "tags": [],
        "targetBlank": True,
        "title": title,
        "tooltip": "simwatch's JSON API (set the simwatch API variable to its address)",
        "type": "link",
        "url": "${simwatch_url}" + path,
    }


def drilldown_url(values: dict[str, str]) -> str:
    """A link to the per-SIM drill-down with its group variables set, keeping the time."""
    params = "".join(f"var-{dim}={values.get(dim, '')}&" for dim in DIMS)
    return f"/d/{SIM_UID}/simwatch-sim-drill-down?{params}${{__url_time_range}}"
