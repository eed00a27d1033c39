"""Phrase matching: normalisation, exact/fuzzy/pinyin hits, near-misses, evidence."""

from __future__ import annotations

import pytest

from qa.rules import MatchKind, MatchOptions, Phrase, PhraseMatcher, normalize, normalize_with_map
from qa.types import Segment, Speaker


def _matcher(*texts: str, **options) -> PhraseMatcher:
    return PhraseMatcher(
        [Phrase(f"r{i}#0", f"r{i}", t) for i, t in enumerate(texts)], MatchOptions(**options)
    )


def _found(m: PhraseMatcher, text: str) -> dict[str, MatchKind]:
    return {h.rule_id: h.kind for h in m.match_normalized(normalize(text))}


def test_normalize_folds_case_punctuation_width_and_traditional():
    assert normalize("Hello, I DON’T know!!  That's it.") == "hello i dont know thats it"
    assert normalize("ＡＢＣ　１２３") == "abc 123"
    assert normalize("您好，這裡是客服中心。請問 有什麼 可以幫您？") == (
        "您好这里是客服中心请问有什么可以帮您"
    )
    assert normalize("我的 account 号码") == "我的account号码"


def test_normalize_map_quotes_the_original_text():
    n = normalize_with_map("Well, THAT'S not my   department!", "en")
    start = n.text.index("thats")
    assert n.quote(start, len(n.text)) == "THAT'S not my   department"


@pytest.mark.parametrize(
    ("phrase", "heard", "kind"),
    [
        ("這不是我的問題", "这不是我的问题", MatchKind.EXACT),  # traditional in the pack
        ("这不是我的问题", "這不是我的問題啊", MatchKind.EXACT),  # traditional from Whisper
        ("抱歉", "报歉，让您久等了", MatchKind.PINYIN),  # homophone, same syllables
        ("您好", "你好，这里是客服中心", MatchKind.PINYIN),  # nin/ni, one letter apart
        ("给您带来不便", "给你带来不变", MatchKind.PINYIN),  # two homophones
        ("这不是我的问题", "这不是我问题", MatchKind.FUZZY),  # missing character
        ("很高兴为您服务", "很高兴为服务", MatchKind.FUZZY),  # missing character
        # OpenCC keeps 著 (also a simplified character), so one character differs.
        ("你自己看着办", "你自己看著辦吧", MatchKind.FUZZY),
        ("不好意思", "不好意思，讓您久等了", MatchKind.EXACT),
    ],
)
def test_chinese_recogniser_errors_still_match(phrase, heard, kind):
    assert _found(_matcher(phrase), heard) == {"r0": kind}


@pytest.mark.parametrize(
    ("phrase", "heard"),
    [
        ("我不知道", "我知道，您稍等"),  # negation dropped: the opposite meaning
        ("这不是我的问题", "这是我的问题"),
        ("不归我管", "归我管"),
        ("您好", "你们好"),  # an extra character in a two-character phrase
        ("抱歉", "报表"),  # one syllable differs entirely
        ("投诉", "头发"),
        ("核实您的身份", "合适的衣服"),
    ],
)
def test_chinese_near_misses_do_not_match(phrase, heard):
    assert _found(_matcher(phrase), heard) == {}


@pytest.mark.parametrize(
    ("phrase", "heard", "kind"),
    [
        ("I don't know", "well I DON'T know, sir", MatchKind.EXACT),
        ("thank you for calling", "thank you for callin acme", MatchKind.FUZZY),
        ("is there anything else", "is there anything else at all", MatchKind.EXACT),
        ("how can I help you", "how can I help you today", MatchKind.EXACT),
        ("how can I help you", "how can I hep you today", MatchKind.FUZZY),
        ("thank you for calling acme bank", "thank you for calling the acme bank", MatchKind.FUZZY),
    ],
)
def test_english_matches(phrase, heard, kind):
    assert _found(_matcher(phrase), heard) == {"r0": kind}


