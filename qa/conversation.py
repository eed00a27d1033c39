"""Who spoke when: a call's speech stretches and what follows from them (dead air, talk-over,
talk share), computed in one place so the rule events, the scorecard and the boards agree.

The stretches are the endpointer's utterances on the call clock, per speaker. The rules judge
them live (`qa.rules.engine`: talk-over and dead-air events as they happen); the pipeline
totals them once when the call ends (`CallSummary.dead_air`/`talk_over`), with the rule
pack's dead-air threshold when it has one, and the metrics export those totals as they are.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from qa.types import Speaker

__all__ = ["DEAD_AIR_MIN", "ConversationTotals", "SpeechTimeline", "union"]

#: Silence longer than this is dead air when no rule pack sets its own threshold (seconds).
DEAD_AIR_MIN = 5.0


def union(intervals: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """The intervals merged where they touch or overlap, in time order."""
    merged: list[tuple[float, float]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


@dataclass(frozen=True, slots=True)
class ConversationTotals:
    """A call's conversation in seconds.

    Attributes:
        dead_air: Time nobody spoke, in silences of at least the dead-air threshold (the
            silence up to the call's end counts).
        talk_over: Time agent and customer spoke at once.
        talk: Seconds of speech per speaker.
    """

    dead_air: float
    talk_over: float
    talk: tuple[tuple[Speaker, float], ...]

    def agent_share(self) -> float | None:
        """The agent's part of all speech by agent and customer (None before anyone spoke)."""
        talk = dict(self.talk)
        agent = talk.get(Speaker.AGENT, 0.0)
        total = agent + talk.get(Speaker.CUSTOMER, 0.0)
        return agent / total if total > 0 else None


class SpeechTimeline:
    """The stretches of speech of one call, per speaker, in the order they were cut.

    Not thread-safe: one call's notifications come from one thread (pipeline contract).
    """

    __slots__ = ("_speech",)

    def __init__(self) -> None:
        self._speech: dict[Speaker, list[tuple[float, float]]] = {}

    def add(self, speaker: Speaker, start: float, end: float) -> list[tuple[float, float]]:
        """Records a stretch; returns where it overlaps each earlier stretch of another
        speaker, as (start, end) pairs, for talk-over judged as it happens."""
        overlaps = []
        for other, stretches in self._speech.items():
            if other == speaker:
                continue
            for o_start, o_end in stretches:
                lo, hi = max(start, o_start), min(end, o_end)
                if hi > lo:
                    overlaps.append((lo, hi))
        self._speech.setdefault(speaker, []).append((start, end))
        return overlaps

    def stretches(self) -> list[tuple[float, float]]:
        """Every speaker's stretches, in time order."""
        return sorted(s for stretches in self._speech.values() for s in stretches)

    def talk(self, speaker: Speaker) -> float:
        """Seconds of speech of one speaker (overlapping stretches counted once)."""
        return sum(e - s for s, e in union(self._speech.get(speaker, ())))

    def totals(self, duration: float, dead_air_min: float) -> ConversationTotals:
        """Dead air, talk-over and talk of the call up to `duration` seconds.

        Args:
            duration: Length of the call; silence up to it counts.
            dead_air_min: Silences shorter than this are pauses and do not count.
        """
        dead = 0.0
        cursor = 0.0
        for start, end in [*union(self.stretches()), (max(duration, 0.0), max(duration, 0.0))]:
            if start - cursor >= dead_air_min:
                dead += start - cursor
            cursor = max(cursor, end)
        agent = union(self._speech.get(Speaker.AGENT, ()))
        customer = union(self._speech.get(Speaker.CUSTOMER, ()))
        over = 0.0
        i = j = 0
        while i < len(agent) and j < len(customer):
            lo = max(agent[i][0], customer[j][0])
            hi = min(agent[i][1], customer[j][1])
            if hi > lo:
                over += hi - lo
            if agent[i][1] < customer[j][1]:
                i += 1
            else:
                j += 1
        talk = tuple((speaker, self.talk(speaker)) for speaker in self._speech)
        return ConversationTotals(dead_air=dead, talk_over=over, talk=talk)
