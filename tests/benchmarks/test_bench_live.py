"""Live load in the normal suite: two staggered real-time calls through one pipeline.

The full curve (N = 1, 2, 4, 6, 8) is `make bench-live`; this run proves the harness measures
what it claims: every call finishes, nothing is dropped, and the transcripts are right. The
English example pack's rules run with their intents on, as `qa run` runs them (on the
pipeline's dispatcher thread, off the transcription worker): every segment is matched and no
rule fails. `tests/benchmarks/capacity_intents.py` measures the same with more calls.
"""

from __future__ import annotations

from pathlib import Path

from qa.pipeline import Pipeline, PipelineOptions
from tests.benchmarks.capacity_intents import RuleTimes, rules_factory
from tests.benchmarks.live_load import build_call, run_load


def test_two_live_calls_are_transcribed_with_latency_measured(
    benchmark, transcriber, shared_audio: Path, tmp_path: Path
):
    call_wav, reference = build_call(shared_audio, tmp_path / "call.wav")
    times = RuleTimes()
    rules = rules_factory("intents", times)
    pipelines: list[Pipeline] = []

    def with_rules(listeners):
        pipelines.append(Pipeline(transcriber.transcribe, PipelineOptions(language="en"),
                                  listeners, rules=rules))
        return pipelines[-1]

    result = benchmark.pedantic(
        run_load, args=(transcriber, call_wav, reference, 2, with_rules), rounds=1,
        iterations=1,
    )
    benchmark.extra_info.update(
        p50=result.latency_p50, p95=result.latency_p95, cpu_percent=result.cpu_percent,
        rules_cpu_max_ms=round(max(times.cpu) * 1e3, 2) if times.cpu else None,
    )
    assert result.dropped == 0
    assert result.utterances >= 2 * 3  # three turns per call
    assert result.wer <= 0.15
    assert 0 < result.latency_p50 <= result.latency_p95
    # The rules (intents on) matched the final segments of both calls, and none failed.
    assert len(times.cpu) >= 2 * 3
    assert pipelines[0].rule_errors == 0
