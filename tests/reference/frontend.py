"""Plain-Python twin of `qa.frontend.ChannelFrontEnd`: ring + resampler + VAD + endpointer.

Built from the other references (`ring.RingBufferRef`, `resample.resample`, `vad.FrameVad`,
`endpointer.Endpointer`). The reference resampler works on a whole signal, so for input that is
not 16 kHz this twin keeps the input and returns every utterance at `flush`; at 16 kHz it
streams. At 8 kHz (`NATIVE_VAD_RATES`) it streams too: it classifies the 8 kHz frames with
webrtcvad and endpoints them as they come, and each utterance carries its 8 kHz samples (its
times on the 16 kHz clock) and the resampler's reach of samples either side of them (the
endpointer's `context`); at other rates it resamples the whole stream and then frames it at
16 kHz.
Only the concatenation of all returned utterances is comparable with the compiled front end.
"""

from __future__ import annotations

import math
import wave
from pathlib import Path

import numpy as np

from qa.frontend import NATIVE_VAD_RATES, FrontEndOptions
from qa.types import SAMPLE_RATE, AudioChunk
from tests.reference.endpointer import Endpointer
from tests.reference.resample import design_taps, resample
from tests.reference.ring import RingBufferRef
from tests.reference.vad import FrameVad

#: `(start, end, pcm, forced)`, and at native rates also `(before, after)`.
Cut = tuple
DEFAULT_OPTIONS = FrontEndOptions()


def read_wav(path: Path, channel: int = 0) -> tuple[np.ndarray, int]:
    """One channel of a 16-bit WAV file as int16 samples, and its sample rate."""
    with wave.open(str(path)) as w:
        data = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
        return data.reshape(-1, w.getnchannels())[:, channel].copy(), w.getframerate()


class ReferenceFrontEnd:
    """Same clock rules as `ChannelFrontEnd` (gaps filled, late samples dropped)."""

    def __init__(self, input_rate: int, options: FrontEndOptions = DEFAULT_OPTIONS) -> None:
        self.input_rate = input_rate
        common = math.gcd(input_rate, SAMPLE_RATE)
        self._period_in = input_rate // common
        self._period_out = SAMPLE_RATE // common
        self._native = input_rate in NATIVE_VAD_RATES
        vad_rate = input_rate if self._native else SAMPLE_RATE
        self._vad = FrameVad(vad_rate, options.frame_ms, options.vad_mode)
        self._frames = options.endpointer.in_frames(options.frame_ms)
        self._endpointer: Endpointer | None = None
        self._next = 0
        self._held: list[np.ndarray] = []
        self.gap_samples = 0
        self.late_samples = 0

    def push(self, chunk: AudioChunk) -> list[Cut]:
        """Take a chunk; return `(start, end, pcm, forced)` of utterances it closed."""
        pcm, first = chunk.pcm, chunk.first_sample
        out: list[Cut] = []
        if self._endpointer is None:
            aligned = first - first % self._period_in
            base = aligned // self._period_in * self._period_out
            context = 0
            if self._native:
                base = aligned  # the endpointer counts 8 kHz samples
                context = design_taps(self.input_rate, SAMPLE_RATE)[2]  # the filter's half
            self._endpointer = Endpointer(
                self._vad.frame_len, vad=self._vad, base_sample=base, context=context,
                **self._frames
            )
            self._next = aligned
            out += self._feed(np.zeros(first - aligned, np.int16))
        if first > self._next:
            self.gap_samples += first - self._next
            out += self._feed(np.zeros(first - self._next, np.int16))
        elif first < self._next:
            late = min(self._next - first, len(pcm))
            self.late_samples += late
            pcm = pcm[late:]
        return out + self._feed(pcm)

    def _feed(self, pcm: np.ndarray) -> list[Cut]:
        self._next += len(pcm)
        if self._native:
            return self._to_clock(self._endpointer.process(pcm))
        if self.input_rate != SAMPLE_RATE:
            self._held.append(np.asarray(pcm, dtype=np.int16))
            return []
        return self._endpointer.process(pcm)

    def _to_clock(self, cuts: list[Cut]) -> list[Cut]:
        """Native-rate cuts with their sample indices on the 16 kHz clock."""
        r = SAMPLE_RATE // self.input_rate
        return [(s * r, e * r, *rest) for s, e, *rest in cuts]

    def flush(self) -> list[Cut]:
        """End of stream: every utterance not yet returned."""
        if self._endpointer is None:
            return []
        out: list[Cut] = []
        if self._native:
            return self._to_clock(self._endpointer.flush())
        if self.input_rate != SAMPLE_RATE and self._held:
            whole = resample(np.concatenate(self._held), self.input_rate, SAMPLE_RATE)
            out += self._endpointer.process(whole)
        return out + self._endpointer.flush()


def ring_chunks(pcm: np.ndarray, chunk: int, capacity: int) -> list[np.ndarray]:
    """Pass `pcm` through the reference ring in writes and reads of `chunk` samples."""
    ring = RingBufferRef(capacity)
    out = []
    buf = np.zeros(chunk, dtype=np.int16)
    for i in range(0, len(pcm), chunk):
        ring.write(pcm[i : i + chunk])
        n = ring.read(buf)
        out.append(buf[:n].copy())
    return out
