"""Every Prometheus metric of the service, defined in this one place (docs/metrics.md).

`QAMetrics` defines the metrics on a registry the caller passes (tests use a fresh
`CollectorRegistry`). `MetricsListener` updates them from the pipeline's notifications,
`QAMetrics.observe_scorecard` from finished scorecards, and `QAMetrics.timed` wraps the
transcription step to measure its real-time factor. Counters that the hot path owns (the
pipeline's queue, the sources' packet and frame counters) are not pushed per frame: a collector
reads them when Prometheus scrapes.

Labels stay bounded: rule ids come from the rule pack, speakers and source kinds are fixed
sets, agents are capped (`MetricsOptions.max_agents`) and can be folded into one value
(`agent_label=False`). A call id never appears in a label; rule events carry it as an
exemplar (visible in the OpenMetrics format) so a board can link a spike to the call.
"""

from __future__ import annotations

import logging
import platform
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, Summary
from prometheus_client.exposition import start_http_server
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from qa.pipeline import CallSummary, PipelineListener, TranscribeBatchFn, TranscribeFn
from qa.sources.base import CallInfo
from qa.types import Event, EventKind, Scorecard, Segment, Severity, Speaker, Utterance

log = logging.getLogger("qa.metrics")

#: Handle-time buckets as fractions of the limit: dense around the limit, where supervisors
#: act (for 300 s: 30, 60, 120, 180, 240, 270, 300, 330, 360, 480, 600).
HANDLE_TIME_FRACTIONS = (0.1, 0.2, 0.4, 0.6, 0.8, 0.9, 1.0, 1.1, 1.2, 1.6, 2.0)
#: End of speech to final text: a live prompt is useful within a few seconds.
ASR_LATENCY_BUCKETS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.5, 10.0)
#: Transcription seconds per second of audio; above 1 the workers fall behind.
RTF_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
#: Call scores, with edges on the pay-band bounds (DESIGN.md).
SCORE_BUCKETS = (50.0, 60.0, 70.0, 75.0, 80.0, 85.0, 90.0, 95.0, 100.0)
#: Why a call ended, folded to a fixed set (error reasons carry free text after the colon).
END_REASONS = {"hangup": "hangup", "timeout": "timeout", "end of file": "end_of_file",
               "stopped": "stopped", "error": "error"}
#: Source kinds a source may be watched as.
SOURCE_KINDS = ("rtp", "soundcard", "file", "websocket", "sip", "audiosocket")
#: Agent label value when the agent label is off, and for agents past `max_agents`.
ALL_AGENTS = "all"
OTHER_AGENTS = "other"
#: Stages a recording can fail at (`qa.recordings.FAILURE_STAGES`), the bounded label set.
RECORDING_FAILURE_STAGES = ("capture", "encode", "store", "prune")
#: Exemplar label sets are limited to 128 characters by OpenMetrics.
_EXEMPLAR_MAX = 120


@dataclass(frozen=True)
class MetricsOptions:
    """What the exporter measures and how finely.

    Attributes:
        agent_label: Label per-agent metrics with the agent id. Off for large floors: every
            per-agent series is then reported once, as agent `all`.
        max_agents: Distinct agent label values before further agents are reported as
            `other`, so a misconfigured source cannot explode the series count.
        handle_time_limit: The handle-time limit in seconds; the handle-time buckets are
            placed around it (`HANDLE_TIME_FRACTIONS`).
        dead_air_min_s: Silence (nobody speaking) shorter than this is a pause, not dead air.
    """

    agent_label: bool = True
    max_agents: int = 500
    handle_time_limit: float = 300.0
    dead_air_min_s: float = 5.0

    def __post_init__(self) -> None:
        if self.handle_time_limit <= 0:
            raise ValueError("MetricsOptions: handle_time_limit must be positive")
        if self.max_agents < 1:
            raise ValueError("MetricsOptions: max_agents must be at least 1")
        if self.dead_air_min_s < 0:
            raise ValueError("MetricsOptions: dead_air_min_s must be >= 0")


