"""SIPREC (RFC 7866 recording sessions, RFC 7865 metadata): the RFC's example INVITE (two
participants, Alice and Bob, each sending an audio and a video stream) over real UDP with
real RTP carrying real speech, a re-INVITE that updates the metadata, and broken bodies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qa._native import g711
from qa.sources.sip.siprec import assign, parse_metadata, split_multipart
from qa.textnorm import wer
from qa.types import Speaker
from tests.pipeline.conftest import no_overload, text_of
from tests.sources.telephony.conftest import SipClient, clip_8k, header, read_pcm, to_tag

LIBRI = "en_librispeech_1995-1837-0001.wav"
AUSTEN = "en_librivox_austen_0870.wav"
JFK = "en_jfk_inaugural_16k_mono.wav"

#: The SDP of RFC 7866's example recording INVITE, with the SRC's address on the loopback.
SDP = """v=0
o=SRC 2890844526 2890844526 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 12240 RTP/AVP 0 4 8
a=sendonly
a=label:1
m=video 22456 RTP/AVP 98
a=rtpmap:98 H264/90000
a=fmtp:98 profile-level-id=42A01E;
a=sendonly
a=label:2
m=audio 12242 RTP/AVP 0 4 8
a=sendonly
a=label:3
m=video 22458 RTP/AVP 98
a=rtpmap:98 H264/90000
a=fmtp:98 profile-level-id=42A01E;
a=sendonly
a=label:4
"""

#: The rs-metadata of the same example (RFC 7866 section 8.1.1, after RFC 7865).
METADATA = """<?xml version="1.0" encoding="UTF-8"?>
<recording xmlns='urn:ietf:params:xml:ns:recording:1'>
  <datamode>complete</datamode>
  <group group_id="7+OTCyoxTmqmqyA/1weDAg==">
    <associate-time>2010-12-16T23:41:07Z</associate-time>
    <call-center xmlns='urn:ietf:params:xml:ns:callcenter'>
      <supervisor>sip:alice@atlanta.com</supervisor>
    </call-center>
    <mydata xmlns='http://example.com/my'>
      <structure>structure!</structure>
      <whatever>structure</whatever>
    </mydata>
  </group>
  <session session_id="hVpd7YQgRW2nD22h7q60JQ==">
    <sipSessionID>ab30317f1a784dc48ff824d0d3715d86;
                  remote=47755a9de7794ba387653f2099600ef2</sipSessionID>
    <group-ref>7+OTCyoxTmqmqyA/1weDAg==</group-ref>
  </session>
  <participant participant_id="srfBElmCRp2QB23b7Mpk0w==">
    <nameID aor="sip:alice@atlanta.com">
      <name xml:lang="it">Alice</name>
    </nameID>
  </participant>
  <participant participant_id="zSfPoSvdSDCmU3A3TRDxAw==">
    <nameID aor="sip:bob@biloxy.com">
      <name xml:lang="it">Bob</name>
    </nameID>
  </participant>
  <stream stream_id="UAAMm5GRQKSCMVvLyl4rFw==" session_id="hVpd7YQgRW2nD22h7q60JQ==">
    <label>1</label>
  </stream>
  <stream stream_id="i1Pz3to5hGk8fuXl+PbwCw==" session_id="hVpd7YQgRW2nD22h7q60JQ==">
    <label>2</label>
  </stream>
  <stream stream_id="8zc6e0lYTlWIINA6GR+3ag==" session_id="hVpd7YQgRW2nD22h7q60JQ==">
    <label>3</label>
  </stream>
  <stream stream_id="EiXGlc+4TruqqoDaNE76ag==" session_id="hVpd7YQgRW2nD22h7q60JQ==">
    <label>4</label>
  </stream>
  <sessionrecordingassoc session_id="hVpd7YQgRW2nD22h7q60JQ==">
    <associate-time>2010-12-16T23:41:07Z</associate-time>
  </sessionrecordingassoc>
  <participantsessionassoc participant_id="srfBElmCRp2QB23b7Mpk0w=="
      session_id="hVpd7YQgRW2nD22h7q60JQ==">
    <associate-time>2010-12-16T23:41:07Z</associate-time>
  </participantsessionassoc>
  <participantsessionassoc participant_id="zSfPoSvdSDCmU3A3TRDxAw=="
      session_id="hVpd7YQgRW2nD22h7q60JQ==">
    <associate-time>2010-12-16T23:41:07Z</associate-time>
  </participantsessionassoc>
  <participantstreamassoc participant_id="srfBElmCRp2QB23b7Mpk0w==">
    <send>i1Pz3to5hGk8fuXl+PbwCw==</send>
    <send>UAAMm5GRQKSCMVvLyl4rFw==</send>
    <recv>8zc6e0lYTlWIINA6GR+3ag==</recv>
    <recv>EiXGlc+4TruqqoDaNE76ag==</recv>
  </participantstreamassoc>
  <participantstreamassoc participant_id="zSfPoSvdSDCmU3A3TRDxAw==">
    <send>8zc6e0lYTlWIINA6GR+3ag==</send>
    <send>EiXGlc+4TruqqoDaNE76ag==</send>
    <recv>UAAMm5GRQKSCMVvLyl4rFw==</recv>
    <recv>i1Pz3to5hGk8fuXl+PbwCw==</recv>
  </participantstreamassoc>
