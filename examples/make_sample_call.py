"""Renders examples/sample_call.txt into examples/sample_call.wav (16 kHz stereo int16).

Each turn is spoken by espeak-ng (agent: `en-us`, customer: `en-gb+f3`), written at 16 kHz
with sox, and placed on its speaker's channel (left = agent, right = customer) after a short
gap, so the file sounds like a recorded call with one party per channel. Deterministic: the
same script and espeak-ng version give the same file.

Usage: python examples/make_sample_call.py [SCRIPT] [OUT.wav]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import wave
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RATE = 16_000
VOICES = {"agent": "en-us", "customer": "en-gb+f3"}
CHANNEL = {"agent": 0, "customer": 1}
#: espeak-ng words per minute: a little slower than its default 175, for clearer ASR.
SPEED = 170
#: Silence between turns, and before the first one, in seconds (a natural turn gap).
GAP_S = 0.5
LEAD_S = 0.4


def parse_script(path: Path) -> list[tuple[str, str]]:
    """Returns the script's turns as (who, text), `who` being agent, customer or pause."""
    turns = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        who, sep, text = line.partition(":")
        who = who.strip().lower()
        if not sep or who not in (*VOICES, "pause"):
            raise ValueError(
                f"{path}:{number}: expected 'agent: ...', 'customer: ...' or 'pause: S'"
            )
        turns.append((who, text.strip()))
    return turns


def speak(text: str, voice: str, workdir: Path) -> np.ndarray:
    """Renders one turn to 16 kHz int16 mono samples with espeak-ng and sox."""
    raw = workdir / "turn.wav"
    out = workdir / "turn16k.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(SPEED), "-w", str(raw), text], check=True)
    subprocess.run(["sox", str(raw), "-r", str(RATE), "-c", "1", "-b", "16", str(out)], check=True)
    with wave.open(str(out), "rb") as wf:
        return np.frombuffer(wf.readframes(wf.getnframes()), dtype="<i2")


def render(turns: list[tuple[str, str]]) -> np.ndarray:
    """Lays the turns out on a stereo timeline; returns int16 samples, shape (frames, 2)."""
    pieces: list[tuple[int, int, np.ndarray]] = []
    cursor = int(LEAD_S * RATE)
    with tempfile.TemporaryDirectory() as tmp:
        for who, text in turns:
            if who == "pause":
                cursor += int(float(text) * RATE)
                continue
            pcm = speak(text, VOICES[who], Path(tmp))
            pieces.append((cursor, CHANNEL[who], pcm))
            cursor += len(pcm) + int(GAP_S * RATE)
    stereo = np.zeros((cursor, 2), dtype=np.int16)
    for start, channel, pcm in pieces:
        stereo[start : start + len(pcm), channel] = pcm
    return stereo


def main(argv: list[str]) -> int:
    script = Path(argv[1]) if len(argv) > 1 else HERE / "sample_call.txt"
    out = Path(argv[2]) if len(argv) > 2 else HERE / "sample_call.wav"
    stereo = render(parse_script(script))
    with wave.open(str(out), "wb") as wf:
        wf.setnchannels(2)
        wf.setsampwidth(2)
        wf.setframerate(RATE)
        wf.writeframes(stereo.astype("<i2").tobytes())
    sys.stdout.write(f"{out}: {len(stereo) / RATE:.1f} s, {out.stat().st_size} bytes\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
