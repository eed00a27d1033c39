"""Rules by meaning: a rule's examples and counter-examples, matched with a sentence encoder.

A pack author writes five to twenty `examples` of what counts for a rule and a few
`counter_examples` of near misses that must not (docs/rules.md, "Intents"). A segment
matches a rule's intent when one of its clauses is close enough in meaning to an example:

1. **Clauses.** A turn can hold several acts ("Thanks. I'll arrange a refund. Anything
   else?"), so the segment is cut into sentences, long sentences into their comma clauses,
   and unpunctuated run-ons (as the recogniser writes them) into overlapping word windows;
   adjacent short clauses are also scored together. Each candidate is one span of the text.
2. **Similarity.** Every span and every example is embedded once (`qa.rules.encoder`);
   the score of a rule on a span is the cosine to its nearest example.
3. **Polarity.** Embeddings barely see a negation (我知道了 scores 0.82 against 我不知道), so
   a span is only compared with the examples of its own polarity: a negated span ("I don't
   know") with negated examples, an affirmative one ("I know exactly what happened") with
   affirmative ones. Fixed expressions that contain a negation word but do not negate
   (不好意思, 对不起, 没问题, "no problem") are masked first; A-not-A questions (是不是, 有没有)
   are questions, not negations.
4. **Counter-examples.** The span must be nearer the example than any counter-example, by
   `IntentOptions.margin`.
5. **Threshold.** The score must reach the rule's threshold (calibrated per rule by
   `qa rules tune` for a stated precision; the pack's default otherwise).

Phrase hits (exact, fuzzy, pinyin) stay the high-precision path; a phrase hit of a forbidden
rule is only dropped when the clause around it is plainly one of the rule's counter-examples
("I don't know if you've seen our app" for the phrase "I don't know"): `veto`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from qa.rules.normalize import is_cjk, normalize

#: Words that negate what follows them (after normalisation: apostrophes removed).
NEGATION_WORDS = frozenset(
    {
        "not", "no", "never", "nothing", "nobody", "none", "neither", "nor", "nowhere",
        "cannot", "cant", "dont", "doesnt", "didnt", "wont", "wouldnt", "shouldnt", "couldnt",
        "isnt", "arent", "wasnt", "werent", "havent", "hasnt", "hadnt", "aint", "dunno",
        "mustnt", "neednt", "nope", "nah",
    }
)  # fmt: skip
#: Chinese characters that negate (没 and 別 arrive simplified after normalisation).
NEGATION_CHARS = frozenset("不没别未无非莫勿甭")
#: Fixed expressions that hold a negation word without negating anything.
_IDIOMS_EN = re.compile(
    r"\b(?:no problems?|not a problem|no worries|no trouble|never mind|no doubt|"
    r"no matter what|no later than|nothing else|if not)\b"
)
_IDIOMS_ZH = re.compile(
    r"不好意思|对不起|不客气|别客气|不用客气|不用谢|没关系|没问题|没事|不错|不过|不仅|不但|"
    r"不断|不少|不久|非常|无论|并且|差不多|了不起|否则|要不然|不然|毫无疑问|无误|不便|"
    r"(.)[不没]\1"  # A-not-A questions: 是不是, 有没有, 能不能
)
#: Sentence ends and clause breaks, in both scripts.
_SENTENCE_END = re.compile(r"(?<=[.!?。！？;；…])\s*|\n+")
_CLAUSE_BREAK = re.compile(r"(?<=[,，、:：])\s*")
#: A sentence longer than this (words, or CJK characters / 2) is also scored clause by clause.
LONG_SENTENCE = 9
#: Word window for unpunctuated run-ons, and its stride.
WINDOW_WORDS = 8
WINDOW_STRIDE = 4
#: The most spans scored per segment (the cost is one encoder pass per new span).
MAX_SPANS = 16


def is_negated(text: str) -> bool:
    """True when `text` (any language, raw or normalised) says something is not so."""
    norm = normalize(text)
    norm = _IDIOMS_EN.sub(" ", norm)
    norm = _IDIOMS_ZH.sub(" ", norm)
    for word in norm.split():
        if word in NEGATION_WORDS:
            return True
    return any(ch in NEGATION_CHARS for ch in norm if is_cjk(ch))


@dataclass(frozen=True, slots=True)
class Span:
    """A stretch of a segment's text, `[start, end)` in characters of the original."""

    start: int
    end: int
    text: str


def _size(text: str) -> int:
    """Length in words, counting two Chinese characters as one word."""
    cjk = sum(1 for ch in text if is_cjk(ch))
    latin = "".join(" " if is_cjk(ch) else ch for ch in text).split()
    return len(latin) + cjk // 2


def _pieces(text: str, pattern: re.Pattern[str], offset: int) -> list[Span]:
    spans, pos = [], 0
    for m in pattern.finditer(text):
        if m.start() > pos or m.end() > pos:
            piece = text[pos : m.start()]
            if piece.strip():
                spans.append(_strip(piece, offset + pos))
            pos = m.end()
    if text[pos:].strip():
        spans.append(_strip(text[pos:], offset + pos))
    return spans


