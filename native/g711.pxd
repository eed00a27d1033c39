# G.711 µ-law / A-law codecs, bit-exact with the ITU-T G.191 (STL) reference g711.c.
#
# Linear samples are standard 16-bit PCM (what RTP payload types 0/8 carry and what ffmpeg's
# pcm_mulaw / pcm_alaw use). The STL works on 14-bit (µ-law) / 13-bit (A-law) samples
# left-justified in 16-bit words, which is the same numeric range: its compressors drop the low
# 2 / 3 bits of a 16-bit word and its expanders return left-justified 16-bit words, so the
# mapping between the STL vectors and this API is the identity. All functions are table lookups
# (tables built once at import), never allocate, and may run without the GIL.

from libc.stdint cimport int16_t, uint8_t

cdef void ulaw_decode_c(const uint8_t* src, int16_t* dst, Py_ssize_t n) noexcept nogil
cdef void alaw_decode_c(const uint8_t* src, int16_t* dst, Py_ssize_t n) noexcept nogil
cdef void ulaw_encode_c(const int16_t* src, uint8_t* dst, Py_ssize_t n) noexcept nogil
cdef void alaw_encode_c(const int16_t* src, uint8_t* dst, Py_ssize_t n) noexcept nogil
