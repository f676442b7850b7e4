"""The Grafana dashboards (grafana/): built from grafana/build.py, and every query works.

- The committed JSON is exactly what grafana/build.py generates (one source of truth).
- Static checks: datasources by uid (provisioned with those uids), template variables,
  units and thresholds, layout, links (to dashboards and variables that exist, and to
  simwatch API paths that exist).
- Every Prometheus query of every panel and variable runs against a real Prometheus
  scraping a running simwatch (tests/stack.py, a group incident open), with the template
  variables substituted by real values, and must return data.
- Every InfluxDB (Flux) query names only measurements, fields and tags of the documented
  schema (simwatch/sinks/influx/schema.py); no InfluxDB runs here.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from simwatch.http.openapi import openapi_document
from simwatch.shell.settings import EngineSettings
from simwatch.sinks.influx.schema import DIM_TAGS, SCHEMA

if TYPE_CHECKING:
    from collections.abc import Iterator

    from stack import Stack

pytest_plugins = ["stack"]
pytestmark = (
    pytest.mark.real_server
)  # the whole stack: simwatch, Prometheus, Alertmanager, VictoriaMetrics, Mosquitto

Json = dict[str, Any]

ROOT = Path(__file__).resolve().parent.parent
GRAFANA = ROOT / "grafana"
DASHBOARDS = GRAFANA / "dashboards"
PROVISIONING = GRAFANA / "provisioning"
DASHBOARDS_MOUNT = "/var/lib/grafana/dashboards"
RECORDING_RULES = ROOT / "deploy" / "prometheus" / "recording.rules.yml"

FLEET, INCIDENTS, SIM = "simwatch-fleet", "simwatch-incidents", "simwatch-sim"
DIMS = tuple(EngineSettings().dims)
PROM_DS = {"type": "prometheus", "uid": "prometheus"}
INFLUX_DS = {"type": "influxdb", "uid": "influxdb"}
UNITS = {"short", "none", "bytes", "percentunit", "s", "dateTimeFromNow"}

# Grafana's own variables, as the test substitutes them in PromQL
BUILTINS = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__interval_ms": "15000",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
}
# ${name}, ${name:format}, $name, [[name]]; dotted names are data-link fields
VAR_RE = re.compile(r"\$\{([\w.]+)(?::\w+)?\}|\$([A-Za-z_]\w*)|\[\[(\w+)\]\]")
LABEL_VALUES_RE = re.compile(r"^label_values\((?:(.+),\s*)?(\w+)\)$")


# ---- loading ----------------------------------------------------------------------------


def load_dashboards() -> dict[str, Json]:
    boards = {}
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text(encoding="utf-8"))
        boards[board["uid"]] = board
    return boards


BOARDS = load_dashboards()


def panels(board: Json) -> Iterator[Json]:
    """Every panel, rows' nested panels included, rows themselves excluded."""
    for p in board["panels"]:
        if p["type"] == "row":
            yield from p.get("panels", [])
        else:
            yield p


def variables(board: Json) -> dict[str, Json]:
    return {v["name"]: v for v in board["templating"]["list"]}


def targets(ds_type: str) -> Iterator[tuple[str, str, Json, Json]]:
    """(dashboard uid, panel title, panel, target) of every target of that datasource type."""
    for uid, board in BOARDS.items():
        for p in panels(board):
            for t in p["targets"]:
                if t["datasource"]["type"] == ds_type:
                    yield uid, p["title"], p, t


def variable_query(var: Json) -> str:
    query = var["query"]
    return str(query["query"] if isinstance(query, dict) else query)


def var_names(text: str) -> set[str]:
    return {a or b or c for a, b, c in VAR_RE.findall(text)}


def all_strings(node: object) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from all_strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from all_strings(value)


def links_of(board: Json) -> Iterator[tuple[str, Json]]:
    """(where, link) of every dashboard link, panel link and data link."""
    for dashboard_link in board["links"]:
        yield "dashboard", dashboard_link
    for p in panels(board):
        for panel_link in p.get("links", []):
            yield p["title"], panel_link
        config = p["fieldConfig"]
        for data_link in config["defaults"].get("links", []):
            yield p["title"], data_link
        for override in config["overrides"]:
            for prop in override["properties"]:
                if prop["id"] == "links":
                    for data_link in prop["value"]:
                        yield p["title"], data_link


# ---- the generator ----------------------------------------------------------------------


