"""Types of qa._native.g711: G.711 codecs, bit-exact with ITU-T G.191, 16-bit linear PCM."""

from typing import TypeAlias

import numpy as np
import numpy.typing as npt

# collections.abc.Buffer is Python 3.12+; these are the buffers the codecs are given.
Buffer: TypeAlias = bytes | bytearray | memoryview | npt.NDArray[np.uint8]

def ulaw_decode(codes: Buffer) -> npt.NDArray[np.int16]:
    """Decode µ-law codes (bytes, bytearray, memoryview or uint8 array) to int16 PCM."""
def alaw_decode(codes: Buffer) -> npt.NDArray[np.int16]:
    """Decode A-law codes (bytes, bytearray, memoryview or uint8 array) to int16 PCM."""
def ulaw_encode(pcm: npt.NDArray[np.int16]) -> npt.NDArray[np.uint8]:
    """Encode int16 PCM to µ-law codes."""
def alaw_encode(pcm: npt.NDArray[np.int16]) -> npt.NDArray[np.uint8]:
    """Encode int16 PCM to A-law codes."""
def ulaw_decode_into(src: Buffer, out: npt.NDArray[np.int16]) -> int:
    """Decode into ``out[:len(src)]`` without allocating; return ``len(src)``."""
def alaw_decode_into(src: Buffer, out: npt.NDArray[np.int16]) -> int:
    """Decode into ``out[:len(src)]`` without allocating; return ``len(src)``."""
def ulaw_encode_into(src: npt.NDArray[np.int16], out: Buffer) -> int:
    """Encode into ``out[:len(src)]`` (writable uint8 buffer); return ``len(src)``."""
def alaw_encode_into(src: npt.NDArray[np.int16], out: Buffer) -> int:
    """Encode into ``out[:len(src)]`` (writable uint8 buffer); return ``len(src)``."""
