"""`qa.frontend.ChannelFrontEnd` on the shared clips: coverage, exact clock, chunking, gaps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qa.frontend import ChannelFrontEnd, EndpointerOptions, FrontEndOptions
from qa.types import AudioChunk, Speaker, Utterance
from tests.reference.frontend import ReferenceFrontEnd, read_wav
from tests.reference.resample import resample
from tests.reference.vad import FrameVad as RefFrameVad

CLIPS = [
    ("en_jfk_inaugural_16k_mono.wav", 0),
    ("en_librispeech_1995-1837-0001.wav", 0),
    ("en_librivox_austen_0870.wav", 0),
    ("en_stereo_2ch_overlap.wav", 0),
    ("en_stereo_2ch_overlap.wav", 1),
    ("en_digits_vosk.wav", 0),
    ("zh_aishell_BAC009S0724W0121.wav", 0),
    ("zh_aishell_BAC009S0002W0122.wav", 0),
    ("zh_funasr_asr_example.wav", 0),
    ("zh_cosyvoice_prompt_16k_s16.wav", 0),
]


def _8k_name(name: str) -> str:
    stem = name.removesuffix(".wav").removesuffix("_16k_mono").removesuffix("_16k_s16")
    return f"8k/{stem}_8k_ulaw.wav"


def _chunks(pcm: np.ndarray, rate: int, size: int, first: int = 0) -> list[AudioChunk]:
    return [
        AudioChunk("call-1", Speaker.AGENT, pcm[i : i + size].copy(), rate, first + i)
        for i in range(0, len(pcm), size)
    ]


def _run(fe, chunks) -> list:
    out = []
    for chunk in chunks:
        out += fe.push(chunk)
    return out + fe.flush()


def _cuts(utts: list[Utterance]) -> list[tuple[int, int, bool]]:
    return [(u.start_sample, u.end_sample, u.forced_split) for u in utts]


def _check_covers(utts: list[Utterance], pcm: np.ndarray, rate: int = 16000) -> None:
    """Utterances are ordered, disjoint, carry the exact samples (at `rate`, the rate of
    `pcm`) and cover the speech."""
    assert utts, "no utterance found in a speech clip"
    assert [u.index for u in utts] == list(range(len(utts)))
    for a, b in zip(utts, utts[1:], strict=False):
        assert a.end_sample <= b.start_sample
    r = 16000 // rate
    for u in utts:
        assert u.closed_at > 0.0
        assert (u.call_id, u.speaker, u.sample_rate) == ("call-1", Speaker.AGENT, rate)
        np.testing.assert_array_equal(u.pcm, pcm[u.start_sample // r : u.end_sample // r])
    pcm16 = pcm if rate == 16000 else resample(pcm, rate)
    voiced, _ = RefFrameVad(16000, 30, FrontEndOptions().vad_mode).process(pcm16)
    covered = np.zeros(len(voiced), dtype=bool)
    for u in utts:
        covered[u.start_sample // 480 : u.end_sample // 480] = True
    # Isolated voiced frames (clicks, breaths) need not start speech; real speech must be in.
    assert covered[voiced == 1].mean() >= 0.95


@pytest.mark.parametrize(("name", "channel"), CLIPS)
def test_16k_clip_utterances_cover_speech(shared_audio: Path, name: str, channel: int) -> None:
    pcm, rate = read_wav(shared_audio / name, channel)
    assert rate == 16000
    chunks = _chunks(pcm, rate, 320)  # 20 ms, as a sound card delivers
    utts = _run(ChannelFrontEnd("call-1", Speaker.AGENT, rate), chunks)
    _check_covers(utts, pcm)
    ref = _run(ReferenceFrontEnd(rate), chunks)
    assert _cuts(utts) == [(s, e, f) for s, e, _, f, *_ in ref]


@pytest.mark.parametrize(("name", "channel"), CLIPS)
def test_8k_copy_is_classified_at_8k_and_covers_speech(
    shared_audio: Path, name: str, channel: int
) -> None:
    pcm, rate = read_wav(shared_audio / _8k_name(name), channel)
    assert rate == 8000
    chunks = _chunks(pcm, rate, 160)
    fe = ChannelFrontEnd("call-1", Speaker.AGENT, rate)
    utts = _run(fe, chunks)
    # webrtcvad saw the native 8 kHz frames (on 5 of these clips one frame's decision
    # differs from the 16 kHz resampled copy's): the twin endpoints `webrtcvad.Vad.is_speech`
    # on the same 8 kHz frames and cuts exactly the same utterances.
    voiced8, _ = RefFrameVad(8000, 30, FrontEndOptions().vad_mode).process(pcm)
    assert (fe.stats.frames, fe.stats.voiced_frames) == (len(voiced8), voiced8.sum())
    ref = _run(ReferenceFrontEnd(rate), chunks)
    assert _cuts(utts) == [(s, e, f) for s, e, _, f, *_ in ref]
    # Each utterance carries its 8 kHz input samples, unresampled, and the recogniser's
    # 16 kHz copy, made on first use, is exactly its span of the whole stream resampled.
    _check_covers(utts, pcm, rate)
    whole = resample(pcm, 8000)
    for u, r in zip(utts, ref, strict=True):
        np.testing.assert_array_equal(u.pcm, r[2])
        np.testing.assert_array_equal(u.context[0], r[4])
        np.testing.assert_array_equal(u.context[1], r[5])
        np.testing.assert_array_equal(u.pcm16, whole[u.start_sample : u.end_sample])


@pytest.fixture(scope="module")
def clip16(shared_audio: Path) -> np.ndarray:
    return read_wav(shared_audio / "en_jfk_inaugural_16k_mono.wav")[0]


@pytest.fixture(scope="module")
def clip8(shared_audio: Path) -> np.ndarray:
    return read_wav(shared_audio / "8k" / "en_jfk_inaugural_8k_ulaw.wav")[0]


@settings(max_examples=8, deadline=None)
@given(sizes=st.lists(st.integers(1, 4000), min_size=1, max_size=40))
def test_random_chunking_gives_identical_utterances(clip8: np.ndarray, sizes) -> None:
    whole = _run(ChannelFrontEnd("call-1", Speaker.AGENT, 8000), _chunks(clip8, 8000, len(clip8)))
    chunks, pos, i = [], 0, 0
    while pos < len(clip8):
        size = sizes[i % len(sizes)]
        chunks.append(AudioChunk("call-1", Speaker.AGENT, clip8[pos : pos + size], 8000, pos))
        pos, i = pos + size, i + 1
    pieces = _run(ChannelFrontEnd("call-1", Speaker.AGENT, 8000), chunks)
    assert _cuts(pieces) == _cuts(whole)
    for a, b in zip(pieces, whole, strict=True):
        np.testing.assert_array_equal(a.pcm, b.pcm)
        np.testing.assert_array_equal(a.pcm16, b.pcm16)


def test_first_sample_offset_maps_exactly_at_44k(clip16: np.ndarray) -> None:
    pcm44 = resample(clip16[: 5 * 16000], 16000, 44100)
    # 44.1 kHz meets 16 kHz every 441 input / 160 output samples.
    base = _cuts(_run(ChannelFrontEnd("call-1", Speaker.AGENT, 44100), _chunks(pcm44, 44100, 882)))
    assert base
    shifted = _run(
        ChannelFrontEnd("call-1", Speaker.AGENT, 44100), _chunks(pcm44, 44100, 882, 441 * 300)
    )
    assert _cuts(shifted) == [(s + 160 * 300, e + 160 * 300, f) for s, e, f in base]
    # Off the meeting points, the front end pads back to one; the clock still holds.
    odd = _run(
        ChannelFrontEnd("call-1", Speaker.AGENT, 44100),
        _chunks(pcm44, 44100, 882, 441 * 300 + 100),
    )
    padded = np.concatenate([np.zeros(100, np.int16), pcm44])
    want = _run(ChannelFrontEnd("call-1", Speaker.AGENT, 44100), _chunks(padded, 44100, 882))
    assert _cuts(odd) == [(s + 160 * 300, e + 160 * 300, f) for s, e, f in _cuts(want)]
    # And the 44.1 kHz path finds the same speech as the 16 kHz original, within 2 frames.
    direct = _cuts(
        _run(
            ChannelFrontEnd("call-1", Speaker.AGENT, 16000),
            _chunks(clip16[: 5 * 16000], 16000, 320),
        )
    )
    assert len(direct) == len(base)
    for (s1, e1, _), (s2, e2, _) in zip(direct, base, strict=True):
        assert abs(s1 - s2) <= 960 and abs(e1 - e2) <= 960


def test_gap_is_filled_with_silence_on_the_clock(clip16: np.ndarray) -> None:
    gap = 16000 * 2 + 77
    cut = 8 * 16000
    fe = ChannelFrontEnd("call-1", Speaker.AGENT, 16000)
    chunks = [
        AudioChunk("call-1", Speaker.AGENT, clip16[:cut], 16000, 0),
        AudioChunk("call-1", Speaker.AGENT, clip16[cut:], 16000, cut + gap),
    ]
    got = _run(fe, chunks)
    assert fe.stats.gap_samples == gap
    filled = np.concatenate([clip16[:cut], np.zeros(gap, np.int16), clip16[cut:]])
    want = _run(ChannelFrontEnd("call-1", Speaker.AGENT, 16000), _chunks(filled, 16000, 320))
    assert _cuts(got) == _cuts(want)
    assert got[-1].end_sample > cut + gap


def test_late_and_overlapping_samples_are_dropped_and_counted(clip16: np.ndarray) -> None:
    fe = ChannelFrontEnd("call-1", Speaker.AGENT, 16000)
    chunks = [
        AudioChunk("call-1", Speaker.AGENT, clip16[:80000], 16000, 0),
        AudioChunk("call-1", Speaker.AGENT, clip16[30000:40000], 16000, 30000),  # all old
        AudioChunk("call-1", Speaker.AGENT, clip16[79000:], 16000, 79000),  # overlaps 1000
    ]
    got = _run(fe, chunks)
    assert fe.stats.late_samples == 10000 + 1000
    assert fe.stats.gap_samples == 0
    want = _run(ChannelFrontEnd("call-1", Speaker.AGENT, 16000), _chunks(clip16, 16000, 320))
    assert _cuts(got) == _cuts(want)


def test_wrong_rate_chunk_is_rejected_and_counted(clip16: np.ndarray) -> None:
    fe = ChannelFrontEnd("call-1", Speaker.AGENT, 16000)
    assert fe.push(AudioChunk("call-1", Speaker.AGENT, clip16[:800], 8000, 0)) == []
    stats = fe.stats
    assert (stats.rejected_chunks, stats.frames) == (1, 0)


def test_open_utterance_and_stats_follow_the_stream(clip16: np.ndarray) -> None:
    fe = ChannelFrontEnd("call-1", Speaker.AGENT, 16000)
    assert fe.open_start_sample is None
    fe.push(AudioChunk("call-1", Speaker.AGENT, clip16[: 2 * 16000], 16000, 0))
    assert fe.open_start_sample is not None  # JFK speaks from the first second
    utts = fe.flush()
    assert fe.open_start_sample is None
    stats = fe.stats
    assert stats.frames == 2 * 16000 // 480
    assert 0 < stats.voiced_frames <= stats.frames
    assert stats.utterances == len(utts) == 1
    with pytest.raises(RuntimeError):
        fe.push(AudioChunk("call-1", Speaker.AGENT, clip16[:10], 16000, 32000))


def test_over_long_speech_is_split(shared_audio: Path) -> None:
    pcm, _ = read_wav(shared_audio / "en_librispeech_1995-1837-0001.wav")
    opts = FrontEndOptions(endpointer=EndpointerOptions(max_utterance_s=4.0, split_search_s=1.0))
    utts = _run(ChannelFrontEnd("call-1", Speaker.AGENT, 16000, opts), _chunks(pcm, 16000, 320))
    assert len(utts) >= 3
    assert all(u.duration <= 4.0 for u in utts)
    assert utts[0].forced_split and not utts[-1].forced_split
    for a, b in zip(utts, utts[1:], strict=False):
        if a.forced_split:
            assert a.end_sample == b.start_sample


@pytest.mark.parametrize(
    "make",
    [
        lambda: EndpointerOptions(start_voiced=11),
        lambda: EndpointerOptions(end_unvoiced_ratio=0.0),
        lambda: EndpointerOptions(split_search_s=20.0),
        lambda: EndpointerOptions(pre_roll_ms=-30),
        lambda: FrontEndOptions(vad_mode=5),
        lambda: FrontEndOptions(frame_ms=25),
    ],
)
def test_invalid_options_are_refused(make) -> None:
    with pytest.raises(ValueError):
        make()


@pytest.mark.parametrize("rate", [8000, 16000])
def test_settled_sample_is_never_passed_by_a_later_utterance(
    clip16: np.ndarray, clip8: np.ndarray, rate: int
) -> None:
    pcm = clip16 if rate == 16000 else clip8
    fe = ChannelFrontEnd("call-1", Speaker.AGENT, rate)
    settled, seen_open = 0, False
    for chunk in _chunks(pcm, rate, rate // 50):
        utts = fe.push(chunk)
        for u in utts:
            assert u.start_sample >= settled
        new = fe.settled_sample
        assert new >= settled  # it only moves forward
        # It never claims audio that has not been pushed yet.
        assert new <= (chunk.first_sample + len(chunk.pcm)) * 16000 // rate
        if fe.open_start_sample is not None:
            seen_open = True
            assert fe.open_start_sample == new
        else:
            assert fe.open_start_sample is None
        settled = new
    for u in fe.flush():
        assert u.start_sample >= settled
    assert seen_open


def test_8k_long_call_with_gaps_matches_the_twin(shared_audio: Path) -> None:
    """Over a minute at 8 kHz, past the input history's wrap, with two gaps in the clock."""
    names = ["en_librivox_austen_0870.wav", "zh_aishell_BAC009S0724W0121.wav",
             "en_jfk_inaugural_16k_mono.wav", "en_digits_vosk.wav"]
    pcm = np.concatenate([read_wav(shared_audio / _8k_name(n))[0] for n in names] * 2)
    assert len(pcm) > 60 * 8000
    chunks, pos = [], 0
    for i in range(0, len(pcm), 160):
        if i in (20 * 8000, 45 * 8000):
            pos += 3 * 8000 + 7  # three seconds missing, not on a frame boundary
        chunks.append(AudioChunk("call-1", Speaker.AGENT, pcm[i : i + 160], 8000, pos))
        pos += len(pcm[i : i + 160])
    fe = ChannelFrontEnd("call-1", Speaker.AGENT, 8000)
    utts = _run(fe, chunks)
    ref = _run(ReferenceFrontEnd(8000), chunks)
    assert len(utts) >= 10 and fe.stats.gap_samples == 2 * (3 * 8000 + 7)
    assert _cuts(utts) == [(s, e, f) for s, e, _, f, *_ in ref]
    # The stream as the clock has it: the gaps filled with silence.
    heard = np.zeros(chunks[-1].first_sample + len(chunks[-1].pcm), np.int16)
    for chunk in chunks:
        heard[chunk.first_sample : chunk.first_sample + len(chunk.pcm)] = chunk.pcm
    whole = resample(heard, 8000)
    for u, r in zip(utts, ref, strict=True):
        np.testing.assert_array_equal(u.pcm, r[2])
        np.testing.assert_array_equal(u.pcm16, whole[u.start_sample : u.end_sample])