</recording>
"""

#: A partial update: Bob hands the call to Carol, who sends a new audio stream (label 5).
UPDATE = """<?xml version="1.0" encoding="UTF-8"?>
<recording xmlns='urn:ietf:params:xml:ns:recording:1'>
  <datamode>partial</datamode>
  <participant participant_id="Cr0lCarolCarolCarolCa==">
    <nameID aor="sip:carol@biloxy.com"><name>Carol</name></nameID>
  </participant>
  <stream stream_id="NewStreamForCarol00000==" session_id="hVpd7YQgRW2nD22h7q60JQ==">
    <label>5</label>
  </stream>
  <participantstreamassoc participant_id="Cr0lCarolCarolCarolCa==">
    <send>NewStreamForCarol00000==</send>
  </participantstreamassoc>
</recording>
"""


def multipart(sdp: str, metadata: str, *, close: bool = True) -> tuple[str, str]:
    body = ("--foobar\r\nContent-Type: application/sdp\r\n\r\n" + sdp.replace("\n", "\r\n")
            + "\r\n--foobar\r\nContent-Type: application/rs-metadata+xml\r\n"
            "Content-Disposition: recording-session\r\n\r\n" + metadata
            + ("\r\n--foobar--\r\n" if close else ""))
    return ("Require: siprec\r\nAccept: application/sdp, application/rs-metadata\r\n"
            "Content-Type: multipart/mixed;boundary=foobar\r\n", body)


def send_invite(client: SipClient, call_id: str, sdp: str, metadata: str, *, cseq: int = 1,
                tag: str = "", close: bool = True) -> None:
    headers, body = multipart(sdp, metadata, close=close)
    message = client.invite(call_id, "2000", sdp=body, cseq=cseq, to_tag=tag, send=False)
    # `invite` names application/sdp; a recording INVITE is multipart.
    message = message.replace(b"Content-Type: application/sdp\r\n", headers.encode(), 1)
    client.send(message)


def audio_ports(answer: bytes) -> dict[str, int]:
    """label -> port of each accepted m= line of an SDP answer."""
    ports, port = {}, None
    for line in answer.split(b"\r\n\r\n", 1)[1].decode().splitlines():
        if line.startswith("m="):
            port = int(line.split()[1])
        elif line.startswith("a=label:") and port:
            ports[line.partition(":")[2]] = port
    return ports


def test_rfc_example_metadata_names_agent_and_customer():
    headers, body = multipart(SDP, METADATA)
    parts = split_multipart("multipart/mixed;boundary=foobar", body.encode())
    assert [p.content_type for p in parts] == ["application/sdp", "application/rs-metadata+xml"]
    metadata = parse_metadata(parts[1].content)
    assert [p.aor for _, p in metadata.participants] == ["sip:alice@atlanta.com",
                                                         "sip:bob@biloxy.com"]
    by_pattern = assign(metadata, r"@biloxy\.com")
    assert dict(by_pattern.speakers) == {"1": Speaker.CUSTOMER, "2": Speaker.CUSTOMER,
                                         "3": Speaker.AGENT, "4": Speaker.AGENT}
    assert by_pattern.agent_id == "bob"
    by_order = assign(metadata, "")  # the first participant is the caller: the customer
    assert dict(by_order.speakers)["1"] is Speaker.CUSTOMER and by_order.agent_id == "bob"
    merged = metadata.merged(parse_metadata(UPDATE.encode()))
    assert dict(assign(merged, r"@biloxy\.com").speakers)["5"] is Speaker.AGENT


def test_recording_session_follows_metadata_updates(sip_source, shared_audio: Path,
                                                    tmp_path: Path):
    """The example INVITE is answered with one port per audio line (video refused); Alice's
    stream is the customer, Bob's the agent (agent id `bob`); a re-INVITE adds Carol's
    stream, which the agent channel then carries; BYE ends the recording."""
    source = sip_source(siprec_agent=r"@biloxy\.com")
    client = SipClient(source.port)
    send_invite(client, "rec-1", SDP, METADATA)
    answer = client.receive()
    assert answer.startswith(b"SIP/2.0 200 OK"), answer
    assert answer.count(b"m=video 0 ") == 2 and answer.count(b"a=recvonly") == 2
    ports = audio_ports(answer)
    assert set(ports) == {"1", "3"}
    tag = to_tag(answer)
    client.in_dialog("ACK", "rec-1", "2000", tag, 1)
    alice = read_pcm(clip_8k(shared_audio, AUSTEN, tmp_path))[:16000]
    bob = read_pcm(clip_8k(shared_audio, LIBRI, tmp_path))[:8000]
    carol = read_pcm(clip_8k(shared_audio, JFK, tmp_path))[:8000]
    client.send_rtp(ports["1"], g711.ulaw_encode(alice[:8000]).tobytes(), ssrc=1, speed=8)
    client.send_rtp(ports["3"], g711.ulaw_encode(bob).tobytes(), ssrc=3, speed=8)

    sdp2 = SDP.replace("2890844526 2890844526", "2890844526 2890844527") + (
        "m=audio 12244 RTP/AVP 0\na=sendonly\na=label:5\n")
    send_invite(client, "rec-1", sdp2, UPDATE, cseq=2, tag=tag)
    reanswer = client.receive()
    assert reanswer.startswith(b"SIP/2.0 200 OK")
    new_ports = audio_ports(reanswer)
    assert new_ports["1"] == ports["1"] and new_ports["3"] == ports["3"]  # same lines kept
    client.in_dialog("ACK", "rec-1", "2000", tag, 2)
    client.send_rtp(ports["1"], g711.ulaw_encode(alice[8000:]).tobytes(), ssrc=1, speed=8,
                    seq0=50)  # timestamps go on from 8000: no gap in Alice's stream
    client.send_rtp(new_ports["5"], g711.ulaw_encode(carol).tobytes(), ssrc=5, speed=8)
    source.wait_packets(client.rtp_sent)  # all heard before the BYE ends the call
    client.in_dialog("BYE", "rec-1", "2000", tag, 3)
    assert client.receive().startswith(b"SIP/2.0 200 OK")
    [(call_id, reason)] = source.wait_ended(1, timeout=5)
    source.stop()

    assert reason == "hangup"
    [info] = source.sink.started
    assert info.agent_id == "bob" and info.channels == (Speaker.AGENT, Speaker.CUSTOMER)
    _, customer = source.sink.channel_audio(call_id, Speaker.CUSTOMER)
    _, agent = source.sink.channel_audio(call_id, Speaker.AGENT)
    assert np.array_equal(customer[:16000], g711.ulaw_decode(g711.ulaw_encode(alice)))
    for pcm in (bob, carol):  # Bob's words, then Carol's, on the agent channel
        expected = g711.ulaw_decode(g711.ulaw_encode(pcm))
        found = any(np.array_equal(agent[i : i + len(expected)], expected)
                    for i in np.flatnonzero(agent == expected[0]))
        assert found
    stats = source.source.stats()
    assert stats["recordings"] == 1 and stats["metadata_updates"] == 1
    assert stats["malformed_messages"] == 0 and header(answer, "Content-Type") == "application/sdp"


def test_broken_recording_bodies_are_counted_and_answered_400(sip_source):
    """A multipart body cut before its closing delimiter and metadata with a DTD are refused
    with 400 and counted; a good recording INVITE afterwards is answered."""
    source = sip_source()
    client = SipClient(source.port)
    send_invite(client, "cut", SDP, METADATA, close=False)
    assert client.receive().startswith(b"SIP/2.0 400")
    send_invite(client, "dtd", SDP, '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa">]>'
                "<recording xmlns='urn:ietf:params:xml:ns:recording:1'>&a;</recording>")
    assert client.receive().startswith(b"SIP/2.0 400")
    send_invite(client, "good", SDP, METADATA)
    assert client.receive().startswith(b"SIP/2.0 200 OK")
    source.stop()
    assert source.source.stats()["malformed_messages"] == 2


@pytest.mark.slow
def test_qa_run_transcribes_a_recording_session(qa_run, shared_audio: Path, references: dict,
                                                tmp_path: Path):
    """`qa run --source siprec://...`: the example recording session carrying Alice's and
    Bob's speech is transcribed per party, with Bob as the agent."""
    run = qa_run("--source", "siprec://127.0.0.1:0?siprec_agent=@biloxy", "--language", "en",
                 *no_overload(tmp_path))
    [name] = run.wait_for("ready", timeout=120)[0]["sources"]
    client = SipClient(int(name.rpartition(":")[2]))
    send_invite(client, "rec-2", SDP, METADATA)
    answer = client.receive()
    ports = audio_ports(answer)
    client.in_dialog("ACK", "rec-2", "2000", to_tag(answer), 1)
    alice = g711.ulaw_encode(read_pcm(clip_8k(shared_audio, AUSTEN, tmp_path))).tobytes()
    bob = g711.ulaw_encode(read_pcm(clip_8k(shared_audio, LIBRI, tmp_path))).tobytes()
    for index in range(0, max(len(alice), len(bob)), 1600):  # both parties at once
        client.send_rtp(ports["1"], alice[index : index + 1600], ssrc=1, speed=4,
                        seq0=index // 160)
        client.send_rtp(ports["3"], bob[index : index + 1600], ssrc=3, speed=4,
                        seq0=index // 160)
    client.in_dialog("BYE", "rec-2", "2000", to_tag(answer), 2)
    [summary] = run.wait_for("summary", timeout=180)
    assert run.interrupt() == 0

    assert summary["reason"] == "hangup" and summary["agent"] == "bob"
    assert wer(references[LIBRI]["text"], text_of(run.seen, summary["call"], "agent")) <= 0.2
    assert wer(references[AUSTEN]["text"],
               text_of(run.seen, summary["call"], "customer")) <= 0.2
