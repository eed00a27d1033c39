"""Per-call sessions over one shared transcriber pool.

Sources call the `Pipeline` (a `SourceSink`) from their own threads. Each call owns one
`ChannelFrontEnd` per channel, which runs in the source's thread and cuts `Utterance`s; all
calls share a bounded utterance queue served by a fixed number of transcription workers
(CTranslate2 releases the GIL while it decodes). Final segments reach the listeners in
utterance order per channel, so the rules see each speaker's words in the order spoken.

Queue policy, when the queue is full: the oldest waiting utterance of the call with the most
waiting utterances is dropped, counted on that call and logged, so one call that floods the
queue cannot starve the others and nothing is lost silently.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from qa.frontend import ChannelFrontEnd, FrontEndOptions
from qa.sources.base import CallInfo
from qa.types import SAMPLE_RATE, AudioChunk, Event, Scorecard, Segment, Speaker, Utterance

log = logging.getLogger("qa.pipeline")

#: The transcription step: one utterance (and a language, None = detect) to its final segments.
TranscribeFn = Callable[[Utterance, "str | None"], list[Segment]]
#: The batched step: several utterances decoded together, segments per utterance in order.
TranscribeBatchFn = Callable[[Sequence[Utterance], "str | None"], list[list[Segment]]]


@dataclass(frozen=True)
class PipelineOptions:
    """How calls are cut and scheduled.

    Attributes:
        frontend: Framing, VAD and endpointer settings for every channel.
        workers: Transcription worker threads sharing the one model. On 2 cores one worker
            with 2 CTranslate2 threads keeps latency lowest; more workers help only with more
            cores.
        queue_size: Utterances that may wait for a worker, over all calls, before the drop
            policy above applies.
        language: Language of every call (`en`, `zh`), or None to detect it per utterance.
        max_batch: Utterances decoded together in one batch when the pipeline has a batch
            transcription step (1 = one at a time). 8 measured best on 2 cores
            (docs/capacity.md): 16 with a 300 ms wait doubled p95 at 24 calls.
        batch_wait_ms: How long a worker holding fewer than `max_batch` utterances waits for
            more before decoding what it has (100 ms: under load the queue fills the batch
            anyway; when idle it adds at most this to a lone utterance).
    """

    frontend: FrontEndOptions = field(default_factory=FrontEndOptions)
    workers: int = 1
    queue_size: int = 64
    language: str | None = None
    max_batch: int = 8
    batch_wait_ms: int = 100


@dataclass(frozen=True, slots=True)
class CallSummary:
    """What a finished call looked like, for the console and the store.

    Attributes:
        call_id: The call.
        agent_id: Its agent ('' if unknown).
        source: Where its audio came from.
        reason: Why it ended (`end of file`, `timeout`, `stopped`, ...).
        duration: Seconds of audio on the call clock (the longest channel).
        speech: Seconds of speech per speaker, as cut by the endpointer.
        utterances: Utterances cut on all channels.
        segments: Final segments produced.
        dropped_utterances: Utterances dropped by the queue policy.
        gap_seconds: Audio missing from the source and filled with silence (all channels).
        latency_p50: Median seconds from end of speech (endpointer close) to final text.
        latency_p95: 95th percentile of the same.
        events: Rule events raised during the call.
        scorecard: The call's scorecard, when it was checked against a rule pack.
        category: The call's main category from the rule pack (None when none was heard).
    """

    call_id: str
    agent_id: str
    source: str
    reason: str
    duration: float
    speech: tuple[tuple[Speaker, float], ...]
    utterances: int
    segments: int
    dropped_utterances: int
    gap_seconds: float
    latency_p50: float
    latency_p95: float
    events: int = 0
    scorecard: Scorecard | None = None
    category: str | None = None


class PipelineListener:
    """Receives what the pipeline produces. Override what you need; calls come from worker and
    source threads, one call's notifications never concurrently."""

    def call_started(self, call: CallInfo) -> None:
        """A call began."""

    def segment(self, segment: Segment, latency: float) -> None:
        """A final segment, `latency` wall seconds after its utterance was closed."""

    def event(self, event: Event) -> None:
        """A rule event."""

    def dtmf(self, call_id: str, channel: Speaker, digit: str, time: float) -> None:
        """A key press reported by the source."""

    def call_ended(self, summary: CallSummary) -> None:
        """A call ended and every one of its utterances has been transcribed (or dropped)."""


