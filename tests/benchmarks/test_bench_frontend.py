"""The compiled channel front end against the plain-Python twin and the webrtcvad floor.

Paths, all on ~20 s of real speech (JFK + LibriSpeech) delivered in 20 ms chunks:
- frame path: native ring write+read, native framing + VAD + endpointer, called directly; at
  8 kHz the VAD takes the 8 kHz frames and the utterances keep their 8 kHz samples (no
  resampling: the recogniser's 16 kHz copy is made on the transcription worker), as
  `ChannelFrontEnd` does;
- resample-all path: the frame path as it was before issue 10 item 14, every 8 kHz chunk
  resampled to 16 kHz and classified at 16 kHz (same run, so its ratio is comparable);
- worker resampling: `Utterance.pcm16` of every utterance the frame path cut, the work that
  moved off the frame path onto the transcription worker (reported, not part of the path);
- front end: the same through `ChannelFrontEnd.push(AudioChunk)` (the path sources use);
- reference: the pure-Python twins (`tests/reference/`);
- floor: `webrtcvad.Vad.is_speech` alone on the frames the path classifies (8 kHz frames for
  8 kHz input); `*_over_floor16` is against `is_speech` on the 16 kHz resampled frames.
Every test asserts the paths cut identical utterances on identical VAD decisions; speed is
reported as ratios in `extra_info` (CPU time, best of a few runs, all in this run), never
asserted. docs/capacity.md ("The 8 kHz frame path") has the figures.
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
from qa.frontend import NATIVE_VAD_RATES, ChannelFrontEnd, FrontEndOptions, resampler_reach
from qa.types import AudioChunk, Speaker, Utterance
from tests.reference.frontend import ReferenceFrontEnd, read_wav, ring_chunks

OPTIONS = FrontEndOptions()
CLIPS = {
    16000: ["en_jfk_inaugural_16k_mono.wav", "en_librispeech_1995-1837-0001.wav"],
    8000: ["8k/en_jfk_inaugural_8k_ulaw.wav", "8k/en_librispeech_1995-1837-0001_8k_ulaw.wav"],
}
RING_CAPACITY = 16000  # one second at 16 kHz: far more than one 20 ms chunk


def _chunk_len(rate: int) -> int:
    return rate // 50  # 20 ms


def frame_path(pcm: np.ndarray, rate: int, *, native: bool | None = None) -> list[tuple]:
    """Ring, framing, VAD and endpointer; `native=False` resamples every chunk to 16 kHz
    first (the path before 8 kHz frames were classified at 8 kHz).

    Returns `(start, end, pcm, forced)` cuts, start and end on the 16 kHz clock."""
    ring = RingBuffer(RING_CAPACITY)
    size = _chunk_len(rate)
    out = np.zeros(size, dtype=np.int16)
    native = rate in NATIVE_VAD_RATES if native is None else native
    resampler = Resampler(rate, 16000) if rate != 16000 and not native else None
    vad = FrameVad(rate if native else 16000, OPTIONS.frame_ms, OPTIONS.vad_mode)
    # At the native rate each utterance keeps the samples around it that its resampling on the
    # worker reads, as `ChannelFrontEnd` does.
    context = resampler_reach(rate) if native else 0
    ep = Endpointer(vad.frame_len, vad=vad, context=context,
                    **OPTIONS.endpointer.in_frames(OPTIONS.frame_ms))
    found = []
    for i in range(0, len(pcm), size):
        ring.write(pcm[i : i + size])
        n = ring.read(out)
        filled = out if n == size else out[:n]  # a full read needs no new view
        found += ep.process(filled if resampler is None else resampler.process(filled))
    if resampler is not None:
        found += ep.process(resampler.flush())
    found += ep.flush()
    scale = 16000 // vad.sample_rate
    return [(s * scale, e * scale, *rest) for s, e, *rest in found]


def _cuts(found: list[tuple]) -> list[tuple[int, int, bool]]:
    return [(s, e, f) for s, e, _, f, *_ in found]


def worker_resampling(found: list[tuple], rate: int) -> int:
    """What the transcription workers do for these cuts: each utterance's `pcm16`."""
    total = 0
    for start, end, pcm, _, before, after in found:
        utterance = Utterance("bench", Speaker.AGENT, start, end, pcm, sample_rate=rate,
                              context=(before, after))
        total += len(utterance.pcm16)
    return total


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
    return [(s, e, f) for s, e, _, f, *_ in found]


def floor_path(frames: list[bytes], rate: int = 16000) -> int:
    vad = webrtcvad.Vad(OPTIONS.vad_mode)
    return sum(vad.is_speech(frame, rate) for frame in frames)


def _cpu(fn, *args, repeat: int = 3):
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.process_time()
        result = fn(*args)
        best = min(best, time.process_time() - start)
    return best, result


def _race(paths: dict, rounds: int = 15) -> tuple[dict, dict]:
    """Best CPU time of each path over `rounds`, the paths taking turns within each round,
    so that a burst of load on the shared machine hits them all alike."""
    best = dict.fromkeys(paths, float("inf"))
    results = {}
    for _ in range(rounds):
        for name, fn in paths.items():
            start = time.process_time()
            results[name] = fn()
            best[name] = min(best[name], time.process_time() - start)
    return best, results


