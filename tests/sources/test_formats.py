"""Every recording format a call recorder writes, made by a real encoder (ffmpeg, sox) from one
shared clip, read back by `open_audio` / `read_audio` / `FileSource`.

Lossless formats (G.711 WAV, WAVE_FORMAT_EXTENSIBLE, FLAC) are compared sample by sample;
lossy ones (Ogg/Opus, MP3, M4A/AAC, GSM 6.10 and ADPCM WAV) by energy and length, and by the
transcript the real `base` model makes of them against the one it makes of the original.
"""

from __future__ import annotations

import json
import os
import random
import struct
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from qa._native import g711
from qa.errors import AudioFileError
from qa.sources.audio import open_audio, read_audio
from qa.sources.file import FileOptions, FileSource
from qa.sources.wav import read_wav
from qa.textnorm import wer

CLIP = "en_jfk_inaugural_16k_mono.wav"


def _run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, stdin=subprocess.DEVNULL)


def _ffmpeg(src: Path, dst: Path, *options: str) -> Path:
    _run("ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(src), *options, str(dst))
    return dst


def _format_tag(path: Path) -> int:
    return struct.unpack("<H", path.read_bytes()[20:22])[0]


@pytest.fixture(scope="module")
def clip(shared_audio: Path) -> Path:
    return shared_audio / CLIP


@pytest.fixture(scope="module")
def original(clip: Path) -> np.ndarray:
    return read_wav(clip).pcm[:, 0].astype(np.int16)


@pytest.fixture(scope="module")
def encoded(clip: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The clip in every format, each written by a real encoder."""
    d = tmp_path_factory.mktemp("formats")
    out = {
        "ulaw": _ffmpeg(clip, d / "ulaw.wav", "-ar", "8000", "-c:a", "pcm_mulaw"),
        "ext_s24": _ffmpeg(clip, d / "s24.wav", "-c:a", "pcm_s24le"),
        "ext_f32": _ffmpeg(clip, d / "f32.wav", "-c:a", "pcm_f32le"),
        "flac": _ffmpeg(clip, d / "clip.flac", "-c:a", "flac"),
        "opus": _ffmpeg(clip, d / "clip.ogg", "-c:a", "libopus", "-b:a", "24k"),
        "mp3": _ffmpeg(clip, d / "clip.mp3", "-c:a", "libmp3lame", "-b:a", "64k"),
        "m4a": _ffmpeg(clip, d / "clip.m4a", "-c:a", "aac", "-b:a", "64k"),
    }
    alaw = d / "alaw.wav"
    _run("sox", str(clip), "-r", "8000", "-e", "a-law", "-b", "8", str(alaw))
    out["alaw"] = alaw
    gsm = d / "gsm.wav"  # GSM 6.10 in WAV, as Asterisk's WAV49 recordings
    _run("sox", str(clip), "-r", "8000", "-e", "gsm-full-rate", str(gsm))
    out["gsm_wav"] = gsm
    out["ima_adpcm_wav"] = _ffmpeg(clip, d / "ima.wav", "-c:a", "adpcm_ima_wav")
    out["ms_adpcm_wav"] = _ffmpeg(clip, d / "ms.wav", "-c:a", "adpcm_ms")
    return out


@pytest.mark.parametrize(("kind", "tag", "decode"), [("ulaw", 7, g711.ulaw_encode),
                                                     ("alaw", 6, g711.alaw_encode)])
def test_g711_wav_decodes_bit_exact(encoded, kind, tag, decode) -> None:
    path = encoded[kind]
    assert _format_tag(path) == tag
    wav = read_audio(path)
    assert (wav.sample_rate, wav.channels) == (8000, 1)
    codes = np.frombuffer(path.read_bytes()[-wav.frames:], dtype=np.uint8)
    # Re-encoding what we decoded gives back the file's codes: the decode is exact G.711.
    assert np.array_equal(decode(wav.pcm[:, 0]), codes)
    # And it agrees with ffmpeg's own G.711 decoder sample for sample.
    reference = _ffmpeg_pcm(path)
    assert np.array_equal(wav.pcm[:, 0], reference)
    assert wav.duration == pytest.approx(11.0, abs=0.05)


def _ffmpeg_pcm(path: Path, rate: int | None = None) -> np.ndarray:
    command = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-f", "s16le", "-ac", "1"]
    command += ["-ar", str(rate)] if rate else []
    done = subprocess.run([*command, "pipe:1"], check=True, capture_output=True)
    return np.frombuffer(done.stdout, dtype="<i2")


@pytest.mark.parametrize("kind", ["ext_s24", "ext_f32", "flac"])
def test_lossless_formats_match_the_clip_sample_for_sample(encoded, original, kind) -> None:
    path = encoded[kind]
    if kind.startswith("ext"):
        assert _format_tag(path) == 0xFFFE  # really WAVE_FORMAT_EXTENSIBLE
    wav = read_audio(path)
    assert (wav.sample_rate, wav.channels, wav.frames) == (16000, 1, len(original))
    # float scaling by 32767 may differ by one step from the int16 source.
    diff = np.abs(wav.pcm[:, 0].astype(int) - original.astype(int)).max()
    assert diff <= (1 if kind == "ext_f32" else 0)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))


WAV_TAGS = {"gsm_wav": 0x31, "ima_adpcm_wav": 0x11, "ms_adpcm_wav": 0x02}


@pytest.mark.parametrize("kind", ["opus", "mp3", "m4a", *WAV_TAGS])
def test_lossy_formats_keep_length_and_energy(encoded, original, kind) -> None:
    """Includes WAV files of codecs the native reader leaves to ffmpeg (GSM, ADPCM)."""
    if kind in WAV_TAGS:
        assert _format_tag(encoded[kind]) == WAV_TAGS[kind]
        with pytest.raises(AudioFileError, match="unsupported format"):
            read_wav(encoded[kind])  # the WAV-only reader refuses it; open_audio does not
    stream = open_audio(encoded[kind])
    assert stream.channels == 1 and stream.frames is None
    pcm = np.concatenate(list(stream.blocks(4000)))[:, 0]
    seconds = len(pcm) / stream.sample_rate
    # Codecs pad to whole blocks (ADPCM: up to 2,048 samples).
    assert seconds == pytest.approx(len(original) / 16000, abs=0.15)
    ref = original if stream.sample_rate == 16000 else _ffmpeg_pcm(encoded["flac"],
                                                                    stream.sample_rate)
    assert _rms(pcm) == pytest.approx(_rms(ref), rel=0.1)


@pytest.fixture(scope="module")
def transcript_of(transcriber):
    from qa.offline import transcribe_file

    def text(path: Path) -> str:
        return " ".join(s.text for s in transcribe_file(path, transcriber, language="en"))

    return text


def test_lossy_formats_transcribe_like_the_original(encoded, clip, transcript_of) -> None:
    reference = transcript_of(clip)
    assert "country" in reference.lower()
    for kind in ("opus", "mp3", "m4a", "gsm_wav"):
        assert wer(reference, transcript_of(encoded[kind])) <= 0.1, kind


def test_file_source_plays_a_flac_in_blocks(encoded, original) -> None:
    """`file:` sources (qa run, qa score) read every format, as chunks in order."""
    source = FileSource(FileOptions(encoded["flac"], chunk_ms=20))

    class Sink:
        def __init__(self) -> None:
            self.pcm: list[np.ndarray] = []
            self.ended = ""

        def call_started(self, call) -> None:
            self.rate = call.sample_rate

        def audio(self, chunk) -> None:
            assert chunk.first_sample == sum(len(p) for p in self.pcm)
            self.pcm.append(chunk.pcm)

        def call_ended(self, call_id: str, reason: str) -> None:
            self.ended = reason

    sink = Sink()
    source.run(sink, threading.Event())
    assert sink.ended == "end of file" and sink.rate == 16000
    assert np.array_equal(np.concatenate(sink.pcm), original)
    assert {len(p) for p in sink.pcm[:-1]} == {320}


def test_transcribe_cli_reads_a_mulaw_wav(encoded, repo: Path) -> None:
    """`qa transcribe` on an 8 kHz mu-law WAV said "unsupported format: mu-law" before."""
    env = {**os.environ, "PYTHONPATH": str(repo)}
    done = subprocess.run(
        [sys.executable, "-m", "qa", "transcribe", "--language", "en", "--json",
         str(encoded["ulaw"])], capture_output=True, text=True, env=env, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    text = " ".join(json.loads(line)["text"] for line in done.stdout.splitlines())
    assert "country" in text.lower()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        # Fixed garbage: some random draws (about 1 in 200) look to ffprobe like a container
        # without an audio stream, a different (also clear) error.
        (lambda p: (p.write_bytes(random.Random(0).randbytes(4096)), p)[1],
         "not a readable audio file"),
        (lambda p: (p.write_text("hello, not audio\n" * 50), p)[1], "not a readable audio file"),
        (lambda p: (p.write_bytes(b""), p)[1], r"empty file \(0 bytes\)"),
        (lambda p: (os.mkfifo(p), p)[1], "is a FIFO"),
        (lambda p: (p.mkdir(), p)[1], "directory"),
        (lambda p: p, "no such file"),
    ],
)  # fmt: skip
def test_bad_input_is_one_clear_error(tmp_path: Path, make, message) -> None:
    path = make(tmp_path / "call.mp3")
    with pytest.raises(AudioFileError, match=message) as info:
        open_audio(path)
    assert info.value.path == str(path)


def test_corrupt_compressed_data_names_the_file(encoded, tmp_path: Path) -> None:
    """A FLAC whose frames are garbage after a good header: the error comes while decoding."""
    data = bytearray(encoded["flac"].read_bytes())
    data[8192:] = os.urandom(len(data) - 8192)
    path = tmp_path / "broken.flac"
    path.write_bytes(bytes(data))
    with pytest.raises(AudioFileError) as info:
        stream = open_audio(path)
        for _ in stream.blocks():
            pass
    assert info.value.path == str(path)


def test_long_wav_is_streamed_not_loaded(tmp_path: Path) -> None:
    """A long recording costs one block of memory: 24 MB of WAV, chunked, allocates < 4 MB.
    (Measured once on a 400 MB WAV: peak RSS 1,177 MiB before, 33 MiB after.)"""
    import tracemalloc

    from qa.sources.wav import iter_chunks

    frames = 6_000_000  # 375 s of 16 kHz stereo
    path = tmp_path / "long.wav"
    fmt = struct.pack("<HHIIHH", 1, 2, 16000, 64000, 4, 16)
    with open(path, "wb") as fh:
        fh.write(b"RIFF" + struct.pack("<I", 36 + frames * 4) + b"WAVEfmt "
                 + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", frames * 4))
        fh.write(np.tile(np.arange(-2000, 2000, dtype="<i2"), frames * 2 // 4000).tobytes())
    tracemalloc.start()
    try:
        samples = sum(len(c.pcm) for c in iter_chunks(open_audio(path), "long"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert samples == 2 * frames
    assert peak < 4 << 20, f"peak {peak / 2**20:.1f} MiB"


def test_stereo_flac_keeps_agent_left_and_customer_right(shared_audio: Path,
                                                         tmp_path: Path) -> None:
    clip = shared_audio / "en_stereo_2ch_overlap.wav"
    flac = _ffmpeg(clip, tmp_path / "stereo.flac", "-c:a", "flac")
    wav = read_audio(flac)
    assert (wav.channels, wav.sample_rate) == (2, 16000)
    assert np.array_equal(wav.pcm, read_wav(clip).pcm)


def test_rates_outside_8_to_48_khz_are_resampled_to_16_khz(clip: Path, tmp_path: Path) -> None:
    hi = _ffmpeg(clip, tmp_path / "hi.flac", "-ar", "96000", "-c:a", "flac")
    stream = open_audio(hi)
    assert stream.sample_rate == 16000 and stream.codec == "flac"
    frames = sum(len(b) for b in stream.blocks())
    assert frames == pytest.approx(11.0 * 16000, abs=160)
