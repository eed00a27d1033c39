"""What the metrics cost: rendering `/metrics` on a busy floor, and the work added per utterance.

- render: `generate_latest` with 200 active calls over 100 agents and a 20-rule pack's events,
  against the same floor with the agent label off (per-agent series folded into one), which
  isolates what the per-agent series cost.
- per utterance: `MetricsListener.segment` + `.event` for a realistic utterance (one final
  segment, one rule event) against a no-op `PipelineListener` on the same sequence; reported in
  microseconds and as a share of a typical utterance's processing (Whisper `base` on this
  machine: about 0.3 s per utterance with a short mel window, docs/design.md). The target is under
  2 % added.
- replay: a real `Pipeline` replaying a shared clip with and without the metrics listener and
  timed transcription step.
Timings are best-of-N CPU times of this run, reported in `extra_info`, never asserted.
"""

from __future__ import annotations

import threading
import time

from prometheus_client import CollectorRegistry, generate_latest

from qa.metrics import MetricsListener, MetricsOptions, QAMetrics
from qa.pipeline import Pipeline, PipelineOptions
from qa.sources.file import FileOptions, FileSource
from qa.types import (
    CallInfo,
    CallSummary,
    Event,
    EventKind,
    PipelineListener,
    Scorecard,
    Segment,
    Severity,
    Speaker,
    Utterance,
)

CALLS = 200
AGENTS = 100
RULES = 20
UTTERANCES = 2000
#: A typical utterance's transcription time (s), the denominator of the per-utterance share.
TYPICAL_UTTERANCE_S = 0.3


def best(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        began = time.process_time()
        fn()
        times.append(time.process_time() - began)
    return min(times)


def busy_floor(options: MetricsOptions) -> tuple[CollectorRegistry, MetricsListener]:
    registry = CollectorRegistry()
    metrics = QAMetrics(registry, options)
    listener = MetricsListener(metrics)
    kinds = list(EventKind)
    for c in range(CALLS):
        call_id = f"call-{c}"
        listener.call_started(CallInfo(call_id, f"agent-{c % AGENTS}", "rtp://x", 0.0,
                                       (Speaker.AGENT, Speaker.CUSTOMER), 8000))
        listener.segment(Segment(call_id, Speaker.AGENT, 0.0, 2.0, "hello"), 0.7)
        for r in range(3):
            rule = (c + r) % RULES
            listener.event(Event(call_id, 1.0, kinds[rule % len(kinds)], f"rule_{rule}",
                                 Severity.WARNING, -5.0, "evidence", "prompt"))
        metrics.observe_scorecard(Scorecard(call_id, total=60 + c % 40, band="75-80"),
                                  f"agent-{c % AGENTS}")
    return registry, listener


def test_render_with_200_calls_and_100_agents(benchmark):
    registry, _ = busy_floor(MetricsOptions())
    folded, _ = busy_floor(MetricsOptions(agent_label=False))
    text = benchmark(generate_latest, registry).decode()
    assert registry.get_sample_value("qa_calls_active") == CALLS
    agents = {line.split('"')[1] for line in text.splitlines()
              if line.startswith("qa_agent_calls_total{")}
    assert len(agents) == AGENTS
    assert folded.get_sample_value("qa_agent_calls_total", {"agent": "all"}) == CALLS
    full = best(lambda: generate_latest(registry))
    base = best(lambda: generate_latest(folded))
    benchmark.extra_info.update({
        "render_ms": round(full * 1e3, 2), "render_agent_label_off_ms": round(base * 1e3, 2),
        "ratio_vs_agent_label_off": round(full / base, 2), "bytes": len(text),
        "lines": text.count("\n"),
    })


def utterance_sequence() -> list[tuple[Segment, Event]]:
    out = []
    for i in range(UTTERANCES):
        call_id = f"call-{i % CALLS}"
        speaker = Speaker.AGENT if i % 2 else Speaker.CUSTOMER
        out.append((Segment(call_id, speaker, i * 3.0, i * 3.0 + 2.5, "some words"),
                    Event(call_id, i * 3.0, EventKind.STEP_DONE, f"rule_{i % RULES}",
                          Severity.INFO, 5.0, "evidence", "done")))
    return out


def feed(listener: PipelineListener, sequence: list[tuple[Segment, Event]]) -> None:
    for segment, event in sequence:
        listener.segment(segment, 0.8)
        listener.event(event)


def test_per_utterance_cost_of_metrics(benchmark):
    registry, listener = busy_floor(MetricsOptions())
    sequence = utterance_sequence()
    talk = ("qa_talk_seconds_total", {"speaker": "agent"})
    done = ("qa_script_steps_done_total", {"step": "rule_0"})
    talk_before, done_before = (registry.get_sample_value(*k) for k in (talk, done))
    benchmark.pedantic(feed, args=(listener, sequence), rounds=1, iterations=1)
    assert abs(registry.get_sample_value(*talk) - talk_before - 2.5 * UTTERANCES / 2) < 1e-6
    assert registry.get_sample_value(*done) - done_before == UTTERANCES / RULES
    noop = PipelineListener()
    with_metrics = best(lambda: feed(listener, sequence))
    without = best(lambda: feed(noop, sequence))
    per_utterance = (with_metrics - without) / UTTERANCES
    benchmark.extra_info.update({
        "added_us_per_utterance": round(per_utterance * 1e6, 2),
        "noop_us_per_utterance": round(without / UTTERANCES * 1e6, 3),
        "added_percent_of_typical_utterance": round(per_utterance / TYPICAL_UTTERANCE_S * 100,
                                                    4),
    })


class _Summaries(PipelineListener):
    def __init__(self) -> None:
        self.ended: list[CallSummary] = []

    def call_ended(self, summary: CallSummary) -> None:
        self.ended.append(summary)


def no_text(utterance: Utterance, language: str | None) -> list:
    return []


def replay(shared_audio, metrics: QAMetrics | None) -> list[CallSummary]:
    summaries = _Summaries()
    transcribe, listeners = no_text, [summaries]
    if metrics is not None:
        transcribe = metrics.timed(no_text)
        listeners.append(MetricsListener(metrics))
    pipeline = Pipeline(transcribe, PipelineOptions(), listeners=listeners)
    source = FileSource(FileOptions(shared_audio / "en_jfk_inaugural_16k_mono.wav"))
    source.run(pipeline, threading.Event())
    assert pipeline.wait_idle(30)
    pipeline.close()
    return summaries.ended


def test_replay_with_and_without_metrics(benchmark, shared_audio):
    registry = CollectorRegistry()
    metrics = QAMetrics(registry)
    (summary,) = benchmark.pedantic(replay, args=(shared_audio, metrics), rounds=1,
                                    iterations=1)
    assert registry.get_sample_value("qa_calls_ended_total", {"reason": "end_of_file"}) == 1
    assert registry.get_sample_value("qa_asr_real_time_factor_count") == summary.utterances
    (plain,) = replay(shared_audio, None)
    assert plain.utterances == summary.utterances
    on = best(lambda: replay(shared_audio, metrics), repeat=3)
    off = best(lambda: replay(shared_audio, None), repeat=3)
    benchmark.extra_info.update({"replay_ratio_metrics_on_off": round(on / off, 3),
                                 "utterances": summary.utterances})