def test_committed_dashboards_are_the_build() -> None:
    result = subprocess.run(
        [sys.executable, str(GRAFANA / "build.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert set(BOARDS) == {FLEET, INCIDENTS, SIM}


def test_build_check_reports_a_stale_file(tmp_path: Path) -> None:
    build = [sys.executable, str(GRAFANA / "build.py"), "--out", str(tmp_path)]
    assert subprocess.run(build, capture_output=True, check=False, timeout=60).returncode == 0
    (tmp_path / "fleet.json").write_text("{}\n", encoding="utf-8")
    result = subprocess.run(
        [*build, "--check"], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 1
    assert "fleet.json" in result.stderr


# ---- provisioning -----------------------------------------------------------------------


def test_datasource_provisioning() -> None:
    files = sorted((PROVISIONING / "datasources").glob("*.yml"))
    assert files
    sources = {
        d["uid"]: d
        for path in files
        for d in yaml.safe_load(path.read_text(encoding="utf-8"))["datasources"]
    }
    prom = sources["prometheus"]
    assert prom["type"] == "prometheus"
    assert prom["url"] == "http://prometheus:9090"
    influx = sources["influxdb"]
    assert influx["type"] == "influxdb"
    assert influx["url"] == "http://influxdb:8086"
    assert influx["jsonData"]["version"] == "Flux"
    assert influx["jsonData"]["organization"] == "simwatch"
    assert influx["jsonData"]["defaultBucket"] == "simwatch"
    # the token comes from Grafana's environment, never from the file
    assert re.fullmatch(r"\$\{?[A-Z][A-Z0-9_]*\}?", influx["secureJsonData"]["token"])
    used = {
        t["datasource"]["uid"]
        for board in BOARDS.values()
        for p in panels(board)
        for t in p["targets"]
    }
    assert used == {"prometheus", "influxdb"}
    assert used <= set(sources)


def test_dashboard_provisioning() -> None:
    files = sorted((PROVISIONING / "dashboards").glob("*.yml"))
    assert files
    providers = [p for path in files for p in yaml.safe_load(path.read_text())["providers"]]
    assert [p["type"] for p in providers] == ["file"]
    assert providers[0]["options"]["path"] == DASHBOARDS_MOUNT


# ---- static checks ----------------------------------------------------------------------


def test_datasources_are_referenced_by_uid() -> None:
    for uid, board in BOARDS.items():
        for p in panels(board):
            where = f"{uid}: {p['title']}"
            assert p["datasource"] in (PROM_DS, INFLUX_DS), where
            assert p["targets"], where
            for t in p["targets"]:
                assert t["datasource"] == p["datasource"], where
                assert ("expr" in t) == (t["datasource"] == PROM_DS), where
                assert ("query" in t) == (t["datasource"] == INFLUX_DS), where
            assert len({t["refId"] for t in p["targets"]}) == len(p["targets"]), where
        for var in board["templating"]["list"]:
            if var["type"] == "query":
                assert var["datasource"] in (PROM_DS, INFLUX_DS), f"{uid}: ${var['name']}"
        for annotation in board["annotations"]["list"]:
            assert annotation["datasource"]["uid"] == "-- Grafana --"


def test_layout() -> None:
    for uid, board in BOARDS.items():
        assert board["tags"] == ["simwatch"]
        assert board["id"] is None  # provisioned: Grafana assigns the database id
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), uid
        taken: set[tuple[int, int]] = set()
        for p in board["panels"]:
            g = p["gridPos"]
            assert g["x"] >= 0, (uid, p["title"])
            assert g["w"] > 0, (uid, p["title"])
            assert g["x"] + g["w"] <= 24, (uid, p["title"])
            cells = {
                (x, y)
                for x in range(g["x"], g["x"] + g["w"])
                for y in range(g["y"], g["y"] + g["h"])
            }
            assert not cells & taken, f"{uid}: {p['title']} overlaps another panel"
            taken |= cells


def test_variables() -> None:
    fleet = variables(BOARDS[FLEET])
    assert variable_query(fleet["dim"]) == "label_values(simwatch_group_sims, dim)"
    assert fleet["value"]["multi"]
    assert fleet["value"]["includeAll"]
    assert fleet["value"]["allValue"] == ".*"
    assert "$dim" in variable_query(fleet["value"])
    sim = variables(BOARDS[SIM])
    assert sim["iccid"]["datasource"] == INFLUX_DS
    assert set(DIMS) <= set(sim)  # the group boxes the incident links fill in
    for uid, board in BOARDS.items():
        known = set(variables(board)) | set(BUILTINS)
        for text in all_strings({"panels": board["panels"], "vars": board["templating"]}):
            for name in var_names(text):
                if name.startswith("__"):
                    continue  # Grafana's: __url_time_range, __data.fields.x, __value.raw
                assert name in known, f"{uid}: ${name} is not a variable: {text[:120]}"


def unit_of(p: Json, ref: str) -> str:
    """The unit of target ``ref``'s values: a per-field override, else the default."""
    for override in p["fieldConfig"]["overrides"]:
        matcher = override["matcher"]
        names = {f"Value #{ref}"} if len(p["targets"]) > 1 else set()
        if (matcher["id"] == "byName" and matcher["options"] in names) or (
            matcher["id"] == "byFrameRefID" and matcher["options"] == ref
        ):
            for prop in override["properties"]:
                if prop["id"] == "unit":
                    return str(prop["value"])
    return str(p["fieldConfig"]["defaults"]["unit"])


def test_units_and_thresholds() -> None:
    used: set[str] = set()
    for uid, board in BOARDS.items():
        for p in panels(board):
            where = f"{uid}: {p['title']}"
            defaults = p["fieldConfig"]["defaults"]
            assert defaults["unit"] in UNITS, where
            units = {defaults["unit"]}
            for override in p["fieldConfig"]["overrides"]:
                units |= {x["value"] for x in override["properties"] if x["id"] == "unit"}
            assert units <= UNITS, where
            used |= units
            for t in p["targets"]:
                if "expr" not in t:
                    continue
                metrics = set(re.findall(r"\bsimwatch_\w+|\bprocess_\w+", t["expr"]))
                unit = unit_of(p, t["refId"])
                if any(m.endswith("_bytes") for m in metrics):
                    assert unit == "bytes", where
                if any(m.endswith("_ratio") for m in metrics):
                    assert unit == "percentunit", where
                if any(m.endswith("_seconds") for m in metrics):
                    assert unit == "s", where
            thresholds = [defaults["thresholds"]] + [
                x["value"]
                for o in p["fieldConfig"]["overrides"]
                for x in o["properties"]
                if x["id"] == "thresholds"
            ]
            for steps in thresholds:
                assert steps["mode"] == "absolute", where
                values = [s["value"] for s in steps["steps"]]
                assert values[0] is None, where
                assert values[1:] == sorted(values[1:]), where
    assert {"bytes", "percentunit", "s"} <= used


def test_metrics_are_documented() -> None:
    documented = set(re.findall(r"`(simwatch_\w+)`", (ROOT / "docs/metrics.md").read_text()))
    for uid, title, _p, t in targets("prometheus"):
        raw = re.sub(r"\b[a-z_]+:\w+:\w+\b", "", t["expr"])  # recorded series: see below
        for metric in re.findall(r"\bsimwatch_\w+", raw):
            assert metric in documented, f"{uid}: {title}: {metric}"


def test_recorded_series_are_recording_rules() -> None:
    """Series named level:metric:operations come from deploy/prometheus/recording.rules.yml
    (the live test loads that file into its Prometheus)."""
    used = {
        name
        for _uid, _title, _p, t in targets("prometheus")
        for name in re.findall(r"\b[a-z_]+:\w+:\w+\b", t["expr"])
    }
    if not used:
        return
    rules = yaml.safe_load(RECORDING_RULES.read_text(encoding="utf-8"))
    recorded = {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}
    assert used <= recorded, used - recorded


def api_path_patterns() -> list[re.Pattern[str]]:
    paths = openapi_document()["paths"]
    assert isinstance(paths, dict)
    return [
        re.compile("^" + re.sub(r"\\\{\w+\\\}", "[^/?]+", re.escape(path)) + r"(\?|$)")
        for path in paths
    ]


def test_links() -> None:
    api_paths = api_path_patterns()
    assert any(p.match("/api/v1/sims/89490200001234567890") for p in api_paths)
    drilldowns = 0
    for uid, board in BOARDS.items():
        api_links = 0
        for where, link in links_of(board):
            if link.get("type") == "dashboards":
                continue
            url = link["url"]
            if url.startswith("${simwatch_url}"):
                concrete = re.sub(r"\$\{[\w.:]+\}", "x", url.removeprefix("${simwatch_url}"))
                assert any(p.match(concrete) for p in api_paths), f"{uid}: {where}: {url}"
                api_links += 1
                continue
            match = re.fullmatch(r"/d/([\w-]+)/[\w-]+(?:\?(.*))?", url)
            assert match, f"{uid}: {where}: {url}"
            target = BOARDS.get(match.group(1))
            assert target is not None, f"{uid}: {where}: no dashboard {match.group(1)}"
            for param in (match.group(2) or "").split("&"):
                if not param.startswith("var-"):
                    continue
                name = param.removeprefix("var-").split("=")[0]
                # var-${dim}=...: the fleet's dimension variable names the target variable
                names = set(DIMS) if name == "${dim}" else {name}
                missing = names - set(variables(target))
                assert not missing, f"{uid}: {where}: {match.group(1)} lacks {missing}"
            if match.group(1) == SIM and uid != SIM:
                drilldowns += 1
        assert api_links, f"{uid} has no link to simwatch's API"
    assert drilldowns >= 5  # incidents (table, timeline, series) and fleet groups
    incident_links = [link.get("url", "") for _w, link in links_of(BOARDS[INCIDENTS])]
    assert any(
        f"/d/{SIM}/" in url and "var-partner=${__data.fields.partner}" in url
        for url in incident_links
    )


# ---- Prometheus queries, live -----------------------------------------------------------


def substitute(text: str, env: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        if name in env:
            return env[name]
        if name in BUILTINS:
            return BUILTINS[name]
        raise KeyError(f"no value for ${name} in {text!r}")

    return VAR_RE.sub(one, text)


def variable_options(stack: Stack, var: Json, env: dict[str, str]) -> list[str]:
    """Real values of a Prometheus query variable: every value (at most 5) of a
    single-value variable; for a variable with "All", its all-value and the value with
    the largest sum (a real group with SIMs that report)."""
    match = LABEL_VALUES_RE.match(variable_query(var))
    assert match, f"${var['name']}: not a label_values() query"
    selector, label = substitute(match.group(1) or "", env), match.group(2)
    params = [("match[]", selector)] if selector else []
    answer = stack.prometheus_api(f"/api/v1/label/{label}/values", params)
    assert answer["status"] == "success", answer
    values: list[str] = answer["data"]
    assert values, f"${var['name']}: no values for {variable_query(var)} ({env})"
    if not var.get("includeAll"):
        return values[:5]
    top = stack.query(f"topk(1, sum by ({label}) ({selector}))")
    return [var["allValue"], top[0]["metric"][label]]


def environments(stack: Stack, board: Json) -> list[dict[str, str]]:
    """Every combination of real values of the dashboard's Prometheus query variables."""
    envs: list[dict[str, str]] = [{}]
    for var in board["templating"]["list"]:
        if var["type"] == "query" and var["datasource"] == PROM_DS:
            envs = [
                {**env, var["name"]: value}
                for env in envs
                for value in variable_options(stack, var, env)
            ]
        elif var["type"] in ("textbox", "constant"):
            envs = [{**env, var["name"]: var["query"]} for env in envs]
    return envs


def fetch(stack: Stack, expr: str, *, instant: bool) -> tuple[str | None, list[Json]]:
    """(None when the query succeeds with data, else why not; the result's series)."""
    if instant:
        answer = stack.prometheus_api("/api/v1/query", {"query": expr})
    else:
        end = time.time()
        params = {"query": expr, "start": f"{end - 300:.3f}", "end": f"{end:.3f}", "step": "5"}
        answer = stack.prometheus_api("/api/v1/query_range", params)
    if answer.get("status") != "success":
        return f"error {answer.get('errorType')}: {answer.get('error')}", []
    result: list[Json] = answer["data"]["result"]
    if not result or not any(r.get("values") or r.get("value") for r in result):
        return "empty result", result
    return None, result


def run(stack: Stack, expr: str, *, instant: bool) -> str | None:
    """None when the query succeeds with data, else why not."""
    return fetch(stack, expr, instant=instant)[0]


def field_names(p: Json, t: Json, result: list[Json]) -> set[str]:
    """Names Grafana gives the fields of a target's result: labels, legends, Value #ref."""
    names = {"Time", "Value", f"Value #{t['refId']}"}
    for series in result:
        labels = series["metric"]
        names |= set(labels)
        names.add(render_legend(t.get("legendFormat", ""), labels))
    return names


def render_legend(legend: str, labels: dict[str, str]) -> str:
    """A legend format with the series' labels in place, as Grafana names the series."""
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), legend)


def test_every_prometheus_query_returns_data(stack: Stack) -> None:
    checked: set[tuple[str, bool]] = set()
    problems = []
    for uid, board in BOARDS.items():
        envs = environments(stack, board)
        for p in panels(board):
            if p["datasource"] != PROM_DS:
                continue
            names: set[str] = set()
            for t in p["targets"]:
                assert t["instant"] != t["range"]
                for env in envs:
                    expr = substitute(t["expr"], env)
                    why, result = fetch(stack, expr, instant=bool(t["instant"]))
                    names |= field_names(p, t, result)
                    if (expr, bool(t["instant"])) in checked:
                        continue
                    checked.add((expr, bool(t["instant"])))
                    if why is not None:
                        problems.append(f"{uid}: {p['title']} [{t['refId']}] {env}: {why}: {expr}")
            # an override on a field the queries never return would be silently ignored
            for override in p["fieldConfig"]["overrides"]:
                name = override["matcher"]["options"]
                if name not in names:
                    problems.append(f"{uid}: {p['title']}: override of unknown field {name!r}")
    assert not problems, "\n".join(problems)
    assert len(checked) >= 40  # every dimension, "All" and one real value


def test_influx_overrides_name_columns() -> None:
    for uid, title, p, t in targets("influxdb"):
        read, created = _columns(t["query"])
        for override in p["fieldConfig"]["overrides"]:
            name = override["matcher"]["options"]
            assert name in read | created, f"{uid}: {title}: override of {name!r}"


def test_dimension_variable_lists_the_engine_dims(stack: Stack) -> None:
    dim = variables(BOARDS[FLEET])["dim"]
    assert set(variable_options(stack, dim, {})) == set(DIMS)


def test_open_incident_rows_carry_the_group_for_the_drilldown(stack: Stack) -> None:
    table = next(p for p in panels(BOARDS[INCIDENTS]) if p["title"] == "Open incidents")
    rows = stack.query(table["targets"][0]["expr"])
    assert rows
    for series in rows:
        labels = series["metric"]
        assert labels["id"].startswith("inc-")
        assert labels["severity"] == "page"
        # the group: at least one dimension label, the drill-down's variables
        assert {k for k, v in labels.items() if v} & set(DIMS)
        assert float(series["value"][1]) >= 1  # affected SIMs


def test_query_check_fails_on_empty_and_on_errors(stack: Stack) -> None:
    assert run(stack, "simwatch_sims", instant=True) is None
    assert run(stack, "simwatch_sims", instant=False) is None
    assert run(stack, 'simwatch_sims{state="no_such_state"}', instant=True) == "empty result"
    assert run(stack, "simwatch_no_such_metric", instant=False) == "empty result"
    why = run(stack, "sum by (state (simwatch_sims)", instant=True)
    assert why is not None
    assert why.startswith("error bad_data")
    with pytest.raises(KeyError):
        substitute('simwatch_group_sims{dim="$nope"}', {})


# ---- Flux queries against the InfluxDB schema -------------------------------------------

SYSTEM_COLUMNS = {"_time", "_value", "_field", "_measurement", "_start", "_stop"}
NUMERIC_FN = re.compile(
    r"fn:\s*(sum|mean|median|max|min|count)\b|\|>\s*(sum|mean|median|derivative|difference)\("
)


def _columns(query: str) -> tuple[set[str], set[str]]:
    """(column names a query reads, names it creates by rename)."""
    read: set[str] = set()
    for names in re.findall(r"(?:columns|rowKey|columnKey):\s*\[([^\]]*)\]", query):
        read |= set(re.findall(r'"([^"]+)"', names))
    read |= set(re.findall(r'(?:valueColumn|column|tag):\s*"([^"]+)"', query))
    read |= set(re.findall(r"\br\.([A-Za-z_]\w*)", query))
    read |= set(re.findall(r'\br\["([^"]+)"\]', query))
    created: set[str] = set()
    for mapping in re.findall(r"rename\(columns:\s*\{([^}]*)\}", query):
        for old, new in re.findall(r'"?(\w+)"?\s*:\s*"([^"]+)"', mapping):
            read.add(old)
            created.add(new)
    return read, created


def flux_problems(query: str) -> list[str]:
    """What a Flux query names that the schema does not have (empty: all good)."""
    problems = []
    if not re.search(r"from\(bucket:\s*(v\.defaultBucket|\"simwatch\")\)", query):
        problems.append("reads no bucket, or not v.defaultBucket / simwatch")
    measurements = set(re.findall(r'r\._measurement\s*==\s*"([^"]*)"', query))
    if not measurements:
        problems.append("names no measurement (r._measurement == ...)")
    unknown = measurements - set(SCHEMA)
    problems += [f"unknown measurement {m!r}" for m in sorted(unknown)]
    known = [SCHEMA[m] for m in sorted(measurements - unknown)]
    tags = {d for m in known for t in m.tags for d in (DIMS if t == DIM_TAGS else (t,))}
    fields = {name: kind for m in known for name, kind in m.fields.items()}
    named_fields = set(re.findall(r'r\._field\s*==\s*"([^"]*)"', query))
    problems += [f"unknown field {f!r}" for f in sorted(named_fields - set(fields))]
    read, created = _columns(query)
    allowed = SYSTEM_COLUMNS | tags | set(fields) | created
    problems += [f"unknown tag or column {c!r}" for c in sorted(read - allowed)]
    types = {fields[f] for f in named_fields if f in fields}
    if NUMERIC_FN.search(query) and "string" in types:
        problems.append("a numeric function over a string field")
    if re.search(r"r\._value\s*[-+*/]\s*\d+\.\d+", query) and types != {"float"}:
        problems.append("float arithmetic on a field that is not a float")
    return problems


def flux_queries() -> Iterator[tuple[str, str]]:
    for uid, title, _p, t in targets("influxdb"):
        yield f"{uid}: {title}", t["query"]
    for uid, board in BOARDS.items():
        for var in board["templating"]["list"]:
            if var["type"] == "query" and var["datasource"] == INFLUX_DS:
                yield f"{uid}: ${var['name']}", variable_query(var)


def test_flux_queries_match_the_influx_schema() -> None:
    queries = list(flux_queries())
    assert len(queries) >= 10
    problems = [f"{where}: {p}" for where, q in queries for p in flux_problems(q)]
    assert not problems, "\n".join(problems)
    # every measurement the drill-down and the incident history need is used
    named = {m for _w, q in queries for m in re.findall(r'_measurement == "(\w+)"', q)}
    assert {"simwatch_sim_state", "simwatch_sim_usage", "simwatch_incident"} <= named


def test_flux_variables_are_substituted_in_the_drilldown() -> None:
    sim = variables(BOARDS[SIM])
    env = dict.fromkeys(sim, "x")
    for where, query in flux_queries():
        # as Grafana sends it: the variables' values in place
        assert not flux_problems(substitute(query, env)), where


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ('r._measurement == "simwatch_nope"', "unknown measurement 'simwatch_nope'"),
        ('r._measurement == "simwatch_sim_state" and r._field == "bytes"', "unknown field"),
        ('r._measurement == "simwatch_group" and r.iccid == "1"', "unknown tag or column 'iccid'"),
        (
            'r._measurement == "simwatch_sim_usage") |> keep(columns: ["_time", "imsi"])',
            "unknown tag or column 'imsi'",
        ),
        (
            'r._measurement == "simwatch_sim_usage") |> group(columns: ["plan"])',
            "unknown tag or column 'plan'",
        ),
        (
            (
                'r._measurement == "simwatch_sim_state" and r._field == "state")'
                " |> aggregateWindow(every: 1m, fn: sum)"
            ),
            "a numeric function over a string field",
        ),
        (
            (
                'r._measurement == "simwatch_sim_usage" and r._field == "bytes")'
                " |> map(fn: (r) => ({r with _value: r._value * 1000.0}))"
            ),
            "float arithmetic",
        ),
        ('r._field == "bytes"', "names no measurement"),
    ],
)
def test_flux_check_catches_schema_errors(query: str, problem: str) -> None:
    full = f"from(bucket: v.defaultBucket) |> range(start: -1h) |> filter(fn: (r) => {query}"
    found = flux_problems(full)
    assert any(problem in p for p in found), found


def test_flux_check_accepts_dims_pivot_and_rename() -> None:
    query = """
        from(bucket: "simwatch") |> range(start: -1h)
          |> filter(fn: (r) => r._measurement == "simwatch_incident")
          |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
          |> keep(columns: ["_time", "id", "dims", "affected", "partner_x"])
    """
    assert flux_problems(query) == ["unknown tag or column 'partner_x'"]
    query = """
        from(bucket: v.defaultBucket) |> range(start: -1h)
          |> filter(fn: (r) => r._measurement == "simwatch_sim_state" and r.partner == "1")
          |> rename(columns: {_value: "state_now"}) |> keep(columns: ["state_now", "apn"])
    """
    assert flux_problems(query) == []
