"""The per-call state machine driven by text segments and speech stretches (no audio)."""

from __future__ import annotations

import textwrap

import pytest

from qa.rules import CallRules, loads_pack, score
from qa.types import EventKind, Severity, Speaker

VIOLATIONS = {
    EventKind.STEP_MISSED,
    EventKind.FORBIDDEN_PHRASE,
    EventKind.HANDLE_TIME_WARNING,
    EventKind.HANDLE_TIME_BREACH,
    EventKind.DEAD_AIR,
    EventKind.TALK_OVER,
    EventKind.TALK_SHARE,
}


def feed(rules: CallRules, seg, lines) -> list:
    """Feeds (speaker, start, end, text) lines as the pipeline would: speech, then text."""
    out = []
    for speaker, start, end, text in lines:
        out += rules.advance(start)
        out += rules.on_speech(Speaker(speaker), start, end)
        out += rules.on_segment(seg(speaker, start, end, text))
    return out


def problems(events) -> list[tuple[str, str, float]]:
    bad = [e for e in events if e.kind in VIOLATIONS or e.severity != Severity.INFO]
    return [(e.kind.value, e.rule_id, e.time) for e in bad]


EN_CLEAN = [
    ("agent", 0.5, 4.0, "Thank you for calling Acme Bank, my name is Sam. How can I help you?"),
    ("customer", 4.5, 9.0, "Hi. I was charged twice on my bill this month, a double charge."),
    ("agent", 9.5, 12.0, "I'm sorry to hear that."),
    ("agent", 12.5, 18.0, "Can I have your account number and date of birth, please?"),
    ("customer", 18.5, 24.0, "It's one two three four five, born the fourth of May 1980."),
    ("agent", 24.5, 30.0, "Thanks. I will reverse the charge and credit your account."),
    ("agent", 30.5, 34.0, "Is there anything else I can help you with?"),
    ("customer", 34.5, 36.0, "No, that's all."),
    ("agent", 36.5, 38.0, "Thank you for calling, goodbye."),
]


def test_clean_english_call_scores_100(en_pack, en_matcher, seg):
    rules = CallRules(en_pack, "c1", "agent7", matcher=en_matcher, intents=False)
    feed(rules, seg, EN_CLEAN)
    rules.advance(38.0)
    rules.finish(38.5)
    assert problems(rules.events) == []
    done = {e.rule_id: e.time for e in rules.events if e.kind == EventKind.STEP_DONE}
    assert done == {
        "greeting": 0.5,
        "apology": 9.5,
        "identity_check": 12.5,
        "resolution": 24.5,
        "closing": 30.5,
    }
    due = [(e.rule_id, e.time) for e in rules.events if e.kind == EventKind.STEP_DUE]
    assert due == [("apology", 9.0)]
    assert rules.categories == ("complaint",) and rules.category == "complaint"
    card = score(en_pack, rules.events, "c1")
    assert (card.total, card.band) == (100.0, "95-100")
    greeting = next(i for i in card.items if i.rule_id == "greeting")
    assert greeting.evidence == ("Thank you for calling",) and greeting.times == (0.5,)
    assert sum(i.points_possible for i in card.items) == 100.0