@pytest.mark.parametrize(
    ("phrase", "heard"),
    [
        ("I don't know", "I know what you mean"),
        ("that's not my department", "that's my department"),
        ("I can't help you", "I can help you"),
        ("no", "I know"),  # word boundary
        ("refund", "refunded"),  # word boundary
        ("thank you for calling", "thanks you for callin"),  # two misspelt words
    ],
)
def test_english_near_misses_do_not_match(phrase, heard):
    assert _found(_matcher(phrase), heard) == {}


def test_options_turn_fuzzy_and_pinyin_off():
    assert _found(_matcher("抱歉", pinyin=False), "报歉") == {}
    assert _found(_matcher("这不是我的问题", fuzzy=False), "这不是我问题") == {}
    assert _found(_matcher("这不是我的问题", fuzzy=False), "这不是我的问题") == {"r0": "exact"}


def test_all_phrases_found_at_once_with_positions():
    m = _matcher("account number", "date of birth", "goodbye")
    hits = m.match_normalized(normalize("Your account number and date of birth please"))
    assert [(h.rule_id, h.start, h.end) for h in hits] == [("r0", 5, 19), ("r1", 24, 37)]


def test_scan_carries_evidence_times_and_speaker():
    m = _matcher("that's not my department")
    seg = Segment("c", Speaker.AGENT, 12.0, 15.5, "Sorry, THAT'S not my department.")
    (hit,) = m.scan(seg)
    assert hit.evidence_text == "THAT'S not my department"
    assert (hit.start, hit.end, hit.speaker, hit.kind) == (12.0, 15.5, Speaker.AGENT, "exact")
    assert hit.phrase == "that's not my department"


def test_scan_finds_a_phrase_across_two_segments():
    m = _matcher("is there anything else", "这不是我的问题")
    first = Segment("c", Speaker.AGENT, 10.0, 12.0, "Okay. Is there")
    second = Segment("c", Speaker.AGENT, 12.5, 14.0, "anything else?")
    (hit,) = m.scan(second, first)
    assert (hit.rule_id, hit.start, hit.end) == ("r0", 10.0, 14.0)
    assert hit.evidence_text == "Is there\nanything else"
    a = Segment("c", Speaker.AGENT, 1.0, 2.0, "好的，这不是")
    b = Segment("c", Speaker.AGENT, 2.2, 3.0, "我的問題")
    assert [h.rule_id for h in m.scan(b, a)] == ["r1"]


def test_scan_does_not_repeat_a_hit_of_the_previous_segment():
    m = _matcher("goodbye")
    first = Segment("c", Speaker.AGENT, 0.0, 1.0, "goodbye")
    second = Segment("c", Speaker.AGENT, 1.5, 2.0, "see you")
    assert m.scan(first) and m.scan(second, first) == []
    third = Segment("c", Speaker.AGENT, 2.5, 3.0, "goodbye again")
    (hit,) = m.scan(third, first)
    assert hit.start == 2.5


def test_example_packs_match_their_own_phrases(en_matcher, zh_matcher):
    for m in (en_matcher, zh_matcher):
        for phrase in m.phrases:
            rules = {h.rule_id for h in m.match_normalized(normalize(phrase.text))}
            assert phrase.rule_id in rules, phrase


def test_a_hit_in_the_previous_segment_does_not_reach_into_the_next():
    m = _matcher("不归我管", "not my department")
    a = Segment("c", Speaker.AGENT, 1.0, 2.0, "這個不歸我管。")
    b = Segment("c", Speaker.AGENT, 2.5, 3.0, "我知道了")
    assert m.scan(b, a) == []
    a = Segment("c", Speaker.AGENT, 1.0, 2.0, "that is not my department")
    b = Segment("c", Speaker.AGENT, 2.5, 3.0, "sir")
    assert m.scan(b, a) == []
