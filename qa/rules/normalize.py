"""Text normalisation for rule matching, with a map back to the original text.

Both the phrases of a rule pack and the recognised text go through the same steps, so that
what the recogniser writes and what the centre wrote in its standard compare equal:
Unicode NFKC (which also folds full-width forms to half-width), case folding, punctuation
removed (apostrophes vanish so that "don't" becomes "dont"; other marks become a space),
traditional Chinese converted to simplified (OpenCC `t2s`), whitespace collapsed, and
whitespace next to a Chinese character dropped (the recogniser inserts spaces between
Chinese words at random).
"""

from __future__ import annotations

import functools
import logging
import unicodedata
from dataclasses import dataclass

from qa.textnorm import t2s_converter, traditional_table

log = logging.getLogger("qa.rules.normalize")

#: Apostrophe-like marks that join a word rather than separate two ("don't", "I’m").
_JOINERS = frozenset("'\u2019\u02bc\u2018`\u00b4")


def is_cjk(ch: str) -> bool:
    """True for a CJK unified ideograph (the characters Chinese text is written in)."""
    code = ord(ch)
    return (
        0x4E00 <= code <= 0x9FFF
        or 0x3400 <= code <= 0x4DBF
        or 0x20000 <= code <= 0x2A6DF
        or 0xF900 <= code <= 0xFAFF
    )


@dataclass(frozen=True, slots=True)
class NormalizedText:
    """Normalised text and where each of its characters came from.

    Attributes:
        text: The normalised text.
        index: `index[i]` is the position in `original` of the character that produced
            `text[i]`.
        original: The text before normalisation.
    """

    text: str
    index: tuple[int, ...]
    original: str

    def quote(self, start: int, end: int) -> str:
        """The original text behind the normalised span `[start, end)`, for evidence."""
        if start >= end:
            return ""
        return self.original[self.index[start] : self.index[end - 1] + 1].strip()


def _to_simplified(text: str) -> str:
    table = traditional_table()
    if not any(ord(ch) in table for ch in text):
        return text
    converted = t2s_converter().convert(text)
    if len(converted) != len(text):
        # Our index map needs one output character per input character.
        log.debug("t2s changed the length of %r; using the character table", text)
        return text.translate(table)
    return converted


def normalize_with_map(text: str, language: str = "auto") -> NormalizedText:
    """Normalises `text` and keeps, for each output character, its position in `text`.

    Args:
        text: Text as written by the recogniser or in a rule pack.
        language: `en`, `zh` or `auto`; traditional-to-simplified conversion is skipped
            for `en`.

    Returns:
        The normalised text with its index map.
    """
    chars: list[str] = []
    index: list[int] = []
    pending_space = False
    for i, raw in enumerate(text):
        for ch in unicodedata.normalize("NFKC", raw).casefold():
            if ch in _JOINERS:
                continue
            cat = unicodedata.category(ch)
            if ch.isspace() or cat[0] in "PSZC":
                pending_space = bool(chars)
                continue
            if pending_space:
                pending_space = False
                if not (is_cjk(ch) or is_cjk(chars[-1])):
                    chars.append(" ")
                    index.append(i)
            chars.append(ch)
            index.append(i)
    out = "".join(chars)
    if language != "en" and any(is_cjk(ch) for ch in out):
        out = _to_simplified(out)
    return NormalizedText(out, tuple(index), text)


@functools.lru_cache(maxsize=8192)
def normalize(text: str, language: str = "auto") -> str:
    """Normalises `text` for matching (see the module docstring for the steps). Cached: a
    segment's spans are normalised by the negation check and the n-gram features alike.

    Args:
        text: Any text.
        language: `en`, `zh` or `auto`.

    Returns:
        The normalised text.
    """
    return normalize_with_map(text, language).text