def test_english_call_with_violations_gets_exactly_those_events(en_pack, en_matcher, seg):
    rules = CallRules(en_pack, "c2", matcher=en_matcher, intents=False)
    live = feed(
        rules,
        seg,
        [
            ("agent", 1.0, 3.0, "Hello."),
            ("customer", 3.5, 8.0, "I want to make a complaint, you charged me twice."),
            ("agent", 9.0, 13.0, "Well, that's not my department."),
        ],
    )
    # The greeting deadline (15 s) passes while the call is running, not at the end.
    live += rules.advance(20.0)
    assert ("step_missed", "greeting", 15.0) in problems(live)
    feed(rules, seg, [("agent", 20.5, 24.0, "I don't know what happened.")])
    live = rules.advance(40.0)
    assert problems(live) == [("dead_air", "dead_air", 34.0), ("step_missed", "apology", 38.0)]
    feed(rules, seg, [("agent", 41.0, 44.0, "Can I have your account number?")])
    rules.finish(50.0)
    assert problems(rules.events) == [
        ("forbidden_phrase", "shirk", 9.0),
        ("step_missed", "greeting", 15.0),
        ("forbidden_phrase", "refuse", 20.5),
        ("dead_air", "dead_air", 34.0),  # 24.0 to 41.0 without speech
        ("step_missed", "apology", 38.0),
        ("step_done", "identity_check", 41.0),  # out of order: no greeting before it
        ("step_missed", "resolution", 50.0),
        ("step_missed", "closing", 50.0),
    ]
    shirk = next(e for e in rules.events if e.rule_id == "shirk")
    assert (shirk.evidence, shirk.severity, shirk.points) == (
        "that's not my department",
        Severity.CRITICAL,
        -10.0,
    )
    assert shirk.speaker == Speaker.AGENT and shirk.end == 13.0
    order = next(e for e in rules.events if e.rule_id == "identity_check")
    assert order.severity == Severity.WARNING and "greeting" in order.message
    card = score(en_pack, rules.events, "c2")
    awarded = {i.rule_id: i.points_awarded for i in card.items}
    assert awarded == {
        "greeting": 0,
        "identity_check": 0,
        "apology": 0,
        "resolution": 0,
        "closing": 0,
        "shirk": 0,
        "refuse": 0,
        "stall": 5,
        "handle_time": 10,
        "dead_air": 0,
    }
    assert (card.total, card.band) == (15.0, "<75")


def test_missed_step_fires_at_its_deadline_not_when_advance_is_called(en_pack, seg):
    rules = CallRules(en_pack, "c3", intents=False)
    # The deadline itself has not passed yet.
    assert [e for e in rules.advance(15.0) if e.kind == EventKind.STEP_MISSED] == []
    (missed,) = [e for e in rules.advance(100.0) if e.kind == EventKind.STEP_MISSED]
    assert (missed.rule_id, missed.time, missed.points) == ("greeting", 15.0, -15.0)
    assert missed.message.startswith("Greet the customer")
    # Said later: recorded as done late, worth nothing.
    (late,) = rules.on_segment(seg("agent", 101.0, 103.0, "Thank you for calling."))
    assert (late.kind, late.severity, late.points) == (EventKind.STEP_DONE, Severity.WARNING, 0)


def test_a_late_step_is_seen_as_late_without_advance(en_pack, seg):
    rules = CallRules(en_pack, "c4", intents=False)
    events = rules.on_segment(seg("agent", 20.0, 22.0, "Good morning, how can I help you?"))
    assert [(e.kind.value, e.time) for e in events] == [("step_missed", 15.0), ("step_done", 20.0)]


def test_handle_time_warning_at_240_and_breach_at_300(en_pack):
    rules = CallRules(en_pack, "c5", intents=False)
    kinds = {EventKind.HANDLE_TIME_WARNING, EventKind.HANDLE_TIME_BREACH}

    def ht(events):
        return [(e.kind.value, e.time) for e in events if e.kind in kinds]

    assert ht(rules.advance(239.9)) == []
    (warning,) = [e for e in rules.advance(250.0) if e.kind in kinds]
    assert (warning.time, warning.severity) == (240.0, Severity.WARNING)
    assert warning.message == "4:00 elapsed: wrap up or transfer the caller to the specialist line."
    assert ht(rules.advance(299.99)) == []
    breach = [e for e in rules.advance(300.0) if e.kind in kinds]
    assert [(e.kind.value, e.time, e.severity, e.points) for e in breach] == [
        ("handle_time_breach", 300.0, Severity.CRITICAL, -10.0)
    ]
    assert "specialist line" in breach[0].message
    assert ht(rules.advance(400.0)) == []
    card = score(en_pack, rules.events, "c5")
    assert next(i for i in card.items if i.rule_id == "handle_time").points_awarded == 0


