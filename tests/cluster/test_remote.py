"""The capture node's remote backend against a real NATS server, without Whisper: lost
utterances are counted and never stall a call; results are deduplicated by utterance id and
reach the listeners in the order spoken, whatever order they arrive in."""

from __future__ import annotations

import asyncio
import logging
import shutil
import threading
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from qa.cluster.remote import RemoteOptions, RemoteTranscriber
from qa.cluster.streams import WORK_STREAM, WORK_SUBJECT
from qa.cluster.wire import Result, decode_work, encode_result
from qa.metrics import MetricsListener, QAMetrics
from qa.pipeline import Pipeline, PipelineOptions
from qa.sources.file import FileOptions, FileSource
from qa.types import CallSummary, PipelineListener, Segment

SAMPLE_CALL = Path(__file__).resolve().parents[2] / "examples" / "sample_call.wav"


class Collector(PipelineListener):
    def __init__(self) -> None:
        self.segments: list[Segment] = []
        self.latencies: list[float] = []
        self.summaries: dict[str, CallSummary] = {}

    def segment(self, segment: Segment, latency: float) -> None:
        self.segments.append(segment)
        self.latencies.append(latency)

    def call_ended(self, summary: CallSummary) -> None:
        self.summaries[summary.call_id] = summary


def _replay(pipeline: Pipeline, call_id: str) -> None:
    FileSource(FileOptions(SAMPLE_CALL, call_id=call_id)).run(pipeline, threading.Event())


def test_without_a_worker_utterances_wait_then_count_as_lost_and_the_call_ends(nats_server, caplog):
    registry = CollectorRegistry()
    metrics = QAMetrics(registry)
    # At most 4 in flight: the rest wait for room (back-pressure), then time out in turn.
    remote = RemoteTranscriber(RemoteOptions(url=nats_server.url, node="lonely",
                                             max_in_flight=4, result_timeout=1.5,
                                             stats_interval=0.2),
                               metrics.remote_round_trip.observe).start()
    metrics.watch_remote(remote)
    collector = Collector()
    pipeline = Pipeline(None, PipelineOptions(language="en"), [collector], submit=remote.submit)
    try:
        with caplog.at_level(logging.WARNING, logger="qa.cluster.remote"):
            _replay(pipeline, "nobody-listens")
            # No worker: every utterance times out, and the call still ends.
            assert pipeline.wait_idle(timeout=30)
        summary = collector.summaries["nobody-listens"]
        assert summary.utterances >= 10
        assert summary.dropped_utterances == summary.utterances
        assert collector.segments == []
        assert remote.lost == summary.utterances and remote.in_flight == 0
        lost_lines = [r for r in caplog.records if "lost: no result" in r.getMessage()]
        assert len(lost_lines) == summary.utterances
        assert "nobody-listens" in lost_lines[0].getMessage()
        # The work is still queued on the server for a worker, and the boards show it.
        assert registry.get_sample_value("qa_remote_lost_utterances_total") == summary.utterances
        assert registry.get_sample_value(
            "qa_remote_utterances_published_total") == summary.utterances
        assert registry.get_sample_value("qa_remote_work_queue_depth") == summary.utterances
        assert registry.get_sample_value("qa_remote_backpressure_seconds_total") > 1.0
    finally:
        pipeline.close()
        remote.close()


async def _answer_backwards_twice(url: str, count: int, hold: float = 0.0) -> int:
    """Stands in for a worker to force an arrival order a real one gives only by chance:
    takes every utterance, holds them `hold` seconds (a slow worker), publishes the results
    last utterance first, each twice, then acknowledges. Each result's text names its
    utterance. Returns the utterances taken."""
    import nats

    nc = await nats.connect(url)
    js = nc.jetstream()
    sub = await js.pull_subscribe(WORK_SUBJECT, durable="hand", stream=WORK_STREAM)
    messages = []
    while len(messages) < count:
        messages += await sub.fetch(count - len(messages), timeout=5)
    await asyncio.sleep(hold)
    for message in reversed(messages):
        work = decode_work(message.data)
        u = work.utterance
        segment = Segment(u.call_id, u.speaker, u.start, u.end, f"{u.speaker} {u.index}")
        for copy in range(2):  # the second as a worker killed after publishing would
            await js.publish(work.reply_to, encode_result(
                Result(work.utterance_id, (segment,), worker=f"hand-{copy}",
                       decode_seconds=hold / 4)))
    for message in messages:
        await message.ack()
    await nc.close()
    return len(messages)


