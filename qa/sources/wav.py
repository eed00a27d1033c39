"""WAV files: a strict RIFF/WAVE reader and a splitter into `AudioChunk`s.

The reader walks the RIFF chunks itself rather than using the stdlib `wave` module, because
`wave` (Python 3.11) takes neither IEEE float, G.711 nor WAVE_FORMAT_EXTENSIBLE files and
reports a truncated data chunk by silently returning fewer frames. Every problem becomes an
`AudioFileError` naming the file and what is wrong with it. `WavStream` reads the samples
block by block, so a long recording never has to fit in memory; G.711 (the A-law and mu-law
WAV files call recorders write) is decoded with the native codec the RTP source uses.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from qa._native import g711
from qa.errors import AudioCodecError, AudioFileError
from qa.files import open_regular
from qa.types import AudioChunk, channel_speakers

log = logging.getLogger("qa.sources.wav")

_PCM = 0x0001
_IEEE_FLOAT = 0x0003
_ALAW = 0x0006
_MULAW = 0x0007
_EXTENSIBLE = 0xFFFE
#: Names of common compressed formats, for a clearer "unsupported" message.
_FORMAT_NAMES = {
    0x0002: "Microsoft ADPCM",
    0x0006: "A-law",
    0x0007: "mu-law",
    0x0011: "IMA ADPCM",
    0x0031: "GSM 6.10",
    0x0055: "MPEG layer 3",
}
#: Rates a telephony or sound-card source produces; outside this the file is likely corrupt.
MIN_RATE, MAX_RATE = 8_000, 48_000
#: A streaming writer that never came back to fix the header leaves this size.
_UNKNOWN_SIZE = 0xFFFFFFFF
#: A fmt chunk is 16, 18 or 40 bytes; a larger one is a corrupt size field.
_MAX_FMT_BYTES = 1024
#: Chunks of audio read at once by `iter_chunks` (50 x 20 ms = 1 s).
_CHUNKS_PER_BLOCK = 50


@dataclass(frozen=True, slots=True)
class WavFile:
    """A decoded WAV file.

    Attributes:
        path: The file it was read from.
        sample_rate: Frames per second.
        channels: 1 (mono) or 2 (stereo: left = agent, right = customer).
        frames: Number of frames in `pcm`.
        pcm: int16 samples, shape (frames, channels), read-only.
        missing_frames: Frames the header announced but the file lacks (only when read
            with `strict=False`; otherwise a truncated file is an error).
    """

    path: str
    sample_rate: int
    channels: int
    frames: int
    pcm: np.ndarray
    missing_frames: int = 0

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames / self.sample_rate

    def blocks(self, frames: int = 16_000) -> Iterator[np.ndarray]:
        """The samples in views of `frames` rows (as `WavStream.blocks` reads them)."""
        for start in range(0, self.frames, frames):
            yield self.pcm[start : start + frames]


@dataclass(frozen=True, slots=True)
class _Format:
    tag: int
    channels: int
    rate: int
    block_align: int
    bits: int


def _parse_fmt(path: str, body: bytes) -> _Format:
    if len(body) < 16:
        raise AudioFileError(path, f"corrupt header: fmt chunk is {len(body)} bytes, needs 16")
    tag, channels, rate, _byte_rate, block_align, bits = struct.unpack("<HHIIHH", body[:16])
    if tag == _EXTENSIBLE:
        if len(body) < 40:
            raise AudioFileError(path, "corrupt header: WAVE_FORMAT_EXTENSIBLE fmt chunk too short")
        # The first two bytes of the SubFormat GUID are the actual format tag.
        tag = struct.unpack("<H", body[24:26])[0]
    return _Format(tag, channels, rate, block_align, bits)


def _check_format(path: str, fmt: _Format) -> None:
    if fmt.tag not in (_PCM, _IEEE_FLOAT, _ALAW, _MULAW):
        name = _FORMAT_NAMES.get(fmt.tag, f"format tag 0x{fmt.tag:04x}")
        raise AudioCodecError(
            path, f"unsupported format: {name} (PCM, IEEE float, A-law and mu-law WAV are read)",
            fmt.tag,
        )
    if fmt.tag in (_ALAW, _MULAW) and fmt.bits != 8:
        raise AudioFileError(path, f"unsupported format: {fmt.bits}-bit {_FORMAT_NAMES[fmt.tag]}")
    if fmt.tag == _PCM and fmt.bits not in (8, 16, 24, 32):
        raise AudioFileError(path, f"unsupported format: {fmt.bits}-bit PCM")
    if fmt.tag == _IEEE_FLOAT and fmt.bits not in (32, 64):
        raise AudioFileError(path, f"unsupported format: {fmt.bits}-bit float")
    if fmt.channels not in (1, 2):
        raise AudioFileError(
            path, f"unsupported format: {fmt.channels} channels (mono or stereo only)"
        )
    if not MIN_RATE <= fmt.rate <= MAX_RATE:
        raise AudioFileError(
            path, f"unsupported sample rate {fmt.rate} Hz (takes {MIN_RATE}-{MAX_RATE})"
        )
    if fmt.block_align != fmt.channels * fmt.bits // 8:
        raise AudioFileError(
            path,
            f"corrupt header: block align {fmt.block_align} does not match "
            f"{fmt.channels} x {fmt.bits}-bit",
        )


def _to_int16(raw: bytes, fmt: _Format) -> np.ndarray:
    if fmt.tag == _ALAW:
        return g711.alaw_decode(raw)
    if fmt.tag == _MULAW:
        return g711.ulaw_decode(raw)
    if fmt.tag == _IEEE_FLOAT:
        data = np.frombuffer(raw, dtype="<f4" if fmt.bits == 32 else "<f8")
        data = np.nan_to_num(data, nan=0.0, posinf=1.0, neginf=-1.0)
        return np.round(np.clip(data, -1.0, 1.0) * 32767.0).astype(np.int16)
    if fmt.bits == 8:
        # 8-bit WAV is unsigned with its zero at 128.
        return ((np.frombuffer(raw, dtype=np.uint8).astype(np.int16) - 128) << 8).astype(np.int16)
    if fmt.bits == 16:
        return np.frombuffer(raw, dtype="<i2").astype(np.int16)
    if fmt.bits == 24:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3)
        # Keep the top two bytes of each little-endian 24-bit sample.
        return (b[:, 1].astype(np.uint16) | (b[:, 2].astype(np.uint16) << 8)).view(np.int16)
    return (np.frombuffer(raw, dtype="<i4") >> 16).astype(np.int16)


class WavStream:
    """A WAV file read block by block: the header is checked when it is opened, the samples
    are read only while `blocks` is iterated, so a recording of any length costs one block of
    memory. Implements `qa.sources.audio.AudioStream`.

    Attributes:
        path: The file.
        sample_rate: Frames per second.
        channels: 1 or 2.
        frames: Frames that will be read (those present, with `strict=False`).
        missing_frames: Frames the header announced but the file lacks.
        codec: What the samples are (`pcm_s16`, `float32`, `mu-law`, ...), for messages.
    """

    def __init__(self, path: str | os.PathLike[str], *, strict: bool = True) -> None:
        self.path = os.fspath(path)
        with open_regular(self.path, AudioFileError) as handle:
            self._fmt, self._data_at, declared, present = _read_header(self.path, handle)
        missing = declared - present
        if missing and strict:
            raise AudioFileError(
                self.path,
                f"truncated: data chunk declares {declared} frames but only {present} are "
                f"present ({missing} missing)",
            )
        if present == 0:
            raise AudioFileError(self.path, "no audio frames (empty data chunk)")
        if missing:
            log.warning("%s: truncated, %s of %s frames missing", self.path, missing, declared)
        self.sample_rate = self._fmt.rate
        self.channels = self._fmt.channels
        self.frames = present
        self.missing_frames = missing
        self.codec = _codec_name(self._fmt)

    def blocks(self, frames: int = 16_000) -> Iterator[np.ndarray]:
        """Yields the samples as int16 arrays of shape (n, channels), `frames` rows each
        (the last may be shorter)."""
        if frames <= 0:
            raise ValueError(f"frames must be positive, got {frames}")
        align = self._fmt.block_align
        left = self.frames
        with open_regular(self.path, AudioFileError) as handle:
            handle.seek(self._data_at)
            while left > 0:
                want = min(frames, left)
                raw = handle.read(want * align)
                got = len(raw) // align
                if got == 0:
                    # The file shrank after it was opened (a recorder rewrote it).
                    raise AudioFileError(self.path, f"truncated while reading: {left} frames "
                                                    "missing")
                yield _to_int16(raw[: got * align], self._fmt).reshape(got, self.channels)
                left -= got


def _read_header(path: str, handle) -> tuple[_Format, int, int, int]:
    """Walks the RIFF chunks up to `data`: (format, data offset, declared, present frames)."""
    file_size = os.fstat(handle.fileno()).st_size
    if file_size == 0:
        raise AudioFileError(path, "empty file (0 bytes)")
    head = handle.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise AudioFileError(path, "not a WAV file (no RIFF/WAVE header)")
    fmt: _Format | None = None
    pos = 12
    while pos + 8 <= file_size:
        handle.seek(pos)
        chunk_head = handle.read(8)
        if len(chunk_head) < 8:
            break
        chunk_id = chunk_head[:4]
        size = struct.unpack("<I", chunk_head[4:])[0]
        body_at = pos + 8
        if chunk_id == b"fmt ":
            if size > _MAX_FMT_BYTES:
                raise AudioFileError(path, f"corrupt header: fmt chunk of {size} bytes")
            fmt = _parse_fmt(path, handle.read(size))
            _check_format(path, fmt)
        elif chunk_id == b"data":
            if fmt is None:
                raise AudioFileError(path, "corrupt header: data chunk before fmt chunk")
            available = file_size - body_at
            if size == _UNKNOWN_SIZE:
                size = available - available % fmt.block_align
            return fmt, body_at, size // fmt.block_align, min(size, available) // fmt.block_align
        # Chunks are padded to an even length.
        pos = body_at + size + (size & 1)
    if fmt is None:
        raise AudioFileError(path, "corrupt header: no fmt chunk")
    raise AudioFileError(path, "no data chunk (no audio frames)")


def _codec_name(fmt: _Format) -> str:
    if fmt.tag == _IEEE_FLOAT:
        return f"float{fmt.bits}"
    if fmt.tag in (_ALAW, _MULAW):
        return _FORMAT_NAMES[fmt.tag]
    return f"pcm_s{fmt.bits}" if fmt.bits > 8 else "pcm_u8"


def read_wav(path: str | os.PathLike[str], *, strict: bool = True) -> WavFile:
    """Reads a whole WAV file into int16 samples (use `WavStream` to read it in blocks).

    Takes PCM 8/16/24/32-bit, IEEE float 32/64-bit, G.711 A-law and mu-law (decoded with the
    native codec) and WAVE_FORMAT_EXTENSIBLE with any of these, mono or stereo, 8-48 kHz.

    Args:
        path: The file.
        strict: Treat a data chunk shorter than its header says as an error. With False the
            frames present are returned and `missing_frames` says how many are lacking.

    Returns:
        The decoded file.

    Raises:
        AudioFileError: missing, unreadable or not a regular file, not RIFF/WAVE, corrupt
            header, unsupported format, truncated data (saying how many frames are missing),
            or no audio frames at all.
    """
    stream = WavStream(path, strict=strict)
    # Filled in place: one copy of the samples in memory, not the file plus its decoding.
    pcm = np.empty((stream.frames, stream.channels), dtype=np.int16)
    at = 0
    for block in stream.blocks(1 << 16):
        pcm[at : at + len(block)] = block
        at += len(block)
    pcm.flags.writeable = False
    return WavFile(stream.path, stream.sample_rate, stream.channels, stream.frames, pcm,
                   stream.missing_frames)


def iter_chunks(wav, call_id: str, chunk_ms: int = 20) -> Iterator[AudioChunk]:
    """Splits a recording into per-channel chunks in time order (every channel's chunk i,
    then i+1), reading it block by block.

    Args:
        wav: A `WavFile`, or any `qa.sources.audio.AudioStream` (read as it goes).
        call_id: Call id to stamp on each chunk.
        chunk_ms: Chunk length in milliseconds (the last chunk may be shorter).

    Yields:
        `AudioChunk`s at the file's own sample rate, `first_sample` on the call clock.
    """
    if chunk_ms <= 0:
        raise ValueError(f"chunk_ms must be positive, got {chunk_ms}")
    step = max(1, wav.sample_rate * chunk_ms // 1000)
    speakers = channel_speakers(wav.channels)
    start = 0
    # Whole chunks per block, so chunk boundaries do not depend on the block size.
    for block in wav.blocks(step * _CHUNKS_PER_BLOCK):
        columns = [np.ascontiguousarray(block[:, c]) for c in range(wav.channels)]
        for at in range(0, len(block), step):
            for speaker, column in zip(speakers, columns, strict=True):
                yield AudioChunk(
                    call_id=call_id,
                    channel=speaker,
                    pcm=column[at : at + step],
                    sample_rate=wav.sample_rate,
                    first_sample=start + at,
                )
        start += len(block)

