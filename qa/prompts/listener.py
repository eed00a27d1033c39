"""`PromptListener`: turns what the pipeline produces into messages for the call's agent."""

from __future__ import annotations

import logging

from qa.prompts.messages import (
    call_ended_message,
    call_started_message,
    prompt_message,
    transcript_message,
)
from qa.prompts.server import PromptServer
from qa.types import CallInfo, CallSummary, Event, PipelineListener, Segment

__all__ = ["PromptListener"]

log = logging.getLogger("qa.prompts")


class PromptListener(PipelineListener):
    """Sends each call's prompts and transcript lines to the pages of that call's agent only.

    Key presses (`dtmf`) are not sent: they may be a caller's PIN or card number.

    Args:
        server: The running prompt server; its options decide redaction, transcript lines
            and which event kinds are prompts.
    """

    def __init__(self, server: PromptServer) -> None:
        self._server = server
        self._options = server.options
        # call id -> agent id, and the call's language once a segment has told it, so an
        # event's evidence is redacted with the right spoken-digit rule.
        self._agents: dict[str, str] = {}
        self._languages: dict[str, str] = {}

    def call_started(self, call: CallInfo) -> None:
        self._agents[call.call_id] = call.agent_id
        if not self._server.publish(call.agent_id, call_started_message(call)):
            log.debug("call %s: no prompt page for agent %r", call.call_id, call.agent_id)

    def segment(self, segment: Segment, latency: float) -> None:
        if segment.language:
            self._languages[segment.call_id] = segment.language
        agent_id = self._agents.get(segment.call_id)
        if agent_id is None or not self._options.transcript or not segment.final:
            return
        self._server.publish(agent_id, transcript_message(segment, self._options.redact))

    def event(self, event: Event) -> None:
        agent_id = self._agents.get(event.call_id)
        if agent_id is None or event.kind not in self._options.kinds:
            return
        language = self._languages.get(event.call_id)
        self._server.publish(agent_id, prompt_message(event, self._options.redact, language))

    def call_ended(self, summary: CallSummary) -> None:
        agent_id = self._agents.pop(summary.call_id, summary.agent_id)
        self._languages.pop(summary.call_id, None)
        self._server.publish(
            agent_id,
            call_ended_message(summary.call_id, summary.reason, summary.duration, summary.events),
        )
