"""The recorder on its own (no model): masks where the transcript redacts and nowhere else,
files in place with their modes, gaps as silence, mono and Opus, a failure counted and the
call going on. Files are decoded with the ffmpeg command, not the encoder under test."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from qa.errors import ConfigError
from qa.metrics import QAMetrics
from qa.pipeline import CallSummary
from qa.recordings import Recorder, RecordingOptions, RecordingSink, mask_spans
from qa.sources.base import CallInfo
from qa.store import CallStore, StoreOptions
from qa.types import AudioChunk, Segment, Speaker, Word
from tests.recordings.conftest import decode, probe

RATE = 8000  # a telephone call (RTP, G.711)
SECONDS = 6.0
CARD_WORDS = (
    Word(0.0, 0.2, "My", 0.9), Word(0.2, 0.5, "card", 0.9), Word(0.5, 0.6, "is", 0.9),
    Word(1.0, 1.5, "4539", 0.9), Word(1.5, 2.0, "1488", 0.9), Word(2.0, 2.5, "0343", 0.9),
    Word(2.5, 3.0, "6467", 0.9), Word(3.5, 4.0, "thanks.", 0.9),
)  # fmt: skip
CARD_TEXT = "My card is 4539 1488 0343 6467 thanks."


def card_segment(call_id: str = "c", words: tuple[Word, ...] = CARD_WORDS) -> Segment:
    return Segment(call_id, Speaker.CUSTOMER, 0.0, 4.0, CARD_TEXT, words, language="en")


def signal(seconds: float, hz: float, seed: int) -> np.ndarray:
    """A tone with a little noise: nothing like the 1 kHz mask."""
    n = np.arange(int(seconds * RATE))
    noise = np.random.default_rng(seed).normal(0, 300, len(n))
    return (6000 * np.sin(2 * np.pi * hz * n / RATE) + noise).astype(np.int16)


def summary(call_id: str, duration: float = SECONDS) -> CallSummary:
    return CallSummary(call_id, "", "test", "end of file", duration, (), 0, 0, 0, 0.0, 0.0, 0.0)


class NullSink:
    """Stands in for the pipeline behind `RecordingSink`: the recorder is what is tested."""

    def call_started(self, call):
        pass

    def audio(self, chunk):
        pass

    def dtmf(self, *args):
        pass

    def call_ended(self, call_id, reason):
        pass


def record(recorder: Recorder, info: CallInfo, channels: dict[Speaker, np.ndarray],
           segments=(), skip: tuple[Speaker, int, int] | None = None) -> None:
    """Feeds a call through a `RecordingSink` in 20 ms chunks, like a live source, leaving out
    samples [a, b) of one channel (`skip`: a gap of lost packets)."""
    sink = RecordingSink(NullSink(), recorder)
    sink.call_started(info)
    step = RATE // 50
    for first in range(0, max(len(p) for p in channels.values()), step):
        for speaker, pcm in channels.items():
            if skip and speaker == skip[0] and skip[1] <= first < skip[2]:
                continue
            piece = pcm[first : first + step].copy()
            if len(piece):
                sink.audio(AudioChunk(info.call_id, speaker, piece, info.sample_rate, first))
    sink.call_ended(info.call_id, "end of file")
    for segment in segments:
        recorder.segment(segment, 0.0)
    recorder.call_ended(summary(info.call_id))
    assert recorder.wait_idle(30)


def test_mask_spans_cover_the_redacted_words_with_a_guard():
    (span,) = mask_spans(card_segment(), guard=0.25)
    assert span.kind == "CARD" and span.channel == Speaker.CUSTOMER
    assert (span.start, span.end) == (pytest.approx(0.75), pytest.approx(3.25))


def test_mask_spans_without_word_times_cover_the_whole_segment():
    (span,) = mask_spans(card_segment(words=()), guard=0.25)
    assert (span.start, span.end) == (0.0, pytest.approx(4.25))
    assert mask_spans(Segment("c", Speaker.AGENT, 1.0, 2.0, "Thank you for calling."), 0.25) == []


def test_recorder_masks_the_card_number_and_keeps_the_rest(tmp_path: Path):
    store = CallStore(StoreOptions(path=tmp_path / "calls.db"))
    info = CallInfo("rtp-call/1", "agent-7", "rtp://test", time.time(),
                    (Speaker.AGENT, Speaker.CUSTOMER), RATE)
    store.start_call(info)
    recorder = Recorder(RecordingOptions(), tmp_path / "rec", store)
    agent, customer = signal(SECONDS, 220, 1), signal(SECONDS, 330, 2)
    gap = (int(4.5 * RATE), int(5.0 * RATE))
    record(recorder, info, {Speaker.AGENT: agent, Speaker.CUSTOMER: customer},
           [card_segment(info.call_id)], skip=(Speaker.CUSTOMER, *gap))
    recording = store.recording(info.call_id)
    assert recording is not None and recorder.written == 1
    path = Path(recording.path)
    assert path.name == "rtp-call_1.flac"  # a '/' in a call id never makes a folder
    assert path.parent.relative_to(tmp_path / "rec").parts == tuple(
        time.strftime(f, time.gmtime(info.started_at)) for f in ("%Y", "%m", "%d"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert (recording.codec, recording.channels, recording.sample_rate) == ("flac", 2, RATE)
    assert recording.duration == pytest.approx(SECONDS)
    pcm, rate = decode(path)
    assert rate == RATE and len(pcm) == int(SECONDS * RATE)
    assert np.array_equal(pcm[:, 0], agent)  # the agent said nothing redacted
    first, last = int(0.75 * RATE), int(3.25 * RATE)
    expected = customer.copy()
    expected[gap[0] : gap[1]] = 0  # lost packets are silence, in place
    outside = np.ones(len(pcm), bool)
    outside[first:last] = False
    assert np.array_equal(pcm[outside, 1], expected[outside])
    tone = pcm[first:last, 1].astype(np.float64)
    assert np.argmax(np.abs(np.fft.rfft(tone))) * RATE / len(tone) == pytest.approx(1000, abs=5)
    assert np.max(np.abs(tone)) == pytest.approx(32767 * 10 ** (-20 / 20), rel=0.01)
    (masked,) = recording.masked_spans
    assert (masked.kind, masked.channel) == ("CARD", Speaker.CUSTOMER)
    assert not list((tmp_path / "rec" / ".partial").iterdir())
    recorder.close()
    store.close()


def test_key_presses_are_masked(tmp_path: Path):
    info = CallInfo("keys", "", "rtp://x", time.time(), (Speaker.AGENT, Speaker.CUSTOMER), RATE)
    recorder = Recorder(RecordingOptions(guard_s=0.1), tmp_path)
    sink = RecordingSink(NullSink(), recorder)
    sink.call_started(info)
    customer = signal(2.0, 330, 6)
    for speaker, pcm in ((Speaker.AGENT, signal(2.0, 220, 7)), (Speaker.CUSTOMER, customer)):
        sink.audio(AudioChunk("keys", speaker, pcm, RATE, 0))
    sink.dtmf("keys", Speaker.CUSTOMER, "7", 1.0, 0.2)
    recorder.call_ended(summary("keys", 2.0))
    assert recorder.wait_idle(30)
    (path,) = tmp_path.glob("*/*/*/keys.flac")
    pcm, _ = decode(path)
    first, last = int(0.9 * RATE), int(1.3 * RATE)
    assert not np.array_equal(pcm[first:last, 1], customer[first:last])
    assert np.array_equal(pcm[:first, 1], customer[:first])
    assert np.array_equal(pcm[last:, 1], customer[last:])
    recorder.close()


def test_mono_call_gives_one_channel_and_opus_decodes(tmp_path: Path):
    info = CallInfo("mono", "", "file:x", time.time(), (Speaker.UNKNOWN,), RATE)
    recorder = Recorder(RecordingOptions(codec="opus"), tmp_path, store=None)
    record(recorder, info, {Speaker.UNKNOWN: signal(SECONDS, 440, 3)})
    (path,) = tmp_path.glob("*/*/*/mono.opus")
    (stream,) = probe(path)["streams"]
    assert (stream["codec_name"], stream["channels"]) == ("opus", 1)
    assert float(probe(path)["format"]["duration"]) == pytest.approx(SECONDS, abs=0.05)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    recorder.close()


def test_a_recording_that_cannot_be_written_is_counted_and_the_call_goes_on(tmp_path: Path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    recorder = Recorder(RecordingOptions(), blocker / "rec")
    registry = CollectorRegistry()
    QAMetrics(registry).watch_recorder(recorder)
    info = CallInfo("c1", "", "file:x", time.time(), (Speaker.AGENT, Speaker.CUSTOMER), RATE)
    record(recorder, info, {Speaker.AGENT: signal(1.0, 220, 4),
                            Speaker.CUSTOMER: signal(1.0, 330, 5)})
    assert recorder.failures["capture"] == 1 and recorder.written == 0
    assert registry.get_sample_value("qa_recording_failures_total",
                                     {"stage": "capture"}) == 1.0
    assert registry.get_sample_value("qa_recordings_written_total") == 0.0


def test_options_refuse_an_unknown_codec_and_negative_retention():
    with pytest.raises(ConfigError, match="codec"):
        RecordingOptions(codec="mp3")
    with pytest.raises(ConfigError, match="retention_days"):
        RecordingOptions(retention_days=-1)
