"""The QA review report of one call as one self-contained HTML page.

The page has three parts: the transcript by speaker with every rule hit marked at its time
(the evidence highlighted in the text where it is found there), the timeline of events, and
the scorecard with evidence, effective points and the override audit trail. Everything is
escaped with `html.escape`; the CSS is inline and nothing is loaded from elsewhere, so the
file can be mailed or archived as it is.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime

from qa.clock import format_clock
from qa.store import CallRecord
from qa.types import Event, Segment

__all__ = ["format_started", "render_call"]

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:60em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;width:100%}td,th{padding:.25em .5em;border-bottom:1px solid #eee;
text-align:left;vertical-align:top}th{background:#f4f4f4}
ol.transcript{list-style:none;padding:0}
li.seg,li.hit-row{margin:.35em 0;padding:.3em .6em;border-radius:6px}
li.seg.agent{background:#eef4ff;margin-right:15%}
li.seg.customer{background:#f1f8ee;margin-left:15%}
li.seg.unknown{background:#f5f5f5}
li.hit-row{background:#fff4e5;font-style:italic}
.time{color:#777;font-variant-numeric:tabular-nums;margin-right:.5em}
.who{font-weight:600;margin-right:.5em}
mark.hit{background:#ffd54f;padding:0 .1em}
span.hit{display:inline-block;font-size:.8em;border-radius:4px;padding:0 .4em;margin-left:.4em;
background:#ffe0b2}
.critical{color:#b00020}.warning{color:#a15c00}.info{color:#2e6b2e}
.bar{position:relative;height:1.6em;background:#f4f4f4;border-radius:4px;margin:.6em 0}
.tick{position:absolute;top:0;width:3px;height:100%;background:#a15c00}
.tick.critical{background:#b00020}.tick.info{background:#2e6b2e}
tr.changed td{background:#fff8e1}
"""


def format_started(epoch: float) -> str:
    """Wall-clock start of a call as UTC ISO 8601 to the second."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _attached(segment: Segment, event: Event) -> bool:
    if not segment.start <= event.time <= segment.end:
        return False
    return event.speaker in ("unknown", segment.speaker)


def _marked_text(text: str, events: list[Event]) -> str:
    """The segment text escaped, with each event's evidence wrapped in a mark where found."""
    lower = text.lower()
    ranges: list[tuple[int, int, Event]] = []
    for event in events:
        needle = event.evidence.strip().lower()
        at = lower.find(needle) if needle else -1
        if at >= 0 and all(at >= e or at + len(needle) <= s for s, e, _ in ranges):
            ranges.append((at, at + len(needle), event))
    ranges.sort(key=lambda r: r[0])
    out: list[str] = []
    pos = 0
    for start, end, event in ranges:
        out.append(_esc(text[pos:start]))
        out.append(
            f'<mark class="hit" data-rule="{_esc(event.rule_id)}" '
            f'data-time="{event.time:.2f}">{_esc(text[start:end])}</mark>'
        )
        pos = end
    out.append(_esc(text[pos:]))
    return "".join(out)


def _badge(event: Event) -> str:
    return (
        f'<span class="hit {_esc(event.severity)}" data-rule="{_esc(event.rule_id)}" '
        f'data-time="{event.time:.2f}" title="{_esc(event.message)}">'
        f"{_esc(format_clock(event.time, 1))} {_esc(event.rule_id)} {event.points:+g}</span>"
    )


def _transcript(record: CallRecord) -> list[str]:
    # Merge segments and the hits that no segment holds (a missed deadline in silence) into
    # one list in time order; a hit inside a segment is drawn in that segment.
    rows: list[tuple[float, int, str]] = []
    placed: set[int] = set()
    for segment in record.segments:
        indices = [
            i for i, e in enumerate(record.events) if i not in placed and _attached(segment, e)
        ]
        placed.update(indices)
        mine = [record.events[i] for i in indices]
        body = _marked_text(segment.text, mine) + "".join(_badge(e) for e in mine)
        rows.append(
            (
                segment.start,
                0,
                f'<li class="seg {_esc(segment.speaker)}" data-start="{segment.start:.2f}">'
                f'<span class="time">{_esc(format_clock(segment.start, 1))}</span>'
                f'<span class="who">{_esc(segment.speaker)}</span>'
                f'<span class="text">{body}</span></li>',
            )
        )
    for i, event in enumerate(record.events):
        if i not in placed:
            rows.append(
                (
                    event.time,
                    1,
                    f'<li class="hit-row" data-start="{event.time:.2f}">'
                    f'<span class="time">{_esc(format_clock(event.time, 1))}</span>'
                    f"{_badge(event)} {_esc(event.message or event.evidence)}</li>",
                )
            )
    rows.sort(key=lambda r: (r[0], r[1]))
    return ['<ol class="transcript">', *(r[2] for r in rows), "</ol>"]


