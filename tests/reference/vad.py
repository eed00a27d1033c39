"""Plain-Python twin of `qa._native.vad.FrameVad`: framing, energy and the `webrtcvad` package."""

from __future__ import annotations

import numpy as np
import webrtcvad


class FrameVad:
    """Frames int16 PCM and classifies whole frames with `webrtcvad.Vad.is_speech`."""

    def __init__(self, sample_rate: int = 16000, frame_ms: int = 30, mode: int = 2) -> None:
        self.sample_rate = sample_rate
        self.frame_ms = frame_ms
        self.mode = mode
        self.frame_len = sample_rate * frame_ms // 1000
        self._vad = webrtcvad.Vad(mode)
        self._pending = np.zeros(0, dtype=np.int16)
        self.frames = 0
        self.voiced_frames = 0

    def frames_of(self, pcm: np.ndarray) -> list[tuple[np.ndarray, int, float]]:
        """Return `(frame, voiced, energy)` for every frame `pcm` completes."""
        data = np.concatenate([self._pending, np.asarray(pcm, dtype=np.int16)])
        whole = len(data) // self.frame_len * self.frame_len
        self._pending = data[whole:].copy()
        out = []
        for i in range(0, whole, self.frame_len):
            frame = data[i : i + self.frame_len]
            wide = frame.astype(np.int64)
            energy = int(np.dot(wide, wide)) / self.frame_len
            voiced = int(self._vad.is_speech(frame.tobytes(), self.sample_rate))
            self.frames += 1
            self.voiced_frames += voiced
            out.append((frame, voiced, energy))
        return out

    def process(self, pcm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Decisions (uint8) and mean-square energies (float64) of the completed frames."""
        done = self.frames_of(pcm)
        return (
            np.array([v for _, v, _ in done], dtype=np.uint8),
            np.array([e for _, _, e in done], dtype=np.float64),
        )
