"""The alert rules, the example Prometheus config and the Grafana dashboard in k8s/monitoring/.

promtool (Debian package ``prometheus``) checks and unit-tests the rules (``prometheus-rules.test.yaml``),
checks the config, and parses every dashboard query; those tests skip with a reason when it is missing.
Independently of promtool, every metric the rules and the dashboard name must be one a running node exports.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.metered import metered_region, scrape_text

MONITORING = Path(__file__).resolve().parents[2] / "k8s" / "monitoring"
RULES = MONITORING / "prometheus-rules.yaml"
RULE_TESTS = MONITORING / "prometheus-rules.test.yaml"
CONFIG = MONITORING / "prometheus.yml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
ALERTS = {
    "ReactmeshAggregatorLagHigh",
    "ReactmeshCommitLatencyHigh",
    "ReactmeshIngestStalled",
    "ReactmeshReplicationLagHigh",
    "ReactmeshRegionUnreachable",
    "ReactmeshGossipPeerUnreachable",
    "ReactmeshDedupeRateSpike",
}

needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="promtool not installed: apt-get install -y --no-install-recommends prometheus",
)


def promtool(*args: str, cwd: Path = MONITORING) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def dashboard_queries() -> list[str]:
    board: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in board["panels"] for t in p.get("targets", [])]


@needs_promtool
def test_alert_rules_pass_promtool_check_and_their_unit_tests() -> None:
    check = promtool("check", "rules", RULES.name)
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"{len(ALERTS)} rules found" in check.stdout
    unit = promtool("test", "rules", RULE_TESTS.name)
    assert unit.returncode == 0, unit.stdout + unit.stderr


def test_every_alert_is_defined_and_unit_tested() -> None:
    defined = set(re.findall(r"^\s*- alert: (\w+)$", RULES.read_text(), re.M))
    tested = set(re.findall(r"^\s*alertname: (\w+)$", RULE_TESTS.read_text(), re.M))
    assert defined == ALERTS
    assert tested == ALERTS


@needs_promtool
def test_example_prometheus_config_passes_promtool_check_config(tmp_path: Path) -> None:
    text = CONFIG.read_text()
    probe = tmp_path / "probe.yml"
    probe.write_text("scrape_configs:\n  - job_name: k\n    kubernetes_sd_configs:\n      - role: pod\n")
    if promtool("check", "config", str(probe)).returncode != 0:
        # Debian builds Prometheus without Kubernetes discovery: check the rest of the file as written.
        sd = "kubernetes_sd_configs:\n      - role: pod\n"
        assert sd in text
        text = text.replace(sd, 'static_configs:\n      - targets: ["127.0.0.1:9100"]\n')
    shutil.copy(RULES, tmp_path / RULES.name)
    (tmp_path / CONFIG.name).write_text(text)
    check = promtool("check", "config", CONFIG.name, cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 7 rules found" in check.stdout


@needs_promtool
def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    queries = dashboard_queries()
    assert len(queries) >= 25
    rules = ["groups:", "  - name: dashboard", "    rules:"]
    for i, expr in enumerate(queries):
        concrete = expr.replace("$__rate_interval", "1m").replace("$region", "a")
        rules += [f"      - record: dashboard:query_{i}", f"        expr: {json.dumps(concrete)}"]
    (tmp_path / "dashboard-rules.yaml").write_text("\n".join(rules) + "\n")
    check = promtool("check", "rules", "dashboard-rules.yaml", cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr


def test_dashboard_is_well_formed() -> None:
    board = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in board["templating"]["list"]}
    assert variables == {"datasource", "region"}
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"], panel["title"]


async def test_rules_and_dashboard_name_only_metrics_a_node_exports(tmp_path: Path) -> None:
    async with metered_region(tmp_path) as region:
        texts = [await scrape_text(region.front.addresses["metrics"])]
        texts.append(await scrape_text(region.aggregator.addresses["metrics"]))
    exported: set[str] = set()
    for text in texts:
        for family in text_string_to_metric_families(text):
            suffixes = {
                "counter": ("_total",),
                "histogram": ("_bucket", "_count", "_sum"),
            }.get(family.type, ("",))
            exported.update(family.name + s for s in (*suffixes, ""))  # prose may name a histogram family
    referenced = set(re.findall(r"\b(?:reactmesh|process)_[a-z0-9_]+", RULES.read_text()))
    for expr in dashboard_queries():
        referenced.update(re.findall(r"\b(?:reactmesh|process)_[a-z0-9_]+", expr))
    assert {n for n in referenced if n.startswith("reactmesh_aggregator_")}, "the aggregator's metrics are used"
    assert referenced - exported == set()
