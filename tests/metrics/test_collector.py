"""Hot-path counters reach the registry at scrape time, read from real sources and a real
pipeline (its transcription step returns no text: only counting is under test here)."""

from __future__ import annotations

import struct
import threading

from qa.metrics import MetricsListener
from qa.pipeline import Pipeline, PipelineOptions
from qa.sources.file import FileOptions, FileSource
from qa.sources.rtp import RtpOptions, RtpSource
from qa.types import Utterance


def no_text(utterance: Utterance, language: str | None) -> list:
    return []


def rtp_packet(seq: int, ssrc: int = 0x1234) -> bytes:
    # PCMU (payload type 0), 20 ms of µ-law silence (0xFF) at 8 kHz.
    return struct.pack("!BBHII", 0x80, 0, seq, seq * 160, ssrc) + b"\xff" * 160


def test_rtp_counters_are_read_at_scrape_time(registry, metrics):
    pipeline = Pipeline(no_text, PipelineOptions(workers=1))
    source = RtpSource(RtpOptions(port=0, jitter_ms=0))
    try:
        metrics.watch_pipeline(pipeline)
        metrics.watch_source("rtp", source)
        v = registry.get_sample_value
        assert v("qa_rtp_packets_received_total", {"source": "rtp"}) == 0
        now = 100.0
        for seq in (1, 2, 3, 6, 7):  # 4 and 5 never arrive
            source.receive(pipeline, rtp_packet(seq), None, now)
            now += 0.02
            source.tick(pipeline, now)
        source.receive(pipeline, b"\x00garbage", None, now)
        source.receive(pipeline, rtp_packet(2), None, now)  # after its audio was played
        source.tick(pipeline, now + 1)
        stats = source.stats()
        assert stats["packets"] >= 7 and stats["lost"] == 2 and stats["malformed"] == 1
        # No push happened: the values are whatever the source holds when scraped.
        assert v("qa_rtp_packets_received_total", {"source": "rtp"}) == stats["packets"]
        assert v("qa_rtp_packets_lost_total", {"source": "rtp"}) == 2
        assert v("qa_rtp_packets_malformed_total", {"source": "rtp"}) == 1
        assert v("qa_rtp_packets_late_total", {"source": "rtp"}) == stats["late"]
        assert v("qa_rtp_packets_duplicate_total", {"source": "rtp"}) == stats["duplicate"]
        assert stats["late"] + stats["duplicate"] >= 1
        # Unwatching keeps the counts, so the counter never goes back.
        metrics.unwatch_source(source)
        assert v("qa_rtp_packets_lost_total", {"source": "rtp"}) == 2
        assert v("qa_asr_queue_depth") == pipeline.queue_depth
        assert v("qa_utterances_dropped_total") == 0
        source.finish(pipeline, "stopped")
        assert pipeline.wait_idle(10)
    finally:
        source.close()
        pipeline.close()


def test_file_replay_through_the_pipeline(registry, metrics, shared_audio):
    """A real replay: call counts, handle time, audio frames and the real-time factor."""
    listener = MetricsListener(metrics)
    pipeline = Pipeline(metrics.timed(no_text), PipelineOptions(workers=1),
                        listeners=[listener])
    source = FileSource(FileOptions(shared_audio / "en_stereo_2ch_overlap.wav", agent_id="a1"))
    metrics.watch_pipeline(pipeline)
    metrics.watch_source("file", source)
    try:
        source.run(pipeline, threading.Event())
        assert pipeline.wait_idle(30)
    finally:
        pipeline.close()
    v = registry.get_sample_value
    samples = source.stats()["samples"]
    assert samples > 0
    assert v("qa_source_audio_samples_total", {"source": "file"}) == samples
    assert v("qa_calls_started_total") == 1
    assert v("qa_calls_ended_total", {"reason": "end_of_file"}) == 1
    assert v("qa_calls_active") == 0
    assert v("qa_agent_calls_total", {"agent": "a1"}) == 1
    assert v("qa_call_handle_time_seconds_sum") == 5.0  # the clip's length (MANIFEST.md)
    # Every utterance went through the timed step: audio seconds and one RTF each.
    utterances = v("qa_asr_real_time_factor_count")
    assert utterances >= 1
    assert 0 < v("qa_asr_audio_seconds_total") <= 5.0 * 2  # both channels
    assert v("qa_asr_busy_seconds_total") > 0


def test_batched_decodes_are_timed_per_utterance(registry, metrics):
    """The timer around the batched step counts every utterance's audio and real-time factor
    (the step itself returns no text: only the timing wrapper is under test)."""
    import numpy as np

    from qa.types import Speaker

    def batch_no_text(utterances, language):
        return [[] for _ in utterances]

    utterances = [
        Utterance("c", Speaker.AGENT, 0, n, np.zeros(n, dtype=np.int16)) for n in (8000, 24000)
    ]
    timed = metrics.timed_batch(batch_no_text)
    assert timed(utterances, "en") == [[], []]
    v = registry.get_sample_value
    assert v("qa_asr_audio_seconds_total") == 2.0  # 0.5 s + 1.5 s
    assert v("qa_asr_real_time_factor_count") == 2
    assert v("qa_asr_busy_seconds_total") > 0
