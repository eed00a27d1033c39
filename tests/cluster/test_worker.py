"""`qa worker`: a malformed message is dropped and counted while good work goes on; SIGTERM
mid-batch stops within 5 s and gives the batch back, none lost."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from qa.cluster.remote import RemoteOptions, RemoteTranscriber
from qa.cluster.streams import WORK_STREAM, WORK_SUBJECT
from qa.cluster.worker import Worker, WorkerOptions
from qa.pipeline import Pipeline, PipelineOptions
from qa.sources.file import FileOptions, FileSource
from tests.cluster.test_cluster import Process
from tests.cluster.test_remote import _all_published

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_sigterm_mid_batch_exits_in_time_and_gives_the_batch_back(nats_server, tmp_path):
    remote = RemoteTranscriber(RemoteOptions(url=nats_server.url, node="stopper",
                                             stats_interval=0.2)).start()
    pipeline = Pipeline(None, PipelineOptions(language="en"), submit=remote.submit)
    worker = None
    try:
        FileSource(FileOptions(REPO / "examples" / "sample_call.wav", call_id="held")).run(
            pipeline, threading.Event())
        published = _all_published(pipeline, remote)
        # A batch of 8 takes several seconds to decode here: longer than the drain allows.
        worker = Process("worker", "--nats", nats_server.url, "--batch", "8",
                         log=tmp_path / "worker.log")
        worker.wait_for("decoding a batch of 8", timeout=60)
        began = time.monotonic()
        worker.proc.send_signal(signal.SIGTERM)
        assert worker.proc.wait(10) == 0
        assert time.monotonic() - began < 5.0
        stopped = worker.wait_for("stopped:", timeout=1)
        answered = remote.results
        assert "given back" in stopped
        given_back = int(stopped.split(" given back")[0].rsplit(", ", 1)[1])
        assert given_back == 8 - answered  # answered ones were published before the stop
        # Nothing is lost: every utterance without a result is back in the stream.
        for _ in range(50):
            if remote.queue_depth == published - answered:
                break
            time.sleep(0.1)
        assert remote.queue_depth == published - answered
        assert remote.in_flight == published - answered
    finally:
        if worker is not None and worker.proc.poll() is None:
            os.kill(worker.proc.pid, signal.SIGKILL)
        pipeline.drain(1.0)
        pipeline.close(1.0)
        remote.close()


async def _publish_raw(url: str, payload: bytes) -> None:
    import nats

    nc = await nats.connect(url)
    await nc.jetstream().publish(WORK_SUBJECT, payload, stream=WORK_STREAM)
    await nc.close()


def test_a_malformed_message_is_dropped_and_counted_and_good_work_goes_on(
        nats_server, transcriber, caplog):
    from qa.batching import BatchTranscriber

    remote = RemoteTranscriber(RemoteOptions(url=nats_server.url, node="mixed",
                                             stats_interval=0.2)).start()
    batcher = BatchTranscriber(transcriber)
    worker = Worker(WorkerOptions(url=nats_server.url, batch=2, ack_wait=5),
                    batcher.transcribe, batcher.transcribe_batch)
    stop, ready = threading.Event(), threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop, ready), daemon=True)
    try:
        with caplog.at_level(logging.ERROR, logger="qa.cluster.worker"):
            # A foreign message first, then a real utterance: the first must not block the
            # second, nor come back.
            asyncio.run(_publish_raw(nats_server.url, b"QAU\x01\x00\x00\x00\x02{}"))
            thread.start()
            assert ready.wait(30)
            spoken = _first_utterance()
            done = threading.Event()
            results = []
            remote.submit(spoken, "en", lambda segments: (results.append(segments), done.set()))
            assert done.wait(60)
        assert "thank you for calling" in " ".join(s.text for s in results[0]).lower()
        assert worker.stats.bad_messages == 1
        assert any("malformed work message" in r.getMessage() and "'id'" in r.getMessage()
                   for r in caplog.records)
        for _ in range(50):  # terminated: not waiting for a redelivery
            if remote.queue_depth == 0:
                break
            time.sleep(0.1)
        assert remote.queue_depth == 0
    finally:
        stop.set()
        thread.join(10)
        remote.close()


def _first_utterance():
    from qa.offline import cut_file
    from qa.sources.audio import open_audio

    utterances = cut_file(open_audio(REPO / "examples" / "sample_call.wav"), "mixed-call")
    return next(u for u in utterances if u.speaker == "agent")


@pytest.mark.parametrize(("argv", "batch", "compute"), [
    ([], 8, "int8"),
    (["--device", "cuda"], 32, "float16"),
    (["--device", "cuda", "--batch", "64", "--compute-type", "int8_float16"], 64,
     "int8_float16"),
    (["--batch", "2"], 2, "int8"),
])
def test_worker_options_by_device(argv, batch, compute):
    """A GPU worker takes bigger batches across calls, in float16, unless told otherwise."""
    from qa.cli import build_parser
    from qa.commands.worker import options

    args = build_parser().parse_args(["worker", "--nats", "nats://h:4222", *argv])
    worker, transcriber = options(args)
    assert worker.batch == batch and worker.url == "nats://h:4222"
    assert transcriber.compute_type == compute
    assert transcriber.device == ("cuda" if "cuda" in argv else "cpu")


@pytest.mark.parametrize(("argv", "field"), [
    (["--nats", "http://h:4222"], "nats"),
    (["--nats", "nats://h:4222", "--batch", "0"], "batch"),
])
def test_bad_worker_options_name_the_field(argv, field):
    from qa.cli import build_parser
    from qa.commands.worker import options
    from qa.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        options(build_parser().parse_args(["worker", *argv]))
    assert caught.value.field == field