class CallRulesLike:
    """The part of `qa.rules.CallRules` the pipeline drives (see that class)."""

    def on_segment(self, segment: Segment) -> list[Event]: ...
    def on_speech(self, speaker: Speaker, start: float, end: float) -> list[Event]: ...
    def advance(self, now: float) -> list[Event]: ...
    def finish(self, end: float) -> list[Event]: ...
    def scorecard(self) -> Scorecard: ...
    category: str | None


RulesFactory = Callable[[CallInfo], "CallRulesLike | None"]


class _Channel:
    __slots__ = ("frontend", "next_index", "ready", "pending", "samples_16k", "speech")

    def __init__(self, frontend: ChannelFrontEnd) -> None:
        self.frontend = frontend
        self.next_index = 0  # next utterance index to deliver, in order
        self.ready: dict[int, tuple[Utterance, list[Segment] | None, float]] = {}
        self.pending: dict[int, Utterance] = {}  # cut but not yet delivered
        self.samples_16k = 0  # call-clock position of the end of received audio
        self.speech = 0.0


class _Call:
    def __init__(self, info: CallInfo, channels: dict[Speaker, _Channel], rules) -> None:
        self.info = info
        self.channels = channels
        self.rules = rules
        self.lock = threading.RLock()
        self.ending_reason: str | None = None
        self.finished = False
        self.utterances = 0
        self.segments = 0
        self.dropped = 0
        self.events = 0
        self.latencies: list[float] = []


