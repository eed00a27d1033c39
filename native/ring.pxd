# Single-producer single-consumer int16 ring buffer, one per audio channel.
#
# Positions are absolute sample counters on the call clock (int64, never wrap in practice:
# 2**63 samples at 48 kHz is ~6 million years). Sample number `pos` lives at `buf[pos % capacity]`.
#
# Producer (one thread, e.g. the PortAudio callback; may run without the GIL):
#   `push(src, n, stride)` copies src[0], src[stride], ... src[(n-1)*stride] as samples
#   write_pos .. write_pos+n-1. It never blocks and never allocates. The newest audio always
#   wins: if the consumer is behind, the oldest unread samples are overwritten (if n > capacity,
#   only the last `capacity` samples of src are stored). Before touching any slot it publishes
#   `claim_pos = write_pos + n` (seqlock "begin"); after copying it publishes
#   `write_pos = claim_pos` with release order.
#
# Consumer (one thread): `pop(dst, n)`:
#   1. load write_pos (acquire). Unread samples older than write_pos - capacity are gone:
#      read_pos jumps to write_pos - capacity and the jump is added to `dropped`.
#   2. copy k = min(n, write_pos - read_pos) samples starting at read_pos.
#   3. re-check (acquire fence, then load claim_pos): every copied sample with index
#      < claim_pos - capacity may have been overwritten by a producer running concurrently;
#      those are discarded from the front of dst (the rest is moved down), counted in `dropped`.
#   4. last_read_start = index of dst[0]; read_pos = last_read_start + k (release).
#   So dst[0:k] are exactly samples last_read_start .. last_read_start+k-1, intact and in order,
#   and (samples returned by pop) + dropped + available == written once both sides are idle.
#
# `dropped` as seen from the properties also includes samples already overwritten that the
# consumer has not skipped yet, so an overrun is visible at once (e.g. at a metrics scrape).

from libc.stdint cimport int16_t, int64_t


cdef class RingBuffer:
    cdef int16_t* _buf
    cdef Py_ssize_t _capacity
    # Producer-owned; read by the consumer with acquire loads.
    cdef int64_t _write_pos
    cdef int64_t _claim_pos
    # Consumer-owned.
    cdef int64_t _read_pos
    cdef int64_t _skipped
    cdef int64_t _last_read_start

    cdef Py_ssize_t push(self, const int16_t* src, Py_ssize_t n, Py_ssize_t stride) noexcept nogil
    cdef Py_ssize_t pop(self, int16_t* dst, Py_ssize_t n) noexcept nogil
