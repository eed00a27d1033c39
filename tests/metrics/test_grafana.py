"""grafana/: committed dashboards match the generator, queries name real metrics and parse,
and the Prometheus config, alert rules and their unit tests pass promtool."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from qa import dashboards
from qa.metrics import QAMetrics, metric_names

METRIC = re.compile(r"\b(qa_[a-z0-9_]+)")


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd)


@pytest.fixture(scope="module")
def boards() -> dict[str, dict]:
    return {name: json.loads(text) for name, text in dashboards.build_dashboards().items()}


def test_committed_dashboards_match_the_generator(repo):
    committed = repo / "grafana" / "dashboards"
    assert dashboards.stale_dashboards(committed) == [], "run: qa dashboards"
    assert sorted(p.name for p in committed.glob("*.json")) == sorted(
        dashboards.build_dashboards())


def test_stale_dashboards_are_detected(tmp_path):
    dashboards.write_dashboards(tmp_path)
    assert dashboards.stale_dashboards(tmp_path) == []
    board = json.loads((tmp_path / "floor.json").read_text())
    board["panels"][0]["title"] = "edited by hand"
    (tmp_path / "floor.json").write_text(json.dumps(board))
    (tmp_path / "agent.json").unlink()
    assert sorted(dashboards.stale_dashboards(tmp_path)) == ["agent.json", "floor.json"]


def test_queries_only_name_metrics_that_exist(boards, registry):
    known = metric_names(QAMetrics(registry))
    for name, board in boards.items():
        exprs = dashboards.expressions(board)
        exprs += [v["definition"] for v in board["templating"]["list"]]
        for expr in exprs:
            for metric in METRIC.findall(expr):
                assert metric in known, f"{name}: {expr} names unknown {metric}"


def test_queries_parse_as_promql(boards, tmp_path):
    # promtool has no expression checker; a recording rule per query makes it parse them.
    rules = []
    for board in boards.values():
        for i, expr in enumerate(dashboards.expressions(board)):
            expr = (expr.replace("$__range", "1h").replace("$agent", "alice")
                    .replace("$node", ".*"))
            rules.append({"record": f"dashboard:{board['uid'].replace('-', '_')}:{i}",
                          "expr": expr})
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_boards_cover_what_supervisors_agents_and_operators_need(boards, repo):
    titles = {name: {p["title"] for p in b["panels"]} for name, b in boards.items()}
    assert {"Active calls", "Calls past the warning", "Handle-time distribution",
            "Violations per rule", "Violations per agent", "Compliance rate", "Score bands",
            "Prompts per minute", "Talk utilisation per agent (1h)"} <= titles["floor.json"]
    assert {"Calls handled", "Steps missed", "Forbidden phrases", "Average score"} <= titles[
        "agent.json"]
    assert {"ASR latency p50 / p95", "Utterance queue depth", "Real-time factor",
            "Dropped audio", "RTP packets per second"} <= titles["pipeline.json"]
    node, variable = boards["agent.json"]["templating"]["list"]
    assert variable["name"] == "agent"
    assert variable["definition"] == 'label_values(qa_agent_calls_total{node=~"$node"}, agent)'
    assert all('agent="$agent"' in t["expr"] for p in boards["agent.json"]["panels"]
               for t in p["targets"])
    # Issue 11: every board sums over all nodes and filters by node; every metric a query
    # names is narrowed to the chosen nodes (All by default).
    for board in boards.values():
        assert board["templating"]["list"][0] == node
        assert node["name"] == "node" and node["multi"] and node["includeAll"]
        assert node["allValue"] == ".*"
        for expr in dashboards.expressions(board):
            for metric in re.finditer(r"\b(qa_[a-z0-9_]+|up)\b(?!\s*\()(\{[^}]*\})?", expr):
                assert (metric.group(2) or "").startswith('{node=~"$node"'), expr
    utilisation = next(p for p in boards["floor.json"]["panels"]
                       if p["title"].startswith("Talk utilisation"))
    steps = [s["value"] for s in utilisation["fieldConfig"]["defaults"]["thresholds"]["steps"]]
    assert steps == [None, 0.69, 0.74]
    exemplar_panels = [t for p in boards["floor.json"]["panels"] for t in p["targets"]
                       if t["exemplar"]]
    assert exemplar_panels and "qa_rule_events_total" in exemplar_panels[0]["expr"]
    # Every panel uses the provisioned datasource, and panels do not overlap.
    source = yaml.safe_load((repo / "grafana/provisioning/datasources/prometheus.yml")
                            .read_text())["datasources"][0]
    for board in boards.values():
        cells = set()
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] == source["uid"] == dashboards.DATASOURCE_UID
            g = panel["gridPos"]
            assert g["x"] + g["w"] <= 24
            cell = {(x, y) for x in range(g["x"], g["x"] + g["w"])
                    for y in range(g["y"], g["y"] + g["h"])}
            assert not cells & cell, f"{panel['title']} overlaps another panel"
            cells |= cell


def test_dashboard_provider_points_at_the_dashboards(repo):
    provider = yaml.safe_load((repo / "grafana/provisioning/dashboards/qa.yml").read_text())
    (entry,) = provider["providers"]
    assert entry["type"] == "file"
    assert "path" in entry["options"]


def test_promtool_checks_config_and_rules(repo):
    prom = repo / "grafana" / "prometheus"
    config = promtool("check", "config", str(prom / "prometheus.yml"))
    assert config.returncode == 0, config.stdout + config.stderr
    assert "1 rule files found" in config.stdout
    rules = promtool("check", "rules", str(prom / "alerts.yml"))
    assert rules.returncode == 0, rules.stdout + rules.stderr


def test_promtool_unit_tests_every_alert(repo):
    prom = repo / "grafana" / "prometheus"
    result = promtool("test", "rules", "alerts_test.yml", cwd=prom)
    assert result.returncode == 0, result.stdout + result.stderr
    alerts = {r["alert"] for g in yaml.safe_load((prom / "alerts.yml").read_text())["groups"]
              for r in g["rules"]}
    tested = yaml.safe_load((prom / "alerts_test.yml").read_text())["tests"]
    firing = {c["alertname"] for t in tested for c in t["alert_rule_test"] if c["exp_alerts"]}
    quiet = {c["alertname"] for t in tested for c in t["alert_rule_test"] if not c["exp_alerts"]}
    assert firing == alerts, f"alerts never seen firing: {alerts - firing}"
    assert quiet == alerts, f"alerts never seen quiet: {alerts - quiet}"
    # Every alert names a metric the exporter defines (or Prometheus' own `up`).
    known = metric_names(QAMetrics(CollectorRegistry()))
    for group in yaml.safe_load((prom / "alerts.yml").read_text())["groups"]:
        for rule in group["rules"]:
            for metric in METRIC.findall(rule["expr"]):
                assert metric in known, f"{rule['alert']} names unknown {metric}"
