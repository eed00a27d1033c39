"""The live `/metrics` endpoint: valid for promtool, OpenMetrics with exemplars on request."""

from __future__ import annotations

import subprocess
import urllib.request

import pytest

from qa.metrics import MetricsListener, start_metrics_server
from qa.types import EventKind, Scorecard, Segment, Severity, Speaker

from .conftest import call_info
from .test_listener import ev, summary


@pytest.fixture
def busy_metrics(metrics):
    """Metrics with every kind of update applied once."""
    listener = MetricsListener(metrics)
    listener.call_started(call_info("c1", "alice"))
    listener.call_started(call_info("c2", "bob"))
    listener.segment(Segment("c1", Speaker.AGENT, 0.0, 3.0, "hello"), 0.9)
    listener.event(ev("c1", EventKind.FORBIDDEN_PHRASE, "shirking", Severity.CRITICAL, -20,
                      "Do not say that."))
    listener.event(ev("c1", EventKind.HANDLE_TIME_WARNING, "handle_time", Severity.WARNING,
                      0.0, "4:00 elapsed"))
    listener.dtmf("c1", Speaker.CUSTOMER, "5", 2.0)
    listener.call_ended(summary("c1", "alice", 250.0))
    metrics.observe_scorecard(Scorecard("c1", total=80.0, band="75-80"), "alice")
    return metrics


def fetch(url: str, accept: str | None = None) -> tuple[str, str]:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(request, timeout=5) as resp:
        return resp.headers["Content-Type"], resp.read().decode()


def test_promtool_accepts_live_metrics(busy_metrics):
    server = start_metrics_server(busy_metrics.registry, port=0)
    try:
        content_type, text = fetch(server.url)
    finally:
        server.stop()
    assert content_type.startswith("text/plain")
    assert 'qa_forbidden_phrase_hits_total{rule="shirking"} 1.0' in text
    assert 'qa_build_info{python=' in text
    check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                           text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.strip() == "" and check.stderr.strip() == ""


def test_openmetrics_on_request_carries_exemplars(busy_metrics):
    with start_metrics_server(busy_metrics.registry, port=0) as server:
        content_type, text = fetch(server.url, "application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert text.rstrip().endswith("# EOF")
    assert '# {call_id="c1"} 1.0' in text


def test_server_stops_and_frees_its_port(metrics):
    server = start_metrics_server(metrics.registry, port=0)
    url = server.url
    server.stop()
    with pytest.raises(OSError):
        fetch(url)
