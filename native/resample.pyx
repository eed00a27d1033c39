"""Streaming rational resampler with group-delay compensation (semantics in resample.pxd)."""

from math import gcd

import numpy as np

from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.math cimport floor
from libc.stdint cimport INT64_MAX, int16_t, int64_t
from libc.string cimport memcpy, memmove

# Kaiser design target: stopband attenuation in dB. 70 leaves margin over the >= 60 dB we
# promise (Kaiser's length formula is approximate).
STOPBAND_DB = 70.0
# Passband edge and stopband edge as fractions of the lower Nyquist frequency: 0.85 keeps the
# telephone band (3.4 kHz of 4 kHz) flat; the stopband starts at the new Nyquist so nothing
# above it aliases with more than -70 dB.
PASS_EDGE = 0.85
STOP_EDGE = 1.0
# Input samples copied per inner block: bounds the history buffer, whatever the caller's chunk.
cdef Py_ssize_t BLOCK = 4096
# More polyphase rows than this means an odd rate pair (e.g. 44100 -> 16001); refuse it.
MAX_PHASES = 4096


def design_taps(int in_rate, int out_rate):
    """Return (L, M, half, taps[L, 2*half]) for resampling in_rate -> out_rate.

    taps[p, m] weighs input sample q - half + 1 + m for an output whose position on the
    input clock is q + p / L (q integer). Each row sums to exactly 1 (unity DC gain per phase).
    """
    g = gcd(in_rate, out_rate)
    up, down = out_rate // g, in_rate // g
    nyq = min(in_rate, out_rate) / 2.0
    width = (STOP_EDGE - PASS_EDGE) * nyq / in_rate  # transition, cycles per input sample
    cutoff = (PASS_EDGE + STOP_EDGE) / 2.0 * nyq / in_rate
    # Kaiser's formulas (Oppenheim & Schafer 7.62/7.63) for beta and length.
    beta = 0.1102 * (STOPBAND_DB - 8.7)
    length = (STOPBAND_DB - 7.95) / (2.285 * 2.0 * np.pi * width)
    half = int(np.ceil(length / 2.0))
    m = np.arange(2 * half, dtype=np.float64)
    p = np.arange(up, dtype=np.float64)[:, None]
    u = p / up + (half - 1) - m[None, :]  # distance in input samples from output to input
    window = np.i0(beta * np.sqrt(np.clip(1.0 - (u / half) ** 2, 0.0, None))) / np.i0(beta)
    taps = 2.0 * cutoff * np.sinc(2.0 * cutoff * u) * window
    taps /= taps.sum(axis=1, keepdims=True)
    return up, down, half, np.ascontiguousarray(taps)


