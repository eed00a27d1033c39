"""Asterisk AudioSocket (`audiosocket://`): real TCP connections sending the frames Asterisk's
`res_audiosocket` sends (UUID, 320-byte slin frames, DTMF, hangup, error), with real speech."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from qa.sources.audiosocket import AudioSocketOptions, AudioSocketSource
from qa.sources.audiosocket.frames import FrameReader, Kind, frame
from qa.textnorm import wer
from qa.types import Speaker
from tests.pipeline.conftest import no_overload, text_of
from tests.sources.telephony.conftest import RecordingSink, clip_8k, read_pcm

LIBRI = "en_librispeech_1995-1837-0001.wav"
AUSTEN = "en_librivox_austen_0870.wav"


class Running:
    def __init__(self, **options) -> None:
        self.source = AudioSocketSource(AudioSocketOptions(host="127.0.0.1", port=0, **options))
        self.sink = RecordingSink()
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.source.run,
                                       args=(self.sink, self.stop_event), daemon=True)
        self.thread.start()

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


def leg(port: int, call: uuid.UUID) -> socket.socket:
    conn = socket.create_connection(("127.0.0.1", port), timeout=5)
    conn.sendall(frame(Kind.UUID, call.bytes))
    return conn


def stream(conn: socket.socket, pcm: np.ndarray, speed: float = 8.0) -> None:
    """Sends `pcm` as Asterisk does: 20 ms (320-byte) slin frames, `speed` x real time."""
    data = pcm.astype("<i2").tobytes()
    for index in range(0, len(data), 320):
        conn.sendall(frame(Kind.SLIN, data[index : index + 320]))
        time.sleep(0.02 / speed)


def test_frame_reader_cuts_a_stream_anywhere_and_skips_oversized_frames():
    data = (frame(Kind.UUID, bytes(16)) + frame(Kind.SLIN, bytes(range(200)) * 3)
            + frame(Kind.SLIN, bytes(2000)) + frame(0x42, b"x") + frame(Kind.HANGUP))
    reader = FrameReader(max_payload=1000)
    frames = []
    for index in range(0, len(data), 7):  # TCP may deliver any split
        frames += reader.feed(data[index : index + 7])
    assert [f.kind for f in frames] == [Kind.UUID, Kind.SLIN, 0x42, Kind.HANGUP]
    assert frames[1].payload == bytes(range(200)) * 3
    assert reader.skipped == 1 and reader.pending == 0


def test_two_legs_of_one_uuid_are_one_call(server, shared_audio: Path, tmp_path: Path):
    """The first leg of a UUID is the customer, the second the agent; each channel carries
    exactly its leg's samples; a DTMF frame is reported; the call ends when both hang up."""
    running = server(agent_id="a-311")
    port = running.source.ports[0]
    call = uuid.uuid4()
    customer_pcm = read_pcm(clip_8k(shared_audio, AUSTEN, tmp_path))[:24000]
    agent_pcm = read_pcm(clip_8k(shared_audio, LIBRI, tmp_path))[:24000]
    customer = leg(port, call)
    time.sleep(0.1)
    agent = leg(port, call)
    threads = [threading.Thread(target=stream, args=(customer, customer_pcm)),
               threading.Thread(target=stream, args=(agent, agent_pcm))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    customer.sendall(frame(Kind.DTMF, b"7"))
    customer.sendall(frame(Kind.HANGUP))
    agent.sendall(frame(Kind.HANGUP))
    [(call_id, reason)] = running.wait_ended(1)
    running.stop()

    assert reason == "hangup"
    [info] = running.sink.started
    assert info.call_id == call_id and info.agent_id == "a-311"
    assert info.channels == (Speaker.AGENT, Speaker.CUSTOMER)
    first, heard = running.sink.channel_audio(call_id, Speaker.CUSTOMER)
    assert first == 0 and np.array_equal(heard, customer_pcm)
    first, heard = running.sink.channel_audio(call_id, Speaker.AGENT)
    start = len(heard) - len(agent_pcm)
    assert first == 0 and 0 <= start < 8000 * 0.5  # joined about 0.1 s later
    assert not heard[:start].any() and np.array_equal(heard[start:], agent_pcm)
    [(_, channel, digit, at, _)] = running.sink.keys
    assert (channel, digit) == (Speaker.CUSTOMER, "7") and at == pytest.approx(3.0)
    stats = running.source.stats()
    assert stats["legs"] == 2 and stats["calls"] == 1 and stats["hangups"] == 2
    assert stats["malformed_frames"] == 0


def test_port_pair_error_frame_and_timeout(server):
    """With two ports the port names the speaker; an error frame ends its call with the code;
    a call whose legs go quiet ends with `timeout`."""
    running = server(customer_port=0, timeout_s=0.5)
    agent_port, customer_port = running.source.ports
    first, second = uuid.uuid4(), uuid.uuid4()
    a = leg(customer_port, first)
    stream(a, np.full(1600, 100, np.int16))
    a.sendall(frame(Kind.ERROR, b"\x02"))
    b = leg(agent_port, second)
    stream(b, np.full(800, 100, np.int16))
    ended = dict(running.wait_ended(2, timeout=5))
    running.stop()

    calls = {info.call_id: info for info in running.sink.started}
    assert len(calls) == 2
    assert sorted(ended.values()) == ["error: AudioSocket error 0x02", "timeout"]
    for call_id, reason in ended.items():
        speaker = Speaker.CUSTOMER if reason.startswith("error") else Speaker.AGENT
        running.sink.channel_audio(call_id, speaker)  # audio on the port's channel
    assert running.source.stats()["timeouts"] == 1


def test_malformed_frames_are_counted_and_never_stop_other_legs(server):
    """A bad UUID, audio before the UUID, odd-length audio, an unknown kind, an oversized
    frame, a connection that never names its call, one cut inside a frame: all counted; a
    good call on another connection goes on to a clean end."""
    running = server(uuid_timeout_s=0.3, max_payload=1000)
    port = running.source.ports[0]
    good = leg(port, uuid.uuid4())
    bad_uuid = socket.create_connection(("127.0.0.1", port))
    bad_uuid.sendall(frame(Kind.UUID, b"short"))
    assert bad_uuid.recv(10) == b""  # closed: it can never join a call
    early = socket.create_connection(("127.0.0.1", port))
    early.sendall(frame(Kind.SLIN, bytes(320)))
    silent = socket.create_connection(("127.0.0.1", port))
    assert silent.recv(10) == b""  # closed after uuid_timeout_s
    stream(good, np.full(800, 50, np.int16))
    good.sendall(frame(Kind.SLIN, bytes(321)) + frame(0x42, b"?") + frame(Kind.SLIN, bytes(5000)))
    stream(good, np.full(800, 60, np.int16))
    cut = leg(port, uuid.uuid4())
    cut.sendall(frame(Kind.SLIN, bytes(320))[:100])
    cut.close()
    good.sendall(frame(Kind.HANGUP))
    ended = running.wait_ended(1)
    time.sleep(0.3)
    running.stop()

    assert [reason for _, reason in ended] == ["hangup"]  # the cut leg never sent audio
    stats = running.source.stats()
    # bad UUID, audio before UUID, odd length, no UUID (twice: early and silent), cut frame
    assert stats["malformed_frames"] == 6
    assert stats["oversized"] == 1 and stats["unknown_kind"] == 1
    good_call = running.sink.started[0].call_id
    _, heard = running.sink.channel_audio(good_call, Speaker.CUSTOMER)
    assert len(heard) == 800 + 160 + 800  # the odd byte is dropped


@pytest.mark.slow
def test_qa_run_transcribes_an_audiosocket_call(qa_run, shared_audio: Path, references: dict,
                                                tmp_path: Path):
    """`qa run --source audiosocket://...`: a two-leg call of real speech is transcribed per
    party and ends with `hangup`."""
    run = qa_run("--source", "audiosocket://127.0.0.1:0", "--language", "en",
                 "--agent", "a-9", *no_overload(tmp_path))
    [name] = run.wait_for("ready", timeout=120)[0]["sources"]
    port = int(name.rpartition(":")[2])
    call = uuid.uuid4()
    customer, agent = leg(port, call), leg(port, call)
    threads = [
        threading.Thread(target=stream, args=(customer, read_pcm(
            clip_8k(shared_audio, AUSTEN, tmp_path)), 4.0)),
        threading.Thread(target=stream, args=(agent, read_pcm(
            clip_8k(shared_audio, LIBRI, tmp_path)), 4.0)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for conn in (customer, agent):
        conn.sendall(frame(Kind.HANGUP))
    [summary] = run.wait_for("summary", timeout=180)
    assert run.interrupt() == 0

    assert summary["reason"] == "hangup" and summary["agent"] == "a-9"
    assert wer(references[LIBRI]["text"], text_of(run.seen, summary["call"], "agent")) <= 0.2
    assert wer(references[AUSTEN]["text"],
               text_of(run.seen, summary["call"], "customer")) <= 0.2
