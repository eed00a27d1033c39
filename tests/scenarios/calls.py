"""Scripted test calls: render `tests/data/calls/*.txt` to WAVs and find where each turn is.

Rendering reuses `examples/make_sample_call.py` (espeak-ng, two voices, one speaker per
channel), imported from its path. Turn times are measured on the rendered audio itself, so
the tests compare the rules' event times with where the words really are in the file.
"""

from __future__ import annotations

import importlib.util
import wave
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "tests" / "data" / "calls"
PACK = REPO / "examples" / "rules" / "en_support.yaml"
RATE = 16_000
#: 10 ms analysis frames; a frame whose peak passes the threshold holds speech (espeak-ng's
#: silences are exact zeros, sox's dither adds at most a few units).
FRAME = RATE // 100
PEAK = 200
#: Pauses inside one espeak-ng turn (commas, sentence ends) stay below 0.4 s; turns of one
#: channel are at least a turn gap plus the other side's turn apart.
MERGE_GAP_S = 1.0


@dataclass(frozen=True)
class Turn:
    """One spoken turn of a rendered script: who, what, and where it is in the file (s)."""

    who: str
    text: str
    start: float
    end: float


@dataclass(frozen=True)
class RenderedCall:
    """A script rendered to a stereo WAV, with its turns located in the audio."""

    name: str
    path: Path
    duration: float
    turns: tuple[Turn, ...]

    def turn(self, who: str, words: str) -> Turn:
        """The only turn of `who` whose text contains `words` (case-insensitive)."""
        found = [t for t in self.turns if t.who == who and words.lower() in t.text.lower()]
        assert len(found) == 1, f"{self.name}: {len(found)} {who} turns contain {words!r}"
        return found[0]


@cache
def _renderer():
    spec = importlib.util.spec_from_file_location(
        "make_sample_call", REPO / "examples" / "make_sample_call.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _speech_runs(pcm: np.ndarray) -> list[tuple[float, float]]:
    frames = len(pcm) // FRAME
    peaks = np.abs(pcm[: frames * FRAME].astype(np.int32)).reshape(frames, FRAME).max(axis=1)
    voiced = np.flatnonzero(peaks > PEAK)
    runs: list[list[int]] = []
    for index in voiced:
        if runs and index - runs[-1][1] <= MERGE_GAP_S * 100:
            runs[-1][1] = index + 1
        else:
            runs.append([index, index + 1])
    return [(a / 100.0, b / 100.0) for a, b in (map(int, run) for run in runs)]


def render_call(name: str, out_dir: Path) -> RenderedCall:
    """Renders `tests/data/calls/<name>.txt` to `<out_dir>/<name>.wav` and locates its turns."""
    maker = _renderer()
    script = maker.parse_script(SCRIPTS / f"{name}.txt")
    stereo = maker.render(script)
    path = out_dir / f"{name}.wav"
    with wave.open(str(path), "wb") as wf:
        wf.setnchannels(2)
        wf.setsampwidth(2)
        wf.setframerate(RATE)
        wf.writeframes(stereo.astype("<i2").tobytes())
    spoken = [(who, text) for who, text in script if who != "pause"]
    turns = []
    for channel, who in enumerate(("agent", "customer")):
        texts = [text for w, text in spoken if w == who]
        runs = _speech_runs(stereo[:, channel])
        assert len(runs) == len(texts), f"{name}: {who} has {len(texts)} turns, heard {runs}"
        turns += [Turn(who, text, a, b) for text, (a, b) in zip(texts, runs, strict=True)]
    turns.sort(key=lambda t: t.start)
    assert [t.text for t in turns] == [text for _, text in spoken], f"{name}: turns out of order"
    return RenderedCall(name, path, len(stereo) / RATE, tuple(turns))


def render_calls(out_dir: Path) -> dict[str, RenderedCall]:
    """The three scenario calls (clean, violations, long) rendered into `out_dir`."""
    return {name: render_call(name, out_dir) for name in ("clean", "violations", "long")}
