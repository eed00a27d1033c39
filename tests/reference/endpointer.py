"""Plain-Python twin of `qa._native.endpointer.Endpointer` (same state machine, lists only).

It keeps every frame of the stream, so it shows the rules without the native buffer handling.
"""

from __future__ import annotations

import numpy as np


class Endpointer:
    """See `native/endpointer.pyx` for the rules; arguments are the same, in frames."""

    def __init__(
        self,
        frame_len: int,
        start_window: int,
        start_voiced: int,
        end_window: int,
        end_unvoiced: int,
        pre_roll: int,
        post_roll: int,
        max_frames: int,
        split_search: int,
        min_frames: int,
        vad=None,
        base_sample: int = 0,
        context: int = 0,
    ) -> None:
        self.frame_len = frame_len
        self.start_window = start_window
        self.start_voiced = start_voiced
        self.end_window = end_window
        self.end_unvoiced = end_unvoiced
        self.pre_roll = pre_roll
        self.post_roll = post_roll
        self.max_frames = max_frames
        self.split_search = split_search
        self.min_frames = min_frames
        self.base_sample = base_sample
        self.context = context
        self._waiting: tuple | None = None
        self._vad = vad
        self._pcm: list[np.ndarray] = []
        self._voiced: list[int] = []
        self._energy: list[float] = []
        self._u = 0
        self._last_voiced = -1
        self._prev_end = 0
        self.speaking = False
        self.utterances = 0
        self.discarded = 0
        self._out: list[tuple[int, int, np.ndarray, bool]] = []

    @property
    def frames(self) -> int:
        return len(self._voiced)

    def _emit(self, end: int, forced: bool) -> None:
        n = end - self._u
        if n < self.min_frames or n <= 0:
            self.discarded += 1
            return
        pcm = np.concatenate(self._pcm[self._u : end])
        start = self.base_sample + self._u * self.frame_len
        found = (start, self.base_sample + end * self.frame_len, pcm, forced)
        self.utterances += 1
        if not self.context:
            self._out.append(found)
            return
        ahead = np.concatenate([np.zeros(0, np.int16), *self._pcm[: self._u]])
        before = ahead[len(ahead) - min(self.context, len(ahead)) :].copy()
        if end == len(self._pcm):  # nothing after it framed yet: wait for the next frame
            self._waiting = (*found, before)
            return
        self._out.append((*found, before, self._pcm[end][: self.context].copy()))

    def _release(self, after: np.ndarray) -> None:
        self._out.append((*self._waiting, np.array(after[: self.context], dtype=np.int16)))
        self._waiting = None

    def push_frame(self, frame: np.ndarray, voiced: bool, energy: float) -> None:
        if self._waiting is not None:
            self._release(frame)
        k = len(self._voiced)
        v = 1 if voiced else 0
        self._pcm.append(np.array(frame, dtype=np.int16))
        self._voiced.append(v)
        self._energy.append(float(energy))
        if not self.speaking:
            lo = max(k - self.start_window + 1, 0)
            if sum(self._voiced[lo : k + 1]) < self.start_voiced:
                return
            first = max(lo, self._prev_end)
            s = next((j for j in range(first, k + 1) if self._voiced[j]), k)
            self._last_voiced = next((j for j in range(k, s - 1, -1) if self._voiced[j]), k)
            self._u = max(s - self.pre_roll, self._prev_end, 0)
            self.speaking = True
            return
        if v:
            self._last_voiced = k
        if k + 1 - self._u >= self.max_frames:
            lo = max(self._u + 1, k + 1 - self.split_search)
            window = self._energy[lo : k + 1]
            q = lo + window.index(min(window))
            self._emit(q, True)
            self._u = q
            return
        lo = max(k - self.end_window + 1, 0)
        if (k + 1 - lo) - sum(self._voiced[lo : k + 1]) < self.end_unvoiced:
            return
        end = max(min(self._last_voiced + 1 + self.post_roll, k + 1), self._u)
        self._emit(end, False)
        self._prev_end = end
        self.speaking = False

    def _take_out(self) -> list[tuple[int, int, np.ndarray, bool]]:
        out, self._out = self._out, []
        return out

    def process(self, pcm: np.ndarray) -> list[tuple[int, int, np.ndarray, bool]]:
        """Frame, classify (with the reference `FrameVad`) and endpoint samples."""
        for frame, voiced, energy in self._vad.frames_of(pcm):
            self.push_frame(frame, voiced, energy)
        return self._take_out()

    def push_frames(self, pcm, voiced, energy) -> list[tuple[int, int, np.ndarray, bool]]:
        """Endpoint frames decided elsewhere."""
        pcm = np.asarray(pcm, dtype=np.int16)
        for i, (v, e) in enumerate(zip(voiced, energy, strict=True)):
            self.push_frame(pcm[i * self.frame_len : (i + 1) * self.frame_len], bool(v), e)
        return self._take_out()

    def flush(self) -> list[tuple[int, int, np.ndarray, bool]]:
        """Close the open utterance at end of stream."""
        if self.speaking:
            end = max(min(self._last_voiced + 1 + self.post_roll, self.frames), self._u)
            self._emit(end, False)
            self._prev_end = end
            self.speaking = False
        if self._waiting is not None:
            # The partial frame the VAD holds, then the end of the stream.
            self._release(self._vad._pending if self._vad is not None else np.zeros(0, np.int16))
        return self._take_out()
