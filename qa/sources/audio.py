"""Any recording a call recorder writes, opened as one stream of int16 blocks.

`open_audio` reads WAV itself (PCM, float, G.711 A-law/mu-law, WAVE_FORMAT_EXTENSIBLE; see
`qa.sources.wav`) and hands everything else (FLAC, Ogg/Opus, MP3, M4A/AAC, and WAV files of
other codecs such as GSM 6.10 or ADPCM) to ffmpeg (`qa.sources.ffmpeg`). Either way the
samples are read block by block while they are used, and the header is checked when the file
is opened, so a bad file fails before anything else starts.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Protocol

import numpy as np

from qa.errors import AudioCodecError, AudioFileError
from qa.files import open_regular
from qa.sources.wav import WavFile, WavStream

__all__ = ["AudioStream", "open_audio", "read_audio"]


class AudioStream(Protocol):
    """A recording read as it is used.

    Attributes:
        path: The file.
        sample_rate: Frames per second (8-48 kHz).
        channels: 1 (speaker unknown) or 2 (left = agent, right = customer).
        frames: Number of frames when the header tells (WAV); None for compressed files.
        codec: The encoding, for messages.
    """

    path: str
    sample_rate: int
    channels: int
    codec: str

    @property
    def frames(self) -> int | None: ...

    def blocks(self, frames: int = 16_000) -> Iterator[np.ndarray]:
        """int16 arrays of shape (n, channels), `frames` rows each but the last."""
        ...


def open_audio(path: str | os.PathLike[str]) -> AudioStream:
    """Opens a recording of any supported format and checks its header.

    Args:
        path: WAV (PCM, float, A-law, mu-law, extensible), FLAC, Ogg/Opus, MP3, M4A or any
            other file ffmpeg decodes; mono or stereo.

    Returns:
        A stream whose `blocks` decode the file as they are read.

    Raises:
        AudioFileError: missing, not a regular file, empty, corrupt or unsupported file,
            naming the file and the problem.
    """
    name = os.fspath(path)
    with open_regular(name, AudioFileError) as handle:
        head = handle.read(12)
    if not head:
        raise AudioFileError(name, "empty file (0 bytes)")
    from qa.sources.ffmpeg import FfmpegStream

    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        try:
            return WavStream(name)
        except AudioCodecError as exc:
            # GSM 6.10 (Asterisk's WAV49), ADPCM, MP3 in WAV: ffmpeg decodes them.
            try:
                return FfmpegStream(name)
            except AudioFileError as ffmpeg_exc:
                raise AudioFileError(name, f"{exc.reason}; ffmpeg: {ffmpeg_exc.reason}") from None
    return FfmpegStream(name)


def read_audio(path: str | os.PathLike[str]) -> WavFile:
    """Reads a whole recording of any supported format into memory (see `open_audio`)."""
    stream = open_audio(path)
    if isinstance(stream, WavStream):
        from qa.sources.wav import read_wav

        return read_wav(stream.path)
    pcm = np.concatenate(list(stream.blocks(1 << 16)))
    pcm.flags.writeable = False
    return WavFile(stream.path, stream.sample_rate, stream.channels, len(pcm), pcm)
