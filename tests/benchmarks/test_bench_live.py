"""Live load in the normal suite: two staggered real-time calls through one pipeline.

The full curve (N = 1, 2, 4, 6, 8) is `make bench-live`; this run proves the harness measures
what it claims: every call finishes, nothing is dropped, and the transcripts are right.
"""

from __future__ import annotations

from pathlib import Path

from tests.benchmarks.live_load import build_call, run_load


def test_two_live_calls_are_transcribed_with_latency_measured(
    benchmark, transcriber, shared_audio: Path, tmp_path: Path
):
    call_wav, reference = build_call(shared_audio, tmp_path / "call.wav")
    result = benchmark.pedantic(
        run_load, args=(transcriber, call_wav, reference, 2), rounds=1, iterations=1
    )
    benchmark.extra_info.update(
        p50=result.latency_p50, p95=result.latency_p95, cpu_percent=result.cpu_percent
    )
    assert result.dropped == 0
    assert result.utterances >= 2 * 3  # three turns per call
    assert result.wer <= 0.15
    assert 0 < result.latency_p50 <= result.latency_p95
