"""What the sound-card tests share: a collecting sink and signal helpers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np

from qa.types import AudioChunk, CallInfo, Speaker

#: Rate of the null sink and of the captures in these tests.
SINK_RATE = 48_000


class CollectingSink:
    """A real `SourceSink` that keeps everything it is given (optionally slow, to force overruns).

    Args:
        delay_first_s: Seconds the first `audio` call blocks, as a stalled pipeline would.
    """

    def __init__(self, delay_first_s: float = 0.0) -> None:
        self.calls: list[CallInfo] = []
        self.chunks: list[AudioChunk] = []
        self.ended: list[tuple[str, str]] = []
        self._delay = delay_first_s
        self.first_audio = threading.Event()

    def call_started(self, call: CallInfo) -> None:
        self.calls.append(call)

    def audio(self, chunk: AudioChunk) -> None:
        self.chunks.append(chunk)
        if not self.first_audio.is_set():
            self.first_audio.set()
            time.sleep(self._delay)

    def dtmf(
        self, call_id: str, channel: Speaker, digit: str, time: float, duration: float
    ) -> None:
        raise AssertionError("a sound card produces no DTMF events")

    def call_ended(self, call_id: str, reason: str) -> None:
        self.ended.append((call_id, reason))

    def channel(self, speaker: Speaker) -> list[AudioChunk]:
        """The chunks of one channel, in arrival order."""
        return [c for c in self.chunks if c.channel == speaker]


def joined(chunks: list[AudioChunk]) -> np.ndarray:
    """Concatenates contiguous chunks; fails if the call clock has a hole or an overlap."""
    position = chunks[0].first_sample
    for chunk in chunks:
        assert chunk.first_sample == position, "chunks are not contiguous on the call clock"
        position += len(chunk.pcm)
    return np.concatenate([c.pcm for c in chunks])


def resample(x: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Band-limited resampling by FFT (test-side only; the product has its own resampler)."""
    n_out = round(len(x) * dst_rate / src_rate)
    spectrum = np.fft.rfft(x.astype(np.float64))
    return np.fft.irfft(spectrum, n_out) * (n_out / len(x))


def best_correlation(captured: np.ndarray, reference: np.ndarray) -> tuple[float, int]:
    """Pearson correlation of `reference` with the best-aligned window of `captured`.

    Returns:
        (correlation at the best lag, lag in samples of `captured`).
    """
    ref = reference.astype(np.float64)
    cap = captured.astype(np.float64)
    if len(cap) < len(ref):
        cap = np.concatenate([cap, np.zeros(len(ref) - len(cap))])
    size = 1 << int(np.ceil(np.log2(len(cap) + len(ref))))
    xcorr = np.fft.irfft(np.fft.rfft(cap, size) * np.conj(np.fft.rfft(ref, size)), size)
    lag = int(np.argmax(xcorr[: len(cap) - len(ref) + 1]))
    window = cap[lag : lag + len(ref)]
    return float(np.corrcoef(window, ref)[0, 1]), lag


def wait_for_frames(frames: Callable[[], int], minimum: int, timeout: float = 10.0) -> None:
    """Waits until `frames()` reaches `minimum` (PulseAudio's first connection to a monitor
    can take a couple of seconds to produce audio)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if frames() >= minimum:
            return
        time.sleep(0.02)
    raise AssertionError(f"capture delivered {frames()} frames in {timeout} s, not {minimum}")