class PipelineLike(Protocol):
    """What the collector reads from a `qa.pipeline.Pipeline` at scrape time."""

    @property
    def queue_depth(self) -> int: ...

    dropped_utterances: int
    listener_errors: Mapping[str, int]  # exceptions raised by listeners, by listener class
    rule_errors: int  # exceptions raised by calls' rules


class StoreLike(Protocol):
    """What the collector reads from a `qa.store.CallStore` at scrape time."""

    spooled: int  # writes that went to the spool because the database kept failing
    write_retries: int  # failed write attempts that were retried


class RecorderLike(Protocol):
    """What the collector reads from a `qa.recordings.Recorder` at scrape time."""

    written: int  # recordings written
    failures: Mapping[str, int]  # failed recordings by stage (capture, encode, store, prune)


class StatsSource(Protocol):
    """Anything with `Source.stats()`: counters since start, read at scrape time."""

    def stats(self) -> Mapping[str, int]: ...


#: Source stat keys -> (collector metric, help). Keys are summed per source kind; ring
#: drops are reported per channel by the sound card (`ring_dropped_agent`, ...).
_SOURCE_COUNTERS: dict[str, tuple[str, str]] = {
    "frames": ("qa_source_audio_samples", "Audio samples captured, all channels summed."),
    "samples": ("qa_source_audio_samples", "Audio samples captured, all channels summed."),
    "packets": ("qa_rtp_packets_received", "RTP packets received."),
    "lost": ("qa_rtp_packets_lost", "RTP packets never received (sequence gaps)."),
    "late": ("qa_rtp_packets_late", "RTP packets that arrived after their audio was played."),
    "duplicate": ("qa_rtp_packets_duplicate", "RTP packets received twice."),
    "malformed": ("qa_rtp_packets_malformed", "Datagrams that were not valid RTP."),
    # Every other counter of `qa.sources.rtp.COUNTERS` (tests/metrics/test_rtp_exporter.py).
    "bytes": ("qa_source_received_bytes", "Bytes of datagrams received."),
    "calls": ("qa_source_calls", "Calls the source started."),
    "audio_packets": ("qa_rtp_packets_audio", "RTP packets whose G.711 audio was played."),
    "unknown_payload": ("qa_rtp_packets_unknown_payload",
                        "RTP packets of a payload type that is neither G.711 nor DTMF."),
    "unknown_ssrc": ("qa_rtp_packets_unknown_ssrc",
                     "RTP packets of an SSRC no channel takes (unmapped, or both taken)."),
    "foreign_source": ("qa_rtp_packets_foreign_source",
                       "RTP packets from an address other than the one their stream is locked "
                       "to (hijack attempts)."),
    "rtcp": ("qa_rtp_rtcp_packets", "RTCP packets received on an RTP port (ignored)."),
    "dtmf": ("qa_rtp_dtmf_keys", "Telephone-event (RFC 4733) key presses."),
    "restarts": ("qa_rtp_stream_restarts", "Streams restarted (new SSRC or a large jump)."),
    "filled_samples": ("qa_rtp_filled_samples",
                       "8 kHz samples of silence put in for lost or missing RTP audio."),
    "clock_jumps": ("qa_rtp_clock_jumps",
                    "RTP packets whose timestamp jumped further than the wall clock allows."),
    "gap_rejected": ("qa_rtp_gap_rejected_samples",
                     "8 kHz samples of timestamp jumps not filled with silence."),
    "overflows": ("qa_soundcard_overflows", "Sound-card input overflows reported by PortAudio."),
    "ring_dropped": ("qa_ring_dropped_samples",
                     "Samples dropped because a capture ring buffer was full."),
}


