"""Fixtures for the rules engine tests: the example packs and a segment factory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from qa.rules import RulePack, build_matcher, load_pack
from qa.rules.matcher import PhraseMatcher
from qa.types import Segment, Speaker


@pytest.fixture(scope="session")
def en_pack(repo: Path) -> RulePack:
    return load_pack(repo / "examples" / "rules" / "en_support.yaml")


@pytest.fixture(scope="session")
def zh_pack(repo: Path) -> RulePack:
    return load_pack(repo / "examples" / "rules" / "zh_support.yaml")


@pytest.fixture(scope="session")
def en_matcher(en_pack: RulePack) -> PhraseMatcher:
    return build_matcher(en_pack)


@pytest.fixture(scope="session")
def zh_matcher(zh_pack: RulePack) -> PhraseMatcher:
    return build_matcher(zh_pack)


@pytest.fixture(scope="session")
def seg() -> Callable[..., Segment]:
    """Builds a final segment: `seg("agent", 0.0, 3.0, "text")`."""

    def make(speaker: str, start: float, end: float, text: str, call_id: str = "c1") -> Segment:
        return Segment(call_id, Speaker(speaker), start, end, text)

    return make
