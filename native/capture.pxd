# Sound-card capture: a PortAudio input stream whose C callback copies each channel into its ring.
from libc.stdint cimport uint64_t
from cpython.ref cimport PyObject

# Channels one stream can carry (stereo call audio needs 2; headroom for multi-channel cards).
cdef enum:
    MAX_CHANNELS = 8

cdef struct CaptureState:
    # Filled before the stream starts and read-only while it runs, except the counters, which
    # only the callback thread writes (aligned 64-bit stores: a reader never sees a torn value).
    PyObject* rings[MAX_CHANNELS]   # borrowed; CaptureStream.rings keeps them alive
    int channels
    uint64_t callbacks
    uint64_t frames
    uint64_t overflows
    uint64_t underflows


cdef class CaptureStream:
    cdef CaptureState _state
    cdef void* _stream               # PaStream*, NULL once closed
    cdef bint _initialised           # this object holds one Pa_Initialize
    cdef readonly tuple rings
    cdef readonly int device_index
    cdef readonly int sample_rate
    cdef readonly int frames_per_buffer
