"""The 100-point scorecard of a call, computed from its events and its rule pack.

Each scored rule of the pack is one item worth its points: a step earns them when it was
done in time and in order (a triggered step whose trigger never fired earns them too: it did
not apply); a forbidden phrase rule, the handle-time limit and each conversation condition
earn them when no event of theirs was recorded. Scoring reads only the events, so a
reviewer's override (dropping or adding events) rescores the call the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

from qa.rules.schema import RulePack
from qa.types import Event, EventKind, Scorecard, ScoreItem, Severity

#: Upper bounds of the pay bands; each band is above the previous bound, up to its own.
BANDS: tuple[tuple[float, str], ...] = (
    (75.0, "<75"),
    (80.0, "75-80"),
    (85.0, "80-85"),
    (90.0, "85-90"),
    (95.0, "90-95"),
    (100.0, "95-100"),
)


def band(total: float) -> str:
    """The pay band of a total: `<75` up to and including 75, then `75-80` (75, 80], ...

    Args:
        total: A score in [0, 100] (values outside are clamped).

    Returns:
        The band label.
    """
    total = min(max(total, 0.0), 100.0)
    for upper, label in BANDS:
        if total <= upper:
            return label
    return BANDS[-1][1]


def _item(
    rule_id: str, description: str, points: float, events: list[Event], earned: bool
) -> ScoreItem:
    return ScoreItem(
        rule_id=rule_id,
        description=description,
        points_possible=points,
        points_awarded=points if earned else 0.0,
        evidence=tuple(e.evidence or e.message for e in events),
        times=tuple(e.time for e in events),
    )


def score(pack: RulePack, events: Sequence[Event], call_id: str) -> Scorecard:
    """Scores a call.

    Args:
        pack: The rule pack the events came from.
        events: All events of the call (from `CallRules.events`, possibly reviewed).
        call_id: The call.

    Returns:
        One item per scored rule, the total clamped to [0, 100] and its band.
    """
    by_rule: dict[str, list[Event]] = {}
    for e in events:
        by_rule.setdefault(e.rule_id, []).append(e)
    items: list[ScoreItem] = []
    for step in pack.steps:
        evs = [e for e in by_rule.get(step.id, []) if e.kind != EventKind.CATEGORY]
        done = any(e.kind == EventKind.STEP_DONE and e.severity == Severity.INFO for e in evs)
        missed = any(e.kind == EventKind.STEP_MISSED for e in evs)
        due = any(e.kind == EventKind.STEP_DUE for e in evs)
        not_applicable = step.trigger is not None and not due and not evs
        shown = [e for e in evs if e.kind != EventKind.STEP_DUE]
        items.append(
            _item(
                step.id,
                step.description or step.prompt,
                step.points,
                shown,
                (done and not missed) or not_applicable,
            )
        )
    for f in pack.forbidden:
        evs = [e for e in by_rule.get(f.id, []) if e.kind == EventKind.FORBIDDEN_PHRASE]
        items.append(_item(f.id, f.description or f.prompt, f.points, evs, not evs))
    ht = pack.handle_time
    if ht.points:
        evs = [e for e in by_rule.get("handle_time", []) if e.kind == EventKind.HANDLE_TIME_BREACH]
        items.append(
            _item("handle_time", f"handled within {ht.limit:g} s", ht.points, evs, not evs)
        )
    cond = pack.conditions
    for rule_id, kind, rule in (
        ("dead_air", EventKind.DEAD_AIR, cond.dead_air),
        ("talk_over", EventKind.TALK_OVER, cond.talk_over),
        ("talk_share", EventKind.TALK_SHARE, cond.talk_share),
    ):
        if rule is None or not rule.points:
            continue
        evs = [e for e in by_rule.get(rule_id, []) if e.kind == kind]
        items.append(
            _item(rule_id, rule.prompt or rule_id.replace("_", " "), rule.points, evs, not evs)
        )
    total = min(max(sum(i.points_awarded for i in items), 0.0), 100.0)
    return Scorecard(call_id, tuple(items), round(total, 3), band(total))
