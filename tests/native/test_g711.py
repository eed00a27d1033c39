"""G.711: bit-exact against the ITU-T G.191 vectors, the plain-Python reference and ffmpeg."""

from __future__ import annotations

import subprocess
from importlib.machinery import EXTENSION_SUFFIXES

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from qa._native import g711
from tests.reference import g711 as ref

LAWS = {"u": ("ulaw", "mulaw"), "a": ("alaw", "alaw")}  # STL suffix -> (ours, ffmpeg's name)


@pytest.fixture(scope="module")
def vectors(shared_audio):
    return shared_audio / "vectors" / "g711"


@pytest.mark.parametrize("law", sorted(LAWS))
def test_encoder_matches_stl_sweep(vectors, law):
    # STL files are little-endian 16-bit words; encoded files carry the code in the low byte.
    src = np.fromfile(vectors / "sweep.src", "<i2")
    words = np.fromfile(vectors / f"sweep-r.{law}", "<u2")
    assert len(src) == len(words) == 65536 and not (words >> 8).any()
    encode = getattr(g711, f"{LAWS[law][0]}_encode")
    np.testing.assert_array_equal(encode(src), words.astype(np.uint8))


@pytest.mark.parametrize("law", sorted(LAWS))
def test_decoder_matches_stl_sweep(vectors, law):
    codes = np.fromfile(vectors / f"sweep-r.{law}", "<u2").astype(np.uint8)
    expected = np.fromfile(vectors / f"sweep-r.{law}-{law}", "<i2")
    decode = getattr(g711, f"{LAWS[law][0]}_decode")
    np.testing.assert_array_equal(decode(codes), expected)
    np.testing.assert_array_equal(decode(codes.tobytes()), expected)


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_exhaustive_against_reference(law):
    every_code = np.arange(256, dtype=np.uint8)
    every_sample = np.arange(-32768, 32768, dtype=np.int16)
    np.testing.assert_array_equal(
        getattr(g711, f"{law}_decode")(every_code), getattr(ref, f"{law}_decode")(every_code)
    )
    np.testing.assert_array_equal(
        getattr(g711, f"{law}_encode")(every_sample), getattr(ref, f"{law}_encode")(every_sample)
    )


@settings(max_examples=50, deadline=None)
@given(pcm=hnp.arrays(np.int16, st.integers(0, 300)), law=st.sampled_from(["ulaw", "alaw"]))
def test_into_variants_match_reference_on_random_input(pcm, law):
    codes = np.full(len(pcm) + 3, 7, np.uint8)  # longer than needed: the tail stays untouched
    assert getattr(g711, f"{law}_encode_into")(pcm, codes) == len(pcm)
    np.testing.assert_array_equal(codes[: len(pcm)], getattr(ref, f"{law}_encode")(pcm))
    assert (codes[len(pcm) :] == 7).all()
    decoded = np.zeros(len(pcm), np.int16)
    assert getattr(g711, f"{law}_decode_into")(memoryview(codes)[: len(pcm)], decoded) == len(pcm)
    np.testing.assert_array_equal(decoded, getattr(ref, f"{law}_decode")(codes[: len(pcm)]))


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_decode_accepts_every_byte_buffer(law):
    decode = getattr(g711, f"{law}_decode")
    expected = decode(np.arange(256, dtype=np.uint8))
    raw = bytes(range(256))
    for codes in (raw, bytearray(raw), memoryview(raw)):
        np.testing.assert_array_equal(decode(codes), expected)


def test_into_refuses_a_short_output():
    with pytest.raises(ValueError, match="output holds 2"):
        g711.ulaw_decode_into(b"\x00\x01\x02", np.zeros(2, np.int16))
    with pytest.raises(ValueError, match="output holds 1"):
        g711.alaw_encode_into(np.zeros(2, np.int16), bytearray(1))


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_decoder_agrees_with_ffmpeg(tmp_path, law):
    """Our linear scale is ffmpeg's (what RTP payloads decode to elsewhere)."""
    codes = tmp_path / "codes.raw"
    codes.write_bytes(bytes(range(256)))
    fmt = LAWS[law[0]][1]
    pcm = subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-f",
            fmt,
            "-ar",
            "8000",
            "-ac",
            "1",
            "-i",
            str(codes),
            "-f",
            "s16le",
            "-",
        ],
        check=True,
        capture_output=True,
    ).stdout
    decode = getattr(g711, f"{law}_decode")
    np.testing.assert_array_equal(decode(bytes(range(256))), np.frombuffer(pcm, "<i2"))
