# ruff: noqa: INP001 - a standalone script, run as `python grafana/build.py`, not a package
"""Build simwatch's Grafana dashboards (the one source of truth for grafana/dashboards/).

    python grafana/build.py           # (re)write grafana/dashboards/*.json
    python grafana/build.py --check   # exit 1 if a committed file differs from the build

Standard library only. Every dashboard refers to its datasources by uid: ``prometheus``
(metrics of docs/metrics.md) and ``influxdb`` (InfluxDB 2, Flux, the schema of
simwatch/sinks/influx/schema.py). tests/test_grafana.py runs every Prometheus query of
these dashboards against a real Prometheus scraping a running simwatch, checks every
Flux query against the InfluxDB schema, and checks the committed files equal this build.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Final

Json = dict[str, Any]

OUT: Final = Path(__file__).resolve().parent / "dashboards"
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


# ---- fleet overview ---------------------------------------------------------------------

GROUP: Final = 'dim="$dim", value=~"$value"'
INCIDENTS_URL: Final = f"/d/{INCIDENTS_UID}/simwatch-incidents?${{__url_time_range}}"


def sink_panels(y: int) -> list[Json]:
    """The output sinks (alertmanager, influxdb, mqtt), in the "simwatch itself" row from
    ``y``: 16 high. No sink configured: no series, "No data"."""
    per_sink = timeseries_custom()

    def per_second(metric: str) -> Json:
        return prom(f"sum by (sink) (rate({metric}[$__rate_interval]))", "{{sink}}")

    return [
        panel(
            "stat",
            "Sinks up",
            (0, y, 4, 8),
            [prom("simwatch_sink_up", "{{sink}}")],
            unit="short",
            description="1 while a sink's last delivery attempt succeeded. Red: its"
            " server is away or refuses it; the sink keeps what it has in a bounded"
            " buffer and retries with backoff. Also 0 until the first delivery (the"
            " alertmanager sink sends nothing until the history replay at start is over).",
            thresholds=steps("red", (1, "green")),
            mappings=up_down_mappings(),
            options={**stat_options(graph=False), "orientation": "horizontal"},
        ),
        panel(
            "timeseries",
            "Sink items sent per second",
            (4, y, 10, 8),
            [per_second("simwatch_sink_sent_total")],
            unit="short",
            description="Items each sink delivered per second: alerts posted"
            " (alertmanager), points written (influxdb), messages published (mqtt).",
            custom=per_sink,
            options=timeseries_options(),
            color="palette-classic",
        ),
        panel(
            "timeseries",
            "Sink items buffered",
            (14, y, 10, 8),
            [prom("sum by (sink) (simwatch_sink_buffered)", "{{sink}}")],
            unit="short",
            description="Items waiting in each sink's buffer. Growing: the sink delivers"
            " slower than it gets items, or its server is away. Once full (influxdb"
            " max_buffer_points, mqtt max_buffer), the oldest are dropped.",
            custom=per_sink,
            options=timeseries_options(),
            color="palette-classic",
        ),
        panel(
            "timeseries",
            "Sink delivery errors per second",
            (0, y + 8, 12, 8),
            [per_second("simwatch_sink_errors_total")],
            unit="short",
            description="Failed delivery attempts per second (connection, HTTP status,"
            " timeout), per sink. Retries succeeding (sink up) lose nothing.",
            custom=per_sink,
            options=timeseries_options(),
            color="palette-classic",
        ),
        panel(
            "timeseries",
            "Sink items dropped per second",
            (12, y + 8, 12, 8),
            [per_second("simwatch_sink_dropped_total")],
            unit="short",
            description="Items a sink gave up per second because its buffer was full:"
            " data lost (alerts, points or messages). Anything above 0 needs a look.",
            thresholds=steps("green", (0.001, "red")),
            custom=timeseries_custom(lines=True),
            options=timeseries_options(),
            color="palette-classic",
        ),
    ]


def fleet() -> Json:
    ratio_steps = steps("green", (0.05, "yellow"), (0.2, "red"))
    group_link = link(
        "SIMs of ${dim} ${__field.labels.value} (drill-down)",
        f"/d/{SIM_UID}/simwatch-sim-drill-down?var-${{dim}}=${{__field.labels.value}}"
        "&${__url_time_range}",
    )
    panels = [
        panel(
            "stat",
            "Tracked SIMs",
            (0, 0, 4, 4),
            [prom("simwatch_tracked_sims", "tracked")],
            unit="short",
            description="SIMs the engine tracks: the inventory and every SIM seen in records.",
            options=stat_options(),
        ),
        panel(
            "stat",
            "Late or silent",
            (4, 0, 4, 4),
            [
                prom("instance:simwatch_sims_late_or_silent:ratio", "late or silent"),
            ],
            unit="percentunit",
            description="Share of the SIMs that report (ok, late, silent) that are late or"
            " silent now. Some SIMs are always late; a jump is what matters. (Recording"
            " rule of deploy/prometheus/recording.rules.yml.)",
            thresholds=ratio_steps,
            options=stat_options(),
        ),
        panel(
            "stat",
            "Silent SIMs",
            (8, 0, 4, 4),
            [prom('simwatch_sims{state="silent"}', "silent")],
            unit="short",
            description="SIMs past their silent threshold at the last evaluation.",
            options=stat_options(),
            extra_defaults={"color": {"fixedColor": "red", "mode": "fixed"}},
        ),
        panel(
            "stat",
            "Never seen",
            (12, 0, 4, 4),
            [prom('simwatch_sims{state="never_seen"}', "never seen")],
            unit="short",
            description="Active inventory SIMs that never sent a record.",
            options=stat_options(),
        ),
        panel(
            "stat",
            "Open incidents (page)",
            (16, 0, 4, 4),
            [prom('simwatch_incidents_open{severity="page"}', "page")],
            unit="short",
            description="Open group incidents. Click for the incidents dashboard.",
            thresholds=steps("green", (1, "red")),
            options=stat_options(graph=False),
            links=[link("Incidents", INCIDENTS_URL)],
        ),
        panel(
            "stat",
            "Last evaluation",
            (20, 0, 4, 4),
            [prom("time() - simwatch_last_evaluation_timestamp_seconds", "age")],
            unit="s",
            description="Seconds since the last evaluation cycle (one a minute by default)."
            " Red: the engine has not evaluated for 5 minutes.",
            thresholds=steps("green", (150, "yellow"), (300, "red")),
            options=stat_options(graph=False),
        ),
        panel(
            "timeseries",
            "SIMs by state",
            (0, 4, 9, 9),
            [prom("sum by (state) (simwatch_sims)", "{{state}}")],
            unit="short",
            description="The fleet's SIMs per state at each evaluation (stacked).",
            custom=timeseries_custom(stacked=True),
            overrides=state_overrides(),
            options=timeseries_options(),
            color="palette-classic",
        ),
        panel(
            "bargauge",
            "Worst silent ratio per dimension",
            (9, 4, 5, 9),
            [prom("dim:simwatch_group_silent_ratio:max", "{{dim}}", instant=True)],
            unit="percentunit",
            description="Per dimension, the highest silent ratio of its values (_other and"
            " _unknown left out): how bad the worst APN, country, partner is. (Recording"
            " rule of deploy/prometheus/recording.rules.yml.)",
            thresholds=ratio_steps,
            options={
                "displayMode": "lcd",
                "orientation": "horizontal",
                "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                "showUnfilled": True,
            },
            extra_defaults={"max": 1, "min": 0},
        ),
        panel(
            "timeseries",
            "Silent ratio by ${dim} (10 highest)",
            (14, 4, 10, 9),
            [
                prom(
                    f"topk(10, simwatch_group_silent_ratio{{{GROUP}}})",
                    "{{value}}",
                )
            ],
            unit="percentunit",
            description="Of each group's SIMs expected to report, the share late or silent"
            " and not explained per SIM. Lines: 5 % (watch) and 20 % (likely a group fault).",
            thresholds=ratio_steps,
            custom=timeseries_custom(lines=True),
            options=timeseries_options(table_legend=True),
            color="palette-classic",
            data_links=[group_link],
            extra_defaults={"max": 1, "min": 0},
        ),
        panel(
            "timeseries",
            "SIMs by state in ${dim} = ${value}",
            (0, 13, 12, 9),
            [prom(f"sum by (state) (simwatch_group_sims{{{GROUP}}})", "{{state}}")],
            unit="short",
            description="SIMs per state of the selected values of the selected dimension.",
            custom=timeseries_custom(stacked=True),
            overrides=state_overrides(),
            options=timeseries_options(),
            color="palette-classic",
        ),
        panel(
            "bargauge",
            "Most silent SIMs by ${dim}",
            (12, 13, 12, 9),
            [
                prom(
                    f'topk(10, simwatch_group_sims{{{GROUP}, state="silent", value!="_other"}})',
                    "{{value}}",
                    instant=True,
                )
            ],
            unit="short",
            description="The ten values of the dimension with the most silent SIMs now.",
            thresholds=steps("green", (1, "yellow"), (10, "red")),
            options={
                "displayMode": "gradient",
                "orientation": "horizontal",
                "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                "showUnfilled": True,
            },
            data_links=[group_link],
        ),
        panel(
            "table",
            "Groups of ${dim}",
            (0, 22, 16, 10),
            [
                prom(
                    f"sum by (value) (simwatch_group_sims{{{GROUP}}})",
                    ref="A",
                    instant=True,
                    table=True,
                ),
                prom(
                    f'sum by (value) (simwatch_group_sims{{{GROUP}, state="late"}})',
                    ref="B",
                    instant=True,
                    table=True,
                ),
                prom(
                    f'sum by (value) (simwatch_group_sims{{{GROUP}, state="silent"}})',
                    ref="C",
                    instant=True,
                    table=True,
                ),
                prom(
                    f"sum by (value) (simwatch_group_silent_ratio{{{GROUP}}})",
                    ref="D",
                    instant=True,
                    table=True,
                ),
                prom(
                    f"sum by (value) (simwatch_group_month_bytes{{{GROUP}}})",
                    ref="E",
                    instant=True,
                    table=True,
                ),
            ],
            unit="short",
            description="One row per value of the dimension (the top 200 by SIMs, the rest"
            " in _other; _unknown: SIMs never seen). Click a value for its SIMs.",
            options=table_options("Silent ratio"),
            transformations=[
                {"id": "merge", "options": {}},
                {
                    "id": "organize",
                    "options": {"excludeByName": {"Time": True}, "indexByName": {"value": 0}},
                },
            ],
            # overrides match the query's field names; displayName renames the column
            overrides=[
                by_name("Value #A", ("displayName", "SIMs")),
                by_name("Value #B", ("displayName", "Late")),
                by_name("Value #C", ("displayName", "Silent")),
                by_name(
                    "Value #D",
                    ("displayName", "Silent ratio"),
                    ("unit", "percentunit"),
                    ("thresholds", ratio_steps),
                    ("custom.cellOptions", {"type": "color-background"}),
                ),
                by_name("Value #E", ("displayName", "Data this month"), ("unit", "bytes")),
                by_name(
                    "value",
                    ("displayName", "${dim}"),
                    (
                        "links",
                        [
                            link(
                                "SIMs of ${dim} ${__value.raw} (drill-down)",
                                f"/d/{SIM_UID}/simwatch-sim-drill-down?var-${{dim}}="
                                "${__value.raw}&${__url_time_range}",
                            )
                        ],
                    ),
                ),
            ],
        ),
        panel(
            "bargauge",
            "Data this month by ${dim} (10 highest)",
            (16, 22, 8, 10),
            [
                prom(
                    f"topk(10, simwatch_group_month_bytes{{{GROUP}}})",
                    "{{value}}",
                    instant=True,
                )
            ],
            unit="bytes",
            description="Bytes (up + down) used in the current calendar month (UTC).",
            options={
                "displayMode": "basic",
                "orientation": "horizontal",
                "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                "showUnfilled": True,
            },
            color="continuous-BlPu",
        ),
        row("simwatch itself", 32),
        panel(
            "timeseries",
            "Records received per second",
            (0, 33, 8, 8),
            [
                prom(
                    "sum by (source)"
                    " (rate(simwatch_source_records_received_total[$__rate_interval]))",
                    "{{source}}",
                )
            ],
            unit="short",
            description="Records each source hands to ingest, per second.",
            custom=timeseries_custom(),
            options=timeseries_options(),
            color="palette-classic",
        ),
        panel(
            "timeseries",
            "Records rejected per second",
            (8, 33, 8, 8),
            [
                prom(
                    "sum by (source, reason) "
                    "(rate(simwatch_source_records_rejected_total[$__rate_interval]))",
                    "{{source}} {{reason}}",
                )
            ],
            unit="short",
            description="Records failing validation, per source and reason (docs/formats.md)."
            " Rejected records are in the dead-letter file.",
            thresholds=steps("green", (1, "red")),
            custom=timeseries_custom(),
            options=timeseries_options(),
            color="palette-classic",
        ),
        panel(
            "stat",
            "Sources up",
            (16, 33, 8, 4),
            [prom("simwatch_source_up", "{{source}}")],
            unit="short",
            description="1 while a source is connected to its feed. Red: disconnected.",
            thresholds=steps("red", (1, "green")),
            mappings=up_down_mappings(),
            options=stat_options(graph=False),
        ),
        panel(
            "stat",
            "Ingest queue",
            (16, 37, 4, 4),
            [prom("simwatch_ingest_queue_depth", "batches")],
            unit="short",
            description="Batches waiting in the ingest queue (capacity 64). Full: sources"
            " are slowed down (backpressure).",
            thresholds=steps("green", (32, "yellow"), (56, "red")),
            options=stat_options(),
        ),
        panel(
            "stat",
            "Resident memory",
            (20, 37, 4, 4),
            [
                prom(
                    "process_resident_memory_bytes * on (instance, job) group_left ()"
                    " simwatch_build_info",
                    "{{instance}}",
                )
            ],
            unit="bytes",
            description="Resident memory of the simwatch process.",
            options=stat_options(),
        ),
        panel(
            "timeseries",
            "Evaluation duration",
            (0, 41, 12, 7),
            [prom("simwatch_evaluation_duration_seconds", "last cycle")],
            unit="s",
            description="How long the last evaluation cycle took. It must stay well under"
            " the evaluation interval (60 s by default).",
            thresholds=steps("green", (10, "yellow"), (30, "red")),
            custom=timeseries_custom(lines=True),
            options=timeseries_options(),
            color="palette-classic",
        ),
        panel(
            "timeseries",
            "Evaluations per minute",
            (12, 41, 12, 7),
            [
                prom(
                    "60 * rate(simwatch_evaluations_total[$__rate_interval])",
                    "completed",
                    ref="A",
                ),
                prom(
                    "60 * rate(simwatch_evaluation_failures_total[$__rate_interval])",
                    "failed",
                    ref="B",
                ),
            ],
            unit="short",
            description="Evaluation cycles completed and failed per minute (one a minute"
            " live; thousands while a backlog is replayed at start).",
            custom=timeseries_custom(),
            options=timeseries_options(),
            color="palette-classic",
            overrides=[
                by_name("failed", ("color", {"fixedColor": "red", "mode": "fixed"})),
            ],
        ),
        *sink_panels(48),
    ]
    variables = [
        {
            "current": {"selected": True, "text": "partner", "value": "partner"},
            "datasource": PROM,
            "definition": "label_values(simwatch_group_sims, dim)",
            "description": "Grouping dimension: apn, country or partner (MCC+MNC).",
            "hide": 0,
            "includeAll": False,
            "label": "Dimension",
            "multi": False,
            "name": "dim",
            "options": [],
            "query": {
                "qryType": 1,
                "query": "label_values(simwatch_group_sims, dim)",
                "refId": "PrometheusVariableQueryEditor-VariableQuery",
            },
            "refresh": 1,
            "regex": "",
            "skipUrlSync": False,
            "sort": 1,
            "type": "query",
        },
        {
            "allValue": ".*",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "datasource": PROM,
            "definition": 'label_values(simwatch_group_sims{dim="$dim"}, value)',
            "description": "Values of the dimension (_other: beyond the top 200;"
            " _unknown: SIMs never seen).",
            "hide": 0,
            "includeAll": True,
            "label": "Value",
            "multi": True,
            "name": "value",
            "options": [],
            "query": {
                "qryType": 1,
                "query": 'label_values(simwatch_group_sims{dim="$dim"}, value)',
                "refId": "PrometheusVariableQueryEditor-VariableQuery",
            },
            "refresh": 2,
            "regex": "",
            "skipUrlSync": False,
            "sort": 1,
            "type": "query",
        },
        SIMWATCH_URL_VAR,
    ]
    return dashboard(
        FLEET_UID,
        "simwatch / Fleet",
        "The SIM fleet by state, and by state per APN, country or roaming partner.",
        panels=panels,
        variables=variables,
        links=[
            api_link("simwatch API: status", "/api/v1/status"),
            api_link("simwatch API: groups of ${dim}", "/api/v1/groups?dim=${dim}"),
        ],
    )


# ---- incidents --------------------------------------------------------------------------


def on_info(expr: str) -> str:
    """``expr`` (one series per incident id) with the incident's labels: severity, group."""
    return f"simwatch_incident_info * on (id) group_left () ({expr})"


