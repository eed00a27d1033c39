"""Policy (b) of the capacity benchmark: re-decode every second with local agreement.

This is how the open-source streaming servers work (ufal/whisper_streaming's local
agreement, collabora/WhisperLive): while a speaker is talking, the audio of the open
utterance is re-decoded from its start about once a second, and the words on which two
consecutive hypotheses agree (their longest common prefix) are committed as stable partial
text. Implemented here as a baseline sink for `tests.benchmarks.live_load.run_load`:

- one front end per channel (the same endpointer as our pipeline) says when speech is open
  and when it ends;
- every `interval` seconds of wall time, each channel with open speech asks for a
  re-decode of its growing buffer; when the endpointer closes the utterance, a final decode
  of the whole utterance is asked for; the final text is that decode, and the latency is
  end of speech to that final text (as for the other policies);
- all requests of all calls share one FIFO served by one worker on the same model and the
  same per-utterance `Transcriber` (faster-whisper, its options and guards), as a server with
  one model serves its clients in turn. A channel has at most one re-decode waiting.

It is kept simple and generous: partial results are only counted (not sent anywhere), and a
channel's re-decodes stop as soon as its utterance closes.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from qa.frontend import ChannelFrontEnd, FrontEndOptions
from qa.types import (
    SAMPLE_RATE,
    AudioChunk,
    CallInfo,
    CallSummary,
    PipelineListener,
    Speaker,
    Utterance,
)


def common_prefix(a: list[str], b: list[str]) -> list[str]:
    """The longest common word prefix of two hypotheses (local agreement)."""
    out = []
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        out.append(x)
    return out


@dataclass
class _Channel:
    front: ChannelFrontEnd
    pcm: list[np.ndarray] = field(default_factory=list)
    last_request: float = 0.0
    partial_waiting: bool = False
    previous: list[str] = field(default_factory=list)
    committed: list[str] = field(default_factory=list)
    finals_waiting: int = 0


@dataclass
class _Call:
    info: CallInfo
    channels: dict[Speaker, _Channel]
    utterances: int = 0
    segments: int = 0
    ended: str | None = None
    latencies: list[float] = field(default_factory=list)


class RedecodeEverySecond:
    """A source sink that transcribes like the re-decoding streaming servers (see module)."""

    def __init__(
        self,
        transcriber,
        listeners: Sequence[PipelineListener],
        language: str | None = "en",
        interval: float = 1.0,
    ) -> None:
        self._transcriber = transcriber
        self._listeners = tuple(listeners)
        self._language = language
        self._interval = interval
        self._calls: dict[str, _Call] = {}
        self._lock = threading.Condition()
        self._jobs: deque = deque()
        self._closing = False
        self.partial_decodes = 0
        self._worker = threading.Thread(target=self._work, name="redecode", daemon=True)
        self._worker.start()

    # -- source sink ----------------------------------------------------------------------

    def call_started(self, call: CallInfo) -> None:
        if call.sample_rate != SAMPLE_RATE:
            raise ValueError("the re-decode baseline takes 16 kHz calls only")
        channels = {
            s: _Channel(ChannelFrontEnd(call.call_id, s, call.sample_rate, FrontEndOptions()))
            for s in call.channels
        }
        with self._lock:
            self._calls[call.call_id] = _Call(call, channels)

    def audio(self, chunk: AudioChunk) -> None:
        call = self._calls[chunk.call_id]
        channel = call.channels[chunk.channel]
        closed = channel.front.push(chunk)
        now = time.monotonic()
        with self._lock:
            channel.pcm.append(chunk.pcm)
            for utterance in closed:
                call.utterances += 1
                channel.finals_waiting += 1
                self._jobs.append(("final", call, channel, utterance))
            if closed:
                channel.previous, channel.committed = [], []
            if (channel.front.speaking and not channel.partial_waiting
                    and now - channel.last_request >= self._interval):
                channel.last_request = now
                channel.partial_waiting = True
                self._jobs.append(("partial", call, channel, None))
            self._lock.notify()

    def dtmf(self, call_id, channel, digit, time, duration) -> None:  # noqa: A002
        """Key presses play no part in this benchmark."""

    def call_ended(self, call_id: str, reason: str) -> None:
        call = self._calls[call_id]
        with self._lock:
            for channel in call.channels.values():
                for utterance in channel.front.flush():
                    call.utterances += 1
                    channel.finals_waiting += 1
                    self._jobs.append(("final", call, channel, utterance))
            call.ended = reason
            self._lock.notify()
        self._maybe_finish(call)

    # -- work -------------------------------------------------------------------------------

    def _open_audio(self, call: _Call, speaker: Speaker, channel: _Channel) -> Utterance | None:
        start = channel.front.open_start_sample
        if start is None:
            return None
        pcm = np.concatenate(channel.pcm)[start:]
        pcm.setflags(write=False)
        return Utterance(call.info.call_id, speaker, start, start + len(pcm), pcm)

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._jobs and not self._closing:
                    self._lock.wait()
                if not self._jobs:
                    return
                kind, call, channel, utterance = self._jobs.popleft()
                if kind == "partial":
                    channel.partial_waiting = False
                    speaker = next(s for s, c in call.channels.items() if c is channel)
                    utterance = self._open_audio(call, speaker, channel)
            if utterance is None:
                continue
            segments = self._transcriber.transcribe(utterance, self._language)
            if kind == "partial":
                self.partial_decodes += 1
                words = " ".join(s.text for s in segments).split()
                with self._lock:
                    channel.committed = common_prefix(channel.previous, words)
                    channel.previous = words
                continue
            latency = time.monotonic() - utterance.closed_at if utterance.closed_at else 0.0
            with self._lock:
                channel.finals_waiting -= 1
                call.segments += len(segments)
                call.latencies.append(latency)
            for segment in segments:
                for listener in self._listeners:
                    listener.segment(segment, latency)
            self._maybe_finish(call)

    def _maybe_finish(self, call: _Call) -> None:
        with self._lock:
            if call.ended is None or any(c.finals_waiting for c in call.channels.values()):
                return
            if self._calls.pop(call.info.call_id, None) is None:
                return
            self._lock.notify_all()
        latencies = np.asarray(call.latencies or [0.0])
        summary = CallSummary(
            call_id=call.info.call_id, agent_id=call.info.agent_id, source=call.info.source,
            reason=call.ended, duration=0.0, speech=(), utterances=call.utterances,
            segments=call.segments, dropped_utterances=0, gap_seconds=0.0,
            latency_p50=float(np.percentile(latencies, 50)),
            latency_p95=float(np.percentile(latencies, 95)),
        )
        for listener in self._listeners:
            listener.call_ended(summary)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Waits until every started call has had its final text."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self._calls:
                if deadline is not None and time.monotonic() >= deadline:
                    return False
                self._lock.wait(0.1)
        return True

    def close(self) -> None:
        """Stops the worker once the queue is empty."""
        with self._lock:
            self._closing = True
            self._lock.notify_all()
        self._worker.join()
