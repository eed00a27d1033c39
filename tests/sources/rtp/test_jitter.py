"""The jitter buffer, and the source's clock, loss fill and DTMF, driven without sockets.

`RtpSource.receive`/`tick`/`finish` are the whole source minus the socket loop, so these
tests set arrival times themselves and are exact.
"""

from __future__ import annotations

import numpy as np

from qa._native import g711
from qa.sources.jitter import JitterBuffer, Verdict, extend_seq, extend_ts
from qa.sources.rtp import RtpOptions, RtpSource
from qa.types import Speaker
from tests.sources.rtp.conftest import RecordingSink, rtp, telephone_event

AGENT, CUSTOMER = Speaker.AGENT, Speaker.CUSTOMER


def test_extend_unwraps_both_ways():
    assert extend_seq(2, 65534) == 65538
    assert extend_seq(65535, 65538) == 65535
    assert extend_ts(5, 0xFFFFFF00) == 0x100000005
    assert extend_ts(0xFFFFFFF0, 3) == -16


def test_wraparound_keeps_order():
    buffer = JitterBuffer(0.06)
    for seq in (65534, 65535, 0, 1):
        assert buffer.push(seq, seq, 0.0)[0] is Verdict.ACCEPTED
    released = buffer.pop_ready(0.0)
    assert [r.seq for r in released] == [65534, 65535, 65536, 65537]
    assert [r.item for r in released] == [65534, 65535, 0, 1]
    assert all(r.lost_before == 0 for r in released)


def test_reordering_within_window_loses_nothing():
    buffer = JitterBuffer(0.06)
    buffer.push(10, "a", 0.00)
    assert [r.item for r in buffer.pop_ready(0.00)] == ["a"]
    buffer.push(12, "c", 0.01)
    assert buffer.pop_ready(0.02) == []  # 11 may still come
    buffer.push(11, "b", 0.03)
    assert [(r.item, r.lost_before) for r in buffer.pop_ready(0.03)] == [("b", 0), ("c", 0)]


def test_start_of_stream_out_of_order_is_not_late():
    buffer = JitterBuffer(0.06)
    buffer.push(101, "b", 0.0)
    assert buffer.push(100, "a", 0.001)[0] is Verdict.ACCEPTED
    assert [r.item for r in buffer.pop_ready(0.001)] == ["a", "b"]


def test_loss_is_given_up_after_the_window_and_late_and_duplicates_are_told_apart():
    buffer = JitterBuffer(0.06)
    buffer.push(1, 1, 0.0)
    buffer.pop_ready(0.0)
    buffer.push(4, 4, 0.02)
    assert buffer.pop_ready(0.079) == []
    released = buffer.pop_ready(0.08)
    assert [(r.seq, r.lost_before) for r in released] == [(4, 2)]
    assert buffer.push(2, 2, 0.1)[0] is Verdict.LATE
    assert buffer.push(4, 4, 0.1)[0] is Verdict.DUPLICATE
    buffer.push(6, 6, 0.1)
    assert buffer.push(6, 6, 0.1)[0] is Verdict.DUPLICATE  # still held, not released
    assert [(r.seq, r.lost_before) for r in buffer.flush()] == [(6, 1)]


def _source(**kwargs) -> RtpSource:
    return RtpSource(RtpOptions(port=0, customer_port=0, **kwargs))