def _timeline(record: CallRecord) -> list[str]:
    length = record.duration or max(
        [s.end for s in record.segments] + [e.time for e in record.events] + [1.0]
    )
    ticks = "".join(
        f'<span class="tick {_esc(e.severity)}" '
        f'style="left:{min(100.0, 100 * e.time / length):.2f}%"'
        f' title="{_esc(format_clock(e.time, 1))} {_esc(e.rule_id)}"></span>'
        for e in record.events
    )
    out = [f'<div class="bar">{ticks}</div>', '<table class="timeline">']
    out.append(
        "<tr><th>time</th><th>kind</th><th>rule</th><th>severity</th><th>points</th>"
        "<th>speaker</th><th>evidence</th><th>matched</th><th>message</th></tr>"
    )
    for e in record.events:
        matched = ""
        if e.match:
            matched = _esc(e.match) + (f" {e.score:.2f}" if e.score is not None else "")
            if e.example and e.match != "exact":
                matched += f"<br><small>~ {_esc(e.example)}</small>"
        out.append(
            f'<tr class="event"><td>{_esc(format_clock(e.time, 1))}</td><td>{_esc(e.kind)}</td>'
            f'<td>{_esc(e.rule_id)}</td><td class="{_esc(e.severity)}">{_esc(e.severity)}</td>'
            f"<td>{e.points:+g}</td><td>{_esc(e.speaker)}</td><td>{_esc(e.evidence)}</td>"
            f"<td>{matched}</td><td>{_esc(e.message)}</td></tr>"
        )
    out.append("</table>")
    return out


def _scorecard(record: CallRecord) -> list[str]:
    if record.scorecard is None or record.effective is None:
        return ["<p>Not scored yet.</p>"]
    auto, eff = record.scorecard, record.effective
    out = [
        f'<p class="total">Score <strong>{eff.total:g}</strong> (band {_esc(eff.band)})'
        + (f"; automatic {auto.total:g} (band {_esc(auto.band)})" if record.overrides else "")
        + "</p>",
        '<table class="scorecard"><tr><th>item</th><th>description</th><th>possible</th>'
        "<th>automatic</th><th>effective</th><th>evidence</th><th>times</th></tr>",
    ]
    for a, e in zip(auto.items, eff.items, strict=True):
        changed = " changed" if a.points_awarded != e.points_awarded else ""
        evidence = "<br>".join(_esc(x) for x in a.evidence)
        times = ", ".join(_esc(format_clock(t, 1)) for t in a.times)
        out.append(
            f'<tr class="item{changed}" data-rule="{_esc(a.rule_id)}"><td>{_esc(a.rule_id)}</td>'
            f"<td>{_esc(a.description)}</td><td>{a.points_possible:g}</td>"
            f"<td>{a.points_awarded:g}</td><td>{e.points_awarded:g}</td><td>{evidence}</td>"
            f"<td>{times}</td></tr>"
        )
    out.append("</table>")
    if record.overrides:
        out.append(
            '<h3>Overrides</h3><table class="overrides"><tr><th>when (UTC)</th><th>item</th>'
            "<th>from</th><th>to</th><th>reviewer</th><th>reason</th></tr>"
        )
        for o in record.overrides:
            out.append(
                f'<tr class="override"><td>{_esc(format_started(o.created_at))}</td>'
                f"<td>{_esc(o.rule_id)}</td><td>{o.old_points:g}</td><td>{o.new_points:g}</td>"
                f"<td>{_esc(o.reviewer)}</td><td>{_esc(o.reason)}</td></tr>"
            )
        out.append("</table>")
    return out


def render_call(record: CallRecord) -> str:
    """The QA review report of one stored call.

    Args:
        record: The call as `CallStore.call` returns it.

    Returns:
        A complete HTML document (UTF-8 text, no external assets).
    """
    info = record.info
    duration = "running" if record.duration is None else format_clock(record.duration, 1)
    facts = [
        ("agent", info.agent_id or "-"),
        ("started", format_started(info.started_at)),
        ("duration", duration),
        ("category", record.category or "-"),
        ("ended", record.end_reason or "-"),
        ("source", info.source),
    ]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Call {_esc(info.call_id)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Call {_esc(info.call_id)}</h1>",
        '<table class="facts">'
        + "".join(f"<tr><th>{k}</th><td>{_esc(v)}</td></tr>" for k, v in facts)
        + "</table>",
        "<h2>Transcript</h2>",
        *_transcript(record),
        "<h2>Timeline</h2>",
        *_timeline(record),
        "<h2>Scorecard</h2>",
        *_scorecard(record),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"