def test_one_big_advance_fires_warning_then_breach_in_order(zh_pack):
    rules = CallRules(zh_pack, "c6", intents=False)
    events = rules.advance(320.0)
    timed = [(e.kind.value, e.time) for e in events if e.rule_id == "handle_time"]
    assert timed == [("handle_time_warning", 240.0), ("handle_time_breach", 300.0)]
    assert "专家热线" in events[-1].message


def test_dead_air_talk_over_and_talk_share_from_speech(en_pack):
    rules = CallRules(en_pack, "c7", intents=False)
    assert rules.on_speech(Speaker.AGENT, 0.5, 5.0) == []
    assert rules.on_speech(Speaker.CUSTOMER, 6.0, 9.0) == []  # 1 s gap: fine
    assert [e for e in rules.advance(6.0) if e.kind == EventKind.DEAD_AIR] == []
    assert rules.on_speech(Speaker.AGENT, 21.0, 25.0) == []  # after 12 s of silence
    (over,) = rules.on_speech(Speaker.CUSTOMER, 21.5, 26.0)  # both speaking 21.5-25.0
    assert (over.kind, over.time, over.end, over.points) == (EventKind.TALK_OVER, 24.5, 25.0, 0)
    assert rules.on_speech(Speaker.AGENT, 26.5, 28.0) == []  # no overlap
    (dead,) = [e for e in rules.advance(30.0) if e.kind == EventKind.DEAD_AIR]
    assert (dead.kind, dead.time, dead.points) == (EventKind.DEAD_AIR, 19.0, -5.0)
    assert dead.evidence == "silence from 9.0 s"
    # Silence noticed by the clock, before anyone speaks again; reported once.
    (dead2,) = [e for e in rules.advance(40.0) if e.kind == EventKind.DEAD_AIR]
    assert dead2.time == 38.0
    assert [e for e in rules.advance(45.0) if e.kind == EventKind.DEAD_AIR] == []
    # Agent 4.5 + 4 + 1.5 = 10 s, customer 3 + 4.5 = 7.5 s: share 57%, inside 30-75%.
    assert [e for e in rules.finish(45.0) if e.kind == EventKind.TALK_SHARE] == []


def test_dead_air_needs_both_sides_silent_whatever_the_arrival_order(en_pack):
    rules = CallRules(en_pack, "c7b", intents=False)
    rules.on_speech(Speaker.AGENT, 0.0, 4.0)
    # The agent's short reply is known before the customer's long utterance that covers
    # the gap (the endpointer closes an utterance at its end).
    rules.on_speech(Speaker.AGENT, 20.0, 22.0)
    rules.on_speech(Speaker.CUSTOMER, 5.0, 30.0)
    assert [e for e in rules.advance(35.0) if e.kind == EventKind.DEAD_AIR] == []
    (dead,) = [e for e in rules.advance(41.0) if e.kind == EventKind.DEAD_AIR]
    assert dead.time == 40.0


def test_talk_share_out_of_band_fires_at_the_end(en_pack):
    rules = CallRules(en_pack, "c8", intents=False)
    rules.on_speech(Speaker.AGENT, 0.0, 9.0)
    rules.on_speech(Speaker.CUSTOMER, 9.5, 10.0)
    share = [e for e in rules.finish(10.0) if e.kind == EventKind.TALK_SHARE]
    assert [(e.time, e.evidence) for e in share] == [(10.0, "agent talk share 95% (band 30%-75%)")]


def test_apology_processed_before_the_complaint_still_counts(en_pack, seg):
    rules = CallRules(en_pack, "c9", intents=False)
    rules.on_segment(seg("agent", 9.5, 12.0, "I'm so sorry, I apologize for that."))
    events = rules.on_segment(seg("customer", 4.5, 9.0, "You charged me twice, a double charge!"))
    kinds = [(e.kind.value, e.rule_id, e.time) for e in events]
    assert kinds == [
        ("category", "complaint", 4.5),
        ("step_due", "apology", 9.0),
        ("step_done", "apology", 9.5),
    ]
    # An apology said before the complaint does not answer it.
    rules2 = CallRules(en_pack, "c10", intents=False)
    rules2.on_segment(seg("agent", 1.0, 2.0, "I'm sorry, the line is bad."))
    rules2.on_segment(seg("customer", 4.5, 9.0, "This is unacceptable."))
    assert [e.rule_id for e in rules2.advance(40.0) if e.kind == EventKind.STEP_MISSED] == [
        "greeting",
        "apology",
    ]


