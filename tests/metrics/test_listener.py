"""Metric values after pipeline notifications, read from a fresh registry."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from qa.metrics import (
    ALL_AGENTS,
    OTHER_AGENTS,
    MetricsListener,
    MetricsOptions,
    QAMetrics,
    end_reason,
)
from qa.types import CallSummary, Event, EventKind, Scorecard, Segment, Severity, Speaker

from .conftest import call_info


def summary(call_id: str, agent: str, duration: float, reason: str = "hangup",
            gap: float = 0.0, dead_air: float = 0.0, talk_over: float = 0.0) -> CallSummary:
    return CallSummary(call_id=call_id, agent_id=agent, source="file:test.wav", reason=reason,
                       duration=duration, speech=(), utterances=0, segments=0,
                       dropped_utterances=0, gap_seconds=gap, latency_p50=0.0,
                       latency_p95=0.0, dead_air=dead_air, talk_over=talk_over)


def seg(call_id: str, speaker: Speaker, start: float, end: float) -> Segment:
    return Segment(call_id=call_id, speaker=speaker, start=start, end=end, text="hello")


def ev(call_id: str, kind: EventKind, rule: str, severity: Severity = Severity.INFO,
       points: float = 0.0, message: str = "") -> Event:
    return Event(call_id=call_id, time=1.0, kind=kind, rule_id=rule, severity=severity,
                 points=points, evidence="not my problem", message=message)


def test_a_call_updates_every_call_metric(registry, listener):
    v = registry.get_sample_value
    listener.call_started(call_info("c1", "alice"))
    listener.call_started(call_info("c2", "bob"))
    assert v("qa_calls_active") == 2
    assert v("qa_calls_started_total") == 2
    assert v("qa_agent_calls_total", {"agent": "alice"}) == 1

    listener.segment(seg("c1", Speaker.AGENT, 0.0, 4.0), latency=0.8)
    listener.segment(seg("c1", Speaker.CUSTOMER, 3.0, 6.0), latency=1.6)
    listener.segment(seg("c1", Speaker.AGENT, 20.0, 22.0), latency=0.3)
    assert v("qa_talk_seconds_total", {"speaker": "agent"}) == 6.0
    assert v("qa_talk_seconds_total", {"speaker": "customer"}) == 3.0
    assert v("qa_asr_latency_seconds_count") == 3
    assert v("qa_asr_latency_seconds_bucket", {"le": "1.0"}) == 2
    assert v("qa_asr_latency_seconds_sum") == pytest.approx(2.7)

    listener.event(ev("c1", EventKind.STEP_DONE, "greeting", points=10, message="done"))
    listener.event(ev("c1", EventKind.STEP_MISSED, "verify_id", Severity.WARNING, -10,
                      "Verify the caller's identity."))
    listener.event(ev("c1", EventKind.FORBIDDEN_PHRASE, "shirking", Severity.CRITICAL, -20,
                      "Do not say that."))
    listener.event(ev("c1", EventKind.HANDLE_TIME_WARNING, "handle_time", Severity.WARNING,
                      0.0, "4:00 elapsed"))
    listener.event(ev("c1", EventKind.HANDLE_TIME_WARNING, "handle_time", Severity.WARNING,
                      0.0, "4:30 elapsed"))
    listener.event(ev("c1", EventKind.HANDLE_TIME_BREACH, "handle_time", Severity.CRITICAL,
                      -10, "transfer"))
    listener.event(ev("c1", EventKind.CATEGORY, "complaint", message="category: complaint"))
    assert v("qa_script_steps_done_total", {"step": "greeting"}) == 1
    assert v("qa_script_steps_missed_total", {"step": "verify_id"}) == 1
    assert v("qa_forbidden_phrase_hits_total", {"rule": "shirking"}) == 1
    assert v("qa_handle_time_warnings_total") == 2
    assert v("qa_handle_time_breaches_total") == 1
    assert v("qa_calls_past_warning") == 1  # two warnings, one call
    assert v("qa_calls_past_limit") == 1
    assert v("qa_rule_events_total",
             {"rule": "shirking", "kind": "forbidden_phrase", "severity": "critical"}) == 1
    assert v("qa_violations_total", {"rule": "verify_id"}) == 1
    assert v("qa_agent_violations_total", {"agent": "alice"}) == 3
    assert v("qa_agent_script_steps_missed_total", {"agent": "alice"}) == 1
    assert v("qa_agent_forbidden_phrase_hits_total", {"agent": "alice"}) == 1
    # Prompts: problems and due steps with a message; not a plain "done" or a category.
    assert v("qa_prompts_sent_total", {"kind": "step_missed"}) == 1
    assert v("qa_prompts_sent_total", {"kind": "handle_time_warning"}) == 2
    assert v("qa_prompts_sent_total", {"kind": "step_done"}) is None
    assert v("qa_prompts_sent_total", {"kind": "category"}) is None

    listener.call_ended(summary("c1", "alice", 330.0, gap=0.5, dead_air=322.0, talk_over=1.0))
    listener.call_ended(summary("c2", "bob", 100.0, reason="error: socket closed",
                                dead_air=100.0))
    assert v("qa_calls_active") == 0
    assert v("qa_calls_past_warning") == 0
    assert v("qa_calls_past_limit") == 0
    assert v("qa_calls_ended_total", {"reason": "hangup"}) == 1
    assert v("qa_calls_ended_total", {"reason": "error"}) == 1
    assert v("qa_calls_compliant_total") == 1  # only c2 had no violation
    assert v("qa_call_handle_time_seconds_count") == 2
    assert v("qa_call_handle_time_seconds_bucket", {"le": "300.0"}) == 1
    assert v("qa_call_handle_time_seconds_bucket", {"le": "330.0"}) == 2
    assert v("qa_audio_gap_seconds_total") == 0.5
    # The pipeline's totals (qa.conversation), exported as they are.
    assert v("qa_dead_air_seconds_total") == pytest.approx(14.0 + 308.0 + 100.0)
    assert v("qa_talk_over_seconds_total") == pytest.approx(1.0)


def test_handle_time_buckets_follow_the_limit():
    registry = CollectorRegistry()
    QAMetrics(registry, MetricsOptions(handle_time_limit=600))
    text = generate_latest(registry).decode()
    for edge in ("60.0", "540.0", "600.0", "660.0", "1200.0"):
        assert f'qa_call_handle_time_seconds_bucket{{le="{edge}"}}' in text
    assert registry.get_sample_value("qa_handle_time_limit_seconds") == 600


def test_rule_events_carry_the_call_id_as_exemplar_never_as_label(registry, listener):
    listener.call_started(call_info("call-7f3a", "alice"))
    listener.event(ev("call-7f3a", EventKind.FORBIDDEN_PHRASE, "shirking", Severity.CRITICAL,
                      -20, "Do not say that."))
    openmetrics = generate_openmetrics(registry).decode()
    line = next(x for x in openmetrics.splitlines() if x.startswith("qa_rule_events_total{"))
    assert line.endswith('# {call_id="call-7f3a"} 1.0') or '# {call_id="call-7f3a"} 1.0 ' in line
    # Neither the call id nor the evidence text appears in any label.
    for family in registry.collect():
        for sample in family.samples:
            for value in sample.labels.values():
                assert "call-7f3a" not in value
                assert "not my problem" not in value


def test_agent_label_off_folds_agents(registry):
    metrics = QAMetrics(registry, MetricsOptions(agent_label=False))
    listener = MetricsListener(metrics)
    for i in range(3):
        listener.call_started(call_info(f"c{i}", f"agent{i}"))
    assert registry.get_sample_value("qa_agent_calls_total", {"agent": ALL_AGENTS}) == 3
    assert registry.get_sample_value("qa_agent_calls_total", {"agent": "agent0"}) is None


def test_agents_past_the_cap_are_other(registry):
    metrics = QAMetrics(registry, MetricsOptions(max_agents=2))
    listener = MetricsListener(metrics)
    for i in range(4):
        listener.call_started(call_info(f"c{i}", f"agent{i}"))
    v = registry.get_sample_value
    assert v("qa_agent_calls_total", {"agent": "agent1"}) == 1
    assert v("qa_agent_calls_total", {"agent": OTHER_AGENTS}) == 2


def test_scorecard_records_score_band_and_agent(registry, metrics):
    metrics.observe_scorecard(Scorecard("c1", total=82.5, band="80-85"), "alice")
    metrics.observe_scorecard(Scorecard("c2", total=70.0, band="<75"), "alice")
    v = registry.get_sample_value
    assert v("qa_call_score_points_count") == 2
    assert v("qa_call_score_points_bucket", {"le": "75.0"}) == 1
    assert v("qa_call_score_band_total", {"band": "80-85"}) == 1
    assert v("qa_call_score_band_total", {"band": "<75"}) == 1
    assert v("qa_agent_score_points_sum", {"agent": "alice"}) == 152.5
    assert v("qa_agent_score_points_count", {"agent": "alice"}) == 2


def test_talk_utilisation_counts_open_and_finished_calls(registry, listener):
    v = registry.get_sample_value
    listener.call_started(call_info("c1", "alice"))
    on_call = v("qa_agent_on_call_seconds_total", {"agent": "alice"})
    logged = v("qa_agent_logged_in_seconds_total", {"agent": "alice"})
    # One call open since login: on call the whole logged-in time.
    assert 0 <= on_call <= logged
    assert v("qa_agent_talk_utilisation_ratio", {"agent": "alice"}) == pytest.approx(1.0, abs=0.05)
    listener.call_ended(summary("c1", "alice", 10.0))
    first = v("qa_agent_on_call_seconds_total", {"agent": "alice"})
    assert v("qa_agent_on_call_seconds_total", {"agent": "alice"}) == first  # closed: frozen
    assert v("qa_agent_logged_in_seconds_total", {"agent": "alice"}) >= first


def test_end_reasons_are_bounded():
    assert end_reason("end of file") == "end_of_file"
    assert end_reason("error: [Errno 104] Connection reset") == "error"
    assert end_reason("something new") == "other"
