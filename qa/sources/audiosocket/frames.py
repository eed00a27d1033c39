"""Asterisk AudioSocket frames on the wire: kind (1 byte), length (2 bytes, big-endian), payload.

Kinds (Asterisk's `res_audiosocket`): 0x00 hangup, 0x01 the call's UUID (16 bytes, always the
first frame), 0x03 a DTMF digit (one ASCII byte), 0x10 audio as signed 16-bit little-endian
linear PCM at 8 kHz mono, 0xff an error (an optional one-byte code). `FrameReader` cuts a TCP
byte stream into frames; it never raises on what a peer sends, it reports.
"""

from __future__ import annotations

import enum
import struct
import uuid
from dataclasses import dataclass

from qa.errors import SignallingError

_HEADER = struct.Struct("!BH")
#: Sample rate of kind 0x10 audio.
SLIN_RATE = 8000


class Kind(enum.IntEnum):
    HANGUP = 0x00
    UUID = 0x01
    DTMF = 0x03
    SLIN = 0x10
    ERROR = 0xFF


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame: `kind` is a `Kind` or, for kinds this reader does not know, the raw byte."""

    kind: Kind | int
    payload: bytes


def frame(kind: int, payload: bytes = b"") -> bytes:
    """The bytes of one frame (what Asterisk sends; tests and replies use it)."""
    return _HEADER.pack(kind, len(payload)) + payload


def parse_uuid(payload: bytes) -> str:
    """The UUID a 0x01 frame carries, in its canonical text form.

    Raises:
        SignallingError: The payload is not 16 bytes.
    """
    if len(payload) != 16:
        raise SignallingError("AudioSocket", f"UUID frame of {len(payload)} bytes, not 16")
    return str(uuid.UUID(bytes=payload))


class FrameReader:
    """Cuts a byte stream into frames. Frames longer than `max_payload` are skipped whole
    (their bytes are read and dropped) and reported by `skipped`, so one bad frame never
    desynchronises the stream."""

    def __init__(self, max_payload: int) -> None:
        self.max_payload = max_payload
        self._buffer = bytearray()
        self._skip = 0
        self.skipped = 0

    def feed(self, data: bytes) -> list[Frame]:
        """Takes the bytes read from the connection; returns the frames they complete."""
        if self._skip:
            dropped = min(self._skip, len(data))
            self._skip -= dropped
            data = data[dropped:]
        self._buffer += data
        frames = []
        while len(self._buffer) >= _HEADER.size:
            kind, length = _HEADER.unpack_from(self._buffer)
            if length > self.max_payload:
                self.skipped += 1
                available = len(self._buffer) - _HEADER.size
                self._skip = max(0, length - available)
                del self._buffer[: _HEADER.size + min(length, available)]
                continue
            if len(self._buffer) < _HEADER.size + length:
                break
            payload = bytes(self._buffer[_HEADER.size : _HEADER.size + length])
            del self._buffer[: _HEADER.size + length]
            try:
                known: Kind | int = Kind(kind)
            except ValueError:
                known = kind
            frames.append(Frame(known, payload))
        return frames

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held (a connection that closes here was cut short)."""
        return len(self._buffer) + self._skip
