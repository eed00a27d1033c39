"""Fixtures for the prompt server tests: a running server with two agents, and its listener."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from qa.prompts import PromptListener, PromptOptions, PromptServer
from qa.types import CallInfo, Speaker

#: Agents and their tokens, as the configuration would give them.
TOKENS = (("agent-1", "tok-one-3f9a"), ("agent-2", "tok-two-81c2"))


def call_info(call_id: str, agent_id: str) -> CallInfo:
    """A two-channel call as a source would announce it."""
    return CallInfo(call_id, agent_id, "file:test.wav", 1_700_000_000.0,
                    (Speaker.AGENT, Speaker.CUSTOMER), 16000)


@pytest.fixture
def server() -> Iterator[PromptServer]:
    with PromptServer(PromptOptions(port=0, tokens=TOKENS)) as running:
        yield running


@pytest.fixture
def listener(server: PromptServer) -> PromptListener:
    return PromptListener(server)
