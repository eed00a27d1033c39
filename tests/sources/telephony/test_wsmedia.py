"""Websocket media streams (`ws://`): real websocket connections replaying sessions shaped
like the platforms' published example messages (Twilio Media Streams, Genesys AudioHook,
FreeSWITCH mod_audio_fork/mod_audio_stream), with real speech."""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from qa._native import g711
from qa.sources.wsmedia import WsMediaOptions, WsMediaSource
from qa.sources.wsmedia.formats import twilio_signature
from qa.textnorm import wer
from qa.types import Speaker
from tests.pipeline.conftest import no_overload, text_of
from tests.sources.telephony.conftest import RecordingSink, clip_8k, read_pcm

LIBRI = "en_librispeech_1995-1837-0001.wav"
AUSTEN = "en_librivox_austen_0870.wav"
SID = "MZ18ad3ab5a668481ce02b83e7395059f0"  # shaped like Twilio's ids (MZ + 32 hex digits)
CALL_SID = "CA7a2f8c07b6a0e2c3fbd4b1d5b4c0f9a1"


class Running:
    def __init__(self, **options) -> None:
        self.source = WsMediaSource(WsMediaOptions(host="127.0.0.1", port=0, **options))
        self.sink = RecordingSink()
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.source.run,
                                       args=(self.sink, self.stop_event), daemon=True)
        self.thread.start()
        self.url = f"ws://127.0.0.1:{self.source.port}"

    def wait_ended(self, count: int, timeout: float = 10) -> list[tuple[str, str]]:
        deadline = time.monotonic() + timeout
        while len(self.sink.ended) < count:
            assert time.monotonic() < deadline, (self.sink.order, self.source.stats())
            time.sleep(0.05)
        return list(self.sink.ended)

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(10)
        assert not self.thread.is_alive()


@pytest.fixture
def server():
    started: list[Running] = []

    def start(**options) -> Running:
        started.append(Running(**options))
        return started[-1]

    yield start
    for running in started:
        if running.thread.is_alive():
            running.stop()


def ulaw_roundtrip(pcm: np.ndarray) -> np.ndarray:
    return g711.ulaw_decode(g711.ulaw_encode(pcm))


