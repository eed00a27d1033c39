"""Compressed recordings (FLAC, Ogg/Opus, MP3, M4A/AAC, GSM or ADPCM WAV, ...) decoded by
ffmpeg, streamed.

ffmpeg is a maintained decoder for every format a call recorder writes; it runs as a
subprocess that writes 16-bit little-endian PCM into a pipe, which is read one block at a
time, so a recording of any length costs one block of memory. `ffprobe` reads the header
first, so an unreadable or unsupported file is reported when the source is opened, before a
model loads. ffmpeg's own complaint is carried into the `AudioFileError`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator

import numpy as np

from qa.errors import AudioFileError
from qa.sources.wav import MAX_RATE, MIN_RATE

log = logging.getLogger("qa.sources.ffmpeg")

#: Rates outside the front end's range (`qa.sources.wav.MIN_RATE`-`MAX_RATE`, as for WAV)
#: are resampled by ffmpeg to this one, the recogniser's own.
FALLBACK_RATE = 16_000
#: Seconds ffprobe may take to read a header (it reads a few KiB; more means a stuck mount).
PROBE_TIMEOUT = 30.0
#: Bytes of ffmpeg's complaint quoted in an error.
_MESSAGE_BYTES = 300


def _tool(name: str, path: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise AudioFileError(
            path, f"reading this format needs {name}, which is not installed "
                  "(apt-get install ffmpeg; see tools/bootstrap-system.sh)"
        )
    return found


def _complaint(text: str | bytes) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    # ffmpeg prefixes its lines with the path; the error names the file already.
    return (lines[-1] if lines else "no detail")[-_MESSAGE_BYTES:]


class FfmpegStream:
    """A recording decoded by ffmpeg (implements `qa.sources.audio.AudioStream`).

    Attributes:
        path: The file.
        sample_rate: Frames per second delivered (the file's own when 8-48 kHz).
        channels: 1 or 2 (stereo: left = agent, right = customer).
        frames: None: a compressed file's length is only known once decoded.
        codec: ffmpeg's name of the codec (`flac`, `opus`, `mp3`, `aac`, ...).
    """

    frames: int | None = None

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        info = self._probe()
        streams = info.get("streams") or []
        if not streams:
            raise AudioFileError(self.path, "no audio stream in the file")
        stream = streams[0]
        self.codec = str(stream.get("codec_name", "unknown"))
        try:
            rate = int(stream.get("sample_rate", 0))
            channels = int(stream.get("channels", 0))
        except (TypeError, ValueError):
            raise AudioFileError(self.path, "corrupt header: no sample rate or channels") from None
        if channels not in (1, 2):
            raise AudioFileError(
                self.path, f"unsupported format: {channels} channels (mono or stereo only)"
            )
        if not MIN_RATE <= rate <= MAX_RATE:
            log.info("%s: %s Hz resampled to %s Hz", self.path, rate, FALLBACK_RATE)
            rate = FALLBACK_RATE
        self.sample_rate = rate
        self.channels = channels

    def _probe(self) -> dict:
        command = [
            _tool("ffprobe", self.path), "-v", "error", "-select_streams", "a:0",
            "-show_entries", "stream=codec_name,sample_rate,channels", "-of", "json",
            "--", self.path,
        ]
        try:
            done = subprocess.run(command, capture_output=True, timeout=PROBE_TIMEOUT,
                                  check=False, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise AudioFileError(self.path, f"ffprobe took over {PROBE_TIMEOUT:g} s") from None
        if done.returncode != 0:
            raise AudioFileError(
                self.path, f"not a readable audio file: {_complaint(done.stderr)}"
            )
        try:
            return json.loads(done.stdout or b"{}")
        except ValueError:
            raise AudioFileError(self.path, "ffprobe gave no usable answer") from None

    def blocks(self, frames: int = 16_000) -> Iterator[np.ndarray]:
        """Decodes the file as it is read: int16 arrays of shape (frames, channels), every
        one `frames` rows long but the last.

        Raises:
            AudioFileError: ffmpeg fails (corrupt data, with its message) or the file holds
                no audio frames.
        """
        if frames <= 0:
            raise ValueError(f"frames must be positive, got {frames}")
        command = [
            _tool("ffmpeg", self.path), "-nostdin", "-hide_banner", "-v", "error",
            "-i", self.path, "-map", "0:a:0", "-vn", "-f", "s16le", "-acodec", "pcm_s16le",
            "-ar", str(self.sample_rate), "-ac", str(self.channels), "pipe:1",
        ]
        block_bytes = frames * self.channels * 2
        total = 0
        # stderr goes to a file, not a pipe: an endless stream of warnings would otherwise
        # fill the pipe and stall ffmpeg while we wait on stdout.
        with tempfile.TemporaryFile() as errors:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                       stdout=subprocess.PIPE, stderr=errors)
            assert process.stdout is not None
            try:
                while True:
                    raw = _read_full(process.stdout, block_bytes)
                    usable = len(raw) - len(raw) % (2 * self.channels)
                    if usable:
                        total += usable // (2 * self.channels)
                        pcm = np.frombuffer(raw[:usable], dtype="<i2").astype(np.int16)
                        yield pcm.reshape(-1, self.channels)
                    if len(raw) < block_bytes:
                        break
                status = process.wait()
            finally:
                if process.poll() is None:
                    # The reader stopped early (the call was stopped): end the decoder.
                    process.kill()
                    process.wait()
                process.stdout.close()
            errors.seek(0)
            message = errors.read(64 * 1024)
        if status != 0:
            raise AudioFileError(self.path, f"decoding failed: {_complaint(message)}")
        if total == 0:
            detail = f": {_complaint(message)}" if message.strip() else ""
            raise AudioFileError(self.path, f"no audio frames could be decoded{detail}")
        if message.strip():
            log.warning("%s: ffmpeg: %s", self.path, _complaint(message))


def _read_full(pipe, size: int) -> bytes:
    """Reads `size` bytes, or fewer only at the end of the stream (a pipe returns less)."""
    parts = []
    left = size
    while left > 0:
        piece = pipe.read(left)
        if not piece:
            break
        parts.append(piece)
        left -= len(piece)
    return b"".join(parts)