def _strip(piece: str, at: int) -> Span:
    left = len(piece) - len(piece.lstrip())
    body = piece.strip()
    return Span(at + left, at + left + len(body), body)


def _windows(sentence: Span) -> list[Span]:
    words = [(m.start(), m.end()) for m in re.finditer(r"\S+", sentence.text)]
    cjk = sum(1 for ch in sentence.text if is_cjk(ch))
    if cjk > len(sentence.text) // 2:
        # Unpunctuated Chinese: windows of characters instead of words.
        size, stride = 2 * WINDOW_WORDS, 2 * WINDOW_STRIDE
        bounds = [(i, min(i + size, len(sentence.text))) for i in
                  range(0, max(1, len(sentence.text) - size + stride), stride)]
    else:
        if len(words) <= WINDOW_WORDS + WINDOW_STRIDE:
            return []
        bounds = [(words[i][0], words[min(i + WINDOW_WORDS, len(words)) - 1][1])
                  for i in range(0, max(1, len(words) - WINDOW_WORDS + WINDOW_STRIDE),
                                 WINDOW_STRIDE)]
    return [
        Span(sentence.start + a, sentence.start + b, sentence.text[a:b].strip())
        for a, b in bounds
        if sentence.text[a:b].strip()
    ]


def spans(text: str) -> list[Span]:
    """The candidate spans of a segment's text: sentences, clauses, pairs, windows, whole."""
    text = text.strip()
    if not text:
        return []
    sentences = _pieces(text, _SENTENCE_END, 0)
    out: list[Span] = []
    for sentence in sentences:
        out.append(sentence)
        clauses = _pieces(sentence.text, _CLAUSE_BREAK, sentence.start)
        if len(clauses) > 1 and _size(sentence.text) > LONG_SENTENCE:
            out += clauses
            out += [
                Span(a.start, b.end, text[a.start : b.end])
                for a, b in zip(clauses, clauses[1:], strict=False)
                if len(clauses) > 2
            ]
        elif len(clauses) == 1 and _size(sentence.text) > LONG_SENTENCE + WINDOW_STRIDE:
            out += _windows(sentence)
    # Short neighbouring sentences often make one act together ("Sorry. That was our fault.").
    out += [
        Span(a.start, b.end, text[a.start : b.end])
        for a, b in zip(sentences, sentences[1:], strict=False)
        if _size(a.text) + _size(b.text) <= 2 * LONG_SENTENCE
    ]
    if len(sentences) > 1:
        out.append(Span(0, len(text), text))
    seen: set[str] = set()
    unique = []
    for span in out:
        if span.text not in seen:
            seen.add(span.text)
            unique.append(span)
    return unique[:MAX_SPANS]


@dataclass(frozen=True, slots=True)
class IntentOptions:
    """How rules match by meaning (the pack's `intents:` section).

    Attributes:
        enabled: Match rules by their examples at all (phrases always match).
        threshold: Similarity a span needs with a rule's nearest example, for rules that
            have no calibrated `threshold` of their own.
        margin: How much nearer the nearest example must be than the nearest
            counter-example.
        veto: Similarity to a counter-example at which a phrase hit in the same clause is
            dropped (when it is also nearer the counter-example than any example).
    """

    enabled: bool = True
    threshold: float = 0.7
    margin: float = 0.02
    veto: float = 0.75


@dataclass(frozen=True, slots=True)
class IntentRule:
    """One rule's intent: what counts, what must not, and from what score."""

    rule_id: str
    examples: tuple[str, ...]
    counter_examples: tuple[str, ...] = ()
    threshold: float | None = None


@dataclass(frozen=True, slots=True)
class IntentScore:
    """How one rule scored on the best span of a text.

    Attributes:
        rule_id: The rule.
        score: Cosine similarity of the span to the nearest example of its polarity.
        example: That example.
        counter: Cosine similarity to the nearest counter-example (0 when none).
        counter_example: That counter-example ('' when none).
        span: The span of the text it was measured on.
        threshold: The rule's threshold.
        matched: Whether it counts as a hit (threshold, polarity and margin all passed).
    """

    rule_id: str
    score: float
    example: str
    counter: float
    counter_example: str
    span: Span
    threshold: float
    matched: bool


