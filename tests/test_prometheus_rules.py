"""deploy/prometheus: the config and rule files pass promtool, and the rules' unit tests run.

- ``promtool check config`` on prometheus.yml (which also checks both rule files it
  names), ``promtool check rules`` on each rule file, ``promtool test rules`` on every
  test file in deploy/prometheus/tests/.
- The unit tests cover every alert both firing and not firing, and every recording rule.
- Every alert has a severity (page or ticket), a summary, a description and a runbook
  URL whose anchor is a section of docs/operations.md; every simwatch metric a rule uses
  is one the collector exports.
"""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from servers import PROMTOOL, binary

from simwatch.core.engine import Engine
from simwatch.http.metrics import EngineCollector
from simwatch.shell.health import CheckpointStats, ClusterStats, DaemonHealth

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy" / "prometheus"
RULE_FILES = ("alerts.rules.yml", "recording.rules.yml")
TEST_FILES = sorted((DEPLOY / "tests").glob("*.yml"))
RUNBOOK = "https://github.com/simwatch/simwatch/blob/main/docs/operations.md#"

needs_promtool = pytest.mark.skipif(binary(PROMTOOL) is None, reason="promtool is not installed")


def promtool(*args: str) -> tuple[int, str]:
    exe = binary(PROMTOOL)
    assert exe is not None
    done = subprocess.run(
        [exe, *args], cwd=DEPLOY, capture_output=True, check=False, timeout=120, text=True
    )
    return done.returncode, done.stdout + done.stderr


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def rules(kind: str) -> list[dict[str, Any]]:
    """Every rule of the rule files that has ``kind`` ("alert" or "record")."""
    found = [
        rule
        for name in RULE_FILES
        for group in load(DEPLOY / name)["groups"]
        for rule in group["rules"]
        if kind in rule
    ]
    assert found
    return found


# ---- promtool ------------------------------------------------------------------------------


@needs_promtool
def test_promtool_check_config() -> None:
    code, output = promtool("check", "config", "prometheus.yml")
    assert code == 0, output
    assert "SUCCESS: 2 rule files found" in output
    assert "WARNING" not in output.upper(), output


@needs_promtool
@pytest.mark.parametrize("name", RULE_FILES)
def test_promtool_check_rules(name: str) -> None:
    code, output = promtool("check", "rules", name)
    assert code == 0, output
    assert "SUCCESS" in output
    assert "WARNING" not in output.upper(), output


@needs_promtool
@pytest.mark.parametrize("path", TEST_FILES, ids=[p.name for p in TEST_FILES])
def test_promtool_test_rules(path: Path) -> None:
    code, output = promtool("test", "rules", str(path.relative_to(DEPLOY)))
    assert code == 0, output
    assert "SUCCESS" in output


# ---- what the unit tests cover ---------------------------------------------------------------


def unit_tests() -> list[dict[str, Any]]:
    tests = [test for path in TEST_FILES for test in load(path)["tests"]]
    assert tests
    return tests


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    firing: Counter[str] = Counter()
    quiet: Counter[str] = Counter()
    for test in unit_tests():
        for case in test.get("alert_rule_test", []):
            (firing if case["exp_alerts"] else quiet)[case["alertname"]] += 1
    names = {rule["alert"] for rule in rules("alert")}
    assert names - set(firing) == set(), "alerts never tested firing"
    assert names - set(quiet) == set(), "alerts never tested quiet"
    # both severities of SimwatchSinkFailing fire somewhere
    severities = {
        alert["exp_labels"]["severity"]
        for test in unit_tests()
        for case in test.get("alert_rule_test", [])
        if case["alertname"] == "SimwatchSinkFailing"
        for alert in case["exp_alerts"]
    }
    assert severities == {"page", "ticket"}


def test_every_recording_rule_is_tested() -> None:
    tested = set()
    for test in unit_tests():
        for case in test.get("promql_expr_test", []):
            tested.update(re.findall(r"[a-z_]+:[a-z_]+:[a-z0-9_]+", case["expr"]))
    recorded = {rule["record"] for rule in rules("record")}
    assert recorded - tested == set()


# ---- what the rules say ------------------------------------------------------------------------


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes."""
    out = set()
    fenced = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif line.startswith("#") and not fenced:
            title = line.lstrip("#").strip().lower()
            out.add(re.sub(r"[^a-z0-9 _-]", "", title).replace(" ", "-"))
    return out


def test_alerts_have_severity_annotations_and_a_runbook_section() -> None:
    sections = anchors((ROOT / "docs" / "operations.md").read_text(encoding="utf-8"))
    for rule in rules("alert"):
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"page", "ticket"}, name
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url"}, name
        url = annotations["runbook_url"]
        assert url.startswith(RUNBOOK), name
        assert url.removeprefix(RUNBOOK) in sections, (name, url)
        assert name.startswith("Simwatch"), name


def test_rules_use_only_metrics_the_collector_exports() -> None:
    checkpoints = CheckpointStats(last_success=0.0, last_duration_s=0.1)
    collector = EngineCollector(
        Engine(),
        DaemonHealth(queue_depth=lambda: 0),
        tuple,
        version="0",
        checkpoint_stats=lambda: checkpoints,
        cluster_stats=lambda: ClusterStats(node="n1"),
    )
    exported = {"up"}
    suffix = {"counter": "_total", "info": "_info"}
    for family in collector.collect():
        exported.add(family.name + suffix.get(family.type, ""))
    used = set()
    for rule in [*rules("alert"), *rules("record")]:
        expr = re.sub(r"[a-z_]+:[a-z_]+:[a-z0-9_]+", "", rule["expr"])  # recorded names
        used.update(re.findall(r"\b(simwatch_[a-z_]+|up)\b", expr))
    assert used
    assert used - exported == set()
