"""G.711 µ-law and A-law encode/decode, bit-exact with ITU-T G.191 (see g711.pxd)."""

import numpy as np

from libc.stdint cimport int16_t, uint8_t, uint16_t

# 256 codes -> linear, and 65,536 linear values (indexed by the int16 bit pattern) -> code.
cdef int16_t _ULAW_DEC[256]
cdef int16_t _ALAW_DEC[256]
cdef uint8_t _ULAW_ENC[65536]
cdef uint8_t _ALAW_ENC[65536]


cdef int16_t _ulaw_expand(int code) noexcept nogil:
    # STL ulaw_expand: bits are stored inverted; 33 (= 132 / 4) is the µ-law bias in
    # 14-bit units; the result is 14-bit left-justified, i.e. standard 16-bit PCM.
    cdef int sign = -1 if code < 0x80 else 1
    cdef int m = (~code) & 0xFF
    cdef int exponent = (m >> 4) & 0x07
    cdef int mantissa = m & 0x0F
    cdef int step = 4 << (exponent + 1)
    return <int16_t>(sign * ((0x80 << exponent) + step * mantissa + step // 2 - 4 * 33))


cdef int16_t _alaw_expand(int code) noexcept nogil:
    # STL alaw_expand: even bits toggled (0x55); mantissa gets its leading 1 above segment 0
    # and half a quantisation step (0x08), then is shifted left by its segment.
    cdef int ix = (code ^ 0x55) & 0x7F
    cdef int exponent = ix >> 4
    cdef int mant = ix & 0x0F
    if exponent > 0:
        mant += 16
    mant = (mant << 4) + 0x08
    if exponent > 1:
        mant <<= exponent - 1
    return <int16_t>(mant if code > 127 else -mant)


cdef uint8_t _ulaw_compress(int x) noexcept nogil:
    # STL ulaw_compress: one's complement (not negation) for negative input, 16 -> 14 bits,
    # plus the 33 bias; 0x1FFF is the 13-bit magnitude limit.
    cdef int absno = (((~x) >> 2) if x < 0 else (x >> 2)) + 33
    cdef int i, segno, low
    if absno > 0x1FFF:
        absno = 0x1FFF
    i = absno >> 6
    segno = 1
    while i != 0:
        segno += 1
        i >>= 1
    low = 0x0F - ((absno >> segno) & 0x0F)
    cdef int code = ((0x08 - segno) << 4) | low
    if x >= 0:
        code |= 0x80
    return <uint8_t>code


cdef uint8_t _alaw_compress(int x) noexcept nogil:
    # STL alaw_compress: one's complement for negative input, 16 -> 12-bit magnitude (>> 4);
    # segment 0 holds magnitudes 0..15, each further segment doubles the step.
    cdef int ix = ((~x) >> 4) if x < 0 else (x >> 4)
    cdef int iexp
    if ix > 15:
        iexp = 1
        while ix > 16 + 15:
            ix >>= 1
            iexp += 1
        ix -= 16
        ix += iexp << 4
    if x >= 0:
        ix |= 0x80
    return <uint8_t>(ix ^ 0x55)


cdef void _build_tables() noexcept nogil:
    cdef int c, v
    for c in range(256):
        _ULAW_DEC[c] = _ulaw_expand(c)
        _ALAW_DEC[c] = _alaw_expand(c)
    for v in range(-32768, 32768):
        _ULAW_ENC[<uint16_t>v] = _ulaw_compress(v)
        _ALAW_ENC[<uint16_t>v] = _alaw_compress(v)


_build_tables()


cdef void ulaw_decode_c(const uint8_t* src, int16_t* dst, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        dst[i] = _ULAW_DEC[src[i]]


cdef void alaw_decode_c(const uint8_t* src, int16_t* dst, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        dst[i] = _ALAW_DEC[src[i]]


cdef void ulaw_encode_c(const int16_t* src, uint8_t* dst, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        dst[i] = _ULAW_ENC[<uint16_t>src[i]]


cdef void alaw_encode_c(const int16_t* src, uint8_t* dst, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        dst[i] = _ALAW_ENC[<uint16_t>src[i]]


cdef int _check_out(Py_ssize_t n_src, Py_ssize_t n_out) except -1:
    if n_out < n_src:
        raise ValueError(f"output holds {n_out} samples, input has {n_src}")
    return 0


def ulaw_decode(const uint8_t[::1] codes not None):
    """Decode µ-law codes (bytes, bytearray, memoryview or uint8 array) to int16 PCM."""
    out = np.empty(codes.shape[0], dtype=np.int16)
    cdef int16_t[::1] o = out
    if codes.shape[0]:
        ulaw_decode_c(&codes[0], &o[0], codes.shape[0])
    return out


def alaw_decode(const uint8_t[::1] codes not None):
    """Decode A-law codes (bytes, bytearray, memoryview or uint8 array) to int16 PCM."""
    out = np.empty(codes.shape[0], dtype=np.int16)
    cdef int16_t[::1] o = out
    if codes.shape[0]:
        alaw_decode_c(&codes[0], &o[0], codes.shape[0])
    return out


def ulaw_encode(const int16_t[::1] pcm not None):
    """Encode 16-bit linear PCM (1-D C-contiguous int16) to µ-law codes (uint8 array)."""
    out = np.empty(pcm.shape[0], dtype=np.uint8)
    cdef uint8_t[::1] o = out
    if pcm.shape[0]:
        ulaw_encode_c(&pcm[0], &o[0], pcm.shape[0])
    return out


def alaw_encode(const int16_t[::1] pcm not None):
    """Encode 16-bit linear PCM (1-D C-contiguous int16) to A-law codes (uint8 array)."""
    out = np.empty(pcm.shape[0], dtype=np.uint8)
    cdef uint8_t[::1] o = out
    if pcm.shape[0]:
        alaw_encode_c(&pcm[0], &o[0], pcm.shape[0])
    return out


def ulaw_decode_into(const uint8_t[::1] src not None, int16_t[::1] out not None):
    """Decode µ-law `src` into the start of `out` (int16, len >= len(src)); return len(src)."""
    cdef Py_ssize_t n = src.shape[0]
    _check_out(n, out.shape[0])
    if n:
        with nogil:
            ulaw_decode_c(&src[0], &out[0], n)
    return n


def alaw_decode_into(const uint8_t[::1] src not None, int16_t[::1] out not None):
    """Decode A-law `src` into the start of `out` (int16, len >= len(src)); return len(src)."""
    cdef Py_ssize_t n = src.shape[0]
    _check_out(n, out.shape[0])
    if n:
        with nogil:
            alaw_decode_c(&src[0], &out[0], n)
    return n


def ulaw_encode_into(const int16_t[::1] src not None, uint8_t[::1] out not None):
    """Encode int16 `src` to µ-law into the start of `out` (uint8 buffer); return len(src)."""
    cdef Py_ssize_t n = src.shape[0]
    _check_out(n, out.shape[0])
    if n:
        with nogil:
            ulaw_encode_c(&src[0], &out[0], n)
    return n


def alaw_encode_into(const int16_t[::1] src not None, uint8_t[::1] out not None):
    """Encode int16 `src` to A-law into the start of `out` (uint8 buffer); return len(src)."""
    cdef Py_ssize_t n = src.shape[0]
    _check_out(n, out.shape[0])
    if n:
        with nogil:
            alaw_encode_c(&src[0], &out[0], n)
    return n
