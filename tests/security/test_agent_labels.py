"""Agent ids come from the calls (a SIP header, a stream's parameters): a flood of calls that
each name a new agent must not grow the metrics' memory once the label cap is reached."""

from __future__ import annotations

import tracemalloc

from prometheus_client import CollectorRegistry

from qa.metrics import OTHER_AGENTS, MetricsListener, MetricsOptions, QAMetrics
from qa.types import CallInfo, CallSummary, Speaker


def _call(n: int) -> CallInfo:
    return CallInfo(f"c{n}", f"forged-agent-{n:08d}-" + "x" * 40, "sip://test", 0.0,
                    (Speaker.AGENT, Speaker.CUSTOMER), 8000)


def _summary(call: CallInfo) -> CallSummary:
    return CallSummary(call.call_id, call.agent_id, call.source, "hangup", 1.0, (), 0, 0, 0,
                       0.0, 0.0, 0.0)


def test_new_agent_ids_past_the_cap_take_no_memory() -> None:
    registry = CollectorRegistry()
    metrics = QAMetrics(registry, MetricsOptions(max_agents=5))
    listener = MetricsListener(metrics)
    for n in range(100):  # past the cap, and every series already made
        listener.call_started(_call(n))
        listener.call_ended(_summary(_call(n)))
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for n in range(100, 20_100):
        listener.call_started(_call(n))
        listener.call_ended(_summary(_call(n)))
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    # Each id past the cap was remembered (as "other"): about 3 MB for these 20,000.
    assert grown < 500_000, f"{grown / 1e6:.1f} MB for 20,000 new agent ids"
    v = registry.get_sample_value
    assert v("qa_agent_calls_total", {"agent": OTHER_AGENTS}) == 20_095
    assert v("qa_agent_calls_total", {"agent": _call(4).agent_id}) == 1
