"""The whole cluster on one machine: a real NATS server, a real PostgreSQL server holding the
one store both capture nodes (`qa run --asr`) write, and real `qa worker` processes running
Whisper on a recorded call. One worker is killed with
SIGKILL in the middle of a batch and the NATS server is restarted while the next worker is
decoding; on each node the call's transcript, stored once per utterance in the order spoken,
and its scorecard equal those of a single-process run of the same file."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SAMPLE_CALL = REPO / "examples" / "sample_call.wav"
RULES = REPO / "examples" / "rules" / "en_support.yaml"

pytestmark = pytest.mark.slow


class Process:
    """A `qa` subprocess whose output lines are collected as they come."""

    def __init__(self, *args: str, log: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.log = log
        self.lines: list[str] = []
        self._new = threading.Condition()
        self.proc = subprocess.Popen([sys.executable, "-m", "qa", "-v", *args], cwd=REPO,
                                     env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        with open(self.log, "w") as out:
            for line in self.proc.stdout:
                out.write(line)
                with self._new:
                    self.lines.append(line)
                    self._new.notify_all()

    def wait_for(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        with self._new:
            while True:
                for line in self.lines:
                    if text in line:
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.proc.poll() is not None and not any(
                        text in line for line in self.lines):
                    raise AssertionError(f"{text!r} not seen in {self.log}:\n"
                                         + "".join(self.lines[-30:]))
                self._new.wait(min(remaining, 0.2))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def _run_args(db: Path | str) -> list[str]:
    return ["run", "--source", f"file:{SAMPLE_CALL}", "--language", "en", "--rules", str(RULES),
            "--db", str(db), "--json"]


def _stored(db: Path) -> tuple[list[tuple], dict]:
    """Segments in the order they were stored, and the scorecard of the one call."""
    with sqlite3.connect(db) as conn:
        segments = conn.execute(
            'SELECT speaker, start, "end", text FROM segments ORDER BY id').fetchall()
        (total, band), = conn.execute("SELECT total, band FROM scorecards").fetchall()
        items = conn.execute("SELECT rule_id, points_awarded FROM score_items "
                             "ORDER BY position").fetchall()
    return segments, {"total": total, "band": band, "items": items}


def _stored_shared(url: str, call_id: str) -> tuple[list[tuple], dict]:
    """The same, for one call of the PostgreSQL store the nodes share."""
    import psycopg

    with psycopg.connect(url) as conn:
        segments = [tuple(r) for r in conn.execute(
            'SELECT speaker, start, "end", text FROM segments WHERE call_id = %s ORDER BY id',
            (call_id,)).fetchall()]
        (total, band), = conn.execute("SELECT total, band FROM scorecards WHERE call_id = %s",
                                      (call_id,)).fetchall()
        items = [tuple(r) for r in conn.execute(
            "SELECT rule_id, points_awarded FROM score_items WHERE call_id = %s"
            " ORDER BY position", (call_id,)).fetchall()]
    return segments, {"total": total, "band": band, "items": items}


def _summary(process: Process) -> dict:
    lines = [json.loads(line) for line in process.lines if line.startswith("{")]
    (summary,) = [line for line in lines if line.get("type") == "summary"]
    return summary


def test_worker_killed_and_server_restarted_lose_nothing(nats_server, pg_server,
                                                         tmp_path: Path):
    """Two capture nodes share one PostgreSQL store and two recognition workers behind
    NATS; a worker is SIGKILLed mid-batch and NATS restarts once."""
    # The single-process run of the same file, same model and options.
    local = Process(*_run_args(tmp_path / "local.db"), log=tmp_path / "local.log")
    assert local.proc.wait(180) == 0, "".join(local.lines[-30:])
    expected, expected_card = _stored(tmp_path / "local.db")
    assert len(expected) >= 10

    workers = ["worker", "--nats", nats_server.url, "--batch", "4", "--ack-wait", "3"]
    # Two capture nodes, each with the call, share the workers; each gets its own results.
    shared = pg_server.database()  # the store both nodes write
    nodes = [Process(*_run_args(shared), "--asr", nats_server.url,
                     "--node", f"capture-{i}", log=tmp_path / f"node{i}.log") for i in (1, 2)]
    first = second = None
    try:
        # The calls are replayed as fast as they are cut: by the time the first worker has
        # loaded its model, the work stream holds every utterance, so its first batch is full.
        for node in nodes:
            node.wait_for('"type": "ready"', timeout=60)
        first = Process(*workers, log=tmp_path / "worker1.log")
        # SIGKILL in the middle of the first worker's first batch: its utterances were taken
        # and never acknowledged.
        first.wait_for("decoding a batch of", timeout=60)
        time.sleep(0.3)
        first.proc.kill()
        first.proc.wait()
        second = Process(*workers, log=tmp_path / "worker2.log")
        # The server goes down while the second worker decodes: its results are published
        # and acknowledged after the restart, and the capture nodes reconnect.
        second.wait_for("decoding a batch of", timeout=60)
        nats_server.restart(down_for=1.0)
        for node in nodes:
            assert node.proc.wait(150) == 0, "".join(node.lines[-30:])
    finally:
        for process in (*nodes, first, second):
            if process is not None:
                process.stop()

    import psycopg

    with psycopg.connect(shared) as conn:
        calls = {r[0] for r in conn.execute("SELECT call_id FROM calls").fetchall()}
    assert calls == {_summary(node)["call"] for node in nodes} and len(calls) == 2
    for node in nodes:
        stored, card = _stored_shared(shared, _summary(node)["call"])
        # Every utterance exactly once (the killed worker's batch was transcribed twice),
        # with the same text and times as the single-process run.
        assert sorted(stored) == sorted(expected)
        summary = _summary(node)
        assert summary["dropped_utterances"] == 0
        assert summary["utterances"] == _summary(local)["utterances"]
        # Per speaker, stored in the order spoken.
        for speaker in ("agent", "customer"):
            starts = [start for who, start, _, _ in stored if who == speaker]
            assert starts == sorted(starts)
        assert card == expected_card
        # The node lived through the restart.
        node.wait_for("reconnected to NATS", timeout=1)
    # What made this a test of failures: the killed worker's batch came back to the second.
    assert "batch of 4 utterances" in first.wait_for("decoding a batch of", timeout=1)
    redelivered = [line for line in second.lines if "delivered again" in line]
    assert len(redelivered) >= 4
