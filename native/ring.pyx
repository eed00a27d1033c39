"""Single-producer single-consumer int16 ring buffer (see ring.pxd for the exact semantics)."""

cimport numpy as cnp
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.stdint cimport int16_t, int64_t
from libc.string cimport memcpy, memmove

cnp.import_array()


cdef extern from "atomic.h" nogil:
    int64_t qa_load_acquire(const int64_t* p)
    int64_t qa_load_relaxed(const int64_t* p)
    void qa_store_release(int64_t* p, int64_t v)
    void qa_store_relaxed(int64_t* p, int64_t v)
    void qa_fence_release()
    void qa_fence_acquire()


cdef class RingBuffer:
    """Lock-free SPSC ring of int16 samples with absolute (call-clock) positions."""

    def __cinit__(self, Py_ssize_t capacity):
        if capacity <= 0:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self._buf = <int16_t*>PyMem_Malloc(capacity * sizeof(int16_t))
        if self._buf == NULL:
            raise MemoryError()
        self._capacity = capacity
        self._write_pos = 0
        self._claim_pos = 0
        self._read_pos = 0
        self._skipped = 0
        self._last_read_start = 0

    def __dealloc__(self):
        PyMem_Free(self._buf)
        self._buf = NULL

    cdef Py_ssize_t push(self, const int16_t* src, Py_ssize_t n, Py_ssize_t stride) noexcept nogil:
        cdef int64_t pos = self._write_pos
        cdef int64_t end = pos + n
        cdef Py_ssize_t cap = self._capacity
        cdef Py_ssize_t i, slot, first
        if n <= 0:
            return 0
        # Only the newest `cap` samples of an oversized write can survive it.
        if n > cap:
            src += (n - cap) * stride
            pos = end - cap
        qa_store_relaxed(&self._claim_pos, end)
        qa_fence_release()
        slot = <Py_ssize_t>(pos % cap)
        if stride == 1:
            first = min(<Py_ssize_t>(end - pos), cap - slot)
            memcpy(self._buf + slot, src, first * sizeof(int16_t))
            memcpy(self._buf, src + first, <Py_ssize_t>(end - pos - first) * sizeof(int16_t))
        else:
            for i in range(<Py_ssize_t>(end - pos)):
                self._buf[slot] = src[i * stride]
                slot += 1
                if slot == cap:
                    slot = 0
        qa_store_release(&self._write_pos, end)
        return n

    cdef Py_ssize_t pop(self, int16_t* dst, Py_ssize_t n) noexcept nogil:
        cdef int64_t wp = qa_load_acquire(&self._write_pos)
        cdef int64_t rp = self._read_pos
        cdef Py_ssize_t cap = self._capacity
        cdef Py_ssize_t k, slot, first, bad
        cdef int64_t oldest
        if wp - rp > cap:
            self._skipped += wp - cap - rp
            rp = wp - cap
        k = <Py_ssize_t>min(<int64_t>n, wp - rp)
        if k > 0:
            slot = <Py_ssize_t>(rp % cap)
            first = min(k, cap - slot)
            memcpy(dst, self._buf + slot, first * sizeof(int16_t))
            memcpy(dst + first, self._buf, (k - first) * sizeof(int16_t))
            qa_fence_acquire()
            oldest = qa_load_relaxed(&self._claim_pos) - cap
            if oldest > rp:
                # The producer lapped us during the copy: the front of dst may be torn.
                bad = <Py_ssize_t>min(<int64_t>k, oldest - rp)
                memmove(dst, dst + bad, (k - bad) * sizeof(int16_t))
                self._skipped += bad
                rp += bad
                k -= bad
        self._last_read_start = rp
        qa_store_release(&self._read_pos, rp + k)
        return k

    def write(self, samples):
        """Append `samples` (1-D C-contiguous int16) as the producer; never blocks.

        The GIL is released during the copy. Oldest unread audio is overwritten on overrun
        and counted in `dropped`.
        """
        cdef const int16_t[::1] view
        cdef const int16_t* src
        cdef Py_ssize_t n
        if _is_int16_vector(samples, False):
            # An int16 ndarray: its data pointer directly; a typed memoryview would cost
            # more than the copy of a 20 ms chunk.
            src = <const int16_t*> cnp.PyArray_DATA(samples)
            n = cnp.PyArray_DIM(samples, 0)
        else:
            if samples is None:
                raise TypeError("samples must be a 1-D int16 buffer, not None")
            view = samples
            n = view.shape[0]
            src = &view[0] if n else NULL
        if n == 0:
            return
        with nogil:
            self.push(src, n, 1)

    def write_channel(self, const int16_t[:, ::1] frames not None, Py_ssize_t channel):
        """Append one channel of interleaved frames (shape (n, channels), C-contiguous int16).

        The deinterleaving copy is the one a capture callback does: `push(buf + k, n, channels)`.
        """
        cdef Py_ssize_t n = frames.shape[0], channels = frames.shape[1]
        if not 0 <= channel < channels:
            raise ValueError(f"channel {channel} out of range for {channels} channels")
        if n == 0:
            return
        with nogil:
            self.push(&frames[0, 0] + channel, n, channels)

    def read(self, out):
        """Copy up to len(out) of the oldest unread samples into `out`; return the count.

        `out[0]` is sample number `last_read_start` on the producer's clock. Never allocates.
        """
        cdef int16_t[::1] view
        cdef int16_t dummy
        cdef int16_t* dst = &dummy
        cdef Py_ssize_t n
        if _is_int16_vector(out, True):
            n = cnp.PyArray_DIM(out, 0)
            if n > 0:
                dst = <int16_t*> cnp.PyArray_DATA(out)
        else:
            if out is None:
                raise TypeError("out must be a writable 1-D int16 buffer, not None")
            view = out
            n = view.shape[0]
            if n > 0:
                dst = &view[0]
        with nogil:
            n = self.pop(dst, n)
        return n

    @property
    def capacity(self):
        """Number of samples the ring holds."""
        return self._capacity

    @property
    def written(self):
        """Total samples ever written (the producer position)."""
        return qa_load_acquire(&self._write_pos)

    @property
    def consumed(self):
        """Absolute index of the next sample `read` returns unless an overrun skips past it."""
        return qa_load_acquire(&self._read_pos)

    @property
    def last_read_start(self):
        """Absolute index of out[0] of the latest `read` (its end is this plus its count)."""
        return self._last_read_start

    @property
    def available(self):
        """Unread samples still held (at most `capacity`)."""
        cdef int64_t unread = qa_load_acquire(&self._write_pos) - qa_load_acquire(&self._read_pos)
        return min(unread, <int64_t>self._capacity)

    @property
    def dropped(self):
        """Total samples lost to overrun: skipped by the consumer plus overwritten but unread."""
        cdef int64_t lost = (qa_load_acquire(&self._write_pos) - self._capacity
                             - qa_load_acquire(&self._read_pos))
        return self._skipped + max(lost, <int64_t>0)


cdef inline bint _is_int16_vector(object value, bint writable):
    """A 1-D C-contiguous int16 ndarray (writable when asked): a few pointer reads."""
    return (cnp.PyArray_Check(value) and cnp.PyArray_TYPE(value) == cnp.NPY_INT16
            and cnp.PyArray_NDIM(value) == 1 and cnp.PyArray_IS_C_CONTIGUOUS(value)
            and (not writable or cnp.PyArray_ISWRITEABLE(value)))
