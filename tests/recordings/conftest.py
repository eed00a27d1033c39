"""Fixtures for the recording tests: one real `qa run` of the sample call (real Whisper, real
store, real FLAC file), shared by the tests that read what it wrote; a live `qa run` process
and ffmpeg RTP senders; and an independent decoder (the `ffmpeg` command, not the PyAV
encoder under test)."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "examples" / "sample_call.wav"
PACK = REPO / "examples" / "rules" / "en_support.yaml"


def qa(*args: str, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """Runs the `qa` command line of this checkout."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "qa", *args], env=env, capture_output=True,
                          text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL,
                          **kwargs)


def decode(path: Path, channels: int = 2, rate: int | None = None) -> tuple[np.ndarray, int]:
    """Decodes any audio file with the ffmpeg command to int16 samples (frames x channels)
    at the file's own rate, or at `rate`."""
    probe = json.loads(subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(path)],
        capture_output=True, text=True, check=True).stdout)["streams"][0]
    rate = rate or int(probe["sample_rate"])
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "s16le", "-acodec", "pcm_s16le",
         "-ac", str(channels), "-ar", str(rate), "-"],
        capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.int16).reshape(-1, channels), rate


def probe(path: Path) -> dict:
    """ffprobe's view of the file's audio stream."""
    return json.loads(subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
        capture_output=True, text=True, check=True).stdout)


@dataclass(frozen=True)
class RunOutput:
    """What one `qa run` of the sample call left behind."""

    db: Path
    recordings: Path
    call_id: str
    lines: tuple[dict, ...]
    stderr: str


@pytest.fixture(scope="session")
def sample_run(tmp_path_factory: pytest.TempPathFactory) -> RunOutput:
    """`qa run` on the sample call, with the English pack, a private store and the default
    recording settings (recordings/ beside the store)."""
    root = tmp_path_factory.mktemp("sample_run")
    db = root / "data" / "calls.db"
    result = qa("run", "--source", f"file:{SAMPLE}", "--rules", str(PACK), "--language", "en",
                "--db", str(db), "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    lines = tuple(json.loads(line) for line in result.stdout.splitlines() if line.strip())
    (summary,) = [line for line in lines if line["type"] == "summary"]
    return RunOutput(db, db.parent / "recordings", summary["call"], lines, result.stderr)


class QaRun:
    """A `qa run --json` process whose JSON lines are read in the background."""

    def __init__(self, *args: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "qa", "run", "--json", *args], cwd=REPO, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[dict] = queue.Queue()
        self.seen: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))

    def wait_for(self, kind: str, timeout: float, count: int = 1) -> list[dict]:
        """Waits until `count` messages of `kind` have been printed; returns them."""
        deadline = time.monotonic() + timeout
        while len([m for m in self.seen if m["type"] == kind]) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.proc.poll() is not None and self.lines.empty():
                raise AssertionError(f"no {count} '{kind}' lines within {timeout} s; got "
                                     f"{self.seen}; stderr: {self.stderr_text()}")
            with contextlib.suppress(queue.Empty):
                self.seen.append(self.lines.get(timeout=min(remaining, 0.2)))
        return [m for m in self.seen if m["type"] == kind]

    def stderr_text(self) -> str:
        if self.proc.poll() is None:
            return "(running)"
        return self.proc.stderr.read() if self.proc.stderr else ""

    def interrupt(self, timeout: float = 60) -> int:
        """Ctrl-C, as a user would; returns the exit status."""
        self.proc.send_signal(signal.SIGINT)
        status = self.proc.wait(timeout=timeout)
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return status

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def send_rtp(wav: Path, port: int, codec: str) -> subprocess.Popen:
    """ffmpeg sends a file as one G.711 RTP stream (`pcm_mulaw` or `pcm_alaw`), 4x real time."""
    return subprocess.Popen(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-readrate", "4", "-i", str(wav),
         "-ar", "8000", "-ac", "1", "-c:a", codec, "-f", "rtp", f"rtp://127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


def rtp_ports(ready: dict) -> list[tuple[int, int]]:
    """The (agent, customer) port pairs from `qa run`'s ready line."""
    pairs = []
    for name in ready["sources"]:
        if name.startswith("rtp://"):
            agent, customer = name.rpartition(":")[2].split(",")
            pairs.append((int(agent), int(customer)))
    return pairs
