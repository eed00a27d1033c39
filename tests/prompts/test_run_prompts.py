"""Prompts from the running service: `qa run` with a rule pack and the prompt server on
pushes the call's rule events to its agent's websocket, redacted."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from websockets.sync.client import connect

from tests.pipeline.conftest import QaRun


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_qa_run_pushes_the_calls_prompts_to_its_agent(repo: Path, tmp_path: Path):
    port = _free_port()
    config = tmp_path / "run.yaml"
    config.write_text("tokens:\n  a-017: s3cret-token\n")
    run = QaRun(
        "--config", str(config), "--agent", "a-017", "--prompts-port", str(port),
        "--rules", "examples/rules/en_support.yaml",
        "--source", "file:examples/sample_call.wav",
        # An idle RTP source keeps the service up after the file call ends.
        "--source", "rtp://127.0.0.1:0",
    )
    try:
        ready = run.wait_for("ready", timeout=120)[0]
        assert ready["prompts"] == f"http://127.0.0.1:{port}"
        [summary] = run.wait_for("summary", timeout=300)
        call = summary["call"]
        # A page that connects after the events gets the call's recent messages replayed.
        url = f"ws://127.0.0.1:{port}/ws/a-017?token=s3cret-token"
        with connect(url, open_timeout=10) as ws:
            messages = []
            while not any(m["type"] == "call_ended" for m in messages):
                messages.append(json.loads(ws.recv(timeout=10)))
    finally:
        assert run.interrupt() == 0
    prompts = [m for m in messages if m["type"] == "prompt" and m["call"] == call]
    forbidden = [m for m in prompts if m["kind"] == "forbidden_phrase"]
    assert len(forbidden) == 1
    assert "not my department" in forbidden[0]["evidence"].lower()
    assert forbidden[0]["severity"] == "critical"
    # The customer's account number never leaves the process in clear.
    spoken = " ".join(m.get("text", "") for m in messages if m["type"] == "transcript")
    assert "472983" not in spoken and "[" in spoken