def test_untriggered_step_is_not_required(en_pack, seg):
    rules = CallRules(en_pack, "c11", intents=False)
    feed(rules, seg, [("agent", 0.5, 3.0, "Thank you for calling, how can I help you?")])
    rules.finish(10.0)
    assert "apology" not in {e.rule_id for e in rules.events}
    item = next(i for i in score(en_pack, rules.events, "c11").items if i.rule_id == "apology")
    assert item.points_awarded == 10


def test_categories_recorded_with_priority(en_pack, seg):
    rules = CallRules(en_pack, "c12", intents=False)
    rules.on_segment(seg("customer", 1.0, 3.0, "I have a question about my card."))
    rules.on_segment(seg("agent", 3.5, 5.0, "This is urgent."))  # the agent does not count
    assert rules.categories == ("consultation",) and rules.category == "consultation"
    rules.on_segment(seg("customer", 6.0, 8.0, "It is urgent, I lost it."))
    rules.on_segment(seg("customer", 9.0, 11.0, "I suggest you fix the app."))
    assert rules.categories == ("consultation", "urgent", "suggestion")
    assert rules.category == "urgent"
    cats = [(e.rule_id, e.time) for e in rules.events if e.kind == EventKind.CATEGORY]
    assert cats == [("consultation", 1.0), ("urgent", 6.0), ("suggestion", 9.0)]


def test_partial_segments_are_ignored_and_forbidden_fires_once_per_segment(en_pack, seg):
    from qa.types import Segment

    rules = CallRules(en_pack, "c13", intents=False)
    partial = Segment("c13", Speaker.AGENT, 1.0, 2.0, "I don't know", final=False)
    assert rules.on_segment(partial) == []
    events = rules.on_segment(seg("agent", 1.0, 4.0, "I don't know, I don't know, not my job."))
    assert [(e.kind.value, e.rule_id) for e in events if e.kind != EventKind.STEP_MISSED] == [
        ("forbidden_phrase", "refuse"),
        ("forbidden_phrase", "shirk"),
    ]
    # Customers may say forbidden words.
    assert rules.on_segment(seg("customer", 5.0, 6.0, "I don't know my account number")) == []


ZH_CLEAN = [
    ("agent", 0.5, 4.0, "您好，很高興為您服務，請問有什麼可以幫您？"),
    ("customer", 4.5, 9.0, "我要投诉，你们这个月多扣了我的话费。"),
    ("agent", 9.5, 12.0, "非常报歉，给您带来不便。"),
    ("agent", 12.5, 16.0, "麻烦核实一下您的身份，请提供您的手机号。"),
    ("customer", 16.5, 20.0, "一三八零零一三八零零零。"),
    ("agent", 20.5, 25.0, "好的，已经为您登记，提交工单，两个工作日内给您回电。"),
    ("agent", 25.5, 29.0, "请问还有其他可以帮您的吗？感谢您的来电，再见。"),
]


def test_clean_chinese_call_scores_100(zh_pack, zh_matcher, seg):
    rules = CallRules(zh_pack, "z1", matcher=zh_matcher, intents=False)
    feed(rules, seg, ZH_CLEAN)
    rules.finish(30.0)
    assert problems(rules.events) == []
    done = {e.rule_id: (e.time, e.evidence) for e in rules.events if e.kind == "step_done"}
    assert done["greeting"] == (0.5, "您好")
    assert done["apology"] == (9.5, "非常报歉")  # homophone of 非常抱歉
    assert rules.category == "complaint"
    card = score(zh_pack, rules.events, "z1")
    assert (card.total, card.band) == (100.0, "95-100")


