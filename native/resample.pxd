# Streaming polyphase resampler (rational L/M) with a zero-phase Kaiser-windowed sinc filter.
#
# Clock: output sample j is the signal at input time j * in_rate / out_rate (in input samples),
# i.e. y[j] = sum_i x[i] * h(j*M/L - i), with h centred on 0 (no group delay). Inputs before the
# first sample and after `flush` are zeros. Output j needs inputs up to floor(j*M/L) + delay_in,
# so outputs are held back until that look-ahead has arrived; `flush` emits the rest.
# Total output for n_in input samples (all process calls plus flush) == ceil(n_in * L / M)
# == ceil(n_in * out_rate / in_rate).

from libc.stdint cimport int16_t, int64_t


cdef class Resampler:
    cdef readonly int in_rate
    cdef readonly int out_rate
    cdef int64_t _up        # L = out_rate / gcd
    cdef int64_t _down      # M = in_rate / gcd
    cdef Py_ssize_t _half   # look-ahead in input samples (filter half-width, delay_in)
    cdef Py_ssize_t _ntaps  # taps per phase (2 * _half)
    cdef double* _taps      # [_up][_ntaps], row p = phase p, tap m weighs input q - _half + 1 + m
    cdef double* _buf       # input history as doubles, _buf[0] is input number _buf_start
    cdef Py_ssize_t _buf_cap
    cdef Py_ssize_t _buf_len
    cdef int64_t _buf_start
    cdef int64_t _n_in      # input samples received since the last reset
    cdef int64_t _next_out  # index of the next output sample to emit
    cdef bint _passthrough

    cdef void _reset_state(self) noexcept nogil
    cdef Py_ssize_t _run(self, const int16_t* src, Py_ssize_t n, int16_t* dst,
                         int64_t out_limit) noexcept nogil