class Pipeline:
    """Turns the audio of many concurrent calls into final segments and rule events.

    Args:
        transcribe: The transcription step (usually `Transcriber.transcribe`), thread-safe.
        options: Scheduling and front-end options.
        listeners: Receivers of segments, events and call summaries.
        rules: Makes the per-call rule state for a new call (None: no rules).
        transcribe_batch: A batched transcription step used when `options.max_batch` > 1.
    """

    def __init__(
        self,
        transcribe: TranscribeFn,
        options: PipelineOptions | None = None,
        listeners: Sequence[PipelineListener] = (),
        rules: RulesFactory | None = None,
        transcribe_batch: TranscribeBatchFn | None = None,
    ) -> None:
        self._transcribe = transcribe
        self._transcribe_batch = transcribe_batch
        self.options = options or PipelineOptions()
        self._listeners = tuple(listeners)
        self._rules = rules
        self._calls: dict[str, _Call] = {}
        self._calls_lock = threading.Lock()
        self._queue: list[tuple[int, _Call, Utterance]] = []
        self._queue_cv = threading.Condition()
        self._seq = itertools.count()
        self._closing = False
        self._idle = threading.Condition()
        self.dropped_utterances = 0
        self._workers = [
            threading.Thread(target=self._work, name=f"qa-asr-{i}", daemon=True)
            for i in range(max(1, self.options.workers))
        ]
        for worker in self._workers:
            worker.start()

    # -- SourceSink -------------------------------------------------------------------------

    def call_started(self, call: CallInfo) -> None:
        channels = {
            speaker: _Channel(
                ChannelFrontEnd(call.call_id, speaker, call.sample_rate, self.options.frontend)
            )
            for speaker in call.channels
        }
        rules = self._rules(call) if self._rules else None
        with self._calls_lock:
            if call.call_id in self._calls:
                raise ValueError(f"call {call.call_id} started twice")
            self._calls[call.call_id] = _Call(call, channels, rules)
        log.info("call %s started (%s, agent %r)", call.call_id, call.source, call.agent_id)
        for listener in self._listeners:
            listener.call_started(call)

    def audio(self, chunk: AudioChunk) -> None:
        call = self._calls.get(chunk.call_id)
        if call is None:
            log.warning("audio for unknown call %s dropped", chunk.call_id)
            return
        channel = call.channels.get(chunk.channel)
        if channel is None:
            log.warning("audio for unknown channel %s of call %s", chunk.channel, chunk.call_id)
            return
        utterances = channel.frontend.push(chunk)
        end_16k = chunk.first_sample + len(chunk.pcm)
        if chunk.sample_rate != SAMPLE_RATE:
            end_16k = end_16k * SAMPLE_RATE // chunk.sample_rate
        with call.lock:
            channel.samples_16k = max(channel.samples_16k, end_16k)
            dropped = self._accept(call, channel, utterances)
            self._advance(call)
        self._deliver_dropped(dropped)

    def dtmf(
        self, call_id: str, channel: Speaker, digit: str, time: float, duration: float
    ) -> None:
        log.info("call %s: DTMF %s on %s at %.2f s", call_id, digit, channel, time)
        for listener in self._listeners:
            listener.dtmf(call_id, channel, digit, time)

    def call_ended(self, call_id: str, reason: str) -> None:
        call = self._calls.get(call_id)
        if call is None:
            return
        dropped = []
        with call.lock:
            for channel in call.channels.values():
                dropped += self._accept(call, channel, channel.frontend.flush())
            call.ending_reason = reason
            self._maybe_finish(call)
        self._deliver_dropped(dropped)

    # -- scheduling -------------------------------------------------------------------------

    def _accept(
        self, call: _Call, channel: _Channel, utterances: list[Utterance]
    ) -> list[tuple[_Call, Utterance]]:
        """Queues new utterances (call lock held); returns what the queue policy dropped."""
        dropped = []
        for utterance in utterances:
            call.utterances += 1
            channel.pending[utterance.index] = utterance
            channel.speech += utterance.duration
            if call.rules is not None:
                self._emit(call, call.rules.on_speech(utterance.speaker, utterance.start,
                                                      utterance.end))
            with self._queue_cv:
                if len(self._queue) >= self.options.queue_size:
                    dropped.append(self._drop_one())
                heapq.heappush(self._queue, (next(self._seq), call, utterance))
                self._queue_cv.notify()
        return dropped

    def _deliver_dropped(self, dropped: list[tuple[_Call, Utterance]]) -> None:
        # Delivered as "no text", outside any call lock, so later segments of that channel are
        # not held back and no two call locks are ever held together.
        for call, utterance in dropped:
            self._deliver(call, utterance, None, 0.0)

    def _drop_one(self) -> tuple[_Call, Utterance]:
        """Drops the oldest waiting utterance of the call with most waiting (queue lock held)."""
        waiting: dict[str, int] = {}
        for _, call, _ in self._queue:
            waiting[call.info.call_id] = waiting.get(call.info.call_id, 0) + 1
        worst = max(waiting, key=waiting.__getitem__)
        position = next(i for i, item in enumerate(self._queue) if item[1].info.call_id == worst)
        _, call, utterance = self._queue.pop(position)
        heapq.heapify(self._queue)
        self.dropped_utterances += 1
        log.warning(
            "queue full: dropped utterance %d of call %s (%s, %.2f-%.2f s)",
            utterance.index, worst, utterance.speaker, utterance.start, utterance.end,
        )
        return call, utterance

    def _work(self) -> None:
        batch_size = max(1, self.options.max_batch) if self._transcribe_batch else 1
        wait = self.options.batch_wait_ms / 1000.0
        while True:
            with self._queue_cv:
                while not self._queue and not self._closing:
                    self._queue_cv.wait()
                if not self._queue:
                    return
                batch = [heapq.heappop(self._queue)[1:]]
                # Gather more utterances for one batched decode, waiting at most `wait` for
                # them: a batch of B costs far less than B decodes on the same cores.
                deadline = time.monotonic() + wait
                while len(batch) < batch_size:
                    if not self._queue:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0 or self._closing:
                            break
                        self._queue_cv.wait(remaining)
                        continue
                    batch.append(heapq.heappop(self._queue)[1:])
            results = self._run_batch([utterance for _, utterance in batch])
            for (call, utterance), segments in zip(batch, results, strict=True):
                latency = time.monotonic() - utterance.closed_at if utterance.closed_at else 0.0
                self._deliver(call, utterance, segments, latency)

    def _run_batch(self, utterances: list[Utterance]) -> list[list[Segment]]:
        language = self.options.language
        if self._transcribe_batch is not None and len(utterances) > 1:
            try:
                return self._transcribe_batch(utterances, language)
            except Exception:  # fall back to one by one, so one bad utterance fails alone
                log.exception("batched transcription of %d utterances failed", len(utterances))
        results = []
        for utterance in utterances:
            try:
                results.append(self._transcribe(utterance, language))
            except Exception:  # one bad utterance must not stop the worker or other calls
                log.exception("transcription failed for call %s", utterance.call_id)
                results.append([])
        return results

    def _deliver(
        self, call: _Call, utterance: Utterance, segments: list[Segment] | None, latency: float
    ) -> None:
        with call.lock:
            channel = call.channels[utterance.speaker]
            channel.ready[utterance.index] = (utterance, segments, latency)
            while channel.next_index in channel.ready:
                done, done_segments, done_latency = channel.ready.pop(channel.next_index)
                channel.pending.pop(done.index, None)
                channel.next_index += 1
                if done_segments is None:
                    call.dropped += 1
                    continue
                call.latencies.append(done_latency)
                for segment in done_segments:
                    call.segments += 1
                    for listener in self._listeners:
                        listener.segment(segment, done_latency)
                    if call.rules is not None:
                        self._emit(call, call.rules.on_segment(segment))
            self._advance(call)
            self._maybe_finish(call)
        with self._idle:
            self._idle.notify_all()

    def _complete_through(self, call: _Call) -> float:
        """Audio time up to which every channel's speech has been transcribed and delivered."""
        through = []
        for channel in call.channels.values():
            settled = channel.frontend.settled_sample
            if channel.pending:
                settled = min(settled, min(u.start_sample for u in channel.pending.values()))
            through.append(settled)
        return min(through, default=0) / SAMPLE_RATE

    def _advance(self, call: _Call) -> None:
        if call.rules is not None and not call.finished:
            self._emit(call, call.rules.advance(self._complete_through(call)))

    def _emit(self, call: _Call, events: list[Event]) -> None:
        for event in events:
            call.events += 1
            for listener in self._listeners:
                listener.event(event)

    def _maybe_finish(self, call: _Call) -> None:
        if call.finished or call.ending_reason is None:
            return
        if any(channel.pending for channel in call.channels.values()):
            return
        call.finished = True
        duration = max((c.samples_16k for c in call.channels.values()), default=0) / SAMPLE_RATE
        scorecard = category = None
        if call.rules is not None:
            self._emit(call, call.rules.advance(duration))
            self._emit(call, call.rules.finish(duration))
            scorecard = call.rules.scorecard()
            category = call.rules.category
        latencies = np.asarray(call.latencies or [0.0])
        gap = sum(c.frontend.stats.gap_samples for c in call.channels.values()) / SAMPLE_RATE
        summary = CallSummary(
            call_id=call.info.call_id,
            agent_id=call.info.agent_id,
            source=call.info.source,
            reason=call.ending_reason,
            duration=duration,
            speech=tuple((s, c.speech) for s, c in call.channels.items()),
            utterances=call.utterances,
            segments=call.segments,
            dropped_utterances=call.dropped,
            gap_seconds=gap,
            latency_p50=float(np.percentile(latencies, 50)),
            latency_p95=float(np.percentile(latencies, 95)),
            events=call.events,
            scorecard=scorecard,
            category=category,
        )
        with self._calls_lock:
            self._calls.pop(call.info.call_id, None)
        log.info("call %s ended (%s)", call.info.call_id, call.ending_reason)
        for listener in self._listeners:
            listener.call_ended(summary)

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def active_calls(self) -> int:
        """Calls started and not yet finished."""
        return len(self._calls)

    @property
    def queue_depth(self) -> int:
        """Utterances waiting for a worker."""
        return len(self._queue)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Waits until every started call has finished; returns False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._idle:
            while self._calls:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._idle.wait(0.1 if remaining is None else min(remaining, 0.1))
        return True

    def close(self) -> None:
        """Stops the workers once the queue is empty."""
        with self._queue_cv:
            self._closing = True
            self._queue_cv.notify_all()
        for worker in self._workers:
            worker.join()
