"""A real Prometheus scrapes the exporter: values, exemplars and every dashboard query."""

from __future__ import annotations

import pytest

from qa import dashboards
from qa.metrics import MetricsListener, start_metrics_server
from qa.types import EventKind, Severity

from .conftest import call_info
from .prom import PromServer
from .test_listener import ev


@pytest.mark.slow
def test_prometheus_scrapes_the_exporter(metrics, repo):
    listener = MetricsListener(metrics)
    listener.call_started(call_info("call-42", "alice"))
    listener.call_started(call_info("call-43", "bob"))
    listener.event(ev("call-42", EventKind.FORBIDDEN_PHRASE, "shirking", Severity.CRITICAL,
                      -20, "Do not say that."))
    with (start_metrics_server(metrics.registry, port=0) as exporter,
          PromServer(f"127.0.0.1:{exporter.port}",
                     rule_files=(repo / "grafana/prometheus/alerts.yml",)) as prom):
        assert prom.wait_for('up{job="qa"}', lambda v: v == 1) == 1
        assert prom.value("sum(qa_calls_active)") == 2
        assert prom.value('qa_agent_calls_total{agent="alice"}') == 1
        assert prom.value('qa_forbidden_phrase_hits_total{rule="shirking"}') == 1
        # A later update shows up on the next scrape.
        listener.call_started(call_info("call-44", "alice"))
        assert prom.wait_for("sum(qa_calls_active)", lambda v: v == 3) == 3
        # Prometheus scraped OpenMetrics, so the rule event's exemplar names the call.
        assert {"call_id": "call-42"} in prom.exemplars("qa_rule_events_total")
        assert "QAASRLatencyHigh" in prom.rules()
        # Every dashboard query runs on the real server (no parse or evaluation error).
        for board in (dashboards.floor(), dashboards.agent(), dashboards.pipeline()):
            for expr in dashboards.expressions(board):
                prom.query(expr.replace("$__range", "5m").replace("$agent", "alice")
                           .replace("$node", ".*"))
        assert prom.value('sum(qa_agent_calls_total{agent="alice"})') == 2
