"""`qa.whisper_parts` follows one faster-whisper release, and that release is the one pinned."""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

from qa.whisper_parts import FASTER_WHISPER_VERSION


def test_faster_whisper_is_the_release_the_adapter_follows(repo: Path) -> None:
    project = tomllib.loads((repo / "pyproject.toml").read_text())["project"]
    assert f"faster-whisper=={FASTER_WHISPER_VERSION}" in project["dependencies"]
    assert importlib.metadata.version("faster-whisper") == FASTER_WHISPER_VERSION
