"""Text normalisation and error rates for scoring transcripts against references.

English is scored by word error rate (WER) over lower-cased words without punctuation;
Chinese by character error rate (CER) over simplified characters without punctuation or
spaces. With `numerals=True`, English digits and number words are both spelled as single
digits ("oh" and "o" count as zero), so "1001" and "one zero zero one" score the same.
"""

from __future__ import annotations

import functools
import os
import re
import unicodedata

from rapidfuzz.distance import Levenshtein

_DIGIT_WORDS = {
    "zero": "0", "oh": "0", "o": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9",
}  # fmt: skip
# Spoken forms Whisper abbreviates; both sides are mapped to the abbreviation.
_ABBREVIATIONS = {"mister": "mr", "missus": "mrs", "doctor": "dr", "saint": "st"}
_NON_WORD = re.compile(r"[^\w\s']|_")
# Digit groups written with separators ("1,000", "10-01") are one number.
_DIGIT_SEPARATOR = re.compile(r"(?<=\d)[,.\-](?=\d)")


@functools.cache
def t2s_converter():
    """The one OpenCC `t2s` converter (it loads its dictionaries on first use)."""
    import opencc

    return opencc.OpenCC("t2s")


@functools.cache
def traditional_table() -> dict[int, str]:
    """OpenCC's character-level t2s table: detects traditional text cheaply, and maps it one
    character for one where a caller needs positions kept."""
    import opencc

    path = os.path.join(os.path.dirname(opencc.__file__), "dictionary", "TSCharacters.txt")
    table: dict[int, str] = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) >= 2 and len(parts[0]) == 1 and len(parts[1]) == 1:
                table[ord(parts[0])] = parts[1]
    return table


def to_simplified(text: str) -> str:
    """Converts traditional Chinese characters to simplified (OpenCC `t2s`).

    Text with no traditional character is returned as it is: the OpenCC reimplementation
    costs ~3 us a character, and most text is simplified already.
    """
    table = traditional_table()
    if not any(ord(ch) in table for ch in text):
        return text
    return t2s_converter().convert(text)


def english_words(text: str, *, numerals: bool = False) -> list[str]:
    """Normalises English text into the words a WER counts.

    Args:
        text: Any English text.
        numerals: Spell digits and number words as single digits.

    Returns:
        Lower-case words without punctuation.
    """
    text = unicodedata.normalize("NFKC", text).lower()
    if numerals:
        text = _DIGIT_SEPARATOR.sub("", text)
    text = _NON_WORD.sub(" ", text).replace("'", "")
    words = [_ABBREVIATIONS.get(w, w) for w in text.split()]
    if not numerals:
        return words
    out: list[str] = []
    for word in words:
        if word.isdigit():
            out.extend(word)
        else:
            out.append(_DIGIT_WORDS.get(word, word))
    return out


def chinese_chars(text: str) -> list[str]:
    """Normalises Chinese text into the characters a CER counts (simplified, no punctuation)."""
    text = to_simplified(unicodedata.normalize("NFKC", text))
    return [c for c in text if not c.isspace() and unicodedata.category(c)[0] not in "PSZ"]


def error_rate(reference: list[str], hypothesis: list[str]) -> float:
    """Edit distance between token lists divided by the reference length."""
    if not reference:
        return 0.0 if not hypothesis else 1.0
    return Levenshtein.distance(reference, hypothesis) / len(reference)


def wer(reference: str, hypothesis: str, *, numerals: bool = False) -> float:
    """English word error rate of `hypothesis` against `reference`."""
    return error_rate(
        english_words(reference, numerals=numerals), english_words(hypothesis, numerals=numerals)
    )


def cer(reference: str, hypothesis: str) -> float:
    """Chinese character error rate of `hypothesis` against `reference`, after `t2s`."""
    return error_rate(chinese_chars(reference), chinese_chars(hypothesis))


def score(language: str, reference: str, hypothesis: str, *, numerals: bool = False) -> float:
    """CER for Chinese (`zh`), WER otherwise."""
    if language == "zh":
        return cer(reference, hypothesis)
    return wer(reference, hypothesis, numerals=numerals)
