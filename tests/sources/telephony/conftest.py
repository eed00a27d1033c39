"""Helpers for the telephony tests: a real SIP client (baresip), a hand-made SIP client on raw
sockets, a running `SipSource`, 8 kHz clips made from the shared audio."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import threading
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from qa.sources.sip import SipOptions, SipSource
from tests.pipeline.conftest import qa_run  # noqa: F401  (the `qa run` fixture, reused)
from tests.sources.rtp.conftest import RecordingSink, rtp, telephone_event  # noqa: F401


def free_port(kind: int = socket.SOCK_DGRAM, *, pair: bool = False) -> int:
    """A free port on 127.0.0.1 (with `pair`, PORT+1 is free too: baresip binds it for TLS)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, kind) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if not pair:
            return port
        with contextlib.suppress(OSError), socket.socket() as a, socket.socket() as b:
            a.bind(("127.0.0.1", port))
            b.bind(("127.0.0.1", port + 1))
            return port
    raise RuntimeError("no free port pair")


def clip_8k(shared_audio: Path, name: str, out: Path) -> Path:
    """The shared clip `name` as 8 kHz mono 16-bit PCM (what baresip's aufile plays)."""
    path = out / (Path(name).stem + "_8k.wav")
    if not path.exists():
        subprocess.run(["sox", str(shared_audio / name), "-r", "8000", "-c", "1", "-b", "16",
                        "-e", "signed-integer", str(path)], check=True)
    return path


def read_pcm(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


class Baresip:
    """One baresip process that dials a SIP URI and streams a WAV file, then hangs up.

    Config as in docs/design.md ("A real SIP client"): it listens on 127.0.0.1:PORT (PORT+1 is
    its TLS port), plays `wav` as its microphone, and hangs up at the end of the file.
    """

    def __init__(self, directory: Path, wav: Path, user: str) -> None:
        if shutil.which("baresip") is None:
            raise RuntimeError("baresip not found (Debian package: baresip-core; "
                               "tools/bootstrap-system.sh installs it)")
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port(pair=True)
        (directory / "config").write_text(
            "module_path /usr/lib/baresip/modules\n"
            f"sip_listen 127.0.0.1:{self.port}\n"
            "module g711.so\nmodule aufile.so\n"
            "module_app account.so\nmodule_app menu.so\n"
            f"audio_source aufile,{wav}\n"
            f"audio_player aufile,{directory / 'heard.wav'}\n"
        )
        (directory / "accounts").write_text(f"<sip:{user}@127.0.0.1:{self.port}>;regint=0\n")
        self.proc: subprocess.Popen | None = None

    def dial(self, uri: str) -> None:
        self.proc = subprocess.Popen(
            ["baresip", "-f", str(self.dir), "-e", f"/dial {uri}"],
            stdin=subprocess.DEVNULL, stdout=(self.dir / "log").open("w"),
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        return (self.dir / "log").read_text(errors="replace")

    def wait_hangup(self, timeout: float) -> None:
        """Waits for baresip to say the call ended (it keeps running afterwards)."""
        deadline = time.monotonic() + timeout
        while "terminated" not in self.log():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"baresip call did not end:\n{self.log()}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def baresip(tmp_path: Path) -> Iterator:
    """`baresip(wav, user)` makes a client; every one is stopped after the test."""
    made: list[Baresip] = []

    def make(wav: Path, user: str) -> Baresip:
        client = Baresip(tmp_path / f"baresip-{len(made)}", wav, user)
        made.append(client)
        return client

    yield make
    for client in made:
        client.stop()


class Running:
    """A `SipSource` running in a thread with a `RecordingSink`."""

    def __init__(self, options: SipOptions) -> None:
        self.source = SipSource(options)
        self.sink = RecordingSink()
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.source.run, args=(self.sink, self.stop_event),
                                       daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.source.port

    def wait_ended(self, count: int, timeout: float) -> list[tuple[str, str]]:
        deadline = time.monotonic() + timeout
        while len(self.sink.ended) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.sink.ended)} of {count} calls ended: "
                                     f"{self.sink.order} {self.source.stats()}")
            time.sleep(0.05)
        return list(self.sink.ended)

    def wait_packets(self, count: int, timeout: float = 30) -> None:
        """Waits until the source has read `count` RTP datagrams, so that a BYE or a stop sent
        next finds them received (a fixed pause is too short when the source waits for a
        core)."""
        deadline = time.monotonic() + timeout
        while self.source.stats()["rtp_packets"] < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.source.stats()['rtp_packets']} of {count} RTP "
                                     f"packets read: {self.source.stats()}")
            time.sleep(0.02)

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(10)
        assert not self.thread.is_alive(), "SipSource.run did not return after stop"


