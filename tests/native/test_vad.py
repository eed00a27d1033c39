"""Framing + webrtcvad (`qa._native.vad`) against webrtcvad's own vectors and the Python twin."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qa._native import vad as native_vad
from qa._native.vad import FrameVad
from tests.reference.vad import FrameVad as RefFrameVad

#: py-webrtcvad's expected decisions for test-audio.raw in 30 ms frames, by mode.
GOLDEN = {
    0: "011110111111111111111111111100",
    1: "011110111111111111111111111100",
    2: "000000111111111111111111110000",
    3: "000000111111111111111100000000",
}


def _clip(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).copy()


@pytest.fixture(scope="module")
def golden_audio(shared_audio: Path) -> np.ndarray:
    return np.fromfile(shared_audio / "vectors" / "webrtcvad" / "test-audio.raw", dtype="<i2")


@pytest.fixture(scope="module")
def speech16k(shared_audio: Path) -> np.ndarray:
    return _clip(shared_audio / "en_librivox_austen_0870.wav")


@pytest.mark.parametrize("mode", sorted(GOLDEN))
def test_golden_decisions_8k(golden_audio: np.ndarray, mode: int) -> None:
    voiced, energy = FrameVad(8000, 30, mode).process(golden_audio)
    assert "".join(map(str, voiced)) == GOLDEN[mode]
    ref_voiced, ref_energy = RefFrameVad(8000, 30, mode).process(golden_audio)
    assert "".join(map(str, ref_voiced)) == GOLDEN[mode]
    np.testing.assert_array_equal(energy, ref_energy)


def test_golden_decisions_survive_odd_chunking(golden_audio: np.ndarray) -> None:
    vad = FrameVad(8000, 30, 3)
    # 77 samples per call: frames straddle calls, so the partial frame must carry over.
    parts = [vad.process(golden_audio[i : i + 77])[0] for i in range(0, len(golden_audio), 77)]
    assert "".join(map(str, np.concatenate(parts))) == GOLDEN[3]
    assert vad.frames == len(GOLDEN[3])
    assert vad.voiced_frames == GOLDEN[3].count("1")
    assert vad.pending == len(golden_audio) % 240


def test_energy_is_mean_square() -> None:
    pcm = np.full(480, -32768, dtype=np.int16)
    pcm[:240] = 3
    _, energy = FrameVad(16000, 30, 0).process(pcm)
    assert energy.tolist() == [(240 * 9 + 240 * 32768**2) / 480]


@pytest.mark.parametrize("rate", [16000, 32000, 48000])
@pytest.mark.parametrize("frame_ms", [10, 20, 30])
def test_native_matches_reference_at_every_rate(
    speech16k: np.ndarray, rate: int, frame_ms: int
) -> None:
    # Repeating samples is a crude upsampler, but both sides see the same samples.
    pcm = np.repeat(speech16k[: 3 * 16000], rate // 16000)
    voiced, energy = FrameVad(rate, frame_ms, 2).process(pcm)
    ref_voiced, ref_energy = RefFrameVad(rate, frame_ms, 2).process(pcm)
    assert voiced.sum() > len(voiced) // 2
    np.testing.assert_array_equal(voiced, ref_voiced)
    np.testing.assert_array_equal(energy, ref_energy)


@settings(max_examples=15, deadline=None)
@given(cuts=st.lists(st.integers(0, 8 * 16000), max_size=20), mode=st.integers(0, 3))
def test_random_chunking_matches_one_shot_reference(
    speech16k: np.ndarray, cuts: list[int], mode: int
) -> None:
    vad = FrameVad(16000, 30, mode)
    bounds = [0, *sorted(c % len(speech16k) for c in cuts), len(speech16k)]
    parts = [vad.process(speech16k[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]
    ref_voiced, ref_energy = RefFrameVad(16000, 30, mode).process(speech16k)
    np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), ref_voiced)
    np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), ref_energy)


@pytest.mark.parametrize(
    ("rate", "frame_ms", "mode"), [(11025, 30, 0), (16000, 25, 0), (16000, 30, 4)]
)
def test_invalid_settings_are_refused(rate: int, frame_ms: int, mode: int) -> None:
    with pytest.raises(ValueError):
        FrameVad(rate, frame_ms, mode)


def test_reset_restarts_state(golden_audio: np.ndarray) -> None:
    vad = FrameVad(8000, 30, 2)
    first = vad.process(golden_audio[:1000])[0]
    vad.reset()
    assert vad.pending == 0
    again = vad.process(golden_audio[:1000])[0]
    np.testing.assert_array_equal(first, again)
