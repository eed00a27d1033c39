"""What one segment says, rule by rule: phrase hits and intent hits together.

`RuleDetector` is the single place that decides which rules a segment's words count for; the
per-call state machine (`qa.rules.engine.CallRules`), `qa rules match`, `qa rules tune` and
the evaluation on labelled utterances all go through it, so what is calibrated is what runs.

Order of precedence: a phrase hit (exact, fuzzy, pinyin) wins for its rule; a forbidden
phrase said inside a clause that is one of the rule's counter-examples is dropped (`veto`);
rules that no phrase hit may match by meaning (intent).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence

from qa.rules.intents import IntentMatcher, IntentRule, IntentScore
from qa.rules.matcher import MatchKind, Phrase, PhraseHit, PhraseMatcher
from qa.rules.schema import Forbidden, RulePack, speaker_matches
from qa.types import Segment, Speaker

log = logging.getLogger("qa.rules.detect")


@functools.lru_cache(maxsize=32)
def build_matcher(pack: RulePack) -> PhraseMatcher:
    """One matcher for every phrase of the pack (steps, forbidden, categories, triggers).

    Cached per pack (packs are frozen and hashable), so calls on the same pack share it.
    """
    phrases: list[Phrase] = []
    for rule in pack.matchable():
        phrases.extend(
            Phrase(f"{rule.id}#{i}", rule.id, text) for i, text in enumerate(rule.phrases)
        )
    return PhraseMatcher(phrases, pack.matching, pack.language)


@functools.lru_cache(maxsize=32)
def build_intents(pack: RulePack, encoder=None) -> IntentMatcher | None:
    """The pack's intents (rules with examples) embedded once, or None when it has none.

    Args:
        pack: The rule pack.
        encoder: A sentence encoder; default the process's shared one (loaded on first use).
    """
    if not pack.has_intents():
        return None
    if encoder is None:
        from qa.rules.encoder import shared_encoder

        encoder = shared_encoder()
    from qa.rules.behaviours import library

    # A rule's phrases are examples of its intent too.
    rules = [
        IntentRule(r.id, (*r.examples, *r.phrases), r.counter_examples, r.threshold,
                   r.behaviour, isinstance(r, Forbidden))
        for r in pack.matchable()
        if r.examples or r.behaviour
    ]
    return IntentMatcher(rules, encoder, pack.intents, library(pack.language))


class RuleDetector:
    """The rules a segment's words count for. Thread-safe; keeps no per-call state.

    Args:
        pack: The rule pack.
        matcher: Its phrase matcher (default: the cached one).
        intents: Its intents: True for the pack's own (None when it has no examples), False
            or None for phrases only, or an `IntentMatcher`.
    """

    def __init__(
        self,
        pack: RulePack,
        matcher: PhraseMatcher | None = None,
        intents: IntentMatcher | bool | None = True,
    ) -> None:
        self.pack = pack
        self.matcher = matcher if matcher is not None else build_matcher(pack)
        if intents is True:
            intents = build_intents(pack)
        self.intents: IntentMatcher | None = intents or None
        self.speakers = {r.id: r.speaker for r in pack.matchable()}
        self.forbidden = frozenset(f.id for f in pack.forbidden)

    def rules_for(self, speaker: Speaker) -> list[str]:
        """Ids of the rules that this speaker's words can count for."""
        return [r for r, s in self.speakers.items() if speaker_matches(s, speaker)]

    def detect(self, segment: Segment, previous: Segment | None = None) -> list[PhraseHit]:
        """Every rule the segment counts for, at most one hit per rule, speaker checked.

        Args:
            segment: A final segment.
            previous: The same speaker's previous final segment (phrases may cross into it).

        Returns:
            Phrase hits in order of where they start, then intent hits, best first.
        """
        allowed = set(self.rules_for(segment.speaker))
        hits: list[PhraseHit] = []
        seen: set[str] = set()
        for hit in self.matcher.scan(segment, previous):
            if hit.rule_id not in allowed or hit.rule_id in seen:
                continue
            if self._vetoed(segment, hit):
                continue
            seen.add(hit.rule_id)
            hits.append(hit)
        if self.intents is not None:
            rivals = self.rules_for(segment.speaker)
            wanted = [r for r in rivals if r not in seen]
            # The words a phrase matched are that rule's act; no other rule's intent may
            # stand on them ("Thank you for calling Acme" greets, it does not also close).
            claimed = []
            for hit in hits:
                at = segment.text.find(hit.evidence_text)
                if at >= 0 and hit.evidence_text:
                    claimed.append((at, at + len(hit.evidence_text)))
            for found in self.intents.analyse(segment.text, wanted, rivals, claimed):
                if found.matched:
                    hits.append(intent_hit(found, segment))
        return hits

    def _vetoed(self, segment: Segment, hit: PhraseHit) -> bool:
        # A phrase said without the act ("it's not urgent at all", "I don't know if you've
        # seen our app") is dropped when the rule's classifier reads its clause as not the act.
        if self.intents is None:
            return False
        vetoed = self.intents.veto(segment.text, hit.evidence_text, hit.rule_id)
        if vetoed is not None:
            log.debug("phrase hit %s %r dropped: near counter-example %r (%.2f)",
                      hit.rule_id, hit.evidence_text, vetoed.counter_example, vetoed.counter)
        return vetoed is not None

    def explain(self, text: str, speaker: Speaker) -> tuple[list[PhraseHit], list[IntentScore]]:
        """Phrase hits (veto applied) and every rule's intent score on `text`, for people and
        for calibration: scores are given whether or not they reach the threshold."""
        segment = Segment("explain", speaker, 0.0, 0.0, text)
        allowed = set(self.rules_for(speaker))
        phrases = [
            h for h in self.matcher.scan(segment)
            if h.rule_id in allowed and not self._vetoed(segment, h)
        ]
        scores = (
            self.intents.analyse(text, sorted(allowed)) if self.intents is not None else []
        )
        return phrases, scores


def intent_hit(found: IntentScore, segment: Segment) -> PhraseHit:
    """An intent match as a hit: the clause is the evidence, the nearest example the phrase."""
    return PhraseHit(
        f"{found.rule_id}~intent", found.rule_id, MatchKind.INTENT, found.score,
        found.span.text, segment.start, segment.end, segment.speaker, found.example,
    )


def phrase_rules(hits: Sequence[PhraseHit]) -> set[str]:
    """Rule ids of the hits."""
    return {h.rule_id for h in hits}