class QAMetrics:
    """The service's metrics on one registry.

    Args:
        registry: Where the metrics are registered (a fresh `CollectorRegistry` in tests).
        options: Labelling and bucket settings.
    """

    def __init__(self, registry: CollectorRegistry, options: MetricsOptions | None = None) -> None:
        self.registry = registry
        self.options = options or MetricsOptions()
        limit = self.options.handle_time_limit
        r = registry

        self.calls_active = Gauge("qa_calls_active", "Calls in progress.", registry=r)
        self.calls_started = Counter("qa_calls_started", "Calls started.", registry=r)
        self.calls_ended = Counter("qa_calls_ended", "Calls ended, by reason.", ["reason"],
                                   registry=r)
        self.calls_compliant = Counter(
            "qa_calls_compliant", "Ended calls with no violation (no event that took points off).",
            registry=r)
        self.handle_time = Histogram(
            "qa_call_handle_time_seconds", "Call length on the call clock, at its end.",
            buckets=tuple(round(f * limit, 3) for f in HANDLE_TIME_FRACTIONS), registry=r)
        self.handle_time_limit = Gauge(
            "qa_handle_time_limit_seconds", "The configured handle-time limit.", registry=r)
        self.handle_time_limit.set(limit)
        self.handle_time_warnings = Counter(
            "qa_handle_time_warnings", "Handle-time warnings raised.", registry=r)
        self.handle_time_breaches = Counter(
            "qa_handle_time_breaches", "Calls that passed the handle-time limit.", registry=r)
        self.calls_past_warning = Gauge(
            "qa_calls_past_warning", "Calls in progress that got a handle-time warning.",
            registry=r)
        self.calls_past_limit = Gauge(
            "qa_calls_past_limit", "Calls in progress past the handle-time limit.", registry=r)

        self.rule_events = Counter(
            "qa_rule_events", "Rule events, by rule, kind and severity (exemplar: call id).",
            ["rule", "kind", "severity"], registry=r)
        self.steps_done = Counter("qa_script_steps_done", "Script steps done, by step.",
                                  ["step"], registry=r)
        self.steps_missed = Counter("qa_script_steps_missed", "Script steps missed, by step.",
                                    ["step"], registry=r)
        self.forbidden_hits = Counter(
            "qa_forbidden_phrase_hits", "Forbidden-phrase hits, by rule (never the text).",
            ["rule"], registry=r)
        self.violations = Counter(
            "qa_violations", "Events that took points off, by rule.", ["rule"], registry=r)
        self.prompts = Counter("qa_prompts_sent", "Prompts sent to agents, by event kind.",
                               ["kind"], registry=r)
        self.dtmf = Counter("qa_dtmf_presses", "Telephone key presses (digits never kept).",
                            registry=r)

        self.score = Histogram("qa_call_score_points", "Call QA scores (0-100).",
                               buckets=SCORE_BUCKETS, registry=r)
        self.score_bands = Counter("qa_call_score_band", "Scored calls by pay band.", ["band"],
                                   registry=r)

        self.talk = Counter("qa_talk_seconds", "Recognised speech, by speaker.", ["speaker"],
                            registry=r)
        self.dead_air = Counter(
            "qa_dead_air_seconds", "Silences with nobody speaking, longer than the dead-air "
            "minimum, measured at call end.", registry=r)
        self.talk_over = Counter("qa_talk_over_seconds",
                                 "Time agent and customer spoke at once, measured at call end.",
                                 registry=r)
        self.audio_gaps = Counter(
            "qa_audio_gap_seconds", "Audio missing from sources and filled with silence.",
            registry=r)

        self.agent_calls = Counter("qa_agent_calls", "Calls handled, by agent.", ["agent"],
                                   registry=r)
        self.agent_violations = Counter(
            "qa_agent_violations", "Events that took points off, by agent.", ["agent"],
            registry=r)
        self.agent_steps_missed = Counter(
            "qa_agent_script_steps_missed", "Script steps missed, by agent.", ["agent"],
            registry=r)
        self.agent_forbidden = Counter(
            "qa_agent_forbidden_phrase_hits", "Forbidden-phrase hits, by agent.", ["agent"],
            registry=r)
        self.agent_score = Summary("qa_agent_score_points", "Call scores, by agent.", ["agent"],
                                   registry=r)

        self.asr_latency = Histogram(
            "qa_asr_latency_seconds", "End of speech to final text, per final segment.",
            buckets=ASR_LATENCY_BUCKETS, registry=r)
        self.asr_rtf = Histogram(
            "qa_asr_real_time_factor", "Transcription time over audio length, per utterance.",
            buckets=RTF_BUCKETS, registry=r)
        self.asr_audio = Counter("qa_asr_audio_seconds", "Audio transcribed.", registry=r)
        self.asr_busy = Counter("qa_asr_busy_seconds", "Wall time spent transcribing.",
                                registry=r)

        self.build = Info("qa_build", "Version of the service and of its runtime.", registry=r)
        self.build.info({"version": _version(), "python": platform.python_version()})

        self._agents = _AgentBook(self.options)
        self._collector = _HotCollector(self._agents)
        registry.register(self._collector)

    def prepare(
        self,
        *,
        rules: Iterable[str] = (),
        steps: Iterable[str] = (),
        forbidden: Iterable[str] = (),
        agents: Iterable[str] = (),
    ) -> None:
        """Creates every known label value at zero before the first scrape.

        Prometheus takes a series' first sample as the baseline of `increase()`/`rate()`, so
        a labelled counter born at 1 would lose its first count on every board. Bands, end
        reasons, speakers and prompt kinds are always known; rule, step and agent ids come
        from the rule pack and the configuration.
        """
        from qa.rules.scoring import BANDS

        for reason in (*END_REASONS.values(), "other"):
            self.calls_ended.labels(reason)
        for _, name in BANDS:
            self.score_bands.labels(name)
        for speaker in Speaker:
            self.talk.labels(str(speaker))
        for kind in EventKind:
            self.prompts.labels(str(kind))
        for rule in (*rules, *steps, *forbidden):
            self.violations.labels(rule)
        for step in steps:
            self.steps_done.labels(step)
            self.steps_missed.labels(step)
        for rule in forbidden:
            self.forbidden_hits.labels(rule)
        for agent_id in agents:
            label = self.agent(agent_id)
            for counter in (self.agent_calls, self.agent_violations, self.agent_steps_missed,
                            self.agent_forbidden):
                counter.labels(label)
            self.agent_score.labels(label)

    # -- registration of things read at scrape time -----------------------------------------

    def watch_pipeline(self, pipeline: PipelineLike) -> None:
        """Reads the pipeline's queue depth, dropped utterances and isolated listener and
        rule errors at every scrape."""
        self._collector.add_pipeline(pipeline)

    def watch_store(self, store: StoreLike) -> None:
        """Reads the call store's write retries and spooled writes at every scrape."""
        self._collector.store = store

    def watch_recorder(self, recorder: RecorderLike) -> None:
        """Reads the recorder's written and failed recordings at every scrape."""
        self._collector.recorder = recorder

    def watch_source(self, kind: str, source: StatsSource) -> None:
        """Reads `source.stats()` at every scrape, summed into the series of `kind`.

        Args:
            kind: One of `SOURCE_KINDS` (the only label a source's counters get).
            source: The source; keep it watched for the life of the process, or call
                `unwatch_source` so its final counts are kept.
        """
        if kind not in SOURCE_KINDS:
            raise ValueError(f"source kind must be one of {SOURCE_KINDS}, got {kind!r}")
        self._collector.add_source(kind, source)

    def unwatch_source(self, source: StatsSource) -> None:
        """Stops reading a source, keeping its last counts so the counters never go back."""
        self._collector.remove_source(source)

    # -- updates ----------------------------------------------------------------------------

    def agent(self, agent_id: str) -> str:
        """The label value for `agent_id` under the current options."""
        return self._agents.label(agent_id)

    def observe_scorecard(self, scorecard: Scorecard, agent_id: str) -> None:
        """Records a finished call's score, its band and the agent's score."""
        self.score.observe(scorecard.total)
        if scorecard.band:
            self.score_bands.labels(scorecard.band).inc()
        self.agent_score.labels(self.agent(agent_id)).observe(scorecard.total)

    def timed(self, transcribe: TranscribeFn) -> TranscribeFn:
        """Wraps the transcription step to record its real-time factor per utterance."""

        def timed_transcribe(utterance: Utterance, language: str | None) -> list[Segment]:
            began = time.perf_counter()
            try:
                return transcribe(utterance, language)
            finally:
                self._observe_decode(time.perf_counter() - began, (utterance,))

        return timed_transcribe

    def timed_batch(self, transcribe_batch: TranscribeBatchFn) -> TranscribeBatchFn:
        """Wraps the batched step: one decode of several utterances, its time shared among
        them in proportion to their audio."""

        def timed_transcribe_batch(
            utterances: Sequence[Utterance], language: str | None
        ) -> list[list[Segment]]:
            began = time.perf_counter()
            try:
                return transcribe_batch(utterances, language)
            finally:
                self._observe_decode(time.perf_counter() - began, utterances)

        return timed_transcribe_batch

    def _observe_decode(self, busy: float, utterances: Sequence[Utterance]) -> None:
        audio = sum(u.duration for u in utterances)
        self.asr_busy.inc(busy)
        self.asr_audio.inc(audio)
        if audio > 0:
            rtf = busy / audio
            for _ in utterances:
                self.asr_rtf.observe(rtf)


