"""The straightforward phrase scan a user would write: the baseline of the matcher benchmark.

For each phrase, one after the other: normalise it, test `in` on the normalised text (on
word boundaries for Latin text); when that fails, run the matcher's own fuzzy/pinyin
alignment over the whole text. No automaton, no inverted index, no window or LCS prefilter,
so the hits it finds are, by construction, what `PhraseMatcher` must find.
"""

from __future__ import annotations

from qa.rules.matcher import PhraseMatcher, _units, _wordish
from qa.rules.normalize import normalize


def _exact(norm_phrase: str, text: str) -> bool:
    start = text.find(norm_phrase)
    while start >= 0:
        end = start + len(norm_phrase)
        left = not _wordish(norm_phrase[0]) or start == 0 or not _wordish(text[start - 1])
        right = not _wordish(norm_phrase[-1]) or end == len(text) or not _wordish(text[end])
        if left and right:
            return True
        start = text.find(norm_phrase, start + 1)
    return False


def naive_scan(matcher: PhraseMatcher, text: str) -> tuple[set[str], set[str]]:
    """Scans `text` for every phrase of `matcher`, one phrase at a time.

    Returns:
        The rule ids found exactly, and those found only fuzzily or by pinyin.
    """
    norm = normalize(text, matcher.language)
    units = _units(norm, matcher.options.pinyin)
    exact: set[str] = set()
    approximate: set[str] = set()
    sims: dict = {}
    for compiled in matcher._phrases:
        phrase = compiled.phrase
        if _exact(normalize(phrase.text, matcher.language), norm):
            exact.add(phrase.rule_id)
        elif units and matcher._align(compiled, units, 0, 0, sims) is not None:
            approximate.add(phrase.rule_id)
    return exact, approximate
