"""Hostile senders on loopback: forged timestamp jumps and forged packets from another socket.

Real UDP packets reach a running `RtpSource`. The forgers are the two attacks that were
reproduced against the service (issue 10, items 5 and 6): 40 packets in 0.4 s whose
timestamps jump 9.9 s each (under `max_gap_s`, so each jump used to be filled with silence: a
395 s call), and packets from a third socket that claim the real streams' SSRCs (or ports)
with sequence numbers 2,000 ahead, after which the real packets were dropped as late.
"""

from __future__ import annotations

import logging
import socket
import time

import numpy as np
import pytest

from qa._native import g711
from qa.sources.rtp import RtpOptions, RtpSource
from qa.types import Speaker
from tests.reference.frontend import read_wav
from tests.sources.rtp.conftest import RecordingSink, rtp

CLIP = "8k/en_jfk_inaugural_8k_ulaw.wav"
AGENT_SSRC, CUSTOMER_SSRC, FORGED_SSRC = 0x5EED1, 0x5EED2, 0xBAD
#: 4x real time: 5 s of speech in about 1.25 s of test.
PACE_S = 0.005


def _wait(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail("timed out waiting for the RTP source")
        time.sleep(0.02)


def test_forged_timestamp_jumps_do_not_stretch_the_call(running, caplog):
    caplog.set_level(logging.WARNING, logger="qa.sources.rtp")
    sink = RecordingSink()
    source = running(RtpOptions(port=0, inactivity_timeout_s=0.5), sink)
    payload = g711.ulaw_encode(np.full(160, 1000, np.int16)).tobytes()
    jump = round(9.9 * 8000)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as send:
        began = time.monotonic()
        for i in range(40):
            send.sendto(rtp(i, i * jump, 0x7E57, payload), ("127.0.0.1", source.ports[0]))
            time.sleep(0.01)
        sent_for = time.monotonic() - began
    _wait(lambda: sink.ended, timeout=5)
    first, audio = sink.channel_audio(sink.started[0].call_id, Speaker.AGENT)
    duration = (first + len(audio)) / 8000
    stats = source.stats()
    # The wall time it took, the 40 packets' own 20 ms each, and the 160 ms bank (60 ms jitter
    # window + 100 ms slack); without the bound it was 39 * 9.9 s = 386 s.
    assert duration <= sent_for + 40 * 0.02 + 0.16 + 0.02
    assert stats["clock_jumps"] == 39
    assert stats["gap_rejected"] / 8000 == pytest.approx(39 * 9.9, abs=duration)
    assert stats["filled_samples"] / 8000 <= duration
    assert stats["audio_packets"] == 40 and stats["restarts"] == 0
    assert any("not filled" in r.getMessage() for r in caplog.records)


def test_a_pause_in_real_time_is_still_filled_exactly():
    """A sender that goes quiet for 1.5 s (silence suppression) and resumes on time."""
    sink = RecordingSink()
    payload = g711.ulaw_encode(np.full(160, 1000, np.int16)).tobytes()
    with RtpSource(RtpOptions(port=0)) as source:
        for i in range(10):
            source.receive(sink, rtp(i, 160 * i, 1, payload), Speaker.AGENT, 0.02 * i)
        for i in range(10, 20):  # 75 packets' worth of time later
            source.receive(sink, rtp(i, 160 * (i + 75), 1, payload), Speaker.AGENT,
                           0.02 * (i + 75))
        source.finish(sink, "stopped")
        stats = source.stats()
    _, audio = sink.channel_audio(sink.started[0].call_id, Speaker.AGENT)
    assert len(audio) == 160 * 95
    assert stats["filled_samples"] == 160 * 75
    assert (stats["clock_jumps"], stats["gap_rejected"]) == (0, 0)


def test_a_stream_may_move_to_another_address_only_after_falling_silent():
    """A gateway that moves the media mid-call: dropped while the old address is live."""
    sink = RecordingSink()
    old, new = ("10.0.0.1", 4000), ("10.0.0.1", 4010)
    payload = g711.ulaw_encode(np.full(160, 1000, np.int16)).tobytes()
    with RtpSource(RtpOptions(port=0, customer_port=0, source_lock_s=2.0)) as source:
        for i in range(10):  # 0.2 s from the old address
            source.receive(sink, rtp(i, 160 * i, 1, payload), Speaker.AGENT, 0.02 * i,
                           address=old)
        # The new address 1 s later: too soon, the old stream may only be pausing.
        source.receive(sink, rtp(50, 160 * 50, 1, payload), Speaker.AGENT, 1.0, address=new)
        assert source.stats()["foreign_source"] == 1
        # 2 s after the old address was last heard, the stream moves (and keeps its clock).
        for i in range(110, 120):
            source.receive(sink, rtp(i, 160 * i, 1, payload), Speaker.AGENT, 0.02 * i + 0.1,
                           address=new)
        source.finish(sink, "stopped")
        stats = source.stats()
    _, audio = sink.channel_audio(sink.started[0].call_id, Speaker.AGENT)
    assert stats["foreign_source"] == 1 and stats["audio_packets"] == 20
    assert len(audio) == 160 * 120 and stats["restarts"] == 0


def _stream(pcm: np.ndarray, ssrc: int, seq0: int, ts0: int) -> tuple[list[bytes], np.ndarray]:
    packets, expected = [], []
    for k, i in enumerate(range(0, len(pcm) - 159, 160)):
        codes = g711.ulaw_encode(pcm[i : i + 160]).tobytes()
        packets.append(rtp(seq0 + k, ts0 + i, ssrc, codes))
        expected.append(g711.ulaw_decode(codes))
    return packets, np.concatenate(expected)


@pytest.mark.parametrize("pair", [False, True], ids=["single-port", "port-pair"])
def test_forged_packets_from_another_socket_cannot_take_a_stream(
    shared_audio, running, caplog, pair
):
    caplog.set_level(logging.WARNING, logger="qa.sources.rtp")
    sink = RecordingSink()
    options = RtpOptions(port=0, customer_port=0 if pair else None, jitter_ms=100,
                         inactivity_timeout_s=0.5)
    source = running(options, sink)
    agent_port = source.ports[0]
    customer_port = source.ports[1] if pair else agent_port
    pcm = read_wav(shared_audio / CLIP)[0][: 5 * 8000]
    agent, agent_expected = _stream(pcm, AGENT_SSRC, 100, 5000)
    customer, customer_expected = _stream(pcm[::-1].copy(), CUSTOMER_SSRC, 60000, 9000)
    forged_known, forged_new = 0, 0
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as forger,
    ):
        for n in range(len(agent)):
            a.sendto(agent[n], ("127.0.0.1", agent_port))
            c.sendto(customer[n], ("127.0.0.1", customer_port))
            if n in range(50, 55):
                # The real SSRCs, 2,000 packets ahead (40 s) and 40 s of timestamps on.
                for ssrc, seq, ts, port in [(AGENT_SSRC, 100, 5000, agent_port),
                                            (CUSTOMER_SSRC, 60000, 9000, customer_port)]:
                    forged = rtp(seq + n + 2000, ts + 160 * (n + 2000), ssrc, agent[0][12:])
                    forger.sendto(forged, ("127.0.0.1", port))
                    forged_known += 1
                forger.sendto(rtp(n, 160 * n, FORGED_SSRC, agent[0][12:]),
                              ("127.0.0.1", agent_port))
                forged_new += 1
            time.sleep(PACE_S)
    _wait(lambda: sink.ended, timeout=5)

    stats = source.stats()
    assert (stats["lost"], stats["late"], stats["duplicate"], stats["restarts"]) == (0, 0, 0, 0)
    if pair:  # the ports are locked: a new SSRC from the forger is foreign too
        assert (stats["foreign_source"], stats["unknown_ssrc"]) == (forged_known + forged_new, 0)
    else:  # both channels taken: a new SSRC has no place
        assert (stats["foreign_source"], stats["unknown_ssrc"]) == (forged_known, forged_new)
    assert stats["filled_samples"] == 0 and stats["gap_rejected"] == 0
    assert stats["audio_packets"] == len(agent) + len(customer)
    # Every real sample arrived, in place: what is transcribed is exactly what was sent.
    call_id = sink.started[0].call_id
    first, audio = sink.channel_audio(call_id, Speaker.AGENT)
    assert first == 0
    np.testing.assert_array_equal(audio, agent_expected)
    _, audio = sink.channel_audio(call_id, Speaker.CUSTOMER)
    lead = len(audio) - len(customer_expected)
    assert 0 <= lead < 0.05 * 8000 and not audio[:lead].any()
    np.testing.assert_array_equal(audio[lead:], customer_expected)
    # The call's end says what it lost, and the forger's address is named.
    ended = [r.getMessage() for r in caplog.records if f"call {call_id} ended" in r.getMessage()]
    foreign = stats["foreign_source"]
    assert ended and f"{foreign} packets from other addresses dropped" in ended[0]
    assert any("is locked to" in r.getMessage() for r in caplog.records)
