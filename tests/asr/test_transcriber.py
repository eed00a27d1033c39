"""The transcriber's guards and clock on the real `base` model and real speech."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from qa import textnorm
from qa.asr import SILENCE_HALLUCINATIONS, Transcriber, TranscriberOptions, is_hallucination
from qa.errors import ModelError
from qa.sources.wav import read_wav
from qa.types import SAMPLE_RATE, Speaker, Utterance


def _utterance(pcm: np.ndarray, start_sample: int = 0) -> Utterance:
    pcm = np.ascontiguousarray(pcm, dtype=np.int16)
    return Utterance("call", Speaker.AGENT, start_sample, start_sample + len(pcm), pcm)


def test_digital_silence_gives_no_segments(transcriber: Transcriber) -> None:
    # Unguarded, base decodes 3 s of zeros as "You" (no_speech_prob 0.74, avg_logprob -0.8).
    silence = _utterance(np.zeros(3 * SAMPLE_RATE, dtype=np.int16))
    assert transcriber.transcribe(silence, "en") == []
    assert transcriber.transcribe(silence, None) == []


def test_low_level_noise_gives_no_segments(transcriber: Transcriber) -> None:
    rng = np.random.default_rng(7)
    for sigma in (3.0, 100.0):  # dither and -50 dBFS hiss
        noise = _utterance(rng.normal(0.0, sigma, 3 * SAMPLE_RATE))
        assert transcriber.transcribe(noise, "en") == [], sigma


def test_guards_are_what_drops_silence(base_model_dir: Path) -> None:
    """Without the guards the same silence produces text, so the test above tests them."""
    unguarded = Transcriber(
        TranscriberOptions(
            model=str(base_model_dir),
            no_speech_threshold=1.0,
            min_avg_logprob=-100.0,
            drop_hallucinations=False,
        )
    )
    segs = unguarded.transcribe(_utterance(np.zeros(3 * SAMPLE_RATE, dtype=np.int16)), "en")
    # `base` says "You" here; which word it invents may differ by CPU, that it invents one not.
    assert segs and all(any(c.isalnum() for c in s.text) for s in segs)
    assert segs[0].no_speech_prob > TranscriberOptions().no_speech_threshold


def test_times_are_on_the_call_clock(transcriber: Transcriber, shared_audio: Path) -> None:
    pcm = read_wav(shared_audio / "en_jfk_inaugural_16k_mono.wav").pcm[:, 0]
    at_zero = transcriber.transcribe(_utterance(pcm), "en")
    later = transcriber.transcribe(_utterance(pcm, start_sample=90 * SAMPLE_RATE), "en")
    assert at_zero and [s.text for s in later] == [s.text for s in at_zero]
    for a, b in zip(at_zero, later, strict=True):
        assert b.start == pytest.approx(a.start + 90.0, abs=1e-3)
        assert b.end == pytest.approx(a.end + 90.0, abs=1e-3)
        assert 90.0 <= b.start < b.end <= 90.0 + len(pcm) / SAMPLE_RATE
        assert (b.call_id, b.speaker, b.final, b.language) == ("call", Speaker.AGENT, True, "en")


def test_chinese_comes_out_simplified(transcriber: Transcriber, shared_audio: Path) -> None:
    pcm = read_wav(shared_audio / "zh_aishell_BAC009S0724W0121.wav").pcm[:, 0]
    segs = transcriber.transcribe(_utterance(pcm), "zh")
    text = "".join(s.text for s in segs)
    assert segs and all(s.language == "zh" for s in segs)
    # Whisper base writes 廣州市...地產 here in traditional characters; we must not.
    assert "广州" in text and "廣" not in text and "產" not in text
    assert textnorm.to_simplified(text) == text


def test_word_timestamps_on_the_call_clock(transcriber: Transcriber, shared_audio: Path) -> None:
    worded = Transcriber(replace(transcriber.options, word_timestamps=True))
    pcm = read_wav(shared_audio / "en_librivox_austen_0870.wav").pcm[:, 0]
    segs = worded.transcribe(_utterance(pcm, start_sample=5 * SAMPLE_RATE), "en")
    words = [w for s in segs for w in s.words]
    assert [w.text for w in words][:3] == ["And", "Mr.", "John"]
    assert all(5.0 <= w.start <= w.end <= 5.0 + len(pcm) / SAMPLE_RATE for w in words)


def test_hallucination_list_matches_whole_segments_only() -> None:
    for phrase in SILENCE_HALLUCINATIONS:
        assert is_hallucination(phrase)
    assert is_hallucination("  Thanks for watching! ")
    assert is_hallucination("字幕由Amara.org社區提供")  # traditional form of a listed phrase
    assert not is_hallucination("Thanks for watching the meter for me, I will call back.")
    assert not is_hallucination("Thank you.")


def test_missing_model_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not a directory"):
        Transcriber(TranscriberOptions(model=str(tmp_path / "nothing")))


def test_8k_utterance_is_decoded_at_16k(transcriber: Transcriber, shared_audio: Path) -> None:
    """An 8 kHz utterance (as the telephony front end cuts it) is resampled by the
    transcriber itself, to the same text as its 16 kHz copy, on both paths."""
    from qa.batching import BatchTranscriber

    pcm = read_wav(shared_audio / "8k" / "en_jfk_inaugural_8k_ulaw.wav").pcm[:, 0]
    pcm = np.ascontiguousarray(pcm[: 5 * 8000])
    narrow = Utterance("call", Speaker.AGENT, 32000, 32000 + 2 * len(pcm), pcm, sample_rate=8000)
    wide = _utterance(narrow.pcm16, start_sample=32000)
    paths = {"alone": transcriber.transcribe, "batched": BatchTranscriber(transcriber).transcribe}
    texts = {
        f"{path} {rate}": [(s.text, s.start, s.end) for s in paths[path](u, "en")]
        for path in paths
        for u, rate in ((narrow, "8k"), (wide, "16k"))
    }
    assert "my fellow america" in texts["alone 8k"][0][0].lower()
    assert texts["alone 8k"] == texts["alone 16k"]
    assert texts["batched 8k"] == texts["batched 16k"]
