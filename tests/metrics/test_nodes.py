"""Prometheus over many nodes: the shipped config discovers nodes from files, every series
carries its node, and the boards sum over every node or filter some (issue 11)."""

from __future__ import annotations

import contextlib

import pytest
from prometheus_client import CollectorRegistry

from qa import dashboards
from qa.metrics import MetricsListener, QAMetrics, start_metrics_server

from .conftest import call_info
from .prom import PromServer


def panel_expr(board: dict, title: str) -> str:
    (panel,) = [p for p in board["panels"] if p["title"] == title]
    return panel["targets"][0]["expr"]


@pytest.mark.slow
def test_file_discovered_nodes_are_summed_and_filtered(repo):
    """Three exporters as three nodes (each its own registry and port, scraped over HTTP):
    two named in one discovery file, one listed without a name in another (it is named after
    its host). Node i has i + 1 calls in progress."""
    with contextlib.ExitStack() as stack:
        ports = []
        for node in range(3):
            metrics = QAMetrics(CollectorRegistry())
            listener = MetricsListener(metrics)
            for call in range(node + 1):
                listener.call_started(call_info(f"n{node}-c{call}", f"agent-{node}"))
            ports.append(stack.enter_context(
                start_metrics_server(metrics.registry, port=0)).port)
        group = '- targets: ["127.0.0.1:{}"]\n  labels: {{node: {}}}\n'
        nodes = {
            "capture.yml": group.format(ports[0], "capture-1")
            + group.format(ports[1], "capture-2"),
            "other.yml": f'- targets: ["localhost:{ports[2]}"]\n',
        }
        prom = stack.enter_context(PromServer(
            "", config=repo / "grafana/prometheus/prometheus.yml", nodes=nodes))
        assert prom.wait_for('count(up{job="qa"} == 1)', lambda v: v == 3) == 3
        assert prom.wait_for("count(qa_calls_active)", lambda v: v == 3) == 3
        named = {labels["node"] for labels, _ in prom.query("qa_build_info")}
        assert named == {"capture-1", "capture-2", "localhost"}

        floor, pipeline = dashboards.floor(), dashboards.pipeline()
        active = panel_expr(floor, "Active calls")

        def board(expr: str, chosen: str) -> float | None:
            return prom.value(expr.replace("$node", chosen))

        assert board(active, ".*") == 1 + 2 + 3  # All: summed over every node
        assert board(active, "capture-2") == 2
        assert board(active, "capture-1|localhost") == 1 + 3  # two nodes chosen
        assert board(panel_expr(pipeline, "Nodes up"), ".*") == 3
        assert board(panel_expr(pipeline, "Nodes up"), "capture-1") == 1
