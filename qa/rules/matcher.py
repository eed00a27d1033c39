"""Phrase matching: every phrase of a pack against one segment, exactly, fuzzily and by pinyin.

How a phrase matches (docs/rules.md, "Matching", is the user-facing description):

* **exact**: the normalised phrase occurs in the normalised text; all phrases are found at
  once with an Aho-Corasick automaton (`ahocorasick_rs`). A phrase that starts or ends with a
  Latin letter or digit only matches on a word boundary, so "no" does not match "know".
* **pinyin** (Chinese): the text and the phrase are compared unit by unit (a unit is a Chinese
  character or a Latin word); two Chinese characters that read the same tone-less pinyin
  (您/你 differ only in a final n, 抱/报 are identical) are equal. Syllables are compared after
  folding the initials zh/ch/sh to z/c/s and the finals -ng to -n, the recogniser's commonest
  confusions. At most `MatchOptions.max_near` syllables may differ by one letter.
* **fuzzy**: edit distance on units (words for English, characters for Chinese) between the
  phrase and a stretch of the text: at most `floor(units * (1 - fuzzy_threshold))` units
  inserted, deleted or replaced (with the default 0.75: none for phrases of 1-3 units, one for
  4-7, two for 8-11), plus at most `max_near` misspelt words (character similarity at least
  `word_similarity`, e.g. "callin"/"calling"). A negation ("not", "don't", 不, 没 ...) is never
  inserted, deleted or replaced, so "I know" never matches "I don't know" and 我知道 never
  matches 我不知道.

Fuzzy and pinyin matching only run for phrases that had no exact hit and that share enough
units with the text (an inverted index over the units' keys); everything else is skipped.
"""

from __future__ import annotations

import enum
import functools
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import ahocorasick_rs
from rapidfuzz.distance import Indel, LCSseq

from qa.rules.normalize import NormalizedText, is_cjk, normalize_with_map
from qa.types import Segment, Speaker

log = logging.getLogger("qa.rules.matcher")

#: Words whose loss or change flips the meaning of a phrase; fuzzy matching never edits them.
NEGATIONS = frozenset(
    {
        "not", "no", "never", "dont", "doesnt", "didnt", "cant", "cannot", "wont", "isnt",
        "arent", "wasnt", "werent", "shouldnt", "couldnt", "wouldnt", "nothing", "nobody",
        "none", "neither", "nor", "without",
        "不", "没", "別", "别", "无", "無", "非", "未", "莫", "勿", "甭", "否",
    }
)  # fmt: skip

# Alignment costs are packed in one integer so that the DP compares them in one step:
# unit edits dominate, then near (one-letter) substitutions, then homophones.
_EDIT = 10_000
_NEAR = 100
_HOMOPHONE = 1
_INF = 1 << 40
#: Alignment windows are far shorter than this; a DP cell stores cost * _W + start.
_W = 1 << 16
#: Entries kept in the substitution-cost cache before it is cleared.
_SIMS_MAX = 200_000


class MatchKind(enum.StrEnum):
    """How a phrase was found."""

    EXACT = "exact"
    FUZZY = "fuzzy"
    PINYIN = "pinyin"
    INTENT = "intent"  # by meaning: similar to one of the rule's examples (qa.rules.intents)


@dataclass(frozen=True, slots=True)
class MatchOptions:
    """How tolerant matching is (the pack's `matching:` section).

    Attributes:
        fuzzy: Allow fuzzy matches at all.
        pinyin: Treat Chinese characters with the same (or one-letter-apart) pinyin as equal.
        fuzzy_threshold: Share of a phrase's units that must be matched; the number of unit
            edits allowed is `floor(units * (1 - fuzzy_threshold))`.
        word_similarity: Character similarity (0-1, rapidfuzz Indel) at which two Latin words
            count as the same misspelt word.
        max_near: Misspelt words or one-letter-apart syllables allowed per match.
    """

    fuzzy: bool = True
    pinyin: bool = True
    fuzzy_threshold: float = 0.75
    word_similarity: float = 0.8
    max_near: int = 1


@dataclass(frozen=True, slots=True)
class Phrase:
    """One phrase of one rule, as given to the matcher."""

    phrase_id: str
    rule_id: str
    text: str


