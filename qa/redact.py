"""Personal-data redaction for stored and exported transcripts and for prompts.

`redact` replaces what identifies a caller with a typed placeholder and reports where:

- `[EMAIL]` e-mail addresses;
- `[ID]` Chinese resident ID numbers (18 characters, the last may be X), only when the
  ISO 7064 MOD 11-2 check character is right: a wrong one is just a number;
- `[CARD]` bank-card numbers of 13-19 digits that pass the Luhn check;
- `[PHONE]` phone numbers: international (`+` and 8-15 digits), NANP (10 digits, or 11 with
  a leading 1), Chinese mobile (`1[3-9]` and 9 more digits), Chinese landline (0 and 9-11
  more digits), and local `555-1234`; separators (space, `-`, `.`, parentheses) allowed;
- `[NUMBER]` dictated digit strings (account, order, policy numbers), in both ways the
  recogniser writes them: as words, English runs such as "four one five double five" and
  Chinese runs of 一二三...幺两 of at least four digits; and as numerals, runs of at least six
  digits ("472983", "472 983") that are no phone, ID or card number (a card number that
  fails Luhn or an ID with a wrong check character is still redacted, as a `[NUMBER]`).

Ordinary numbers ("two days", "5 minutes", "2024", "两千零二十四年") are kept. Digits are
matched as ASCII only, so `\\d`'s other scripts never join a number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Redacted", "RedactedSpan", "redact", "is_resident_id", "luhn_valid"]

#: Fewest digits a spoken run must carry before it is taken for a dictated number.
MIN_SPOKEN_DIGITS = 4
#: Fewest digits a written run must carry: six keeps years, times and small amounts, and
#: catches the account numbers Whisper writes as numerals ("it is 472983").
MIN_WRITTEN_DIGITS = 6
#: Most digits of any kind but a NUMBER: a card number (19).
MAX_KIND_DIGITS = 19

# The lookbehind lets a match start only where a run of address characters starts: without
# it every position of a long run ("1-1-1-...") rescans the run to its end (quadratic).
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
)
# A digit group; an X may close one only where an ID can end.
_GROUP = re.compile(r"[0-9]+(?:[Xx](?![A-Za-z0-9]))?")
# What may stand between the groups of one written number.
_GAP = re.compile(r"[ \-.()]{1,3}")

_EN_DIGITS = {
    "zero": 1, "oh": 1, "one": 1, "two": 1, "three": 1, "four": 1, "five": 1,
    "six": 1, "seven": 1, "eight": 1, "nine": 1,
}  # fmt: skip
_EN_REPEAT = {"double": 2, "triple": 3}
_EN_TOKEN = re.compile(r"[A-Za-z]+|[0-9]")
_EN_GAP = re.compile(r"[\s,\-]+")
_ZH_RUN = re.compile(r"[一二三四五六七八九零〇幺两](?:[\s,，、\-]*[一二三四五六七八九零〇幺两])*")
_ZH_DIGIT = re.compile(r"[一二三四五六七八九零〇幺两]")

# ISO 7064 MOD 11-2 weights of the first 17 digits, and the check character per remainder.
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


@dataclass(frozen=True, slots=True)
class RedactedSpan:
    """One redacted piece: its kind (`PHONE`, `ID`, `CARD`, `EMAIL`, `NUMBER`) and where it
    was in the original text (`text[start:end]`)."""

    kind: str
    start: int
    end: int

    @property
    def placeholder(self) -> str:
        """The text that replaced it."""
        return f"[{self.kind}]"


@dataclass(frozen=True, slots=True)
class Redacted:
    """The redacted text and the spans of the original that were replaced, in order."""

    text: str
    spans: tuple[RedactedSpan, ...] = ()


def is_resident_id(value: str) -> bool:
    """True when `value` is 17 digits and a valid ISO 7064 MOD 11-2 check character."""
    if len(value) != 18 or not value[:17].isascii() or not value[:17].isdigit():
        return False
    total = sum(int(d) * w for d, w in zip(value[:17], _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11] == value[17].upper()


def luhn_valid(digits: str) -> bool:
    """True when the ASCII digit string passes the Luhn (mod 10) check."""
    if not digits or not digits.isascii() or not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _classify(
    digits: str, plus: bool, groups: tuple[int, ...], spaced: bool = True
) -> str | None:
    """The kind of a written number, or None for an ordinary one. `spaced`: its groups are
    apart by spaces only (not the '-' or '.' of dates and decimals)."""
    if digits[-1] in "Xx":
        return "ID" if is_resident_id(digits) else None
    n = len(digits)
    if n == 18 and is_resident_id(digits):
        return "ID"
    if plus:
        return "PHONE" if 8 <= n <= 15 else None
    if n == 11 and digits[0] == "1" and digits[1] in "3456789":
        return "PHONE"
    # NANP: area code and exchange both start 2-9.
    nanp = digits[1:] if n == 11 and digits[0] == "1" else digits
    if len(nanp) == 10 and nanp[0] in "23456789" and nanp[3] in "23456789":
        return "PHONE"
    if digits[0] == "0" and 10 <= n <= 12 and len(groups) > 1:
        return "PHONE"
    if 13 <= n <= 19 and luhn_valid(digits):
        return "CARD"
    if groups == (3, 4):
        return "PHONE"
    if n >= MIN_WRITTEN_DIGITS and spaced:
        return "NUMBER"
    return None


def _written_numbers(text: str) -> list[RedactedSpan]:
    groups = list(_GROUP.finditer(text))
    spans: list[RedactedSpan] = []
    i = 0
    while i < len(groups):
        # The chain of groups joined only by separators, starting at i.
        chain = [groups[i]]
        while (
            i + len(chain) < len(groups)
            and chain[-1].group()[-1] not in "Xx"
            and _GAP.fullmatch(text, chain[-1].end(), groups[i + len(chain)].start())
        ):
            chain.append(groups[i + len(chain)])
        # Longest run of consecutive groups that is personal data, tried from each start.
        # Only runs of at most MAX_KIND_DIGITS digits can be anything but a spaced NUMBER,
        # so from each start a bounded window is classified, plus the one longest spaced
        # run: linear in the text, where trying every sub-run was cubic (4,000 characters
        # of "12 - " took 11.7 s).
        sizes = [len(m.group()) for m in chain]
        digits = "".join(m.group() for m in chain)
        at = [0]  # at[m]: where group m's digits begin in `digits`
        for size in sizes:
            at.append(at[-1] + size)
        # spaced_to[k]: the end of the longest run from k whose gaps are blanks only.
        spaced_to = [0] * len(chain)
        spaced_to[-1] = len(chain)
        for m in range(len(chain) - 2, -1, -1):
            blank = not text[chain[m].end() : chain[m + 1].start()].strip()
            spaced_to[m] = spaced_to[m + 1] if blank else m + 1
        k = 0
        while k < len(chain):
            bounded, total = k, 0
            while bounded < len(chain) and total + sizes[bounded] <= MAX_KIND_DIGITS:
                total += sizes[bounded]
                bounded += 1
            # Past the window only the longest spaced run can be data (a NUMBER; one group
            # less when it ends in an ID's X); everything longer and not spaced is not.
            top = spaced_to[k]
            longest = [j for j in (top, top - 1) if j > bounded]
            for j in (*longest, *range(bounded, k, -1)):
                part = chain[k:j]
                start = part[0].start()
                lead = text[max(0, start - 2) : start]
                plus = lead.endswith("+") or lead == "+("
                kind = _classify(digits[at[k] : at[j]], plus, tuple(sizes[k:j]), j <= spaced_to[k])
                if kind is not None:
                    if plus:
                        start = text.rindex("+", 0, start)
                    end = part[-1].end()
                    if text[start - 1 : start] == "(":
                        start -= 1  # an area code in parentheses: (415) 555-1234
                    piece = text[start:end]
                    if piece.count("(") > piece.count(")") and text[end : end + 1] == ")":
                        end += 1
                    spans.append(RedactedSpan(kind, start, end))
                    k = j
                    break
            else:
                k += 1
        i += len(chain)
    return spans


def _spoken_english(text: str) -> list[RedactedSpan]:
    spans: list[RedactedSpan] = []
    tokens = list(_EN_TOKEN.finditer(text))
    i = 0
    while i < len(tokens):
        digits = 0
        j = i
        last_end = -1
        while j < len(tokens):
            tok = tokens[j]
            if j > i and not _EN_GAP.fullmatch(text, tokens[j - 1].end(), tok.start()):
                break
            word = tok.group().lower()
            if word in _EN_DIGITS or word.isdigit():
                digits += 1
                last_end = tok.end()
                j += 1
            elif (
                word in _EN_REPEAT
                and j + 1 < len(tokens)
                and tokens[j + 1].group().lower() in _EN_DIGITS
                and _EN_GAP.fullmatch(text, tok.end(), tokens[j + 1].start())
            ):
                digits += _EN_REPEAT[word]
                last_end = tokens[j + 1].end()
                j += 2
            else:
                break
        if digits >= MIN_SPOKEN_DIGITS:
            spans.append(RedactedSpan("NUMBER", tokens[i].start(), last_end))
            i = j
        else:
            i = max(j, i + 1)
    return spans


def _spoken_chinese(text: str) -> list[RedactedSpan]:
    return [
        RedactedSpan("NUMBER", m.start(), m.end())
        for m in _ZH_RUN.finditer(text)
        if len(_ZH_DIGIT.findall(m.group())) >= MIN_SPOKEN_DIGITS
    ]


def redact(text: str, language: str | None = None) -> Redacted:
    """Replaces personal data in `text` with typed placeholders.

    Args:
        text: A transcript, evidence or prompt text.
        language: ISO 639-1 code of the text; `en` skips the Chinese spoken-digit rule and
            `zh` the English one. None (unknown) applies both.

    Returns:
        The redacted text and the replaced spans of the original, in order.
    """
    found = [RedactedSpan("EMAIL", m.start(), m.end()) for m in _EMAIL.finditer(text)]
    found += _written_numbers(text)
    if language != "zh":
        found += _spoken_english(text)
    if language != "en":
        found += _spoken_chinese(text)
    if not found:
        return Redacted(text)
    # Earlier first, then longer first; a span inside one already taken is dropped.
    found.sort(key=lambda s: (s.start, -s.end))
    kept: list[RedactedSpan] = []
    for span in found:
        if kept and span.start < kept[-1].end:
            continue
        kept.append(span)
    out: list[str] = []
    pos = 0
    for span in kept:
        out.append(text[pos : span.start])
        out.append(span.placeholder)
        pos = span.end
    out.append(text[pos:])
    return Redacted("".join(out), tuple(kept))
