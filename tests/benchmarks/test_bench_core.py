"""Benchmarks of the native core part 1: compiled vs pure-Python/numpy reference, same run.

Each group times the compiled module and its reference twin on the same input (compare the
two rows of a group for the ratio) and asserts that both give the same output.
"""

from __future__ import annotations

import numpy as np
import pytest

from qa._native import g711
from qa._native.resample import Resampler
from qa._native.ring import RingBuffer
from tests.reference import g711 as g711_ref
from tests.reference import resample as resample_ref
from tests.reference.ring import RingBufferRef

SECONDS = 10  # audio length per benchmark round
CHUNK = 320  # 20 ms at 16 kHz, the capture period


def _noise(rate: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-20000, 20000, rate * SECONDS).astype(np.int16)


def _ring_round_trip(ring_class, pcm: np.ndarray) -> np.ndarray:
    rb = ring_class(4 * CHUNK)
    out = np.empty(len(pcm), np.int16)
    got = 0
    for start in range(0, len(pcm), CHUNK):
        rb.write(pcm[start : start + CHUNK])
        got += rb.read(out[got : got + CHUNK])
    return out[:got]


@pytest.mark.benchmark(group="ring 20 ms write+read, 10 s at 16 kHz")
@pytest.mark.parametrize("impl", [RingBuffer, RingBufferRef], ids=["native", "reference"])
def test_bench_ring(benchmark, impl):
    pcm = _noise(16000)
    np.testing.assert_array_equal(benchmark(_ring_round_trip, impl, pcm), pcm)


def _resample_native(pcm: np.ndarray, rate: int) -> np.ndarray:
    r = Resampler(rate)
    pieces = [r.process(pcm[i : i + rate // 50]) for i in range(0, len(pcm), rate // 50)]
    return np.concatenate([*pieces, r.flush()])


@pytest.mark.parametrize("rate", [48000, 8000])
@pytest.mark.parametrize("impl", ["native", "reference"])
def test_bench_resample(benchmark, rate, impl):
    benchmark.group = f"resample {rate} -> 16000, 10 s (native in 20 ms chunks)"
    pcm = _noise(rate, seed=rate)
    if impl == "native":
        out = benchmark(_resample_native, pcm, rate)
    else:
        out = benchmark(resample_ref.resample, pcm, rate)
    assert len(out) == SECONDS * 16000
    np.testing.assert_array_equal(out, resample_ref.resample(pcm, rate))


@pytest.mark.benchmark(group="g711 u-law decode, 10 s at 8 kHz")
@pytest.mark.parametrize(
    "decode", [g711.ulaw_decode, g711_ref.ulaw_decode], ids=["native", "reference"]
)
def test_bench_g711_decode(benchmark, decode):
    codes = g711.ulaw_encode(_noise(8000)).tobytes()
    np.testing.assert_array_equal(benchmark(decode, codes), g711_ref.ulaw_decode(codes))
