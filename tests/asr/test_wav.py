"""`read_wav` and `iter_chunks` on files written here in every format the reader takes or
refuses, and on the shared clips."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from qa.errors import AudioFileError
from qa.sources.wav import iter_chunks, read_wav
from qa.types import Speaker

RAMP = np.array([0, 1000, -1000, 32767, -32768, 12345], dtype=np.int16)


def write_wav(
    path: Path,
    data: bytes,
    *,
    tag: int = 1,
    channels: int = 1,
    rate: int = 16000,
    bits: int = 16,
    extensible: bool = False,
    data_size: int | None = None,
    block_align: int | None = None,
) -> Path:
    align = block_align if block_align is not None else channels * bits // 8
    fmt = struct.pack("<HHIIHH", 0xFFFE if extensible else tag, channels, rate, rate * align,
                      align, bits)  # fmt: skip
    if extensible:
        guid_tail = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
        fmt += struct.pack("<HHI", 22, bits, 0) + struct.pack("<H", tag) + guid_tail
    size = len(data) if data_size is None else data_size
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"LIST" + struct.pack("<I", 3) + b"abc\x00"  # an odd-sized chunk to skip
    body += b"data" + struct.pack("<I", size) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


@pytest.mark.parametrize(
    ("bits", "tag", "encode"),
    [
        (16, 1, lambda x: x.astype("<i2").tobytes()),
        (8, 1, lambda x: ((x >> 8).astype(np.int16) + 128).astype(np.uint8).tobytes()),
        (24, 1, lambda x: b"".join((int(v) * 256).to_bytes(3, "little", signed=True) for v in x)),
        (32, 1, lambda x: (x.astype("<i4") << 16).tobytes()),
        (32, 3, lambda x: (x.astype("<f4") / 32768.0).tobytes()),
    ],
)
@pytest.mark.parametrize("extensible", [False, True])
def test_formats_convert_to_int16(tmp_path: Path, bits, tag, encode, extensible) -> None:
    path = write_wav(tmp_path / "a.wav", encode(RAMP), tag=tag, bits=bits, extensible=extensible)
    wav = read_wav(path)
    assert (wav.sample_rate, wav.channels, wav.frames) == (16000, 1, len(RAMP))
    expected = (RAMP >> 8) << 8 if bits == 8 else RAMP
    # float scaling by 32767 may differ by one step from the int16 source.
    assert np.abs(wav.pcm[:, 0].astype(int) - expected.astype(int)).max() <= (1 if tag == 3 else 0)
    assert not wav.pcm.flags.writeable


def test_stereo_8k_and_chunks(tmp_path: Path) -> None:
    left = np.arange(400, dtype=np.int16)
    right = -left
    inter = np.stack([left, right], axis=1).astype("<i2").tobytes()
    wav = read_wav(write_wav(tmp_path / "s.wav", inter, channels=2, rate=8000))
    assert (wav.sample_rate, wav.channels, wav.frames) == (8000, 2, 400)
    chunks = list(iter_chunks(wav, "call-1", chunk_ms=20))
    # 20 ms at 8 kHz = 160 samples: 160 + 160 + 80 per channel, agent then customer each step.
    assert [c.channel for c in chunks] == [Speaker.AGENT, Speaker.CUSTOMER] * 3
    assert [c.first_sample for c in chunks[::2]] == [0, 160, 320]
    assert [len(c.pcm) for c in chunks[::2]] == [160, 160, 80]
    assert np.array_equal(np.concatenate([c.pcm for c in chunks[::2]]), left)
    assert np.array_equal(np.concatenate([c.pcm for c in chunks[1::2]]), right)
    assert all(c.call_id == "call-1" and c.sample_rate == 8000 for c in chunks)


def test_shared_clips_read(shared_audio: Path) -> None:
    wav = read_wav(shared_audio / "en_stereo_2ch_overlap.wav")
    assert (wav.sample_rate, wav.channels, wav.frames) == (16000, 2, 80000)
    mono = read_wav(shared_audio / "8k" / "en_jfk_inaugural_8k_ulaw.wav")
    assert (mono.sample_rate, mono.channels) == (8000, 1)
    assert {c.channel for c in iter_chunks(mono, "x")} == {Speaker.UNKNOWN}


def test_truncated_says_how_many_frames_are_missing(tmp_path: Path) -> None:
    data = RAMP.astype("<i2").tobytes()
    path = write_wav(tmp_path / "t.wav", data, data_size=len(data) + 200)
    with pytest.raises(
        AudioFileError, match="truncated: .*declares 106 frames but only 6 .*100 missing"
    ):
        read_wav(path)
    partial = read_wav(path, strict=False)
    assert partial.frames == 6 and partial.missing_frames == 100


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p, "no such file"),
        (lambda p: (p.write_bytes(b""), p)[1], r"empty file \(0 bytes\)"),
        (lambda p: (p.write_text("hello, not audio" * 10), p)[1], "not a WAV file"),
        (lambda p: write_wav(p, b"\x00" * 10, tag=7, bits=16), "unsupported format: 16-bit mu-law"),
        (lambda p: write_wav(p, b"\x00" * 10, tag=2, bits=4, block_align=256),
         "unsupported format: Microsoft ADPCM"),
        (lambda p: write_wav(p, b"\x00" * 12, channels=3), "unsupported format: 3 channels"),
        (lambda p: write_wav(p, b"\x00" * 12, rate=96000), "unsupported sample rate 96000"),
        (lambda p: write_wav(p, b"\x00" * 12, block_align=3), "corrupt header: block align 3"),
        (lambda p: write_wav(p, b""), r"no audio frames \(empty data chunk\)"),
        (lambda p: (p.write_bytes(b"RIFF\x04\x00\x00\x00WAVE"), p)[1], "corrupt header: no fmt"),
    ],
)  # fmt: skip
def test_bad_files_name_the_problem(tmp_path: Path, make, message) -> None:
    path = make(tmp_path / "bad.wav")
    with pytest.raises(AudioFileError, match=message) as info:
        read_wav(path)
    assert info.value.path == str(path)
