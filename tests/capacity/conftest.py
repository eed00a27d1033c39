"""Fixtures for the capacity tests: the shared clips cut once, the batched path once."""

from __future__ import annotations

import pytest

from qa.batching import BatchTranscriber
from tests.capacity.clips import clip_cases


@pytest.fixture(scope="session")
def cases(shared_audio, references):
    """Every channel of every shared clip (16 kHz and 8 kHz), cut by the real front end."""
    return clip_cases(shared_audio, references)


@pytest.fixture(scope="session")
def batcher(transcriber) -> BatchTranscriber:
    """The batched path with its default options, on the session's model."""
    return BatchTranscriber(transcriber)