def _all_published(pipeline: Pipeline, remote: RemoteTranscriber) -> int:
    """Waits until the replayed call's utterances are all on the server; returns how many."""
    seen, steady = -1, 0
    for _ in range(200):
        now = remote.published
        steady = steady + 1 if now == seen and pipeline.queue_depth == 0 else 0
        if steady >= 5:
            return now
        seen = now
        threading.Event().wait(0.1)
    raise AssertionError("the utterances were not all published")


def test_results_are_deduplicated_and_delivered_in_spoken_order(nats_server):
    remote = RemoteTranscriber(RemoteOptions(url=nats_server.url, node="ordered")).start()
    collector = Collector()
    pipeline = Pipeline(None, PipelineOptions(language="en"), [collector], submit=remote.submit)
    try:
        _replay(pipeline, "ordered-call")
        count = _all_published(pipeline, remote)
        assert count >= 10
        assert asyncio.run(_answer_backwards_twice(nats_server.url, count)) == count
        assert pipeline.wait_idle(timeout=30)
        summary = collector.summaries["ordered-call"]
        assert summary.dropped_utterances == 0 and summary.segments == count
        assert len(collector.segments) == count  # each once, though each came twice
        for speaker in ("agent", "customer"):
            indexes = [int(s.text.split()[1]) for s in collector.segments
                       if s.speaker == speaker]
            assert indexes == list(range(len(indexes)))  # in spoken order, none missing
        deadline = threading.Event()
        for _ in range(50):  # the duplicates arrive after the firsts
            if remote.duplicate_results == count:
                break
            deadline.wait(0.1)
        assert remote.duplicate_results == count
    finally:
        pipeline.close()
        remote.close()


def test_a_server_that_comes_back_empty_gets_its_streams_again(nats_server):
    remote = RemoteTranscriber(RemoteOptions(url=nats_server.url, node="phoenix",
                                             stats_interval=0.2)).start()
    collector = Collector()
    pipeline = Pipeline(None, PipelineOptions(language="en"), [collector], submit=remote.submit)
    try:
        # The server is replaced by one without the store (a lost disk, a new machine).
        nats_server.stop()
        shutil.rmtree(nats_server.directory / "store")
        nats_server.start()
        _replay(pipeline, "after-the-loss")
        count = _all_published(pipeline, remote)
        assert count >= 10
        assert asyncio.run(_answer_backwards_twice(nats_server.url, count)) == count
        assert pipeline.wait_idle(timeout=30)
        assert collector.summaries["after-the-loss"].dropped_utterances == 0
        assert len(collector.segments) == count
    finally:
        pipeline.close()
        remote.close()


def test_latency_is_measured_end_to_end_from_the_end_of_speech(nats_server):
    """From the endpointer's close of each utterance on the capture node to its segment
    back, on the capture node's clock: the wait in the work stream and the worker's time
    included (`qa_asr_latency_seconds`, the same metric as local recognition), and the part
    away from the node apart (`qa_remote_round_trip_seconds`)."""
    registry = CollectorRegistry()
    metrics = QAMetrics(registry)
    remote = RemoteTranscriber(RemoteOptions(url=nats_server.url, node="timed"),
                               metrics.remote_round_trip.observe,
                               metrics.remote_decode.observe).start()
    collector = Collector()
    pipeline = Pipeline(None, PipelineOptions(language="en"),
                        [collector, MetricsListener(metrics)], submit=remote.submit)
    hold = 2.0
    try:
        _replay(pipeline, "timed-call")
        count = _all_published(pipeline, remote)
        # The hand worker answers `hold` seconds after it took the last utterance, and the
        # replay ended before that: every utterance waited at least `hold` since its end.
        assert asyncio.run(_answer_backwards_twice(nats_server.url, count, hold)) == count
        assert pipeline.wait_idle(timeout=30)
    finally:
        pipeline.close()
        remote.close()
    assert len(collector.latencies) == count
    assert min(collector.latencies) >= hold
    # The replay runs as fast as it is read, so the first utterance closed well before the
    # last was published: end-to-end latencies spread wider than the round trips.
    assert registry.get_sample_value("qa_asr_latency_seconds_count") == count
    latency_sum = registry.get_sample_value("qa_asr_latency_seconds_sum")
    assert latency_sum == pytest.approx(sum(collector.latencies))
    assert registry.get_sample_value("qa_remote_round_trip_seconds_count") == count
    round_trips = registry.get_sample_value("qa_remote_round_trip_seconds_sum")
    assert hold * count <= round_trips <= latency_sum
    # The worker's own share, as its results report it (the rest was waiting).
    assert registry.get_sample_value("qa_remote_decode_seconds_count") == count
    assert registry.get_sample_value("qa_remote_decode_seconds_sum") == pytest.approx(
        hold / 4 * count)
    summary = collector.summaries["timed-call"]
    assert summary.latency_p50 >= hold and summary.latency_p95 >= summary.latency_p50