def _ulaw(n: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return g711.ulaw_encode(rng.integers(-8000, 8000, n).astype(np.int16)).tobytes()


def test_lost_packet_becomes_silence_and_the_clock_stays_true():
    payloads = [_ulaw(160, i) for i in range(6)]
    sink = RecordingSink()
    with _source(jitter_ms=60) as source:
        t = 100.0
        for i, payload in enumerate(payloads):
            if i != 3:  # lost in the network
                source.receive(sink, rtp(65533 + i, 0xFFFFFE00 + 160 * i, 7, payload), AGENT, t)
            t += 0.02
        source.tick(sink, t + 0.1)
        source.finish(sink, "stopped")
    first, audio = sink.channel_audio(sink.started[0].call_id, AGENT)
    expected = [g711.ulaw_decode(p) for p in payloads]
    expected[3] = np.zeros(160, np.int16)
    assert first == 0
    np.testing.assert_array_equal(audio, np.concatenate(expected))
    stats = source.stats()
    assert (stats["lost"], stats["filled_samples"], stats["audio_packets"]) == (1, 160, 5)
    assert sink.ended == [(sink.started[0].call_id, "stopped")]


def test_duplicates_counted_once_and_late_packet_not_played():
    sink = RecordingSink()
    with _source(jitter_ms=40) as source:
        # seq 1 waits past the 40 ms window (given up at 0.1 s) and then arrives late.
        send = [(0, 0.0), (0, 0.001), (2, 0.04), (None, 0.1), (1, 0.2), (3, 0.21), (3, 0.22)]
        for seq, t in send:
            if seq is not None:
                source.receive(sink, rtp(seq, 160 * seq, 9, _ulaw(160, seq), pt=0), AGENT, t)
            source.tick(sink, t)
        source.finish(sink, "stopped")
        stats = source.stats()
    counted = (stats["duplicate"], stats["late"], stats["lost"], stats["audio_packets"])
    assert counted == (2, 1, 1, 3)
    _, audio = sink.channel_audio(sink.started[0].call_id, AGENT)
    assert len(audio) == 4 * 160
    assert not audio[160:320].any()


def test_dtmf_reported_once_with_digit_time_and_duration_not_as_audio():
    sink = RecordingSink()
    pt = 96
    with _source(dtmf_payload_type=pt) as source:
        seq, t = 0, 0.0
        for i in range(5):  # 100 ms of audio, then a '#' held 480 samples at ts 800
            source.receive(sink, rtp(seq, 160 * i, 5, _ulaw(160, i)), CUSTOMER, t)
            seq, t = seq + 1, t + 0.02
        for duration, end in [(160, False), (320, False), (480, True), (480, True), (480, True)]:
            source.receive(sink, rtp(seq, 800, 5, telephone_event(11, end, duration), pt=pt),
                           CUSTOMER, t)
            seq, t = seq + 1, t + 0.02
        source.receive(sink, rtp(seq, 1280, 5, _ulaw(160, 9)), CUSTOMER, t)
        source.finish(sink, "stopped")
        stats = source.stats()
    call_id = sink.started[0].call_id
    assert sink.keys == [(call_id, CUSTOMER, "#", 0.1, 0.06)]
    assert stats["dtmf"] == 1 and stats["audio_packets"] == 6 and stats["unknown_payload"] == 0
    _, audio = sink.channel_audio(call_id, CUSTOMER)
    # The event's 480 samples are silence on the audio channel, then audio resumes on time.
    assert len(audio) == 1280 + 160 and not audio[800:1280].any()


def test_large_timestamp_jump_is_a_restart_not_silence():
    sink = RecordingSink()
    with _source(max_gap_s=10.0) as source:
        source.receive(sink, rtp(0, 0, 1, _ulaw(160, 0)), AGENT, 0.0)
        source.receive(sink, rtp(1, 160, 1, _ulaw(160, 1)), AGENT, 0.02)
        # The sender restarted 1 s later with a timestamp an hour on.
        source.receive(sink, rtp(2, 160 * 2 + 8000 * 3600, 1, _ulaw(160, 2)), AGENT, 1.02)
        source.finish(sink, "stopped")
        stats = source.stats()
    first, audio = sink.channel_audio(sink.started[0].call_id, AGENT)
    assert stats["restarts"] == 1
    assert first == 0 and len(audio) == round(1.02 * 8000) + 160


def test_single_port_learns_agent_then_customer_and_drops_a_third_ssrc():
    sink = RecordingSink()
    with RtpSource(RtpOptions(port=0)) as source:
        for t, ssrc in [(0.0, 111), (0.01, 222), (0.02, 333), (0.03, 111)]:
            source.receive(sink, rtp(round(t * 100), 0, ssrc, _ulaw(160, ssrc), pt=8), None, t)
        source.finish(sink, "stopped")
        stats = source.stats()
    call_id = sink.started[0].call_id
    assert stats["unknown_ssrc"] == 1
    assert sink.channel_audio(call_id, AGENT)[0] == 0
    # The customer's stream arrived 10 ms after the call began: 80 samples of silence first.
    first, audio = sink.channel_audio(call_id, CUSTOMER)
    assert first == 0 and len(audio) == 80 + 160 and not audio[:80].any() and audio[80:].any()
    assert stats["filled_samples"] == 0


def test_configured_ssrc_map_decides_channels():
    sink = RecordingSink()
    options = RtpOptions(port=0, ssrc_map=((222, CUSTOMER), (111, AGENT)))
    with RtpSource(options) as source:
        source.receive(sink, rtp(0, 0, 222, _ulaw(160, 1)), None, 0.0)
        source.receive(sink, rtp(0, 0, 999, _ulaw(160, 1)), None, 0.0)
        source.finish(sink, "stopped")
    assert {c.channel for c in sink.chunks} == {CUSTOMER}
    assert source.stats()["unknown_ssrc"] == 1


def test_inactivity_ends_the_call_and_the_next_packet_starts_another():
    sink = RecordingSink()
    with _source(inactivity_timeout_s=0.5) as source:
        source.receive(sink, rtp(0, 0, 1, _ulaw(160, 0)), AGENT, 10.0)
        source.tick(sink, 10.49)
        assert sink.ended == []
        source.tick(sink, 10.5)
        source.receive(sink, rtp(1, 160, 1, _ulaw(160, 0)), AGENT, 11.0)
        source.finish(sink, "stopped")
    port = source.ports[0]
    assert [reason for _, reason in sink.ended] == ["timeout", "stopped"]
    first, second = (call_id for call_id, _ in sink.ended)
    assert first.startswith(f"rtp-{port}-") and first < second
    assert source.stats()["calls"] == 2
