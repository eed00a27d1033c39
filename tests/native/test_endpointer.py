"""The endpointer state machine (`qa._native.endpointer`): Python twin and exact cases."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qa._native import endpointer as native_endpointer
from qa._native.endpointer import Endpointer
from qa._native.vad import FrameVad
from qa.frontend import EndpointerOptions
from tests.reference.endpointer import Endpointer as RefEndpointer
from tests.reference.vad import FrameVad as RefFrameVad

FRAME = 480  # 30 ms at 16 kHz
#: The defaults, in 30 ms frames.
DEFAULTS = EndpointerOptions().in_frames(30)


def _clip(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).copy()


def _frames_pcm(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-2000, 2000, n * FRAME, dtype=np.int16)


def _run(ep, pcm, voiced, energy, cuts=()):
    bounds = [0, *sorted(cuts), len(voiced)]
    out = []
    for a, b in zip(bounds, bounds[1:], strict=False):
        out += ep.push_frames(pcm[a * FRAME : b * FRAME], voiced[a:b], energy[a:b])
    return out + ep.flush()


def _same(got, want) -> None:
    assert [(s, e, f) for s, e, _, f, *_ in got] == [(s, e, f) for s, e, _, f, *_ in want]
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g[2], w[2])


def test_defaults_in_frames() -> None:
    assert DEFAULTS == {
        "start_window": 10,
        "start_voiced": 7,
        "end_window": 20,
        "end_unvoiced": 18,
        "pre_roll": 10,
        "post_roll": 5,
        "max_frames": 500,
        "split_search": 100,
        "min_frames": 10,
    }


params = st.fixed_dictionaries(
    {
        "start_window": st.integers(1, 12),
        "start_fraction": st.floats(0.01, 1.0),
        "end_window": st.integers(1, 25),
        "end_fraction": st.floats(0.01, 1.0),
        "pre_roll": st.integers(0, 12),
        "post_roll": st.integers(0, 8),
        "max_frames": st.integers(2, 60),
        "split_fraction": st.floats(0.0, 1.0),
        "min_frames": st.integers(0, 15),
        "base_sample": st.integers(0, 10**6),
    }
)


def _args(p: dict) -> dict:
    return {
        "start_window": p["start_window"],
        "start_voiced": max(1, round(p["start_fraction"] * p["start_window"])),
        "end_window": p["end_window"],
        "end_unvoiced": max(1, round(p["end_fraction"] * p["end_window"])),
        "pre_roll": p["pre_roll"],
        "post_roll": p["post_roll"],
        "max_frames": p["max_frames"],
        "split_search": max(1, min(p["max_frames"] - 1, round(p["split_fraction"] * 60))),
        "min_frames": p["min_frames"],
        "base_sample": p["base_sample"],
    }


@settings(max_examples=150, deadline=None)
@given(
    p=params,
    runs=st.lists(st.tuples(st.booleans(), st.integers(1, 40)), min_size=1, max_size=25),
    energies=st.lists(st.integers(0, 50), min_size=1, max_size=30),
    cuts=st.lists(st.integers(0, 1000), max_size=6),
)
def test_native_matches_reference_on_random_decisions(p, runs, energies, cuts) -> None:
    voiced = np.array([v for v, n in runs for _ in range(n)], dtype=np.uint8)
    n = len(voiced)
    # Few distinct energies, so ties in the quietest-frame search happen.
    energy = np.resize(np.array(energies, dtype=np.float64), n)
    pcm = _frames_pcm(n)
    args = _args(p)
    native = Endpointer(FRAME, **args)
    ref = RefEndpointer(FRAME, **args)
    frame_cuts = [c % (n + 1) for c in cuts]
    _same(_run(native, pcm, voiced, energy, frame_cuts), _run(ref, pcm, voiced, energy))
    assert (native.utterances, native.discarded) == (ref.utterances, ref.discarded)


@settings(max_examples=150, deadline=None)
@given(
    p=params,
    runs=st.lists(st.tuples(st.booleans(), st.integers(1, 40)), min_size=1, max_size=25),
    cuts=st.lists(st.integers(0, 1000), max_size=6),
    context=st.integers(1, FRAME),
    tail=st.integers(0, FRAME - 1),
)
def test_context_is_the_stream_around_each_utterance(p, runs, cuts, context, tail) -> None:
    """With `context`, each utterance carries the samples just before and after it, from the
    stream itself (fewer only at its start and end), however the frames arrive; an utterance
    that ends on the newest frame waits for the next one (or the VAD's partial frame at flush)."""
    voiced = np.array([v for v, n in runs for _ in range(n)], dtype=np.uint8)
    n = len(voiced)
    energy = np.arange(n, dtype=np.float64) % 5
    stream = _frames_pcm(n + 1)[: n * FRAME + tail]  # whole frames, then a partial one
    args = _args(p)
    base = args["base_sample"]
    frame_cuts = sorted({c % (n + 1) for c in cuts})
    native = Endpointer(FRAME, **args, context=context)
    plain = Endpointer(FRAME, **args)
    ref = RefEndpointer(FRAME, **args, context=context)
    got = _run(native, stream, voiced, energy, frame_cuts)
    want = _run(ref, stream, voiced, energy)
    # Without a VAD nothing holds a partial frame, so the stream ends with the last frame.
    end = n * FRAME
    _same(got, _run(plain, stream, voiced, energy))  # context changes no cut
    for g, w in zip(got, want, strict=True):
        assert len(g) == len(w) == 6
        start, stop = g[0] - base, g[1] - base
        np.testing.assert_array_equal(g[4], stream[max(0, start - context) : start])
        np.testing.assert_array_equal(g[5], stream[stop : min(end, stop + context)])
        np.testing.assert_array_equal(g[4], w[4])
        np.testing.assert_array_equal(g[5], w[5])


def test_context_at_flush_reaches_into_the_partial_frame(speech: np.ndarray) -> None:
    """Speech running to the end of the stream: the samples after the last whole frame are
    the ones the VAD still holds."""
    cut = 133 * FRAME + 17  # 4 s into the sentence, 17 samples into a frame
    signal = speech[:cut]
    ep = Endpointer(FRAME, vad=FrameVad(16000, 30, 2), **DEFAULTS, context=29)
    ref = RefEndpointer(FRAME, vad=RefFrameVad(16000, 30, 2), **DEFAULTS, context=29)
    out = ep.process(signal) + ep.flush()
    assert out[-1][1] == cut // FRAME * FRAME  # the utterance runs to the last whole frame
    np.testing.assert_array_equal(out[-1][5], signal[out[-1][1] :])
    assert len(out[-1][5]) == 17
    want = ref.process(signal) + ref.flush()
    _same(out, want)
    np.testing.assert_array_equal(out[-1][5], want[-1][5])


def test_utterance_ending_on_the_newest_frame_waits_for_the_next() -> None:
    # One unvoiced frame ends speech, and the post-roll reaches past it: the utterance ends
    # with the frame that closed it, so the samples after it are in the next frame.
    opts = {**DEFAULTS, "start_window": 1, "start_voiced": 1, "end_window": 1,
            "end_unvoiced": 1, "pre_roll": 0, "post_roll": 3, "min_frames": 1}
    voiced = np.array([1] * 12 + [0] * 3, dtype=np.uint8)
    pcm = _frames_pcm(len(voiced))
    ep = Endpointer(FRAME, **opts, context=29)
    assert ep.push_frames(pcm[: 13 * FRAME], voiced[:13], np.ones(13)) == []
    assert ep.settled_sample == 0  # the closed utterance still bounds what is settled
    (start, end, upcm, forced, before, after), = ep.push_frames(
        pcm[13 * FRAME : 14 * FRAME], voiced[13:14], np.ones(1))
    assert (start, end, forced) == (0, 13 * FRAME, False)
    np.testing.assert_array_equal(upcm, pcm[:end])
    assert len(before) == 0  # the stream starts with it
    np.testing.assert_array_equal(after, pcm[end : end + 29])


def test_context_must_fit_a_frame() -> None:
    with pytest.raises(ValueError, match="context"):
        Endpointer(FRAME, **DEFAULTS, context=FRAME + 1)


@settings(max_examples=100, deadline=None)
@given(
    p=params,
    runs=st.lists(st.tuples(st.booleans(), st.integers(1, 40)), min_size=1, max_size=25),
    step=st.integers(1, 30),
    context=st.sampled_from([0, 29]),
)
def test_settled_sample_bounds_every_later_utterance(p, runs, step, context) -> None:
    voiced = np.array([v for v, n in runs for _ in range(n)], dtype=np.uint8)
    energy = np.arange(len(voiced), dtype=np.float64) % 7
    pcm = _frames_pcm(len(voiced))
    args = _args(p)
    ep = Endpointer(FRAME, **args, context=context)
    settled = args["base_sample"]
    for a in range(0, len(voiced), step):
        b = min(a + step, len(voiced))
        for start, *_ in ep.push_frames(pcm[a * FRAME : b * FRAME], voiced[a:b], energy[a:b]):
            assert start >= settled
        assert settled <= ep.settled_sample <= args["base_sample"] + b * FRAME
        settled = ep.settled_sample
    assert all(start >= settled for start, *_ in ep.flush())


def test_exact_boundaries_on_known_decisions() -> None:
    voiced = np.array([0] * 50 + [1] * 100 + [0] * 50, dtype=np.uint8)
    pcm = _frames_pcm(len(voiced))
    out = _run(Endpointer(FRAME, **DEFAULTS), pcm, voiced, np.ones(len(voiced)))
    assert len(out) == 1
    start, end, upcm, forced = out[0]
    # First voiced frame 50 less 10 frames of pre-roll; last voiced 149 plus 5 of post-roll.
    assert (start, end, forced) == (40 * FRAME, 155 * FRAME, False)
    np.testing.assert_array_equal(upcm, pcm[start:end])


def test_pause_shorter_than_hangover_keeps_one_utterance() -> None:
    # 17 unvoiced frames of 20 is below the 18 that end speech.
    voiced = np.array([1] * 40 + [0] * 17 + [1] * 40 + [0] * 40, dtype=np.uint8)
    out = _run(Endpointer(FRAME, **DEFAULTS), _frames_pcm(len(voiced)), voiced, np.ones(137))
    assert [(s // FRAME, e // FRAME) for s, e, _, _ in out] == [(0, 102)]


def test_short_blip_is_discarded_and_counted() -> None:
    voiced = np.array([0] * 20 + [1] * 7 + [0] * 30, dtype=np.uint8)
    opts = {**DEFAULTS, "pre_roll": 0, "post_roll": 0}
    ep = Endpointer(FRAME, **opts)
    assert _run(ep, _frames_pcm(len(voiced)), voiced, np.ones(len(voiced))) == []
    assert (ep.utterances, ep.discarded) == (0, 1)


def test_forced_split_at_quietest_frame() -> None:
    n = 700  # 21 s of continuous speech
    voiced = np.ones(n, dtype=np.uint8)
    energy = np.random.default_rng(1).uniform(100.0, 200.0, n)
    energy[460] = 1.0  # inside the last 3 s of the first 15 s (frames 400..499)
    energy[300] = 0.5  # quieter, but outside the search window
    pcm = _frames_pcm(n)
    out = _run(Endpointer(FRAME, **DEFAULTS), pcm, voiced, energy)
    assert [(s // FRAME, e // FRAME, f) for s, e, _, f in out] == [
        (0, 460, True),
        (460, 700, False),
    ]
    for start, end, upcm, _ in out:
        np.testing.assert_array_equal(upcm, pcm[start:end])


@pytest.fixture(scope="module")
def speech(shared_audio: Path) -> np.ndarray:
    return _clip(shared_audio / "en_librispeech_1995-1837-0001.wav")


def test_real_clip_placed_at_odd_offset(speech: np.ndarray) -> None:
    offset = 50 * FRAME + 123  # not on a frame boundary
    signal = np.concatenate([np.zeros(offset, np.int16), speech, np.zeros(3 * 16000, np.int16)])
    decisions, _ = RefFrameVad(16000, 30, 2).process(signal)
    ep = Endpointer(FRAME, vad=FrameVad(16000, 30, 2), **DEFAULTS)
    out = ep.process(signal) + ep.flush()
    assert len(out) == 1
    start, end, upcm, _ = out[0]
    voiced_frames = np.flatnonzero(decisions)
    # Exact: first voiced frame less the pre-roll, last voiced frame plus the post-roll.
    assert start == (voiced_frames[0] - DEFAULTS["pre_roll"]) * FRAME
    assert end == (voiced_frames[-1] + 1 + DEFAULTS["post_roll"]) * FRAME
    # The speech starts in the frame holding the offset or later, and the pre-roll is kept.
    assert voiced_frames[0] >= offset // FRAME
    assert start <= offset + 0.1 * 16000
    assert end >= offset + len(speech) - 0.2 * 16000
    np.testing.assert_array_equal(upcm, signal[start:end])


def test_real_speech_forced_split_is_quietest_frame(speech: np.ndarray) -> None:
    looped = np.tile(speech, 3)  # 26 s with no pause longer than the hangover
    opts = {**DEFAULTS, "max_frames": 200, "split_search": 60}  # 6 s, last 1.8 s
    ep = Endpointer(FRAME, vad=FrameVad(16000, 30, 2), **opts)
    out = ep.process(looped) + ep.flush()
    _, energy = RefFrameVad(16000, 30, 2).process(looped)
    forced = [u for u in out if u[3]]
    assert len(forced) >= 3
    for start, end, upcm, _ in forced:
        first, cut = start // FRAME, end // FRAME
        assert cut - first <= opts["max_frames"]
        window = energy[first + opts["max_frames"] - opts["split_search"] : first + 200]
        assert energy[cut] == window.min()
        np.testing.assert_array_equal(upcm, looped[start:end])
    # Consecutive parts of a split touch: no sample lost or repeated.
    for a, b in zip(out, out[1:], strict=False):
        if a[3]:
            assert a[1] == b[0]
    ref = RefEndpointer(FRAME, vad=RefFrameVad(16000, 30, 2), **opts)
    _same(out, ref.process(looped) + ref.flush())


@pytest.mark.parametrize(
    "bad",
    [
        {"start_voiced": 11},
        {"end_unvoiced": 0},
        {"max_frames": 1},
        {"split_search": 500},
        {"pre_roll": -1},
    ],
)
def test_invalid_arguments_are_refused(bad: dict) -> None:
    with pytest.raises(ValueError):
        Endpointer(FRAME, **{**DEFAULTS, **bad})


def test_wrong_frame_count_is_refused() -> None:
    with pytest.raises(ValueError):
        Endpointer(FRAME, **DEFAULTS).push_frames(np.zeros(FRAME + 1, np.int16), [0], [0.0])
