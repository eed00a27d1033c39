from libc.stdint cimport int16_t

cimport numpy as cnp


cdef class FrameVad:
    cdef readonly int sample_rate
    cdef readonly int frame_ms
    cdef readonly int mode
    cdef readonly int frame_len
    cdef readonly long long frames
    cdef readonly long long voiced_frames
    cdef object _vad
    cdef object _process
    cdef object _frame_obj
    cdef object _rate_obj
    cdef object _len_obj
    cdef int16_t* _fp
    cdef Py_ssize_t _fill
    cdef double _energy

    cdef Py_ssize_t take(self, const int16_t* pcm, Py_ssize_t n) noexcept
    cdef int classify(self) except -1
    cdef inline bint ready(self) noexcept:
        return self._fill == self.frame_len
    cdef inline const int16_t* frame_ptr(self) noexcept:
        return self._fp
    cdef inline double energy(self) noexcept:
        return self._energy


cdef inline object as_int16_1d(object pcm):
    """`pcm` itself when it is already a 1-D C-contiguous int16 ndarray, else a converted copy.

    The check is a few pointer reads; building a typed memoryview costs more than a 30 ms
    frame's webrtcvad call's worth of overhead on small chunks.
    """
    if not (cnp.PyArray_Check(pcm) and cnp.PyArray_TYPE(pcm) == cnp.NPY_INT16
            and cnp.PyArray_IS_C_CONTIGUOUS(pcm)):
        import numpy
        pcm = numpy.ascontiguousarray(pcm, dtype=numpy.int16)
    if cnp.PyArray_NDIM(pcm) != 1:
        raise ValueError("pcm must be 1-D")
    return pcm
