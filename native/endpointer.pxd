from libc.stdint cimport int16_t

from qa._native.vad cimport FrameVad, as_int16_1d


cdef class Endpointer:
    cdef readonly int frame_len
    cdef readonly int start_window
    cdef readonly int start_voiced
    cdef readonly int end_window
    cdef readonly int end_unvoiced
    cdef readonly int pre_roll
    cdef readonly int post_roll
    cdef readonly int max_frames
    cdef readonly int split_search
    cdef readonly int min_frames
    cdef readonly long long base_sample
    cdef readonly long long frames
    cdef readonly long long utterances
    cdef readonly long long discarded
    cdef readonly bint speaking
    cdef readonly int context
    cdef tuple _waiting
    cdef FrameVad _vad
    cdef int _cap
    cdef int _ring_len
    cdef int16_t* _buf
    cdef unsigned char* _bv
    cdef double* _be
    cdef unsigned char* _ring
    cdef long long _buf_first
    cdef int _buf_n
    cdef long long _u
    cdef long long _last_voiced
    cdef long long _prev_end
    cdef list _out

    cdef int push_frame(self, const int16_t* frame, bint voiced, double energy) except -1
    cdef int _keep_from(self, long long first) except -1
    cdef int _emit(self, long long end, bint forced) except -1
    cdef object _copy(self, long long off, long long n)
    cdef int _release(self, const int16_t* after, Py_ssize_t n) except -1
