"""`qa worker` stops within 5 s of SIGTERM, even mid-batch, and gives its batch back: the
utterances it held are in the work stream again for another worker, none lost."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from qa.cluster.remote import RemoteOptions, RemoteTranscriber
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
