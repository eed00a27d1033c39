"""Prompt options validation and message building without a server."""

from __future__ import annotations

import pytest

from qa.errors import ConfigError
from qa.prompts import PromptOptions
from qa.prompts.messages import call_ended_message, encode, prompt_message, transcript_message
from qa.types import Event, EventKind, Segment, Severity, Speaker


@pytest.mark.parametrize(
    ("tokens", "reason"),
    [
        ((("a", ""),), "empty token"),
        ((("", "t"),), "agent id is empty"),
        ((("a", "t"), ("a", "u")), "listed twice"),
    ],
)
def test_bad_tokens_are_refused(tokens: tuple, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason) as error:
        PromptOptions(tokens=tokens)
    assert error.value.field == "tokens"


def test_chinese_evidence_redacted_and_kept_readable() -> None:
    event = Event("c", 61.0, EventKind.FORBIDDEN_PHRASE, "shirk", Severity.CRITICAL, -5,
                  "不归我管 你打幺三八一二三四五六七八", "禁止推诿", Speaker.AGENT)
    message = prompt_message(event, language="zh")
    assert message["evidence"] == "不归我管 你打[NUMBER]"
    assert "不归我管" in encode(message)  # not \\u-escaped


def test_transcript_uses_segment_language() -> None:
    segment = Segment("c", Speaker.CUSTOMER, 1.23456, 2.0, "four one five five five", language="en")
    message = transcript_message(segment)
    assert (message["text"], message["start"]) == ("[NUMBER]", 1.235)
    assert transcript_message(segment, redacted=False)["text"] == "four one five five five"


def test_call_ended_message() -> None:
    assert call_ended_message("c", "hangup", 301.23456, 4) == {
        "type": "call_ended", "call": "c", "reason": "hangup", "duration": 301.235, "events": 4,
    }
