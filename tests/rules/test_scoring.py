"""The scorecard: bands, totals, items and evidence from events."""

from __future__ import annotations

import pytest

from qa.rules import band, score
from qa.types import Event, EventKind, Severity, Speaker


@pytest.mark.parametrize(
    ("total", "expected"),
    [
        (0.0, "<75"),
        (74.99, "<75"),
        (75.0, "<75"),
        (75.01, "75-80"),
        (80.0, "75-80"),
        (80.5, "80-85"),
        (85.0, "80-85"),
        (85.01, "85-90"),
        (90.0, "85-90"),
        (92.0, "90-95"),
        (95.0, "90-95"),
        (95.01, "95-100"),
        (100.0, "95-100"),
        (130.0, "95-100"),
        (-5.0, "<75"),
    ],
)
def test_band_boundaries(total, expected):
    assert band(total) == expected


def _event(kind, rule_id, time, severity=Severity.WARNING, evidence="", points=0.0):
    return Event("c", time, kind, rule_id, severity, points, evidence, "", Speaker.AGENT, time)


def test_score_items_follow_events(en_pack):
    events = [
        _event(EventKind.STEP_DONE, "greeting", 1.0, Severity.INFO, "Thank you for calling", 15),
        _event(EventKind.STEP_DONE, "identity_check", 20.0, Severity.INFO, "account number", 15),
        _event(EventKind.STEP_DONE, "resolution", 30.0, Severity.INFO, "refund", 10),
        _event(EventKind.STEP_DONE, "closing", 40.0, Severity.INFO, "goodbye", 10),
        _event(
            EventKind.FORBIDDEN_PHRASE,
            "shirk",
            12.0,
            Severity.CRITICAL,
            "that's not my department",
            -10,
        ),
        _event(EventKind.FORBIDDEN_PHRASE, "shirk", 25.0, Severity.CRITICAL, "not my job", -10),
        _event(EventKind.TALK_OVER, "talk_over", 5.0),  # talk-over carries no points here
    ]
    card = score(en_pack, events, "c")
    items = {i.rule_id: i for i in card.items}
    assert items["shirk"].points_awarded == 0 and items["shirk"].points_possible == 10
    assert items["shirk"].evidence == ("that's not my department", "not my job")
    assert items["shirk"].times == (12.0, 25.0)
    assert items["greeting"].evidence == ("Thank you for calling",)
    assert items["apology"].points_awarded == 10  # never triggered: not applicable
    assert "talk_over" not in items
    assert (card.total, card.band) == (90.0, "85-90")
    assert card.call_id == "c"


def test_a_triggered_step_due_but_not_done_earns_nothing(en_pack):
    events = [_event(EventKind.STEP_DUE, "apology", 9.0, Severity.INFO)]
    items = {i.rule_id: i for i in score(en_pack, events, "c").items}
    assert items["apology"].points_awarded == 0


def test_total_is_the_sum_of_items_and_empty_call_keeps_only_no_fault_rules(zh_pack):
    card = score(zh_pack, [], "c")
    assert card.total == sum(i.points_awarded for i in card.items)
    # Nothing done: untriggered apology, no forbidden phrase, no breach, no dead air.
    assert card.total == 10 + 25 + 10 + 5