def _version() -> str:
    try:
        return metadata.version("qa")
    except metadata.PackageNotFoundError:
        return "unknown"


class _AgentBook:
    """Agent label values and the on-call / logged-in clocks behind talk utilisation.

    Logged-in time runs from the agent's first call in this process (or `login`), because
    the service sees no login system; on-call time is the wall time of the agent's calls,
    the finished ones plus the running ones up to the scrape.
    """

    def __init__(self, options: MetricsOptions) -> None:
        self._options = options
        self._lock = threading.Lock()
        self._labels: dict[str, str] = {}
        self.logged_in_since: dict[str, float] = {}
        self.on_call_done: dict[str, float] = {}
        self.on_call_open: dict[str, dict[str, float]] = {}

    def label(self, agent_id: str) -> str:
        if not self._options.agent_label:
            return ALL_AGENTS
        value = self._labels.get(agent_id)
        if value is None:
            with self._lock:
                value = self._labels.get(agent_id)
                if value is None:
                    value = agent_id or "unknown"
                    if len(self._labels) >= self._options.max_agents:
                        value = OTHER_AGENTS
                    self._labels[agent_id] = value
        return value

    def call_started(self, label: str, call_id: str, now: float) -> None:
        with self._lock:
            self.logged_in_since.setdefault(label, now)
            self.on_call_done.setdefault(label, 0.0)
            self.on_call_open.setdefault(label, {})[call_id] = now

    def call_ended(self, label: str, call_id: str, now: float) -> None:
        with self._lock:
            began = self.on_call_open.get(label, {}).pop(call_id, None)
            if began is not None:
                self.on_call_done[label] = self.on_call_done.get(label, 0.0) + now - began

    def snapshot(self, now: float) -> list[tuple[str, float, float]]:
        """(agent, on-call seconds, logged-in seconds) for every agent seen."""
        with self._lock:
            out = []
            for label, since in self.logged_in_since.items():
                open_calls = self.on_call_open.get(label, {})
                running = sum(now - began for began in open_calls.values())
                on_call = self.on_call_done.get(label, 0.0) + running
                out.append((label, on_call, now - since))
            return out


