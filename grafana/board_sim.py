# ruff: noqa: INP001 - a module of the standalone script grafana/build.py, not a package
"""The per-SIM drill-down dashboard (simwatch-sim)."""

from __future__ import annotations

from typing import Final

from widgets import (
    DIMS,
    INFLUX,
    SIM_UID,
    SIMWATCH_URL_VAR,
    Json,
    api_link,
    by_name,
    columns,
    dashboard,
    flux,
    link,
    panel,
    pipe,
    stat_options,
    state_mappings,
    steps,
    table_options,
    textbox,
    timeseries_custom,
    timeseries_options,
)

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
