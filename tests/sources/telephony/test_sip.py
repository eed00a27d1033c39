"""The SIP user agent (`sip://`): real baresip calls, and a raw-socket caller for what baresip
cannot send (joining headers, DTMF, malformed messages). Everything stays on 127.0.0.1."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest

from qa._native import g711
from qa.sources.sip import RoleRule
from qa.textnorm import wer
from qa.types import Speaker
from tests.pipeline.conftest import no_overload, text_of
from tests.sources.telephony.conftest import (
    SipClient,
    answered_port,
    clip_8k,
    header,
    read_pcm,
    rtp,
    telephone_event,
    to_tag,
)

LIBRI = "en_librispeech_1995-1837-0001.wav"
AUSTEN = "en_librivox_austen_0870.wav"
JFK = "en_jfk_inaugural_16k_mono.wav"
AGENT_RULE = RoleRule("from", r"^sip:agent-", Speaker.AGENT)


def best_match(received: np.ndarray, sent: np.ndarray, law: str = "ulaw", *,
               within: int = 4000) -> tuple[float, int]:
    """Where the sent clip (after a G.711 round trip) starts in what was received, within the
    first `within` samples (0.5 s), and the fraction of it found there sample-exact."""
    encode, decode = getattr(g711, f"{law}_encode"), getattr(g711, f"{law}_decode")
    expected = decode(encode(sent))
    best, where = 0.0, -1
    for lag in range(0, min(within, len(received))):
        n = min(len(received) - lag, len(expected))
        if received[lag] != expected[0]:
            continue
        score = float(np.sum(received[lag : lag + n] == expected[:n])) / len(expected)
        if score > best:
            best, where = score, lag
    return best, where


def test_two_concurrent_baresip_calls(sip_source, baresip, shared_audio: Path, tmp_path: Path):
    """Two real SIP clients call at once; each call carries exactly its own clip on the
    channel its caller's rule names, and ends with the caller's BYE."""
    source = sip_source(rules=(AGENT_RULE,))
    clips = {"agent-1001": clip_8k(shared_audio, LIBRI, tmp_path),
             "customer": clip_8k(shared_audio, AUSTEN, tmp_path)}
    clients = [baresip(wav, user) for user, wav in clips.items()]
    for client in clients:
        client.dial(f"sip:qa@127.0.0.1:{source.port}")
    for client in clients:
        client.wait_hangup(timeout=60)
    ended = source.wait_ended(2, timeout=10)
    source.stop()

    sink = source.sink
    assert sorted(reason for _, reason in ended) == ["hangup", "hangup"]
    assert len({call.call_id for call in sink.started}) == 2
    by_channel = {call.channels: call for call in sink.started}
    assert set(by_channel) == {(Speaker.AGENT,), (Speaker.CUSTOMER,)}
    for user, wav in clips.items():
        speaker = Speaker.AGENT if user.startswith("agent") else Speaker.CUSTOMER
        call = by_channel[(speaker,)]
        assert call.source == f"sip://127.0.0.1:{source.port}"
        first, pcm = sink.channel_audio(call.call_id, speaker)
        sent = read_pcm(wav)
        assert first == 0
        found, start = best_match(pcm, sent)
        assert found >= 0.95 and start < 8000 * 0.5  # baresip rounds a few codes apart
        # The call holds the clip and, after it, only the silence baresip sends until its
        # BYE (under a second on an idle machine, longer when baresip waits for a core): the
        # call's boundaries are the client's, not a timeout's (which would be 30 s here).
        after = pcm[start + len(sent) :]
        assert len(after) < 8000 * 5 and np.abs(after).max(initial=0) <= 8
    stats = source.source.stats()
    assert stats["legs"] == 2 and stats["calls"] == 2 and stats["byes_received"] == 2
    assert stats["malformed_messages"] == 0 and stats["rtp_lost"] == 0


def test_joined_legs_agent_id_dtmf_and_rtp_timeout(sip_source, shared_audio: Path,
                                                   tmp_path: Path):
    """Two INVITEs with one X-QA-Call value are one call: agent and customer channels, the
    agent id from X-QA-Agent, a key press from RFC 4733 events; when the RTP stops the call
    ends with `timeout` and the agent sends BYE on both legs."""
    source = sip_source(rules=(AGENT_RULE,), rtp_timeout_s=1.0)
    agent, customer = SipClient(source.port), SipClient(source.port)
    extra = "X-QA-Call: pbx-77\r\nX-QA-Agent: a-042\r\n"
    ports = {}
    for client, user, call_id in ((agent, "agent-7", "leg-a"), (customer, "cust", "leg-c")):
        client.invite(call_id, user, headers=extra)
        answer = client.receive()
        assert answer.startswith(b"SIP/2.0 200 OK"), answer
        assert b"c=IN IP4 127.0.0.1" in answer and b"a=recvonly" in answer
        assert b"PCMA/8000" in answer and b"telephone-event/8000" in answer
        client.in_dialog("ACK", call_id, user, to_tag(answer), 1)
        ports[user] = answered_port(answer)
    agent_pcm = read_pcm(clip_8k(shared_audio, LIBRI, tmp_path))[:16000]
    customer_pcm = read_pcm(clip_8k(shared_audio, AUSTEN, tmp_path))[:16000]
    agent.send_rtp(ports["agent-7"], g711.alaw_encode(agent_pcm).tobytes(), pt=8, speed=8)
    customer.send_rtp(ports["cust"], g711.alaw_encode(customer_pcm).tobytes(), pt=8, speed=8,
                      seq0=100, ts0=0)
    for i, end in enumerate((False, False, True, True, True)):
        event = telephone_event(5, end, 160 * (i + 1))
        customer.rtp.sendto(rtp(200 + i, 16000, 0x1234, event, 101), ("127.0.0.1", ports["cust"]))
    [(call_id, reason)] = source.wait_ended(1, timeout=10)
    byes = [client.receive() for client in (agent, customer)]
    source.stop()

    assert reason == "timeout"
    [info] = source.sink.started
    assert info.call_id == call_id
    assert info.agent_id == "a-042"
    assert info.channels == (Speaker.AGENT, Speaker.CUSTOMER)
    _, heard_agent = source.sink.channel_audio(call_id, Speaker.AGENT)
    _, heard_customer = source.sink.channel_audio(call_id, Speaker.CUSTOMER)
    assert best_match(heard_agent, agent_pcm, "alaw") == (1.0, 0)
    # The customer leg started later: its clip follows silence up to its first packet, which
    # left once the agent's clip was sent (0.25 s on an idle machine, longer when this test
    # waits for a core), so it is looked for anywhere in what was heard.
    found, start = best_match(heard_customer, customer_pcm, "alaw", within=len(heard_customer))
    assert found == 1.0 and start > 0 and not heard_customer[:start].any()
    assert [(k[1], k[2]) for k in source.sink.keys] == [(Speaker.CUSTOMER, "5")]
    for bye, call in zip(byes, ("leg-a", "leg-c"), strict=True):
        assert bye.startswith(b"BYE sip:"), bye
        assert header(bye, "Call-ID") == call
        assert header(bye, "To").endswith(f"tag=f{call}")
    assert source.source.stats()["timeouts"] == 1


def test_bad_messages_are_counted_and_never_stop_other_calls(sip_source):
    """Garbage, a message without Call-ID, a body shorter than its Content-Length, an
    oversized datagram, a TCP stream with a bad Content-Length: each is counted, the
    answerable ones get 400, and a call over TCP and an OPTIONS over UDP still work."""
    source = sip_source(max_message=4096)
    udp = SipClient(source.port)
    udp.send(b"\x00\x01garbage")
    udp.send(b"INVITE sip:qa@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKx"
             b"\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:qa@b>\r\nCSeq: 1 INVITE\r\n\r\n")
    udp.send(udp.invite("short", "cust", send=False)[:-40])
    udp.send(b"OPTIONS " + b"x" * 5000)
    answer = udp.receive()  # only the short body has the headers a response needs
    assert answer.startswith(b"SIP/2.0 400") and header(answer, "Call-ID") == "short"

    broken = socket.create_connection(("127.0.0.1", source.port))
    broken.sendall(b"INVITE sip:qa@x SIP/2.0\r\nContent-Length: many\r\n\r\n")
    assert broken.recv(100) == b""  # this connection alone is closed

    tcp = SipClient(source.port, tcp=True)
    tcp.invite("good", "cust", sdp=None)
    answer = tcp.receive()
    assert answer.startswith(b"SIP/2.0 200 OK")
    tcp.in_dialog("ACK", "good", "cust", to_tag(answer), 1)
    tcp.send_rtp(answered_port(answer), bytes([0xFF]) * 1600)
    tcp.in_dialog("BYE", "good", "cust", to_tag(answer), 2)
    assert tcp.receive().startswith(b"SIP/2.0 200 OK")
    udp.in_dialog("OPTIONS", "opt", "cust", "x", 1)
    assert udp.receive().startswith(b"SIP/2.0 200 OK")
    [(_, reason)] = source.wait_ended(1, timeout=5)
    source.stop()

    assert reason == "hangup"
    stats = source.source.stats()
    assert stats["malformed_messages"] == 4  # garbage, no Call-ID, short body, bad Content-Length
    assert stats["oversized_messages"] == 1
    assert stats["calls"] == 1 and stats["byes_received"] == 1


def test_offers_without_g711_and_legs_past_the_limit_are_refused(sip_source):
    """488 for an offer with no PCMU/PCMA; 503 once `max_legs` legs are up; neither starts a
    call, and the first call goes on."""
    source = sip_source(max_legs=1)
    client = SipClient(source.port)
    client.invite("opus", "cust", sdp="v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\n"
                  "c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 96\r\n"
                  "a=rtpmap:96 opus/48000/2\r\n")
    assert client.receive().startswith(b"SIP/2.0 488")
    client.invite("one", "cust")
    answer = client.receive()
    assert answer.startswith(b"SIP/2.0 200")
    client.invite("one", "cust")  # a retransmission gets the same answer
    assert client.receive() == answer
    client.invite("two", "cust")
    assert client.receive().startswith(b"SIP/2.0 503")
    client.send_rtp(answered_port(answer), bytes([0xFF]) * 800)
    source.wait_packets(client.rtp_sent)  # the call starts with its first packet
    source.stop()
    assert [reason for _, reason in source.sink.ended] == ["stopped"]
    assert client.receive().startswith(b"BYE ")  # stopping ends the leg politely
    stats = source.source.stats()
    assert stats["rejected"] == 2 and stats["legs"] == 1


@pytest.mark.slow
def test_qa_run_transcribes_two_baresip_calls(qa_run, baresip, shared_audio: Path,
                                              references: dict, tmp_path: Path):
    """`qa run --source sip://...`: two baresip calls at once are transcribed, each on its
    own call and on the channel its caller's rule names, and end with `hangup`."""
    port = 0
    run = qa_run("--source", "sip://127.0.0.1:0?agent=from:^sip:agent-", "--language", "en",
                 "--agent", "a-5", *no_overload(tmp_path))
    ready = run.wait_for("ready", timeout=120)[0]
    [name] = ready["sources"]
    port = int(name.rpartition(":")[2])
    plan = {"agent-9": LIBRI, "caller": JFK}
    clients = []
    for user, clip in plan.items():
        client = baresip(clip_8k(shared_audio, clip, tmp_path), user)
        client.dial(f"sip:qa@127.0.0.1:{port}")
        clients.append(client)
    summaries = run.wait_for("summary", timeout=180, count=2)
    assert run.interrupt() == 0

    assert sorted(s["reason"] for s in summaries) == ["hangup", "hangup"]
    calls = {m["call"]: m for m in run.seen if m["type"] == "call_started"}
    assert len(calls) == 2 and all(m["agent"] == "a-5" for m in calls.values())
    spoken = {}
    for call in calls:
        for speaker in ("agent", "customer"):
            text = text_of(run.seen, call, speaker)
            if text:
                spoken[speaker] = (call, text)
    assert set(spoken) == {"agent", "customer"}
    assert spoken["agent"][0] != spoken["customer"][0]
    assert wer(references[LIBRI]["text"], spoken["agent"][1]) <= 0.2
    assert wer(references[JFK]["text"], spoken["customer"][1]) <= 0.2