class _HotCollector:
    """Reads counters owned by the hot path (pipelines, sources) and the agent clocks at
    scrape time, so nothing is pushed per frame or per packet."""

    def __init__(self, agents: _AgentBook) -> None:
        self._agents = agents
        self._lock = threading.Lock()
        self._pipelines: list[PipelineLike] = []
        self._sources: list[tuple[str, StatsSource]] = []
        self._retired: dict[tuple[str, str], int] = {}
        self.store: StoreLike | None = None
        self.recorder: RecorderLike | None = None

    def add_pipeline(self, pipeline: PipelineLike) -> None:
        with self._lock:
            self._pipelines.append(pipeline)

    def add_source(self, kind: str, source: StatsSource) -> None:
        with self._lock:
            self._sources.append((kind, source))

    def remove_source(self, source: StatsSource) -> None:
        with self._lock:
            for i, (kind, watched) in enumerate(self._sources):
                if watched is source:
                    for key, value in _source_totals(kind, source.stats()).items():
                        self._retired[key] = self._retired.get(key, 0) + value
                    del self._sources[i]
                    return

    def describe(self) -> Iterable[Metric]:
        return list(self._families({}, [], []))

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            pipelines = list(self._pipelines)
            sources = list(self._sources)
            totals = dict(self._retired)
        for kind, source in sources:
            for key, value in _source_totals(kind, source.stats()).items():
                totals[key] = totals.get(key, 0) + value
        return list(self._families(totals, pipelines, self._agents.snapshot(time.monotonic())))

    def _families(
        self,
        totals: dict[tuple[str, str], int],
        pipelines: list[PipelineLike],
        agents: list[tuple[str, float, float]],
    ) -> Iterator[Metric]:
        queue = GaugeMetricFamily("qa_asr_queue_depth", "Utterances waiting for a worker.")
        queue.add_metric([], sum(p.queue_depth for p in pipelines))
        yield queue
        dropped = CounterMetricFamily(
            "qa_utterances_dropped", "Utterances dropped by the queue policy (queue full).")
        dropped.add_metric([], sum(p.dropped_utterances for p in pipelines))
        yield dropped
        # Isolated failures (issue 10): a listener or a call's rules raised and the pipeline
        # carried on. Listener labels are class names, a fixed set.
        listener_errors = CounterMetricFamily(
            "qa_listener_errors", "Exceptions raised by pipeline listeners (store, console, "
            "metrics, prompts), by listener; each was logged and the pipeline carried on.",
            labels=["listener"])
        by_listener: dict[str, int] = {}
        for p in pipelines:
            for name, count in dict(p.listener_errors).items():
                by_listener[name] = by_listener.get(name, 0) + count
        for name, count in sorted(by_listener.items()):
            listener_errors.add_metric([name], count)
        yield listener_errors
        rule_errors = CounterMetricFamily(
            "qa_rule_errors", "Exceptions raised by a call's rules; the call went on unchecked.")
        rule_errors.add_metric([], sum(p.rule_errors for p in pipelines))
        yield rule_errors
        retries = CounterMetricFamily(
            "qa_store_write_retries", "Call-store writes that failed (lock held by another "
            "process, disk full, I/O error) and were retried.")
        spooled = CounterMetricFamily(
            "qa_store_spooled_writes", "Call-store writes kept in the spool file because the "
            "database kept failing; replayed once it takes writes again.")
        retries.add_metric([], self.store.write_retries if self.store is not None else 0)
        spooled.add_metric([], self.store.spooled if self.store is not None else 0)
        yield retries
        yield spooled
        # Recordings (qa.recordings): a failure never stops the call, so it must show here.
        written = CounterMetricFamily("qa_recordings_written", "Call recordings written.")
        failures = CounterMetricFamily(
            "qa_recording_failures", "Call recordings that failed, by stage (capture: the "
            "spool file could not be opened or written; encode; store: the path could not be "
            "recorded; prune: a retention delete failed); each was logged and the call went "
            "on.", labels=["stage"])
        recorder = self.recorder
        written.add_metric([], recorder.written if recorder is not None else 0)
        for stage in RECORDING_FAILURE_STAGES:
            failures.add_metric([stage], recorder.failures.get(stage, 0) if recorder else 0)
        yield written
        yield failures

        families = {
            name: CounterMetricFamily(name, help_text, labels=["source"])
            for name, help_text in _SOURCE_COUNTERS.values()
        }
        for (kind, name), value in sorted(totals.items()):
            families[name].add_metric([kind], value)
        yield from families.values()

        on_call = CounterMetricFamily("qa_agent_on_call_seconds", "Wall time on calls, by agent.",
                                      labels=["agent"])
        logged = CounterMetricFamily(
            "qa_agent_logged_in_seconds",
            "Wall time since the agent's first call in this process, by agent.", labels=["agent"])
        ratio = GaugeMetricFamily(
            "qa_agent_talk_utilisation_ratio",
            "On-call time over logged-in time since start, by agent (healthy: 0.69-0.74).",
            labels=["agent"])
        for label, seconds, since in agents:
            on_call.add_metric([label], seconds)
            logged.add_metric([label], since)
            ratio.add_metric([label], seconds / since if since > 0 else 0.0)
        yield on_call
        yield logged
        yield ratio


