"""The compiled channel front end against the plain-Python twin and the webrtcvad floor.

Paths, all on ~20 s of real speech (JFK + LibriSpeech) delivered in 20 ms chunks:
- frame path: native ring write+read, native resampler (8 kHz input), native framing + VAD +
  endpointer, called directly;
- front end: the same through `ChannelFrontEnd.push(AudioChunk)` (the path sources use);
- reference: the pure-Python twins (`tests/reference/`);
- floor: `webrtcvad.Vad.is_speech` alone on the same 16 kHz frames.
Every test asserts the paths cut identical utterances; speed is reported as ratios in
`extra_info` (CPU time, best of a few runs, all in this run), never asserted.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import webrtcvad

from qa._native.endpointer import Endpointer
from qa._native.resample import Resampler
from qa._native.ring import RingBuffer
from qa._native.vad import FrameVad
from qa.frontend import ChannelFrontEnd, FrontEndOptions
from qa.types import AudioChunk, Speaker
from tests.reference.frontend import ReferenceFrontEnd, read_wav, ring_chunks

OPTIONS = FrontEndOptions()
CLIPS = {
    16000: ["en_jfk_inaugural_16k_mono.wav", "en_librispeech_1995-1837-0001.wav"],
    8000: ["8k/en_jfk_inaugural_8k_ulaw.wav", "8k/en_librispeech_1995-1837-0001_8k_ulaw.wav"],
}
RING_CAPACITY = 16000  # one second at 16 kHz: far more than one 20 ms chunk


def _chunk_len(rate: int) -> int:
    return rate // 50  # 20 ms


def frame_path(pcm: np.ndarray, rate: int) -> list[tuple[int, int, bool]]:
    ring = RingBuffer(RING_CAPACITY)
    size = _chunk_len(rate)
    out = np.zeros(size, dtype=np.int16)
    resampler = Resampler(rate, 16000) if rate != 16000 else None
    vad = FrameVad(16000, OPTIONS.frame_ms, OPTIONS.vad_mode)
    ep = Endpointer(vad.frame_len, vad=vad, **OPTIONS.endpointer.in_frames(OPTIONS.frame_ms))
    found = []
    for i in range(0, len(pcm), size):
        ring.write(pcm[i : i + size])
        n = ring.read(out)
        filled = out if n == size else out[:n]  # a full read needs no new view
        block = filled if resampler is None else resampler.process(filled)
        found += ep.process(block)
    if resampler is not None:
        found += ep.process(resampler.flush())
    found += ep.flush()
    return [(s, e, f) for s, e, _, f in found]


def frontend_path(pcm: np.ndarray, rate: int) -> list[tuple[int, int, bool]]:
    ring = RingBuffer(RING_CAPACITY)
    size = _chunk_len(rate)
    out = np.zeros(size, dtype=np.int16)
    fe = ChannelFrontEnd("bench", Speaker.AGENT, rate, OPTIONS)
    found = []
    for i in range(0, len(pcm), size):
        ring.write(pcm[i : i + size])
        n = ring.read(out)
        chunk = AudioChunk("bench", Speaker.AGENT, out[:n].copy(), rate, ring.last_read_start)
        found += fe.push(chunk)
    found += fe.flush()
    return [(u.start_sample, u.end_sample, u.forced_split) for u in found]


def reference_path(pcm: np.ndarray, rate: int) -> list[tuple[int, int, bool]]:
    fe = ReferenceFrontEnd(rate, OPTIONS)
    found = []
    pos = 0
    for block in ring_chunks(pcm, _chunk_len(rate), RING_CAPACITY):
        found += fe.push(AudioChunk("bench", Speaker.AGENT, block, rate, pos))
        pos += len(block)
    found += fe.flush()
    return [(s, e, f) for s, e, _, f in found]


def floor_path(frames: list[bytes]) -> int:
    vad = webrtcvad.Vad(OPTIONS.vad_mode)
    return sum(vad.is_speech(frame, 16000) for frame in frames)


def _cpu(fn, *args, repeat: int = 3):
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.process_time()
        result = fn(*args)
        best = min(best, time.process_time() - start)
    return best, result


@pytest.fixture(scope="module")
def speech(shared_audio: Path) -> dict[int, np.ndarray]:
    return {
        rate: np.concatenate([read_wav(shared_audio / name)[0] for name in names])
        for rate, names in CLIPS.items()
    }


def _frames16(pcm: np.ndarray, rate: int) -> list[bytes]:
    pcm16 = pcm
    if rate != 16000:
        resampler = Resampler(rate, 16000)
        pcm16 = np.concatenate([resampler.process(pcm), resampler.flush()])
    step = 16000 * OPTIONS.frame_ms // 1000
    return [pcm16[i : i + step].tobytes() for i in range(0, len(pcm16) - step + 1, step)]


@pytest.mark.parametrize("rate", [8000, 16000])
def test_bench_frame_path(benchmark, speech, rate: int) -> None:
    pcm = speech[rate]
    benchmark.group = f"frontend-{rate}"
    cuts = benchmark(frame_path, pcm, rate)
    frames = _frames16(pcm, rate)
    ref_cpu, ref_cuts = _cpu(reference_path, pcm, rate, repeat=1)
    cpu, again = _cpu(frame_path, pcm, rate)
    fe_cpu, fe_cuts = _cpu(frontend_path, pcm, rate)
    floor_cpu, floor_voiced = _cpu(floor_path, frames)
    assert len(cuts) >= 2
    assert cuts == again == fe_cuts == ref_cuts
    vad = FrameVad(16000, OPTIONS.frame_ms, OPTIONS.vad_mode)
    vad.process(np.frombuffer(b"".join(frames), dtype=np.int16))
    assert vad.voiced_frames == floor_voiced
    audio_s = len(pcm) / rate
    info = {
        "audio_s": round(audio_s, 2),
        "speedup_vs_reference": round(ref_cpu / cpu, 1),
        "frame_path_over_floor": round(cpu / floor_cpu, 2),
        "frontend_over_floor": round(fe_cpu / floor_cpu, 2),
        "channels_per_core_frame_path": round(audio_s / cpu),
        "channels_per_core_frontend": round(audio_s / fe_cpu),
        "channels_per_core_floor": round(audio_s / floor_cpu),
    }
    benchmark.extra_info.update(info)
    print(f"\n{rate} Hz input: {info}")


@pytest.mark.parametrize("rate", [8000, 16000])
def test_bench_channel_frontend(benchmark, speech, rate: int) -> None:
    benchmark.group = f"frontend-{rate}"
    cuts = benchmark(frontend_path, speech[rate], rate)
    assert cuts == frame_path(speech[rate], rate)


@pytest.mark.parametrize("rate", [8000, 16000])
def test_bench_reference_path(benchmark, speech, rate: int) -> None:
    benchmark.group = f"frontend-{rate}"
    cuts = benchmark.pedantic(reference_path, args=(speech[rate], rate), rounds=2)
    assert cuts == frame_path(speech[rate], rate)


@pytest.mark.parametrize("rate", [8000, 16000])
def test_bench_webrtcvad_floor(benchmark, speech, rate: int) -> None:
    benchmark.group = f"frontend-{rate}"
    frames = _frames16(speech[rate], rate)
    voiced = benchmark(floor_path, frames)
    assert 0 < voiced < len(frames)
