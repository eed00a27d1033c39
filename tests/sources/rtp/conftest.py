"""Helpers for the RTP source tests: a recording sink, a packet builder, a running source."""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pytest

from qa.sources.rtp import RtpOptions, RtpSource
from qa.types import AudioChunk, CallInfo, Speaker


@dataclass
class RecordingSink:
    """A `SourceSink` that keeps everything it is given, in order, thread-safely."""

    started: list[CallInfo] = field(default_factory=list)
    chunks: list[AudioChunk] = field(default_factory=list)
    keys: list[tuple[str, Speaker, str, float, float]] = field(default_factory=list)
    ended: list[tuple[str, str]] = field(default_factory=list)
    order: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def call_started(self, call: CallInfo) -> None:
        with self.lock:
            self.started.append(call)
            self.order.append(f"start {call.call_id}")

    def audio(self, chunk: AudioChunk) -> None:
        with self.lock:
            assert f"start {chunk.call_id}" in self.order, "audio before call_started"
            self.chunks.append(chunk)

    def dtmf(
        self, call_id: str, channel: Speaker, digit: str, time: float, duration: float
    ) -> None:
        with self.lock:
            self.keys.append((call_id, channel, digit, time, duration))

    def call_ended(self, call_id: str, reason: str) -> None:
        with self.lock:
            self.ended.append((call_id, reason))
            self.order.append(f"end {call_id}")

    def channel_audio(self, call_id: str, channel: Speaker) -> tuple[int, np.ndarray]:
        """The channel's first sample index and its samples, checked to be one gapless run."""
        with self.lock:
            parts = [c for c in self.chunks if c.call_id == call_id and c.channel == channel]
        assert parts, f"no audio for {call_id} {channel}"
        for before, after in zip(parts, parts[1:], strict=False):
            assert after.first_sample == before.first_sample + len(before.pcm)
            assert after.sample_rate == before.sample_rate == 8000
        return parts[0].first_sample, np.concatenate([c.pcm for c in parts])


def rtp(
    seq: int,
    ts: int,
    ssrc: int,
    payload: bytes,
    pt: int = 0,
    *,
    marker: bool = False,
    csrcs: tuple[int, ...] = (),
    extension: tuple[int, bytes] | None = None,
    padding: int = 0,
    version: int = 2,
) -> bytes:
    """Builds an RTP packet by hand (RFC 3550 5.1); `padding` octets are appended if > 0."""
    b0 = (version << 6) | (0x20 if padding else 0) | (0x10 if extension else 0) | len(csrcs)
    out = struct.pack("!BBHII", b0, (0x80 if marker else 0) | pt, seq & 0xFFFF,
                      ts & 0xFFFFFFFF, ssrc)
    out += b"".join(struct.pack("!I", c) for c in csrcs)
    if extension:
        profile, data = extension
        out += struct.pack("!HH", profile, len(data) // 4) + data
    out += payload
    if padding:
        out += bytes(padding - 1) + bytes([padding])
    return out


def telephone_event(event: int, end: bool, duration: int, volume: int = 10) -> bytes:
    """An RFC 4733 event payload."""
    return struct.pack("!BBH", event, (0x80 if end else 0) | volume, duration)


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


class Runner:
    """Runs `RtpSource`s in threads for a test; `stop` ends one, `close` ends them all."""

    def __init__(self) -> None:
        self._threads: dict[int, tuple[threading.Event, threading.Thread]] = {}

    def __call__(self, options: RtpOptions, sink: RecordingSink) -> RtpSource:
        source = RtpSource(options)
        stop = threading.Event()
        thread = threading.Thread(target=source.run, args=(sink, stop), daemon=True)
        thread.start()
        self._threads[id(source)] = (stop, thread)
        return source

    def stop(self, source: RtpSource) -> None:
        stop, thread = self._threads.pop(id(source))
        stop.set()
        thread.join(5)
        assert not thread.is_alive(), "RtpSource.run did not return after stop"

    def close(self) -> None:
        for key in list(self._threads):
            stop, thread = self._threads.pop(key)
            stop.set()
            thread.join(5)
            assert not thread.is_alive(), "RtpSource.run did not return after stop"


@pytest.fixture
def running() -> Iterator[Runner]:
    """Starts `RtpSource`s in threads (`running(options, sink)`); stops them after the test."""
    runner = Runner()
    yield runner
    runner.close()
