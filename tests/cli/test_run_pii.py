"""Personal data in `qa run`'s own output and logs (issue 10, item 8): transcripts and
evidence printed redacted unless `--show-pii` (which is logged), key presses masked, agent
tokens kept out of the log even at `-vv`, where the websockets library logs request lines."""

from __future__ import annotations

import json
import os
import queue
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

from websockets.sync.client import connect

from qa.commands.run import Printer
from qa.redact import redact
from qa.types import Speaker
from tests.pipeline.conftest import QaRun

REPO = Path(__file__).resolve().parents[2]
#: The account number the customer dictates in examples/sample_call.wav.
ACCOUNT = "472983"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _texts(lines: list[dict]) -> str:
    return " ".join(m.get("text", "") + m.get("evidence", "") for m in lines)


class VerboseRun(QaRun):
    """`qa -vv run --json --no-store ...`, its debug log going to a file (a pipe would fill
    and stall the process)."""

    def __init__(self, log: Path, *args: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.log = log
        with open(log, "w") as handle:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "qa", "-vv", "run", "--json", "--no-store", *args],
                cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=handle, text=True,
            )
        self.lines: queue.Queue[dict] = queue.Queue()
        self.seen: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()

    def stderr_text(self) -> str:
        return self.log.read_text()


def test_run_output_is_redacted_and_tokens_stay_out_of_the_debug_log(tmp_path: Path) -> None:
    port = _free_port()
    config = tmp_path / "run.yaml"
    config.write_text("tokens:\n  a-017: s3cret-token-77\n")
    run = VerboseRun(
        tmp_path / "qa.log",
        "--config", str(config), "--agent", "a-017", "--prompts-port", str(port),
        "--language", "en", "--source", "file:examples/sample_call.wav",
        "--source", "rtp://127.0.0.1:0",  # keeps the service up after the file call ends
    )
    try:
        run.wait_for("summary", timeout=300)
        url = f"ws://127.0.0.1:{port}/ws/a-017?token=s3cret-token-77"
        with connect(url, open_timeout=10) as ws:
            ws.recv(timeout=10)
        assert run.interrupt() == 0
    finally:
        run.kill()
    log = run.stderr_text()
    assert "GET /ws/a-017?token=[REDACTED]" in log  # the request line was logged, blanked
    assert "s3cret-token-77" not in log
    printed = _texts([m for m in run.seen if m["type"] in ("segment", "event")])
    assert ACCOUNT not in printed and "[NUMBER]" in printed
    # Nor any part of it, however it was heard (the call has no other 3-digit number).
    assert not re.search(r"\d{3}", printed), printed
    assert ACCOUNT not in json.dumps([m for m in run.seen if m["type"] == "summary"])


def test_show_pii_prints_in_clear_and_says_so() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "qa", "run", "--json", "--no-store", "--show-pii",
         "--language", "en", "--source", "file:examples/sample_call.wav"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    # The account number, printed in clear: however `base` writes it on this CPU ("472983",
    # or with a misheard digit "472-I-183"), it is the text redaction would have replaced.
    segments = [m["text"] for m in lines if m["type"] == "segment"]
    dictated = [t for t in segments if "[NUMBER]" in redact(t, "en").text]
    assert dictated, segments
    assert all("[NUMBER]" not in t and re.search(r"\d{3}", t) for t in dictated), dictated
    assert "WARNING qa.commands.run: --show-pii: transcripts, evidence and key presses are " \
           "printed unredacted" in done.stderr


def test_key_presses_are_masked_unless_show_pii(capsys) -> None:
    for show, expected in ((False, "*"), (True, "7")):
        Printer(as_json=True, many_calls=False, show_pii=show).dtmf(
            "call-1", Speaker.CUSTOMER, "7", 3.5)
        assert json.loads(capsys.readouterr().out)["digit"] == expected
    Printer(as_json=False, many_calls=False).dtmf("call-1", Speaker.CUSTOMER, "7", 3.5)
    assert capsys.readouterr().out == "# call call-1: key * on customer at 0:03.50\n"
