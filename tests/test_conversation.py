"""Dead air, talk-over and talk share: one computation for rules, summary and metrics."""

from __future__ import annotations

import pytest

from qa.conversation import SpeechTimeline, union
from qa.types import Speaker


def timeline(**speech: list[tuple[float, float]]) -> SpeechTimeline:
    t = SpeechTimeline()
    for name, stretches in speech.items():
        for start, end in stretches:
            t.add(Speaker(name), start, end)
    return t


def test_totals_count_long_silences_and_overlap():
    t = timeline(agent=[(0.0, 2.0), (10.0, 12.0)], customer=[(1.5, 3.0)])
    totals = t.totals(20.0, dead_air_min=5.0)
    assert totals.dead_air == pytest.approx(7.0 + 8.0)  # 3-10 and 12-20
    assert totals.talk_over == pytest.approx(0.5)
    assert dict(totals.talk) == {Speaker.AGENT: 4.0, Speaker.CUSTOMER: 1.5}
    assert totals.agent_share() == pytest.approx(4.0 / 5.5)
    # A higher threshold (a rule pack's) leaves the 7 s silence a pause.
    assert t.totals(20.0, dead_air_min=7.5).dead_air == pytest.approx(8.0)


def test_empty_call():
    assert SpeechTimeline().totals(4.0, 5.0).dead_air == 0.0
    assert SpeechTimeline().totals(6.0, 5.0).dead_air == 6.0
    assert SpeechTimeline().totals(6.0, 5.0).agent_share() is None


def test_add_reports_overlaps_with_the_other_speaker_only():
    t = timeline(agent=[(0.0, 4.0)])
    assert t.add(Speaker.AGENT, 3.0, 5.0) == []
    assert t.add(Speaker.CUSTOMER, 3.5, 6.0) == [(3.5, 4.0), (3.5, 5.0)]


def test_union_merges_touching_intervals():
    assert union([(3.0, 4.0), (0.0, 1.0), (1.0, 2.0)]) == [(0.0, 2.0), (3.0, 4.0)]