def test_8k_utterance_is_resampled_once_for_the_recogniser(clip8: np.ndarray) -> None:
    pcm = clip8[8000:24000].copy()
    u = Utterance("call-1", Speaker.AGENT, 16000, 48000, pcm, sample_rate=8000)
    assert (u.start, u.end, u.duration) == (1.0, 3.0, 2.0)  # the 16 kHz clock, as before
    first = u.pcm16
    np.testing.assert_array_equal(first, resample(pcm, 8000))
    assert len(first) == u.end_sample - u.start_sample
    assert not first.flags.writeable
    assert u.pcm16 is first  # made on first use, then kept
    wide = Utterance("call-1", Speaker.AGENT, 0, 3, np.zeros(3, np.int16))
    assert wide.pcm16 is wide.pcm  # 16 kHz needs no copy


@pytest.mark.parametrize(
    ("start", "end", "n", "rate"),
    [(0, 100, 100, 8000), (0, 200, 100, 12000), (0, 200, 100, 44100), (0, 0, 0, 0)],
)
def test_utterance_span_must_match_its_samples_at_its_rate(start, end, n, rate) -> None:
    with pytest.raises(ValueError, match="Utterance"):
        Utterance("call-1", Speaker.AGENT, start, end, np.zeros(n, np.int16), sample_rate=rate)
