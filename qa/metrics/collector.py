"""Scrape-time metrics: counters the hot path owns (the pipeline's queue, the sources' packet and
frame counters, the store) are not pushed per frame; `HotCollector` reads them when Prometheus
scrapes, with each agent's logged-in and on-call time (kept by `definitions.AgentBook`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Protocol

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

if TYPE_CHECKING:
    from qa.metrics.definitions import AgentBook

class PipelineLike(Protocol):
    """What the collector reads from a `qa.pipeline.Pipeline` at scrape time."""

    @property
    def queue_depth(self) -> int: ...

    @property
    def dropped_utterances(self) -> int: ...

    @property
    def listener_errors(self) -> Mapping[str, int]:
        """Exceptions raised by listeners, by listener class."""
        ...

    @property
    def rule_errors(self) -> int:
        """Exceptions raised by calls' rules."""
        ...


class StoreLike(Protocol):
    """What the collector reads from a `qa.store.CallStore` at scrape time."""

    spooled: int  # writes that went to the spool because the database kept failing
    write_retries: int  # failed write attempts that were retried


class RecorderLike(Protocol):
    """What the collector reads from a `qa.recordings.Recorder` at scrape time."""

    written: int  # recordings written
    failures: Mapping[str, int]  # failed recordings by stage (capture, encode, store, prune)


#: Stages a recording can fail at (`qa.recordings.FAILURE_STAGES`), the bounded label set.
RECORDING_FAILURE_STAGES = ("capture", "encode", "store", "prune")


class StatsSource(Protocol):
    """Anything with `Source.stats()`: counters since start, read at scrape time."""

    def stats(self) -> Mapping[str, float]: ...


#: Source stat keys -> (collector metric, help). Keys are summed per source kind; ring
#: drops are reported per channel by the sound card (`ring_dropped_agent`, ...).
SOURCE_COUNTERS: dict[str, tuple[str, str]] = {
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


class HotCollector:
    """Reads counters owned by the hot path (pipelines, sources) and the agent clocks at
    scrape time, so nothing is pushed per frame or per packet."""

    def __init__(self, agents: AgentBook) -> None:
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
            for name, help_text in SOURCE_COUNTERS.values()
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


#: Remote recognition counts: stats key -> (metric, kind, help).
REMOTE_METRICS = {
    "queue_depth": ("qa_remote_work_queue_depth", "gauge",
                    "Utterances in the NATS work stream (waiting or being transcribed), all "
                    "capture nodes."),
    "in_flight": ("qa_remote_in_flight", "gauge",
                  "Utterances this node handed to remote workers and has no result for."),
    "redelivering": ("qa_remote_redelivering", "gauge",
                     "Work messages delivered again (a worker died or was too slow), not yet "
                     "acknowledged."),
    "published": ("qa_remote_utterances_published", "counter",
                  "Utterances published to the work stream."),
    "results": ("qa_remote_results", "counter", "Utterances completed by a remote result."),
    "duplicate_results": ("qa_remote_duplicate_results", "counter",
                          "Second results for an utterance (after a redelivery), dropped."),
    "lost": ("qa_remote_lost_utterances", "counter",
             "Utterances with no result within the result timeout, counted as dropped."),
    "publish_retries": ("qa_remote_publish_retries", "counter",
                        "Publishes retried (server down, refused or unacknowledged)."),
    "bad_results": ("qa_remote_bad_results", "counter", "Malformed result messages dropped."),
    "worker_errors": ("qa_remote_worker_errors", "counter",
                      "Utterances a worker could not transcribe (no segments)."),
    "disconnects": ("qa_remote_disconnects", "counter", "Connections to NATS lost."),
    "backpressure_seconds": ("qa_remote_backpressure_seconds", "counter",
                             "Time the pipeline waited because too many utterances were in "
                             "flight."),
}


class RemoteCollector:
    """Reads a remote recognition backend's counts at scrape time (None: names only)."""

    def __init__(self, remote: StatsSource | None) -> None:
        self._remote = remote

    def describe(self) -> Iterable[Metric]:
        return list(self._families({}))

    def collect(self) -> Iterable[Metric]:
        stats = self._remote.stats() if self._remote is not None else {}
        return list(self._families(stats))

    def _families(self, stats: Mapping[str, float]) -> Iterator[Metric]:
        for key, (name, kind, help_text) in REMOTE_METRICS.items():
            family = (GaugeMetricFamily if kind == "gauge" else CounterMetricFamily)(
                name, help_text)
            family.add_metric([], stats.get(key, 0))
            yield family


def _source_totals(kind: str, stats: Mapping[str, float]) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for key, value in stats.items():
        stat = "ring_dropped" if key.startswith("ring_dropped") else key
        target = SOURCE_COUNTERS.get(stat)
        if target is not None:
            out[(kind, target[0])] = out.get((kind, target[0]), 0) + int(value)
    return out