@dataclass(frozen=True, slots=True)
class TextHit:
    """Where a phrase matched inside a normalised text (unit-free, character offsets)."""

    phrase_id: str
    rule_id: str
    kind: MatchKind
    score: float
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class PhraseHit:
    """A phrase found in a segment, with its evidence.

    Attributes:
        phrase_id: The phrase (`<rule id>#<n>`).
        rule_id: The rule the phrase belongs to.
        kind: exact, fuzzy, pinyin or intent.
        score: 1.0 for exact; lower the more the text differed; for intent, the cosine
            similarity to the nearest example.
        evidence_text: The original (recognised) text that matched.
        start: Start of the evidence on the call clock (the start of the segment it begins in).
        end: End of the evidence on the call clock (the end of the segment it ends in).
        speaker: Who said it.
        phrase: The phrase as written in the pack (for intent: the nearest example).
    """

    phrase_id: str
    rule_id: str
    kind: MatchKind
    score: float
    evidence_text: str
    start: float
    end: float
    speaker: Speaker
    phrase: str = ""


@dataclass(frozen=True, slots=True)
class _Unit:
    text: str
    key: str
    start: int
    end: int
    cjk: bool
    negation: bool


@functools.lru_cache(maxsize=65_536)
def _syllable(ch: str) -> str:
    from pypinyin import lazy_pinyin  # local: pypinyin loads its dictionaries on import

    syl = lazy_pinyin(ch)[0]
    for hard, soft in (("zh", "z"), ("ch", "c"), ("sh", "s")):
        if syl.startswith(hard):
            syl = soft + syl[2:]
            break
    return syl[:-1] if syl.endswith("ng") else syl


def _units(text: str, pinyin: bool) -> list[_Unit]:
    units: list[_Unit] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == " ":
            i += 1
        elif is_cjk(ch):
            key = _syllable(ch) if pinyin else ch
            units.append(_Unit(ch, key, i, i + 1, True, ch in NEGATIONS))
            i += 1
        else:
            j = i
            while j < n and text[j] != " " and not is_cjk(text[j]):
                j += 1
            word = text[i:j]
            units.append(_Unit(word, word, i, j, False, word in NEGATIONS))
            i = j
    return units


def _wordish(ch: str) -> bool:
    return ch.isalnum() and not is_cjk(ch)


@dataclass(frozen=True, slots=True)
class _Compiled:
    phrase: Phrase
    norm: str
    units: tuple[_Unit, ...]
    keys: frozenset[str]
    code: str  # one character per unit key, for C-speed sequence bounds
    edits: int
    need: int
    bound_left: bool
    bound_right: bool