def _source_totals(kind: str, stats: Mapping[str, int]) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for key, value in stats.items():
        stat = "ring_dropped" if key.startswith("ring_dropped") else key
        target = _SOURCE_COUNTERS.get(stat)
        if target is not None:
            out[(kind, target[0])] = out.get((kind, target[0]), 0) + int(value)
    return out


class _CallState:
    __slots__ = ("agent", "warned", "breached", "violations", "speech")

    def __init__(self, agent: str) -> None:
        self.agent = agent
        self.warned = False
        self.breached = False
        self.violations = 0
        self.speech: dict[Speaker, list[tuple[float, float]]] = {}


class MetricsListener(PipelineListener):
    """Updates `QAMetrics` from the pipeline's notifications.

    A call's notifications never arrive concurrently (pipeline contract), so per-call state
    needs no lock; only the table of calls does.

    Args:
        metrics: The metrics to update.
    """

    def __init__(self, metrics: QAMetrics) -> None:
        self.metrics = metrics
        self._calls: dict[str, _CallState] = {}
        self._lock = threading.Lock()

    def call_started(self, call: CallInfo) -> None:
        m = self.metrics
        agent = m.agent(call.agent_id)
        with self._lock:
            self._calls[call.call_id] = _CallState(agent)
        m._agents.call_started(agent, call.call_id, time.monotonic())
        m.calls_active.inc()
        m.calls_started.inc()
        m.agent_calls.labels(agent).inc()

    def segment(self, segment: Segment, latency: float) -> None:
        m = self.metrics
        if latency > 0:
            m.asr_latency.observe(latency)
        length = segment.end - segment.start
        if length > 0:
            m.talk.labels(str(segment.speaker)).inc(length)
            state = self._calls.get(segment.call_id)
            if state is not None:
                state.speech.setdefault(segment.speaker, []).append((segment.start, segment.end))

    def event(self, event: Event) -> None:
        m = self.metrics
        exemplar = {"call_id": event.call_id[:_EXEMPLAR_MAX]}
        m.rule_events.labels(event.rule_id, str(event.kind), str(event.severity)).inc(
            exemplar=exemplar)
        state = self._calls.get(event.call_id)
        agent = state.agent if state is not None else m.agent("")
        kind = event.kind
        if kind == EventKind.STEP_DONE:
            m.steps_done.labels(event.rule_id).inc()
        elif kind == EventKind.STEP_MISSED:
            m.steps_missed.labels(event.rule_id).inc()
            m.agent_steps_missed.labels(agent).inc()
        elif kind == EventKind.FORBIDDEN_PHRASE:
            m.forbidden_hits.labels(event.rule_id).inc()
            m.agent_forbidden.labels(agent).inc()
        elif kind == EventKind.HANDLE_TIME_WARNING:
            m.handle_time_warnings.inc()
            if state is not None and not state.warned:
                state.warned = True
                m.calls_past_warning.inc()
        elif kind == EventKind.HANDLE_TIME_BREACH:
            m.handle_time_breaches.inc()
            if state is not None and not state.breached:
                state.breached = True
                m.calls_past_limit.inc()
        if event.points < 0:
            m.violations.labels(event.rule_id).inc()
            m.agent_violations.labels(agent).inc()
            if state is not None:
                state.violations += 1
        if is_prompt(event):
            m.prompts.labels(str(kind)).inc()

    def dtmf(self, call_id: str, channel: Speaker, digit: str, time: float) -> None:
        self.metrics.dtmf.inc()

    def call_ended(self, summary: CallSummary) -> None:
        m = self.metrics
        with self._lock:
            state = self._calls.pop(summary.call_id, None)
        agent = state.agent if state is not None else m.agent(summary.agent_id)
        m._agents.call_ended(agent, summary.call_id, time.monotonic())
        m.calls_active.dec()
        m.calls_ended.labels(end_reason(summary.reason)).inc()
        m.handle_time.observe(summary.duration)
        if summary.scorecard is not None:
            m.observe_scorecard(summary.scorecard, summary.agent_id)
        if summary.gap_seconds > 0:
            m.audio_gaps.inc(summary.gap_seconds)
        if state is None:
            return
        if state.warned:
            m.calls_past_warning.dec()
        if state.breached:
            m.calls_past_limit.dec()
        if state.violations == 0:
            m.calls_compliant.inc()
        dead, over = conversation_gaps(state.speech, summary.duration, m.options.dead_air_min_s)
        if dead > 0:
            m.dead_air.inc(dead)
        if over > 0:
            m.talk_over.inc(over)


