"""How the command line writes segments, events and scorecards, as text or JSON."""

from __future__ import annotations

import json

from qa.clock import format_clock
from qa.types import Event, Scorecard, Segment


def clock(seconds: float) -> str:
    """`m:ss.ss` on the call clock: the console shows times to the hundredth."""
    return format_clock(seconds, 2)


def segment_line(segment: Segment, *, call: bool = False) -> str:
    """`[0:01.02-0:04.38] agent: text`, prefixed by the call id when asked."""
    prefix = f"{segment.call_id} " if call else ""
    times = f"[{clock(segment.start)}-{clock(segment.end)}]"
    return f"{prefix}{times} {segment.speaker}: {segment.text}"


def event_line(event: Event, *, call: bool = False) -> str:
    """`! [04:00.00] handle_time_warning handle_time (warning): 4:00 elapsed ...`."""
    prefix = f"{event.call_id} " if call else ""
    points = f" {event.points:+g}" if event.points else ""
    text = event.message or event.evidence
    evidence = f' "{event.evidence}"' if event.evidence and event.evidence != text else ""
    how = f" [{match_note(event)}]" if event.match else ""
    return (
        f"{prefix}! [{clock(event.time)}] {event.kind} {event.rule_id} "
        f"({event.severity}{points}): {text}{evidence}{how}"
    )


def match_note(event: Event) -> str:
    """How an event's evidence matched: `intent 0.83 ~ "nearest example"`, `exact`, ..."""
    if not event.match:
        return ""
    note = event.match
    if event.score is not None and event.match != "exact":
        note += f" {event.score:.2f}"
    if event.match == "intent" and event.example:
        note += f' ~ "{event.example}"'
    return note


def scorecard_lines(card: Scorecard) -> list[str]:
    """The scorecard as a small table: one line per item, then the total and band."""
    lines = [f"Scorecard for {card.call_id}"]
    for item in card.items:
        where = ", ".join(clock(t) for t in item.times)
        evidence = "; ".join(item.evidence)
        detail = f"  [{where}] {evidence}" if evidence or where else ""
        lines.append(
            f"  {item.points_awarded:5g}/{item.points_possible:<5g} {item.rule_id}: "
            f"{item.description}{detail}"
        )
    lines.append(f"  total {card.total:g}/100, band {card.band}")
    return lines


def segment_dict(segment: Segment) -> dict:
    return {
        "call": segment.call_id, "start": round(segment.start, 2), "end": round(segment.end, 2),
        "speaker": str(segment.speaker), "text": segment.text, "language": segment.language,
    }


def event_dict(event: Event) -> dict:
    return {
        "call": event.call_id, "time": round(event.time, 2), "kind": str(event.kind),
        "rule": event.rule_id, "severity": str(event.severity), "points": event.points,
        "evidence": event.evidence, "message": event.message, "speaker": str(event.speaker),
        "match": event.match, "score": event.score, "example": event.example,
    }


def scorecard_dict(card: Scorecard) -> dict:
    return {
        "call": card.call_id, "total": card.total, "band": card.band,
        "items": [
            {"rule": i.rule_id, "description": i.description, "points": i.points_awarded,
             "possible": i.points_possible, "evidence": list(i.evidence),
             "times": [round(t, 2) for t in i.times]}
            for i in card.items
        ],
    }


def dumps(value: dict) -> str:
    return json.dumps(value, ensure_ascii=False)
