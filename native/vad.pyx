"""Framing, frame energy and webrtcvad decisions for one channel.

`FrameVad` cuts int16 PCM into fixed frames, carrying a partial frame across calls in one
preallocated frame buffer, and asks webrtcvad for each whole frame. webrtcvad's C entry point
(`_webrtcvad.process`) takes any contiguous buffer object, so the same numpy array is handed to
it for every frame: no bytes object is made per frame.
"""

from libc.stdint cimport int16_t, int64_t
from libc.string cimport memcpy

cimport numpy as cnp
import numpy as np

import _webrtcvad

cnp.import_array()

#: Sample rates webrtcvad accepts.
VALID_RATES = (8000, 16000, 32000, 48000)
#: Frame lengths (ms) webrtcvad accepts.
VALID_FRAME_MS = (10, 20, 30)


cdef class FrameVad:
    """Frames a stream of int16 PCM and classifies each whole frame with webrtcvad.

    Args:
        sample_rate: 8000, 16000, 32000 or 48000 Hz.
        frame_ms: Frame length, 10, 20 or 30 ms.
        mode: webrtcvad aggressiveness, 0 (least) to 3 (most aggressive filtering).
    """

    def __init__(self, int sample_rate=16000, int frame_ms=30, int mode=2):
        if sample_rate not in VALID_RATES:
            raise ValueError(f"webrtcvad takes sample rates {VALID_RATES}, got {sample_rate}")
        if frame_ms not in VALID_FRAME_MS:
            raise ValueError(f"webrtcvad takes frames of {VALID_FRAME_MS} ms, got {frame_ms}")
        if not 0 <= mode <= 3:
            raise ValueError(f"webrtcvad mode must be 0..3, got {mode}")
        self.sample_rate = sample_rate
        self.frame_ms = frame_ms
        self.mode = mode
        # 1000 ms per second: samples per frame.
        self.frame_len = sample_rate * frame_ms // 1000
        self._vad = _webrtcvad.create()
        _webrtcvad.init(self._vad)
        _webrtcvad.set_mode(self._vad, mode)
        self._process = _webrtcvad.process
        self._frame_obj = np.zeros(self.frame_len, dtype=np.int16)
        self._fp = <int16_t*> cnp.PyArray_DATA(self._frame_obj)
        # Python ints made once, so the per-frame call boxes nothing.
        self._rate_obj = sample_rate
        self._len_obj = self.frame_len
        self._fill = 0
        self._energy = 0.0
        self.frames = 0
        self.voiced_frames = 0

    @property
    def pending(self):
        """Samples of the current partial frame, waiting for the rest of it."""
        return self._fill

    cdef Py_ssize_t take(self, const int16_t* pcm, Py_ssize_t n) noexcept:
        """Copy up to the end of the current frame; return how many samples were used."""
        cdef Py_ssize_t room = self.frame_len - self._fill
        if n > room:
            n = room
        memcpy(self._fp + self._fill, pcm, n * sizeof(int16_t))
        self._fill += n
        return n

    cdef int classify(self) except -1:
        """Decide the full frame (1 voiced, 0 not), compute its energy, start a new frame."""
        cdef Py_ssize_t i
        cdef int64_t acc = 0
        cdef int64_t x
        for i in range(self.frame_len):
            x = self._fp[i]
            acc += x * x
        # Exact integer sum, one division: the pure-Python reference gets the same double.
        self._energy = <double> acc / self.frame_len
        self._fill = 0
        self.frames += 1
        if self._process(self._vad, self._rate_obj, self._frame_obj, self._len_obj):
            self.voiced_frames += 1
            return 1
        return 0

    def process(self, pcm):
        """Feed samples; classify every frame they complete.

        Args:
            pcm: 1-D int16 array, any length (a partial frame is kept for the next call).

        Returns:
            `(voiced, energy)`: uint8 decisions and float64 mean-square energies, one per
            frame completed by this call.
        """
        pcm = as_int16_1d(pcm)
        cdef const int16_t* data = <const int16_t*> cnp.PyArray_DATA(pcm)
        cdef Py_ssize_t n = cnp.PyArray_DIM(pcm, 0)
        cdef Py_ssize_t pos = 0
        cdef Py_ssize_t count = (self._fill + n) // self.frame_len
        cdef Py_ssize_t j = 0
        voiced = np.empty(count, dtype=np.uint8)
        energy = np.empty(count, dtype=np.float64)
        cdef unsigned char[::1] vv = voiced
        cdef double[::1] ev = energy
        while pos < n:
            pos += self.take(data + pos, n - pos)
            if self.ready():
                vv[j] = self.classify()
                ev[j] = self._energy
                j += 1
        return voiced, energy

    def reset(self):
        """Drop the partial frame and restart webrtcvad's adaptive state."""
        _webrtcvad.init(self._vad)
        _webrtcvad.set_mode(self._vad, self.mode)
        self._fill = 0