def incidents() -> Json:
    group_legend = "{{id}} " + " ".join(f"{d}={{{{{d}}}}}" for d in DIMS)
    to_sim_series = link(
        "SIMs of this incident's group (drill-down)",
        drilldown_url({d: f"${{__field.labels.{d}}}" for d in DIMS}),
    )
    to_sim_rows = link(
        "SIMs of this incident's group (drill-down)",
        drilldown_url({d: f"${{__data.fields.{d}}}" for d in DIMS}),
    )
    to_api = link(
        "Incident ${__value.raw} in simwatch API",
        "${simwatch_url}/api/v1/incidents/${__value.raw}",
        new_tab=True,
    )
    table = [
        on_info("simwatch_incident_affected_sims"),
        on_info("simwatch_incident_group_sims"),
        on_info("simwatch_incident_affected_sims / simwatch_incident_group_sims"),
        on_info("time() - simwatch_incident_opened_timestamp_seconds"),
    ]
    history = pipe(
        'filter(fn: (r) => r._measurement == "simwatch_incident")',
        'filter(fn: (r) => r.event == "opened" or r.event == "resolved")',
        "filter(fn: (r) => "
        + " or ".join(f'r._field == "{f}"' for f in ("dims", "iccid", "affected", "total", "score"))
        + ")",
        'pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")',
        "group()",
        "keep(columns: "
        + columns(
            "_time",
            "id",
            "severity",
            "kind",
            "event",
            "dims",
            "iccid",
            "affected",
            "total",
            "score",
        )
        + ")",
        'sort(columns: ["_time"], desc: true)',
        "limit(n: 500)",
    )
    panels = [
        panel(
            "stat",
            "Open incidents (page)",
            (0, 0, 6, 4),
            [prom('simwatch_incidents_open{severity="page"}', "page")],
            unit="short",
            description="Open group incidents (an APN, country, partner or a combination).",
            thresholds=steps("green", (1, "red")),
            options=stat_options(),
        ),
        panel(
            "stat",
            "Open SIM tickets",
            (6, 0, 6, 4),
            [prom('simwatch_incidents_open{severity="ticket"}', "ticket")],
            unit="short",
            description="Open incidents of single SIMs tagged vip (severity ticket).",
            thresholds=steps("green", (1, "yellow")),
            options=stat_options(),
        ),
        panel(
            "stat",
            "SIMs affected now",
            (12, 0, 6, 4),
            [prom("sum(simwatch_incident_affected_sims) or vector(0)", "affected")],
            unit="short",
            description="Overdue SIMs in the groups of all open group incidents.",
            thresholds=steps("green", (1, "orange")),
            options=stat_options(),
        ),
        panel(
            "stat",
            "Incidents opened in range",
            (18, 0, 6, 4),
            [prom("round(increase(simwatch_incidents_opened_total[$__range]))", "opened")],
            unit="short",
            description="Incidents (group and SIM) opened in the dashboard's time range.",
            options=stat_options(graph=False),
        ),
        panel(
            "table",
            "Open incidents",
            (0, 4, 24, 7),
            [prom(e, ref=r, instant=True, table=True) for r, e in zip("ABCD", table, strict=True)],
            unit="short",
            description="One row per open group incident. Click a row for the SIMs of its"
            " group in the drill-down; click the id for the incident in simwatch's API."
            " An empty dimension: the group spans all its values.",
            options=table_options("Affected SIMs"),
            data_links=[to_sim_rows],
            transformations=[
                {"id": "merge", "options": {}},
                {
                    "id": "organize",
                    "options": {
                        "excludeByName": {"Time": True, "instance": True, "job": True},
                        "indexByName": {
                            "id": 0,
                            "severity": 1,
                            **{d: 2 + i for i, d in enumerate(DIMS)},
                        },
                    },
                },
            ],
            # overrides match the query's field names; displayName renames the column
            overrides=[
                by_name("Value #A", ("displayName", "Affected SIMs")),
                by_name("Value #B", ("displayName", "Group SIMs")),
                by_name(
                    "Value #C",
                    ("displayName", "Affected share"),
                    ("unit", "percentunit"),
                    ("thresholds", steps("yellow", (0.5, "red"))),
                    ("custom.cellOptions", {"type": "color-background"}),
                ),
                by_name("Value #D", ("displayName", "Open for"), ("unit", "s")),
                by_name("id", ("links", [to_api])),
            ],
        ),
        panel(
            "state-timeline",
            "Incidents and their groups over time",
            (0, 11, 24, 7),
            [prom("simwatch_incident_info", group_legend)],
            unit="short",
            description="When each group incident was open, and its group. Click a bar for"
            " the SIMs of the group.",
            mappings=[
                {"options": {"1": {"color": "red", "index": 0, "text": "open"}}, "type": "value"}
            ],
            thresholds=steps("red"),
            options={
                "alignValue": "left",
                "legend": {"displayMode": "list", "placement": "bottom", "showLegend": False},
                "mergeValues": True,
                "rowHeight": 0.8,
                "showValue": "never",
                "tooltip": {"mode": "single", "sort": "none"},
            },
            data_links=[to_sim_series],
        ),
        panel(
            "timeseries",
            "Affected SIMs per incident",
            (0, 18, 12, 8),
            [prom(on_info("simwatch_incident_affected_sims"), group_legend)],
            unit="short",
            description="Overdue SIMs in each open incident's group.",
            custom=timeseries_custom(),
            options=timeseries_options(),
            color="palette-classic",
            data_links=[to_sim_series],
        ),
        panel(
            "timeseries",
            "Affected share per incident",
            (12, 18, 12, 8),
            [
                prom(
                    on_info("simwatch_incident_affected_sims / simwatch_incident_group_sims"),
                    group_legend,
                )
            ],
            unit="percentunit",
            description="Of each incident group's SIMs expected to report, the share"
            " overdue. Line at 50 %.",
            thresholds=steps("green", (0.5, "red")),
            custom=timeseries_custom(lines=True),
            options=timeseries_options(),
            color="palette-classic",
            data_links=[to_sim_series],
            extra_defaults={"max": 1, "min": 0},
        ),
        panel(
            "table",
            "Incident history (InfluxDB)",
            (0, 26, 24, 9),
            [flux(history)],
            unit="short",
            description="Every incident opened or resolved in the time range, from InfluxDB"
            " (simwatch_incident; dims is the group as JSON). Click an id for the incident"
            " in simwatch's API.",
            options=table_options("_time"),
            overrides=[
                by_name("id", ("links", [to_api])),
                by_name("_time", ("displayName", "time")),
            ],
        ),
    ]
    return dashboard(
        INCIDENTS_UID,
        "simwatch / Incidents",
        "Open group incidents, their groups over time, and the incident history.",
        panels=panels,
        variables=[SIMWATCH_URL_VAR],
        links=[
            api_link("simwatch API: open incidents", "/api/v1/incidents?state=open"),
            {
                "asDropdown": False,
                "icon": "dashboard",
                "includeVars": False,
                "keepTime": True,
                "tags": [],
                "targetBlank": False,
                "title": "SIM drill-down",
                "tooltip": "Per-SIM history from InfluxDB",
                "type": "link",
                "url": f"/d/{SIM_UID}/simwatch-sim-drill-down",
            },
        ],
    )


