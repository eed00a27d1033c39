"""The per-call pipeline in process: queue policy, isolation of a failing call, ordering."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from qa.pipeline import CallSummary, Pipeline, PipelineListener, PipelineOptions
from qa.sources.file import FileOptions, FileSource
from qa.types import Segment
from tests.live.conftest import write_stereo


class Collector(PipelineListener):
    def __init__(self) -> None:
        self.segments: list[Segment] = []
        self.summaries: dict[str, CallSummary] = {}
        self.lock = threading.Lock()

    def segment(self, segment: Segment, latency: float) -> None:
        with self.lock:
            self.segments.append(segment)

    def call_ended(self, summary: CallSummary) -> None:
        self.summaries[summary.call_id] = summary


def replay(pipeline: Pipeline, *sources: FileSource) -> None:
    """Plays the files one after the other, as fast as possible, and waits for the results."""
    stop = threading.Event()
    for source in sources:
        source.run(pipeline, stop)
    assert pipeline.wait_idle(timeout=300)
    pipeline.close()


def test_full_queue_drops_from_the_busiest_call_and_counts_it(
    transcriber, shared_audio: Path, tmp_path: Path, caplog
):
    busy = FileSource(FileOptions(
        write_stereo(tmp_path / "busy.wav", shared_audio / "en_digits_vosk.wav",
                     shared_audio / "en_jfk_inaugural_16k_mono.wav"),
        call_id="busy",
    ))
    quiet = FileSource(FileOptions(shared_audio / "en_librivox_austen_0870.wav", call_id="quiet"))
    collector = Collector()
    pipeline = Pipeline(transcriber.transcribe,
                        PipelineOptions(queue_size=1, language="en"), [collector])
    with caplog.at_level(logging.WARNING, logger="qa.pipeline"):
        replay(pipeline, busy, quiet)

    busy_summary, quiet_summary = collector.summaries["busy"], collector.summaries["quiet"]
    # The busy call cut more utterances than one worker and a one-place queue can hold.
    assert busy_summary.utterances >= 4
    assert busy_summary.dropped_utterances >= 1
    assert pipeline.dropped_utterances == busy_summary.dropped_utterances
    assert quiet_summary.dropped_utterances == 0
    assert any(s.call_id == "quiet" and "dashwood" in s.text.lower() for s in collector.segments)
    # Every drop is logged, naming the call.
    drops = [r for r in caplog.records if "dropped utterance" in r.getMessage()]
    assert len(drops) == busy_summary.dropped_utterances
    assert all("busy" in r.getMessage() for r in drops)


def test_a_failing_call_does_not_stop_the_others(transcriber, shared_audio: Path):
    """The transcription step fails for one call only (a wrapper around the real model injects
    the failure, since the real model has no way to fail on demand)."""

    def flaky(utterance, language):
        if utterance.call_id == "bad":
            raise RuntimeError("injected failure")
        return transcriber.transcribe(utterance, language)

    clip = shared_audio / "en_librivox_austen_0870.wav"
    collector = Collector()
    pipeline = Pipeline(flaky, PipelineOptions(language="en"), [collector])
    replay(pipeline, FileSource(FileOptions(clip, call_id="bad")),
           FileSource(FileOptions(clip, call_id="good")))

    assert set(collector.summaries) == {"bad", "good"}
    assert collector.summaries["bad"].segments == 0
    assert collector.summaries["good"].segments >= 1
    assert {s.call_id for s in collector.segments} == {"good"}


def test_segments_reach_listeners_in_order_per_speaker(transcriber, shared_audio: Path):
    """Two workers may finish out of order; each speaker's segments still arrive in order."""
    collector = Collector()
    pipeline = Pipeline(transcriber.transcribe, PipelineOptions(workers=2, language="en"),
                        [collector])
    replay(pipeline, FileSource(FileOptions(shared_audio / "en_digits_vosk.wav", call_id="d")))
    starts = [s.start for s in collector.segments]
    assert len(starts) >= 2
    assert starts == sorted(starts)
    assert collector.summaries["d"].utterances >= 2