class IntentMatcher:
    """The intents of a pack's rules, embedded once; `analyse` scores one text.

    Thread-safe after construction (the encoder serialises its own use).

    Args:
        rules: The rules that have examples.
        encoder: Anything with `encode(texts) -> (n, d) unit vectors` (a `SentenceEncoder`).
        options: Thresholds and margins.
    """

    def __init__(self, rules: Sequence[IntentRule], encoder, options: IntentOptions) -> None:
        self.options = options
        self.encoder = encoder
        self.rules = tuple(r for r in rules if r.examples)
        texts: list[str] = []
        owner: list[int] = []
        counter: list[bool] = []
        for i, rule in enumerate(self.rules):
            for text in rule.examples:
                texts.append(text)
                owner.append(i)
                counter.append(False)
            for text in rule.counter_examples:
                texts.append(text)
                owner.append(i)
                counter.append(True)
        self._texts = tuple(texts)
        self._owner = np.asarray(owner, dtype=np.int64)
        self._counter = np.asarray(counter, dtype=bool)
        self._negated = np.asarray([is_negated(t) for t in texts], dtype=bool)
        self._matrix = (
            encoder.encode(texts).T.copy() if texts else np.zeros((1, 0), dtype=np.float32)
        )
        self._index = {r.rule_id: i for i, r in enumerate(self.rules)}
        self._thresholds = np.asarray(
            [r.threshold if r.threshold is not None else options.threshold for r in self.rules]
        )

    def __len__(self) -> int:
        return len(self._texts)

    def threshold(self, rule_id: str) -> float:
        """The threshold in force for a rule."""
        return float(self._thresholds[self._index[rule_id]])

    def analyse(self, text: str, rule_ids: Sequence[str] | None = None) -> list[IntentScore]:
        """Scores `text` against every rule (or those named), each on its best span.

        Returns:
            One `IntentScore` per rule that had an example of the text's polarity, best
            first; `matched` says which count as hits.
        """
        cands = spans(text)
        if not cands or not self.rules:
            return []
        sims = self.encoder.encode([s.text for s in cands]) @ self._matrix  # (spans, examples)
        negated = np.asarray([is_negated(s.text) for s in cands], dtype=bool)
        wanted = range(len(self.rules)) if rule_ids is None else [
            self._index[r] for r in rule_ids if r in self._index
        ]
        out = []
        for i in wanted:
            best = self._best(i, sims, negated, cands)
            if best is not None:
                out.append(best)
        out.sort(key=lambda s: -s.score)
        return out

    def _best(
        self, i: int, sims: np.ndarray, negated: np.ndarray, cands: list[Span]
    ) -> IntentScore | None:
        rule = self.rules[i]
        mine = self._owner == i
        pos_cols = np.flatnonzero(mine & ~self._counter)
        neg_cols = np.flatnonzero(mine & self._counter)
        threshold = float(self._thresholds[i])
        best: IntentScore | None = None
        for s, span in enumerate(cands):
            # Only examples of the span's own polarity can vouch for it, and only
            # counter-examples of that polarity can speak against it (我知道了 is there to stop
            # affirmative spans, not to veto 我不知道).
            cols = pos_cols[self._negated[pos_cols] == negated[s]]
            if not len(cols):
                continue
            row = sims[s]
            j = cols[int(np.argmax(row[cols]))]
            score = float(row[j])
            against = neg_cols[self._negated[neg_cols] == negated[s]]
            if len(against):
                k = against[int(np.argmax(row[against]))]
                counter, counter_text = float(row[k]), self._texts[k]
            else:
                counter, counter_text = 0.0, ""
            matched = score >= threshold and score >= counter + self.options.margin
            cand = IntentScore(rule.rule_id, round(score, 4), self._texts[j], round(counter, 4),
                               counter_text, span, threshold, matched)
            if best is None or (cand.matched, cand.score) > (best.matched, best.score):
                best = cand
        return best

    def veto(self, text: str, evidence: str, rule_id: str) -> IntentScore | None:
        """Whether a phrase hit of `rule_id` on `evidence` inside `text` should be dropped.

        Returns:
            The score that vetoes it (its clause is one of the rule's counter-examples),
            or None to keep the hit.
        """
        i = self._index.get(rule_id)
        if i is None or not self.rules[i].counter_examples:
            return None
        at = text.find(evidence) if evidence else -1
        cands = [
            s for s in spans(text) if at < 0 or (s.start <= at and at + len(evidence) <= s.end)
        ]
        # The narrowest span holding the evidence is its clause.
        cands = sorted(cands, key=lambda s: s.end - s.start)[:1]
        if not cands:
            return None
        sims = self.encoder.encode([cands[0].text]) @ self._matrix
        row = sims[0]
        negated = is_negated(cands[0].text)
        mine = (self._owner == i) & (self._negated == negated)
        neg_cols = np.flatnonzero(mine & self._counter)
        pos_cols = np.flatnonzero(mine & ~self._counter)
        if not len(neg_cols):
            return None
        k = neg_cols[int(np.argmax(row[neg_cols]))]
        counter = float(row[k])
        score = float(row[pos_cols].max()) if len(pos_cols) else 0.0
        if counter >= self.options.veto and counter > score + self.options.margin:
            j = pos_cols[int(np.argmax(row[pos_cols]))] if len(pos_cols) else k
            return IntentScore(rule_id, round(score, 4), self._texts[j], round(counter, 4),
                               self._texts[k], cands[0], float(self._thresholds[i]), False)
        return None
