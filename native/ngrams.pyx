"""Hashed n-gram features for the intent classifiers (see ngrams.pyi).

`qa.rules.intents` hashes each text's n-grams (a hundred or so short strings) into signed
buckets; in Python that loop (encode, CRC-32, index, add) cost about 0.1 ms a text, up to a
millisecond for a long turn's spans. Here it is one pass over the strings' cached UTF-8.
"""

import numpy as np

cimport numpy as cnp
from cpython.unicode cimport PyUnicode_AsUTF8AndSize
from libc.math cimport sqrtf
from libc.stdint cimport int64_t, uint32_t
from libc.stdlib cimport calloc, free

cnp.import_array()

# CRC-32 (IEEE 802.3, reflected, the polynomial zlib.crc32 uses), one table for all calls.
cdef uint32_t _CRC[256]


cdef void _table() noexcept:
    cdef uint32_t c
    cdef int n, _k
    for n in range(256):
        c = n
        for _k in range(8):
            c = (0xEDB88320U ^ (c >> 1)) if c & 1 else (c >> 1)
        _CRC[n] = c


_table()


cdef inline uint32_t _crc32(const unsigned char* data, Py_ssize_t size) noexcept nogil:
    cdef uint32_t c = 0xFFFFFFFFU
    cdef Py_ssize_t i
    for i in range(size):
        c = _CRC[(c ^ data[i]) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFFU


def crc32(str text):
    """CRC-32 of the text's UTF-8, as `zlib.crc32(text.encode())` (the tests compare)."""
    cdef Py_ssize_t size
    cdef const char* data = PyUnicode_AsUTF8AndSize(text, &size)
    return _crc32(<const unsigned char*>data, size)


def signed_buckets(grams, int dim):
    """The distinct strings of `grams`, hashed into `dim` signed buckets, L2-normalised.

    Each string adds +1 to bucket `crc32 % dim` when the CRC's top bit is set, else -1
    (strings are counted once each: pass a set). Returns `(index, values)`: the non-zero
    buckets in increasing order (int64) and their values (float32), equal to what
    `np.zeros(dim, float32)`, the same adds, `row / np.linalg.norm(row)` and
    `np.flatnonzero` give.
    """
    if dim <= 0:
        raise ValueError(f"dim must be positive, not {dim}")
    cdef int* counts = <int*>calloc(dim, sizeof(int))
    if counts == NULL:
        raise MemoryError()
    cdef Py_ssize_t size
    cdef const char* data
    cdef uint32_t h
    cdef int b, nonzero = 0
    cdef long long squares = 0
    cdef float norm
    cdef cnp.ndarray[int64_t, ndim=1] index
    cdef cnp.ndarray[float, ndim=1] values
    try:
        for gram in grams:
            data = PyUnicode_AsUTF8AndSize(gram, &size)
            h = _crc32(<const unsigned char*>data, size)
            counts[h % <uint32_t>dim] += 1 if (h >> 31) & 1 else -1
        for b in range(dim):
            if counts[b] != 0:
                nonzero += 1
                squares += <long long>counts[b] * counts[b]
        index = np.empty(nonzero, dtype=np.int64)
        values = np.empty(nonzero, dtype=np.float32)
        # The sum of squares of small integers is exact in float32 as in numpy's float32
        # dot; sqrtf and the float32 division round as numpy's do.
        norm = sqrtf(<float>squares)
        nonzero = 0
        for b in range(dim):
            if counts[b] != 0:
                index[nonzero] = b
                values[nonzero] = <float>counts[b] / norm
                nonzero += 1
        return index, values
    finally:
        free(counts)