cdef class Resampler:
    """Streaming resampler of int16 PCM from `in_rate` to `out_rate` (default 16 kHz).

    Chunking never changes the output: feeding a signal in any pieces gives the same samples as
    feeding it whole. Output sample j is aligned with input time j / out_rate seconds.
    """

    def __cinit__(self, int in_rate, int out_rate=16000):
        if in_rate <= 0 or out_rate <= 0:
            raise ValueError(f"sample rates must be positive, got {in_rate} -> {out_rate}")
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._passthrough = in_rate == out_rate
        if self._passthrough:
            self._up = self._down = 1
            self._half = self._ntaps = 0
            return
        up, down, half, taps = design_taps(in_rate, out_rate)
        if up > MAX_PHASES:
            raise ValueError(f"unsupported rate pair {in_rate} -> {out_rate}: {up} phases")
        self._up, self._down, self._half = up, down, half
        self._ntaps = 2 * half
        # _run discards history assuming consecutive outputs never skip a whole filter span.
        if self._ntaps < -(-down // up):
            raise ValueError(f"unsupported rate pair {in_rate} -> {out_rate}: filter too short")
        cdef double[:, ::1] t = taps
        self._taps = <double*>PyMem_Malloc(up * self._ntaps * sizeof(double))
        # Leftover history is < 2*half samples (see _run), plus one block of new input.
        self._buf_cap = self._ntaps + BLOCK
        self._buf = <double*>PyMem_Malloc(self._buf_cap * sizeof(double))
        if self._taps == NULL or self._buf == NULL:
            raise MemoryError()
        memcpy(self._taps, &t[0, 0], up * self._ntaps * sizeof(double))
        self._reset_state()

    def __dealloc__(self):
        PyMem_Free(self._taps)
        PyMem_Free(self._buf)

    cdef void _reset_state(self) noexcept nogil:
        cdef Py_ssize_t i
        self._n_in = 0
        self._next_out = 0
        # Output 0 reads inputs -(half-1) .. half; the ones before the stream are zeros.
        self._buf_start = 1 - self._half
        self._buf_len = self._half - 1 if self._half > 0 else 0
        for i in range(self._buf_len):
            self._buf[i] = 0.0

    cdef Py_ssize_t _run(self, const int16_t* src, Py_ssize_t n, int16_t* dst,
                         int64_t out_limit) noexcept nogil:
        # Append n samples (src NULL: zeros) and emit every ready output below out_limit.
        cdef Py_ssize_t produced = 0, take, i, m, base
        cdef int64_t j, q, p, last, keep_from
        cdef const double* row
        cdef const double* x
        cdef double acc, v, a0, a1, a2, a3
        cdef Py_ssize_t ntaps = self._ntaps
        while True:
            take = min(n, BLOCK)
            for i in range(take):
                self._buf[self._buf_len + i] = src[i] if src != NULL else 0.0
            self._buf_len += take
            self._n_in += take
            n -= take
            if src != NULL:
                src += take
            last = self._buf_start + self._buf_len - 1
            j = self._next_out
            while j < out_limit:
                q = (j * self._down) // self._up
                if q + self._half > last:
                    break
                p = j * self._down - q * self._up
                row = self._taps + p * self._ntaps
                x = self._buf + (q - self._half + 1 - self._buf_start)
                # Four independent sums (tap m goes to lane m % 4, lanes added pairwise):
                # the CPU overlaps their additions, where one running sum waits on each.
                # tests/reference/resample.py adds in exactly this order, so both agree bit
                # for bit.
                a0 = a1 = a2 = a3 = 0.0
                m = 0
                while m + 4 <= ntaps:
                    a0 += x[m] * row[m]
                    a1 += x[m + 1] * row[m + 1]
                    a2 += x[m + 2] * row[m + 2]
                    a3 += x[m + 3] * row[m + 3]
                    m += 4
                if m < ntaps:
                    a0 += x[m] * row[m]
                if m + 1 < ntaps:
                    a1 += x[m + 1] * row[m + 1]
                if m + 2 < ntaps:
                    a2 += x[m + 2] * row[m + 2]
                acc = (a0 + a1) + (a2 + a3)
                v = floor(acc + 0.5)
                if v > 32767.0:
                    v = 32767.0
                elif v < -32768.0:
                    v = -32768.0
                dst[produced] = <int16_t>v
                produced += 1
                j += 1
            self._next_out = j
            # Drop history no future output needs (kept part is < 2*half samples).
            keep_from = (j * self._down) // self._up - self._half + 1
            base = <Py_ssize_t>(keep_from - self._buf_start)
            if base > 0:
                memmove(self._buf, self._buf + base, (self._buf_len - base) * sizeof(double))
                self._buf_len -= base
                self._buf_start = keep_from
            if n == 0:
                return produced

    def max_output(self, Py_ssize_t n_in):
        """Upper bound on the samples one `process(_into)` call of `n_in` samples returns."""
        if self._passthrough:
            return n_in
        return (n_in * self._up) // self._down + 1

    def process_into(self, const int16_t[::1] pcm not None, int16_t[::1] out not None):
        """Resample `pcm` into `out` (len >= max_output(len(pcm))); return the count written.

        Never allocates; the GIL is released while filtering.
        """
        cdef Py_ssize_t n = pcm.shape[0]
        cdef Py_ssize_t need = self.max_output(n)
        cdef int16_t dummy
        cdef int16_t* dst = &dummy
        cdef const int16_t* src = NULL
        if out.shape[0] < need:
            raise ValueError(f"out holds {out.shape[0]} samples, max_output({n}) is {need}")
        if n == 0:
            return 0
        src = &pcm[0]
        if out.shape[0]:
            dst = &out[0]
        if self._passthrough:
            memcpy(dst, src, n * sizeof(int16_t))
            self._n_in += n
            return n
        with nogil:
            n = self._run(src, n, dst, INT64_MAX)
        return n

    def process(self, pcm):
        """Resample a chunk of int16 PCM; return the output samples now ready (int16 array)."""
        cdef const int16_t[::1] view = pcm
        out = np.empty(self.max_output(view.shape[0]), dtype=np.int16)
        return out[:self.process_into(view, out)]

    def flush(self):
        """End the stream: return the held-back tail (look-ahead zero-padded) and reset.

        After flush the total output is ceil(n_in * out_rate / in_rate) samples.
        """
        if self._passthrough:
            self._n_in = 0
            return np.empty(0, dtype=np.int16)
        cdef int64_t total = (self._n_in * self._up + self._down - 1) // self._down
        out = np.empty(max(total - self._next_out, 0), dtype=np.int16)
        cdef int16_t[::1] o = out
        cdef int16_t dummy
        cdef int16_t* dst = &o[0] if o.shape[0] else &dummy
        with nogil:
            self._run(NULL, self._half, dst, total)
            self._reset_state()
        return out

    def reset(self):
        """Forget all history: the next sample processed is input sample 0 again."""
        if self._passthrough:
            self._n_in = 0
        else:
            self._reset_state()

    @property
    def delay_in(self):
        """Look-ahead in input samples: output is held back until this much later input."""
        return self._half
