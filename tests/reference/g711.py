"""Plain-Python G.711 per ITU-T G.191 (STL g711.c), one sample at a time.

Oracle for `qa._native.g711` and the baseline of its benchmark. Linear samples are 16-bit PCM;
the STL's 14-bit (µ-law) / 13-bit (A-law) left-justified words are the same numbers.
"""

from __future__ import annotations

import numpy as np

ULAW_BIAS = 33  # 0x84 >> 2: the µ-law bias in 14-bit units
ALAW_TOGGLE = 0x55  # A-law inverts the even bits of every code


def ulaw_compress(x: int) -> int:
    """Encode one 16-bit sample to a µ-law code (STL ulaw_compress)."""
    absno = ((~x) >> 2 if x < 0 else x >> 2) + ULAW_BIAS
    absno = min(absno, 0x1FFF)  # 13-bit magnitude limit
    segno = (absno >> 6).bit_length() + 1
    low = 0x0F - ((absno >> segno) & 0x0F)
    code = ((0x08 - segno) << 4) | low
    return code | 0x80 if x >= 0 else code


def ulaw_expand(code: int) -> int:
    """Decode one µ-law code to a 16-bit sample (STL ulaw_expand)."""
    inverted = ~code & 0xFF
    exponent = (inverted >> 4) & 0x07
    mantissa = inverted & 0x0F
    step = 4 << (exponent + 1)
    magnitude = (0x80 << exponent) + step * mantissa + step // 2 - 4 * ULAW_BIAS
    return magnitude if code >= 0x80 else -magnitude


def alaw_compress(x: int) -> int:
    """Encode one 16-bit sample to an A-law code (STL alaw_compress)."""
    ix = (~x) >> 4 if x < 0 else x >> 4
    if ix > 15:
        exponent = 1
        while ix > 31:
            ix >>= 1
            exponent += 1
        ix = ix - 16 + (exponent << 4)
    if x >= 0:
        ix |= 0x80
    return ix ^ ALAW_TOGGLE


def alaw_expand(code: int) -> int:
    """Decode one A-law code to a 16-bit sample (STL alaw_expand)."""
    ix = (code ^ ALAW_TOGGLE) & 0x7F
    exponent, mant = ix >> 4, ix & 0x0F
    if exponent > 0:
        mant += 16
    mant = (mant << 4) + 0x08
    if exponent > 1:
        mant <<= exponent - 1
    return mant if code > 127 else -mant


def ulaw_decode(codes: bytes | np.ndarray) -> np.ndarray:
    """Decode a buffer of µ-law codes."""
    return np.array([ulaw_expand(int(c)) for c in bytes(codes)], dtype=np.int16)


def alaw_decode(codes: bytes | np.ndarray) -> np.ndarray:
    """Decode a buffer of A-law codes."""
    return np.array([alaw_expand(int(c)) for c in bytes(codes)], dtype=np.int16)


def ulaw_encode(pcm: np.ndarray) -> np.ndarray:
    """Encode int16 samples to µ-law codes."""
    return np.array([ulaw_compress(int(x)) for x in pcm], dtype=np.uint8)


def alaw_encode(pcm: np.ndarray) -> np.ndarray:
    """Encode int16 samples to A-law codes."""
    return np.array([alaw_compress(int(x)) for x in pcm], dtype=np.uint8)
