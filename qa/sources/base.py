"""What every audio source promises: it produces `AudioChunk`s and call boundaries, nothing else.

A source runs in its own thread (`Source.run`) and hands what it captures to a `SourceSink`,
which is the pipeline. Sinks must be quick and thread-safe: they are called from source
threads. A source never knows about VAD, transcription or rules.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Protocol

from qa.types import AudioChunk, CallInfo, Speaker


class SourceSink(Protocol):
    """Receives what sources capture. Called from source threads; must not block for long."""

    def call_started(self, call: CallInfo) -> None:
        """A new call begins; always before its first chunk."""

    def audio(self, chunk: AudioChunk) -> None:
        """One chunk of one channel of a started call, in order per channel."""

    def dtmf(
        self, call_id: str, channel: Speaker, digit: str, time: float, duration: float
    ) -> None:
        """A telephone-event (RFC 4733) key press, at `time` seconds on the call clock."""

    def call_ended(self, call_id: str, reason: str) -> None:
        """The call is over (`hangup`, `timeout`, `end of file`, `stopped`, `error: ...`)."""


class Source(Protocol):
    """A producer of calls. `run` blocks until the source ends or `stop` is set."""

    name: str

    def run(self, sink: SourceSink, stop: threading.Event) -> None:
        """Captures until the source ends or `stop` is set; ends every call it started."""

    def stats(self) -> Mapping[str, int]:
        """Counters since start (packets, frames, drops, ...), read at scrape time."""
