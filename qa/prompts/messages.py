"""The JSON messages pushed to an agent's page, built from pipeline values.

Every message is one JSON object (one websocket text frame) with a `type`:

`call_started`
    `call` (call id), `agent`, `started_at` (wall-clock epoch seconds of the first sample),
    `channels` (list of `agent`/`customer`/`unknown`).
`prompt`
    `call`, `kind` (an `EventKind` value: `step_due`, `step_missed`, `forbidden_phrase`,
    `handle_time_warning`, `handle_time_breach`, ...), `time` (audio seconds since the call's
    first sample), `rule` (rule id), `severity` (`info`/`warning`/`critical`), `speaker`,
    `points`, `message` (the prompt text for the agent) and `evidence` (what was heard or
    measured). `message` and `evidence` are redacted unless redaction was turned off.
`transcript`
    `call`, `speaker`, `start`, `end` (audio seconds), `text` (redacted likewise), `language`,
    `final` (always true today: the pipeline sends final segments only).
`call_ended`
    `call`, `reason` (`hangup`, `end of file`, ...), `duration` (audio seconds), `events`.

A newly connected page first receives the agent's most recent messages (oldest first), then
live ones, so it rebuilds its view from the same stream.
"""

from __future__ import annotations

import json

from qa.redact import redact
from qa.types import CallInfo, Event, EventKind, Segment

__all__ = [
    "call_ended_message",
    "call_started_message",
    "encode",
    "prompt_message",
    "transcript_message",
]

# Shown when a rule gives no prompt text of its own.
_DEFAULT_TEXT = {
    EventKind.STEP_DUE: "Step due: {rule}",
    EventKind.STEP_MISSED: "Step missed: {rule}",
    EventKind.FORBIDDEN_PHRASE: "Forbidden phrase ({rule})",
    EventKind.HANDLE_TIME_WARNING: "Handle time warning: wrap up or transfer",
    EventKind.HANDLE_TIME_BREACH: "Handle time exceeded: transfer to the specialist line",
}

# Audio times are sent to the millisecond: finer digits only add noise to the page.
_TIME_DIGITS = 3


def _clean(text: str, language: str | None, redacted: bool) -> str:
    return redact(text, language).text if redacted else text


def prompt_message(event: Event, redacted: bool = True, language: str | None = None) -> dict:
    """The `prompt` message for a rule event.

    Args:
        event: The event from the rule engine.
        redacted: Replace personal data in the message and the evidence with placeholders.
        language: Language of the call (`en`, `zh`), or None to apply every redaction rule.

    Returns:
        The message as a JSON-ready dict.
    """
    text = event.message or _DEFAULT_TEXT.get(event.kind, "{kind}: {rule}").format(
        rule=event.rule_id, kind=event.kind.value.replace("_", " ")
    )
    return {
        "type": "prompt",
        "call": event.call_id,
        "kind": event.kind.value,
        "time": round(event.time, _TIME_DIGITS),
        "rule": event.rule_id,
        "severity": event.severity.value,
        "speaker": event.speaker.value,
        "points": event.points,
        "message": _clean(text, language, redacted),
        "evidence": _clean(event.evidence, language, redacted),
        # How the evidence matched: exact, fuzzy, pinyin or intent (by meaning), its score and
        # the pack's phrase or nearest example ('' / null for timers and measurements).
        "match": event.match,
        "score": event.score,
        "example": _clean(event.example, language, redacted) if event.example else "",
    }


def transcript_message(segment: Segment, redacted: bool = True) -> dict:
    """The `transcript` message for a segment, redacted in the segment's own language."""
    return {
        "type": "transcript",
        "call": segment.call_id,
        "speaker": segment.speaker.value,
        "start": round(segment.start, _TIME_DIGITS),
        "end": round(segment.end, _TIME_DIGITS),
        "text": _clean(segment.text, segment.language or None, redacted),
        "language": segment.language,
        "final": segment.final,
    }


def call_started_message(call: CallInfo) -> dict:
    """The `call_started` message. The source is left out: it may name a caller's line."""
    return {
        "type": "call_started",
        "call": call.call_id,
        "agent": call.agent_id,
        "started_at": call.started_at,
        "channels": [channel.value for channel in call.channels],
    }


def call_ended_message(call_id: str, reason: str, duration: float, events: int) -> dict:
    """The `call_ended` message."""
    return {
        "type": "call_ended",
        "call": call_id,
        "reason": reason,
        "duration": round(duration, _TIME_DIGITS),
        "events": events,
    }


def encode(message: dict) -> str:
    """One message as the text of a websocket frame (UTF-8 JSON, Chinese kept readable)."""
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"))
