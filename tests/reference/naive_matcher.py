"""The straightforward phrase scan a user would write: the baseline of the matcher benchmark.

For each phrase: normalise it, test `in` on the normalised text (on word boundaries for
Latin text); when that fails, slide every window of the phrase's length (plus and minus the
allowed edits) over the text's units and compute the unit edit distance, rejecting any edit
of a negation. No automaton, no inverted index, no prefilter.
"""

from __future__ import annotations

from rapidfuzz.distance import Levenshtein

from qa.rules.matcher import NEGATIONS, _units, _wordish
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


def _fuzzy(phrase_keys: list[str], text_keys: list[str], edits: int) -> bool:
    n = len(phrase_keys)
    for size in range(max(1, n - edits), n + edits + 1):
        for i in range(0, len(text_keys) - size + 1):
            window = text_keys[i : i + size]
            if Levenshtein.distance(phrase_keys, window) > edits:
                continue
            ops = Levenshtein.editops(phrase_keys, window)
            if not any(
                phrase_keys[op.src_pos] in NEGATIONS
                if op.tag != "insert"
                else window[op.dest_pos] in NEGATIONS
                for op in ops
            ):
                return True
    return False


def naive_scan(
    phrases: list[tuple[str, str]], text: str, fuzzy_threshold: float = 0.75
) -> tuple[set[str], set[str]]:
    """Scans `text` for `(phrase_id, phrase)` pairs.

    Returns:
        The ids found exactly, and the ids found only fuzzily.
    """
    norm = normalize(text)
    text_keys = [u.key for u in _units(norm, True)]
    exact: set[str] = set()
    fuzzy: set[str] = set()
    for phrase_id, phrase in phrases:
        norm_phrase = normalize(phrase)
        if _exact(norm_phrase, norm):
            exact.add(phrase_id)
            continue
        keys = [u.key for u in _units(norm_phrase, True)]
        if _fuzzy(keys, text_keys, int(len(keys) * (1.0 - fuzzy_threshold) + 1e-9)):
            fuzzy.add(phrase_id)
    return exact, fuzzy
