"""`MetricsListener`: updates `QAMetrics` from the pipeline's notifications (calls, segments,
events, scorecards)."""

from __future__ import annotations

import threading
import time

from qa.metrics.definitions import END_REASONS, EXEMPLAR_MAX, QAMetrics
from qa.types import (
    CallInfo,
    CallSummary,
    Event,
    EventKind,
    PipelineListener,
    Segment,
    Severity,
    Speaker,
)


class _CallState:
    __slots__ = ("agent", "warned", "breached", "violations")

    def __init__(self, agent: str) -> None:
        self.agent = agent
        self.warned = False
        self.breached = False
        self.violations = 0


class MetricsListener(PipelineListener):
    """Updates `QAMetrics` from the pipeline's notifications.

    A call's notifications never arrive concurrently (pipeline contract), so per-call state
    needs no lock; only the table of calls does.

    Args:
        metrics: The metrics to update.
    """

    def __init__(self, metrics: QAMetrics) -> None:
        self.metrics = metrics
        self._calls: dict[str, _CallState] = {}
        self._lock = threading.Lock()

    def call_started(self, call: CallInfo) -> None:
        m = self.metrics
        agent = m.agent(call.agent_id)
        with self._lock:
            self._calls[call.call_id] = _CallState(agent)
        m._agents.call_started(agent, call.call_id, time.monotonic())
        m.calls_active.inc()
        m.calls_started.inc()
        m.agent_calls.labels(agent).inc()

    def segment(self, segment: Segment, latency: float) -> None:
        m = self.metrics
        if latency > 0:
            m.asr_latency.observe(latency)
        length = segment.end - segment.start
        if length > 0:
            m.talk.labels(str(segment.speaker)).inc(length)

    def event(self, event: Event) -> None:
        m = self.metrics
        exemplar = {"call_id": event.call_id[:EXEMPLAR_MAX]}
        m.rule_events.labels(event.rule_id, str(event.kind), str(event.severity)).inc(
            exemplar=exemplar)
        state = self._calls.get(event.call_id)
        agent = state.agent if state is not None else m.agent("")
        kind = event.kind
        if kind == EventKind.STEP_DONE:
            m.steps_done.labels(event.rule_id).inc()
        elif kind == EventKind.STEP_MISSED:
            m.steps_missed.labels(event.rule_id).inc()
            m.agent_steps_missed.labels(agent).inc()
        elif kind == EventKind.FORBIDDEN_PHRASE:
            m.forbidden_hits.labels(event.rule_id).inc()
            m.agent_forbidden.labels(agent).inc()
        elif kind == EventKind.HANDLE_TIME_WARNING:
            m.handle_time_warnings.inc()
            if state is not None and not state.warned:
                state.warned = True
                m.calls_past_warning.inc()
        elif kind == EventKind.HANDLE_TIME_BREACH:
            m.handle_time_breaches.inc()
            if state is not None and not state.breached:
                state.breached = True
                m.calls_past_limit.inc()
        if event.points < 0:
            m.violations.labels(event.rule_id).inc()
            m.agent_violations.labels(agent).inc()
            if state is not None:
                state.violations += 1
        if is_prompt(event):
            m.prompts.labels(str(kind)).inc()

    def dtmf(self, call_id: str, channel: Speaker, digit: str, time: float) -> None:
        self.metrics.dtmf.inc()

    def call_ended(self, summary: CallSummary) -> None:
        m = self.metrics
        with self._lock:
            state = self._calls.pop(summary.call_id, None)
        agent = state.agent if state is not None else m.agent(summary.agent_id)
        m._agents.call_ended(agent, summary.call_id, time.monotonic())
        m.calls_active.dec()
        m.calls_ended.labels(end_reason(summary.reason)).inc()
        m.handle_time.observe(summary.duration)
        if summary.scorecard is not None:
            m.observe_scorecard(summary.scorecard, summary.agent_id)
        if summary.gap_seconds > 0:
            m.audio_gaps.inc(summary.gap_seconds)
        if state is None:
            return
        if state.warned:
            m.calls_past_warning.dec()
        if state.breached:
            m.calls_past_limit.dec()
        if state.violations == 0:
            m.calls_compliant.inc()
        # Computed once by the pipeline (`qa.conversation`), as the scorecard sees them.
        if summary.dead_air > 0:
            m.dead_air.inc(summary.dead_air)
        if summary.talk_over > 0:
            m.talk_over.inc(summary.talk_over)


def is_prompt(event: Event) -> bool:
    """Whether an event is shown to the agent as a prompt: it has a message and either asks
    for a step (`step_due`) or reports a problem (warning or critical)."""
    if not event.message:
        return False
    return event.kind == EventKind.STEP_DUE or event.severity != Severity.INFO


def end_reason(reason: str) -> str:
    """A call's end reason folded to the bounded label set (`END_REASONS` values, `other`)."""
    return END_REASONS.get(reason.split(":", 1)[0].strip(), "other")