def test_chinese_call_with_violations(zh_pack, zh_matcher, seg):
    rules = CallRules(zh_pack, "z2", matcher=zh_matcher, intents=False)
    feed(
        rules,
        seg,
        [
            ("agent", 0.5, 2.0, "喂？"),
            ("customer", 2.5, 6.0, "我要投訴，你們多扣了我的錢。"),
            ("agent", 6.5, 9.0, "這個不歸我管。"),
            ("agent", 9.5, 12.0, "我知道了，您稍等。"),  # near-miss of 我不知道: no event
            ("agent", 12.5, 15.0, "你自己看着办吧。"),
        ],
    )
    rules.finish(60.0)
    assert problems(rules.events) == [
        ("forbidden_phrase", "shirk", 6.5),
        ("forbidden_phrase", "stall", 12.5),
        ("step_missed", "greeting", 15.0),
        ("dead_air", "dead_air", 25.0),
        ("step_missed", "apology", 36.0),
        ("step_missed", "identity_check", 60.0),
        ("step_missed", "record_ticket", 60.0),
        ("step_missed", "closing", 60.0),
    ]
    shirk = next(e for e in rules.events if e.rule_id == "shirk")
    assert shirk.evidence == "不歸我管"
    card = score(zh_pack, rules.events, "z2")
    assert card.total == 10.0 + 10.0  # refuse rule and handle time kept
    assert card.band == "<75"


PACK_WITH_REFERENCES = """\
language: en
steps:
  - id: identity
    phrases: [date of birth]
    points: 50
    prompt: Verify the caller.
  - id: details
    phrases: [your balance is]
    after: [identity]
    deadline: {within: 30, from: identity}
    points: 50
    prompt: Give the account details within 30 s of the identity check.
"""


def test_deadline_from_another_step_and_order(seg):
    pack = loads_pack(textwrap.dedent(PACK_WITH_REFERENCES))
    rules = CallRules(pack, "r1", intents=False)
    events = rules.on_segment(seg("agent", 5.0, 8.0, "What is your date of birth?"))
    assert [(e.kind.value, e.rule_id, e.time) for e in events] == [
        ("step_done", "identity", 5.0),
        ("step_due", "details", 8.0),
    ]
    assert [(e.rule_id, e.time) for e in rules.advance(60.0) if e.kind == "step_missed"] == [
        ("details", 38.0)
    ]
    # Out of order: details before identity earns nothing.
    rules = CallRules(pack, "r2", intents=False)
    (early,) = rules.on_segment(seg("agent", 1.0, 2.0, "Your balance is ten pounds."))
    assert (early.kind, early.severity) == (EventKind.STEP_DONE, Severity.WARNING)
    rules.on_segment(seg("agent", 3.0, 4.0, "And your date of birth?"))
    rules.finish(10.0)
    assert score(pack, rules.events, "r2").total == 50.0


@pytest.mark.parametrize("pack_name", ["en_pack", "zh_pack"])
def test_replay_gives_identical_events(pack_name, request, seg):
    pack = request.getfixturevalue(pack_name)
    lines = EN_CLEAN if pack_name == "en_pack" else ZH_CLEAN
    runs = []
    for _ in range(2):
        rules = CallRules(pack, "same", intents=False)
        feed(rules, seg, lines)
        rules.finish(400.0)
        runs.append(rules.events)
    assert runs[0] == runs[1] and len(runs[0]) > 5


def test_mono_speech_counts_for_every_speaker(en_pack, seg):
    rules = CallRules(en_pack, "m1", intents=False)
    events = rules.on_segment(
        seg("unknown", 0.5, 3.0, "Thank you for calling. I was charged twice.")
    )
    assert [(e.kind.value, e.rule_id) for e in events] == [
        ("step_done", "greeting"),
        ("category", "complaint"),
        ("step_due", "apology"),
    ]