@pytest.fixture(scope="module")
def speech(shared_audio: Path) -> dict[int | str, np.ndarray]:
    out: dict[int | str, np.ndarray] = {
        rate: np.concatenate([read_wav(shared_audio / name)[0] for name in names])
        for rate, names in CLIPS.items()
    }
    # One side of a call: each clip, then as long a pause (line noise, about -60 dBFS) while
    # the other side speaks. The clips alone are 98 % speech; a call channel is about half.
    noise = np.random.default_rng(8000)
    parts = []
    for name in CLIPS[8000]:
        clip = read_wav(shared_audio / name)[0]
        parts += [clip, noise.integers(-30, 31, len(clip)).astype(np.int16)]
    out["8000-call"] = np.concatenate(parts)
    return out


def _frames16(pcm: np.ndarray, rate: int) -> list[bytes]:
    pcm16 = pcm
    if rate != 16000:
        resampler = Resampler(rate, 16000)
        pcm16 = np.concatenate([resampler.process(pcm), resampler.flush()])
    return _frames(pcm16, 16000)


def _frames(pcm: np.ndarray, rate: int) -> list[bytes]:
    step = rate * OPTIONS.frame_ms // 1000
    return [pcm[i : i + step].tobytes() for i in range(0, len(pcm) - step + 1, step)]


def _vad_rate(rate: int) -> int:
    return rate if rate in NATIVE_VAD_RATES else 16000


def _floor_frames(pcm: np.ndarray, rate: int) -> list[bytes]:
    """The frames the path classifies: native 8 kHz frames, else 16 kHz ones."""
    return _frames(pcm, rate) if rate in NATIVE_VAD_RATES else _frames16(pcm, rate)


@pytest.mark.parametrize("case", [8000, 16000, "8000-call"])
def test_bench_frame_path(benchmark, speech, case: int | str) -> None:
    pcm = speech[case]
    rate = 8000 if case == "8000-call" else case
    benchmark.group = f"frontend-{case}"
    found = benchmark(frame_path, pcm, rate)
    cuts = _cuts(found)
    frames = _floor_frames(pcm, rate)
    frames16 = _frames16(pcm, rate)
    native = rate in NATIVE_VAD_RATES
    paths = {
        "frame": lambda: frame_path(pcm, rate),
        "frontend": lambda: frontend_path(pcm, rate),
        "floor": lambda: floor_path(frames, _vad_rate(rate)),
        "floor16": lambda: floor_path(frames16),
    }
    if native:
        paths["resample_all"] = lambda: frame_path(pcm, rate, native=False)
        paths["worker"] = lambda: worker_resampling(found, rate)
    times, results = _race(paths)
    cpu, fe_cpu, floor_cpu, floor16_cpu = (
        times[name] for name in ("frame", "frontend", "floor", "floor16")
    )
    ref_cpu, ref_cuts = _cpu(reference_path, pcm, rate, repeat=1)
    floor_voiced = results["floor"]
    assert len(cuts) >= 2
    assert cuts == _cuts(results["frame"]) == results["frontend"] == ref_cuts
    # The path's VAD decided every frame as webrtcvad does on the same frames.
    vad = FrameVad(_vad_rate(rate), OPTIONS.frame_ms, OPTIONS.vad_mode)
    voiced, _ = vad.process(np.frombuffer(b"".join(frames), dtype=np.int16))
    reference = webrtcvad.Vad(OPTIONS.vad_mode)
    assert voiced.tolist() == [reference.is_speech(f, _vad_rate(rate)) for f in frames]
    assert int(voiced.sum()) == floor_voiced
    audio_s = len(pcm) / rate
    info = {
        "audio_s": round(audio_s, 2),
        "speedup_vs_reference": round(ref_cpu / cpu, 1),
        "frame_path_over_floor": round(cpu / floor_cpu, 2),
        "frontend_over_floor": round(fe_cpu / floor_cpu, 2),
        "frame_path_over_floor16": round(cpu / floor16_cpu, 2),
        "frontend_over_floor16": round(fe_cpu / floor16_cpu, 2),
        "channels_per_core_frame_path": round(audio_s / cpu),
        "channels_per_core_frontend": round(audio_s / fe_cpu),
        "channels_per_core_floor": round(audio_s / floor_cpu),
    }
    if native:
        samples = results["worker"]
        assert samples == sum(e - s for s, e, _ in cuts)
        info |= {
            "resample_all_path_over_floor": round(times["resample_all"] / floor_cpu, 2),
            "worker_resampling_over_floor": round(times["worker"] / floor_cpu, 2),
            "speech_share": round(samples / 2 / len(pcm), 2),
        }
    benchmark.extra_info.update(info)
    print(f"\n{case} input: {info}")


@pytest.mark.parametrize("rate", [8000, 16000])
def test_bench_channel_frontend(benchmark, speech, rate: int) -> None:
    benchmark.group = f"frontend-{rate}"
    cuts = benchmark(frontend_path, speech[rate], rate)
    assert cuts == _cuts(frame_path(speech[rate], rate))


@pytest.mark.parametrize("rate", [8000, 16000])
def test_bench_reference_path(benchmark, speech, rate: int) -> None:
    benchmark.group = f"frontend-{rate}"
    cuts = benchmark.pedantic(reference_path, args=(speech[rate], rate), rounds=2)
    assert cuts == _cuts(frame_path(speech[rate], rate))


@pytest.mark.parametrize("rate", [8000, 16000])
def test_bench_webrtcvad_floor(benchmark, speech, rate: int) -> None:
    benchmark.group = f"frontend-{rate}"
    frames = _floor_frames(speech[rate], rate)
    voiced = benchmark(floor_path, frames, _vad_rate(rate))
    assert 0 < voiced < len(frames)
