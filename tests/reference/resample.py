"""Offline numpy twin of `qa._native.resample.Resampler` (same filter, same arithmetic).

Designs the same Kaiser-windowed sinc polyphase filter and computes every output at once,
vectorised over outputs but accumulating the taps in the same four lanes and order as the
compiled loop, so the float64 sums, and hence the rounded int16 output, are bit-identical.
"""

from __future__ import annotations

from math import gcd

import numpy as np

STOPBAND_DB = 70.0  # Kaiser design target (>= 60 dB promised)
PASS_EDGE = 0.85  # passband edge, fraction of the lower Nyquist
STOP_EDGE = 1.0  # stopband edge, fraction of the lower Nyquist


def design_taps(in_rate: int, out_rate: int) -> tuple[int, int, int, np.ndarray]:
    """Return (L, M, half, taps[L, 2*half]); row p holds phase p, unity DC gain."""
    g = gcd(in_rate, out_rate)
    up, down = out_rate // g, in_rate // g
    nyq = min(in_rate, out_rate) / 2.0
    width = (STOP_EDGE - PASS_EDGE) * nyq / in_rate
    cutoff = (PASS_EDGE + STOP_EDGE) / 2.0 * nyq / in_rate
    beta = 0.1102 * (STOPBAND_DB - 8.7)
    length = (STOPBAND_DB - 7.95) / (2.285 * 2.0 * np.pi * width)
    half = int(np.ceil(length / 2.0))
    m = np.arange(2 * half, dtype=np.float64)
    p = np.arange(up, dtype=np.float64)[:, None]
    u = p / up + (half - 1) - m[None, :]
    window = np.i0(beta * np.sqrt(np.clip(1.0 - (u / half) ** 2, 0.0, None))) / np.i0(beta)
    taps = 2.0 * cutoff * np.sinc(2.0 * cutoff * u) * window
    taps /= taps.sum(axis=1, keepdims=True)
    return up, down, half, np.ascontiguousarray(taps)


def resample(pcm: np.ndarray, in_rate: int, out_rate: int = 16000) -> np.ndarray:
    """Resample a whole int16 signal; returns ceil(len * out_rate / in_rate) samples."""
    x = np.asarray(pcm, dtype=np.int16)
    if in_rate == out_rate:
        return x.copy()
    up, down, half, taps = design_taps(in_rate, out_rate)
    n_out = -(-len(x) * up // down)
    j = np.arange(n_out, dtype=np.int64)
    q = j * down // up
    phase = j * down - q * up
    # Zeros before the first and after the last input sample.
    padded = np.concatenate([np.zeros(half - 1), x.astype(np.float64), np.zeros(half)])
    # Tap m is added to lane m % 4 in order and the lanes pairwise, as the compiled loop does.
    lanes = np.zeros((4, n_out))
    for m in range(2 * half):
        lanes[m % 4] += padded[q + m] * taps[phase, m]
    acc = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3])
    return np.clip(np.floor(acc + 0.5), -32768, 32767).astype(np.int16)