@pytest.fixture
def sip_source() -> Iterator:
    """`sip_source(**options)` starts a `SipSource` on 127.0.0.1, port chosen by the system."""
    started: list[Running] = []

    def start(**options) -> Running:
        running = Running(SipOptions(host="127.0.0.1", port=0, **options))
        started.append(running)
        return running

    yield start
    for running in started:
        if running.thread.is_alive():
            running.stop()


class SipClient:
    """A hand-made SIP caller on raw sockets (UDP or TCP), for what baresip cannot do: extra
    headers (to join legs), DTMF, malformed messages. It sends real SIP and real RTP to
    127.0.0.1 only."""

    def __init__(self, port: int, *, tcp: bool = False) -> None:
        self.server = ("127.0.0.1", port)
        self.tcp = tcp
        if tcp:
            self.sock = socket.create_connection(self.server, timeout=5)
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind(("127.0.0.1", 0))
            self.sock.settimeout(5)
        self.local = self.sock.getsockname()
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind(("127.0.0.1", 0))
        #: RTP packets `send_rtp` sent.
        self.rtp_sent = 0
        self._stream = b""

    def send(self, data: bytes) -> None:
        if self.tcp:
            self.sock.sendall(data)
        else:
            self.sock.sendto(data, self.server)

    def receive(self) -> bytes:
        """The next whole SIP message from the server."""
        if not self.tcp:
            return self.sock.recv(65535)
        while True:
            head, sep, rest = self._stream.partition(b"\r\n\r\n")
            if sep:
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                if len(rest) >= length:
                    self._stream = rest[length:]
                    return head + sep + rest[:length]
            chunk = self.sock.recv(65535)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self._stream += chunk

    def invite(self, call_id: str, user: str, *, headers: str = "", sdp: str | None = None,
               cseq: int = 1, to_tag: str = "", send: bool = True) -> bytes:
        transport = "TCP" if self.tcp else "UDP"
        host, port = self.local
        if sdp is None:
            sdp = (f"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                   f"m=audio {self.rtp.getsockname()[1]} RTP/AVP 8 0 101\r\n"
                   "a=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n"
                   "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n")
        body = sdp.encode()
        to = "<sip:qa@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
        message = (
            f"INVITE sip:qa@127.0.0.1:{self.server[1]} SIP/2.0\r\n"
            f"Via: SIP/2.0/{transport} {host}:{port};branch=z9hG4bK{call_id}{cseq}\r\n"
            f"From: <sip:{user}@127.0.0.1>;tag=f{call_id}\r\nTo: {to}\r\n"
            f"Call-ID: {call_id}\r\nCSeq: {cseq} INVITE\r\nMax-Forwards: 70\r\n"
            f"Contact: <sip:{user}@{host}:{port};transport={transport.lower()}>\r\n{headers}"
            f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        if send:
            self.send(message)
        return message

    def in_dialog(self, method: str, call_id: str, user: str, to_tag: str, cseq: int) -> None:
        transport = "TCP" if self.tcp else "UDP"
        host, port = self.local
        self.send((
            f"{method} sip:qa@127.0.0.1:{self.server[1]} SIP/2.0\r\n"
            f"Via: SIP/2.0/{transport} {host}:{port};branch=z9hG4bK{method}{call_id}{cseq}\r\n"
            f"From: <sip:{user}@127.0.0.1>;tag=f{call_id}\r\n"
            f"To: <sip:qa@127.0.0.1>;tag={to_tag}\r\nCall-ID: {call_id}\r\n"
            f"CSeq: {cseq} {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        ).encode())

    def send_rtp(self, port: int, pcm_bytes: bytes, *, pt: int = 0, ssrc: int = 0x1234,
                 speed: float = 4.0, seq0: int = 0, ts0: int | None = None) -> None:
        """Sends G.711 bytes as 20 ms packets to 127.0.0.1:`port`, `speed` x real time
        (timestamps from `ts0`, by default `seq0` packets' worth)."""
        ts0 = 160 * seq0 if ts0 is None else ts0
        for index in range(0, len(pcm_bytes), 160):
            packet = rtp(seq0 + index // 160, ts0 + index, ssrc,
                         pcm_bytes[index : index + 160], pt)
            self.rtp.sendto(packet, ("127.0.0.1", port))
            self.rtp_sent += 1
            time.sleep(0.02 / speed)

    def close(self) -> None:
        self.sock.close()
        self.rtp.close()


def header(message: bytes, name: str) -> str:
    for line in message.split(b"\r\n\r\n")[0].decode().split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return ""


def answered_port(message: bytes) -> int:
    """The RTP port an SDP answer names (its first accepted m=audio line)."""
    for line in message.split(b"\r\n\r\n", 1)[1].decode().splitlines():
        if line.startswith("m=audio ") and line.split()[1] != "0":
            return int(line.split()[1])
    raise AssertionError(f"no accepted audio line in {message!r}")


def to_tag(message: bytes) -> str:
    return header(message, "To").partition(";tag=")[2].split(";")[0]
