"""The monitoring service assembled: sources → pipeline → rules → store, prompts, metrics.

`Monitor` owns the long-lived parts (the model, the rule pack, the call store, the prompt
server, the metrics exporter) and runs sources into one `Pipeline`. `qa run`, `qa score`,
`qa backtest` and `make demo` all go through it, so a replayed recording is checked exactly
as the live call was.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from qa.models import DEFAULT_MODEL
from qa.pipeline import Pipeline, PipelineOptions
from qa.sources.base import Source, SourceSink
from qa.types import (
    AudioChunk,
    CallInfo,
    CallSummary,
    Event,
    PipelineListener,
    Segment,
    Speaker,
    TranscribeBatchFn,
    TranscribeFn,
)

if TYPE_CHECKING:
    from qa.cluster import RemoteOptions
    from qa.prompts import PromptOptions
    from qa.recordings import RecordingOptions
    from qa.store import StoreOptions

log = logging.getLogger("qa.monitor")


@dataclass(frozen=True)
class MonitorOptions:
    """What the service runs with.

    Attributes:
        pipeline: Front end, workers, queue and language.
        model: Whisper model name or directory.
        rules: A rule pack (YAML) to check every call against; None checks nothing.
        store: Where calls are stored (a `qa.store.StoreOptions`); None stores nothing.
        prompts: The agent prompt server (a `qa.prompts.PromptOptions`); None serves none.
        metrics_port: Port of the Prometheus exporter; None exports nothing.
        metrics_host: Address the exporter binds (loopback unless told otherwise).
        metrics_agent_label: Label metrics per agent (switch off for very large floors).
        agents: Agent ids known up front (configuration, sources), so that their metrics
            series exist from the first scrape.
        stop_timeout: Seconds `run` takes at most, once told to stop, to end every call with
            a summary (a stop signal must end the process within 5 s, whatever hangs);
            closing then waits only for what is left of them (the recorder at least 0.5 s).
        asr: Remote recognition (a `qa.cluster.RemoteOptions`): utterances go to `qa worker`
            processes through NATS JetStream and no model is loaded here; None decodes here.
        recordings: Call recordings and retention (a `qa.recordings.RecordingOptions`); None
            records nothing and prunes nothing.
    """

    pipeline: PipelineOptions = field(default_factory=PipelineOptions)
    model: str = DEFAULT_MODEL
    rules: Path | None = None
    store: StoreOptions | None = None
    prompts: PromptOptions | None = None
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    metrics_agent_label: bool = True
    agents: tuple[str, ...] = ()
    stop_timeout: float = 3.5
    asr: RemoteOptions | None = None
    recordings: RecordingOptions | None = None


class StoreListener(PipelineListener):
    """Writes every call, final segment, event and scorecard to the call store as it happens,
    so a process killed mid-call loses at most the utterance in flight."""

    def __init__(self, store) -> None:
        self.store = store
        # Calls the store refused (an id already stored): nothing of theirs may be written,
        # or it would be added to the earlier call.
        self._refused: set[str] = set()

    def call_started(self, call: CallInfo) -> None:
        from qa.errors import StoreError

        try:
            self.store.start_call(call)
        except StoreError:
            self._refused.add(call.call_id)
            raise

    def segment(self, segment: Segment, latency: float) -> None:
        if segment.call_id not in self._refused:
            self.store.add_segment(segment)

    def event(self, event: Event) -> None:
        if event.call_id not in self._refused:
            self.store.add_event(event)

    def call_ended(self, summary: CallSummary) -> None:
        if summary.call_id in self._refused:
            self._refused.discard(summary.call_id)
            return
        self.store.end_call(summary.call_id, duration=summary.duration,
                            category=summary.category, reason=summary.reason)
        if summary.scorecard is not None:
            self.store.save_scorecard(summary.scorecard)


class Monitor:
    """The running service. Use as a context manager; `run(sources)` blocks until they end.

    Args:
        options: What to run with.
        listeners: Extra receivers (the console printer, tests), notified after the store.
        transcriber: An already loaded `qa.asr.Transcriber` to share (else one is loaded).
    """

    def __init__(
        self,
        options: MonitorOptions,
        listeners: Sequence[PipelineListener] = (),
        transcriber=None,
    ) -> None:
        from qa.asr import Transcriber, TranscriberOptions

        self.options = options
        self.pack = None
        if options.rules is not None:
            from qa.rules import load_pack

            self.pack = load_pack(options.rules)
        language = options.pipeline.language
        if language is None and self.pack is not None and self.pack.language != "auto":
            # Detection costs ~1 s per utterance; the pack says what the centre speaks.
            language = self.pack.language
        self.language = language
        # One concurrent decode per pipeline worker, each on the one thread every decode
        # gets (TranscriberOptions.cpu_threads): the thread count changes what is heard, the
        # worker count must not.
        workers = max(1, options.pipeline.workers)
        self.transcriber = None if options.asr is not None else transcriber or Transcriber(
            TranscriberOptions(model=options.model, language=language, num_workers=workers)
        )
        self._closers: list = []
        all_listeners: list[PipelineListener] = []
        self.store = None
        if options.store is not None:
            from qa.store import CallStore

            self.store = CallStore(options.store)
            self._closers.append(self.store.close)
            all_listeners.append(StoreListener(self.store))
            self._close_interrupted()
        self.recorder = None
        if options.recordings is not None:
            self.recorder = self._recordings(options.recordings, all_listeners)
        self.prompt_server = None
        if options.prompts is not None:
            from qa.prompts import PromptListener, PromptServer

            self.prompt_server = PromptServer(options.prompts)
            self.prompt_server.start()
            self._closers.append(self.prompt_server.stop)
            all_listeners.append(PromptListener(self.prompt_server))
        self.metrics = None
        self.metrics_server = None
        if options.metrics_port is not None:
            from prometheus_client import CollectorRegistry

            from qa.metrics import MetricsListener, MetricsOptions, MetricsServer, QAMetrics

            registry = CollectorRegistry()
            self.metrics = QAMetrics(
                registry, MetricsOptions(agent_label=options.metrics_agent_label)
            )
            self.metrics_server = MetricsServer(
                registry, options.metrics_host, options.metrics_port
            ).start()
            self._closers.append(self.metrics_server.stop)
            all_listeners.append(MetricsListener(self.metrics))
            pack = self.pack
            self.metrics.prepare(
                rules=pack.rule_ids() if pack else (),
                steps=[step.id for step in pack.steps] if pack else (),
                forbidden=[rule.id for rule in pack.forbidden] if pack else (),
                agents=[agent for agent in options.agents if agent],
            )
        all_listeners += listeners
        rules = None
        if self.pack is not None:
            from qa.rules import CallRules, build_intents, build_matcher

            matcher = build_matcher(self.pack)
            # Loaded before the first call (the encoder and the pack's classifiers, ~1-2 s),
            # so the first segments are not held up; matching runs on the pipeline's
            # dispatcher thread, never on the transcription worker.
            intents = build_intents(self.pack)
            pack = self.pack

            def rules(call: CallInfo) -> CallRules:
                return CallRules(pack, call.call_id, call.agent_id, matcher=matcher,
                                 intents=intents or False)

        self.remote = None
        transcribe: TranscribeFn | None = None
        transcribe_batch: TranscribeBatchFn | None = None
        transcribe_cheap: TranscribeBatchFn | None = None
        if options.asr is not None:
            from qa.cluster.remote import RemoteTranscriber

            self.remote = RemoteTranscriber(
                options.asr, self.metrics.remote_round_trip.observe if self.metrics else None,
                self.metrics.remote_decode.observe if self.metrics else None,
            ).start()
            self._closers.append(self.remote.close)
        else:
            from qa.batching import CHEAP, BatchTranscriber

            # Short-window batched decoding (docs/capacity.md): a lone utterance takes it
            # too, as faster-whisper's 30 s window costs ~1 s per decode whatever the length.
            batcher = BatchTranscriber(self.transcriber)
            transcribe = batcher.transcribe
            transcribe_batch = batcher.transcribe_batch
            # The overload policy's cheap decode (qa.overload): beam 1, no sampled retry.
            transcribe_cheap = BatchTranscriber(self.transcriber, CHEAP).transcribe_batch
            if self.metrics is not None:
                transcribe = self.metrics.timed(transcribe)
                transcribe_batch = self.metrics.timed_batch(transcribe_batch)
                transcribe_cheap = self.metrics.timed_batch(transcribe_cheap)
        self.pipeline = Pipeline(
            transcribe,
            PipelineOptions(
                frontend=options.pipeline.frontend,
                workers=options.pipeline.workers,
                queue_size=options.pipeline.queue_size,
                language=language,
                max_batch=options.pipeline.max_batch,
                batch_wait_ms=options.pipeline.batch_wait_ms,
                overload=options.pipeline.overload,
            ),
            listeners=all_listeners,
            rules=rules,
            transcribe_batch=transcribe_batch,
            submit=self.remote.submit if self.remote is not None else None,
            transcribe_cheap=transcribe_cheap,
        )
        if self.metrics is not None:
            self.metrics.watch_pipeline(self.pipeline)
            if self.remote is not None:
                self.metrics.watch_remote(self.remote)
            if self.store is not None:
                self.metrics.watch_store(self.store)
            if self.recorder is not None:
                self.metrics.watch_recorder(self.recorder)
        self._stopped = False
        self._stop_deadline = 0.0
        self.closed_cleanly = True

    def _recordings(self, options, listeners: list[PipelineListener]):
        """Prunes calls past retention, then starts the recorder (None when off). It listens
        right after the store, so a call's end is stored before its recording."""
        from qa.recordings import Recorder, default_directory, prune

        directory = options.directory or default_directory(
            self.store.options.path if self.store is not None else None)
        recorder = Recorder(options, directory, self.store) if options.enabled else None
        if recorder is not None:
            self._closers.append(lambda: recorder.close(self._after_stop(0.5)))
            listeners.append(recorder)
        prune(self.store, directory, options.retention_days, recorder=recorder)
        return recorder

    def _close_interrupted(self) -> None:
        """Closes the calls a killed or crashed run left open, scored from what was stored
        when a rule pack is loaded."""
        rescore = None
        if self.pack is not None:
            from qa.rules.scoring import score

            pack = self.pack

            def rescore(record):
                return score(pack, record.events, record.info.call_id)

        assert self.store is not None
        closed = self.store.close_interrupted(rescore)
        if closed:
            log.warning("closed %d calls left open by runs that died: %s", len(closed),
                        ", ".join(closed))

    def run(self, sources: Sequence[Source], stop: threading.Event | None = None) -> None:
        """Runs every source into the pipeline until all end or `stop` is set, then waits
        until every call is transcribed, checked, scored and stored.

        Once `stop` is set (or Ctrl-C raises KeyboardInterrupt here), it returns within about
        `options.stop_timeout` seconds whatever hangs: the store stops retrying (writes go to
        its spool), utterances not yet transcribed are dropped and counted, and every call
        still open is summarised with what it has.
        """
        stop = stop or threading.Event()
        threads = []
        for source in sources:
            if self.metrics is not None:
                self.metrics.watch_source(_kind(source), source)
            thread = threading.Thread(
                target=self._run_source, args=(source, stop), name=source.name, daemon=True
            )
            thread.start()
            threads.append(thread)
        try:
            while any(thread.is_alive() for thread in threads):
                if stop.wait(0.1):
                    break
            while not stop.is_set():
                if self.pipeline.wait_idle(0.1):
                    return
        except KeyboardInterrupt:
            stop.set()
        self._stop(threads)

    def _stop(self, threads: list[threading.Thread]) -> None:
        began = time.monotonic()
        deadline = self._stop_deadline = began + self.options.stop_timeout
        self._stopped = True
        if self.store is not None:
            self.store.interrupt()
        for thread in threads:  # the sources end their calls (they check `stop` often)
            thread.join(max(0.0, min(1.0, deadline - time.monotonic())))
        if not self.pipeline.drain(max(0.5, deadline - time.monotonic())):
            log.warning("stopping: %d calls could not be summarised in time",
                        self.pipeline.active_calls)
        log.info("stopped in %.2f s", time.monotonic() - began)

    def _run_source(self, source: Source, stop: threading.Event) -> None:
        sink: SourceSink = self.pipeline
        if self.recorder is not None:
            from qa.recordings import RecordingSink

            sink = RecordingSink(self.pipeline, self.recorder)
        tracked = _OpenCalls(sink)
        try:
            source.run(tracked, stop)
        except Exception as exc:  # one failing source must not stop the others
            log.exception("source %s failed", source.name)
            # Its calls would stay open for ever and the run would never finish: end them
            # with the reason, so they are summarised, stored and scored from what was heard.
            for call_id in tracked.open_calls():
                tracked.call_ended(call_id, f"error: source failed: {exc!r}"[:200])

    def close(self) -> None:
        """Stops the workers and the servers, closes the store (after a stop: without
        waiting for a decode that is still running)."""
        #: False when a transcription thread was still running at close (after a stop).
        # After a stop, a decode still running was given up: waiting for it only keeps the
        # model from being freed under it at exit (`closed_cleanly` tells the caller, and
        # `qa run` then leaves with `os._exit`), so it gets what is left of the budget, <= 0.5 s.
        pipeline_wait = self._after_stop(0.1)
        self.closed_cleanly = self.pipeline.close(
            timeout=None if pipeline_wait is None else min(0.5, pipeline_wait))
        for closer in reversed(self._closers):
            closer()

    def _after_stop(self, least: float) -> float | None:
        """How long a closing step may wait after a stop: what is left of the stop's budget
        (the waits after it used to add up to over a second on a busy machine, past the 5 s a
        stop signal may take), at least `least` seconds; None (no limit) without a stop."""
        if not self._stopped:
            return None
        return max(least, self._stop_deadline - time.monotonic())

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _kind(source: Source) -> str:
    name = source.name
    for prefix, kind in (("rtp", "rtp"), ("sound", "soundcard"), ("sip", "sip"),
                         ("audiosocket", "audiosocket"), ("ws", "websocket")):
        if name.startswith(prefix):
            return kind
    return "file"


class _OpenCalls:
    """A sink in front of the pipeline that knows which of its source's calls are open."""

    def __init__(self, sink: SourceSink) -> None:
        self._sink = sink
        self._open: dict[str, None] = {}
        self._lock = threading.Lock()

    def open_calls(self) -> list[str]:
        with self._lock:
            return list(self._open)

    def call_started(self, call: CallInfo) -> None:
        self._sink.call_started(call)
        with self._lock:
            self._open[call.call_id] = None

    def audio(self, chunk: AudioChunk) -> None:
        self._sink.audio(chunk)

    def dtmf(
        self, call_id: str, channel: Speaker, digit: str, time: float, duration: float
    ) -> None:
        self._sink.dtmf(call_id, channel, digit, time, duration)

    def call_ended(self, call_id: str, reason: str) -> None:
        with self._lock:
            self._open.pop(call_id, None)
        self._sink.call_ended(call_id, reason)
