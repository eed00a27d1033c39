"""Real RTP from ffmpeg: a speech clip as PCMU to the agent port and as PCMA to the customer port.

ffmpeg runs at 4x real time (`-readrate 4`, about 2.8 s for the 11 s clip) with 20 ms
packets (`-packetsize 172`), so ~200 packets/s per stream reach the source; the 1 MiB socket
buffers hold far more than that, and the test asserts that nothing was lost, so any drop at
the socket would fail it rather than pass silently. ffmpeg's RTCP reports go to the same ports
(`rtcpport`), to prove the source counts and ignores them.

The reference is ffmpeg's own G.711 encoding of its own 8 kHz resampling of the clip
(`-f mulaw` / `-f alaw`), decoded with `qa._native.g711` (bit-exact with ITU-T G.191).
It is not `g711.*_encode` of the resampled PCM: ffmpeg's encoders round to the nearest
level where G.191 truncates, so 8.9 % (µ-law) and 7.4 % (A-law) of this clip's codes differ by
one level. Comparing the delivered audio with the codes actually sent is what proves that the
source carries and decodes every sample exactly.
"""

from __future__ import annotations

import subprocess
import time

import numpy as np
import pytest

from qa._native import g711
from qa.sources.rtp import RtpOptions
from qa.types import Speaker
from tests.sources.rtp.conftest import RecordingSink

CLIP = "en_jfk_inaugural_16k_mono.wav"


def _ffmpeg_8k(path, fmt: str) -> bytes:
    """The clip as ffmpeg's RTP muxer will see it: resampled to 8 kHz mono, in format `fmt`."""
    return subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", str(path), "-ar", "8000",
         "-ac", "1", "-f", fmt, "-"],
        check=True, capture_output=True, timeout=30,
    ).stdout


def _send(path, codec: str, port: int) -> subprocess.Popen:
    return subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-readrate", "4", "-i", str(path),
         "-ar", "8000", "-ac", "1", "-c:a", codec, "-packetsize", "172", "-f", "rtp",
         f"rtp://127.0.0.1:{port}?rtcpport={port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


def _wait(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail("timed out waiting for the RTP source")
        time.sleep(0.05)


def test_ffmpeg_pcmu_and_pcma_streams_decode_sample_exact(shared_audio, running):
    clip = shared_audio / CLIP
    pcm = np.frombuffer(_ffmpeg_8k(clip, "s16le"), dtype="<i2").astype(np.int16)
    expected = {
        Speaker.AGENT: g711.ulaw_decode(_ffmpeg_8k(clip, "mulaw")),
        Speaker.CUSTOMER: g711.alaw_decode(_ffmpeg_8k(clip, "alaw")),
    }
    # The sent audio is the clip within one G.711 level (see the module docstring).
    for want, encode, decode in [
        (expected[Speaker.AGENT], g711.ulaw_encode, g711.ulaw_decode),
        (expected[Speaker.CUSTOMER], g711.alaw_encode, g711.alaw_decode),
    ]:
        assert len(want) == len(pcm)
        ours = decode(encode(pcm)).astype(np.int32)
        assert np.all(np.abs(want - ours) <= np.abs(ours) // 8 + 16)
    sink = RecordingSink()
    source = running(
        RtpOptions(port=0, customer_port=0, inactivity_timeout_s=0.5, agent_id="a-7"), sink
    )
    agent_port, customer_port = source.ports
    senders = [_send(clip, "pcm_mulaw", agent_port), _send(clip, "pcm_alaw", customer_port)]
    for sender in senders:
        _, err = sender.communicate(timeout=20)
        assert sender.returncode == 0, err.decode()
    _wait(lambda: sink.ended, timeout=3)

    assert len(sink.started) == 1
    call = sink.started[0]
    assert sink.ended == [(call.call_id, "timeout")]
    assert (call.sample_rate, call.agent_id) == (8000, "a-7")
    assert call.channels == (Speaker.AGENT, Speaker.CUSTOMER)
    ends = []
    for channel, want in expected.items():
        first, audio = sink.channel_audio(call.call_id, channel)
        # Each channel is silence until its stream's first packet arrived, then the clip.
        lead = len(audio) - len(want)
        assert first == 0 and 0 <= lead < 0.5 * 8000
        assert not audio[:lead].any()
        np.testing.assert_array_equal(audio[lead:], want)
        ends.append(len(audio))
    # The call lasts as long as the audio sent, give or take the streams' start offset.
    assert abs(max(ends) / 8000 - len(pcm) / 8000) < 0.5
    stats = source.stats()
    for name in ("lost", "late", "duplicate", "malformed", "unknown_payload", "unknown_ssrc",
                 "restarts", "filled_samples"):
        assert stats[name] == 0, name
    # At most 160 samples a packet; ffmpeg also cuts packets at its input's block boundaries.
    assert stats["audio_packets"] >= 2 * len(pcm) // 160
    assert stats["rtcp"] >= 2
    assert stats["packets"] == stats["audio_packets"] + stats["rtcp"]
    assert stats["calls"] == 1
