"""Fixtures shared by every test: where the repository and the shared test audio are."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
#: Recorded human speech with reference transcripts (see its MANIFEST.md).
SHARED_AUDIO = Path(os.environ.get("QA_SHARED_AUDIO", REPO.parent / "shared" / "audio"))


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_audio() -> Path:
    if not (SHARED_AUDIO / "references.json").is_file():
        pytest.fail(f"shared test audio not found at {SHARED_AUDIO} (set QA_SHARED_AUDIO)")
    return SHARED_AUDIO


@pytest.fixture(scope="session")
def references(shared_audio: Path) -> dict:
    return json.loads((shared_audio / "references.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def transcriber():
    """The real default model (`base`, int8, CPU), loaded once for the whole session."""
    from qa.asr import Transcriber, TranscriberOptions

    return Transcriber(TranscriberOptions())