# ---- per-SIM drill-down -----------------------------------------------------------------

GROUP_FILTERS: Final = tuple(
    f'filter(fn: (r) => "${{{d}}}" == "" or r.{d} == "${{{d}}}")' for d in DIMS
)


def sim_query(measurement: str, field: str, *rest: str) -> str:
    """Flux over one SIM's points (the ``iccid`` variable) of some fields (``a|b``)."""
    fields = " or ".join(f'r._field == "{f}"' for f in field.split("|"))
    if "|" in field:
        fields = f"({fields})"
    where = f'r._measurement == "{measurement}" and {fields} and r.iccid == "${{iccid}}"'
    return pipe(f"filter(fn: (r) => {where})", *rest)


def sim() -> Json:
    iccid_query = pipe(
        'filter(fn: (r) => r._measurement == "simwatch_sim_state" and r._field == "code")',
        *GROUP_FILTERS,
        'keep(columns: ["iccid"])',
        "group()",
        'distinct(column: "iccid")',
        "limit(n: 1000)",
    )
    group_sims = pipe(
        'filter(fn: (r) => r._measurement == "simwatch_sim_state" and r._field == "state")',
        *GROUP_FILTERS,
        "last()",
        "group()",
        "keep(columns: " + columns("_time", "iccid", "_value", *DIMS) + ")",
        'rename(columns: {_value: "state"})',
        'sort(columns: ["_time"], desc: true)',
        "limit(n: 500)",
    )
    changes = sim_query(
        "simwatch_sim_state",
        "state|previous",
        'pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")',
        'keep(columns: ["_time", "previous", "state"])',
        'sort(columns: ["_time"], desc: true)',
    )
    sim_tags = sim_query(
        "simwatch_sim_usage",
        "month_bytes",
        "last()",
        "keep(columns: " + columns("iccid", "customer", *DIMS) + ")",
    )
    to_sim = link(
        "Drill down to ${__data.fields.iccid}",
        f"/d/{SIM_UID}/simwatch-sim-drill-down?var-iccid=${{__data.fields.iccid}}"
        + "".join(f"&var-{d}=${{{d}}}" for d in DIMS)
        + "&${__url_time_range}",
    )
    to_api = link(
        "SIM ${iccid} in simwatch API (state, rhythm, diagnosis)",
        "${simwatch_url}/api/v1/sims/${iccid}",
        new_tab=True,
    )
    panels = [
        panel(
            "stat",
            "State now",
            (0, 0, 5, 4),
            [flux(sim_query("simwatch_sim_state", "code", "last()"))],
            unit="none",
            description="The SIM's state at its last state change in the time range"
            " (points are written on changes only).",
            thresholds=steps("green", (1, "yellow"), (2, "red")),
            mappings=state_mappings(by_code=True),
            options=stat_options(graph=False, text_mode="value"),
            links=[to_api],
        ),
        panel(
            "stat",
            "Last data",
            (5, 0, 5, 4),
            [
                flux(
                    sim_query(
                        "simwatch_sim_usage",
                        "last_data",
                        "last()",
                        "map(fn: (r) => ({r with _value: r._value * 1000.0}))",
                    )
                )
            ],
            unit="dateTimeFromNow",
            description="When the SIM's newest data arrived (time of its last usage point).",
            options=stat_options(graph=False),
        ),
        panel(
            "stat",
            "Data this month",
            (10, 0, 5, 4),
            [flux(sim_query("simwatch_sim_usage", "month_bytes", "last()"))],
            unit="bytes",
            description="Bytes (up + down) the SIM used in the calendar month (UTC) so far.",
            options=stat_options(graph=False),
        ),
        panel(
            "table",
            "SIM",
            (15, 0, 9, 4),
            [flux(sim_tags)],
            unit="short",
            description="The SIM's customer and groups (tags of its last usage point)."
            " Click for the SIM in simwatch's API: rhythm and diagnosis.",
            options=table_options(),
            data_links=[to_api],
        ),
        panel(
            "state-timeline",
            "State over time",
            (0, 4, 24, 5),
            [flux(sim_query("simwatch_sim_state", "state", 'keep(columns: ["_time", "_value"])'))],
            unit="none",
            description="The SIM's state over time, from its state changes.",
            mappings=state_mappings(by_code=False),
            thresholds=steps("text"),
            options={
                "alignValue": "left",
                "legend": {"displayMode": "list", "placement": "bottom", "showLegend": False},
                "mergeValues": True,
                "rowHeight": 0.9,
                "showValue": "auto",
                "tooltip": {"mode": "single", "sort": "none"},
            },
        ),
        panel(
            "timeseries",
            "Data per interval",
            (0, 9, 12, 8),
            [
                flux(
                    sim_query(
                        "simwatch_sim_usage",
                        "bytes",
                        "aggregateWindow(every: v.windowPeriod, fn: sum, createEmpty: true)",
                    )
                )
            ],
            unit="bytes",
            description="Bytes (up + down) the SIM used, summed per interval. Gaps: no data.",
            custom=timeseries_custom(bars=True),
            options=timeseries_options(),
            color="palette-classic",
        ),
        panel(
            "timeseries",
            "Gap between data",
            (12, 9, 12, 8),
            [
                flux(
                    sim_query(
                        "simwatch_sim_usage",
                        "last_data",
                        "difference(nonNegative: true)",
                    )
                )
            ],
            unit="s",
            description="Seconds between the SIM's successive data: its reporting rhythm."
            " A long step before a gap in the bars is a silence.",
            thresholds=steps("green", (3600, "yellow"), (86400, "red")),
            custom={**timeseries_custom(lines=True), "showPoints": "always"},
            options=timeseries_options(),
            color="palette-classic",
        ),
        panel(
            "table",
            "State changes",
            (0, 17, 10, 10),
            [flux(changes)],
            unit="short",
            description="Every state change of the SIM in the time range, newest first.",
            options=table_options(),
            overrides=[by_name("_time", ("displayName", "time"))],
        ),
        panel(
            "table",
            "SIMs of the group with a state change",
            (10, 17, 14, 10),
            [flux(group_sims)],
            unit="short",
            description="SIMs matching the apn / country / partner boxes (empty: any) that"
            " changed state in the time range, with their latest state. Click a row to"
            " drill down to that SIM.",
            options=table_options(),
            data_links=[to_sim],
            mappings=state_mappings(by_code=False),
            overrides=[
                by_name("state", ("custom.cellOptions", {"type": "color-text"})),
                by_name("_time", ("displayName", "changed")),
            ],
        ),
    ]
    variables = [textbox(d, d, description=f"Only SIMs with this {d} (empty: any)") for d in DIMS]
    variables.append(
        {
            "current": {"selected": False, "text": "", "value": ""},
            "datasource": INFLUX,
            "definition": iccid_query,
            "description": "The SIM (ICCID). The list holds SIMs of the group boxes that"
            " changed state in the time range; type any ICCID to see another.",
            "hide": 0,
            "includeAll": False,
            "label": "ICCID",
            "multi": False,
            "name": "iccid",
            "options": [],
            "query": iccid_query,
            "refresh": 2,
            "regex": "",
            "skipUrlSync": False,
            "sort": 1,
            "type": "query",
        }
    )
    variables.append(SIMWATCH_URL_VAR)
    return dashboard(
        SIM_UID,
        "simwatch / SIM drill-down",
        "One SIM's state, data and rhythm over time, from InfluxDB.",
        panels=panels,
        variables=variables,
        links=[api_link("simwatch API: this SIM", "/api/v1/sims/${iccid}")],
        time_from="now-2d",
    )


# ---- output -----------------------------------------------------------------------------


def build() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    boards = {"fleet.json": fleet(), "incidents.json": incidents(), "sim.json": sim()}
    return {name: json.dumps(board, indent=2) + "\n" for name, board in boards.items()}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare, write nothing")
    parser.add_argument("--out", type=Path, default=OUT, help="output folder")
    args = parser.parse_args(argv)
    out: Path = args.out
    stale = []
    for name, text in build().items():
        path = out / name
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(path)
        if not args.check:
            out.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if args.check and stale:
        names = ", ".join(str(p) for p in stale)
        print(f"out of date (run python grafana/build.py): {names}", file=sys.stderr)
        return 1
    for path in stale:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
