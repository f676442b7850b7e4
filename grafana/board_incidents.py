# ruff: noqa: INP001 - a module of the standalone script grafana/build.py, not a package
"""The incidents dashboard (simwatch-incidents)."""

from __future__ import annotations

from widgets import (
    DIMS,
    INCIDENTS_UID,
    SIM_UID,
    SIMWATCH_URL_VAR,
    Json,
    api_link,
    by_name,
    columns,
    dashboard,
    drilldown_url,
    flux,
    link,
    panel,
    pipe,
    prom,
    stat_options,
    steps,
    table_options,
    timeseries_custom,
    timeseries_options,
)


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
