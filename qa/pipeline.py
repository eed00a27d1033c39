"""Per-call sessions over one shared transcriber pool.

Sources call the `Pipeline` (a `SourceSink`) from their own threads. Each call owns one
`ChannelFrontEnd` per channel, which runs in the source's thread and cuts `Utterance`s; all
calls share a bounded utterance queue served by a fixed number of transcription workers
(CTranslate2 releases the GIL while it decodes). The workers only transcribe: one dispatcher
thread runs the rules and the listeners (store, console, metrics, prompts), so a slow or failing
store, or rules that raise, never stop transcription. Final segments reach the listeners in
the order their utterances were cut, per call, whichever worker finishes first, so the rules
see each call as spoken whatever the number of workers.

Queue policy, when the queue is full: the oldest waiting utterance of the call with the most
waiting utterances is dropped, counted on that call and logged, so one call that floods the
queue cannot starve the others and nothing is lost silently. When the workers fall behind,
the overload policy (`qa.overload`) degrades the decode, refuses new calls and sheds
utterances that waited too long, each counted and logged.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from qa.conversation import DEAD_AIR_MIN, SpeechTimeline
from qa.frontend import ChannelFrontEnd, FrontEndOptions
from qa.overload import DEGRADED, LEVELS, REFUSING, OverloadOptions, OverloadState
from qa.types import (
    SAMPLE_RATE,
    AudioChunk,
    CallInfo,
    CallSummary,
    Event,
    PipelineListener,
    Scorecard,
    Segment,
    Speaker,
    TranscribeBatchFn,
    TranscribeFn,
    Utterance,
)

log = logging.getLogger("qa.pipeline")

#: A remote transcription backend (`qa.cluster.RemoteTranscriber.submit`): takes one utterance
#: and a language, and later calls the callback once with its segments (None: lost, counted as
#: dropped). It may block while the backend is saturated (back-pressure).
SubmitFn = Callable[[Utterance, "str | None", Callable[["list[Segment] | None"], None]], None]


@dataclass(frozen=True)
class PipelineOptions:
    """How calls are cut and scheduled.

    Attributes:
        frontend: Framing, VAD and endpointer settings for every channel.
        workers: Transcription worker threads sharing the one model, each decoding its own
            batch at the same time on one thread (`qa.monitor` gives the model as many
            concurrent decodes). Two, one per core of the reference machine: 40 calls 1.3 s
            apart gave p95 2.3 s against 8.1 s with one worker of two threads
            (docs/capacity.md, "All cores"). An utterance's text depends neither on the
            batch it lands in nor on this number. Set it to the number of cores.
        queue_size: Utterances that may wait for a worker, over all calls, before the drop
            policy above applies.
        language: Language of every call (`en`, `zh`), or None to detect it per utterance.
        max_batch: Utterances decoded together in one batch when the pipeline has a batch
            transcription step (1 = one at a time). 8 measured best on 2 cores
            (docs/capacity.md): 16 with a 300 ms wait doubled p95 at 24 calls.
        batch_wait_ms: How long a worker holding fewer than `max_batch` utterances waits for
            more before decoding what it has (100 ms: under load the queue fills the batch
            anyway; when idle it adds at most this to a lone utterance).
        overload: What is given up, and when, while the workers are behind (`qa.overload`).
    """

    frontend: FrontEndOptions = field(default_factory=FrontEndOptions)
    workers: int = 2
    queue_size: int = 64
    language: str | None = None
    max_batch: int = 8
    batch_wait_ms: int = 100
    overload: OverloadOptions = field(default_factory=OverloadOptions)


class CallRulesLike(Protocol):
    """The part of `qa.rules.CallRules` the pipeline drives (see that class)."""

    def on_segment(self, segment: Segment) -> list[Event]: ...
    def on_speech(self, speaker: Speaker, start: float, end: float) -> list[Event]: ...
    def advance(self, now: float) -> list[Event]: ...
    def finish(self, end: float) -> list[Event]: ...
    def scorecard(self) -> Scorecard: ...

    @property
    def category(self) -> str | None: ...


RulesFactory = Callable[[CallInfo], "CallRulesLike | None"]


def run_batch(
    transcribe: TranscribeFn,
    transcribe_batch: TranscribeBatchFn | None,
    utterances: Sequence[Utterance],
    language: str | None,
) -> list[list[Segment]]:
    """Transcribes utterances in one batch when a batched step is given and there are several,
    else (or when the batch fails) one by one; an utterance that fails alone gets no segments.
    The local pipeline and the remote workers (`qa.cluster.worker`) both decode through this.
    """
    if transcribe_batch is not None and len(utterances) > 1:
        try:
            return transcribe_batch(utterances, language)
        except Exception:  # fall back to one by one, so one bad utterance fails alone
            log.exception("batched transcription of %d utterances failed", len(utterances))
    results = []
    for utterance in utterances:
        try:
            results.append(transcribe(utterance, language))
        except Exception:  # one bad utterance must not stop the worker or other calls
            log.exception("transcription failed for call %s", utterance.call_id)
            results.append([])
    return results


class _Channel:
    __slots__ = ("frontend", "next_index", "ready", "pending", "samples_16k", "settled",
                 "speech")

    def __init__(self, frontend: ChannelFrontEnd) -> None:
        self.frontend = frontend
        self.next_index = 0  # next utterance index to deliver, in order
        self.ready: dict[int, tuple[Utterance, list[Segment] | None, float]] = {}
        self.pending: dict[int, Utterance] = {}  # cut but not yet delivered
        self.samples_16k = 0  # call-clock position of the end of received audio
        # The front end's settled sample as of the last utterances accepted (call lock), so
        # the rules never see time pass over an utterance that is cut but not yet pending.
        self.settled = 0
        self.speech = 0.0


class _Call:
    def __init__(self, info: CallInfo, channels: dict[Speaker, _Channel],
                 refused: bool = False) -> None:
        self.info = info
        self.channels = channels
        self.refused = refused  # refused at its start (overload): recorded, not transcribed
        # (speaker, index) of the utterances cut and not yet delivered, in the order they were
        # cut: results are delivered in this order whatever worker finishes first, so the
        # rules see the call as one worker would show it (any number of workers).
        self.order: deque[tuple[Speaker, int]] = deque()
        self.rules: CallRulesLike | None = None  # set, used and dropped by the dispatcher
        self.lock = threading.RLock()  # bookkeeping shared by source, workers and dispatcher
        self.ending_reason: str | None = None
        self.finished = False
        self.advance_posted = False
        self.utterances = 0
        self.segments = 0
        self.dropped = 0
        self.events = 0
        self.latencies: list[float] = []
        self.timeline = SpeechTimeline()  # the dispatcher's: speech as cut, for the summary


class Pipeline:
    """Turns the audio of many concurrent calls into final segments and rule events.

    Three kinds of thread share the work. Source threads cut utterances (`audio`). Transcription
    workers only decode. One dispatcher thread runs everything else in the order it happened
    per call and channel: the rules and every listener. A listener or a call's rules that
    raise are isolated there: the failure is logged (once per listener and kind with its
    traceback, then as a count at powers of two), counted (`listener_errors`, `rule_errors`,
    exported as `qa_listener_errors_total` and `qa_rule_errors_total`), and the other calls,
    the other listeners and that call's transcription carry on; a call whose rules failed
    keeps being transcribed and stored without rules.

    Args:
        transcribe: The transcription step (usually `Transcriber.transcribe`), thread-safe.
        options: Scheduling and front-end options.
        listeners: Receivers of segments, events and call summaries.
        rules: Makes the per-call rule state for a new call (None: no rules).
        transcribe_batch: A batched transcription step used when `options.max_batch` > 1.
        submit: A remote backend instead of the local steps (then `transcribe` may be None):
            each utterance is handed on as soon as a worker thread takes it (the remote
            workers batch across capture nodes), and its result comes back through the same
            reorder buffer, so order and the drop accounting are those of local recognition.
        transcribe_cheap: The cheaper batched step used while overloaded (`qa.overload`);
            None: the overloaded pipeline keeps the normal steps, and still grows its
            batches, refuses calls and sheds old utterances.
    """

    def __init__(
        self,
        transcribe: TranscribeFn | None,
        options: PipelineOptions | None = None,
        listeners: Sequence[PipelineListener] = (),
        rules: RulesFactory | None = None,
        transcribe_batch: TranscribeBatchFn | None = None,
        submit: SubmitFn | None = None,
        transcribe_cheap: TranscribeBatchFn | None = None,
    ) -> None:
        if transcribe is None and submit is None:
            raise ValueError("a pipeline needs a transcription step or a remote backend")
        self._transcribe = transcribe
        self._transcribe_batch = transcribe_batch
        self._submit = submit
        self._transcribe_cheap = transcribe_cheap
        self.options = options or PipelineOptions()
        #: The overload level and what it gave up (read by the metrics). Remote recognition
        #: has its own back-pressure, so only local recognition sheds.
        self.overload = OverloadState(
            self.options.overload if submit is None else OverloadOptions(enabled=False))
        self._listeners = tuple(listeners)
        self._rules = rules
        self._calls: dict[str, _Call] = {}
        self._calls_lock = threading.Lock()
        self._queue: list[tuple[int, _Call, Utterance]] = []
        self._queue_cv = threading.Condition()
        self._seq = itertools.count()
        self._closing = False
        self._draining = False
        self._idle = threading.Condition()
        self._tasks: deque[tuple[Callable[..., None], tuple]] = deque()
        self._tasks_cv = threading.Condition()
        self._stop_dispatch = False
        self._failed_kinds: set[tuple[str, str]] = set()
        self.dropped_utterances = 0
        #: Seconds the last decodes took (moving average over the workers' batches): what an
        #: utterance picked up now will still wait before its text exists.
        self._decode_s = 0.0
        #: Exceptions raised by listeners, by listener class (read by the metrics).
        self.listener_errors: dict[str, int] = {}
        #: Exceptions raised by the rules (each turns the rules off for its call).
        self.rule_errors = 0
        self._workers = [
            threading.Thread(target=self._work, name=f"qa-asr-{i}", daemon=True)
            for i in range(max(1, self.options.workers))
        ]
        for worker in self._workers:
            worker.start()
        self._dispatcher = threading.Thread(target=self._dispatch, name="qa-dispatch",
                                            daemon=True)
        self._dispatcher.start()

    # -- SourceSink -------------------------------------------------------------------------

    def call_started(self, call: CallInfo) -> None:
        channels = {
            speaker: _Channel(
                ChannelFrontEnd(call.call_id, speaker, call.sample_rate, self.options.frontend)
            )
            for speaker in call.channels
        }
        with self._queue_cv:
            age = self._queue_age()
            refused = self.overload.update(age) >= REFUSING
        state = _Call(call, channels, refused)
        with self._calls_lock:
            if call.call_id in self._calls:
                raise ValueError(f"call {call.call_id} started twice")
            self._calls[call.call_id] = state
        if refused:
            self.overload.count(refused=1)
            log.warning("overload: call %s refused, not transcribed (oldest waiting utterance "
                        "%.1f s old); counted in qa_calls_refused_total", call.call_id, age)
        log.info("call %s started (%s, agent %r)", call.call_id, call.source, call.agent_id)
        self._post(self._start, state)

    def audio(self, chunk: AudioChunk) -> None:
        call = self._calls.get(chunk.call_id)
        if call is None:
            log.warning("audio for unknown call %s dropped", chunk.call_id)
            return
        if call.refused:
            return  # counted once, when it was refused
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
            self._accept(call, channel, utterances)
            if self._rules is not None and not call.advance_posted:
                # At most one pending advance per call: time moves on every chunk.
                call.advance_posted = True
                self._post(self._advance_task, call)

    def dtmf(
        self, call_id: str, channel: Speaker, digit: str, time: float, duration: float
    ) -> None:
        log.info("call %s: DTMF %s on %s at %.2f s", call_id, digit, channel, time)
        self._post(self._notify, "dtmf", call_id, channel, digit, time)

    def call_ended(self, call_id: str, reason: str) -> None:
        call = self._calls.get(call_id)
        if call is None:
            return
        with call.lock:
            if call.refused:
                reason = f"refused: overload ({reason})"
            else:
                for channel in call.channels.values():
                    self._accept(call, channel, channel.frontend.flush())
            self._post(self._end, call, reason)

    # -- scheduling (source threads) --------------------------------------------------------

    def _accept(self, call: _Call, channel: _Channel, utterances: list[Utterance]) -> None:
        """Queues new utterances (call lock held); the queue policy may drop one."""
        for utterance in utterances:
            call.utterances += 1
            channel.pending[utterance.index] = utterance
            call.order.append((utterance.speaker, utterance.index))
            channel.speech += utterance.duration
            # Posted before the utterance can reach a worker, so the rules hear of the
            # speech before its words.
            self._post(self._speech, call, utterance)
            dropped = None
            with self._queue_cv:
                if self._draining:  # stopping: nothing new is transcribed
                    dropped = (call, utterance)
                    self.dropped_utterances += 1
                else:
                    if len(self._queue) >= self.options.queue_size:
                        dropped = self._drop_one()
                    heapq.heappush(self._queue, (next(self._seq), call, utterance))
                    self._queue_cv.notify()
            if dropped is not None:
                self._post(self._deliver, *dropped, None, 0.0)
        channel.settled = channel.frontend.settled_sample

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

    # -- transcription workers --------------------------------------------------------------

    def _queue_age(self) -> float:
        """Seconds the oldest waiting utterance has waited (queue lock held)."""
        if not self._queue:
            return 0.0
        closed = self._queue[0][2].closed_at  # the heap's head is the oldest (FIFO order)
        return max(0.0, time.monotonic() - closed) if closed else 0.0

    def _shed(self) -> list[tuple[_Call, Utterance]]:
        """Takes the utterances that would be older than `shed_after_s` by the time their
        decode ends off the queue (lock held): shedding at pick-up alone let the lag of what
        was transcribed reach the limit plus a whole decode (17 s p95 at a 7 s limit). The
        expected decode is the recent average, and the limit never falls below
        `refuse_after_s`, so a slow decode cannot make the pipeline shed everything."""
        options = self.options.overload
        limit = max(options.shed_after_s - self._decode_s, options.refuse_after_s)
        shed = []
        while self.overload.options.enabled and self._queue and self._queue_age() >= limit:
            shed.append(heapq.heappop(self._queue)[1:])
        if shed:
            self.dropped_utterances += len(shed)
            self.overload.count(shed=len(shed))
        return shed

    def _work(self) -> None:
        normal_size = max(1, self.options.max_batch) if self._transcribe_batch else 1
        if self._submit is not None:
            normal_size = 1
        wait = self.options.batch_wait_ms / 1000.0
        while True:
            with self._queue_cv:
                while not self._queue and not self._closing:
                    self.overload.update(0.0)  # a worker is idle: the backlog is gone
                    self._queue_cv.wait()
                if not self._queue:
                    return
                shed = self._shed()
                level = self.overload.update(self._queue_age())
                batch = [heapq.heappop(self._queue)[1:]] if self._queue else []
                cheap = level >= DEGRADED and self._submit is None
                batch_size = normal_size
                if cheap and (self._transcribe_batch or self._transcribe_cheap):
                    batch_size = max(normal_size, self.options.overload.max_batch)
                # Gather more utterances for one batched decode, waiting at most `wait` for
                # them: a batch of B costs far less than B decodes on the same cores.
                deadline = time.monotonic() + wait
                while batch and len(batch) < batch_size:
                    if not self._queue:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0 or self._closing:
                            break
                        self._queue_cv.wait(remaining)
                        continue
                    batch.append(heapq.heappop(self._queue)[1:])
            if shed:
                log.warning("overload (%s): %d utterances waited over %.0f s and were dropped "
                            "untranscribed (calls %s); counted in qa_utterances_shed_total",
                            LEVELS[level], len(shed), self.options.overload.shed_after_s,
                            ", ".join(sorted({c.info.call_id for c, _ in shed})[:5]))
                for call, utterance in shed:
                    self._post(self._deliver, call, utterance, None, 0.0)
            if not batch:
                continue
            if self._submit is not None:
                self._hand_on(*batch[0])
                continue
            utterances = [utterance for _, utterance in batch]
            began = time.monotonic()
            if cheap and self._transcribe_cheap is not None:
                self.overload.count(degraded=len(batch))
                results = self._run_cheap(utterances)
            else:
                results = self._run_batch(utterances)
            took = time.monotonic() - began
            self._decode_s = took if not self._decode_s else 0.7 * self._decode_s + 0.3 * took
            for (call, utterance), segments in zip(batch, results, strict=True):
                latency = time.monotonic() - utterance.closed_at if utterance.closed_at else 0.0
                self._post(self._deliver, call, utterance, segments, latency)

    def _run_batch(self, utterances: list[Utterance]) -> list[list[Segment]]:
        assert self._transcribe is not None  # local recognition (no `submit`)
        return run_batch(self._transcribe, self._transcribe_batch, utterances,
                         self.options.language)

    def _run_cheap(self, utterances: list[Utterance]) -> list[list[Segment]]:
        cheap = self._transcribe_cheap
        assert cheap is not None
        return run_batch(lambda u, language: cheap([u], language)[0], cheap, utterances,
                         self.options.language)

    def _hand_on(self, call: _Call, utterance: Utterance) -> None:
        """Gives one utterance to the remote backend; its result is delivered like a local
        one, with the latency measured here, end to end."""
        assert self._submit is not None
        try:
            self._submit(utterance, self.options.language,
                         functools.partial(self._remote_done, call, utterance))
        except Exception:  # the backend failed outright: the utterance is dropped, counted
            log.exception("remote transcription refused utterance %d of call %s",
                          utterance.index, utterance.call_id)
            self._post(self._deliver, call, utterance, None, 0.0)

    def _remote_done(
        self, call: _Call, utterance: Utterance, segments: list[Segment] | None
    ) -> None:
        latency = time.monotonic() - utterance.closed_at if utterance.closed_at else 0.0
        self._post(self._deliver, call, utterance, segments, latency)

    # -- the dispatcher: rules and listeners, in order ----------------------------------------

    def _post(self, task: Callable[..., None], *args: object) -> None:
        with self._tasks_cv:
            self._tasks.append((task, args))
            self._tasks_cv.notify()

    def _dispatch(self) -> None:
        while True:
            with self._tasks_cv:
                while not self._tasks:
                    if self._stop_dispatch:
                        return
                    self._tasks_cv.wait()
                task, args = self._tasks.popleft()
            try:
                task(*args)
            except Exception:  # a fault of the pipeline itself: keep serving the others
                log.exception("pipeline dispatcher: %s failed", getattr(task, "__name__", task))

    def _notify(self, kind: str, *args: object) -> None:
        for listener in self._listeners:
            try:
                getattr(listener, kind)(*args)
            except Exception:
                self._listener_failed(listener, kind)

    def _listener_failed(self, listener: PipelineListener, kind: str) -> None:
        name = type(listener).__name__
        count = self.listener_errors[name] = self.listener_errors.get(name, 0) + 1
        first = (name, kind) not in self._failed_kinds
        self._failed_kinds.add((name, kind))
        if first:
            log.exception("listener %s failed on %s; the other listeners and calls carry on "
                          "(counted in qa_listener_errors_total, logged once per kind)",
                          name, kind)
        elif count & (count - 1) == 0 or count % 1000 == 0:  # a count, not a flood
            log.error("listener %s has failed %d times", name, count)

    def _apply_rules(self, call: _Call, method: str, *args: object) -> None:
        rules = call.rules
        if rules is None:
            return
        try:
            events = getattr(rules, method)(*args)
        except Exception:
            self._rules_failed(call, method)
            return
        self._emit(call, events)

    def _rules_failed(self, call: _Call, method: str) -> None:
        call.rules = None
        self.rule_errors += 1
        log.exception("rules failed on call %s (%s): rules are off for this call, which is "
                      "still transcribed and stored; other calls keep theirs",
                      call.info.call_id, method)

    def _start(self, call: _Call) -> None:
        if self._rules is not None and not call.refused:  # an unheard call is not scored
            try:
                call.rules = self._rules(call.info)
            except Exception:
                self._rules_failed(call, "start")
        self._notify("call_started", call.info)

    def _speech(self, call: _Call, utterance: Utterance) -> None:
        call.timeline.add(utterance.speaker, utterance.start, utterance.end)
        if not call.finished:
            self._apply_rules(call, "on_speech", utterance.speaker, utterance.start,
                              utterance.end)

    def _advance_task(self, call: _Call) -> None:
        with call.lock:
            call.advance_posted = False
        self._advance(call)

    def _end(self, call: _Call, reason: str) -> None:
        if call.ending_reason is None:  # the source's own reason wins over a forced stop
            call.ending_reason = reason
        self._maybe_finish(call)

    def _deliver(
        self, call: _Call, utterance: Utterance, segments: list[Segment] | None, latency: float
    ) -> None:
        done: list[tuple[Utterance, list[Segment] | None, float]] = []
        with call.lock:
            channel = call.channels[utterance.speaker]
            if (call.finished or utterance.index < channel.next_index
                    or utterance.index in channel.ready):
                return  # given up when stopping (`drain`); its result came too late
            channel.ready[utterance.index] = (utterance, segments, latency)
            while call.order:
                speaker, index = call.order[0]
                head = call.channels[speaker]
                if index not in head.ready:
                    break
                call.order.popleft()
                item = head.ready.pop(index)
                head.next_index = index + 1
                done.append(item)
        for done_utterance, done_segments, done_latency in done:
            # Still pending until its turn, so that time advances after each utterance only
            # as far as the ones after it allow (as when they arrive one by one).
            with call.lock:
                call.channels[done_utterance.speaker].pending.pop(done_utterance.index, None)
            if done_segments is None:
                call.dropped += 1
            else:
                call.latencies.append(done_latency)
                for segment in done_segments:
                    call.segments += 1
                    self._notify("segment", segment, done_latency)
                    self._apply_rules(call, "on_segment", segment)
            self._advance(call)
        self._maybe_finish(call)

    def _complete_through(self, call: _Call) -> float:
        """Audio time up to which every channel's speech has been transcribed and delivered."""
        through = []
        with call.lock:
            for channel in call.channels.values():
                settled = channel.settled
                if channel.pending:
                    settled = min(settled, min(u.start_sample for u in channel.pending.values()))
                through.append(settled)
        return min(through, default=0) / SAMPLE_RATE

    def _advance(self, call: _Call) -> None:
        if call.rules is not None and not call.finished:
            self._apply_rules(call, "advance", self._complete_through(call))

    def _emit(self, call: _Call, events: list[Event]) -> None:
        for event in events:
            call.events += 1
            self._notify("event", event)

    def _maybe_finish(self, call: _Call) -> None:
        if call.finished or call.ending_reason is None:
            return
        with call.lock:
            if any(channel.pending for channel in call.channels.values()):
                return
            call.finished = True
            duration = max((c.samples_16k for c in call.channels.values()),
                           default=0) / SAMPLE_RATE
        scorecard = category = None
        self._apply_rules(call, "advance", duration)
        self._apply_rules(call, "finish", duration)
        if call.rules is not None:
            try:
                scorecard = call.rules.scorecard()
                category = call.rules.category
            except Exception:
                self._rules_failed(call, "scorecard")
        # The one computation of dead air and talk-over, at the rule pack's dead-air threshold
        # so that the boards and the scorecard count the same silences.
        threshold = getattr(call.rules, "dead_air_min", None)
        talk = call.timeline.totals(duration, DEAD_AIR_MIN if threshold is None else threshold)
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
            dead_air=talk.dead_air,
            talk_over=talk.talk_over,
        )
        log.info("call %s ended (%s)", call.info.call_id, call.ending_reason)
        self._notify("call_ended", summary)
        with self._calls_lock:
            self._calls.pop(call.info.call_id, None)
        with self._idle:
            self._idle.notify_all()

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def active_calls(self) -> int:
        """Calls started and not yet finished."""
        return len(self._calls)

    @property
    def queue_depth(self) -> int:
        """Utterances waiting for a worker."""
        return len(self._queue)

    @property
    def queue_age(self) -> float:
        """Seconds the oldest utterance waiting for a worker has waited (0: none waits)."""
        with self._queue_cv:
            return self._queue_age()

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

    def drain(self, timeout: float) -> bool:
        """Finishes every call quickly, for a stopping process: utterances still waiting for
        a worker are dropped (counted like queue drops), decodes still running after half of
        `timeout` are given up, and the calls are summarised with what they have.

        Args:
            timeout: Seconds to take at most.

        Returns:
            True when every call was summarised in time.
        """
        deadline = time.monotonic() + timeout
        with self._queue_cv:
            self._draining = True
            waiting, self._queue = self._queue, []
            self.dropped_utterances += len(waiting)
        if waiting:
            log.warning("stopping: %d utterances waiting for transcription dropped", len(waiting))
        for _, call, utterance in waiting:
            self._post(self._deliver, call, utterance, None, 0.0)
        if self.wait_idle(timeout / 2):
            return True
        with self._calls_lock:
            calls = list(self._calls.values())
        for call in calls:
            if call.ending_reason is None:  # its source did not end it: a stuck source
                self._post(self._end, call, "stopped")
            with call.lock:
                running = [u for c in call.channels.values()
                           for u in c.pending.values() if u.index not in c.ready]
            if running:
                log.warning("stopping: call %s: %d utterances still being transcribed given up",
                            call.info.call_id, len(running))
            for utterance in running:
                self._post(self._deliver, call, utterance, None, 0.0)
        return self.wait_idle(max(0.0, deadline - time.monotonic()))

    def close(self, timeout: float | None = None) -> bool:
        """Stops the workers once the queue is empty and the dispatcher once it has
        delivered everything; with a `timeout`, waits at most that long (the threads are
        daemons: a decode that never returns does not keep the process alive).

        Returns:
            True when every thread stopped; False when one is still running (a decode: the
            model must then not be freed under it, so a command exits with `os._exit`).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._queue_cv:
            self._closing = True
            self._queue_cv.notify_all()
        for worker in self._workers:
            worker.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        with self._tasks_cv:
            self._stop_dispatch = True
            self._tasks_cv.notify_all()
        self._dispatcher.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in (*self._workers, self._dispatcher))