def twilio_session(ws, agent: str, tracks: dict[str, np.ndarray], *, dtmf: str = "",
                   extra: list[str] = ()) -> None:
    """Plays a Twilio Media Streams session: connected, start, 20 ms media messages of each
    track in turn (timestamps in ms from the start), an optional key press, stop."""
    ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
    ws.send(json.dumps({
        "event": "start", "sequenceNumber": "1", "streamSid": SID,
        "start": {"accountSid": "AC" + "0" * 32, "streamSid": SID, "callSid": CALL_SID,
                  "tracks": list(tracks),
                  "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000,
                                  "channels": 1},
                  "customParameters": {"agent": agent, "FirstName": "Jane"}},
    }))
    seq = 2
    longest = max(len(pcm) for pcm in tracks.values())
    for index in range(0, longest, 160):
        for track, pcm in tracks.items():
            if index >= len(pcm):
                continue
            payload = base64.b64encode(g711.ulaw_encode(pcm[index : index + 160])).decode()
            ws.send(json.dumps({"event": "media", "sequenceNumber": str(seq), "streamSid": SID,
                                "media": {"track": track, "chunk": str(index // 160 + 1),
                                          "timestamp": str(index // 8), "payload": payload}}))
            seq += 1
        if index == 160 * 10:
            for message in extra:
                ws.send(message)
    if dtmf:
        ws.send(json.dumps({"event": "dtmf", "streamSid": SID, "sequenceNumber": str(seq),
                            "dtmf": {"track": "inbound_track", "digit": dtmf}}))
    ws.send(json.dumps({"event": "stop", "sequenceNumber": str(seq + 1), "streamSid": SID,
                        "stop": {"accountSid": "AC" + "0" * 32, "callSid": CALL_SID}}))


def test_twilio_stream_signed_with_tracks_dtmf_and_bad_messages(server, shared_audio: Path,
                                                               tmp_path: Path):
    """A signed Twilio stream: inbound = customer, outbound = agent, each exactly its audio;
    the agent from a <Parameter>; a key press; bad messages counted; stop ends the call. A
    stream with a wrong signature is refused."""
    running = server(twilio_token="auth-token-123")
    customer = read_pcm(clip_8k(shared_audio, AUSTEN, tmp_path))[:16000]
    agent = read_pcm(clip_8k(shared_audio, LIBRI, tmp_path))[:12000]
    signed_url = f"wss://127.0.0.1:{running.source.port}/twilio"
    with pytest.raises(InvalidStatus) as refused:
        connect(running.url + "/twilio",
                additional_headers={"X-Twilio-Signature": twilio_signature("wrong", signed_url)})
    assert refused.value.response.status_code == 403
    bad = ["not json", json.dumps({"event": "media", "streamSid": SID,
                                   "media": {"track": "inbound", "timestamp": "0",
                                             "payload": "!!!"}}),
           json.dumps({"event": "teleport", "streamSid": SID})]
    with connect(running.url + "/twilio", additional_headers={
            "X-Twilio-Signature": twilio_signature("auth-token-123", signed_url)}) as ws:
        twilio_session(ws, "a-77", {"inbound": customer, "outbound": agent}, dtmf="1",
                       extra=bad)
        [(call_id, reason)] = running.wait_ended(1)
    running.stop()

    assert reason == "hangup"
    [info] = running.sink.started
    assert info.agent_id == "a-77" and info.channels == (Speaker.CUSTOMER, Speaker.AGENT)
    assert info.source.endswith("/twilio")
    for speaker, pcm in ((Speaker.CUSTOMER, customer), (Speaker.AGENT, agent)):
        first, heard = running.sink.channel_audio(call_id, speaker)
        assert first == 0 and np.array_equal(heard, ulaw_roundtrip(pcm))
    [(_, channel, digit, at, _)] = running.sink.keys
    assert (channel, digit) == (Speaker.CUSTOMER, "1") and at == pytest.approx(2.0)
    stats = running.source.stats()
    assert stats["malformed_messages"] == 3 and stats["unauthorised"] == 1 and stats["calls"] == 1


def audiohook_open(session: str) -> dict:
    """An `open` message as the AudioHook protocol documentation shows it."""
    return {
        "version": "2", "id": session, "type": "open", "seq": 1, "serverseq": 0,
        "position": "PT0S",
        "parameters": {
            "organizationId": "d7934305-0972-4844-938e-9060eef73d05",
            "conversationId": "090eaa2f-72fa-480a-83e0-8667ff89c0ec",
            "participant": {"id": "883efee8-3d6c-4537-b500-6d7ca4b92fa0",
                            "ani": "+1-555-555-1234", "aniName": "John Doe",
                            "dnis": "+1-800-555-6789"},
            "media": [
                {"type": "audio", "format": "PCMU", "channels": ["external", "internal"],
                 "rate": 8000},
                {"type": "audio", "format": "PCMU", "channels": ["external"], "rate": 8000},
                {"type": "audio", "format": "PCMU", "channels": ["internal"], "rate": 8000},
            ],
            "language": "en-US",
            "inputVariables": {"agent": "a-204"},
        },
    }


def test_audiohook_session_handshake_pause_and_close(server, shared_audio: Path,
                                                     tmp_path: Path):
    """open -> opened (stereo PCMU chosen), ping -> pong, stereo audio (external = customer,
    internal = agent), a pause that becomes silence on both channels, a key, close ->
    closed. A wrong API key is refused; audio before open and a wrong version are counted."""
    running = server(audiohook_key="key-xyz")
    customer = read_pcm(clip_8k(shared_audio, AUSTEN, tmp_path))[:8000]
    agent = read_pcm(clip_8k(shared_audio, LIBRI, tmp_path))[:8000]
    session = str(uuid.uuid4())
    with pytest.raises(InvalidStatus):
        connect(running.url + "/audiohook", additional_headers={"X-API-KEY": "nope"})
    headers = {"X-API-KEY": "key-xyz", "Audiohook-Session-Id": session,
               "Audiohook-Organization-Id": "d7934305-0972-4844-938e-9060eef73d05"}
    with connect(running.url + "/audiohook", additional_headers=headers) as ws:
        ws.send(bytes(320))  # audio before open: counted, dropped
        ws.send(json.dumps(audiohook_open(session)))
        opened = json.loads(ws.recv())
        assert opened["type"] == "opened" and opened["id"] == session
        assert opened["clientseq"] == 1 and opened["seq"] == 1
        assert opened["parameters"]["media"] == [audiohook_open(session)["parameters"]["media"][0]]
        ws.send(json.dumps({"version": "2", "id": session, "type": "ping", "seq": 2,
                            "serverseq": 1, "position": "PT0S", "parameters": {}}))
        pong = json.loads(ws.recv())
        assert pong["type"] == "pong" and pong["clientseq"] == 2 and pong["seq"] == 2
        stereo = np.empty(2 * 8000, np.int16)
        stereo[0::2], stereo[1::2] = customer, agent
        codes = g711.ulaw_encode(stereo).tobytes()
        for index in range(0, len(codes) // 2, 1600):  # 100 ms frames, as Genesys sends
            ws.send(codes[index : index + 1600])
        ws.send(json.dumps({"version": "3", "id": session, "type": "ping", "seq": 3}))
        ws.send(json.dumps({"version": "2", "id": session, "type": "paused", "seq": 3,
                            "serverseq": 2, "position": "PT0.5S", "parameters": {}}))
        time.sleep(0.4)
        ws.send(json.dumps({"version": "2", "id": session, "type": "resumed", "seq": 4,
                            "serverseq": 2, "position": "PT0.5S", "parameters": {}}))
        for index in range(len(codes) // 2, len(codes), 1600):
            ws.send(codes[index : index + 1600])
        ws.send(json.dumps({"version": "2", "id": session, "type": "dtmf", "seq": 5,
                            "serverseq": 2, "position": "PT1S", "parameters": {"digit": "9"}}))
        ws.send(json.dumps({"version": "2", "id": session, "type": "close", "seq": 6,
                            "serverseq": 2, "position": "PT1S",
                            "parameters": {"reason": "end"}}))
        closed = json.loads(ws.recv())
        assert closed["type"] == "closed" and closed["clientseq"] == 6
    [(call_id, reason)] = running.wait_ended(1)
    running.stop()

    assert reason == "hangup"
    [info] = running.sink.started
    assert info.agent_id == "a-204" and info.channels == (Speaker.CUSTOMER, Speaker.AGENT)
    for speaker, pcm in ((Speaker.CUSTOMER, customer), (Speaker.AGENT, agent)):
        _, heard = running.sink.channel_audio(call_id, speaker)
        half = len(pcm) // 2
        expected = ulaw_roundtrip(pcm)
        assert np.array_equal(heard[:half], expected[:half])
        gap = len(heard) - len(pcm)  # the pause, as silence, between the two halves
        assert 0.35 * 8000 <= gap <= 0.8 * 8000 and not heard[half : half + gap].any()
        assert np.array_equal(heard[half + gap :], expected[half:])
    assert [(k[1], k[2]) for k in running.sink.keys] == [(Speaker.CUSTOMER, "9")]
    stats = running.source.stats()
    assert stats["malformed_messages"] == 2 and stats["unauthorised"] == 1


def test_freeswitch_streams_concurrently_with_limits(server, shared_audio: Path,
                                                     tmp_path: Path):
    """mod_audio_fork stereo L16 (caller left = customer, callee right = agent) with JSON
    metadata naming the agent, and a mono 16 kHz mod_audio_stream at the same time; an
    oversized message closes only its own connection; a bad token is refused."""
    running = server(stream_token="t0k", max_message=4096)
    customer = read_pcm(clip_8k(shared_audio, AUSTEN, tmp_path))[:8000]
    agent = read_pcm(clip_8k(shared_audio, LIBRI, tmp_path))[:8000]
    with pytest.raises(InvalidStatus):
        connect(running.url + "/freeswitch?token=bad")
    streams = contextlib.ExitStack()
    stereo_ws = streams.enter_context(
        connect(running.url + "/freeswitch?mix=stereo&rate=8000&token=t0k"))
    mono_ws = streams.enter_context(connect(running.url + "/freeswitch?rate=16000",
                                            additional_headers={"Authorization": "Bearer t0k"}))
    big_ws = streams.enter_context(connect(running.url + "/freeswitch?token=t0k"))
    stereo_ws.send(json.dumps({"agent": "a-8", "uuid": str(uuid.uuid4())}))
    stereo = np.empty(2 * 8000, np.int16)
    stereo[0::2], stereo[1::2] = customer, agent
    data = stereo.astype("<i2").tobytes()
    mono = np.repeat(customer, 2).astype("<i2").tobytes()
    big_ws.send(bytes(320))
    big_ws.send(bytes(8000))
    with pytest.raises(ConnectionClosed):
        big_ws.recv(timeout=5)
    for index in range(0, len(data), 640):  # 20 ms of stereo 8 kHz
        stereo_ws.send(data[index : index + 640])
        mono_ws.send(mono[index : index + 640])
    streams.close()
    ended = dict(running.wait_ended(3))
    running.stop()

    calls = {info.call_id: info for info in running.sink.started}
    by_channels = {info.channels: info for info in calls.values()}
    fork = by_channels[(Speaker.CUSTOMER, Speaker.AGENT)]
    assert fork.agent_id == "a-8" and ended[fork.call_id] == "hangup"
    for speaker, pcm in ((Speaker.CUSTOMER, customer), (Speaker.AGENT, agent)):
        _, heard = running.sink.channel_audio(fork.call_id, speaker)
        assert np.array_equal(heard, pcm)
    mono_calls = [i for i in calls.values() if i.channels == (Speaker.CUSTOMER,)]
    [stream] = [i for i in mono_calls if i.sample_rate == 16000]
    parts = [c for c in running.sink.chunks if c.call_id == stream.call_id]
    assert np.array_equal(np.concatenate([c.pcm for c in parts]), np.repeat(customer, 2))
    assert ended[stream.call_id] == "hangup"
    assert "error: message too large" in ended.values()
    stats = running.source.stats()
    assert stats["oversized"] == 1 and stats["unauthorised"] == 1 and stats["calls"] == 3


@pytest.mark.slow
def test_qa_run_transcribes_audiohook_and_freeswitch_streams(qa_run, shared_audio: Path,
                                                             references: dict, tmp_path: Path):
    """`qa run --source ws://...`: an AudioHook session and a mod_audio_fork stereo stream at
    once, both authenticated; each party's speech lands on its own call and channel."""
    run = qa_run("--source", "ws://127.0.0.1:0?audiohook_key=k1&token=t1", "--language", "en",
                 *no_overload(tmp_path))
    [name] = run.wait_for("ready", timeout=120)[0]["sources"]
    url = name  # ws://127.0.0.1:PORT
    clips = {name: read_pcm(clip_8k(shared_audio, name, tmp_path))
             for name in (AUSTEN, LIBRI, "en_jfk_inaugural_16k_mono.wav")}
    jfk = clips["en_jfk_inaugural_16k_mono.wav"]

    def stereo(left: np.ndarray, right: np.ndarray) -> np.ndarray:
        both = np.zeros(2 * max(len(left), len(right)), np.int16)
        both[0 : 2 * len(left) : 2], both[1 : 2 * len(right) : 2] = left, right
        return both

    def audiohook() -> None:
        session = str(uuid.uuid4())
        with connect(url + "/audiohook", additional_headers={"X-API-KEY": "k1"}) as ws:
            ws.send(json.dumps(audiohook_open(session)))
            assert json.loads(ws.recv())["type"] == "opened"
            codes = g711.ulaw_encode(stereo(clips[AUSTEN], clips[LIBRI])).tobytes()
            for index in range(0, len(codes), 1600):
                ws.send(codes[index : index + 1600])
                time.sleep(0.1 / 4)
            ws.send(json.dumps({"version": "2", "id": session, "type": "close", "seq": 2,
                                "position": "PT10S", "parameters": {"reason": "end"}}))
            assert json.loads(ws.recv())["type"] == "closed"

    def freeswitch() -> None:
        with connect(url + "/freeswitch?mix=stereo&token=t1") as ws:
            ws.send(json.dumps({"agent": "a-61"}))
            data = stereo(np.zeros(8000, np.int16), jfk).astype("<i2").tobytes()
            for index in range(0, len(data), 640):
                ws.send(data[index : index + 640])
                time.sleep(0.02 / 4)

    senders = [threading.Thread(target=audiohook), threading.Thread(target=freeswitch)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    summaries = {s["agent"]: s for s in run.wait_for("summary", timeout=180, count=2)}
    assert run.interrupt() == 0

    hook, fork = summaries["a-204"], summaries["a-61"]
    assert hook["reason"] == fork["reason"] == "hangup"
    assert wer(references[AUSTEN]["text"], text_of(run.seen, hook["call"], "customer")) <= 0.2
    assert wer(references[LIBRI]["text"], text_of(run.seen, hook["call"], "agent")) <= 0.2
    jfk_text = references["en_jfk_inaugural_16k_mono.wav"]["text"]
    assert wer(jfk_text, text_of(run.seen, fork["call"], "agent")) <= 0.2
    assert not text_of(run.seen, fork["call"], "customer")