class PhraseMatcher:
    """All phrases of a pack, compiled once; `scan` finds them in one segment.

    Thread-safe after construction: scanning keeps no state (the caller keeps the previous
    segment for matches across two segments).
    """

    def __init__(
        self,
        phrases: Iterable[Phrase],
        options: MatchOptions = MatchOptions(),  # noqa: B008 - frozen, so a safe default
        language: str = "auto",
    ) -> None:
        self.options = options
        self.language = language
        compiled: list[_Compiled] = []
        self._codes: dict[str, str] = {}
        for ph in phrases:
            norm = normalize_with_map(ph.text, language).text
            if not norm:
                log.warning(
                    "phrase %r of rule %s is empty after normalisation", ph.text, ph.rule_id
                )
                continue
            units = tuple(_units(norm, options.pinyin))
            edits = int(len(units) * (1.0 - options.fuzzy_threshold) + 1e-9)
            keys = frozenset(u.key for u in units)
            # Code points from U+E000 up (private use; 0 stands for keys no phrase has).
            code = "".join(
                self._codes.setdefault(u.key, chr(0xE000 + len(self._codes))) for u in units
            )
            need = max(1, len(keys) - max(edits, options.max_near))
            compiled.append(
                _Compiled(
                    ph, norm, units, keys, code, edits, need, _wordish(norm[0]), _wordish(norm[-1])
                )
            )
        self._phrases = tuple(compiled)
        self.max_chars = max((len(c.norm) for c in compiled), default=0)
        patterns = [c.norm for c in compiled]
        self._ac = ahocorasick_rs.AhoCorasick(patterns) if patterns else None
        index: dict[str, list[int]] = {}
        for pid, c in enumerate(compiled):
            for key in c.keys:
                index.setdefault(key, []).append(pid)
        self._index = {k: tuple(v) for k, v in index.items()}
        # (phrase unit, text unit) -> substitution cost; only depends on the options.
        self._sims: dict[tuple[str, str], int] = {}

    def __len__(self) -> int:
        return len(self._phrases)

    @property
    def phrases(self) -> tuple[Phrase, ...]:
        """The phrases this matcher finds (those not empty after normalisation)."""
        return tuple(c.phrase for c in self._phrases)

    def match_normalized(self, norm: str, min_end: int = 0) -> list[TextHit]:
        """Finds every phrase in normalised text; one hit per phrase (the earliest exact, or
        else the best fuzzy/pinyin one), considering only hits that end after `min_end`.

        Args:
            norm: Text already passed through `normalize`.
            min_end: Hits ending at or before this character offset are ignored (they were
                reported with the previous segment).

        Returns:
            Hits in order of their start.
        """
        if self._ac is None or not norm:
            return []
        found: dict[int, TextHit] = {}
        for pid, start, end in self._ac.find_matches_as_indexes(norm, overlapping=True):
            if end <= min_end or pid in found:
                continue
            c = self._phrases[pid]
            if c.bound_left and start > 0 and _wordish(norm[start - 1]):
                continue
            if c.bound_right and end < len(norm) and _wordish(norm[end]):
                continue
            found[pid] = TextHit(
                c.phrase.phrase_id, c.phrase.rule_id, MatchKind.EXACT, 1.0, start, end
            )
        if self.options.fuzzy or self.options.pinyin:
            self._approximate(norm, min_end, found)
        return sorted(found.values(), key=lambda h: (h.start, h.end, h.phrase_id))

    def _approximate(self, norm: str, min_end: int, found: dict[int, TextHit]) -> None:
        units = _units(norm, self.options.pinyin)
        if not units:
            return
        where: dict[str, list[int]] = {}
        for i, u in enumerate(units):
            where.setdefault(u.key, []).append(i)
        counts: Counter[int] = Counter()
        index = self._index
        for key in where:
            pids = index.get(key)
            if pids:
                counts.update(pids)
        first_new = next((i for i, u in enumerate(units) if u.end > min_end), len(units))
        codes = self._codes
        text_code = "".join(codes.get(u.key, "\0") for u in units)
        slack_near = self.options.max_near
        sims = self._sims
        if len(sims) > _SIMS_MAX:
            sims.clear()  # bounded: a long-running service sees an open vocabulary
        for pid, count in counts.items():
            c = self._phrases[pid]
            if pid in found or count < c.need:
                continue
            span = self._cluster(c, where, first_new, len(units))
            # Each edit or near unit leaves at most one phrase unit out of the longest common
            # subsequence, so a match needs that many units in order (a C-speed bound).
            need = len(c.units) - max(c.edits if self.options.fuzzy else 0, slack_near)
            if span is not None and (
                LCSseq.similarity(c.code, text_code[span[0] : span[1]]) >= need
            ):
                hit = self._align(c, units[span[0] : span[1]], span[0], first_new, sims)
                if hit is not None:
                    found[pid] = hit

    def _cluster(
        self, c: _Compiled, where: dict[str, list[int]], first_new: int, total: int
    ) -> tuple[int, int] | None:
        """The stretch of text units that can hold a match of `c`, or None when none can.

        A match spans at most `units + edits` text units and keeps at least
        `units - edits - max_near` of the phrase's keys, so some window of that width must
        hold that many text units whose key is one of the phrase's.
        """
        n = len(c.units)
        slack = max(c.edits if self.options.fuzzy else 0, self.options.max_near)
        width = n + slack
        need = n - slack
        pos = sorted(p for key in c.keys for p in where.get(key, ()))
        lo = hi = -1
        right = 0
        for left, p in enumerate(pos):
            while right < len(pos) and pos[right] < p + width:
                right += 1
            if right - left >= need:
                if lo < 0:
                    lo = p
                hi = pos[right - 1]
        if lo < 0 or hi + slack < first_new:
            return None
        return max(0, lo - slack), min(total, hi + slack + 1)

    def _sub_cost(self, p: _Unit, t: _Unit, sims: dict[tuple[str, str], int]) -> int:
        if p.text == t.text:
            return 0
        if p.negation or t.negation:
            return _INF
        pair = (p.text, t.text)
        cost = sims.get(pair)
        if cost is not None:
            return cost
        opts = self.options
        if p.cjk and t.cjk:
            if not opts.pinyin:
                cost = _EDIT
            elif p.key == t.key:
                cost = _HOMOPHONE
            elif p.key.rstrip("n") == t.key.rstrip("n"):
                cost = _NEAR  # a final n heard or lost: 您/你 (nin/ni), 心/西 (xin/xi)
            else:
                cost = _EDIT
        elif not p.cjk and not t.cjk and opts.fuzzy and min(len(p.text), len(t.text)) >= 3:
            sim = Indel.normalized_similarity(p.text, t.text)
            # A different English word changes what was said ("reset the payment" is not
            # "reset the statement"): words are only inserted, deleted or misspelt.
            cost = _NEAR if sim >= opts.word_similarity else _INF
        else:
            cost = _INF
        sims[pair] = cost
        return cost

    def _align(
        self,
        c: _Compiled,
        window: Sequence[_Unit],
        offset: int,
        first_new: int,
        sims: dict[tuple[str, str], int],
    ) -> TextHit | None:
        """Best semi-global alignment of the phrase's units inside `window` (text units from
        `offset`); the match must end on a unit at or after `first_new`."""
        pu = c.units
        n = len(pu)
        m = len(window)
        edits_allowed = c.edits if self.options.fuzzy else 0
        # A cell packs (cost, start of the match in the window) into one int: cost * _W + start,
        # so that one `min` compares both without building tuples.
        w = _W
        sub = self._sub_cost
        ins_costs = [(_INF if t.negation else _EDIT) * w for t in window]
        prev = list(range(m + 1))
        for i in range(1, n + 1):
            p = pu[i - 1]
            pt = p.text
            row = [0 if pt == t.text else sub(p, t, sims) * w for t in window]
            del_cost = (_INF if p.negation else _EDIT) * w
            if i == 1 or i == n:
                # A match is anchored: its first and last units are the phrase's own (equal,
                # misspelt or homophone), never deleted or replaced, so "reset the" alone
                # does not match "reset the statement".
                del_cost = _INF * w
                row = [c if c < _EDIT * w else _INF * w for c in row]
            cur = [min(prev[0] + del_cost, _INF * w)] + [_INF * w] * m
            last = i == n
            for j in range(1, m + 1):
                best = prev[j - 1] + row[j - 1]
                cand = prev[j] + del_cost
                if cand < best:
                    best = cand
                # No text unit is inserted after the last phrase unit: a match ends on a
                # unit of the phrase, so a hit inside the previous segment cannot reach into
                # the new one by swallowing a word.
                if not last:
                    ins = cur[j - 1] + ins_costs[j - 1]
                    if ins < best:
                        best = ins
                cur[j] = best
            prev = cur
        best_val, best_j = _INF * w, -1
        for j in range(max(1, first_new - offset + 1), m + 1):
            val = prev[j]
            if val < best_val and val % w < j:
                best_val, best_j = val, j
        if best_j < 0:
            return None
        best_cost, best_start = divmod(best_val, w)
        edits, rest = divmod(best_cost, _EDIT)
        near, homophones = divmod(rest, _NEAR)
        # Misspelt words and near syllables share the budget of edits (at least max_near).
        if edits > edits_allowed or edits + near > max(edits_allowed, self.options.max_near):
            return None
        if edits == 0 and near == 0 and homophones == 0:
            return None  # identical units but no exact hit: a word-boundary miss, not a match
        first, last_unit = window[best_start], window[best_j - 1]
        pinyin_only = edits == 0 and all(u.cjk for u in c.units) and (homophones or near)
        kind = MatchKind.PINYIN if pinyin_only else MatchKind.FUZZY
        score = max(0.0, 1.0 - (edits + 0.5 * near + 0.1 * homophones) / n)
        return TextHit(
            c.phrase.phrase_id,
            c.phrase.rule_id,
            kind,
            round(score, 3),
            first.start,
            last_unit.end,
        )

    def scan(self, segment: Segment, previous: Segment | None = None) -> list[PhraseHit]:
        """Finds the pack's phrases in `segment`, also across the end of `previous`.

        Args:
            segment: A final segment.
            previous: The same speaker's previous final segment, if any: a phrase that
                begins at its end and finishes in `segment` is found; hits entirely inside
                `previous` are not repeated.

        Returns:
            One hit per phrase found, in order of where it starts.
        """
        tail = ""
        if previous is not None and previous.text:
            # Twice the longest phrase is enough to hold the start of any phrase that crosses.
            tail = previous.text[-(2 * self.max_chars + 8) :]
        joined = f"{tail}\n{segment.text}" if tail else segment.text
        norm = normalize_with_map(joined, self.language)
        boundary = len(tail)
        min_end = sum(1 for i in norm.index if i < boundary)
        return [
            self._to_phrase_hit(h, norm, boundary, segment, previous)
            for h in self.match_normalized(norm.text, min_end)
        ]

    def _to_phrase_hit(
        self,
        hit: TextHit,
        norm: NormalizedText,
        boundary: int,
        segment: Segment,
        previous: Segment | None,
    ) -> PhraseHit:
        starts_before = previous is not None and norm.index[hit.start] < boundary
        start = previous.start if starts_before and previous is not None else segment.start
        phrase = self._phrase_text(hit.phrase_id)
        return PhraseHit(
            hit.phrase_id,
            hit.rule_id,
            hit.kind,
            hit.score,
            norm.quote(hit.start, hit.end),
            start,
            segment.end,
            segment.speaker,
            phrase,
        )

    @functools.cached_property
    def _by_id(self) -> dict[str, str]:
        return {c.phrase.phrase_id: c.phrase.text for c in self._phrases}

    def _phrase_text(self, phrase_id: str) -> str:
        return self._by_id[phrase_id]
