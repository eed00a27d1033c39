"""Types of qa._native.resample: streaming rational resampler (to 16 kHz by default)."""

import numpy as np
import numpy.typing as npt

def design_taps(in_rate: int, out_rate: int) -> tuple[int, int, int, npt.NDArray[np.float64]]:
    """Return ``(L, M, half, taps[L, 2*half])`` of the Kaiser-windowed sinc polyphase filter."""

class Resampler:
    """Streaming polyphase resampler of int16 PCM, chunking-invariant and clock-aligned.

    Output sample ``j`` is the input signal at time ``j / out_rate`` s (the filter's group delay
    is compensated by holding back output until ``delay_in`` input samples of look-ahead have
    arrived). Over a whole stream (every ``process`` call plus ``flush``) the output length is
    exactly ``ceil(n_in * out_rate / in_rate)``. Filter: Kaiser-windowed sinc, passband up to
    0.85 and stopband from 1.0 of min(in_rate, out_rate) / 2, >= 60 dB stopband attenuation.
    Arithmetic in float64, rounded half up and saturated to int16.
    """

    in_rate: int
    out_rate: int
    def __init__(self, in_rate: int, out_rate: int = 16000) -> None: ...
    def process(self, pcm: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
        """Resample a chunk; return the output samples now ready."""
    def process_into(self, pcm: npt.NDArray[np.int16], out: npt.NDArray[np.int16]) -> int:
        """Resample into ``out`` (at least ``max_output(len(pcm))`` long); return the count."""
    def max_output(self, n_in: int) -> int:
        """Largest count one ``process`` call of ``n_in`` samples can return."""
    def flush(self) -> npt.NDArray[np.int16]:
        """Emit the held-back tail (zero-padded look-ahead) and reset for a new stream."""
    def reset(self) -> None:
        """Forget all history."""
    @property
    def delay_in(self) -> int:
        """Look-ahead in input samples (0 for a pass-through)."""