def is_prompt(event: Event) -> bool:
    """Whether an event is shown to the agent as a prompt: it has a message and either asks
    for a step (`step_due`) or reports a problem (warning or critical)."""
    if not event.message:
        return False
    return event.kind == EventKind.STEP_DUE or event.severity != Severity.INFO


def end_reason(reason: str) -> str:
    """A call's end reason folded to the bounded label set (`END_REASONS` values, `other`)."""
    return END_REASONS.get(reason.split(":", 1)[0].strip(), "other")


def _union(intervals: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def conversation_gaps(
    speech: Mapping[Speaker, list[tuple[float, float]]], duration: float, dead_air_min: float
) -> tuple[float, float]:
    """Dead air and talk-over of a call from its speech stretches.

    Args:
        speech: (start, end) seconds of recognised speech per speaker.
        duration: Length of the call; silence up to it counts.
        dead_air_min: Silences shorter than this are pauses and do not count.

    Returns:
        (seconds nobody spoke in silences of at least `dead_air_min`,
        seconds agent and customer spoke at once).
    """
    everyone = _union(iv for stretches in speech.values() for iv in stretches)
    dead = 0.0
    cursor = 0.0
    for start, end in [*everyone, (max(duration, cursor), max(duration, cursor))]:
        if start - cursor >= dead_air_min:
            dead += start - cursor
        cursor = max(cursor, end)
    agent = _union(speech.get(Speaker.AGENT, ()))
    customer = _union(speech.get(Speaker.CUSTOMER, ()))
    over = 0.0
    i = j = 0
    while i < len(agent) and j < len(customer):
        lo = max(agent[i][0], customer[j][0])
        hi = min(agent[i][1], customer[j][1])
        if hi > lo:
            over += hi - lo
        if agent[i][1] < customer[j][1]:
            i += 1
        else:
            j += 1
    return dead, over


class MetricsServer:
    """Serves a registry's `/metrics` over HTTP (OpenMetrics when the scraper asks for it).

    Args:
        registry: The registry to expose.
        host: Address to listen on (loopback by default: metrics name agents).
        port: TCP port; 0 picks a free one (see `port` after `start`).
    """

    def __init__(self, registry: CollectorRegistry, host: str = "127.0.0.1", port: int = 9464
                 ) -> None:
        self.registry = registry
        self.host = host
        self.port = port
        self._server = None
        self._thread: threading.Thread | None = None

    def start(self) -> MetricsServer:
        """Starts serving in a daemon thread; returns self."""
        if self._server is not None:
            return self
        self._server, self._thread = start_http_server(self.port, self.host, self.registry)
        self.port = self._server.server_address[1]
        log.info("metrics on http://%s:%s/metrics", self.host, self.port)
        return self

    @property
    def url(self) -> str:
        """The `/metrics` address."""
        return f"http://{self.host}:{self.port}/metrics"

    def stop(self) -> None:
        """Stops serving and closes the socket."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = None
        self._thread = None

    def __enter__(self) -> MetricsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_metrics_server(
    registry: CollectorRegistry, host: str = "127.0.0.1", port: int = 9464
) -> MetricsServer:
    """Starts a `MetricsServer`; call `stop()` on the result to end it."""
    return MetricsServer(registry, host, port).start()


def metric_names(metrics: QAMetrics) -> set[str]:
    """Every sample name the metrics can expose (for checking dashboards and alert rules)."""
    families = [*metrics._collector.describe()]
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            families += value.describe()
    out: set[str] = set()
    for family in families:
        out.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
    return out


#: Sample-name suffixes of each metric type in the text exposition.
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("_count", "_sum", "_created"),
    "info": ("_info",),
}


__all__ = [
    "MetricsListener",
    "MetricsOptions",
    "MetricsServer",
    "QAMetrics",
    "conversation_gaps",
    "end_reason",
    "is_prompt",
    "metric_names",
    "start_metrics_server",
]
