"""The issue's acceptance test: `qa run --source soundcard` transcribes a clip played into the sink.

Real parts end to end: paplay → PulseAudio null sink → monitor → ALSA `pulse` → PortAudio at the
device's default rate (44.1 kHz, so the front end resamples) → the pipeline → Whisper `base`.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qa.textnorm import wer
from tests.pulse import PulseServer

SEGMENT = re.compile(r"^\[[^\]]+\] (agent|customer): (.*)$")
#: Seconds the first connection to a monitor can take before audio flows (seen: about 2).
FIRST_AUDIO_S = 2.5


@pytest.mark.slow
def test_qa_run_transcribes_each_channel_of_a_played_clip(
    pulse: PulseServer, shared_audio: Path, references: dict, repo: Path, tmp_path: Path
) -> None:
    expected = references["en_stereo_2ch_overlap.wav"]["channels"]
    errors = (tmp_path / "stderr.txt").open("w")
    run = subprocess.Popen(
        [sys.executable, "-m", "qa", "run", "--source", "soundcard:pulse", "--language", "en",
         "--no-store"],
        env=pulse.client_env(),
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=errors,
        text=True,
    )
    heard: dict[str, list[str]] = {"agent": [], "customer": []}
    try:
        ready = run.stdout.readline()
        assert ready.startswith("# ready: soundcard:pulse"), ready + _tail(tmp_path)
        started = run.stdout.readline()
        assert started.startswith("# call soundcard-"), started + _tail(tmp_path)
        time.sleep(FIRST_AUDIO_S)
        assert pulse.play(shared_audio / "en_stereo_2ch_overlap.wav").wait(timeout=20) == 0
        deadline = time.monotonic() + 60
        while not (heard["agent"] and heard["customer"]) and time.monotonic() < deadline:
            line = run.stdout.readline()
            if not line:
                break
            if match := SEGMENT.match(line.strip()):
                heard[match[1]].append(match[2])
        run.send_signal(signal.SIGINT)
        rest, _ = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        errors.close()
    assert run.returncode == 0, _tail(tmp_path)
    assert "ended (stopped)" in rest, rest
    for line in rest.splitlines():
        if match := SEGMENT.match(line.strip()):
            heard[match[1]].append(match[2])
    agent, customer = " ".join(heard["agent"]), " ".join(heard["customer"])
    assert wer(expected["left"], agent) <= 0.15, agent
    assert wer(expected["right"], customer) <= 0.15, customer


def _tail(tmp_path: Path) -> str:
    lines = (tmp_path / "stderr.txt").read_text(errors="replace").splitlines()
    return "\n".join(line for line in lines if not line.startswith(("ALSA", "Cannot", "Jack")))
