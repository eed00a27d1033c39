"""WAV files: a strict RIFF/WAVE reader and a splitter into `AudioChunk`s.

The reader walks the RIFF chunks itself rather than using the stdlib `wave` module, because
`wave` (Python 3.11) takes neither IEEE float nor WAVE_FORMAT_EXTENSIBLE files and reports a
truncated data chunk by silently returning fewer frames. Every problem becomes an
`AudioFileError` naming the file and what is wrong with it.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qa.errors import AudioFileError
from qa.types import AudioChunk, Speaker

log = logging.getLogger("qa.sources.wav")

_PCM = 0x0001
_IEEE_FLOAT = 0x0003
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
    if fmt.tag not in (_PCM, _IEEE_FLOAT):
        name = _FORMAT_NAMES.get(fmt.tag, f"format tag 0x{fmt.tag:04x}")
        raise AudioFileError(
            path, f"unsupported format: {name} (only PCM and IEEE float WAV are read)"
        )
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


def read_wav(path: str | os.PathLike[str], *, strict: bool = True) -> WavFile:
    """Reads a WAV file into int16 samples.

    Takes PCM 8/16/24/32-bit, IEEE float 32/64-bit and WAVE_FORMAT_EXTENSIBLE with either,
    mono or stereo, 8-48 kHz.

    Args:
        path: The file.
        strict: Treat a data chunk shorter than its header says as an error. With False the
            frames present are returned and `missing_frames` says how many are lacking.

    Returns:
        The decoded file.

    Raises:
        AudioFileError: missing or unreadable file, not RIFF/WAVE, corrupt header,
            unsupported format, truncated data (saying how many frames are missing), or no
            audio frames at all.
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as fh:
            blob = fh.read()
    except FileNotFoundError:
        raise AudioFileError(name, "no such file") from None
    except IsADirectoryError:
        raise AudioFileError(name, "is a directory, not a WAV file") from None
    except OSError as exc:
        raise AudioFileError(name, f"cannot read: {exc.strerror or exc}") from None
    if not blob:
        raise AudioFileError(name, "empty file (0 bytes)")
    if len(blob) < 12 or blob[:4] != b"RIFF" or blob[8:12] != b"WAVE":
        raise AudioFileError(name, "not a WAV file (no RIFF/WAVE header)")
    fmt: _Format | None = None
    pos = 12
    while pos + 8 <= len(blob):
        chunk_id = blob[pos : pos + 4]
        size = struct.unpack("<I", blob[pos + 4 : pos + 8])[0]
        body_at = pos + 8
        if chunk_id == b"fmt ":
            fmt = _parse_fmt(name, blob[body_at : body_at + size])
            _check_format(name, fmt)
        elif chunk_id == b"data":
            if fmt is None:
                raise AudioFileError(name, "corrupt header: data chunk before fmt chunk")
            return _decode_data(name, blob, body_at, size, fmt, strict)
        # Chunks are padded to an even length.
        pos = body_at + size + (size & 1)
    if fmt is None:
        raise AudioFileError(name, "corrupt header: no fmt chunk")
    raise AudioFileError(name, "no data chunk (no audio frames)")


def _decode_data(name: str, blob: bytes, at: int, size: int, fmt: _Format, strict: bool) -> WavFile:
    available = len(blob) - at
    if size == _UNKNOWN_SIZE:
        size = available - available % fmt.block_align
    declared = size // fmt.block_align
    present = min(size, available) // fmt.block_align
    missing = declared - present
    if missing and strict:
        raise AudioFileError(
            name,
            f"truncated: data chunk declares {declared} frames but only {present} are present "
            f"({missing} missing)",
        )
    if present == 0:
        raise AudioFileError(name, "no audio frames (empty data chunk)")
    raw = blob[at : at + present * fmt.block_align]
    pcm = _to_int16(raw, fmt).reshape(present, fmt.channels)
    pcm.flags.writeable = False
    if missing:
        log.warning("%s: truncated, %s of %s frames missing", name, missing, declared)
    return WavFile(name, fmt.rate, fmt.channels, present, pcm, missing)


def channel_speakers(channels: int) -> tuple[Speaker, ...]:
    """Speaker of each channel: stereo is (agent, customer), mono is (unknown,)."""
    return (Speaker.AGENT, Speaker.CUSTOMER) if channels == 2 else (Speaker.UNKNOWN,)


def iter_chunks(wav: WavFile, call_id: str, chunk_ms: int = 20) -> Iterator[AudioChunk]:
    """Splits a file into per-channel chunks in time order (every channel's chunk i, then i+1).

    Args:
        wav: The decoded file.
        call_id: Call id to stamp on each chunk.
        chunk_ms: Chunk length in milliseconds (the last chunk may be shorter).

    Yields:
        `AudioChunk`s at the file's own sample rate, `first_sample` on the call clock.
    """
    if chunk_ms <= 0:
        raise ValueError(f"chunk_ms must be positive, got {chunk_ms}")
    step = max(1, wav.sample_rate * chunk_ms // 1000)
    speakers = channel_speakers(wav.channels)
    columns = [np.ascontiguousarray(wav.pcm[:, c]) for c in range(wav.channels)]
    for start in range(0, wav.frames, step):
        for speaker, column in zip(speakers, columns, strict=True):
            yield AudioChunk(
                call_id=call_id,
                channel=speaker,
                pcm=column[start : start + step],
                sample_rate=wav.sample_rate,
                first_sample=start,
            )


def wav_path_label(path: str | os.PathLike[str]) -> str:
    """A short call id derived from a file name (`calls/a.wav` -> `a`)."""
    return Path(path).stem
