"""The service's metrics: `QAMetrics` defines them on a registry, with their buckets and options
(the families read at scrape time are named in `qa.metrics.collector`); `AgentBook` keeps the
bounded agent labels and each agent's logged-in and on-call time."""

from __future__ import annotations

import platform
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, Summary
from prometheus_client.metrics import MetricWrapperBase

from qa.metrics.collector import (
    HotCollector,
    PipelineLike,
    RecorderLike,
    RemoteCollector,
    StatsSource,
    StoreLike,
)
from qa.types import (
    EventKind,
    Scorecard,
    Segment,
    Speaker,
    TranscribeBatchFn,
    TranscribeFn,
    Utterance,
)

#: Handle-time buckets as fractions of the limit: dense around the limit, where supervisors
#: act (for 300 s: 30, 60, 120, 180, 240, 270, 300, 330, 360, 480, 600).
HANDLE_TIME_FRACTIONS = (0.1, 0.2, 0.4, 0.6, 0.8, 0.9, 1.0, 1.1, 1.2, 1.6, 2.0)
#: End of speech to final text: a live prompt is useful within a few seconds.
ASR_LATENCY_BUCKETS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.5, 10.0)
#: Transcription seconds per second of audio; above 1 the workers fall behind.
RTF_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
#: Call scores, with edges on the pay-band bounds (docs/design.md).
SCORE_BUCKETS = (50.0, 60.0, 70.0, 75.0, 80.0, 85.0, 90.0, 95.0, 100.0)
#: Why a call ended, folded to a fixed set (error reasons carry free text after the colon).
END_REASONS = {"hangup": "hangup", "timeout": "timeout", "end of file": "end_of_file",
               "stopped": "stopped", "error": "error"}
#: Source kinds a source may be watched as.
SOURCE_KINDS = ("rtp", "soundcard", "file", "websocket", "sip", "audiosocket")
#: Agent label value when the agent label is off, and for agents past `max_agents`.
ALL_AGENTS = "all"
OTHER_AGENTS = "other"
#: Exemplar label sets are limited to 128 characters by OpenMetrics.
EXEMPLAR_MAX = 120


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
    """

    agent_label: bool = True
    max_agents: int = 500
    handle_time_limit: float = 300.0

    def __post_init__(self) -> None:
        if self.handle_time_limit <= 0:
            raise ValueError("MetricsOptions: handle_time_limit must be positive")
        if self.max_agents < 1:
            raise ValueError("MetricsOptions: max_agents must be at least 1")


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
            "qa_dead_air_seconds", "Silences with nobody speaking, longer than the rule pack's "
            "dead-air threshold (5 s without one), measured at call end.", registry=r)
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
        # Remote recognition (qa run --asr nats://...): the wait for a remote worker, from
        # publishing an utterance to receiving its segments (queue + decode + network).
        self.remote_round_trip = Histogram(
            "qa_remote_round_trip_seconds", "Publish of an utterance to its remote result.",
            buckets=ASR_LATENCY_BUCKETS, registry=r)
        # The worker's share of the round trip, as its result reports it: the rest is waiting
        # (work queue, network), so a lag that grows here needs faster workers and one that
        # grows only in the round trip needs more of them.
        self.remote_decode = Histogram(
            "qa_remote_decode_seconds",
            "Decode on a remote worker of the batch that held an utterance.",
            buckets=ASR_LATENCY_BUCKETS, registry=r)
        self._registry = r

        self.build = Info("qa_build", "Version of the service and of its runtime.", registry=r)
        self.build.info({"version": _version(), "python": platform.python_version()})

        self._agents = AgentBook(self.options)
        self._collector = HotCollector(self._agents)
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

    def watch_remote(self, remote: StatsSource) -> None:
        """Reads a remote recognition backend's counts (`RemoteTranscriber.stats`) at every
        scrape: work queue depth on the server, utterances in flight, redeliveries,
        duplicate results dropped, lost utterances, publish retries, disconnects and time
        spent blocked by back-pressure."""
        self._registry.register(RemoteCollector(remote))

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


def metric_names(metrics: QAMetrics) -> set[str]:
    """Every sample name the metrics can expose (for checking dashboards and alert rules)."""
    families = [*metrics._collector.describe(), *RemoteCollector(None).describe()]
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


class AgentBook:
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
                    if len(self._labels) >= self._options.max_agents:
                        # Not remembered: agent ids come from SIP headers and stream
                        # parameters, and each new one past the cap was kept for good.
                        return OTHER_AGENTS
                    value = agent_id or "unknown"
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
