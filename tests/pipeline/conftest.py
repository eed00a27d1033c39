"""Running `qa run` as a user would: a real process, real sockets, real ffmpeg senders."""

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
import wave
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


class QaRun:
    """A `qa run --json` process whose JSON lines are read in the background (with no call
    store unless `store` is set; then pass `--db`)."""

    def __init__(self, *args: str, store: bool = False) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "qa", "run", "--json", *(() if store else ("--no-store",)),
             *args],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
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
                raise AssertionError(
                    f"no {count} '{kind}' lines within {timeout} s; got {self.seen}; "
                    f"stderr: {self.stderr_text()}"
                )
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


@pytest.fixture
def qa_run() -> Iterator[Callable[..., QaRun]]:
    started: list[QaRun] = []

    def start(*args: str, store: bool = False) -> QaRun:
        run = QaRun(*args, store=store)
        started.append(run)
        return run

    yield start
    for run in started:
        run.kill()


def no_overload(tmp_path: Path) -> tuple[str, str]:
    """`qa run` arguments for run settings without the overload policy: on a busy machine it
    sheds utterances (by design; tests/overload checks it), and a test that compares every
    call's transcript with its script needs them all."""
    config = tmp_path / "no-overload.yaml"
    config.write_text("overload: false\n")
    return "--config", str(config)


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


def write_stereo(path: Path, left: Path, right: Path) -> Path:
    """A two-channel call from two mono 16 kHz clips (left = agent, right = customer)."""
    channels = []
    for clip in (left, right):
        with wave.open(str(clip)) as w:
            assert w.getframerate() == 16000 and w.getnchannels() == 1
            channels.append(np.frombuffer(w.readframes(w.getnframes()), dtype="<i2"))
    n = max(len(c) for c in channels)
    stereo = np.zeros((n, 2), dtype="<i2")
    for index, channel in enumerate(channels):
        stereo[: len(channel), index] = channel
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(stereo.tobytes())
    return path


def text_of(seen: list[dict], call: str, speaker: str) -> str:
    return " ".join(
        m["text"] for m in seen
        if m["type"] == "segment" and m["call"] == call and m["speaker"] == speaker
    )
