"""Fixtures for the recording tests: one real `qa run` of the sample call (real Whisper, real
store, real FLAC file), shared by the tests that read what it wrote, and an independent
decoder (the `ffmpeg` command, not the PyAV encoder under test)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
