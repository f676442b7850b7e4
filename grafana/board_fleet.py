# ruff: noqa: INP001 - a module of the standalone script grafana/build.py, not a package
"""The fleet overview dashboard (simwatch-fleet)."""

from __future__ import annotations

from typing import Final

from widgets import (
    FLEET_UID,
    INCIDENTS_UID,
    PROM,
    SIM_UID,
    SIMWATCH_URL_VAR,
    Json,
    api_link,
    by_name,
    dashboard,
    link,
    panel,
    prom,
    row,
    stat_options,
    state_overrides,
    steps,
    table_options,
    timeseries_custom,
    timeseries_options,
    up_down_mappings,
)

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
            "Worst affected ratio per dimension",
            (9, 4, 5, 9),
            [prom("dim:simwatch_group_affected_ratio:max", "{{dim}}", instant=True)],
            unit="percentunit",
            description="Per dimension, the highest affected ratio of its values (_other and"
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
            "Affected ratio by ${dim} (10 highest)",
            (14, 4, 10, 9),
            [
                prom(
                    f"topk(10, simwatch_group_affected_ratio{{{GROUP}}})",
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
                    f"sum by (value) (simwatch_group_affected_ratio{{{GROUP}}})",
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
            options=table_options("Affected ratio"),
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
                    ("displayName", "Affected ratio"),
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
