"""The chosen policy in the normal suite: two staggered real-time calls through the batched
pipeline, built as `qa run` builds it. The full curve against the two baselines is
`python -m tests.benchmarks.capacity` (docs/capacity.md); this proves the policy runs live
calls end to end: every utterance transcribed, nothing dropped, transcripts right."""

from __future__ import annotations

from pathlib import Path

from qa.pipeline import PipelineOptions
from tests.benchmarks.capacity import policies
from tests.benchmarks.live_load import build_call, run_load
from tests.benchmarks.streaming_baseline import common_prefix


def test_two_live_calls_through_the_batched_policy(transcriber, shared_audio: Path, tmp_path):
    call_wav, reference = build_call(shared_audio, tmp_path / "call.wav")
    result = run_load(transcriber, call_wav, reference, 2, policies(transcriber)["batched"])
    assert result.dropped == 0
    assert result.utterances >= 2 * 3  # three turns per call
    assert result.wer <= 0.05
    assert 0 < result.latency_p50 <= result.latency_p95


def test_batching_is_the_pipeline_default():
    options = PipelineOptions()
    assert options.max_batch > 1 and options.batch_wait_ms > 0


def test_local_agreement_commits_the_common_prefix():
    assert common_prefix(["and", "so", "my", "fellow"], ["and", "so", "my", "friends"]) == [
        "and", "so", "my"]
    assert common_prefix([], ["a"]) == []
